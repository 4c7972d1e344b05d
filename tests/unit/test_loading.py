"""Local price files loaded on worker processes: the same prices, failures and lines as in one."""

from __future__ import annotations

import logging

import pandas as pd

from lstm_pipeline import data
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
