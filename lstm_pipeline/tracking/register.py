"""The ONNX file as a run's logged model, and a new version of the registered model."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

from lstm_pipeline.tracking.store import Run

log = logging.getLogger(__name__)

# what the registered model needs to run anywhere: no torch, no project code
MODEL_REQUIREMENTS = ["onnx", "onnxruntime", "numpy"]


def warm_up_model_logging() -> None:
    """Make ahead what log_onnx_model's first call would: MLflow checks the model's
    requirements against the installed packages, and the first check in a process lists every
    installed distribution (~0.9 s), kept for the process's later checks."""
    warn_dependency_requirement_mismatches(MODEL_REQUIREMENTS)


def log_onnx_model(run: Run, onnx_path: Path, example: np.ndarray, model_name: str) -> str:
    """Log the ONNX file as the run's model (signature, example of batch >= 2), register it.

    The signature comes from a real forecast of `example`: `forecast`, and a quantile model's
    `quantiles`, the outputs its pyfunc and `mlflow models serve` return. Returns the new model
    version.
    """
    import onnx

    from lstm_pipeline.predict import OnnxForecaster

    if len(example) < 2:
        raise ValueError("the input example needs batch >= 2 (batch 1 reads as a fixed batch)")
    forecast, quantiles = OnnxForecaster(onnx_path).predict_quantiles(example)
    outputs = {"forecast": forecast}
    if quantiles is not None:
        outputs["quantiles"] = quantiles
    signature = infer_signature(example, outputs)
    run.store.make_global()  # log_model knows no client: it logs to the process-wide store
    with mlflow.start_run(run_id=run.run_id):  # and needs an active run in this thread
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
    client = run.client
    try:
        client.create_registered_model(model_name)
    except MlflowException:
        # it exists, or a concurrent run created it between our calls: the error's code
        # depends on the store and on who won the race, so look rather than read it
        if run.store.registered_model(model_name) is None:
            raise
    version = client.create_model_version(
        model_name, info.model_uri, run_id=run.run_id, model_id=info.model_id
    ).version
    log.info("registered %s version %s (run %s)", model_name, version, run.run_id)
    return str(version)
