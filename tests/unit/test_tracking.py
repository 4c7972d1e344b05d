"""The tracking package on a throwaway sqlite store: no server, real MLflow."""

import http.server
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.errors import InputError, ModelNotFoundError, TrackingUnavailableError
from lstm_pipeline.tracking import (
    OWNER_TAG,
    Store,
    champion_lock,
    end_orphaned_runs,
    lock,
    log_onnx_model,
    owner_of_new_run,
    resolve_model,
)
from lstm_pipeline.tracking.store import LOCAL_UI

TEXT = {"capture_output": True, "text": True, "check": True}


def register(store: Store, tiny_onnx) -> tuple[str, str]:
    path, example = tiny_onnx
    run = store.start_run(MODEL, "registry-test", {"a": 1}, {})
    return run.run_id, log_onnx_model(run, path, example, MODEL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_global_uri(monkeypatch):
    """MLflow's global URI (and the variable it mirrors itself into) restored after the test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI", ""))
    yield
    mlflow.set_tracking_uri(None)  # then monkeypatch puts the variable back


def exited_pid() -> int:
    """The id of a process that has exited: nothing runs under it now (or it reads alive)."""
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT).stdout
    )


def test_the_uri_is_the_given_one_else_the_environment_else_the_project_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere/mlflow.db")
    assert Store.open("sqlite:///given/mlflow.db").uri == "sqlite:///given/mlflow.db"
    assert Store.open().uri == "sqlite:///elsewhere/mlflow.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert Store.open().uri == "sqlite:///mlflow/mlflow.db"


def test_opening_a_store_touches_nothing_until_it_is_used(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/new/mlflow.db")
    store.ensure_reachable()  # a local store: nothing to ask, and nothing is created
    assert not (tmp_path / "new").exists()
    store.experiment_id(MODEL)
    assert (tmp_path / "new" / "mlflow.db").is_file()


def test_a_store_that_cannot_be_created_is_bad_input(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = Store.open(f"sqlite:///{tmp_path}/file/sub/mlflow.db")
    with pytest.raises(InputError, match="tracking store .*: cannot"):
        store.experiment_id(MODEL)


def test_a_run_logs_params_tags_metrics_and_texts_and_ends_finished(store):
    with store.start_run(MODEL, "a-run", {"lr": 0.01}, {"trigger": "manual"}).closing() as run:
        for epoch in (1, 2, 3):
            run.log_metrics({"val_loss": 1.0 / epoch}, step=epoch)
        run.set_tags({"device": "cpu"})
        run.log_text("a,b\n1,2\n", "metrics/table.csv")
    record = MlflowClient(store.uri).get_run(run.run_id)
    assert record.info.status == "FINISHED" and record.info.run_name == "a-run"
    assert record.data.params == {"lr": "0.01"}
    assert record.data.tags["trigger"] == "manual" and record.data.tags["device"] == "cpu"
    history = MlflowClient(store.uri).get_metric_history(run.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    local = mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path="metrics/table.csv", tracking_uri=store.uri
    )
    assert Path(local).read_text() == "a,b\n1,2\n"


def test_a_run_whose_block_raises_ends_failed_with_the_reason(store):
    run = store.start_run(MODEL, "doomed", {}, {})
    with pytest.raises(ValueError, match="bad window"), run.closing():
        raise ValueError("bad window")
    record = MlflowClient(store.uri).get_run(run.run_id)
    assert record.info.status == "FAILED"
    assert record.data.tags["failure_reason"] == "ValueError: bad window"


def test_a_run_whose_params_cannot_be_logged_ends_failed_not_running(store):
    with pytest.raises(MlflowException):
        store.start_run(MODEL, "doomed", {"bad*name": 1}, {})  # a name MLflow refuses
    (run,) = MlflowClient(store.uri).search_runs([store.experiment_id(MODEL)])
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("MlflowException")


def test_artifacts_live_beside_the_sqlite_store(store):
    experiment = MlflowClient(store.uri).get_experiment(store.experiment_id(MODEL))
    assert experiment.artifact_location == (store.sqlite_file.parent / "artifacts").as_uri()
    assert store.experiment_id(MODEL) == experiment.experiment_id  # found, not created again


def test_the_store_never_moves_mlflows_global_uri_except_to_register(
    store, tiny_onnx, own_global_uri
):
    mlflow.set_tracking_uri(f"sqlite:///{tempfile.mkdtemp()}/other.db")
    before = mlflow.get_tracking_uri()
    run = store.start_run(MODEL, "quiet", {}, {})
    run.log_metrics({"x": 1.0})
    run.end()
    store.version_by_alias(MODEL, "champion")
    store.run_link(run.run_id)
    assert mlflow.get_tracking_uri() == before
    register(store, tiny_onnx)  # log_model knows only the global store
    assert mlflow.get_tracking_uri() == store.uri


def test_a_pickled_store_travels_as_the_uri_it_was_opened_with(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    default = Store.open()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a/worker/own.db")
    assert pickle.loads(pickle.dumps(default)).uri == "sqlite:///a/worker/own.db"
    run = store.start_run(MODEL, "pickled", {}, {})
    copy = pickle.loads(pickle.dumps(run))
    assert (copy.store.uri, copy.run_id) == (store.uri, run.run_id)


def test_a_run_link_points_at_the_local_ui_for_a_local_store(store):
    run = store.start_run(MODEL, "linked", {}, {})
    experiment_id = store.experiment_id(MODEL)
    assert (
        store.run_link(run.run_id) == f"{LOCAL_UI}/#/experiments/{experiment_id}/runs/{run.run_id}"
    )


def test_a_server_that_is_not_there_fails_in_seconds_not_minutes():
    store = Store.open(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="is unreachable .*; nothing was fetched"):
        store.ensure_reachable()
    assert time.monotonic() - started < 30  # MLflow's own retries take minutes


class _Refuses(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"who are you")

    def log_message(self, *args) -> None:
        pass


def test_a_server_that_refuses_the_credentials_is_named_with_its_answer():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = Store.open(f"http://user:secret@127.0.0.1:{server.server_port}")
        with pytest.raises(TrackingUnavailableError) as raised:
            store.ensure_reachable(nothing_done="no alias was moved")
    finally:
        server.shutdown()
    assert "answered HTTP 401; no alias was moved" in str(raised.value)
    assert "secret" not in str(raised.value) and "secret" not in repr(store)


def test_registered_model_resolves_to_a_local_onnx_file(store, tiny_onnx):
    run_id, version = register(store, tiny_onnx)
    store.client.set_registered_model_alias(MODEL, "champion", version)
    for uri in (f"models:/{MODEL}@champion", f"models:/{MODEL}/{version}"):
        resolved = resolve_model(uri, store)
        assert resolved.path.suffix == ".onnx" and resolved.path.is_file()
        assert (resolved.version, resolved.run_id) == (version, run_id)
    with pytest.raises(ModelNotFoundError, match=f"{MODEL}/99 not found"):
        resolve_model(f"models:/{MODEL}/99", store)


def test_a_registry_uri_on_a_missing_sqlite_store_creates_nothing(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/none/mlflow.db")
    with pytest.raises(ModelNotFoundError, match="no tracking store at"):
        resolve_model(f"models:/{MODEL}@champion", store)
    assert not (tmp_path / "none").exists()


def test_downloaded_models_are_removed_when_the_process_exits(store, tiny_onnx):
    _, version = register(store, tiny_onnx)
    code = (
        "import sys; from lstm_pipeline.tracking import Store, resolve_model; "
        "print(resolve_model(sys.argv[1], Store.open(sys.argv[2])).path)"
    )
    uri = f"models:/{MODEL}/{version}"
    done = subprocess.run([sys.executable, "-c", code, uri, store.uri], **TEXT)
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.suffix == ".onnx" and path.parent != Path(tempfile.gettempdir())
    assert not path.exists()
    download_root = next(p for p in path.parents if p.name.startswith("lstm-pipeline-models-"))
    assert not download_root.exists()


def test_runs_whose_process_is_gone_are_marked_killed_and_no_others(store):
    dead_pid, host = exited_pid(), socket.gethostname()
    owners = {
        "dead": f"{host}:{dead_pid}",
        "alive": f"{host}:{os.getpid()}",
        "elsewhere": f"other-host:{dead_pid}",  # another machine's process cannot be seen
        "untagged": None,  # a run this code did not start
    }
    runs = {
        name: store.start_run(MODEL, name, {}, {} if owner is None else {OWNER_TAG: owner}).run_id
        for name, owner in owners.items()
    }
    assert end_orphaned_runs(store, MODEL) == [runs["dead"]]
    client = MlflowClient(store.uri)
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {
        "dead": "KILLED",
        "alive": "RUNNING",
        "elsewhere": "RUNNING",
        "untagged": "RUNNING",
    }
    assert end_orphaned_runs(store, MODEL) == []  # ended runs stay ended
    assert end_orphaned_runs(store, "no-such-experiment") == []


def test_versions_a_killed_gate_never_decided_on_are_tagged_interrupted_and_no_others(
    store, tiny_onnx
):
    """SIGKILL between registering a version and its gate's tags (or its alias) left a
    version no one could explain; the next training's sweep says what happened."""
    path, example = tiny_onnx
    host = socket.gethostname()
    owners = {
        "killed": f"{host}:{exited_pid()}",
        "killed-after-its-gate": f"{host}:{exited_pid()}",
        "alive": f"{host}:{os.getpid()}",  # a gate still at work in a live process
    }
    versions = {}
    for name, owner in owners.items():
        run = store.start_run(MODEL, name, {}, {OWNER_TAG: owner})
        versions[name] = log_onnx_model(run, path, example, MODEL)
    store.client.set_registered_model_alias(MODEL, "champion", versions["killed"])
    store.client.set_model_version_tag(
        MODEL, versions["killed-after-its-gate"], "gate.decision", "challenger"
    )
    assert owner_of_new_run(store, MODEL, MODEL) == {OWNER_TAG: f"{host}:{os.getpid()}"}
    tags = {n: store.client.get_model_version(MODEL, v).tags for n, v in versions.items()}
    assert tags["killed"]["gate.decision"] == "interrupted"
    assert tags["killed"]["promotion"] == (
        f"interrupted: the training process {owners['killed']} was gone before its gate "
        "decided (aliases held: champion); judge it by hand with promote"
    )
    assert tags["killed-after-its-gate"]["gate.decision"] == "challenger"
    assert "gate.decision" not in tags["alive"] and "promotion" not in tags["alive"]


def test_the_champion_lock_lets_one_gate_in_at_a_time(store):
    """What a compare-and-set would give: the second waits until the first has let go."""
    spans: list[tuple[str, float, float]] = []

    def gate(name: str) -> None:
        with champion_lock(Store.open(store.uri), MODEL):  # each gate its own store
            entered = time.monotonic()
            time.sleep(0.5)  # judging and moving the alias
            spans.append((name, entered, time.monotonic()))

    store.experiment_id(MODEL)  # the store's tables, before two threads race to create them
    threads = [threading.Thread(target=gate, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    (_, _, first_left), (_, second_entered, _) = sorted(spans, key=lambda span: span[1])
    assert len(spans) == 2 and second_entered >= first_left
    assert [m.name for m in store.client.search_registered_models()] == []  # the lock is gone


def test_a_lock_left_by_a_dead_process_is_broken(store):
    owner = f"{socket.gethostname()}:{exited_pid()}"
    store.experiment_id(MODEL)  # the store's tables
    store.client.create_registered_model(f"{MODEL}.gate-lock", tags={OWNER_TAG: owner})
    with champion_lock(store, MODEL, wait_s=5):
        held = store.client.get_registered_model(f"{MODEL}.gate-lock")
        assert held.tags[OWNER_TAG] == f"{socket.gethostname()}:{os.getpid()}"
    assert store.client.search_registered_models() == []


LOCK = f"{MODEL}.gate-lock"


def lock_generation(store: Store) -> str | None:
    """The token of the lock now in the store (its creation time for a lock without one)."""
    held = store.registered_model(LOCK)
    if held is None:
        return None
    return held.tags.get(lock.TOKEN_TAG) or f"created-{held.creation_timestamp}"


class WatchedStore(Store):
    """A store that tells `on_read` each time the lock is read through it."""

    def __init__(self, uri: str, on_read) -> None:
        super().__init__(uri)
        self.on_read = on_read

    def registered_model(self, name: str):
        found = super().registered_model(name)
        if name == LOCK:
            self.on_read(found)
        return found


def test_two_waiters_that_saw_the_same_stale_lock_break_it_once_and_the_fresh_lock_survives(
    store, caplog
):
    """The second waiter read the dead gate's lock, then the first broke it and took a fresh
    one; the second must not delete the fresh lock by name."""
    store.experiment_id(MODEL)
    owner = f"{socket.gethostname()}:{exited_pid()}"
    store.client.create_registered_model(LOCK, tags={OWNER_TAG: owner})  # a dead gate's
    saw_stale, first_inside, second_moved_on = (threading.Event() for _ in range(3))
    reads: list[object] = []
    spans: dict[str, tuple[float, float]] = {}

    def second_reads(found) -> None:
        reads.append(found)
        if len(reads) == 1:  # the dead gate's lock: stale; hold on until the first is inside
            saw_stale.set()
            first_inside.wait(timeout=60)
        elif len(reads) >= 4:
            second_moved_on.set()

    def second() -> None:
        with champion_lock(WatchedStore(store.uri, second_reads), MODEL, wait_s=120):
            second_moved_on.set()
            spans["second"] = (time.monotonic(), time.monotonic())

    waiter = threading.Thread(target=second)
    waiter.start()
    assert saw_stale.wait(timeout=60)
    with champion_lock(Store.open(store.uri), MODEL, wait_s=60):
        entered = time.monotonic()
        fresh = lock_generation(store)
        first_inside.set()
        second_moved_on.wait(timeout=60)  # the second has tried its break, and waits again
        survived = lock_generation(store)
        spans["first"] = (entered, time.monotonic())
    waiter.join(timeout=120)
    assert survived == fresh is not None
    assert spans["second"][0] >= spans["first"][1]  # one gate at a time
    assert len([r for r in caplog.records if "broke" in r.getMessage()]) == 1
    assert store.client.search_registered_models() == []  # no lock, no break marker left


def test_a_fast_client_clock_does_not_break_a_live_lock(store, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2, raising=False)
    monkeypatch.setattr(lock, "GATE_LOCK_STALE_S", 2)
    store.experiment_id(MODEL)
    holding, done = threading.Event(), threading.Event()

    def holder() -> None:
        with champion_lock(Store.open(store.uri), MODEL):
            holding.set()
            done.wait(timeout=60)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(timeout=60)
    held = lock_generation(store)
    skewed = time.time() + 600  # this client's clock: ten minutes ahead of the store's
    monkeypatch.setattr(time, "time", lambda: skewed)
    try:
        with pytest.raises(TimeoutError), champion_lock(store, MODEL, wait_s=5):
            pass
        assert lock_generation(store) == held
    finally:
        done.set()
        thread.join(timeout=60)


def test_a_lock_whose_heartbeat_stops_is_broken_after_the_waiters_own_timeout(store, monkeypatch):
    monkeypatch.setattr(lock, "GATE_LOCK_STALE_S", 1)
    store.experiment_id(MODEL)
    # a gate on another host (its process cannot be seen from here) that stopped beating
    store.client.create_registered_model(
        LOCK, tags={OWNER_TAG: "elsewhere:1", lock.TOKEN_TAG: "t1", lock.HEARTBEAT_TAG: "7"}
    )
    with champion_lock(store, MODEL, wait_s=30):
        assert lock_generation(store) not in (None, "t1")
    assert store.client.search_registered_models() == []


def test_only_the_owner_of_a_lock_releases_it(store):
    store.experiment_id(MODEL)
    with champion_lock(store, MODEL):
        # meanwhile this gate was judged stale, its lock broken and taken by another gate
        store.client.delete_registered_model(LOCK)
        store.client.create_registered_model(
            LOCK, tags={OWNER_TAG: "elsewhere:2", lock.TOKEN_TAG: "theirs"}
        )
    assert lock_generation(store) == "theirs"


LOCAL_STORES = {  # a local store's URI, given its folder
    "path": str,
    "file-uri": lambda folder: folder.as_uri(),
    "file-colon": lambda folder: f"file:{folder}",
    "localhost": lambda folder: f"file://localhost{folder}",
    "relative": lambda folder: os.path.relpath(folder),
}


@pytest.mark.parametrize("kind", sorted(LOCAL_STORES))
def test_a_local_file_store_that_does_not_exist_is_missing_and_stays_so(
    tmp_path, monkeypatch, kind
):
    monkeypatch.chdir(tmp_path)
    store = Store.open(LOCAL_STORES[kind](tmp_path / "none" / "mlruns"))
    assert store.is_missing
    with pytest.raises(ModelNotFoundError, match=f"no tracking store at {store.uri} "):
        resolve_model(f"models:/{MODEL}@champion", store)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "none" / "mlruns").mkdir(parents=True)
    assert not store.is_missing


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:5000", "databricks", "postgresql://u@db/mlflow", "file://host/x"]
)
def test_a_store_that_is_not_local_is_never_missing(uri):
    assert not Store.open(uri).is_missing
