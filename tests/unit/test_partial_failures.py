"""Per-ticker failures: who survives, which exit code, and what a training run records."""

import logging

import pandas as pd
import pytest

from lstm_pipeline import data, pipeline
from lstm_pipeline.config import DataConfig, FeatureConfig
from lstm_pipeline.errors import (
    DataUnavailableError,
    DataValidationError,
    DownloadError,
    InputError,
    NoDataError,
    describe_failures,
    exit_code_for,
    failed_share,
    require_survivors,
)
from lstm_pipeline.features import rows_needed, split_by_time, split_purpose

BROKEN = DataValidationError("BBB: file x/BBB.csv: date 2020-01-03 repeats")
UNKNOWN = NoDataError("ZZZ: yfinance returned no 1d bars")
OFFLINE = DownloadError("CCC: yfinance failed after 5 attempt(s) (DNSError)")


@pytest.mark.parametrize("count", [10, 11, 400])
def test_a_universe_of_failures_names_the_first_ten_and_counts_the_rest(caplog, count):
    failures = {f"T{i:04d}": DataValidationError(f"T{i:04d}: file x: bad") for i in range(count)}
    loaded = {f"OK{i}": 1 for i in range(count)}
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        require_survivors(loaded, failures, 1, "the forecast")
    (warning,) = [r.getMessage() for r in caplog.records]
    names = ", ".join(f"T{i:04d}" for i in range(10))
    reasons = "; ".join(f"T{i:04d}: file x: bad" for i in range(10))
    more = (f", and {count - 10} more", f"; and {count - 10} more") if count > 10 else ("", "")
    assert warning == (
        f"the forecast goes on without {count} of {2 * count} ticker(s) ({names}{more[0]}): "
        f"{reasons}{more[1]}"
    )
    with pytest.raises(InputError) as refused:
        require_survivors({}, failures, 1, "the forecast")
    assert str(refused.value).endswith(f"{reasons}{more[1]}")


@pytest.mark.parametrize(
    "failures,code",
    [({}, 0), ({"BBB": BROKEN}, 2), ({"BBB": BROKEN, "ZZZ": UNKNOWN}, 2), ({"CCC": OFFLINE}, 1)],
)
def test_exit_code_is_2_only_when_every_failure_is_bad_input(failures, code):
    assert exit_code_for(describe_failures(failures)) == code


def test_failures_are_described_in_one_line_each():
    assert describe_failures({"BBB": BROKEN, "CCC": OFFLINE}) == {
        "BBB": {"error": str(BROKEN), "bad_input": True},
        "CCC": {"error": str(OFFLINE), "bad_input": False},
    }


def test_enough_survivors_go_on_with_a_warning_listing_the_failures(caplog):
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        require_survivors({"AAA": 1}, {"BBB": BROKEN, "CCC": OFFLINE}, 1, "training")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning == f"training goes on without 2 of 3 ticker(s) (BBB, CCC): {BROKEN}; {OFFLINE}"


@pytest.mark.parametrize(
    ("loaded", "failed", "ratio", "fails"),
    [
        (1, 1, 0.5, False),
        (1, 2, 0.5, True),
        (2, 1, 0.3, True),
        (1, 2, 0.7, False),
        (3, 0, 0, False),
    ],
)
def test_a_failed_share_above_the_ratio_fails_and_up_to_it_goes_on(loaded, failed, ratio, fails):
    ok = {f"OK{i}": i for i in range(loaded)}
    bad = {f"BAD{i}": DataValidationError(f"BAD{i}: broken") for i in range(failed)}
    if not fails:
        require_survivors(ok, bad, 1, "training", ratio)
        return
    share = f"{failed / (loaded + failed):.0%}"
    with pytest.raises(InputError, match=rf"{failed} of {loaded + failed} tickers failed, {share}"):
        require_survivors(ok, bad, 1, "training", ratio)


def test_too_many_failures_are_bad_input_only_if_every_one_is():
    with pytest.raises(DataUnavailableError, match=r"training: 2 of 3 tickers failed, 67% > "):
        require_survivors({"AAA": 1}, {"BBB": BROKEN, "CCC": OFFLINE}, 1, "training", 0.5)


def test_failed_share_of_nothing_is_zero():
    assert failed_share(0, 0) == 0.0 and failed_share(1, 3) == 0.75


def test_a_lone_failure_is_raised_as_it_is():
    with pytest.raises(DataValidationError) as err:
        require_survivors({}, {"BBB": BROKEN}, 1, "training")
    assert err.value is BROKEN


def test_too_few_survivors_is_bad_input_only_if_every_failure_is():
    with pytest.raises(InputError, match=r"training needs 2 usable ticker\(s\), got 1: BBB: file"):
        require_survivors({"AAA": 1}, {"BBB": BROKEN}, 2, "training")
    with pytest.raises(DataUnavailableError, match="got 0: BBB: .*; CCC: yfinance failed"):
        require_survivors({}, {"BBB": BROKEN, "CCC": OFFLINE}, 1, "training")


def test_rows_needed_is_what_split_by_time_accepts(csv_dir):
    cfg = FeatureConfig(window=10, horizon=3)
    prices = data.load_prices("AAA", DataConfig(source="csv", data_dir=str(csv_dir)))
    needed = rows_needed(cfg)
    assert needed == 56  # four splits of two windows: 4 x (10 + 3 + 1)
    assert len(split_by_time(prices.iloc[:needed], cfg, "AAA")["test"]) == 14
    with pytest.raises(DataValidationError) as err:
        split_by_time(prices.iloc[: needed - 1], cfg, "AAA")
    assert str(err.value) == (
        f"AAA: file {csv_dir}/AAA.csv: 55 rows from 2020-01-01 to 2020-03-17,"
        f" but 56 are needed for {split_purpose(cfg)}"
    )


def test_data_summary_tells_runs_on_the_same_data_from_runs_on_new_data(csv_dir):
    cfg = DataConfig(source="csv", data_dir=str(csv_dir))
    prices = {t: data.load_prices(t, cfg) for t in ("AAA", "BBB")}
    tags = pipeline.data_summary(prices, {"CCC": OFFLINE})
    assert tags == pipeline.data_summary(
        {t: data.load_prices(t, cfg) for t in ("AAA", "BBB")}, {"CCC": OFFLINE}
    )
    assert tags["data.per_ticker"] == (
        "AAA:2020-01-01..2021-07-13:400;BBB:2020-01-01..2021-07-13:400"
    )
    assert tags["data.origins"] == f"AAA:file {csv_dir}/AAA.csv;BBB:file {csv_dir}/BBB.csv"
    assert tags["data.skipped"] == str(OFFLINE) and tags["data.rows"] == "800"
    revised = {**prices, "BBB": prices["BBB"].iloc[:-1]}
    assert pipeline.data_summary(revised)["data.sha256"] != tags["data.sha256"]


def test_training_frame_is_long_format_with_a_ticker_column(csv_dir):
    cfg = DataConfig(source="csv", data_dir=str(csv_dir))
    frame = pipeline.training_frame({t: data.load_prices(t, cfg) for t in ("AAA", "BBB")})
    assert list(frame.columns) == ["Date", "ticker", *data.FEATURES] and len(frame) == 800
    assert frame["Date"].dtype.kind == "M" and set(frame["ticker"]) == {"AAA", "BBB"}
    assert isinstance(frame.index, pd.RangeIndex)
