"""Wall seconds per stage of a flow run: the `timings` of `--json`, read by benchmarks/universe.py.

A stage is a few lines of a flow (`load`, `windows`, `evaluation`, ...), so the cost of a run
can be split without a profiler: what grows with the universe shows up by name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Seconds per stage name, summed when a stage is timed more than once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        return {name: round(s, 3) for name, s in self.seconds.items()}
