"""What every benchmark records beside its figures: the machine, versions and load; medians."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU, memory, versions and the load average now (other work skews timings)."""
    versions = {}
    for package in ("torch", "onnxruntime", "onnx", "mlflow", "prefect", "numpy", "pandas"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg": load(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def load() -> list[float]:
    """1, 5 and 15 minute load averages: above the CPU count, timings are inflated."""
    return [round(x, 2) for x in os.getloadavg()]


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def write(name: str, report: dict[str, Any], output: Path | None = None) -> Path:
    """The report with machine info, as benchmarks/results/NAME.json (or `output`)."""
    path = output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "command": " ".join(sys.argv), "machine": machine(), **report}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, as the README shows it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
