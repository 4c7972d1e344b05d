"""Run records without MLflow: provenance tags, credential-free params, tables, model card."""

import csv
import io
import os
import subprocess

import numpy as np
import pytest

from lstm_pipeline import provenance, report
from lstm_pipeline.config import build_config
from lstm_pipeline.evaluate import TABLE_COLUMNS, score_forecasts, scores_by_ticker_horizon


def git(folder, *args):
    subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)


def test_git_state_names_the_commit_and_whether_the_tree_is_dirty(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git(tmp_path, "add", "f.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = provenance.git_state(tmp_path)
    assert len(clean["git.commit"]) == 40 and clean["git.dirty"] == "false"
    (tmp_path / "f.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path) == {**clean, "git.dirty": "true"}


def test_git_state_is_unknown_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    unknown = {"git.commit": "unknown", "git.dirty": "unknown"}
    assert provenance.git_state(tmp_path) == unknown  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary at all
    assert provenance.git_state() == unknown


def test_run_tags_carry_trigger_version_and_data():
    cfg = build_config(tracking__trigger="backtest")
    tags = provenance.run_tags(cfg, {"data.cutoff": "2024-06-28"})
    assert tags["trigger"] == "backtest" and tags["data.cutoff"] == "2024-06-28"
    assert tags["lstm_pipeline.version"] and tags["git.commit"]


def test_a_run_started_by_a_degradation_event_carries_the_event_id():
    event = "0195f5d6-3c2a-7e51-8a4f-2b1c9d0e7f10"
    cfg = build_config(tracking__trigger="degradation", tracking__trigger_event=event)
    tags = provenance.run_tags(cfg, {})
    assert (tags["trigger"], tags["trigger_event"]) == ("degradation", event)
    assert "trigger_event" not in provenance.run_tags(build_config(), {})  # none: no tag


def test_run_names_tell_configs_apart():
    few = build_config(data__tickers=("SPY", "AAPL"), features__window=20, features__horizon=2)
    assert provenance.run_name(few, "2024-06-28") == "manual-SPY+AAPL-w20h2-2024-06-28"
    assert provenance.run_name(build_config(), "d").startswith("manual-6tickers-w60h5")


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("postgresql://bob:s3cret@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://s3cret@host/x", "https://***@host/x"),
        (None, None),
    ],
)
def test_passwords_never_reach_params_or_the_config_artifact(uri, expected):
    cfg = build_config(tracking__tracking_uri=uri)
    assert provenance.run_params(cfg)["tracking.tracking_uri"] == expected
    assert "s3cret" not in report.config_yaml(cfg)


def test_credentials_move_from_an_http_tracking_uri_to_mlflows_variables(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    clean = provenance.credentials_to_env("https://al%40ice:p%2Fss@mlflow.example:8443/x")
    assert clean == "https://mlflow.example:8443/x"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "al@ice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "p/ss"
    for unchanged in (None, "http://127.0.0.1:5000", "sqlite:///a.db"):
        assert provenance.credentials_to_env(unchanged) == unchanged


@pytest.mark.parametrize("uri", ["https://t0ken@host/x", "postgresql://bob:pw@db:5432/mlflow"])
def test_other_credentials_move_the_whole_uri_to_mlflows_variable(monkeypatch, uri):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert provenance.credentials_to_env(uri) is None  # flows fall back to the variable
    assert os.environ["MLFLOW_TRACKING_URI"] == uri


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    last = rng.uniform(50, 150, 60)
    actual = last[:, None] * np.exp(rng.normal(0, 0.02, (60, 2)))
    forecast = last[:, None] * np.exp(rng.normal(0, 0.02, (60, 2)))
    ids = np.repeat([0, 1, 2], 20)
    forecast[ids == 1] = actual[ids == 1]  # BBB is forecast perfectly
    return forecast, actual, last, ids


def test_table_has_a_row_per_ticker_and_horizon_plus_all(scored):
    forecast, actual, last, ids = scored
    rows = scores_by_ticker_horizon(forecast, actual, last, ids, ("AAA", "BBB", "CCC"))
    assert [(r["ticker"], r["horizon"]) for r in rows] == [
        (t, h) for t in ("AAA", "BBB", "CCC", "ALL") for h in (1, 2)
    ]
    bbb = [r for r in rows if r["ticker"] == "BBB"]
    assert all(r["mae"] == 0 and r["mase"] == 0 and r["directional_accuracy"] == 1 for r in bbb)
    overall = score_forecasts(forecast, actual, last)
    for r in (r for r in rows if r["ticker"] == "ALL"):
        assert r["mase"] == pytest.approx(overall[f"test_mase_h{r['horizon']}"])
        assert r["windows"] == 60
    parsed = list(csv.DictReader(io.StringIO(report.table_csv(rows))))
    assert tuple(parsed[0]) == TABLE_COLUMNS and len(parsed) == 8
    assert float(parsed[0]["mae"]) == pytest.approx(rows[0]["mae"], rel=1e-5)


@pytest.fixture
def run_metrics(scored):
    """A training run's final metrics, as the flow logs them."""
    forecast, actual, last, _ = scored
    return {
        **score_forecasts(forecast, actual, last, prefix="val"),
        **score_forecasts(forecast, actual, last, prefix="test"),
        "best_epoch": 3,
        "stopped_epoch": 5,
        "train_windows": 700,
        "val_windows": 60,
        "calib_windows": 40,
        "test_windows": 60,
        "train_windows_per_s": 2871.4,
    }


def _tags() -> dict[str, str]:
    return {
        "data.tickers": "AAA,BBB",
        "data.rows": "1000",
        "data.first_date": "2020-01-01",
        "data.cutoff": "2024-06-28",
        "data.sha256": "abc",
    }


def test_model_card_puts_scores_beside_naive_and_states_limits(run_metrics):
    metrics = run_metrics
    card = report.model_card(build_config(), _tags(), metrics, "run123")
    assert card.startswith("# Model card: lstm-forecaster (run `run123`)")
    assert (
        "train 60% / validation 15% / calibration 10% / test 15%; 700 / 60 / 40 / 60 windows"
    ) in card
    assert "2020-01-01 to 2024-06-28" in card and "best epoch 3 of 5" in card
    assert f"| test | {metrics['test_mae']:.4f} | {metrics['naive_test_mae']:.4f} |" in card
    assert "## Limitations" in card and "not a walk-forward backtest" in card
    assert "## Intervals" not in card  # a point model's metrics have none


def test_interval_table_puts_coverage_beside_nominal_and_crps_beside_the_baselines(run_metrics):
    scores = {"coverage_80": 0.812, "coverage_95": 0.9461, "crps": 73.25, "crpss_rw": 0.0123}
    scores |= {"crpss_ewma": -0.004}
    metrics = dict(run_metrics)
    for split in ("val", "test"):
        metrics |= {f"{split}_{key}": value for key, value in scores.items()}
        metrics |= {f"rw_{split}_crps": 74.16, f"ewma_{split}_crps": 72.96}
    lines = report.interval_table(metrics)
    row = "| test | 81.2% (80%) | 94.6% (95%) | 73.2 | 74.2 | 73.0 | +1.2% | -0.4% |"
    assert row in lines and row.replace("test", "val") in lines
    assert lines[-1].startswith("Calibrated on 40 windows after validation")
    assert "\n".join(lines) in report.model_card(build_config(), _tags(), metrics, "r")


def test_run_summary_gives_scores_beside_naive_the_decision_and_the_link(run_metrics):
    metrics = run_metrics
    link = "http://127.0.0.1:5000/#/experiments/1/runs/abc"
    kept = report.run_summary("lstm-forecaster", "7", metrics, False, "val MASE 1.01 > 1", link)
    assert kept.startswith("# lstm-forecaster v7: kept as `challenger` (not promoted)")
    assert "**Promotion decision:** val MASE 1.01 > 1" in kept
    assert f"| val | {metrics['val_mae']:.4f} | {metrics['naive_val_mae']:.4f} |" in kept
    assert f"MASE {metrics['test_mase']:.3f}" in kept and "2,871 training windows/s" in kept
    assert f"[The MLflow run]({link})" in kept
    promoted = report.run_summary("lstm-forecaster", "8", metrics, True, "beats v7", link)
    assert promoted.startswith("# lstm-forecaster v8: promoted to `champion`")


def ticker_csv(mases: dict[str, float]) -> str:
    rows = [
        {"ticker": t, "windows": 250, "mae": 1.5, "naive_mae": 1.5 / m, "mase": m}
        | {"coverage_80": 0.8, "crpss_rw": 0.01}
        for t, m in mases.items()
    ]
    return report.table_csv(rows)


def test_the_summarys_ticker_table_stays_bounded_at_500_tickers():
    mases = {f"T{i:03d}": 0.9 + i / 1000 for i in range(500)}
    mases |= {"TIE_B": 2.0, "TIE_A": 2.0, "NOPE": float("nan")}
    lines = report.ticker_extremes(ticker_csv(mases))
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| ticker")]
    assert len(rows) == 20 and len(lines) < 40
    assert "## The 10 worst of 503 tickers by test MASE" in lines
    assert "## The 10 best of 503 tickers by test MASE" in lines
    assert rows[0] == "| TIE_A | 250 | 1.5000 | 0.7500 | 2.000 | 80.0% | +1.0% |"  # ties by name
    assert [r.split(" | ")[0] for r in rows[1:3]] == ["| TIE_B", "| T499"]
    assert [r.split(" | ")[0] for r in rows[10:12]] == ["| T000", "| T001"]  # best first
    assert all("NOPE" not in r for r in rows)
    assert lines[-1].startswith("All 503 tickers: `metrics/test_by_ticker.csv` in the MLflow run")
    assert lines[1:5] == [
        "## The 10 worst of 503 tickers by test MASE",
        "",
        "| ticker | windows | MAE | naive MAE | MASE | 80% interval covers | CRPS skill vs rw |",
        "|---|---|---|---|---|---|---|",
    ]


def test_the_summary_lists_a_few_tickers_all_worst_first():
    lines = report.ticker_extremes(ticker_csv({"AAA": 0.9, "NOPE": float("nan"), "BBB": 1.1}))
    assert "## Tickers by test MASE, worst first (all 3)" in lines
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ")]
    assert rows == ["| ticker", "| BBB", "| AAA", "| NOPE"]
