"""Live scores as MLflow curves on a real (sqlite) store: one monitoring run per model version,
under its training run, each metric at step = days live, nothing logged twice."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lstm_pipeline.config import MODEL_NAME as MODEL
from lstm_pipeline.tracking import Store, log_live_scores
from lstm_pipeline.tracking.monitoring import METRICS, metric_points

HORIZONS = (0, 1, 2)  # 0: every horizon pooled
WINDOWS = ("20", "60", "live")
FIRST_DAY = date(2024, 3, 1)
COLUMNS = ["model_name", "model_version", "horizon", "window", "through", "days_live", *METRICS]


def scores(days: range, version: str = "1", intervals: bool = True) -> pd.DataFrame:
    """LIVE's scores frame: a row per (horizon, window, matured day), values that tell the
    step, horizon and window apart (`mase` = step + horizon / 10)."""
    rows = []
    for step in days:
        for horizon in HORIZONS:
            for window in WINDOWS:
                value = step + horizon / 10
                rows.append(
                    {
                        "model_name": MODEL,
                        "model_version": version,
                        "horizon": horizon,
                        "window": window,
                        "through": FIRST_DAY + timedelta(days=step),
                        "days_live": step,
                        "matured": step * 3,
                        **{name: value for name in METRICS if name != "matured"},
                        "mase": value,
                        "coverage_80": value if intervals else np.nan,
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def register_version(store: Store) -> tuple[str, str]:
    """A training run and a registry version of MODEL made from it: (run id, version)."""
    run = store.start_run(MODEL, "train", {}, {"trigger": "manual"})
    run.end()
    client = store.client
    if store.registered_model(MODEL) is None:
        client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run.run_id}/model", run.run_id)
    return run.run_id, str(version.version)


def curve(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in store.client.get_metric_history(run_id, key))


def test_live_scores_are_curves_of_the_versions_monitoring_run(store):
    training_run, version = register_version(store)
    run_id = log_live_scores(store, MODEL, version, scores(range(1, 6), version))
    run = MlflowClient(store.uri).get_run(run_id)
    assert run.info.run_name == f"live-v{version}" and run.info.status == "FINISHED"
    assert run.info.experiment_id == store.client.get_run(training_run).info.experiment_id
    assert run.data.tags["mlflow.parentRunId"] == training_run  # nested under it in the UI
    assert run.data.tags["lstm-pipeline.training_run_id"] == training_run
    assert curve(store, run_id, "live_mase_60") == [(s, float(s)) for s in range(1, 6)]
    assert curve(store, run_id, "live_coverage_80_live_h2") == [(s, s + 0.2) for s in range(1, 6)]
    assert curve(store, run_id, "live_matured_20")[-1] == (5, 15.0)
    expected = {f"live_{m}_{w}{h}" for m in METRICS for w in WINDOWS for h in ("", "_h1", "_h2")}
    assert set(run.data.metrics) == expected
    # the wall-time axis reads as the matured dates
    [first] = [m for m in store.client.get_metric_history(run_id, "live_mase_20") if m.step == 1]
    assert pd.Timestamp(first.timestamp, unit="ms").date() == FIRST_DAY + timedelta(days=1)


def test_the_same_day_again_adds_nothing_and_a_later_day_only_its_steps(store):
    _, version = register_version(store)
    first = log_live_scores(store, MODEL, version, scores(range(1, 4), version))
    again = log_live_scores(store, MODEL, version, scores(range(1, 4), version))
    assert again == first
    assert curve(store, first, "live_mase_60_h1") == [(s, s + 0.1) for s in range(1, 4)]
    # the whole curve comes again (a score run after a gap draws every day): only 4, 5 are new
    later = log_live_scores(store, MODEL, version, scores(range(1, 6), version))
    assert later == first
    assert curve(store, first, "live_mase_60_h1") == [(s, s + 0.1) for s in range(1, 6)]
    assert MlflowClient(store.uri).get_run(first).info.status == "FINISHED"
    runs = store.client.search_runs(
        [store.experiment_id(MODEL)], "tags.`lstm-pipeline.monitoring` = 'live'"
    )
    assert len(runs) == 1


def test_each_version_has_its_own_run_and_only_its_own_rows(store):
    _, v1 = register_version(store)
    _, v2 = register_version(store)
    both = pd.concat([scores(range(1, 3), v1), scores(range(1, 5), v2)])
    run1, run2 = (log_live_scores(store, MODEL, v, both) for v in (v1, v2))
    assert run1 != run2
    assert [s for s, _ in curve(store, run1, "live_mase_live")] == [1, 2]
    assert [s for s, _ in curve(store, run2, "live_mase_live")] == [1, 2, 3, 4]


def test_more_points_than_one_batch_holds_are_all_logged(store):
    _, version = register_version(store)
    many = scores(range(1, 60), version)  # 59 days x 9 curves x 9 metrics: 4,779 points
    assert len(metric_points(many)) > 4_000
    run_id = log_live_scores(store, MODEL, version, many)
    assert [s for s, _ in curve(store, run_id, "live_crps_20_h2")] == list(range(1, 60))


def test_forecasts_without_intervals_log_no_coverage_and_a_file_model_gets_a_run(store):
    run_id = log_live_scores(store, MODEL, "file", scores(range(1, 3), "file", intervals=False))
    metrics = MlflowClient(store.uri).get_run(run_id).data.metrics
    assert "live_mase_60" in metrics and not any(k.startswith("live_coverage_80") for k in metrics)
    run = store.client.get_run(run_id)
    assert run.info.run_name == "live-vfile" and "mlflow.parentRunId" not in run.data.tags


@pytest.mark.parametrize("version", ["7", "file"])
def test_a_version_with_no_matured_scores_gets_an_empty_run(store, version):
    run_id = log_live_scores(store, MODEL, version, scores(range(0), version))
    assert store.client.get_run(run_id).data.metrics == {}
