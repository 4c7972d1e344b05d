"""MLflow behind one `Store`: the only package of the library that imports mlflow.

A flow makes one `Store` from its tracking config and hands it (or a `Run` bound to one run)
to every function that logs, registers or downloads. Modules, each one job:

- store.py: `Store` (the resolved URI, the client, the reachability check, experiments) and
  `Run` (params, metrics, tags, figures, texts, datasets, the run's end);
- orphans.py: the owner tag of a run and the sweep that ends runs whose process is gone;
- lock.py: `champion_lock`, one promotion gate at a time;
- register.py: the ONNX file as the run's logged model and a new registry version;
- download.py: a model URI or `.onnx` path as a local ONNX file;
- monitoring.py: a model version's live scores as the curves of its monitoring run.

Everything goes through an explicit run id (not mlflow's thread-local active run), so Prefect
may run the calls in any thread. No torch here: the forecast path resolves models too.

mlflow is imported on first use of a name that needs it: importing it (and its SQL store) takes
about 1.2 s, which a forecast from an .onnx file never needs to pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lstm_pipeline.config import CHALLENGER, CHAMPION, DEFAULT_MODEL_URI
from lstm_pipeline.tracking.download import ResolvedModel, is_registry_uri, resolve_model

if TYPE_CHECKING:
    from lstm_pipeline.tracking.lock import champion_lock
    from lstm_pipeline.tracking.monitoring import log_live_scores
    from lstm_pipeline.tracking.orphans import OWNER_TAG, end_orphaned_runs, owner_of_new_run
    from lstm_pipeline.tracking.register import log_onnx_model, warm_up_model_logging
    from lstm_pipeline.tracking.store import Run, Store

_MODULE_OF = {  # the names whose modules import mlflow
    "champion_lock": "lock",
    "OWNER_TAG": "orphans",
    "end_orphaned_runs": "orphans",
    "owner_of_new_run": "orphans",
    "log_onnx_model": "register",
    "warm_up_model_logging": "register",
    "log_live_scores": "monitoring",
    "Run": "store",
    "Store": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_MODEL_URI",
    "OWNER_TAG",
    "ResolvedModel",
    "Run",
    "Store",
    "champion_lock",
    "end_orphaned_runs",
    "is_registry_uri",
    "log_live_scores",
    "log_onnx_model",
    "owner_of_new_run",
    "resolve_model",
    "warm_up_model_logging",
]
