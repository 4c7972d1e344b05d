"""Local price files loaded on worker processes: the same prices, failures and lines as in one,
and as from a load the command started ahead."""

from __future__ import annotations

import logging
import os
import signal
from concurrent.futures import wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lstm_pipeline import data, loading
from lstm_pipeline.config import DataConfig
from lstm_pipeline.loading import load_in_processes


def test_worker_processes_load_what_one_process_loads_with_its_failures_and_lines(csv_dir, caplog):
    (csv_dir / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-01,1,2,0.5,1,-5\n")
    (csv_dir / "CCC.csv").write_text((csv_dir / "AAA.csv").read_text())
    tickers = ("CCC", "BAD", "AAA", "NOPE", "BBB")
    cfg = DataConfig(source="csv", data_dir=str(csv_dir), tickers=tickers)
    chunks = [cfg.model_copy(update={"tickers": tickers[i : i + 2]}) for i in (0, 2, 4)]
    expected, expected_failures = data.load_many(cfg, 30, "a test", 7)
    counted: list[int] = []
    with caplog.at_level(logging.INFO, logger="lstm_pipeline"):
        caplog.clear()  # only the workers' lines, sent back
        loaded, failed = load_in_processes(chunks, 2, 30, "a test", 7, counted.append)
        lines = [r.getMessage() for r in caplog.records if r.name == "lstm_pipeline.data"]
    assert list(loaded) == ["CCC", "AAA", "BBB"] and list(failed) == ["BAD", "NOPE"]
    for ticker, prices in expected.items():
        pd.testing.assert_frame_equal(loaded[ticker], prices)
    assert {t: (type(e), str(e)) for t, e in failed.items()} == {
        t: (type(e), str(e)) for t, e in expected_failures.items()
    }
    assert counted == [2, 2, 1]  # each chunk's tickers, in order
    assert [line.split(":")[0] for line in lines if " rows " in line] == ["CCC", "AAA", "BBB"]


def universe(csv_dir: Path, monkeypatch: pytest.MonkeyPatch) -> DataConfig:
    """Five csv tickers that load on two worker processes, in chunks of two."""
    monkeypatch.setattr(loading, "LOCAL_BATCH", 2)
    monkeypatch.setattr(loading, "PROCESSES_FROM", 5)
    monkeypatch.setattr(loading.os, "cpu_count", lambda: 2)
    for ticker in ("CCC", "DDD"):
        (csv_dir / f"{ticker}.csv").write_text((csv_dir / "AAA.csv").read_text())
    (csv_dir / "BAD.csv").write_text("Date,Open,High,Low,Close,Volume\n2020-01-01,1,2,0.5,1,-5\n")
    tickers = ("DDD", "AAA", "BAD", "CCC", "BBB")
    return DataConfig(source="csv", data_dir=str(csv_dir), tickers=tickers)


def loaded_as_the_flow_asks(cfg: DataConfig, caplog: pytest.LogCaptureFixture, *args: Any) -> Any:
    """load_in_processes as fetching.each_batch calls it: (prices, failures, lines, counts)."""
    chunks = loading.chunked(cfg)
    counted: list[int] = []
    with caplog.at_level(logging.INFO, logger="lstm_pipeline"):
        caplog.clear()
        loaded, failed = load_in_processes(
            chunks, loading.worker_count(chunks), *args, on_chunk=counted.append
        )
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("lstm_pipeline")]
    return loaded, {t: (type(e), str(e)) for t, e in failed.items()}, lines, counted


def assert_same_load(got: Any, expected: Any) -> None:
    loaded, failed, lines, counted = got
    assert list(loaded) == list(expected[0])
    for ticker, prices in expected[0].items():
        pd.testing.assert_frame_equal(loaded[ticker], prices)
    assert (failed, lines, counted) == expected[1:]


def spoil(cfg: DataConfig) -> None:
    """Every file of cfg's tickers made unreadable: only a load finished before sees them."""
    for ticker in cfg.tickers:
        (Path(cfg.data_dir or "") / f"{ticker}.csv").write_text("not,a,price,file\n")


def finished(started: loading._Started) -> loading._Started:
    wait(started.futures)
    return started


def test_a_load_started_ahead_is_taken_when_the_flow_asks_the_same(csv_dir, monkeypatch, caplog):
    cfg = universe(csv_dir, monkeypatch)
    plain = loaded_as_the_flow_asks(cfg, caplog, 30, "a test", 7)
    with loading.ahead(cfg, 30, "a test", 7):
        [started] = loading._started.values()
        finished(started)
        spoil(cfg)  # a load made now would fail every ticker
        assert_same_load(loaded_as_the_flow_asks(cfg, caplog, 30, "a test", 7), plain)
        assert loading._started == {}  # taken once
    assert all(not p.is_alive() for p in processes_of(started))


@pytest.mark.parametrize("asked", [(31, "a test", 7), (30, "another test", 7), (30, "a test", 8)])
def test_a_load_started_with_other_arguments_is_stopped_and_the_flow_loads_itself(
    csv_dir, monkeypatch, caplog, asked
):
    cfg = universe(csv_dir, monkeypatch)
    with loading.ahead(cfg, 30, "a test", 7):
        [started] = loading._started.values()
        finished(started)
        spoil(cfg)  # only a load made now fails every ticker
        got = loaded_as_the_flow_asks(cfg, caplog, *asked)
        assert loading._started == {}
    expected = loaded_as_the_flow_asks(cfg, caplog, *asked)  # with nothing started
    assert len(expected[1]) == 5
    assert_same_load(got, expected)
    assert all(not p.is_alive() for p in processes_of(started))


def test_a_load_whose_worker_died_ahead_is_loaded_anew_as_far_as_it_got(
    csv_dir, monkeypatch, caplog
):
    cfg = universe(csv_dir, monkeypatch)
    plain = loaded_as_the_flow_asks(cfg, caplog, 30, "a test", None)
    with loading.ahead(cfg, 30, "a test", None):
        [started] = loading._started.values()
        os.kill(processes_of(started)[0].pid, signal.SIGKILL)
        assert_same_load(loaded_as_the_flow_asks(cfg, caplog, 30, "a test", None), plain)
    assert all(isinstance(f.exception(), BrokenProcessPool) for f in started.futures)


def test_a_load_never_taken_is_stopped_with_its_workers_when_the_command_fails(
    csv_dir, monkeypatch
):
    cfg = universe(csv_dir, monkeypatch)
    with pytest.raises(RuntimeError, match="the command failed"):
        with loading.ahead(cfg, 30, "a test", 7):
            [started] = loading._started.values()
            workers = processes_of(started)
            assert workers and all(p.is_alive() for p in workers)
            raise RuntimeError("the command failed")
    assert loading._started == {}
    assert all(not p.is_alive() for p in workers)


def test_nothing_is_started_for_a_flow_that_loads_in_one_process(csv_dir, monkeypatch):
    cfg = universe(csv_dir, monkeypatch)
    with loading.ahead(cfg.model_copy(update={"tickers": cfg.tickers[:4]}), 30, "a test"):
        assert loading._started == {}  # fewer than PROCESSES_FROM tickers
    monkeypatch.setattr(loading.os, "cpu_count", lambda: 1)
    with loading.ahead(cfg, 30, "a test"):
        assert loading._started == {}  # one core


def processes_of(started: loading._Started) -> list[Any]:
    return list((started.pool._processes or {}).values())
