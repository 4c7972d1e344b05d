"""Where a run came from: code version, trigger, a readable run name and credential-free params.

No MLflow here: these are plain dicts and strings the tracking module logs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lstm_pipeline import __version__
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.errors import has_credentials, remember_credentials, scrub_uri, split_userinfo

UNKNOWN = "unknown"
_SOURCE_DIR = Path(__file__).resolve().parent  # the code that runs, not the caller's cwd


def git_state(folder: Path = _SOURCE_DIR) -> dict[str, str]:
    """`git.commit` and `git.dirty` of the checkout holding `folder`; `unknown` without git."""
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return {"git.commit": UNKNOWN, "git.dirty": UNKNOWN}
    return {"git.commit": commit, "git.dirty": str(bool(status)).lower()}


def _git(folder: Path, *args: str) -> str | None:
    """stdout of one git command, or None when git is absent, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def run_tags(cfg: PipelineConfig, data_tags: dict[str, str]) -> dict[str, str]:
    """Every tag a training run starts with: data, code version, package version, trigger."""
    git = git_state()
    tags = {
        **data_tags,
        **git,
        "lstm_pipeline.version": __version__,
        "trigger": cfg.tracking.trigger,
    }
    if cfg.tracking.trigger_event:
        tags["trigger_event"] = cfg.tracking.trigger_event  # the event the Prefect UI shows
    if git["git.commit"] != UNKNOWN:
        tags["mlflow.source.git.commit"] = git["git.commit"]  # shown by the MLflow UI
    return tags


def run_name(cfg: PipelineConfig, day: str) -> str:
    """`manual-AAPL+SPY-w60h5-2024-06-01`: what tells runs apart in the UI's run list."""
    tickers = cfg.data.tickers
    names = "+".join(tickers) if len(tickers) <= 3 else f"{len(tickers)}tickers"
    window, horizon = cfg.features.window, cfg.features.horizon
    return f"{cfg.tracking.trigger}-{names}-w{window}h{horizon}-{day}"


def run_params(cfg: PipelineConfig) -> dict[str, Any]:
    """The flattened config as MLflow params, with any credentials in a URI blanked out."""
    return {
        key: redact(value) if key.endswith("_uri") else value for key, value in cfg.flat().items()
    }


def redact(uri: Any) -> Any:
    """`postgresql://user:secret@host/db` -> `postgresql://***@host/db`: a URI's user part may
    hold a password or a token, so all of it goes; anything else is returned unchanged."""
    return scrub_uri(uri) if isinstance(uri, str) else uri


def credentials_to_env(uri: str | None) -> str | None:
    """The tracking URI a flow may be given as a parameter: one with no credentials in it.

    An HTTP URI's `user:password@` moves to the variables MLflow's client reads them from
    (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD) and the clean URI is returned. Other
    credentials cannot be split off that way (`postgresql://user:pw@host/db`, a token-only
    `https://token@host`, a `?token=` query): the whole URI moves to MLFLOW_TRACKING_URI and
    None is returned, so the flows fall back to that variable. Either way the secret stays in
    this process's environment (and its children's), out of Prefect's parameters, database and
    UI. Its secrets are remembered: scrub masks them in any text from now on.
    """
    if not uri or not remember_credentials(uri):
        return uri
    head, user, rest = split_userinfo(uri)
    clean = head + rest
    http = uri.startswith(("http://", "https://"))
    if http and user is not None and ":" in user and not has_credentials(clean):
        name, password = user.split(":", 1)  # a user name holds no raw ':', a password may
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(name)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
        return clean
    return secret_to_env(uri, "MLFLOW_TRACKING_URI")


def without_credentials(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` fit to be a flow parameter: its tracking URI's credentials moved to the
    environment (credentials_to_env), wherever the URI came from (option or config file)."""
    uri = cfg.tracking.tracking_uri
    clean = credentials_to_env(uri)
    if clean == uri:
        return cfg
    tracking = cfg.tracking.model_copy(update={"tracking_uri": clean})
    return cfg.model_copy(update={"tracking": tracking})


def secret_to_env(uri: str | None, variable: str) -> str | None:
    """`uri` when it holds no credentials; else None, with `uri` moved to `variable`, where the
    code that needs it reads it back (a flow parameter would be stored in plain text); its
    secrets are remembered, for scrub to mask in any text."""
    if not uri or not remember_credentials(uri):
        return uri
    os.environ[variable] = uri
    return None
