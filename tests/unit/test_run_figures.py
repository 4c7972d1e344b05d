"""The run's figures and per-ticker table as the training job makes them from an Evaluation:
bounded whatever the number of tickers, the detail in a table with a row per ticker."""

import csv
import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline import pipeline, plots, report
from lstm_pipeline.baselines import Baselines
from lstm_pipeline.config import DEFAULT_QUANTILES
from lstm_pipeline.train import Predictions

Z = np.array([-1.96, -1.64, -1.28, -0.67, 0, 0.67, 1.28, 1.64, 1.96])  # at DEFAULT_QUANTILES


def fake_run(tickers: int, windows: int, horizon: int = 5, seed: int = 0):
    """A fitted quantile model's (result, window sets, Evaluation) on white-noise prices: each
    ticker `windows` consecutive test windows; what evaluation_figures and the tables read."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(tickers), windows)
    days = pd.bdate_range("2024-01-01", periods=windows).to_numpy()
    last_close = rng.uniform(20, 200, tickers)[ids] * np.exp(rng.normal(0, 0.01, len(ids)))
    actual = last_close[:, None] * np.exp(rng.normal(0, 0.01, (len(ids), horizon)))
    forecast = last_close[:, None] * np.exp(rng.normal(0, 0.002, (len(ids), horizon)))
    quantiles = forecast[..., None] * np.exp(0.01 * Z)  # [N, H, Q]
    base = Baselines(
        DEFAULT_QUANTILES, last_close, quantiles * 1.01, quantiles, forecast, np.ones(len(ids))
    )
    predictions = Predictions(forecast, actual, last_close, quantiles)
    test = SimpleNamespace(
        tickers=tuple(f"T{i:04d}" for i in range(tickers)),
        ticker_ids=ids,
        as_of=np.tile(days, tickers),
    )
    model = SimpleNamespace(quantiles=DEFAULT_QUANTILES)
    rows = pipeline.interval_rows(model, test, predictions, base)
    evaluation = pipeline.Evaluation({"test_mase": 1.01}, predictions, base, rows)
    history = [{"train_loss": 1 / e, "val_loss": 1.1 / e} for e in range(1, 6)]
    result = SimpleNamespace(history=history, best_epoch=4, model=model)
    return result, {"test": test}, evaluation


def test_every_figure_of_500_tickers_is_under_a_megabyte_with_a_bounded_number_of_panels():
    result, windows, evaluation = fake_run(500, 250)
    by_ticker = pipeline.scores_by_ticker(windows["test"], evaluation)
    figures = pipeline.evaluation_figures(result, windows, evaluation, by_ticker)
    assert set(figures) == {
        f"plots/{name}.png"
        for name in (
            "loss_curve",
            "actual_vs_forecast",
            "actual_vs_forecast_last120",
            "residuals",
            "fan_chart_last120",
            "reliability",
        )
    }
    for name, fig in figures.items():
        assert len(fig.axes) <= plots.PANELS_MAX, name
        png = io.BytesIO()
        fig.savefig(png, format="png")  # as MLflow's log_figure saves it
        assert len(png.getvalue()) < 1_000_000, name
    for name in ("actual_vs_forecast", "actual_vs_forecast_last120"):
        fig = figures[f"plots/{name}.png"]
        assert len(fig.axes) == pipeline.FORECAST_TICKERS
        assert "6 of 500 tickers, chosen by their test MASE" in fig.get_suptitle()
    titles = [ax.get_title() for ax in figures["plots/actual_vs_forecast.png"].axes]
    assert titles[0].split(": ")[1].startswith("worst MASE ")


def test_the_per_ticker_table_has_a_row_per_ticker_pooling_every_horizon():
    result, windows, evaluation = fake_run(3, 40, horizon=2)
    rows = pipeline.scores_by_ticker(windows["test"], evaluation)
    assert [r["ticker"] for r in rows] == ["T0000", "T0001", "T0002"]
    forecast, actual, last_close, _ = evaluation.test
    ids = windows["test"].ticker_ids
    for i, row in enumerate(rows):
        mine = ids == i
        mae = np.abs(forecast[mine] - actual[mine]).mean()
        naive = np.abs(last_close[mine, None] - actual[mine]).mean()
        assert row["windows"] == 40
        assert row["mae"] == pytest.approx(mae) and row["naive_mae"] == pytest.approx(naive)
        assert row["mase"] == pytest.approx(mae / naive)
        lower, upper = (
            evaluation.test.quantiles[mine][..., 2],
            evaluation.test.quantiles[mine][..., 6],
        )
        inside = (lower <= actual[mine]) & (actual[mine] <= upper)
        assert row["coverage_80"] == pytest.approx(inside.mean())
    # the windows-weighted mean of the tickers' MAE is the run's test MAE
    assert np.mean([r["mae"] for r in rows]) == pytest.approx(np.abs(forecast - actual).mean())
    table = list(csv.DictReader(io.StringIO(report.table_csv(rows))))
    assert list(table[0]) == [
        "ticker",
        "windows",
        "mae",
        "naive_mae",
        "mase",
        "coverage_80",
        "coverage_95",
        "crps",
        "rw_crps",
        "ewma_crps",
        "crpss_rw",
    ]
    assert len(table) == 3


def test_a_point_models_per_ticker_table_has_no_interval_columns():
    result, windows, evaluation = fake_run(2, 10)
    point = pipeline.Evaluation(
        evaluation.metrics, evaluation.test._replace(quantiles=None), evaluation.test_baselines, []
    )
    rows = pipeline.scores_by_ticker(windows["test"], point)
    assert [list(r) for r in rows] == [["ticker", "windows", "mae", "naive_mae", "mase"]] * 2
