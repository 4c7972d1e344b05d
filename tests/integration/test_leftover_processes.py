"""Nothing a command starts outlives it: a CLI killed mid-run, by SIGKILL (the OOM killer's way)
or SIGABRT (a native library's abort), takes its temporary Prefect server and its Dask workers
with it, though no handler of its own runs. The CLIs here run without PREFECT_API_URL, as a
user's command does, so each starts that server itself. Only the CLI's own process is killed,
not its process group: its children must end on their own."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import start_cli
from tests.integration.processes import kill_group, leftovers, marked_processes, new_mark

pytestmark = pytest.mark.slow
SERVER = "prefect.server.api.server:create_app"  # on the command line of Prefect's server
DASK_WORKER = "multiprocessing.spawn"  # a worker process of a local Dask cluster


def pause_in_forecast_table(folder: Path) -> str:
    """Child prelude: the flow runs (its tickers fetched, on Dask workers if asked) up to the
    forecast, then creates `folder/paused` and waits there for good."""
    return f"""
import os, time
from lstm_pipeline import predict
def _paused(*args, **kwargs):
    open(os.path.join({str(folder)!r}, "paused"), "w").close()
    while True:
        time.sleep(1)
predict.forecast_table = _paused
"""


def kill_paused_forecast(
    sig: signal.Signals, folder: Path, csv_dir: Path, model: Path, *options: str
) -> tuple[dict[int, str], dict[int, str]]:
    """Start `forecast`, let it pause, send `sig` to the CLI's process alone; the processes
    its command had started before, and those still alive after a bounded wait."""
    mark = new_mark()
    proc = start_cli(
        "forecast", "--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB",
        "--model-uri", str(model), "--output", str(folder / "forecasts.csv"), *options,
        cwd=folder, prelude=pause_in_forecast_table(folder), env=mark,
    )  # fmt: skip
    try:
        wait_for_pause(proc, folder)
        started = marked_processes(mark)
        proc.send_signal(sig)  # the CLI's own process, not its group
        assert proc.wait(timeout=30) == -sig
        return started, leftovers(mark)
    finally:
        kill_group(proc)


def wait_for_pause(proc: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 300
    while not (folder / "paused").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError(f"no pause (exit {proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT], ids=["SIGKILL", "SIGABRT"])
def test_a_killed_command_takes_its_temporary_prefect_server_with_it(
    sig, tmp_path, csv_dir, tiny_onnx
):
    started, left = kill_paused_forecast(sig, tmp_path, csv_dir, tiny_onnx[0])
    assert [cmd for cmd in started.values() if SERVER in cmd], started  # there was one
    assert left == {}


def test_a_killed_command_takes_its_local_dask_cluster_and_server_with_it(
    tmp_path, csv_dir, tiny_onnx
):
    started, left = kill_paused_forecast(
        signal.SIGKILL, tmp_path, csv_dir, tiny_onnx[0], "--task-runner", "dask"
    )
    assert [cmd for cmd in started.values() if DASK_WORKER in cmd], started
    assert [cmd for cmd in started.values() if SERVER in cmd], started
    assert left == {}
