"""The registry on a real (sqlite) MLflow store: the gate's verdicts, promote and rollback."""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline import registry, tracking
from lstm_pipeline.errors import InputError
from lstm_pipeline.gate import GateScores, decide

pytestmark = pytest.mark.slow
MODEL = "lstm-forecaster"
TEXT = {"capture_output": True, "text": True, "check": True}


def register(uri: str, tiny_onnx) -> tuple[str, str]:
    """A run with the tiny ONNX model registered under MODEL and no alias: (run id, version)."""
    path, example = tiny_onnx
    run_id = tracking.start_run(uri, MODEL, "registry-test", {"a": 1}, {})
    return run_id, tracking.log_onnx_model(uri, run_id, path, example, MODEL)


def holder(client: MlflowClient, alias: str = "champion") -> str | None:
    version = tracking.version_by_alias(client, MODEL, alias)
    return None if version is None else str(version.version)


def test_gate_verdicts_move_the_aliases_and_are_tagged_on_version_and_run(tracking_uri, tiny_onnx):
    client = MlflowClient(tracking_uri)
    path, example = tiny_onnx

    def gate(new: float, champion: float | None = None) -> tuple[str, registry.Promotion]:
        run_id = tracking.start_run(tracking_uri, MODEL, "gate-test", {}, {})
        scores = GateScores(new, champion, holder(client), 50, 3)
        # judged against the current holder and no other gate running: never judged again,
        # so no validation windows are needed
        version, promotion = registry.register_and_gate(
            tracking_uri, MODEL, run_id, path, example, decide(scores, 0.0), "card", None, 0.0
        )
        run_tags = client.get_run(run_id).data.tags
        version_tags = client.get_model_version(MODEL, version).tags
        for key, value in registry.gate_tags(decide(scores, 0.0)).items():
            assert run_tags[key] == version_tags[key] == value, key
        assert client.get_model_version(MODEL, version).description == "card"
        return version, promotion

    v1, first = gate(1.05)
    assert (first.promoted, first.alias, holder(client, "challenger")) == (False, "challenger", v1)
    assert holder(client) is None
    v2, second = gate(0.95)
    assert second.promoted and holder(client) == v2
    tags = client.get_model_version(MODEL, v2).tags
    assert (tags["previous_champion"], tags["champion_set_by"]) == ("none", "gate")
    assert tags["gate.champion_val_mase"] == "none"
    v3, third = gate(0.97, champion=0.95)
    assert not third.promoted and "worse than champion v2's 0.9500" in third.reason
    assert client.get_model_version(MODEL, v3).tags["gate.champion_val_mase"] == "0.950000"
    v4, fourth = gate(0.90, champion=0.95)
    assert fourth.promoted and holder(client) == v4 and holder(client, "challenger") == v3
    assert client.get_model_version(MODEL, v4).tags["previous_champion"] == v2


def test_promote_and_rollback_keep_a_history_that_rollback_walks_back(tracking_uri, tiny_onnx):
    client = MlflowClient(tracking_uri)
    versions = [register(tracking_uri, tiny_onnx)[1] for _ in range(3)]
    assert versions == ["1", "2", "3"]
    for version in versions:
        moved = registry.promote(tracking_uri, MODEL, version, f"ship v{version}")
        assert moved["changed"] and moved["champion"] == version
    tags = client.get_model_version(MODEL, "3").tags
    assert (tags["previous_champion"], tags["champion_set_by"]) == ("2", "promote")
    assert tags["champion_reason"] == "ship v3" and tags["champion_set_by_user"]

    back = registry.rollback(tracking_uri, MODEL, "v3 forecasts drift")
    assert (back["champion"], back["previous_champion"]) == ("2", "3") and holder(client) == "2"
    assert client.get_model_version(MODEL, "3").tags["rolled_back_reason"] == "v3 forecasts drift"
    assert client.get_model_version(MODEL, "2").tags["champion_set_by"] == "rollback"
    registry.rollback(tracking_uri, MODEL, "further")
    assert holder(client) == "1"
    with pytest.raises(InputError, match="champion v1 of lstm-forecaster has no previous champion"):
        registry.rollback(tracking_uri, MODEL, "nothing before v1")

    again = registry.promote(tracking_uri, MODEL, "1", "already there")
    assert not again["changed"] and holder(client) == "1"
    with pytest.raises(tracking.ModelNotFoundError, match="has no version 99"):
        registry.promote(tracking_uri, MODEL, "99", "no such version")


def test_promoting_the_challenger_by_hand_clears_that_alias(tracking_uri, tiny_onnx):
    client = MlflowClient(tracking_uri)
    _, version = register(tracking_uri, tiny_onnx)
    client.set_registered_model_alias(MODEL, "challenger", version)
    registry.promote(tracking_uri, MODEL, version, "good enough")
    assert holder(client) == version and holder(client, "challenger") is None


def test_rollback_without_a_champion_is_an_input_error(tracking_uri, tiny_onnx):
    register(tracking_uri, tiny_onnx)
    with pytest.raises(InputError, match="has no champion to roll back"):
        registry.rollback(tracking_uri, MODEL, "why not")


def test_registered_model_resolves_to_a_local_onnx_file(tracking_uri, tiny_onnx):
    run_id, version = register(tracking_uri, tiny_onnx)
    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(MODEL, "champion", version)
    for uri in ("models:/lstm-forecaster@champion", f"models:/lstm-forecaster/{version}"):
        resolved = tracking.resolve_model(uri, tracking_uri)
        assert resolved.path.suffix == ".onnx" and resolved.path.is_file()
        assert (resolved.version, resolved.run_id) == (version, run_id)
    with pytest.raises(tracking.ModelNotFoundError, match="lstm-forecaster/99 not found"):
        tracking.resolve_model("models:/lstm-forecaster/99", tracking_uri)


def test_downloaded_models_are_removed_when_the_process_exits(tracking_uri, tiny_onnx):
    _, version = register(tracking_uri, tiny_onnx)
    code = (
        "import sys; from lstm_pipeline.tracking import resolve_model; "
        "print(resolve_model(sys.argv[1], sys.argv[2]).path)"
    )
    uri = f"models:/{MODEL}/{version}"
    done = subprocess.run(
        [sys.executable, "-c", code, uri, tracking_uri], capture_output=True, text=True, check=True
    )
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.suffix == ".onnx" and path.parent != Path(tempfile.gettempdir())
    assert not path.exists()
    download_root = next(p for p in path.parents if p.name.startswith("lstm-pipeline-models-"))
    assert not download_root.exists()


def test_runs_whose_process_is_gone_are_marked_killed_and_no_others(tracking_uri):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT)
    dead_pid = int(gone.stdout)  # exited: nothing runs under this id now (or it reads alive)
    host = socket.gethostname()
    owners = {
        "dead": f"{host}:{dead_pid}",
        "alive": f"{host}:{os.getpid()}",
        "elsewhere": f"other-host:{dead_pid}",  # another machine's process cannot be seen
        "untagged": None,  # a run this code did not start
    }
    runs = {
        name: tracking.start_run(
            tracking_uri, MODEL, name, {}, {} if owner is None else {tracking.OWNER_TAG: owner}
        )
        for name, owner in owners.items()
    }
    assert tracking.end_orphaned_runs(tracking_uri, MODEL) == [runs["dead"]]
    client = MlflowClient(tracking_uri)
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {
        "dead": "KILLED",
        "alive": "RUNNING",
        "elsewhere": "RUNNING",
        "untagged": "RUNNING",
    }
    assert tracking.end_orphaned_runs(tracking_uri, MODEL) == []  # ended runs stay ended
    assert tracking.end_orphaned_runs(tracking_uri, "no-such-experiment") == []


def test_the_champion_lock_lets_one_gate_in_at_a_time(tracking_uri):
    """What a compare-and-set would give: the second waits until the first has let go."""
    import threading
    import time

    client = tracking.client_for(tracking_uri)
    spans: list[tuple[str, float, float]] = []

    def gate(name: str) -> None:
        with tracking.champion_lock(tracking.client_for(tracking_uri), MODEL):
            entered = time.monotonic()
            time.sleep(0.5)  # judging and moving the alias
            spans.append((name, entered, time.monotonic()))

    threads = [threading.Thread(target=gate, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    (_, _, first_left), (_, second_entered, _) = sorted(spans, key=lambda span: span[1])
    assert len(spans) == 2 and second_entered >= first_left
    assert [m.name for m in client.search_registered_models()] == []  # the lock is gone


def test_a_lock_left_by_a_dead_process_is_broken(tracking_uri):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    client = MlflowClient(tracking_uri)
    tracking.ensure_experiment(tracking_uri, MODEL)  # the store's tables
    owner = f"{socket.gethostname()}:{int(ended.stdout)}"
    client.create_registered_model(f"{MODEL}.gate-lock", tags={tracking.OWNER_TAG: owner})
    with tracking.champion_lock(tracking.client_for(tracking_uri), MODEL, wait_s=5):
        held = client.get_registered_model(f"{MODEL}.gate-lock")
        assert held.tags[tracking.OWNER_TAG] == f"{socket.gethostname()}:{os.getpid()}"
    assert client.search_registered_models() == []
