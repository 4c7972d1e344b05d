"""The champion gate on a real (sqlite) MLflow registry."""

import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline import tracking

pytestmark = pytest.mark.slow


def register(uri: str, tiny_onnx) -> tuple[str, str]:
    path, example = tiny_onnx
    from lstm_pipeline.predict import OnnxForecaster

    run_id = tracking.start_run(uri, "lstm-forecaster", "gate-test", {"a": 1}, {})
    forecast = OnnxForecaster(path).predict(example)
    version = tracking.log_onnx_model(uri, run_id, path, example, forecast, "lstm-forecaster")
    return run_id, version


def test_champion_only_when_beating_naive_and_the_current_champion(tracking_uri, tiny_onnx):
    client = MlflowClient(tracking_uri)

    def gate(val_mase: float) -> tracking.Promotion:
        run_id, version = register(tracking_uri, tiny_onnx)
        decision = tracking.promote_if_better(
            tracking_uri, "lstm-forecaster", version, run_id, val_mase
        )
        holder = client.get_model_version_by_alias("lstm-forecaster", decision.alias)
        assert str(holder.version) == version
        assert client.get_run(run_id).data.tags["promotion"] == decision.reason
        return decision

    first = gate(1.05)
    assert not first.promoted and "does not beat the naive forecast" in first.reason
    assert tracking.current_alias(client, "lstm-forecaster", "champion") is None
    assert gate(0.95).promoted
    worse = gate(0.97)
    assert not worse.promoted and "worse than champion v2's 0.9500" in worse.reason
    assert str(tracking.current_alias(client, "lstm-forecaster", "champion").version) == "2"
    assert gate(0.90).promoted
    assert str(tracking.current_alias(client, "lstm-forecaster", "champion").version) == "4"
    assert str(tracking.current_alias(client, "lstm-forecaster", "challenger").version) == "3"


def test_registered_model_resolves_to_a_local_onnx_file(tracking_uri, tiny_onnx):
    run_id, version = register(tracking_uri, tiny_onnx)
    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias("lstm-forecaster", "champion", version)
    for uri in ("models:/lstm-forecaster@champion", f"models:/lstm-forecaster/{version}"):
        resolved = tracking.resolve_model(uri, tracking_uri)
        assert resolved.path.suffix == ".onnx" and resolved.path.is_file()
        assert (resolved.version, resolved.run_id) == (version, run_id)
    with pytest.raises(tracking.ModelNotFoundError, match="lstm-forecaster/99 not found"):
        tracking.resolve_model("models:/lstm-forecaster/99", tracking_uri)
