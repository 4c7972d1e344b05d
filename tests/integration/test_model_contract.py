"""A registered model whose file lists other features than the data's: the forecast refuses it
through the registry as it does a file, exit 2, one line naming the model URI, nothing written."""

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import alter_metadata, run_cli
from tests.unit.test_registry import register

pytestmark = pytest.mark.slow


def test_a_registry_model_with_reordered_features_is_refused(
    store, tiny_onnx, tmp_path, clis_on_prefect_server
):
    _, version = register(store, tiny_onnx)
    MlflowClient(store.uri).set_registered_model_alias("lstm-forecaster", "champion", version)
    stored = [p for p in (tmp_path / "mlflow").rglob("*.onnx")]
    assert stored, "the registered version's file"
    for path in stored:  # as an exporter with another feature order would have written it
        alter_metadata(path, path, {"features": '["Close", "Open", "High", "Low", "Volume"]'})
    work = tmp_path / "work"
    work.mkdir()
    done = run_cli(
        "forecast",
        "--source",
        "sample",
        "--tickers",
        "AAPL",
        "--tracking-uri",
        store.uri,
        cwd=work,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0] == (
        f"lstm-pipeline forecast: error: model models:/lstm-forecaster@champion (version "
        f"{version}) takes features 'Close,Open,High,Low,Volume', but the data provides "
        "Open,High,Low,Close,Volume (the same names in another order)"
    )
    assert list(work.iterdir()) == []
