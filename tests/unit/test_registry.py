"""The registry on a real (sqlite) MLflow store: the gate's verdicts, promote and rollback."""

import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline import registry
from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.errors import InputError, ModelNotFoundError
from lstm_pipeline.gate import GateScores, decide
from lstm_pipeline.tracking import Store, log_onnx_model


def register(store: Store, tiny_onnx) -> tuple[str, str]:
    """A run with the tiny ONNX model registered under MODEL and no alias: (run id, version)."""
    path, example = tiny_onnx
    run = store.start_run(MODEL, "registry-test", {"a": 1}, {})
    return run.run_id, log_onnx_model(run, path, example, MODEL)


def holder(store: Store, alias: str = "champion") -> str | None:
    version = store.version_by_alias(MODEL, alias)
    return None if version is None else str(version.version)


def test_gate_verdicts_move_the_aliases_and_are_tagged_on_version_and_run(store, tiny_onnx):
    client = MlflowClient(store.uri)
    path, example = tiny_onnx

    def gate(new: float, champion: float | None = None) -> tuple[str, registry.Promotion]:
        run = store.start_run(MODEL, "gate-test", {}, {})
        scores = GateScores(new, champion, holder(store), 50, 3)
        # judged against the current holder and no other gate running: never judged again,
        # so no validation windows are needed
        version, promotion = registry.register_and_gate(
            run, MODEL, path, example, decide(scores, 0.0), "card", None, 0.0
        )
        run_tags = client.get_run(run.run_id).data.tags
        version_tags = client.get_model_version(MODEL, version).tags
        for key, value in registry.gate_tags(decide(scores, 0.0)).items():
            assert run_tags[key] == version_tags[key] == value, key
        assert client.get_model_version(MODEL, version).description == "card"
        return version, promotion

    v1, first = gate(1.05)
    assert (first.promoted, first.alias, holder(store, "challenger")) == (False, "challenger", v1)
    assert holder(store) is None
    v2, second = gate(0.95)
    assert second.promoted and holder(store) == v2
    tags = client.get_model_version(MODEL, v2).tags
    assert (tags["previous_champion"], tags["champion_set_by"]) == ("none", "gate")
    assert tags["gate.champion_val_mase"] == "none"
    v3, third = gate(0.97, champion=0.95)
    assert not third.promoted and "worse than champion v2's 0.9500" in third.reason
    assert client.get_model_version(MODEL, v3).tags["gate.champion_val_mase"] == "0.950000"
    v4, fourth = gate(0.90, champion=0.95)
    assert fourth.promoted and holder(store) == v4 and holder(store, "challenger") == v3
    assert client.get_model_version(MODEL, v4).tags["previous_champion"] == v2


def test_promote_and_rollback_keep_a_history_that_rollback_walks_back(store, tiny_onnx):
    client = MlflowClient(store.uri)
    versions = [register(store, tiny_onnx)[1] for _ in range(3)]
    assert versions == ["1", "2", "3"]
    for version in versions:
        moved = registry.promote(store, MODEL, version, f"ship v{version}")
        assert moved["changed"] and moved["champion"] == version
    tags = client.get_model_version(MODEL, "3").tags
    assert (tags["previous_champion"], tags["champion_set_by"]) == ("2", "promote")
    assert tags["champion_reason"] == "ship v3" and tags["champion_set_by_user"]

    back = registry.rollback(store, MODEL, "v3 forecasts drift")
    assert (back["champion"], back["previous_champion"]) == ("2", "3") and holder(store) == "2"
    assert client.get_model_version(MODEL, "3").tags["rolled_back_reason"] == "v3 forecasts drift"
    assert client.get_model_version(MODEL, "2").tags["champion_set_by"] == "rollback"
    registry.rollback(store, MODEL, "further")
    assert holder(store) == "1"
    with pytest.raises(InputError, match="champion v1 of lstm-forecaster has no previous champion"):
        registry.rollback(store, MODEL, "nothing before v1")

    again = registry.promote(store, MODEL, "1", "already there")
    assert not again["changed"] and holder(store) == "1"
    with pytest.raises(ModelNotFoundError, match="has no version 99"):
        registry.promote(store, MODEL, "99", "no such version")


def test_promoting_the_challenger_by_hand_clears_that_alias(store, tiny_onnx):
    client = MlflowClient(store.uri)
    _, version = register(store, tiny_onnx)
    client.set_registered_model_alias(MODEL, "challenger", version)
    registry.promote(store, MODEL, version, "good enough")
    assert holder(store) == version and holder(store, "challenger") is None


def test_rollback_without_a_champion_is_an_input_error(store, tiny_onnx):
    register(store, tiny_onnx)
    with pytest.raises(InputError, match="has no champion to roll back"):
        registry.rollback(store, MODEL, "why not")
