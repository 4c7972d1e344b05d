"""A model URI (`models:/name@alias`, `models:/name/VERSION`) or `.onnx` path as a local file."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_pipeline.errors import ModelNotFoundError, one_line

if TYPE_CHECKING:  # mlflow only for a registry URI: a plain .onnx path never imports it
    from lstm_pipeline.tracking.store import Store

REGISTRY_SCHEME = "models:/"
FILE_VERSION = "file"  # the version of a model given as a plain .onnx path


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # a local .onnx file
    version: str  # registry version, or FILE_VERSION for a plain .onnx path
    run_id: str


def is_registry_uri(model_uri: str) -> bool:
    return model_uri.startswith(REGISTRY_SCHEME)


def resolve_model(model_uri: str, store: Store | None = None) -> ResolvedModel:
    """A local ONNX file for a registry URI (from `store`, which it needs) or a `.onnx` path."""
    if not is_registry_uri(model_uri):
        path = Path(model_uri)
        if path.suffix != ".onnx" or not path.is_file():
            raise ModelNotFoundError(
                f"model {model_uri}: not a models:/ URI or an existing .onnx file"
            )
        return ResolvedModel(path, FILE_VERSION, "")
    if store is None:
        raise ValueError(f"model {model_uri}: a registry URI needs a tracking store")
    if store.is_missing:
        # opening a missing local store would create an empty one: answer without touching it
        raise ModelNotFoundError(
            f"model {model_uri} not found: no tracking store at {store.uri} (train first or pass "
            "--tracking-uri)"
        )
    import mlflow

    version = _model_version(store, model_uri)
    # MLflow resolves a registry version to its logged model through the process-wide registry,
    # whatever download_artifacts is given: point it here first
    store.make_global()
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{REGISTRY_SCHEME}{version.name}/{version.version}",
        dst_path=_download_folder(),
        tracking_uri=store.uri,
    )
    onnx_files = sorted(Path(local).rglob("*.onnx"))
    if not onnx_files:
        raise ModelNotFoundError(f"model {model_uri}: version {version.version} has no .onnx file")
    return ResolvedModel(onnx_files[0], str(version.version), version.run_id or "")


_downloads: tempfile.TemporaryDirectory[str] | None = None


def _download_folder() -> str:
    """A new folder for one model download, inside one that is removed when the process exits:
    every forecast and every gate with a champion downloads a model, and each copy would
    otherwise stay in the temp folder for good."""
    global _downloads
    if _downloads is None:
        _downloads = tempfile.TemporaryDirectory(prefix="lstm-pipeline-models-")
    return tempfile.mkdtemp(dir=_downloads.name)


def _model_version(store: Store, model_uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    spec = model_uri.removeprefix(REGISTRY_SCHEME)
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            return store.client.get_model_version_by_alias(name, alias)
        name, _, version = spec.partition("/")
        return store.client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"model {model_uri} not found in the registry ({one_line(exc)})"
        ) from None
