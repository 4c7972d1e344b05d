"""The hardened yfinance call: explicit options, empty frames, retries, backoff, unfinished bars."""

import logging
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance
from yfinance.exceptions import YFRateLimitError

from lstm_pipeline import yahoo
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DownloadError, InputError, NoDataError
from tests.fake_yahoo import OFFLINE, FakeYahoo, yahoo_frame

NOW = pd.Timestamp("2024-06-01 12:00", tz="UTC")


@pytest.fixture
def fake(fake_yahoo: FakeYahoo) -> FakeYahoo:
    fake_yahoo.history["MSFT"] = yahoo_frame(30)
    return fake_yahoo


def test_download_passes_every_option_explicitly(yf_cfg, fake):
    bars = yahoo.download_bars("MSFT", yf_cfg, date(2020, 1, 1), date(2020, 2, 11), now=NOW)
    ((call),) = fake.calls
    assert call["ticker"] == "MSFT"
    assert call["auto_adjust"] is False and call["multi_level_index"] is False
    assert call["actions"] is False and call["interval"] == "1d"
    assert call["start"] == "2020-01-01" and call["period"] is None
    assert call["end"] == "2020-02-12"  # yfinance's end is exclusive, ours inclusive
    assert bars.index[-1] == pd.Timestamp("2020-02-11") and bars.index.name == "Date"


def test_pandas_deprecation_noise_from_yfinance_is_filtered(yf_cfg, fake):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the call would raise here
        assert len(yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)) == 30


CURL_FAILURE = (
    "Failed to perform, curl: (6) Could not resolve host: h."
    " See https://curl.se/libcurl/c/libcurl-errors.html first for more details."
)


@pytest.mark.parametrize(
    "logged,reason",
    [
        (  # what yfinance 1.7 logs offline on a first call
            ["['MSFT']: DNSError('" + CURL_FAILURE + "')"],
            "DNSError('Failed to perform, curl: (6) Could not resolve host: h')",
        ),
        (  # and on later calls of the same process: the last line blames the ticker
            [
                "Failed to get ticker 'MSFT' reason: " + CURL_FAILURE,
                "$MSFT: possibly delisted; no timezone found",
            ],
            "Failed to get ticker 'MSFT' reason: Failed to perform, curl: (6)"
            " Could not resolve host: h",
        ),
    ],
)
def test_an_empty_frame_after_a_logged_network_error_is_retried(
    yf_cfg, monkeypatch, logged, reason
):
    calls = []

    def offline(ticker, **kwargs):
        calls.append(ticker)
        for line in logged:
            logging.getLogger("yfinance").error(line)
        return pd.DataFrame()

    monkeypatch.setattr(yfinance, "download", offline)
    with pytest.raises(DownloadError) as err:
        yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert len(calls) == 4
    assert str(err.value) == f"MSFT: yfinance failed after 4 attempt(s) ({reason})"


def test_no_start_asks_for_the_whole_history(yf_cfg, fake):
    yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert fake.calls[0]["period"] == "max" and fake.calls[0]["end"] is None


@pytest.mark.parametrize("interval", ["1h", "1wk"])
def test_hourly_and_weekly_intervals_are_passed_through(yf_cfg, fake, interval):
    fake.history["MSFT"] = yahoo_frame(30, start=str(date.today() - timedelta(days=60)))
    yahoo.download_bars("MSFT", yf_cfg.model_copy(update={"interval": interval}), None, None)
    assert fake.calls[0]["interval"] == interval
    if interval == "1h":  # Yahoo serves two years of hourly bars, so "max" would fail
        assert fake.calls[0]["period"] is None and fake.calls[0]["start"] is not None


def test_yfinance_caches_go_to_the_configured_folder(yf_cfg, fake):
    from yfinance.cache import _TzDBManager

    yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert Path(_TzDBManager.get_location()) == Path(yf_cfg.cache_dir or "") / "yfinance"
    assert (Path(yf_cfg.cache_dir or "") / "yfinance").is_dir()


def test_an_empty_frame_is_a_failure_never_data(yf_cfg, fake):
    with pytest.raises(
        NoDataError, match="ZZZZ: yfinance returned no 1d bars .unknown or delisted"
    ):
        yahoo.download_bars("ZZZZ", yf_cfg, None, None, now=NOW)
    assert len(fake.calls) == 1  # an unknown ticker stays unknown: no retries
    assert issubclass(NoDataError, InputError)


def test_fails_n_times_then_succeeds(yf_cfg, fake, caplog):
    fake.script = [ConnectionResetError("reset"), TimeoutError("slow"), OSError("curl: (7)")]
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        bars = yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert len(bars) == 30 and len(fake.calls) == 4
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 3 and "attempt 1/4 failed (ConnectionResetError: reset)" in retries[0]


def test_rate_limits_are_retried(yf_cfg, fake):
    fake.script = [YFRateLimitError(), YFRateLimitError()]
    assert len(yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)) == 30
    assert len(fake.calls) == 3


def test_an_empty_frame_logged_as_a_network_error_is_retried(yf_cfg, fake):
    fake.script = [OFFLINE, OFFLINE]
    assert len(yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)) == 30
    assert len(fake.calls) == 3


def test_retries_are_bounded_by_count(yf_cfg, fake):
    fake.script = [YFRateLimitError()] * 10
    with pytest.raises(DownloadError, match="MSFT: yfinance failed after 4 attempt"):
        yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert len(fake.calls) == 4


def test_other_errors_are_not_retried(yf_cfg, fake):
    fake.script = [KeyError("chart")]
    with pytest.raises(KeyError):
        yahoo.download_bars("MSFT", yf_cfg, None, None, now=NOW)
    assert len(fake.calls) == 1


def test_backoff_doubles_with_jitter_up_to_the_cap_and_the_total_budget():
    yf_cfg = DataConfig(
        retry_attempts=10, retry_base_delay=1.0, retry_max_delay=4.0, retry_max_total=9.0
    )
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    def always_down() -> None:
        raise ConnectionError("down")

    with pytest.raises(DownloadError, match="failed after [0-9] attempt"):
        yahoo.call_with_retries(always_down, yf_cfg, "X", sleep=sleep, clock=lambda: clock[0])
    caps = [1.0, 2.0, 4.0, 4.0, 4.0][: len(slept)]
    assert all(cap / 2 <= s <= cap for s, cap in zip(slept, caps, strict=True)), slept
    assert sum(slept) <= 9.0 and len(slept) < 9  # the total budget stopped it, not the count


def test_todays_unfinished_bar_is_dropped():
    frame = yahoo_frame(5, start="2024-05-27")  # Mon 27 May .. Fri 31 May
    at_noon_friday = pd.Timestamp("2024-05-31 16:00", tz="UTC")
    kept = yahoo.drop_unfinished_bars(frame, "1d", at_noon_friday)
    assert kept.index[-1] == pd.Timestamp("2024-05-30") and len(kept) == 4
    next_day = pd.Timestamp("2024-06-01 00:00", tz="UTC")
    assert len(yahoo.drop_unfinished_bars(frame, "1d", next_day)) == 5


def test_unfinished_hourly_and_weekly_bars_are_dropped():
    hours = pd.date_range("2024-05-31 13:30", periods=3, freq="h", tz="America/New_York")
    frame = pd.DataFrame({"Close": np.arange(3.0)}, index=hours)
    kept = yahoo.drop_unfinished_bars(frame, "1h", pd.Timestamp("2024-05-31 19:00", tz="UTC"))
    assert list(kept.index) == [pd.Timestamp("2024-05-31 13:30")]  # naive exchange time
    weeks = pd.DataFrame({"Close": [1.0, 2.0]}, index=pd.to_datetime(["2024-05-20", "2024-05-27"]))
    kept = yahoo.drop_unfinished_bars(weeks, "1wk", pd.Timestamp("2024-05-31", tz="UTC"))
    assert list(kept.index) == [pd.Timestamp("2024-05-20")]
