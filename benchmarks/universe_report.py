"""The universe benchmark's arithmetic and tables: start-up and non-epoch seconds, per-ticker
lines, artifact sizes, the issue's goals (benchmarks/universe.py measures; these only compute)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common import table
from scale import linear_fit

LARGE = 1000  # sizes above: fewer dates for training, so left out of its per-ticker line
DEFAULT_EPOCHS = 30  # the default config's train.max_epochs, for the projected share
MODELS = ("registry (smoke)", "default shape (onnx)")
MIB = 2**20
RUN_COLUMNS = ("Prefect", "job", "tickers", "wall s", "start-up s", "non-epoch s", "CPU s")
RUN_COLUMNS += ("peak RSS MiB", "output MiB", "stages s")
LARGEST = ("largest_png", "biggest")


def timing_split(wall: float, timings: dict[str, float]) -> dict[str, Any]:
    """Start-up (wall - the stages the flow timed) and non-epoch (wall - epochs) seconds."""
    return {
        "timings": timings,
        "startup_s": wall - sum(timings.values()) if timings else None,
        "non_epoch_s": wall - timings["epochs"] if "epochs" in timings else None,
    }


def projected_share(non_epoch_s: float, epoch_s: float, epochs: int) -> float:
    """The non-epoch share of a run of `epochs` epochs, from a run of one."""
    return non_epoch_s / (non_epoch_s + epochs * epoch_s)


def goal(name: str, measured: float | None, limit: float, unit: str) -> dict[str, Any]:
    """One goal: `measured` below `limit`; met None when it was not measured."""
    return {
        "name": name,
        "target": f"< {limit:g} {unit}",
        "measured": measured,
        "met": None if measured is None else measured < limit,
    }


def artifact_summary(folder: Path, top: int = 8) -> dict[str, Any]:
    """Every file's size under `folder`: total, count, the biggest and the largest PNG."""
    sizes = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    biggest = sorted(sizes.items(), key=lambda item: -item[1])
    pngs = [(name, size) for name, size in biggest if name.endswith(".png")]
    return {
        "total_bytes": sum(sizes.values()),
        "files": len(sizes),
        "biggest": dict(biggest[:top]),
        "largest_png": dict(pngs[:1]),
    }


def subcommands(help_text: str) -> list[str]:
    """The commands in `lstm-pipeline --help`'s usage line: {fetch,train,...}."""
    found = re.search(r"\{([\w,-]+)\}", help_text)
    return found.group(1).split(",") if found else []


def per_ticker(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """`linear_fit` over (tickers, value) points; None below two sizes."""
    if len({n for n, _ in points}) < 2:
        return None
    return linear_fit([n for n, _ in points], [v for _, v in points])


def fits(mode: dict[str, Any]) -> dict[str, Any]:
    """Per-ticker cost of each series: forecasts per model, training on the full dates."""
    out: dict[str, Any] = {}
    for model in MODELS:
        for key in ("wall_s", "peak_rss_mib"):
            points = [(int(n), s[model][key]) for n, s in mode["forecast"].items()]
            out[f"forecast, {model}: {key}"] = per_ticker(points)
    full = {int(n): r for n, r in mode["train"].items() if int(n) <= LARGE}
    for key in ("wall_s", "non_epoch_s", "startup_s", "peak_rss_mib"):
        if all(r[key] is not None for r in full.values()):
            out[f"train (smoke): {key}"] = per_ticker([(n, r[key]) for n, r in full.items()])
    return out


def dig(tree: dict[str, Any], *keys: str) -> Any:
    """tree[k1][k2]..., or None where a key is missing (a size or a figure not run)."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


FORECAST_GOALS = (  # (what, where in a mode's results, figure, limit, unit)
    ("6 sample tickers: wall", ("sample",), "wall_s", 3, "s"),
    ("500 tickers: wall", ("forecast", "500"), "wall_s", 5, "s"),
    ("5,000 tickers: wall", ("forecast", "5000"), "wall_s", 30, "s"),
    ("5,000 tickers: peak RSS", ("forecast", "5000"), "peak_rss_mib", 1024, "MiB"),
)


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals, judged in the server mode."""
    mode = report["modes"]["server"]
    out = [goal("slowest --help (each command's too)", max(report["help"].values()), 0.5, "s")]
    for model in MODELS:
        for what, where, key, limit, unit in FORECAST_GOALS:
            out.append(
                goal(f"forecast {what}, {model}", dig(mode, *where, model, key), limit, unit)
            )
    non_epoch = dig(mode, "train", "500", "non_epoch_s")
    out.append(goal("train 500 tickers (smoke): all but the epochs", non_epoch, 15, "s"))
    default, share = mode.get("default_model", {}), None
    if default.get("non_epoch_s") is not None:
        epoch_s = default["timings"]["epochs"]
        share = 100 * projected_share(default["non_epoch_s"], epoch_s, DEFAULT_EPOCHS)
    what = f"train 500 tickers, default model: non-epoch share at {DEFAULT_EPOCHS} epochs"
    out.append(goal(f"{what} (projected from 1)", share, 10, "%"))
    return out


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def run_row(mode: str, job: str, tickers: str, r: dict[str, Any], output: int) -> list[str]:
    """A command's row of the runs table."""
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items()) or "-"
    seconds = map(fmt, (r["wall_s"], r["startup_s"], r["non_epoch_s"], r["cpu_s"]))
    return [mode, job, tickers, *seconds, fmt(r["peak_rss_mib"], ".0f"), fmt(output / MIB), stages]


def print_tables(report: dict[str, Any]) -> None:
    rows, artifacts = [], []
    for mode_name, mode in report["modes"].items():
        for n, r in [*mode["train"].items(), *(("500, default", mode.get("default_model")),)]:
            if r is None:
                continue
            rows.append(run_row(mode_name, "train", n, r, r["artifacts"]["total_bytes"]))
            png, big = (next(iter(r["artifacts"][k].items()), ("-", 0)) for k in LARGEST)
            sizes = f"{r['artifacts']['total_bytes'] / MIB:.1f}"
            artifacts.append(
                [n, str(r["artifacts"]["files"]), sizes, *mib_pair(png), *mib_pair(big)]
            )
        for n, size in [*mode["forecast"].items(), ("6 (sample)", mode["sample"])]:
            for model, r in size.items():
                job = f"forecast, {model}"
                rows.append(run_row(mode_name, job, n, r, r["forecast_file_bytes"]))
    print(table([*RUN_COLUMNS], rows))
    print("\nTraining artifacts (the run's store's artifact folder):\n")
    print(
        table(["tickers", "files", "MiB", "largest PNG", "MiB", "biggest file", "MiB"], artifacts)
    )
    fitted = [
        [
            f"{mode}: {name}",
            fmt(f["per_ticker"], ".4g"),
            fmt(f["fixed"], ".4g"),
            fmt(f["r2"], ".3f"),
        ]
        for mode, series in report["per_ticker"].items()
        for name, f in series.items()
        if f
    ]
    print("\nPer ticker (least squares over the sizes, in the series' unit):\n")
    print(table(["series", "per ticker", "fixed", "R^2"], fitted))
    met = {True: "yes", False: "**no**", None: "not measured"}
    goal_rows = [
        [g["name"], g["target"], fmt(g["measured"]), met[g["met"]]] for g in report["goals"]
    ]
    print("\nGoals (server mode):\n\n" + table(["goal", "target", "measured", "met"], goal_rows))
    print("\n" + table(["command", "median s"], [[c, fmt(s)] for c, s in report["help"].items()]))


def mib_pair(item: tuple[str, int]) -> list[str]:
    """A file's name (without its folders: run and model ids) and MiB, two cells."""
    return [Path(item[0]).name, f"{item[1] / MIB:.2f}"]
