"""Live scores (lstm_pipeline/live.py): a hand-made three-day history whose every figure is
worked out below, then properties over generated histories: scores do not move when a ticker's
whole history is rescaled (a split or dividend adjustment), a perfect forecast scores MASE 0
and coverage 1, the naive one MASE 1, rows not matured change nothing, and a window never
counts more than its days."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_pipeline import predict
from lstm_pipeline.config import REQUIRED_QUANTILES, MonitorConfig
from lstm_pipeline.live import (
    LEVEL_COLUMNS,
    QUANTILE_PREFIX,
    SCORE_COLUMNS,
    Verdict,
    changes,
    degradation,
    live_scores,
)

D0, D1, D2, D3, D4 = (date(2025, 1, 6) + timedelta(days=i) for i in range(5))  # Mon..Fri
CLOSES = {"AAA": pd.Series([100.0, 110.0, 99.0, 99.0], index=pd.to_datetime([D0, D1, D2, D3]))}


def forecast(ticker, as_of, horizon, target, last, median, b80=(), b95=(), version="1"):
    """One forecast row as the history holds it; bounds (lower, upper) prices or absent."""
    lower_80, upper_80 = b80 or (np.nan, np.nan)
    lower_95, upper_95 = b95 or (np.nan, np.nan)
    return {
        "model_name": "m",
        "model_version": version,
        "ticker": ticker,
        "as_of": as_of,
        "horizon": horizon,
        "target_date": target,
        "forecast": median,
        "lower_95": lower_95,
        "lower_80": lower_80,
        "upper_80": upper_80,
        "upper_95": upper_95,
        "last_close": last,
        "run_id": "r",
    }


# realised ratios 1.1, 0.9 and 1 (a flat day); forecast ratios 1.05, 100/110 and 101/99
THREE_DAYS = [
    forecast("AAA", D0, 1, D1, 100.0, 105.0, (102.0, 108.0), (95.0, 115.0)),
    forecast("AAA", D1, 1, D2, 110.0, 100.0, (98.0, 104.0), (90.0, 120.0)),
    forecast("AAA", D2, 1, D3, 99.0, 101.0, (97.0, 103.0), (90.0, 110.0)),
    forecast("AAA", D3, 1, D4, 99.0, 98.0, (97.0, 103.0), (90.0, 110.0)),  # D4: no close yet
]


def scores_of(rows, closes=CLOSES, windows=(2,)) -> pd.DataFrame:
    return live_scores(pd.DataFrame(rows), closes, windows)


def pick(scores: pd.DataFrame, horizon: int, window: str) -> pd.DataFrame:
    chosen = scores[(scores["horizon"] == horizon) & (scores["window"] == window)]
    return chosen.set_index("through")


def test_three_days_by_hand():
    scores = scores_of(THREE_DAYS)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    two = pick(scores, 1, "2")
    assert list(two.index) == [D1, D2, D3]  # D4's forecast is not matured: never scored
    assert two["matured"].tolist() == [1, 2, 2] and two["days_live"].tolist() == [1, 2, 3]
    # errors in prices of the last close: 100 |1.05 - 1.1| = 5, 110 |100/110 - 0.9| = 1,
    # 99 |101/99 - 1| = 2; the naive errors 10, 11 and 0
    assert two["mae"].tolist() == pytest.approx([5, 3, 1.5])
    assert two["naive_mae"].tolist() == pytest.approx([10, 10.5, 5.5])
    assert two["mase"].tolist() == pytest.approx([0.5, 6 / 21, 3 / 11])
    # the flat day counts neither way: D3's window holds one moved day, a hit, and it fell
    assert two["direction"].tolist() == [1.0, 1.0, 1.0]
    assert two["base_rate"].tolist() == [1.0, 0.5, 1.0]
    assert two["coverage_80"].tolist() == pytest.approx([0, 0.5, 1])  # 1.1 is above 1.08
    assert two["coverage_95"].tolist() == [1.0, 1.0, 1.0]
    # 5-level CRPS of D1: pinball at .95, 1.02, 1.05, 1.08, 1.15 against 1.1 is .025 x .15,
    # .1 x .08, .5 x .05, .9 x .02, .025 x .05: mean .0112, twice that, in bp
    assert two.loc[D1, "crps"] == pytest.approx(224)
    live = pick(scores, 1, "live").loc[D3]
    assert live["matured"] == 3 and live["mase"] == pytest.approx(8 / 21)
    assert live["base_rate"] == 0.5 and live["coverage_80"] == pytest.approx(2 / 3)


def test_pooled_rows_are_horizon_zero_and_sum_every_horizon_by_target_date():
    rows = [*THREE_DAYS, forecast("AAA", D0, 2, D2, 100.0, 98.0)]  # ratio .98 vs .99: 1 and 1
    scores = scores_of(rows)
    assert pick(scores, 2, "2").loc[D2, "mase"] == pytest.approx(1.0)
    pooled = pick(scores, 0, "2")
    assert pooled.loc[D2, "matured"] == 3 and pooled.loc[D2, "mase"] == pytest.approx(7 / 22)
    assert pooled.loc[D2, "coverage_80"] == pytest.approx(
        0.5
    )  # the row without bounds: not counted


def test_forecasts_without_intervals_have_nan_interval_scores():
    rows = [forecast("AAA", D0, 1, D1, 100.0, 105.0)]
    scores = scores_of(rows)
    assert scores[["coverage_80", "coverage_95", "crps"]].isna().all().all()
    assert len(scores) == 4 and scores["mase"].tolist() == pytest.approx([0.5] * 4)


def test_stored_quantiles_are_preferred_for_crps_and_a_row_without_them_falls_back():
    rows = pd.DataFrame(THREE_DAYS[:2]).assign(**{f"{QUANTILE_PREFIX}0.5": [105.0, np.nan]})
    scores = pick(live_scores(rows, CLOSES, (1,)), 1, "1")
    assert scores.loc[D1, "crps"] == pytest.approx(2 * 0.5 * 0.05 * 1e4)  # one level, 1.05
    fallback = pick(scores_of(THREE_DAYS[1:2], windows=(1,)), 1, "1").loc[D2, "crps"]
    assert scores.loc[D2, "crps"] == pytest.approx(fallback)


def test_nothing_matured_is_an_empty_frame_with_the_columns():
    assert list(scores_of(THREE_DAYS[3:]).columns) == list(SCORE_COLUMNS)
    assert scores_of(THREE_DAYS[3:]).empty and scores_of([]).empty
    unknown = [forecast("ZZZ", D0, 1, D1, 100.0, 105.0)]  # a ticker without closes
    assert scores_of(unknown).empty


def test_dates_may_be_timestamps_strings_or_zoned_and_through_is_a_date():
    rows = pd.DataFrame(THREE_DAYS)
    expected = live_scores(rows, CLOSES, (2,))
    as_text = rows.assign(
        as_of=rows["as_of"].astype(str), target_date=pd.to_datetime(rows["target_date"])
    )
    zoned = {"AAA": CLOSES["AAA"].tz_localize("America/New_York")}
    pd.testing.assert_frame_equal(live_scores(as_text, zoned, (2,)), expected)
    assert all(type(d) is date for d in expected["through"])


def test_the_column_names_are_the_forecast_files():
    assert QUANTILE_PREFIX == predict.QUANTILE_PREFIX
    levels = {**predict.BOUND_LEVELS, "forecast": 0.5}
    assert tuple(levels[c] for c in LEVEL_COLUMNS) == REQUIRED_QUANTILES


DAYS = pd.bdate_range("2025-01-06", periods=40)


def history(seed: int, tickers: int, days: int, horizons: int, rising: bool = False):
    """(forecasts, closes): `days` forecast days x `horizons` of `tickers` random walks, the
    last `horizons` days' targets beyond the closes (not matured); bounds at +-1% and +-2%."""
    rng = np.random.default_rng(seed)
    steps = (
        rng.uniform(0.001, 0.03, (tickers, days))
        if rising
        else rng.normal(0, 0.02, (tickers, days))
    )
    prices = 50 * np.exp(np.cumsum(steps, axis=1))  # [T, D]
    closes = {f"T{t}": pd.Series(prices[t], index=DAYS[:days]) for t in range(tickers)}
    t, d, h = (
        a.ravel()
        for a in np.meshgrid(range(tickers), range(days), range(1, horizons + 1), indexing="ij")
    )
    last = prices[t, d]
    median = last * np.exp(rng.normal(0, 0.02, len(t)))
    frame = pd.DataFrame(
        {
            "model_name": "m",
            "model_version": np.where(t % 2 == 0, "1", "2"),
            "ticker": [f"T{i}" for i in t],
            "as_of": DAYS[d].date,
            "horizon": h,
            "target_date": DAYS[d + h].date,
            "forecast": median,
            "lower_95": median * 0.98,
            "lower_80": median * 0.99,
            "upper_80": median * 1.01,
            "upper_95": median * 1.02,
            "last_close": last,
            "run_id": "r",
        }
    )
    return frame, closes


HISTORIES = st.tuples(
    st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(2, 12), st.integers(1, 3)
)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(HISTORIES, st.floats(1e-3, 1e3), st.integers(0, 2))
def test_rescaling_a_tickers_whole_history_changes_no_score(shape, factor, which):
    forecasts, closes = history(*shape)
    ticker = f"T{which % shape[1]}"
    adjusted = closes | {ticker: closes[ticker] * factor}  # a split or dividend adjustment
    pd.testing.assert_frame_equal(
        live_scores(forecasts, adjusted, (3,)), live_scores(forecasts, closes, (3,)), rtol=1e-9
    )


def realised(forecasts: pd.DataFrame, closes) -> tuple[np.ndarray, np.ndarray]:
    """(close on as_of, close on target_date) of each row, NaN where there is none."""

    def on(column: str) -> np.ndarray:
        return np.array(
            [
                closes[t].get(pd.Timestamp(d), np.nan)
                for t, d in zip(forecasts["ticker"], forecasts[column], strict=True)
            ]
        )

    return on("as_of"), on("target_date")


@PROPERTY
@given(HISTORIES)
def test_a_perfect_forecast_scores_mase_zero_and_full_coverage(shape):
    forecasts, closes = history(*shape, rising=True)  # every day moves: a naive error > 0
    start, end = realised(forecasts, closes)
    perfect = forecasts.assign(forecast=end).fillna({"forecast": 1.0})
    for bound, factor in (
        ("lower_95", 0.98),
        ("lower_80", 0.99),
        ("upper_80", 1.01),
        ("upper_95", 1.02),
    ):
        perfect[bound] = perfect["forecast"] * factor
    scores = live_scores(perfect, closes, (3,))
    assert not scores.empty and (scores["naive_mae"] > 0).all()
    assert (scores["mase"] == 0).all() and (scores["mae"] == 0).all()
    assert (scores["coverage_80"] == 1).all() and (scores["coverage_95"] == 1).all()
    assert (scores["direction"] == 1).all()


@PROPERTY
@given(HISTORIES)
def test_the_naive_forecast_scores_mase_one_and_no_direction(shape):
    forecasts, closes = history(*shape)
    scores = live_scores(forecasts.assign(forecast=forecasts["last_close"]), closes, (3,))
    moved = scores["naive_mae"] > 0
    assert (scores.loc[moved, "mase"] == 1).all() and np.isinf(scores.loc[~moved, "mase"]).all()
    assert (scores["direction"] == 0).all() and (scores["mae"] == scores["naive_mae"]).all()


@PROPERTY
@given(HISTORIES, st.integers(0, 2**32 - 1))
def test_rows_not_matured_never_change_the_scores(shape, seed):
    forecasts, closes = history(*shape)
    rng = np.random.default_rng(seed)
    extra = forecasts.sample(n=min(len(forecasts), 5), random_state=seed).copy()
    beyond = DAYS[shape[2] + 3 : shape[2] + 8].date  # after every close
    extra["target_date"] = rng.choice(beyond, len(extra))
    unknown = extra.assign(ticker="NOPE", target_date=forecasts["target_date"].iloc[0])
    weekend = extra.assign(as_of=extra["as_of"].map(lambda d: d + timedelta(days=5 - d.weekday())))
    more = pd.concat([forecasts, extra, unknown, weekend], ignore_index=True).sample(
        frac=1, random_state=seed
    )
    pd.testing.assert_frame_equal(
        live_scores(more, closes, (3,)), live_scores(forecasts, closes, (3,))
    )


@PROPERTY
@given(HISTORIES, st.integers(1, 6))
def test_a_window_never_counts_more_than_its_days(shape, window):
    forecasts, closes = history(*shape)
    scores = live_scores(forecasts, closes, (window,))
    for _, group in scores.groupby(["model_version", "horizon"]):
        live = group[group["window"] == "live"].set_index("through")
        rolling = group[group["window"] == str(window)].set_index("through")
        assert list(live.index) == list(rolling.index) and live.index.is_unique
        per_day = live["matured"].diff().fillna(live["matured"].iloc[0])  # matured each date
        expected = per_day.rolling(window, min_periods=1).sum().astype(int)
        assert rolling["matured"].tolist() == expected.tolist()
        assert (rolling["matured"] <= live["matured"]).all()


def pooled_row(window: str, through: date, matured: int, mase: float, coverage: float, **more):
    row = {"model_name": "m", "model_version": "1", "horizon": 0, "window": window}
    return (
        row | {"through": through, "matured": matured, "mase": mase, "coverage_80": coverage} | more
    )


def test_degradation_judges_the_latest_pooled_row_of_each_rolling_window():
    scores = pd.DataFrame(
        [
            pooled_row("20", D0, 50, 2.0, 0.5),  # older: a bad day that has passed
            pooled_row("20", D1, 50, 1.05, 0.95),
            pooled_row("60", D1, 39, 3.0, 0.1),  # too few matured to judge
            pooled_row("live", D1, 500, 9.0, 0.0),  # never judged
            pooled_row("20", D2, 50, 9.0, 0.0, horizon=1),  # a horizon row: not judged
            pooled_row("20", D1, 40, 1.2, np.nan, model_version="2"),  # no intervals
        ]
    )
    verdicts = {
        (v.model_version, v.metric, v.window): v for v in degradation(scores, MonitorConfig())
    }
    assert set(verdicts) == {
        ("1", "mase", "20"),
        ("1", "coverage_80", "20"),
        ("1", "mase", "60"),
    } | {("1", "coverage_80", "60"), ("2", "mase", "20")}
    assert verdicts[("1", "mase", "20")] == Verdict("m", "1", "mase", "20", 1.05, 1.1, 50, "ok")
    assert verdicts[("1", "coverage_80", "20")].state == "degraded"
    assert verdicts[("1", "coverage_80", "20")].threshold == 0.9  # the bound it crossed
    assert (
        verdicts[("1", "mase", "60")].state == "too_few"
        and verdicts[("1", "mase", "60")].matured == 39
    )
    assert verdicts[("2", "mase", "20")].state == "degraded"  # 1.2 > 1 + 0.1, 40 matured


@pytest.mark.parametrize(
    ("coverage", "state", "threshold"),
    [
        (0.69, "degraded", 0.7),
        (0.7, "ok", 0.7),
        (0.78, "ok", 0.7),
        (0.82, "ok", 0.9),
        (0.9, "ok", 0.9),
        (0.91, "degraded", 0.9),
    ],
)
def test_coverage_is_degraded_outside_its_band_only(coverage, state, threshold):
    (verdict,) = [
        v
        for v in degradation(
            pd.DataFrame([pooled_row("20", D1, 40, 1.0, coverage)]), MonitorConfig()
        )
        if v.metric == "coverage_80"
    ]
    assert (verdict.state, verdict.threshold) == (state, threshold)


def test_the_thresholds_come_from_the_config():
    scores = pd.DataFrame([pooled_row("5", D1, 3, 1.3, 0.5)])
    cfg = MonitorConfig(windows=(5,), min_matured=3, mase_margin=0.5, coverage_80_low=0.4)
    assert {v.metric: v.state for v in degradation(scores, cfg)} == {
        "mase": "ok",
        "coverage_80": "ok",
    }
    assert degradation(scores, MonitorConfig()) == []  # window 5 is not a configured one


def verdict(state: str, metric: str = "mase", version: str = "1") -> Verdict:
    return Verdict("m", version, metric, "20", 1.0, 1.1, 50, state)


@pytest.mark.parametrize(
    ("previous", "state", "changed"),
    [
        (None, "degraded", True),  # the first alert
        (None, "ok", False),  # nothing was wrong
        (None, "too_few", False),
        ("ok", "degraded", True),
        ("degraded", "degraded", False),  # still degraded: no second event
        ("degraded", "ok", True),  # recovered
        ("degraded", "too_few", False),  # too few says nothing
        ("ok", "ok", False),
    ],
)
def test_changes_are_state_changes_only(previous, state, changed):
    known = {} if previous is None else {("1", "mase", "20"): previous}
    assert changes([verdict(state)], known) == ([verdict(state)] if changed else [])


def test_changes_are_keyed_by_version_metric_and_window():
    known = {("1", "mase", "20"): "degraded"}
    others = [verdict("degraded", metric="coverage_80"), verdict("degraded", version="2")]
    assert changes(others, known) == others
