"""A registry model resolved in a second process while a forecast command starts.

Importing mlflow and its SQL store takes about 1.2 s of CPU, a third of a small forecast. The
command starts this process first (`start`), then imports Prefect and starts its flow on the
other core; the flow, in the same process, takes the file found (`take`) where it would resolve
the model. Anything that goes wrong here is only a lost head start: the flow then resolves the
model itself, with its retries and one-line errors.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lstm_pipeline.tracking.download import ResolvedModel, is_registry_uri

WAIT_S = 60  # then the flow resolves the model itself (a remote store that slow fails there)


@dataclass
class Ahead:
    """The process resolving a model, and the folder (removed at exit) it copies the file to."""

    process: subprocess.Popen[str]
    folder: tempfile.TemporaryDirectory[str]


_started: dict[tuple[str, str | None], Ahead] = {}  # by (model URI, tracking URI)
_folders: list[tempfile.TemporaryDirectory[str]] = []  # kept until exit: the flow reads the file


def start(model_uri: str, tracking_uri: str | None) -> None:
    """Begin resolving `model_uri` in another process (a plain .onnx path needs nothing)."""
    if not is_registry_uri(model_uri) or (model_uri, tracking_uri) in _started:
        return
    folder = tempfile.TemporaryDirectory(prefix="lstm-pipeline-model-")
    _folders.append(folder)
    command = [sys.executable, "-m", __name__, model_uri, folder.name, tracking_uri or ""]
    # its errors are the flow's to report, if it meets them too
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    atexit.register(_stop, process)  # a command that fails before waiting leaves no orphan
    _started[model_uri, tracking_uri] = Ahead(process, folder)


def take(model_uri: str, tracking_uri: str | None, wait_s: float = WAIT_S) -> ResolvedModel | None:
    """The model a `start` with the same URIs resolved, waited for; None when none was started
    in this process (a served deployment's run), or it failed or took too long."""
    ahead = _started.pop((model_uri, tracking_uri), None)
    if ahead is None:
        return None
    try:
        out, _ = ahead.process.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        _stop(ahead.process)
        return None
    if ahead.process.returncode != 0 or not out.strip():
        return None
    found = json.loads(out.strip().splitlines()[-1])
    return ResolvedModel(Path(found["path"]), found["version"], found["run_id"])


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _resolve_into(model_uri: str, folder: str, tracking_uri: str) -> ResolvedModel:
    """The flow's own steps (reachable store, then the registry), the file copied to `folder`:
    this process's download folder goes when it exits."""
    from lstm_pipeline.tracking.download import resolve_model
    from lstm_pipeline.tracking.store import Store

    store = Store.open(tracking_uri or None)
    store.ensure_reachable()
    model = resolve_model(model_uri, store)
    kept = Path(folder) / model.path.name
    shutil.copyfile(model.path, kept)
    return ResolvedModel(kept, model.version, model.run_id)


if __name__ == "__main__":
    gc.disable()  # a process of seconds: mlflow's imports would be walked by every collection
    model = _resolve_into(*sys.argv[1:4])
    print(json.dumps({"path": str(model.path), "version": model.version, "run_id": model.run_id}))
    sys.stdout.flush()
    os._exit(0)  # the command waits for this exit: skip the ~0.4 s of interpreter teardown
