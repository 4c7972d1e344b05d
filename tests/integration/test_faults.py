"""Faults the pipeline survives, each caused for real: a flaky network, a tracking server that
dies mid-run, a training process killed mid-epoch, a forecast killed mid-write, and two
trainings finishing at once on one registry. (A server down from the start, and bad inputs, are
in test_bad_inputs.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline import gate, predict, registry
from lstm_pipeline.config import build_config
from lstm_pipeline.tracking import Store
from tests.conftest import LEARNABLE_CONFIG, ROOT, export_tiny_model, run_cli, start_cli
from tests.integration.processes import free_port, kill_group, leftovers, new_mark, serving_process
from tests.integration.test_mlflow_server import server_args
from tests.unit.test_registry import register

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]
MODEL = "lstm-forecaster"
SMOKE = str(ROOT / "flows/configs/smoke.yaml")
# MLflow's client retries a dead server for minutes by default: one quick retry here
FAST_FAILING_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def pause_in_epoch_2(folder: Path) -> str:
    """Child prelude: epoch 1 runs and is logged; epoch 2 creates `folder/paused` and waits
    for `folder/go`. (Files, not stdout: Prefect's log_prints swallows a task's prints.)"""
    return f"""
import os, time
from lstm_pipeline import train as _train
_epoch, _calls = _train.train_epoch, []
def _paused(*args, **kwargs):
    _calls.append(1)
    if len(_calls) == 2:
        open(os.path.join({str(folder)!r}, "paused"), "w").close()
        while not os.path.exists(os.path.join({str(folder)!r}, "go")):
            time.sleep(0.05)
    return _epoch(*args, **kwargs)
_train.train_epoch = _paused
"""


def wait_until_paused(proc: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 300
    while not (folder / "paused").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(f"no epoch 2 (exit {proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.1)


def csv_args(folder: Path) -> list[str]:
    return ["--source", "csv", "--data-dir", str(folder), "--tickers", "AAA", "BBB"]


def start_server(folder: Path):
    """A real `mlflow server` over the store in `folder` (kept across restarts), new port."""
    (folder / "mlflow").mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return url, serving_process(
        server_args(port, folder, proxied=False), f"{url}/health", folder / "server.log", env
    )


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL, "champion").version)


def versions(client: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def with_champion(uri: str, tiny_onnx) -> str:
    _, version = register(Store.open(uri), tiny_onnx)
    MlflowClient(uri).set_registered_model_alias(MODEL, "champion", version)
    return version


def test_fetch_rides_out_a_network_outage_and_a_rate_limit(tmp_path):
    config = tmp_path / "fast-retries.yaml"
    config.write_text("data: {retry_attempts: 3, retry_base_delay: 0}\n")
    flaky = (
        "from yfinance.exceptions import YFRateLimitError\n"
        "from tests.fake_yahoo import OFFLINE, install\n"
        "install({'AAPL': 60}, script=[OFFLINE, YFRateLimitError()])"
    )
    cache = tmp_path / "cache"
    proc = run_cli(
        "fetch", "AAPL", "--cache-dir", str(cache), "--config", str(config), "--json",
        cwd=tmp_path, prelude=flaky,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tickers"]["AAPL"]["rows"] == 60
    retries = [line for line in proc.stderr.splitlines() if "failed (" in line]
    assert len(retries) == 2, proc.stderr
    assert "attempt 1/3 failed (DNSError(" in retries[0]
    assert "attempt 2/3 failed (YFRateLimitError: Too Many Requests" in retries[1]
    assert len(pd.read_parquet(cache / "1d" / "AAPL.parquet")) == 60


def test_a_tracking_server_dying_mid_run_fails_the_run_clearly_and_registers_nothing(
    tmp_path, csv_dir, tiny_onnx
):
    store = tmp_path / "server"
    url, server = start_server(store)
    with server as server_proc:
        before = with_champion(url, tiny_onnx)
        proc = start_cli(
            "train", *csv_args(csv_dir), "--config", SMOKE, "--tracking-uri", url,
            cwd=tmp_path, prelude=pause_in_epoch_2(tmp_path), env=FAST_FAILING_CLIENT,
        )  # fmt: skip
        try:
            wait_until_paused(proc, tmp_path)  # epoch 1 is logged on the server
            os.killpg(server_proc.pid, signal.SIGKILL)  # the server goes down, no goodbye
            server_proc.wait(timeout=30)
            (tmp_path / "go").touch()
            _, stderr = proc.communicate(timeout=300)
        finally:
            kill_group(proc)
    assert proc.returncode == 1, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(
        f"lstm-pipeline train: failed: TrackingUnavailableError: MLflow tracking store {url} "
        "stopped answering during run "
    )
    assert "which stays RUNNING there; nothing was registered (" in line
    run_id = re.search(r"during run (\w+),", line).group(1)

    url, server = start_server(store)  # the same store, back up
    with server:
        client = MlflowClient(url)
        assert versions(client) == [before] and champion(client) == before
        run = client.get_run(run_id)  # not lost: its params and first epoch are there
        assert run.info.status == "RUNNING"  # nobody could tell the dead server it failed
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1]
        assert run.data.params["train.max_epochs"] == "2"


def test_training_killed_mid_epoch_leaves_the_registry_alone_and_the_next_run_works(
    tmp_path, csv_dir, tiny_onnx, prefect_harness, clis_on_their_own_server
):
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    before = with_champion(uri, tiny_onnx)
    mark = new_mark()
    proc = start_cli(
        "train", *csv_args(csv_dir), "--config", SMOKE, "--tracking-uri", uri,
        cwd=tmp_path, prelude=pause_in_epoch_2(tmp_path), env=mark,
    )  # fmt: skip
    try:
        wait_until_paused(proc, tmp_path)  # and never told to go on
        os.kill(proc.pid, signal.SIGKILL)  # the OOM killer's way: no handler runs
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert leftovers(mark) == {}  # its temporary Prefect server went with it
    finally:
        kill_group(proc)
    client = MlflowClient(uri)
    assert versions(client) == [before] and champion(client) == before
    (killed,) = [r for r in client.search_runs(["1"]) if r.info.run_name.startswith("manual-")]
    assert killed.info.status == "RUNNING"  # nothing could end it
    assert len(client.get_metric_history(killed.info.run_id, "train_loss")) == 1

    from flows.training import train_flow

    cfg = build_config(
        SMOKE,
        data__source="csv",
        data__data_dir=str(csv_dir),
        data__tickers=("AAA", "BBB"),
        tracking__tracking_uri=uri,
    )
    after = train_flow(cfg)
    assert after["model_version"] == "2"
    assert client.get_run(after["run_id"]).info.status == "FINISHED"
    assert champion(client) == ("2" if after["promoted"] else before)
    swept = client.get_run(killed.info.run_id)  # the next run saw its process was gone
    assert swept.info.status == "KILLED"
    assert swept.data.tags["ended_by"] == f"a later run: process {proc.pid} was gone"


def test_a_short_span_run_that_cannot_face_a_longer_window_champion_says_so_and_exits_0(
    tmp_path, csv_dir
):
    """Issue 13's SIGABRT: a window-60 champion, then a window-10 run on a few months of data.
    The gate found no window on which to score the champion and handed onnxruntime a batch of
    0; the process died (exit 134) with no line, no JSON and its run RUNNING."""
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    model = tmp_path / "champion.onnx"
    example = export_tiny_model(model, window=60, horizon=5)  # the default window and horizon
    store = Store.open(uri)
    _, v1 = register(store, (model, example[:2]))
    store.client.set_registered_model_alias(MODEL, "champion", v1)
    start = pd.read_csv(csv_dir / "AAA.csv")["Date"].iloc[-130]  # about six months
    proc = run_cli(
        "train", *csv_args(csv_dir), "--config", SMOKE, "--start", start,  # window 10
        "--tracking-uri", uri, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["promoted"], result["alias"]) == (False, "challenger")
    assert (
        f"champion v{v1} cannot be scored on these windows (its window of 60 days is longer "
        "than the " in result["reason"]
    )
    assert result["gate"]["gate.compared"] == "false"
    assert "its window of 60 days" in result["gate"]["gate.note"]
    client = MlflowClient(uri)
    assert client.get_run(result["run_id"]).info.status == "FINISHED"
    assert champion(client) == v1
    tags = client.get_model_version(MODEL, result["model_version"]).tags
    assert tags["gate.champion_version"] == v1 and tags["gate.compared"] == "false"


def test_a_forecast_killed_mid_write_keeps_the_previous_file(
    tmp_path, csv_dir, tiny_onnx, clis_on_their_own_server
):
    output = tmp_path / "out" / "forecasts.csv"
    output.parent.mkdir()
    output.write_text("the previous forecasts\n")
    die_before_rename = (
        "import os, signal\n"
        "_replace = os.replace\n"
        "def _die(src, dst):\n"
        f"    if str(dst) == {str(output)!r}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)  # the new file is written, not renamed\n"
        "    _replace(src, dst)\n"
        "os.replace = _die"
    )
    mark = new_mark()
    proc = start_cli(
        "forecast", *csv_args(csv_dir), "--model-uri", str(tiny_onnx[0]), "--output", str(output),
        cwd=tmp_path, prelude=die_before_rename, env=mark,
    )  # fmt: skip
    try:
        assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stderr.read()
        assert leftovers(mark) == {}  # its temporary Prefect server went with it
    finally:
        kill_group(proc)
    assert output.read_text() == "the previous forecasts\n"
    (torn,) = output.parent.glob(".forecasts.csv.*.tmp")  # hidden: nothing reads it
    table = pd.read_csv(torn)
    assert list(table.columns) == list(predict.FORECAST_COLUMNS) and len(table) == 6

    predict.write_forecasts(table, output)  # the next write
    assert pd.read_csv(output).equals(table)
    assert sorted(p.name for p in output.parent.iterdir()) == ["forecasts.csv"]  # swept


def test_a_gate_that_judged_a_former_champion_judges_again_before_taking_the_alias(
    prefect_harness, tracking_uri, learnable_csv_dir, tmp_path, monkeypatch
):
    """The race of two trainings, made deterministic: the second run's gate saw no champion
    (it judged before the first registered), yet the first is champion when it registers."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    from flows import training
    from flows.training import train_flow

    learnable = tmp_path / "learnable.yaml"
    learnable.write_text(LEARNABLE_CONFIG)
    data = {
        "data__source": "csv",
        "data__data_dir": str(learnable_csv_dir),
        "data__tickers": ("AAA", "BBB"),
        "tracking__tracking_uri": tracking_uri,
    }
    first = train_flow(build_config(learnable, **data))
    assert first["promoted"]  # val MASE ~0.25: the strong model

    real_judge, calls = registry.judge, []

    def judged(*args, **kwargs):
        decision = real_judge(*args, **kwargs)
        calls.append(decision)
        return decision

    def judged_before_the_first_registered(*args, **kwargs):
        decision = judged(*args, **kwargs)
        stale = replace(decision.scores, champion_mase=None, champion_version=None)
        return gate.GateDecision(True, "promoted: no previous champion", stale, 0.0)

    # the flow's own judgement (its judge task) saw no champion; the gate's second look,
    # inside register_and_gate, is the real one
    stale_task = task(name="judge", cache_policy=NO_CACHE)(judged_before_the_first_registered)
    monkeypatch.setattr(training, "judge", stale_task)
    monkeypatch.setattr(registry, "judge", judged)
    weak = train_flow(build_config(SMOKE, **data))  # 2 epochs at a small lr: learns little
    client = MlflowClient(tracking_uri)
    assert len(calls) == 2  # judged again, against v1, before taking anything
    assert champion(client) == first["model_version"]
    assert not weak["promoted"] and weak["alias"] == "challenger"
    tags = client.get_model_version(MODEL, weak["model_version"]).tags
    assert tags["gate.champion_version"] == first["model_version"]
    assert tags["gate.decision"] == "challenger"
    assert "previous_champion" not in tags  # it never held the alias


def test_two_trainings_at_once_on_one_server_both_record_and_the_better_is_champion(
    tmp_path, learnable_csv_dir
):
    learnable = tmp_path / "learnable.yaml"
    learnable.write_text(LEARNABLE_CONFIG)
    weaker = tmp_path / "weaker.yaml"  # the same windows, one epoch: a worse model
    weaker.write_text(LEARNABLE_CONFIG.replace("max_epochs: 10", "max_epochs: 1"))
    url, server = start_server(tmp_path / "server")
    with server:
        procs = [
            start_cli(
                "train",
                *csv_args(learnable_csv_dir),
                "--config",
                str(config),
                "--tracking-uri",
                url,
                "--json",
                cwd=tmp_path,
            )  # fmt: skip
            for config in (learnable, weaker)
        ]
        try:
            outputs = [proc.communicate(timeout=500) for proc in procs]
        finally:
            for proc in procs:
                kill_group(proc)
        for proc, (_, stderr) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, stderr
        results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        client = MlflowClient(url)
        assert versions(client) == ["1", "2"]
        for result in results:
            assert client.get_run(result["run_id"]).info.status == "FINISHED"
        # the same data and window: both gates scored on the same validation windows
        mase = {
            str(v.version): float(v.tags["gate.new_val_mase"])
            for v in client.search_model_versions(f"name = '{MODEL}'")
        }
        assert champion(client) == min(mase, key=mase.get), mase


SWALLOWED_INTERRUPT = """
import sys, time
from flows.cli import interrupt_is_final

class Finalizer:
    def __del__(self):
        time.sleep(30)  # Ctrl-C lands here: a KeyboardInterrupt in a finalizer is swallowed

with interrupt_is_final("lstm-pipeline train", grace_s=2):
    print("ready", flush=True)
    Finalizer()
    print("went on", flush=True)
    time.sleep(60)  # the rest of the work
"""


def test_an_interrupt_swallowed_by_a_finalizer_still_ends_the_command(tmp_path):
    """SIGINT during a garbage-collector callback (SQLAlchemy's, asyncio's) was printed as
    'Exception ignored ... KeyboardInterrupt' and the training went on to its end, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWED_INTERRUPT],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(0.5)  # inside the finalizer's sleep
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["lstm-pipeline train: interrupted"]  # no 'Exception ignored'
    assert out == "went on\n"
