import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.backtest import (
    FoldResult,
    check_folds,
    fold_split,
    format_table,
    pooled_scores,
    run_fold,
)
from lstm_pipeline.baselines import Baselines
from lstm_pipeline.config import FeatureConfig, build_config
from lstm_pipeline.data import FEATURES
from lstm_pipeline.errors import DataValidationError
from lstm_pipeline.features import build_window_sets
from lstm_pipeline.significance import panel_diebold_mariano
from lstm_pipeline.train import Predictions
from tests.synthetic import make_prices
from tests.unit.test_features import numbered_prices

CFG = FeatureConfig(window=10, horizon=3, val_frac=0.2)


def test_folds_tile_the_end_of_the_series_and_history_expands():
    prices = numbered_prices(300)
    spans = [fold_split(prices, CFG, "AAA", k, 3, 40) for k in range(3)]
    for k, parts in enumerate(spans):
        held_out = parts["test"].iloc[CFG.window :]  # the span whose closes are targets
        assert len(held_out) == 40
        assert held_out.index[0] == prices.index[300 - (3 - k) * 40]
        assert parts["calib"].index[-1] < held_out.index[0]  # history ends before the span
        assert parts["val"].index[-1] < parts["calib"].index[0]
        assert parts["train"].index[-1] < parts["val"].index[0]
    assert spans[-1]["test"].index[-1] == prices.index[-1]
    history = [sum(len(p[name]) for name in ("train", "val", "calib")) for p in spans]
    assert history == [180, 220, 260]
    assert [len(p["calib"]) for p in spans] == [18, 22, 26]  # calib_frac 0.1 of the history


def test_fold_targets_lie_inside_the_held_out_span():
    prices = numbered_prices(300)

    def splitter(frame, cfg, ticker):
        return fold_split(frame, cfg, ticker, fold=1, folds=3, fold_days=40)

    test = build_window_sets({"AAA": prices}, CFG, splitter)["test"]
    closes = test.inputs(np.arange(len(test)))[..., 3].double()
    targets = closes[:, -1:] * np.exp(test.targets.double())
    span = prices["Close"].iloc[300 - 2 * 40 : 300 - 40]
    assert targets.min() >= span.iloc[0] - 1e-6 and targets.max() <= span.iloc[-1] + 1e-6
    assert len(test) == 40 - CFG.horizon + 1


def test_too_many_folds_for_the_data_is_an_input_error():
    with pytest.raises(
        DataValidationError, match="AAA: 100 rows .*, but 189 are needed for 5 folds of 30 days"
    ):
        fold_split(numbered_prices(100), CFG, "AAA", 0, 5, 30)


def test_folds_are_checked_for_every_ticker_before_any_run():
    prices = {"AAA": numbered_prices(400), "BBB": numbered_prices(100)}
    check_folds(prices, CFG, 2, 30)  # both long enough
    with pytest.raises(DataValidationError, match="BBB: 100 rows .* for 5 folds of 30 days"):
        check_folds(prices, CFG, 5, 30)


def test_each_fold_scores_its_own_span_and_the_pool_gets_a_dm_test_per_horizon():
    cfg = build_config(
        features__window=10,
        features__horizon=3,
        model__hidden_size=8,
        model__num_layers=1,
        model__dropout=0.0,
        train__max_epochs=2,
        train__batch_size=64,
        train__device="cpu",
    )
    frames = {}
    for seed, ticker in enumerate(("AAA", "BBB")):
        frame = make_prices(300, seed=seed)
        frames[ticker] = frame.set_index(pd.to_datetime(frame["Date"]))[list(FEATURES)]
    days = frames["AAA"].index
    folds = [run_fold(frames, cfg, k, folds=2, fold_days=40) for k in range(2)]
    for k, fold in enumerate(folds):
        span_start = 300 - (2 - k) * 40
        # origins run from the day before the span to the last day whose targets fit in it
        assert fold.first_day == str(days[span_start - 1].date())
        assert fold.last_day == str(days[span_start + 40 - 1 - 3].date())
        forecast, quantiles = fold.predictions.forecast, fold.predictions.quantiles
        assert len(forecast) == 2 * (40 - 3 + 1) and forecast.shape[1] == 3
        assert quantiles is not None and quantiles.shape == (*forecast.shape, len(fold.levels))
        assert fold.baselines.rw.shape == quantiles.shape
        assert sorted(set(fold.tickers)) == ["AAA", "BBB"] and 1 <= fold.best_epoch <= 2
        assert fold.metrics["test_mase"] > 0
        assert fold.as_of.min() == days[span_start - 1] and len(fold.as_of) == len(forecast)

    overall, table = pooled_scores(folds)
    for h in (1, 2, 3):
        assert np.isfinite(overall[f"test_dm_stat_h{h}"])
        assert 0 <= overall[f"test_dm_pvalue_h{h}"] <= 1
    pooled = table[table["ticker"] == "ALL"]
    assert list(pooled["horizon"]) == [1, 2, 3] and pooled["dm_stat"].notna().all()
    assert table[table["ticker"] != "ALL"]["dm_stat"].isna().all()  # DM only over all tickers
    assert list(pooled["windows"]) == [2 * 2 * 38] * 3
    lines = format_table(table).splitlines()
    assert len(lines) == 4 and lines[0].startswith("h  windows  MAE")
    assert [line.split()[:2] for line in lines[1:]] == [[str(h), "152"] for h in (1, 2, 3)]
    # the quantile model's interval tests, per horizon and per volatility tercile
    for h in (1, 2, 3):
        assert 0 <= overall[f"test_coverage_80_h{h}"] <= 1
        for name in ("dm_crps_rw_pvalue", "dm_crps_ewma_pvalue", "kupiec_95_pvalue"):
            assert 0 <= overall[f"test_{name}_h{h}"] <= 1
    assert {f"test_coverage_80_vol_{t}" for t in ("low", "mid", "high")} <= set(overall)
    assert {"crps", "rw_crps", "crpss_rw", "coverage_95"} <= set(pooled.columns)
    both = format_table(table, overall).splitlines()
    assert both[:4] == lines and both[5].startswith("h  cover 80% (80)")
    assert [line.split()[0] for line in both[6:9]] == ["1", "2", "3"]
    assert both[9].startswith("80% coverage by volatility tercile")


def synthetic_fold(fold, tickers, prices, days=60, horizon=2, seed=0):
    """A fold's out-of-sample windows without a fit: every ticker forecast on the same days,
    prices around `prices[i]`, errors sharing a market shock per day and a slight model edge."""
    rng = np.random.default_rng(seed)
    as_of = np.datetime64("2021-01-04") + fold * days + np.arange(days)
    market = rng.normal(0, 0.02, (days, horizon))
    last, actual, forecast = [], [], []
    for price in prices:
        close = price * np.exp(rng.normal(0, 0.01, days))
        moves = close[:, None] * np.exp(market + rng.normal(0, 0.01, (days, horizon)))
        last.append(close)
        actual.append(moves)
        forecast.append(
            close[:, None] * (1 + rng.normal(0, 0.006, moves.shape))
            + 0.1 * (moves - close[:, None])
        )
    return FoldResult(
        fold=fold,
        first_day="",
        last_day="",
        best_epoch=1,
        metrics={},
        tickers=np.repeat(np.asarray(tickers), days),
        as_of=np.tile(as_of, len(tickers)),
        predictions=Predictions(
            np.concatenate(forecast), np.concatenate(actual), np.concatenate(last), None
        ),
        baselines=flat_baselines(np.concatenate(last), horizon),
    )


def flat_baselines(last_close, horizon, levels=(0.1, 0.5, 0.9)):
    """Baselines that forecast the last close at every level (a point fold scores drift only)."""
    quantiles = np.repeat(last_close[:, None, None], horizon * len(levels), axis=1)
    quantiles = quantiles.reshape(len(last_close), horizon, len(levels))
    drift = quantiles[..., 0].copy()
    ones = np.ones(len(last_close))
    return Baselines(levels, last_close, quantiles, quantiles.copy(), drift, ones)


def dm_scores(folds):
    overall, table = pooled_scores(folds)
    pooled = table[table["ticker"] == "ALL"]
    assert list(pooled["dm_stat"]) == [overall["test_dm_stat_h1"], overall["test_dm_stat_h2"]]
    return [overall[f"test_dm_{name}_h{h}"] for h in (1, 2) for name in ("stat", "pvalue")]


def test_the_pooled_dm_test_is_a_panel_test_over_tickers_and_dates():
    folds = [synthetic_fold(k, ["AAA", "BBB"], [50.0, 700.0], seed=k) for k in range(2)]
    scores = dm_scores(folds)
    tickers, as_of = (
        np.concatenate([getattr(f, name) for f in folds]) for name in ("tickers", "as_of")
    )
    forecast, actual, last = (
        np.concatenate([getattr(f.predictions, name) for f in folds])
        for name in ("forecast", "actual", "last_close")
    )
    ids = (tickers == "BBB").astype(int)
    for h in (1, 2):
        loss, naive = np.abs(forecast[:, h - 1] - actual[:, h - 1]), np.abs(last - actual[:, h - 1])
        expected = panel_diebold_mariano(loss, naive, ids, as_of, h)
        assert scores[2 * h - 2 : 2 * h] == pytest.approx(expected)

    # a second copy of every ticker adds no information: the p-values stay as they were
    copies = [synthetic_fold(k, ["CCC", "DDD"], [50.0, 700.0], seed=k) for k in range(2)]
    assert dm_scores(folds + copies) == pytest.approx(scores)
    # nor does quoting BBB in cents: each ticker's losses are scaled by its naive MAE
    in_cents = [synthetic_fold(k, ["AAA", "BBB"], [50.0, 70000.0], seed=k) for k in range(2)]
    assert dm_scores(in_cents) == pytest.approx(scores, rel=1e-6)
