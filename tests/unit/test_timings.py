"""The per-stage seconds of a flow run's --json summary."""

from __future__ import annotations

import time

import pytest

from flows.timings import Stopwatch


def test_a_stage_timed_twice_sums_and_one_that_raises_still_counts():
    clock = Stopwatch()
    with clock.stage("load"):
        time.sleep(0.02)
    with pytest.raises(RuntimeError), clock.stage("load"):
        time.sleep(0.02)
        raise RuntimeError("bad file")
    clock.add("epochs", 1.5)
    assert clock.seconds["load"] >= 0.04 and clock.seconds["epochs"] == 1.5
    assert list(clock.rounded()) == ["load", "epochs"]  # in the order first timed
    assert clock.rounded()["load"] == round(clock.seconds["load"], 3)
