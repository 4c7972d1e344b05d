"""Train and forecast through the CLI against a real `mlflow server` on a free loopback port."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path):
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "server.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, by our own process id
    proc.wait(timeout=30)
    log.close()


def test_cli_train_and_forecast_against_a_real_tracking_server(mlflow_server, tmp_path, csv_dir):
    smoke = str(ROOT / "flows/configs/smoke.yaml")
    data = ["--source", "csv", "--data-dir", str(csv_dir), "--tickers", "AAA", "BBB"]
    train = run_cli(
        "train", *data, "--config", smoke, "--tracking-uri", mlflow_server, "--json", cwd=tmp_path
    )
    assert train.returncode == 0, train.stderr
    result = json.loads(train.stdout.strip().splitlines()[-1])
    assert set(result) >= {"run_id", "model_name", "model_version", "promoted", "metrics"}
    for key in (
        "test_mae",
        "test_mase",
        "naive_test_mae",
        "test_directional_accuracy",
        "best_epoch",
        "train_windows_per_s",
    ):
        assert isinstance(result["metrics"][key], int | float), key
    assert "test MAE" in train.stdout and "vs naive" in train.stdout

    client = MlflowClient(mlflow_server)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert [m.step for m in client.get_metric_history(result["run_id"], "val_loss")] == [1, 2]
    assert not (tmp_path / "mlflow").exists()  # nothing fell back to the local store

    output = tmp_path / "f.csv"
    forecast = run_cli(
        "forecast",
        *data,
        "--tracking-uri",
        mlflow_server,
        "--model-uri",
        f"models:/lstm-forecaster/{result['model_version']}",
        "--output",
        str(output),
        "--json",
        cwd=tmp_path,
    )
    assert forecast.returncode == 0, forecast.stderr
    summary = json.loads(forecast.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 6 and summary["run_id"] == result["run_id"]
    assert output.read_text().startswith("ticker,as_of,horizon,target_date,forecast,last_close")
