"""The registry on a real (sqlite) MLflow store: the gate's verdicts, promote and rollback."""

import http.server
import json
import threading

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline import registry
from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.config import FeatureConfig
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import InputError, ModelNotFoundError, TrackingUnavailableError
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.gate import GateScores, decide
from lstm_pipeline.tracking import Store, champion_lock, log_onnx_model
from tests.conftest import make_prices


def register(store: Store, tiny_onnx) -> tuple[str, str]:
    """A run with the tiny ONNX model registered under MODEL and no alias: (run id, version)."""
    path, example = tiny_onnx
    run = store.start_run(MODEL, "registry-test", {"a": 1}, {})
    return run.run_id, log_onnx_model(run, path, example, MODEL)


def versions(store: Store) -> list[str]:
    return sorted(str(v.version) for v in store.client.search_model_versions(f"name = '{MODEL}'"))


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


def answering(status: int, error_code: str) -> http.server.HTTPServer:
    """A registry server that answers every request with `status` and MLflow's error JSON."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps({"error_code": error_code, "message": "as told"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    "status,error_code,champion_read",
    [
        (404, "RESOURCE_DOES_NOT_EXIST", "none"),  # the model is not registered yet
        (400, "INVALID_PARAMETER_VALUE", "error"),  # not an 'alias ... not found'
        (500, "INTERNAL_ERROR", "error"),  # a database blip behind the server
        (503, "TEMPORARILY_UNAVAILABLE", "error"),
        (403, "PERMISSION_DENIED", "error"),
    ],
)
def test_only_a_missing_model_or_alias_reads_as_no_champion(
    status, error_code, champion_read, tiny_onnx, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    frames = {}
    for seed, ticker in enumerate(("AAA", "BBB")):
        frame = make_prices(200, seed=seed)
        frames[ticker] = frame.set_index(pd.to_datetime(frame["Date"]))[list(FEATURES)]
    val = build_window_sets(frames, FeatureConfig(window=10, horizon=3))["val"]
    server = answering(status, error_code)
    try:
        store = Store.open(f"http://127.0.0.1:{server.server_port}")
        if champion_read == "none":
            decision = registry.judge(store, MODEL, tiny_onnx[0], val, 0.0)
            assert decision.scores.champion_version is None and decision.scores.windows > 0
        else:
            with pytest.raises(TrackingUnavailableError, match="failed to say which version"):
                registry.judge(store, MODEL, tiny_onnx[0], val, 0.0)
    finally:
        server.shutdown()


def test_a_failed_gate_gives_champion_back_only_under_the_lock(store, tiny_onnx):
    from tests.unit.test_tracking import LOCK, WatchedStore

    v1, v2 = (register(store, tiny_onnx)[1] for _ in range(2))
    registry.promote(store, MODEL, v1, "first")
    registry.promote(store, MODEL, v2, "then the gate that failed half-way")
    waiting = threading.Event()
    watched = WatchedStore(store.uri, lambda found: waiting.set())
    with champion_lock(store, MODEL):  # another gate judging
        withdraw = threading.Thread(target=registry._withdraw, args=(watched, MODEL, v2))
        withdraw.start()
        waiting.wait(timeout=10)  # it reads the lock: it waits for it
        assert holder(store) == v2  # nothing moved while the other gate holds the lock
    withdraw.join(timeout=120)
    assert holder(store) == v1 and versions(store) == [v1]
    assert store.registered_model(LOCK) is None
