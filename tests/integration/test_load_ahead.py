"""A training command loads its universe ahead, on the core its imports leave idle: the flow
takes that load, and a command that fails first leaves no worker process behind."""

import json
import os
from pathlib import Path

import pytest

from tests.conftest import LEARNABLE_CONFIG, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]

# Two csv tickers load as a universe does: one chunk each, on two worker processes. Each load
# started ahead writes its workers' process ids to $PIDS, then runs `AFTER(cfg)`.
AHEAD = """
import contextlib, json, os
from lstm_pipeline import loading
loading.LOCAL_BATCH, loading.PROCESSES_FROM = 1, 2
os.cpu_count = lambda: 2
started_ahead = loading.ahead

@contextlib.contextmanager
def recorded(cfg, *args):
    with started_ahead(cfg, *args):
        for started in loading._started.values():
            pids = [p.pid for p in started.pool._processes.values()]
            open(os.environ["PIDS"], "w").write(json.dumps(pids))
        AFTER(cfg)
        yield

loading.ahead = recorded
"""
# the load ahead waited for, then every file spoiled: only a load made later reads them so
SPOIL_AFTER_LOADING = """
def AFTER(cfg):
    from concurrent.futures import wait
    for started in loading._started.values():
        wait(started.futures)
    for ticker in cfg.tickers:
        open(f"{cfg.data_dir}/{ticker}.csv", "w").write("not,a,price,file\\n")
"""
NOTHING_AFTER = "def AFTER(cfg):\n    pass\n"


def train(tmp_path: Path, csv_dir: Path, prelude: str) -> tuple[int, str, list[int]]:
    """`train` on csv_dir's AAA and BBB with `prelude`: (exit code, stderr, worker ids)."""
    config = tmp_path / "learnable.yaml"
    config.write_text(LEARNABLE_CONFIG.replace("max_epochs: 10", "max_epochs: 1"))
    pids = tmp_path / "pids.json"
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    args = ["train", *data, "--config", str(config), "--tracking-uri", uri]
    proc = run_cli(*args, cwd=tmp_path, prelude=prelude, env={"PIDS": str(pids)})
    return proc.returncode, proc.stderr, json.loads(pids.read_text()) if pids.exists() else []


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_training_takes_the_load_its_command_started(tmp_path, csv_dir):
    code, stderr, workers = train(tmp_path, csv_dir, AHEAD + SPOIL_AFTER_LOADING)
    assert len(workers) == 2
    assert (csv_dir / "AAA.csv").read_text() == "not,a,price,file\n"  # spoiled before the flow
    assert code == 0, stderr  # trained on the prices loaded ahead
    assert not any(is_running(pid) for pid in workers)


def test_a_command_that_fails_before_its_flow_leaves_no_worker_process(tmp_path, csv_dir):
    no_flow = "import sys\nsys.modules['flows.training'] = None  # its import fails\n"
    code, stderr, workers = train(tmp_path, csv_dir, AHEAD + NOTHING_AFTER + no_flow)
    assert (code, stderr.count("\n")) == (1, 1), stderr
    assert "import of flows.training halted" in stderr
    assert len(workers) == 2
    assert not any(is_running(pid) for pid in workers)


def test_bad_files_loaded_ahead_fail_as_when_the_flow_loads_them(tmp_path, csv_dir):
    bad = csv_dir / "BBB.csv"
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join([*lines[:5], lines[3], *lines[5:]]) + "\n")  # a repeated date
    (csv_dir / "AAA.csv").write_text(bad.read_text())
    ahead = train(tmp_path, csv_dir, AHEAD + NOTHING_AFTER)
    itself = train(tmp_path, csv_dir, AHEAD + NOTHING_AFTER + "loading.ahead = started_ahead\n")
    assert len(ahead[2]) == 2  # the first command loaded ahead
    assert ahead[:2] == itself[:2]
    assert ahead[0] == 2 and "BBB: file" in ahead[1] and "date 2020-01-03 repeats" in ahead[1]
