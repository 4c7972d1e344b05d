"""`lstm-pipeline serve` against a real `prefect server`: the scheduler creates the runs and the
serve process executes them. Bad schedules, an output that cannot be written and a missing server
are refused before any run."""

import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline.predict import FORECAST_COLUMNS
from tests.conftest import LEARNABLE_CONFIG, ROOT, run_cli
from tests.integration.processes import BIN, PREFECT, free_port, running, serving

EVERY_MINUTE = "* * * * *"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--retrain-cron",
            "0 6 * *",
            "--retrain-cron '0 6 * *' is not a cron expression (minute hour",
        ),
        (
            "--forecast-cron",
            "61 17 * * 1-5",
            "--forecast-cron '61 17 * * 1-5' is not a cron expression",
        ),
        ("--timezone", "Mars/Olympus", "--timezone 'Mars/Olympus' is not an IANA time zone"),
        ("--output", "/dev/null/f.csv", "output /dev/null/f.csv: cannot write in /dev/null"),
    ],
)
def test_a_bad_schedule_or_output_is_one_line_and_exit_2(tmp_path, option, value, message):
    proc = run_cli("serve", "--source", "sample", option, value, cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"lstm-pipeline serve: error: {message}")


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    proc = run_cli("serve", "--source", "sample", cwd=tmp_path)  # conftest unsets the API URL
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert "make prefect-server" in line
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in line


@contextmanager
def prefect_server(folder: Path) -> Iterator[str]:
    """`make prefect-server`'s command on a free port, its database in `folder`; the API URL."""
    folder.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = {"PREFECT_HOME": str(folder / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with serving(args, f"{api}/health", folder / "server.log", env):
        yield api


def post(api: str, path: str, body: dict) -> list[dict]:
    """One filter query to the Prefect REST API."""
    request = urllib.request.Request(
        f"{api}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def flow_runs(api: str, flow_name: str) -> list[dict]:
    """Every run of `flow_name` the server knows, in expected start order."""
    body = {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return post(api, "flow_runs/filter", body)


def run_logs(api: str, run: dict) -> list[dict]:
    return post(api, "logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}})


def run_artifacts(api: str, run: dict) -> dict[str, dict]:
    body = {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    return {a["key"]: a for a in post(api, "artifacts/filter", body)}


def library_logs(api: str, run: dict) -> list[tuple[str, str]]:
    """(logger, message) of the run's lines from `lstm_pipeline.*`; empty until they arrive."""
    lines = [(r["name"], r["message"]) for r in run_logs(api, run)]
    return lines if any(name.startswith("lstm_pipeline.") for name, _ in lines) else []


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(find, what: str, log: Path, seconds: float = 240):
    """Poll `find()` until it returns something; fail with the serve log after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run := find():
            return run
        time.sleep(3)
    pytest.fail(f"no {what} within {seconds:.0f} s; serve log:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_scheduled_retraining_then_forecast_really_run(tmp_path, learnable_csv_dir):
    """Both crons fire every minute: the retraining run logs a `trigger=schedule` run and
    promotes a champion; a forecast run that starts after it writes the forecast file (one that
    started before any champion existed may fail, which is what it should do)."""
    config = tmp_path / "learnable.yaml"
    config.write_text(LEARNABLE_CONFIG)
    tracking = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    output = tmp_path / "out" / "forecasts.csv"
    (tmp_path / "serve").mkdir()
    serve = [
        str(BIN / "lstm-pipeline"),
        "serve",
        *("--retrain-cron", EVERY_MINUTE, "--forecast-cron", EVERY_MINUTE, "--timezone", "UTC"),
        *("--source", "csv", "--data-dir", str(learnable_csv_dir), "--tickers", "AAA", "BBB"),
        *("--config", str(config), "--tracking-uri", tracking, "--output", str(output)),
    ]
    log = tmp_path / "serve" / "serve.log"
    started = time.monotonic()
    with prefect_server(tmp_path / "prefect") as api, running(serve, log, {"PREFECT_API_URL": api}):

        def retrained() -> dict | None:
            runs = flow_runs(api, "lstm-train")
            broken = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
            assert not broken, f"{broken[0]['name']}: {broken[0]['state']}\n{log.read_text()}"
            return next((r for r in runs if r["state_type"] == "COMPLETED"), None)

        retrain = wait_for(retrained, "completed retraining run", log)
        retrain_seconds = time.monotonic() - started

        def forecasted() -> dict | None:
            runs = flow_runs(api, "lstm-forecast")
            after = [
                r
                for r in runs
                if r["start_time"] and when(r["start_time"]) > when(retrain["end_time"])
            ]
            return next((r for r in after if r["state_type"] == "COMPLETED"), None)

        forecast = wait_for(forecasted, "completed forecast run after the retraining", log)
        forecast_seconds = time.monotonic() - started
        # the Prefect UI's view of both runs: the library's own log lines and the artifacts.
        # A run's logs are shipped in batches and may land after its COMPLETED state does.
        train_logs = wait_for(lambda: library_logs(api, retrain), "retraining logs", log, 30)
        wait_for(lambda: library_logs(api, forecast), "forecast logs", log, 30)
        summary = run_artifacts(api, retrain)["training-summary"]
        table = run_artifacts(api, forecast)["batch-forecasts"]

    for run in (retrain, forecast):
        assert run["deployment_id"], run["name"]  # created by the scheduler, not by hand
        assert run["auto_scheduled"], run["name"]
    print(
        f"retrain {retrain['name']} COMPLETED at {retrain_seconds:.0f} s; "
        f"forecast {forecast['name']} COMPLETED at {forecast_seconds:.0f} s"
    )
    assert ("lstm_pipeline.train", "epoch 1/10") in {(n, m[:10]) for n, m in train_logs}
    assert any(n == "lstm_pipeline.registry" for n, _ in train_logs)  # the gate's decision
    assert summary["type"] == "markdown" and "**Promotion decision:**" in summary["data"]
    assert table["type"] == "table" and table["description"] == f"written to {output}"
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("lstm-forecaster")
    runs = client.search_runs([experiment.experiment_id], "tags.trigger = 'schedule'")
    # a later minute's retraining may still be running when the serve process is stopped
    finished = {r.info.run_id for r in runs if r.info.status == "FINISHED"}
    champion = client.get_model_version_by_alias("lstm-forecaster", "champion")
    assert champion.run_id in finished
    forecasts = pd.read_csv(output)
    assert list(forecasts.columns) == list(FORECAST_COLUMNS)
    assert sorted(set(forecasts["ticker"])) == ["AAA", "BBB"]
    assert len(forecasts) == 2 * 3  # two tickers, horizon 3
    assert (forecasts["model_version"] == int(champion.version)).all()
    # the champion is a quantile model (the default): its calibrated bounds, in order
    bounds = ["lower_95", "lower_80", "forecast", "upper_80", "upper_95"]
    assert (np.diff(forecasts[bounds].to_numpy(float), axis=1) >= 0).all(), forecasts[bounds]
    assert list(json.loads(table["data"])[0]) == list(FORECAST_COLUMNS)  # the UI's glance


def test_serve_creates_the_store_once_so_simultaneous_runs_do_not_race(tmp_path):
    from lstm_pipeline.tracking import Store

    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    first = Store.open(uri).experiment_id("lstm-forecaster")
    assert Store.open(uri).experiment_id("lstm-forecaster") == first  # found, not created again
    experiment = MlflowClient(uri).get_experiment(first)
    assert experiment.name == "lstm-forecaster"
    assert experiment.artifact_location == (tmp_path / "mlflow/artifacts").as_uri()


def deployment_names(api: str) -> set[str]:
    return {d["name"] for d in post(api, "deployments/filter", {})}


def retrain_automations(api: str) -> list[dict]:
    from flows.alerts import automation_name

    return [a for a in post(api, "automations/filter", {}) if a["name"] == automation_name("m")]


@pytest.mark.slow
def test_serve_installs_three_deployments_and_the_retrain_automation_idempotently(tmp_path):
    """`serve` registers retrain, forecast and score, and one automation that runs retrain on the
    model's degraded events; a second serve keeps that one, `--no-auto-retrain` removes it."""
    model = tmp_path / "m.onnx"  # never opened: the crons are far off; its name is the model's
    serve = [
        *(str(BIN / "lstm-pipeline"), "serve", "--source", "sample", "--model-uri", str(model)),
        *("--tracking-uri", f"sqlite:///{tmp_path}/mlflow/mlflow.db"),
    ]
    (tmp_path / "serve").mkdir()
    log = tmp_path / "serve" / "serve.log"
    every = {"retrain", "forecast", "score"}
    seen = []
    with prefect_server(tmp_path / "prefect") as api:
        for extra in ([], [], ["--no-auto-retrain"]):
            with running([*serve, *extra], log, {"PREFECT_API_URL": api, "PYTHONPATH": str(ROOT)}):
                wait_for(lambda: "Ctrl-C stops" in log.read_text(), "serving", log, 120)
                wait_for(lambda: deployment_names(api) == every, "three deployments", log, 60)
                seen.append((retrain_automations(api), log.read_text()))
        retrain = post(api, "deployments/filter", {"deployments": {"name": {"any_": ["retrain"]}}})
    ([automation], first_log), (again, _), (none, last_log) = seen
    assert [a["id"] for a in again] == [automation["id"]] and none == []
    [action] = automation["actions"]
    assert action["deployment_id"] == retrain[0]["id"]
    assert automation["trigger"]["match"] == {"lstm-pipeline.model.name": "m"}
    assert (
        "serving lstm-train/retrain '0 6 * * 6', lstm-forecast/forecast '30 17 * * 1-5' and "
        "lstm-score/score '0 18 * * 1-5' (America/New_York)" in first_log
    )
    assert "(m retrains on degradation)" in first_log
    assert "(m no retraining on degradation)" in last_log
