"""What the Prefect UI shows of a run: its artifacts, read back from the Prefect API."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.artifacts import DRIFT_KEY, FORECAST_KEY, MAX_DRIFT_ROWS, TRAINING_KEY
from lstm_pipeline.drift import DRIFT_THRESHOLD

pytestmark = pytest.mark.slow


def artifacts_of(state) -> dict:
    """The flow run's artifacts by key."""
    run_filter = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
    )
    with get_client(sync_client=True) as client:
        return {a.key: a for a in client.read_artifacts(artifact_filter=run_filter)}


def test_training_and_forecast_runs_publish_a_summary_and_a_table(
    prefect_harness, tiny_cfg, tmp_path
):
    from flows.inference import forecast_flow
    from flows.training import train_flow

    trained_state = train_flow(tiny_cfg, return_state=True)
    trained = trained_state.result()
    summary = artifacts_of(trained_state)[TRAINING_KEY]
    assert summary.type == "markdown"
    markdown = summary.data
    version, metrics = trained["model_version"], trained["metrics"]
    assert markdown.startswith(f"# lstm-forecaster v{version}: ")
    assert ("promoted to `champion`" in markdown) is trained["promoted"]
    assert f"**Promotion decision:** {trained['reason']}" in markdown
    test_row = f"| test | {metrics['test_mae']:.4f} | {metrics['naive_test_mae']:.4f} |"
    assert test_row in markdown
    run = MlflowClient(tiny_cfg.tracking.tracking_uri).get_run(trained["run_id"])
    link = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"[The MLflow run]({link})" in markdown  # where `make mlflow-ui` shows a local store
    assert "## Tickers by test MASE, worst first (all 2)" in markdown
    listed = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ")]
    assert sorted(listed[-2:]) == ["| AAA", "| BBB"]  # each ticker's row, after the header

    output = tmp_path / "forecasts.csv"
    uri = f"models:/lstm-forecaster/{version}"
    forecast_state = forecast_flow(
        tiny_cfg.data, uri, str(output), tiny_cfg.tracking.tracking_uri, return_state=True
    )
    table = artifacts_of(forecast_state)[FORECAST_KEY]
    assert table.type == "table" and table.description == f"written to {output}"
    rows = json.loads(table.data)
    written = pd.read_csv(output)
    assert len(rows) == len(written) == 2 * 3
    assert [r["ticker"] for r in rows] == list(written["ticker"])
    assert rows[0]["as_of"] == written["as_of"][0] and len(rows[0]["target_date"]) == 10
    assert rows[0]["forecast"] == pytest.approx(written["forecast"][0], abs=1e-4)
    # the trained model carries its train split's input profile: every ticker has a score
    assert written["input_drift"].notna().all()
    assert rows[0]["input_drift"] == pytest.approx(written["input_drift"][0], abs=0.01)
    drifted = artifacts_of(forecast_state)[DRIFT_KEY]
    most = json.loads(drifted.data)
    scores = written.drop_duplicates("ticker").set_index("ticker")["input_drift"]
    assert drifted.type == "table" and len(most) == 2 <= MAX_DRIFT_ROWS
    assert [r["ticker"] for r in most] == list(scores.sort_values(ascending=False).index)
    assert [r["drifted"] for r in most] == [
        s > DRIFT_THRESHOLD for s in scores[[r["ticker"] for r in most]]
    ]
