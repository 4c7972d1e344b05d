"""A command's fixed cost: what it imports, the model resolved ahead, heartbeats, the exit."""

import subprocess
import sys
from pathlib import Path

import pytest

from flows.commands import HEARTBEAT_ENV, _without_heartbeats
from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.tracking import ahead, resolve_model
from tests.unit.test_tracking import register

ROOT = Path(__file__).resolve().parents[2]


def imports_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `code`."""
    show = "import sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{show}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return set(done.stdout.split())


def test_the_forecast_flow_imports_mlflow_only_for_a_registry_model(tiny_onnx):
    assert "mlflow" not in imports_after("import flows.inference, flows.artifacts")
    assert "mlflow" in imports_after("from lstm_pipeline.tracking import Store")
    path, _ = tiny_onnx
    assert "mlflow" not in imports_after(
        f"from lstm_pipeline.tracking import resolve_model; resolve_model({str(path)!r})"
    )


def test_a_training_command_starts_its_load_ahead_before_torch_or_prefect():
    """run_train starts loading (lstm_pipeline.loading.ahead, with splits' row counts) before
    it imports its flow: nothing heavy stands in front of the workers' start."""
    code = "import flows.commands, flows.runners; from lstm_pipeline import loading, splits"
    assert not imports_after(code) & {"torch", "prefect", "mlflow", "pandas"}


def test_a_model_resolved_ahead_is_the_one_the_flow_would_resolve(store, tiny_onnx):
    run_id, version = register(store, tiny_onnx)
    store.client.set_registered_model_alias(MODEL, "champion", version)
    uri = f"models:/{MODEL}@champion"
    ahead.start(uri, store.uri)
    found = ahead.take(uri, store.uri)
    assert found is not None
    assert (found.version, found.run_id) == (version, run_id)
    assert found.path.read_bytes() == resolve_model(uri, store).path.read_bytes()
    assert found.path.parent.name.startswith("lstm-pipeline-model-")  # removed at exit
    assert ahead.take(uri, store.uri) is None  # taken once: a second flow resolves itself


def test_a_model_that_cannot_be_resolved_ahead_is_left_to_the_flow(store, tiny_onnx):
    register(store, tiny_onnx)
    ahead.start(str(tiny_onnx[0]), store.uri)  # a file needs no head start
    assert ahead.take(str(tiny_onnx[0]), store.uri) is None
    assert ahead.take(f"models:/{MODEL}@other", store.uri) is None  # never started
    ahead.start(f"models:/{MODEL}/99", store.uri)
    assert ahead.take(f"models:/{MODEL}/99", store.uri) is None  # failed there
    ahead.start(f"models:/{MODEL}@champion", store.uri)
    slow = ahead._started[f"models:/{MODEL}@champion", store.uri]
    assert ahead.take(f"models:/{MODEL}@champion", store.uri, wait_s=0.01) is None  # too slow
    assert slow.process.poll() is not None  # stopped, not waited for


def test_a_forecast_runs_without_heartbeats_unless_they_are_asked_for(monkeypatch):
    from prefect.settings import get_current_settings

    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    with _without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    configured = get_current_settings().flows.heartbeat_frequency
    assert configured is not None
    monkeypatch.setenv(HEARTBEAT_ENV, "45")  # read when the process starts: left alone here
    with _without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency == configured


@pytest.mark.parametrize(("argv", "code"), [(["--help"], 0), (["train", "--bogus"], 2)])
def test_the_command_exits_with_its_code(argv, code):
    run = "import sys; from flows.cli import entry_point; del sys.argv[1]; entry_point()"
    done = subprocess.run(
        [sys.executable, "-c", run, "lstm-pipeline", *argv], capture_output=True, cwd=ROOT
    )
    assert done.returncode == code


def test_collection_comes_back_once_the_flow_is_imported_and_never_walks_the_imports():
    code = (
        "import gc; from flows.commands import collect_from_now\n"
        "gc.disable(); import flows.inference; collect_from_now()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100_000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.split() == ["True", "True"]


def test_collection_left_alone_where_it_was_never_turned_off():
    import gc

    from flows.commands import collect_from_now

    frozen = gc.get_freeze_count()
    collect_from_now()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_warming_up_a_store_creates_nothing_and_opens_an_existing_one(tmp_path, store):
    from lstm_pipeline.tracking import Store

    missing = Store.open(f"sqlite:///{tmp_path}/none/mlflow.db")
    missing.warm_up()
    assert not (tmp_path / "none").exists() and "client" not in vars(missing)
    existing = Store.open(store.uri)
    existing.warm_up()
    assert "client" in vars(existing)  # made: the flow's first call finds it
