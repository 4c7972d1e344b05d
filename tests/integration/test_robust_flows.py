"""Per-ticker failures against the failure ratio, and reuse of fetch results, under Prefect."""

import asyncio
import logging
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from lstm_pipeline import loading
from lstm_pipeline.config import DataConfig
from lstm_pipeline.errors import InputError
from tests.fake_yahoo import yahoo_frame

pytestmark = pytest.mark.slow


def with_broken(cfg, *tickers: str) -> DataConfig:
    """cfg's csv data with `tickers` added as copies of AAA with an impossible date."""
    folder = Path(cfg.data.data_dir or "")
    good = (folder / "AAA.csv").read_text()
    for ticker in tickers:
        (folder / f"{ticker}.csv").write_text(good.replace("2020-01-0", "2020-13-0"))
    return cfg.data.model_copy(update={"tickers": ("AAA", *tickers)})


def test_failures_up_to_the_ratio_complete_with_a_warning_naming_them(
    prefect_harness, tiny_cfg, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow

    data = with_broken(tiny_cfg, "BBB")  # 1 of 2 failed: 50%, the default limit
    # a handler of our own: whether the root logger (caplog's) still sees library records
    # depends on when Prefect last configured logging
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    library = logging.getLogger("lstm_pipeline")
    library.addHandler(handler)
    try:
        state = forecast_flow(data, str(tiny_onnx[0]), str(tmp_path / "f.csv"), return_state=True)
    finally:
        library.removeHandler(handler)
    assert state.is_completed()
    assert state.result()["failed"]["BBB"]["bad_input"] is True
    (warning,) = [w for w in warnings if "goes on without" in w]
    assert warning.startswith("the forecast goes on without 1 of 2 ticker(s) (BBB): BBB: file ")


def test_failures_above_the_ratio_fail_the_flow_as_bad_input(
    prefect_harness, tiny_cfg, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow

    data = with_broken(tiny_cfg, "BBB", "CCC")  # 2 of 3: 67% > 50%
    output = tmp_path / "f.csv"
    state = forecast_flow(data, str(tiny_onnx[0]), str(output), return_state=True)
    assert state.is_failed() and not output.exists()
    with pytest.raises(InputError, match=r"2 of 3 tickers failed, 67% > max_failure_ratio 50%"):
        state.result()
    relaxed = data.model_copy(update={"max_failure_ratio": 0.7})
    result = forecast_flow(relaxed, str(tiny_onnx[0]), str(output))
    assert set(result["failed"]) == {"BBB", "CCC"} and set(pd.read_csv(output)["ticker"]) == {"AAA"}


def test_a_second_fetch_of_the_same_range_reuses_the_result_and_a_new_range_does_not(
    prefect_harness, fake_yahoo, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow

    fake_yahoo.history["AAPL"] = yahoo_frame(60)
    cfg = DataConfig(tickers=("AAPL",), source="yfinance", cache_dir=str(tmp_path / "cache"))
    output = tmp_path / "f.csv"

    def forecast(data: DataConfig) -> pd.DataFrame:
        forecast_flow(data, str(tiny_onnx[0]), str(output))
        return pd.read_csv(output)

    first = forecast(cfg)
    calls = len(fake_yahoo.calls)
    assert calls >= 1
    pd.testing.assert_frame_equal(forecast(cfg), first)  # same day, same range: no download
    assert len(fake_yahoo.calls) == calls
    later = forecast(cfg.model_copy(update={"start": date(2020, 1, 15)}))
    assert len(fake_yahoo.calls) > calls  # a new range is fetched
    assert later["as_of"].tolist() == first["as_of"].tolist()


def test_a_stale_cache_used_in_an_outage_is_not_reused_once_the_network_is_back(
    prefect_harness, fake_yahoo, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow
    from lstm_pipeline.data import fill_cache

    cfg = DataConfig(
        tickers=("AAPL",),
        source="yfinance",
        cache_dir=str(tmp_path / "cache"),
        retry_attempts=2,
        retry_base_delay=0.0,
    )
    fake_yahoo.history["AAPL"] = yahoo_frame(60)
    fill_cache("AAPL", cfg)  # yesterday's cache
    fake_yahoo.history["AAPL"] = yahoo_frame(70)  # the market moved on,
    fake_yahoo.offline = ("AAPL",)  # but Yahoo cannot be reached
    output = tmp_path / "f.csv"

    def as_of() -> str:
        forecast_flow(cfg, str(tiny_onnx[0]), str(output))
        return pd.read_csv(output)["as_of"].iloc[0]

    bars = yahoo_frame(70).index
    assert as_of() == str(bars[59].date())  # the outage: the cache stood in
    fake_yahoo.offline = ()  # the network is back, the same day, the same range
    assert as_of() == str(bars[69].date())  # downloaded, not the stale result again


def test_a_cache_that_cannot_be_written_fails_before_any_download(
    prefect_harness, fake_yahoo, tiny_onnx, tmp_path
):
    from flows.inference import forecast_flow

    fake_yahoo.history["AAPL"] = yahoo_frame(60)
    (tmp_path / "a-file").write_text("not a folder")
    cfg = DataConfig(tickers=("AAPL",), source="yfinance", cache_dir=str(tmp_path / "a-file/c"))
    with pytest.raises(InputError, match=r"^cache .*a-file/c: cannot write in .*a-file \(Not a"):
        forecast_flow(cfg, str(tiny_onnx[0]), str(tmp_path / "f.csv"))
    assert fake_yahoo.calls == [] and not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(
    "processes_from,loads",
    [
        (1_000, ["load-BBB", "load-DDD..AAA", "load-EEE..CCC"]),  # batches of 2, in turn
        (5, ["load-DDD..BBB-on-2-processes"]),  # the same batches, on one process per core
    ],
)
def test_local_files_load_in_batches_each_ticker_failing_alone(
    prefect_harness, tiny_cfg, tiny_onnx, tmp_path, monkeypatch, processes_from, loads
):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.inference import forecast_flow

    monkeypatch.setattr(loading, "LOCAL_BATCH", 2)
    monkeypatch.setattr(loading, "PROCESSES_FROM", processes_from)
    monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
    folder = Path(tiny_cfg.data.data_dir or "")
    for ticker in ("CCC", "DDD"):
        (folder / f"{ticker}.csv").write_text((folder / "AAA.csv").read_text())
    data = with_broken(tiny_cfg, "EEE").model_copy(
        update={"tickers": ("DDD", "AAA", "EEE", "CCC", "BBB"), "max_failure_ratio": 0.5}
    )
    output = tmp_path / "f.csv"
    state = forecast_flow(data, str(tiny_onnx[0]), str(output), return_state=True)
    assert state.is_completed()
    assert list(state.result()["failed"]) == ["EEE"]  # its batch-mate AAA was forecast
    assert pd.read_csv(output)["ticker"].unique().tolist() == ["DDD", "AAA", "CCC", "BBB"]

    async def task_run_names() -> list[str]:
        async with get_client() as client:
            flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            return sorted(r.name for r in await client.read_task_runs(flow_run_filter=flow_runs))

    names = asyncio.run(task_run_names())
    assert [n for n in names if n.startswith("load-")] == loads
