"""MLflow: runs, metrics, artifacts, the ONNX model and resolving registry URIs.

The only module that imports mlflow: registry.py (the gate and the `champion` alias moves)
works on the `Client` handed out here. Everything goes through an explicit run id (not
mlflow's thread-local active run), so Prefect may run the calls in any thread. No torch here:
the forecast path resolves models too.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from lstm_pipeline.errors import InputError, has_credentials, one_line, scrub
from lstm_pipeline.files import check_can_create_in, process_exists

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # only the training path logs figures

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"  # relative to the working directory
CHAMPION, CHALLENGER = "champion", "challenger"
LOCAL_UI = "http://127.0.0.1:5000"  # `make mlflow-ui` over the default sqlite store
DEFAULT_MODEL_URI = f"models:/lstm-forecaster@{CHAMPION}"
# what the registered model needs to run anywhere: no torch, no project code
MODEL_REQUIREMENTS = ["onnx", "onnxruntime", "numpy"]


# Seconds the up-front reachability check waits for a tracking server (no retries).
REACHABLE_TIMEOUT_S = 10


class ModelNotFoundError(InputError):
    """A model URI or file that names nothing."""


class TrackingUnavailableError(RuntimeError):
    """The tracking store does not answer; the message says what was (not) done."""


def chosen_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI, else the project's sqlite store (no side effects)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The chosen tracking URI, set for this process; a new sqlite store's folder is created."""
    uri = chosen_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            what = f"tracking store {uri}"
            check_can_create_in(folder, what)  # names what is in the way: a file, a permission
            raise InputError(f"{what}: cannot create {folder} ({exc.strerror})") from None
    if has_credentials(uri):
        # MLflow prints "View run ... at: URI/#/..." when a run ends, password and all
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_reachable(
    uri: str | None,
    experiment: str = "lstm-forecaster",
    nothing_done: str = "nothing was fetched or trained",
) -> None:
    """Raise TrackingUnavailableError within seconds when an HTTP tracking server does not answer.

    MLflow's client retries a dead server for minutes (7 retries with backoff by default):
    right for a blip mid-run, wrong before any work, when a job would fetch and train only to
    find it cannot log. One request, no retries; wrong credentials fail here too. Local stores
    (sqlite, files) are left alone: checking them would create them.
    """
    uri = chosen_tracking_uri(uri)
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    where = f"MLflow tracking server {scrub(uri)}"
    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/get-by-name",
            "GET",
            max_retries=0,
            timeout=REACHABLE_TIMEOUT_S,
            params={"experiment_name": experiment},
        )
    except Exception as exc:  # requests and mlflow wrap connection errors in several types
        raise TrackingUnavailableError(
            f"{where} is unreachable ({type(exc).__name__}); {nothing_done}"
        ) from None
    if response.status_code in (401, 403) or response.status_code >= 500:
        raise TrackingUnavailableError(
            f"{where} answered HTTP {response.status_code}; {nothing_done}"
        )


Client = MlflowClient  # the store's handle, for registry.py


def client_for(uri: str | None = None) -> Client:
    return Client(resolve_tracking_uri(uri))


def version_by_alias(client: Client, model_name: str, alias: str) -> Any:
    """The model version behind `alias`, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def existing_version(client: Client, model_name: str, version: str) -> Any:
    """The model version `version` of `model_name`; ModelNotFoundError when there is none."""
    try:
        return client.get_model_version(model_name, version)
    except MlflowException:
        raise ModelNotFoundError(f"model {model_name} has no version {version}") from None


def start_run(
    uri: str | None, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
) -> str:
    """Create a run with all params and tags logged; returns its id."""
    client = client_for(uri)
    run = client.create_run(
        _experiment_id(client, experiment),
        run_name=run_name,
        tags=tags,
    )
    run_id: str = run.info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run_id


def run_link(uri: str | None, run_id: str) -> str:
    """The run's page in the MLflow UI: on the tracking server itself, else where
    `make mlflow-ui` serves a local store. Credentials in the URI are left out."""
    uri = chosen_tracking_uri(uri)
    experiment_id = client_for(uri).get_run(run_id).info.experiment_id
    base = scrub(uri) if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def ensure_experiment(uri: str | None, name: str) -> str:
    """Create the store (its tables, on a new sqlite file) and the experiment if missing.

    Two processes creating a new sqlite store at once fail ('table ... already exists'):
    whoever starts concurrent runs, such as a scheduler, calls this once first.
    """
    return _experiment_id(client_for(uri), name)


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        # keep artifacts beside the db (mlflow/artifacts), not in ./mlruns of whoever ran first
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    # the UI then opens this experiment on its runs and charts, not on GenAI traces
    kind = {"mlflow.experimentKind": "custom_model_development"}
    try:
        return str(client.create_experiment(name, artifact_location=location, tags=kind))
    except MlflowException:
        # two runs starting at once on a new store: the other one created it between our calls
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def log_metrics(
    uri: str | None, run_id: str, metrics: dict[str, float], step: int | None = None
) -> None:
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
    client_for(uri).log_batch(run_id, metrics=batch)


def set_tags(uri: str | None, run_id: str, tags: dict[str, str]) -> None:
    client_for(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_report(
    uri: str | None,
    run_id: str,
    metrics: dict[str, float],
    figures: dict[str, Figure],
    texts: dict[str, str],
) -> None:
    """Final metrics, then figures (PNG) and text files, each under its artifact name."""
    log_metrics(uri, run_id, metrics)
    client = client_for(uri)
    for name, figure in figures.items():
        client.log_figure(run_id, figure, name)
    for name, text in texts.items():
        client.log_text(run_id, text, name)


def log_dataset(
    uri: str | None, run_id: str, frame: pd.DataFrame, digest: str, source: str, context: str
) -> None:
    """Record `frame` (from the folder `source`) as the run's dataset input for `context`.

    The digest is the data's content hash (the `data.sha256` tag), so runs on the same data
    share a dataset in the MLflow UI and runs on new data do not.
    """
    with warnings.catch_warnings():
        # a local path resolves to two equivalent source classes; mlflow warns and picks one
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = from_pandas(frame, source=source, name=f"prices-{digest}", digest=digest)
    context_tag = InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)
    client_for(uri).log_inputs(
        run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[context_tag])]
    )


def end_run(uri: str | None, run_id: str, status: str = "FINISHED", reason: str = "") -> None:
    client = client_for(uri)
    if reason:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status)


OWNER_TAG = "lstm_pipeline.owner"  # host:pid of the process that ends the run


def owner_of_new_run(uri: str | None, experiment: str) -> dict[str, str]:
    """The tag that makes a new run this process's to end, after ending the orphans its
    predecessors left (end_orphaned_runs). Call it in the process that will end the run."""
    end_orphaned_runs(uri, experiment)
    return {OWNER_TAG: _this_process()}


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_gone(owner: str) -> bool:
    """Whether the `host:pid` owner ran on this host and its process no longer exists."""
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_exists(int(pid))


def end_orphaned_runs(uri: str | None, experiment: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose owner process on this host is gone; their ids.

    A SIGKILLed or OOM-killed job, or one whose server died mid-run, leaves its run RUNNING
    for good. Runs owned on other hosts are left alone (their processes cannot be seen from
    here), and so is any run whose process still exists: a reused process id reads as alive.
    """
    client = client_for(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    ended = []
    for run in client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'"):
        owner = run.data.tags.get(OWNER_TAG, "")
        if _owner_is_gone(owner):
            pid = owner.rpartition(":")[2]
            client.set_tag(run.info.run_id, "ended_by", f"a later run: process {pid} was gone")
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.warning("marked %d run(s) KILLED, their process gone: %s", len(ended), ", ".join(ended))
    return ended


GATE_LOCK_STALE_S = 300  # a gate holds its lock for seconds; a lock this old lost its process


@contextmanager
def champion_lock(client: Client, model_name: str, wait_s: float = 600) -> Iterator[None]:
    """Hold the `champion` alias of `model_name` for one gate: judge and move it inside.

    MLflow has no compare-and-set on aliases, so two gates finishing together could each judge
    the same old champion and the later writer win, however bad. Creating a registered model
    is atomic (names are unique), so `NAME.gate-lock` serves as the lock: the gate that creates
    it holds it, and deletes it when done. A lock whose process is gone (on this host) or that
    is older than GATE_LOCK_STALE_S is broken.
    """
    name = f"{model_name}.gate-lock"
    deadline, misses = time.monotonic() + wait_s, 0
    while True:
        try:
            client.create_registered_model(name, tags={OWNER_TAG: _this_process()})
            break
        except MlflowException:
            held = _registered_model(client, name)
            misses = 0 if held is not None else misses + 1
            if misses > 3:  # not held, yet not creatable: the store itself fails
                raise
            if held is not None and _lock_is_stale(held):
                log.warning("breaking %s, left by %s", name, held.tags.get(OWNER_TAG, "?"))
                _delete_lock(client, name)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{name} was held for over {wait_s:.0f} s") from None
            else:
                time.sleep(random.uniform(0.05, 0.3))  # jittered, so waiters do not march
    try:
        yield
    finally:
        _delete_lock(client, name)


def _registered_model(client: Client, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException:
        return None


def _lock_is_stale(lock: Any) -> bool:
    if _owner_is_gone(lock.tags.get(OWNER_TAG, "")):
        return True
    return time.time() - lock.creation_timestamp / 1000 > GATE_LOCK_STALE_S


def _delete_lock(client: Client, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException:
        pass  # broken by another gate as stale, or the store is gone: nothing left to free


@contextmanager
def closing_run(uri: str | None, run_id: str) -> Iterator[None]:
    """End the run FINISHED when the block completes, FAILED (with the reason) when it raises."""
    try:
        yield
    except BaseException as exc:
        try:
            end_run(uri, run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        except Exception:
            # the store itself is gone (a server that died mid-run): say so, not a stack of
            # connection errors. The run stays RUNNING there; nothing was registered.
            raise TrackingUnavailableError(
                f"MLflow tracking store {scrub(chosen_tracking_uri(uri))} stopped answering "
                f"during run {run_id}, which stays RUNNING there; nothing was registered "
                f"({one_line(exc)})"
            ) from exc
        raise
    end_run(uri, run_id)


def log_onnx_model(
    uri: str | None,
    run_id: str,
    onnx_path: Path,
    example: np.ndarray,
    model_name: str,
) -> str:
    """Log the ONNX file as the run's model (signature, example of batch >= 2), register it.

    The signature comes from a real forecast of `example`. Returns the new model version.
    """
    import onnx

    from lstm_pipeline.predict import OnnxForecaster

    if len(example) < 2:
        raise ValueError("the input example needs batch >= 2 (batch 1 reads as a fixed batch)")
    resolve_tracking_uri(uri)
    forecast = OnnxForecaster(onnx_path).predict(example)
    signature = infer_signature(example, {"forecast": forecast})
    with mlflow.start_run(run_id=run_id):  # log_model needs an active run in this thread
        info = mlflow.onnx.log_model(
            onnx.load_model(str(onnx_path)),
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=MODEL_REQUIREMENTS,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,  # one self-contained file
        )
    # registered here, not by log_model(registered_model_name=...), which prints "Successfully
    # registered model" and "Created version" on stderr, where the CLI keeps only problems
    client = client_for(uri)
    try:
        client.create_registered_model(model_name)
    except MlflowException:
        # it exists, or a concurrent run created it between our calls: the error's code
        # depends on the store and on who won the race, so look rather than read it
        if _registered_model(client, model_name) is None:
            raise
    version = client.create_model_version(
        model_name, info.model_uri, run_id=run_id, model_id=info.model_id
    ).version
    log.info("registered %s version %s (run %s)", model_name, version, run_id)
    return str(version)


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a local .onnx file
    version: str  # registry version, or "file" for a plain .onnx path
    run_id: str


def resolve_model(model_uri: str, uri: str | None = None) -> ResolvedModel:
    """A local ONNX file for `models:/name@alias`, `models:/name/VERSION` or a `.onnx` path."""
    if not model_uri.startswith("models:/"):
        path = Path(model_uri)
        if path.suffix != ".onnx" or not path.is_file():
            raise ModelNotFoundError(
                f"model {model_uri}: not a models:/ URI or an existing .onnx file"
            )
        return ResolvedModel(path, "file", "")
    store = chosen_tracking_uri(uri)
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        # opening a missing sqlite store would create an empty one: answer without touching it
        raise ModelNotFoundError(
            f"model {model_uri} not found: no tracking store at {store} (train first or pass "
            "--tracking-uri)"
        )
    client = client_for(uri)
    version = _model_version(client, model_uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{version.name}/{version.version}", dst_path=_download_folder()
    )
    onnx_files = sorted(Path(local).rglob("*.onnx"))
    if not onnx_files:
        raise ModelNotFoundError(f"model {model_uri}: version {version.version} has no .onnx file")
    return ResolvedModel(onnx_files[0], str(version.version), version.run_id or "")


_downloads: tempfile.TemporaryDirectory[str] | None = None


def _download_folder() -> str:
    """A new folder for one model download, inside one that is removed when the process exits:
    every forecast and every gate with a champion downloads a model, and each used to leave
    its copy in the temp folder for good."""
    global _downloads
    if _downloads is None:
        _downloads = tempfile.TemporaryDirectory(prefix="lstm-pipeline-models-")
    return tempfile.mkdtemp(dir=_downloads.name)


def _model_version(client: Client, model_uri: str) -> Any:
    spec = model_uri.removeprefix("models:/")
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = spec.partition("/")
        return client.get_model_version(name, version)
    except MlflowException as exc:
        first = str(exc).splitlines()[0]
        raise ModelNotFoundError(f"model {model_uri} not found in the registry ({first})") from None


def log_text(uri: str | None, run_id: str, text: str, name: str) -> None:
    """A text artifact (CSV, markdown...) at `name` in the run."""
    client_for(uri).log_text(run_id, text, name)
