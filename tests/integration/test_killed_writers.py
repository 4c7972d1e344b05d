"""A parquet cache writer killed mid-write, for real: the old file stays readable and the torn
one is never read. (The cache's other rules: tests/unit/test_cache.py; a forecast killed
mid-write: test_faults.py.)"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from lstm_pipeline import data
from tests.conftest import ROOT
from tests.unit.test_cache import FULL


def test_a_writer_killed_mid_write_leaves_the_old_cache_readable(tmp_path: Path):
    path = tmp_path / "1d" / "AAPL.parquet"
    old = FULL.iloc[:50].astype("float64")
    data.save_cache(old, path, covered_from=None)
    script = f"""
import time
import pandas as pd
from lstm_pipeline import files

payload = pd.read_parquet({str(path)!r}).iloc[:10].to_parquet()

def slow_writer(tmp):
    with open(tmp, "wb") as out:
        out.write(payload[: len(payload) // 2])
        out.flush()
        print("half written", flush=True)
        time.sleep(120)
        out.write(payload[len(payload) // 2 :])

files.write_atomic({str(path)!r}, slow_writer)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "half written"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    pd.testing.assert_frame_equal(pd.read_parquet(path), old, check_freq=False)
    (half,) = path.parent.glob(".AAPL.parquet.*.tmp")  # the torn write, beside but never read
    assert half.stat().st_size > 0
