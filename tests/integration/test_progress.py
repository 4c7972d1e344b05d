"""Progress of long CLI work: live bars on a terminal, plain lines anywhere else."""

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

# run_cli's commands run their flows on the harness's server; the terminal test's command starts
# a temporary server of its own, as a plain `lstm-pipeline train` does
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clis_on_prefect_server")]

TINY = "features: {window: 10, horizon: 3}\nmodel: {hidden_size: 8, num_layers: 1}\n"
TINY += "train: {max_epochs: 3, patience: 5, batch_size: 64}\n"


def train_args(tmp_path: Path, csv_dir: Path) -> list[str]:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    return ["train", *data, "--config", str(config), "--tracking-uri", uri]


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """`lstm-pipeline ARGS` with stdout on a pseudo-terminal; (exit code, what it showed)."""
    leader, follower = pty.openpty()
    code = "import sys\nfrom flows.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=cwd, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=300), shown.decode(errors="replace")


def test_epochs_show_as_a_live_bar_on_a_terminal(tmp_path, csv_dir):
    code, shown = run_on_a_terminal(train_args(tmp_path, csv_dir), tmp_path)
    assert code == 0, shown[-2000:]
    assert "epochs" in shown and "━" in shown  # rich's bar
    assert "3/3" in shown and "\x1b[" in shown  # redrawn in place, up to the last epoch
    assert "epoch 3/3 train_loss" in shown  # the latest epoch's losses ride on the bar
    assert "2 of 2 tickers done" in shown  # fetches counted off as they finish
    assert "test MAE" in shown  # the summary still prints, below the finished bar


def test_without_a_terminal_each_epoch_is_one_plain_line(tmp_path, csv_dir):
    proc = run_cli(*train_args(tmp_path, csv_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    epochs = [line for line in proc.stdout.splitlines() if " epoch " in f" {line[9:]}"]
    assert [line[9:19] for line in epochs] == ["epoch 1/3 ", "epoch 2/3 ", "epoch 3/3 "]
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout and "━" not in proc.stdout
    assert "tickers done" not in proc.stdout  # the counts are for bars only
    output = proc.stdout + proc.stderr
    assert "Successfully registered" not in output and "Created version" not in output  # MLflow's
