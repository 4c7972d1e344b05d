"""The parquet cache behind the yfinance source: incremental updates, fallback, atomic writes."""

import logging
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lstm_pipeline import cache, data, files
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import DataValidationError, DownloadError
from tests.fake_yahoo import DNS_ERROR, OFFLINE, FakeYahoo, yahoo_frame

FULL = yahoo_frame(320)  # business days 2020-01-01 .. 2021-03-23; the first 300 end 2021-02-23


@pytest.fixture
def fake(fake_yahoo: FakeYahoo) -> FakeYahoo:
    fake_yahoo.history["AAPL"] = FULL.iloc[:300]
    return fake_yahoo


def cached_bars(yf_cfg: DataConfig) -> pd.DataFrame:
    return pd.read_parquet(cache.cache_path(yf_cfg.cache_root(), "AAPL", yf_cfg.interval))


def test_cache_lives_per_ticker_and_interval(yf_cfg, fake):
    result = data.refresh_cache("AAPL", yf_cfg)
    assert result.path == Path(yf_cfg.cache_dir or "") / "1d" / "AAPL.parquet"
    assert result.path.is_file() and result.stale == ""
    weekly = yf_cfg.model_copy(update={"interval": "1wk"})
    assert data.refresh_cache("AAPL", weekly).path.parent.name == "1wk"


def test_cache_dir_defaults_to_the_environment_variable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LSTM_PIPELINE_CACHE", str(tmp_path / "env-cache"))
    assert DataConfig().cache_root() == tmp_path / "env-cache"
    monkeypatch.delenv("LSTM_PIPELINE_CACHE")
    assert DataConfig().cache_root() == Path("data/cache")


def test_incremental_update_downloads_from_the_last_bar_and_adds_exactly_the_new_rows(yf_cfg, fake):
    before = data.refresh_cache("AAPL", yf_cfg).prices
    fake.history["AAPL"] = FULL.copy()
    fake.history["AAPL"].loc[FULL.index[297], "Volume"] = 123  # a late revision in the overlap
    after = data.refresh_cache("AAPL", yf_cfg).prices
    overlap_start = (FULL.index[299] - timedelta(days=yf_cfg.overlap_days)).date().isoformat()
    assert fake.starts() == [None, overlap_start]
    assert after.index.difference(before.index).equals(FULL.index[300:])
    stored = cached_bars(yf_cfg)
    assert len(stored) == 320 and stored.index.is_unique and stored.index.is_monotonic_increasing
    assert stored.loc[FULL.index[297], "Volume"] == 123  # the new value wins
    pd.testing.assert_frame_equal(
        stored.drop(columns="Volume"), FULL[stored.columns].drop(columns="Volume"), check_freq=False
    )


def test_a_cache_that_covers_the_range_is_read_without_any_download(yf_cfg, fake):
    data.refresh_cache("AAPL", yf_cfg)
    past = yf_cfg.model_copy(update={"start": date(2020, 3, 2), "end": date(2020, 6, 30)})
    prices = data.load_prices("AAPL", past)
    assert len(fake.calls) == 1
    assert prices.index[0] == pd.Timestamp("2020-03-02") and prices.index[-1].month == 6


def test_older_dates_than_the_cache_covers_are_downloaded_once(yf_cfg, fake):
    data.refresh_cache("AAPL", yf_cfg.model_copy(update={"start": date(2020, 6, 1)}))
    data.refresh_cache("AAPL", yf_cfg.model_copy(update={"start": date(2020, 1, 1)}))
    data.refresh_cache("AAPL", yf_cfg.model_copy(update={"start": date(2020, 3, 1)}))
    assert fake.starts()[:2] == ["2020-06-01", "2020-01-01"]
    assert fake.starts()[2] > "2021"  # covered: only the newest bars are asked for
    assert cached_bars(yf_cfg).index[0] == pd.Timestamp("2020-01-01")


def test_a_new_dividend_rebases_history_so_the_whole_history_is_downloaded_again(yf_cfg, fake):
    data.refresh_cache("AAPL", yf_cfg)
    fake.history["AAPL"] = FULL.assign(**{"Adj Close": FULL["Adj Close"] * 0.99})
    data.refresh_cache("AAPL", yf_cfg)
    assert fake.starts()[-1] is None and len(fake.calls) == 3
    stored = cached_bars(yf_cfg)
    pd.testing.assert_series_equal(stored["Adj Close"], FULL["Adj Close"] * 0.99, check_freq=False)


def test_offline_run_falls_back_to_the_cache_saying_how_stale_it_is(yf_cfg, fake, caplog):
    before = data.refresh_cache("AAPL", yf_cfg).prices
    fake.script = [OFFLINE] * 5
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        result = data.refresh_cache("AAPL", yf_cfg)
    pd.testing.assert_frame_equal(result.prices, before, check_freq=False)
    age = (date.today() - date(2021, 2, 23)).days
    warning = caplog.records[-1].getMessage()
    assert warning == (
        f"AAPL: yfinance failed after 4 attempt(s) ({DNS_ERROR});"
        f" using the cache {result.path} instead (last bar 2021-02-23, {age} days old)"
    )
    assert result.stale.endswith(f"{age} days old)")


def test_offline_without_a_cache_is_a_clear_error(yf_cfg, fake):
    fake.script = [ConnectionError("no route")] * 5
    with pytest.raises(DownloadError) as err:
        data.load_prices("AAPL", yf_cfg)
    assert str(err.value) == (
        "AAPL: yfinance failed after 4 attempt(s) (ConnectionError: no route);"
        f" no cache at {yf_cfg.cache_root() / '1d' / 'AAPL.parquet'} to fall back on"
    )


def test_fetch_command_reports_a_failed_update_even_with_a_cache(yf_cfg, fake):
    data.refresh_cache("AAPL", yf_cfg)
    fake.script = [OFFLINE] * 5
    with pytest.raises(DownloadError, match=r"cache .*AAPL.parquet kept \(last bar 2021-02-23"):
        data.fill_cache("AAPL", yf_cfg)


def test_the_flows_stale_fallback_reads_the_cache_as_it_stands_without_a_download(
    yf_cfg, fake, caplog
):
    path = data.refresh_cache("AAPL", yf_cfg).path
    calls = len(fake.calls)
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        prices = data.load_stale("AAPL", yf_cfg, 300, "a test")
    assert len(fake.calls) == calls and prices.index[-1] == pd.Timestamp("2021-02-23")
    age = (date.today() - date(2021, 2, 23)).days
    assert caplog.records[-1].getMessage() == (
        f"AAPL: yfinance update failed; using the cache {path} instead"
        f" (last bar 2021-02-23, {age} days old)"
    )
    path.unlink()
    with pytest.raises(DownloadError, match=f"AAPL: .*; no cache at {path} to fall back on"):
        data.load_stale("AAPL", yf_cfg)


def test_a_bad_download_never_replaces_a_good_cache(yf_cfg, fake):
    path = data.refresh_cache("AAPL", yf_cfg).path
    good = path.read_bytes()
    fake.history["AAPL"] = FULL.copy()
    fake.history["AAPL"].loc[FULL.index[310], "Open"] = -1.0
    with pytest.raises(
        DataValidationError, match="AAPL: yfinance 1d bars: non-positive Open -1 on 2021-03-10"
    ):
        data.load_prices("AAPL", yf_cfg)
    assert path.read_bytes() == good


def test_todays_unfinished_bar_is_never_cached(yf_cfg, fake):
    today = pd.Timestamp(date.today())
    fake.history["AAPL"] = FULL.iloc[:40].set_axis(
        pd.date_range(end=today, periods=40, freq="D", name="Date")
    )
    stored = data.refresh_cache("AAPL", yf_cfg).prices
    assert stored.index[-1] == today - pd.Timedelta(days=1)


def test_an_unreadable_cache_file_is_replaced_by_a_fresh_download(yf_cfg, fake, caplog):
    path = cache.cache_path(yf_cfg.cache_root(), "AAPL")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really parquet")
    with caplog.at_level(logging.WARNING, logger="lstm_pipeline"):
        assert len(data.refresh_cache("AAPL", yf_cfg).prices) == 300
    assert "ignoring unreadable cache" in caplog.records[0].getMessage()
    assert len(pd.read_parquet(path)) == 300


def test_csv_and_sample_sources_never_touch_the_cache(yf_cfg, csv_dir: Path):
    local = yf_cfg.model_copy(
        update={"source": "csv", "data_dir": str(csv_dir), "tickers": ("AAA",)}
    )
    data.load_prices("AAA", local)
    assert not Path(yf_cfg.cache_dir or "").exists()


def test_fetch_imports_a_csv_file_into_the_cache(yf_cfg, csv_dir: Path):
    local = yf_cfg.model_copy(update={"source": "csv", "data_dir": str(csv_dir)})
    summary = data.fill_cache("AAA", local)
    assert summary == {
        "rows": 400,
        "first": "2020-01-01",
        "last": "2021-07-13",
        "path": str(Path(yf_cfg.cache_dir or "") / "1d" / "AAA.parquet"),
    }


def test_fetch_key_names_what_the_result_depends_on_and_open_ranges_name_the_day(tmp_path):
    cfg = DataConfig(tickers=("AAPL",), source="yfinance", cache_dir=str(tmp_path))
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    key = cache.fetch_key("AAPL", cfg, 42, monday)
    assert key is not None and key == cache.fetch_key("aapl", cfg, 42, monday)
    assert key != cache.fetch_key("AAPL", cfg, 42, tuesday)  # no end: a new bar every day
    changed = [
        cache.fetch_key("MSFT", cfg, 42, monday),
        cache.fetch_key("AAPL", cfg, 43, monday),
        cache.fetch_key("AAPL", cfg.model_copy(update={"interval": "1wk"}), 42, monday),
        cache.fetch_key("AAPL", cfg.model_copy(update={"start": date(2020, 1, 1)}), 42, monday),
        cache.fetch_key(
            "AAPL", cfg.model_copy(update={"cache_dir": str(tmp_path / "x")}), 42, monday
        ),
    ]
    assert len({key, *changed}) == 6
    closed = cfg.model_copy(update={"end": date(2026, 6, 30)})
    assert cache.fetch_key("AAPL", closed, 42, monday) == cache.fetch_key(
        "AAPL", closed, 42, tuesday
    )
    reaching_today = cfg.model_copy(update={"end": tuesday})
    assert cache.fetch_key("AAPL", reaching_today, 42, tuesday) != cache.fetch_key(
        "AAPL", reaching_today, 42, monday
    )


@pytest.mark.parametrize("source", ["sample", "csv"])
def test_local_sources_are_never_reused_by_key(source, tmp_path):
    cfg = DataConfig(tickers=("AAPL",), source=source, data_dir=str(tmp_path))
    assert cache.fetch_key("AAPL", cfg, 2, date(2026, 11, 24)) is None


def test_the_next_write_removes_only_the_temp_files_of_dead_writers(tmp_path: Path):
    path = tmp_path / "AAPL.parquet"
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = files.this_host()
    torn = tmp_path / f".AAPL.parquet.{int(ended.stdout)}@{host}.abc123.tmp"  # writer gone
    torn.write_text("half a file")
    live = tmp_path / f".AAPL.parquet.{os.getpid()}@{host}.def456.tmp"  # a writer still at work
    live.write_text("in progress")
    files.write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and live.exists() and not torn.exists()
