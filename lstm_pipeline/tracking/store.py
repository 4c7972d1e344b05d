"""The tracking store, made once per flow, and `Run`, a handle bound to one of its runs.

`Store.open(cfg.tracking.tracking_uri)` resolves the URI once; every library function that
talks to MLflow takes the store (or a run), never a URI string. The store talks through its
own client: MLflow's process-wide tracking URI is set only where MLflow leaves no choice
(logging a model, downloading a registry version), and then only when it differs.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.uri import is_local_uri

from lstm_pipeline.config import (
    DEFAULT_TRACKING_URI,
    MODEL_NAME,
)
from lstm_pipeline.errors import (
    InputError,
    ModelNotFoundError,
    TrackingUnavailableError,
    one_line,
    remember_credentials,
    scrub,
)
from lstm_pipeline.files import check_can_create_in
from lstm_pipeline.tracking.dataset import dataset_input

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # only the training path logs figures

LOCAL_UI = "http://127.0.0.1:5000"  # `make mlflow-ui` over the default sqlite store
REACHABLE_TIMEOUT_S = 10  # the up-front reachability check waits this long, once
MAX_REASON_CHARS = 5000  # of a failure reason kept as a run tag (MLflow's limit is 8000)


def chosen_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else the project's sqlite store (no side effects)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


class Store:
    """One MLflow tracking store: its resolved URI, its client, its experiments and runs.

    Opening one has no side effects on disk: a new sqlite store (and its folder) is created
    when the client is first used. Pickled (a Dask worker's task), it travels as the URI it was
    opened with, so a remote worker resolves its own, credentials included, from its environment.
    """

    def __init__(self, uri: str, configured: str | None = None) -> None:
        self.uri = uri
        self._configured = configured

    @classmethod
    def open(cls, uri: str | None = None) -> Store:
        """The store at `uri`, else $MLFLOW_TRACKING_URI, else the project's sqlite file."""
        chosen = chosen_tracking_uri(uri)
        if remember_credentials(chosen):  # and scrub masks them in any text from now on
            # MLflow prints "View run ... at: URI/#/..." when a run ends, password and all
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        return cls(chosen, uri)

    def __reduce__(self) -> tuple[Any, tuple[str | None]]:
        return (Store.open, (self._configured,))

    def __repr__(self) -> str:
        return f"Store({scrub(self.uri)!r})"

    @property
    def sqlite_file(self) -> Path | None:
        """The database file of a sqlite store, else None."""
        if not self.uri.startswith("sqlite:///"):
            return None
        return Path(self.uri.removeprefix("sqlite:///"))

    @property
    def file_store_folder(self) -> Path | None:
        """The folder of a local file store (a plain path or a `file:` URI), else None."""
        try:  # MLflow's own verdict: `databricks` is no path, `file://host/...` is refused
            local = is_local_uri(self.uri, is_tracking_or_registry_uri=True)
        except MlflowException:
            return None
        return Path(local_file_uri_to_path(self.uri)) if local else None

    @property
    def is_missing(self) -> bool:
        """Whether this local store does not exist (a sqlite file, a file store's folder): any
        use would create it, or fail on MLflow's terms. A command that only reads or moves an
        alias asks this first."""
        if self.sqlite_file is not None:
            return not self.sqlite_file.is_file()
        folder = self.file_store_folder
        return folder is not None and not folder.is_dir()

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def warm_up(self) -> None:
        """The client made ahead of its first use (MLflow's SQL store takes ~0.7 s to import
        and open), creating nothing: of a store that does not exist yet, only the code is
        imported, as a run that fails on its data must leave no store behind."""
        if self.is_missing:
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        else:
            self.client  # noqa: B018 (a cached property: made here, once)

    @cached_property
    def client(self) -> MlflowClient:
        """The store's client; a new sqlite store's folder is created first."""
        if self.sqlite_file is not None:
            folder = self.sqlite_file.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                what = f"tracking store {self.uri}"
                check_can_create_in(folder, what)  # names what is in the way: a file, a permission
                raise InputError(f"{what}: cannot create {folder} ({exc.strerror})") from None
        return MlflowClient(self.uri)

    def ensure_reachable(
        self, experiment: str = MODEL_NAME, nothing_done: str = "nothing was fetched or trained"
    ) -> None:
        """Raise TrackingUnavailableError within seconds when a tracking server does not answer.

        MLflow's client retries a dead server for minutes (7 retries with backoff by default):
        right for a blip mid-run, wrong before any work, when a job would fetch and train only
        to find it cannot log. One request, no retries; wrong credentials fail here too. Local
        stores (sqlite, files) are left alone: checking them would create them.
        """
        if not self.is_server:
            return
        try:
            with _one_quick_request():
                # a throwaway client: the store's own must keep MLflow's patient retries
                MlflowClient(self.uri).get_experiment_by_name(experiment)
        except Exception as exc:  # connection errors, HTTP 401/403/5xx: all one verdict
            raise TrackingUnavailableError(
                f"MLflow tracking server {scrub(self.uri)} {_unreachable_verdict(exc)}; "
                f"{nothing_done}"
            ) from None

    def make_global(self) -> None:
        """Point MLflow's process-wide tracking URI here, for the parts of its API that know
        no client: log_model, and resolving a registry version in download_artifacts."""
        if mlflow.get_tracking_uri() != self.uri:
            mlflow.set_tracking_uri(self.uri)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, creating it (and a new sqlite store's tables) when missing.

        Two processes creating a new sqlite store at once fail ('table ... already exists'):
        whoever starts concurrent runs, such as a scheduler, calls this once first.
        """
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = None
        if self.sqlite_file is not None:
            # keep artifacts beside the db (mlflow/artifacts), not in ./mlruns of whoever ran first
            location = (self.sqlite_file.parent / "artifacts").resolve().as_uri()
        # the UI then opens this experiment on its runs and charts, not on GenAI traces
        kind = {"mlflow.experimentKind": "custom_model_development"}
        try:
            return str(self.client.create_experiment(name, artifact_location=location, tags=kind))
        except MlflowException:
            # two runs starting at once on a new store: the other one created it between calls
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def start_run(
        self, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> Run:
        """A new run with all params and tags logged; ended FAILED if logging them fails."""
        info = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        run = Run(self, info.info.run_id)
        with run.closing(finish=False):
            self.client.log_batch(run.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run

    def run(self, run_id: str) -> Run:
        """A handle on an existing run."""
        return Run(self, run_id)

    def run_link(self, run_id: str) -> str:
        """The run's page in the MLflow UI: on the tracking server itself, else where
        `make mlflow-ui` serves a local store. Credentials in the URI are left out."""
        experiment_id = self.client.get_run(run_id).info.experiment_id
        base = scrub(self.uri) if self.is_server else LOCAL_UI
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_by_alias(self, model_name: str, alias: str) -> Any:
        """The model version behind `alias`, or None when the model or the alias does not exist.

        Any other failure (a store that errs or does not answer) raises
        TrackingUnavailableError: read as "no champion", it would let a gate promote without
        a comparison.
        """
        try:
            return self.client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if names_nothing(exc):
                return None
            raise TrackingUnavailableError(
                f"MLflow tracking store {scrub(self.uri)} failed to say which version of "
                f"{model_name} is '{alias}'; nothing was moved ({one_line(exc)})"
            ) from None

    def existing_version(self, model_name: str, version: str) -> Any:
        """The model version `version` of `model_name`; ModelNotFoundError when there is none."""
        try:
            return self.client.get_model_version(model_name, version)
        except MlflowException:
            raise ModelNotFoundError(f"model {model_name} has no version {version}") from None

    def registered_model(self, name: str) -> Any:
        """The registered model `name`, or None."""
        try:
            return self.client.get_registered_model(name)
        except MlflowException:
            return None


@dataclass(frozen=True)
class Run:
    """One MLflow run of a store: what a flow logs to it, and its end."""

    store: Store
    run_id: str

    @property
    def client(self) -> MlflowClient:
        return self.store.client

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, name: str) -> None:
        """A text artifact (CSV, markdown...) at `name` in the run."""
        self.client.log_text(self.run_id, text, name)

    def log_report(
        self, metrics: dict[str, float], figures: dict[str, Figure], texts: dict[str, str]
    ) -> None:
        """Final metrics, then figures (PNG) and text files, each under its artifact name."""
        self.log_metrics(metrics)
        for name, figure in figures.items():
            self.client.log_figure(self.run_id, figure, name)
        for name, text in texts.items():
            self.log_text(text, name)

    def log_dataset(
        self, sample: pd.DataFrame, rows: int, digest: str, source: str, context: str
    ) -> None:
        """Record a frame of `rows` rows (from the folder `source`), given as `sample`, its rows
        that decide the schema (tracking/dataset.py), as the run's dataset input for `context`.

        The digest is the data's content hash (the `data.sha256` tag), so runs on the same data
        share a dataset in the MLflow UI and runs on new data do not.
        """
        datasets = [dataset_input(sample, rows, digest, source, context)]
        try:
            self.client.log_inputs(self.run_id, datasets=datasets)
        except MlflowException as exc:
            if not created_meanwhile(exc):
                raise
            # another run on the same data created the dataset a moment before this one (the
            # store checks, then inserts): now it exists, and this run links to it
            self.client.log_inputs(self.run_id, datasets=datasets)

    def end(self, status: str = "FINISHED", reason: str = "") -> None:
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", scrub(reason)[:MAX_REASON_CHARS])
        self.client.set_terminated(self.run_id, status)

    @contextmanager
    def closing(self, finish: bool = True) -> Iterator[Run]:
        """End the run FINISHED when the block completes (unless `finish` is False), FAILED
        (with the reason) when it raises."""
        try:
            yield self
        except BaseException as exc:
            try:
                self.end("FAILED", f"{type(exc).__name__}: {exc}")
            except Exception:
                # the store itself is gone (a server that died mid-run): say so, not a stack of
                # connection errors. The run stays RUNNING there; nothing was registered.
                raise TrackingUnavailableError(
                    f"MLflow tracking store {scrub(self.store.uri)} stopped answering during "
                    f"run {self.run_id}, which stays RUNNING there; nothing was registered "
                    f"({one_line(exc)})"
                ) from exc
            raise
        if finish:
            self.end()


def created_meanwhile(exc: MlflowException) -> bool:
    """Whether a write lost a race to create the same row (a unique key, in SQLite's,
    PostgreSQL's or MySQL's words)."""
    text = str(exc).lower()
    return "unique constraint" in text or "duplicate entry" in text


def names_nothing(exc: MlflowException) -> bool:
    """Whether the store answered that the model, version or alias does not exist (sqlite
    stores and servers say 'alias ... not found' as an invalid parameter)."""
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)


@contextmanager
def _one_quick_request() -> Iterator[None]:
    """MLflow's documented settings for no retries and a short timeout, for one block."""
    settings = {
        MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0",
        MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(REACHABLE_TIMEOUT_S),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _unreachable_verdict(exc: Exception) -> str:
    """What the server did: answered with an HTTP error (credentials, a crash), or nothing."""
    if isinstance(exc, RestException):
        return f"answered HTTP {exc.get_http_status_code()}"
    status = re.search(r"error code (\d{3})", str(exc))  # a reply that was not MLflow's JSON
    return f"answered HTTP {status[1]}" if status else f"is unreachable ({type(exc).__name__})"
