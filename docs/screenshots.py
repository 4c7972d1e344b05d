"""The README's Monitoring screenshots, taken from a real run in a real browser.

In a scratch folder, starts a real `mlflow server` and a real `prefect server` on free loopback
ports, then drives the real CLI as a schedule would: a csv folder of a few synthetic tickers
(tests/synthetic.py's make_prices under a learnable cycle), a tiny training (smoke-sized), then
day by day: append one bar per ticker, `forecast`, `score`. Part-way through, the tickers break
regime (the cycle stops: a random walk, as volatile day to day), so the live curves show the
model degrading. Then headless Chromium (Playwright, driven from its own venv) opens the
MLflow UI on the version's monitoring run and the Prefect UI on the last score run's artifact,
and saves the PNGs under docs/.

Usage (`make screenshots`): python docs/screenshots.py [--days 40] [--break-day 20]
[--keep DIR] [--out docs]. The browser half, `screenshots.py shoot ...`, runs under
.shots-venv's Python (playwright, launched on /usr/bin/chromium; no browser download).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICKERS = ("AAA", "BBB", "CCC")
TRAIN_ROWS = 320  # bars before the first live day
MODEL = "lstm-forecaster"
# learns the cycle below in seconds (validation MASE far below 1): a champion worth watching
CONFIG = """\
features: {window: 10, horizon: 3}
model: {hidden_size: 8, num_layers: 1, dropout: 0.0}
train: {max_epochs: 10, batch_size: 64, lr: 0.03, patience: 3}
"""
MLFLOW_PNG = "monitoring-mlflow.png"
PREFECT_PNG = "monitoring-prefect.png"
SCORE_ARTIFACT = "live-scores"
BROWSER = "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 900}  # three charts a row
WIDE = {"width": 2000, "height": 900}  # every column of the scores table
UI_TIMEOUT_MS = 60_000
# the monitoring run's pooled curves: MASE over 20 and 60 days, 80% coverage over 60 (one row)
CHART_NAMES = ("live_coverage_80_60", "live_mase_20", "live_mase_60")
MLFLOW_CHARTS = r"^live_(mase_(20|60)|coverage_80_60)$"  # the chart search takes a regex


# --- the scenario (the project's venv) -------------------------------------------------------


def prices(seed: int, rows: int, break_at: int) -> Any:
    """make_prices' bars on New York trading days, closes on a 25-day cycle under little noise
    up to row `break_at`, then a random walk (a regime break): its noise is 4x the cycle's, so
    the daily returns are about as volatile as before, but no longer predictable."""
    import exchange_calendars
    import numpy as np

    from tests.synthetic import make_prices

    frame = make_prices(rows, seed)
    sessions = exchange_calendars.get_calendar("XNYS").sessions_in_range("2021-01-04", "2026-12-31")
    frame["Date"] = sessions[:rows].strftime("%Y-%m-%d")
    rng = np.random.default_rng(100 + seed)
    t = np.arange(rows)
    log_close = np.log(50 + 10 * seed) + 0.08 * np.sin(t / 4 + seed) + rng.normal(0, 0.003, rows)
    walk = np.cumsum(rng.normal(0, 0.012, rows - break_at))  # 4x the cycle's daily noise
    log_close[break_at:] = log_close[break_at - 1] + walk
    close = np.exp(log_close)
    frame["Open"] = close * np.exp(rng.normal(0, 0.002, rows))
    frame["High"] = np.maximum(frame["Open"], close) * 1.003
    frame["Low"] = np.minimum(frame["Open"], close) * 0.997
    frame["Close"], frame["Adj Close"] = close, close
    return frame


def write_bars(folder: Path, frames: dict[str, Any], rows: int) -> None:
    """Each ticker's first `rows` bars as TICKER.csv: one call a day appends one bar each."""
    for ticker, frame in frames.items():
        frame.iloc[:rows].to_csv(folder / f"{ticker}.csv", index=False)


def cli(args: Sequence[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """`lstm-pipeline ARGS --json` in a fresh interpreter; its JSON (exit 0 required)."""
    code = "import sys\nfrom flows.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--json"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise SystemExit(f"lstm-pipeline {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines() or ["{}"]
    return json.loads(lines[-1]) if lines[-1].startswith("{") else {}  # "nothing matured yet"


@contextmanager
def servers(folder: Path) -> Iterator[tuple[str, str]]:
    """A real `mlflow server` (as `make mlflow-server`) and `prefect server` (as `make
    prefect-server`, the UI calling its own port), each on a free loopback port: their URLs."""
    sys.path.insert(0, str(ROOT))
    from tests.integration.processes import MLFLOW, PREFECT, free_port, serving

    mlflow_port, prefect_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    prefect_api = f"http://127.0.0.1:{prefect_port}/api"
    (folder / "mlflow").mkdir(parents=True)
    mlflow_args = [
        *(MLFLOW, "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{folder}/mlflow/mlflow.db"),
        *("--default-artifact-root", str(folder / "mlflow/artifacts"), "--no-serve-artifacts"),
    ]
    prefect_args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)]
    prefect_env = {
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": prefect_api,
    }
    mlflow_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with ExitStack() as stack:
        stack.enter_context(
            serving(mlflow_args, f"{mlflow_url}/health", folder / "mlflow.log", mlflow_env)
        )
        stack.enter_context(
            serving(prefect_args, f"{prefect_api}/health", folder / "prefect.log", prefect_env)
        )
        yield mlflow_url, prefect_api


def run_scenario(folder: Path, mlflow_url: str, prefect_api: str, days: int, break_day: int):
    """Train once, then `days` trading days of append-forecast-score; the last score's JSON."""
    data = folder / "prices"
    data.mkdir()
    (folder / "config.yaml").write_text(CONFIG)
    # day d appends row TRAIN_ROWS + d - 1: day `break_day` brings the first bar of the new regime
    first_broken = TRAIN_ROWS + break_day - 1
    frames = {t: prices(i, TRAIN_ROWS + days, first_broken) for i, t in enumerate(TICKERS)}
    env = {
        "PREFECT_API_URL": prefect_api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": mlflow_url,
        "LSTM_PIPELINE_FORECAST_STORE": f"sqlite:///{folder}/forecasts/forecasts.db",
        "OMP_NUM_THREADS": "1",
    }
    source = ["--source", "csv", "--data-dir", str(data)]
    write_bars(data, frames, TRAIN_ROWS)
    trained = cli(["train", *source, "--config", "config.yaml", "--seed", "0"], folder, env)
    log(f"trained version {trained['model_version']}, promoted {trained['promoted']}")
    model = ["--model-uri", f"models:/{MODEL}/{trained['model_version']}"]
    scored: dict[str, Any] = {}
    for day in range(1, days + 1):
        write_bars(data, frames, TRAIN_ROWS + day)
        cli(["forecast", *source, "--config", "config.yaml", *model], folder, env)
        scored = cli(["score", *source, "--config", "config.yaml"], folder, env)
        changes = "".join(f"; {describe(change)}" for change in scored.get("changes", []))
        log(f"day {day}/{days}{' (regime break)' if day == break_day else ''}: scored{changes}")
    return {"model_version": str(trained["model_version"]), "score": scored}


def describe(change: dict[str, Any]) -> str:
    """A verdict that changed state (an event was emitted), e.g. `degraded mase_20 = 1.22`."""
    value = change.get("value")
    shown = f"{value:.3g}" if isinstance(value, float) else value
    return f"{change.get('state')} {change.get('metric')}_{change.get('window')} = {shown}"


def log(line: str) -> None:
    print(f"[screenshots {time.strftime('%H:%M:%S')}] {line}", flush=True)


def monitoring_run(mlflow_url: str, version: str) -> tuple[str, str]:
    """(experiment id, run id) of the version's monitoring run, from the tracking server."""
    body = {
        "experiment_ids": [experiment_id(mlflow_url)],
        "filter": "tags.`lstm-pipeline.monitoring` = 'live' "
        f"and tags.`lstm-pipeline.model_version` = '{version}'",
    }
    runs = post(f"{mlflow_url}/api/2.0/mlflow/runs/search", body).get("runs", [])
    if not runs:
        raise SystemExit(f"no monitoring run for version {version} on {mlflow_url}")
    info = runs[0]["info"]
    return info["experiment_id"], info["run_id"]


def experiment_id(mlflow_url: str) -> str:
    url = f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={MODEL}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(json.load(response)["experiment"]["experiment_id"])


def score_artifact(prefect_api: str) -> dict[str, Any]:
    """The latest `live-scores` table artifact on the Prefect server."""
    body = {"artifacts": {"key": {"any_": [SCORE_ARTIFACT]}}, "sort": "CREATED_DESC", "limit": 1}
    found = post(f"{prefect_api}/artifacts/filter", body)
    if not found:
        raise SystemExit(f"no {SCORE_ARTIFACT} artifact on {prefect_api}")
    return found[0]


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def shoot_in_browser(args: argparse.Namespace, targets: dict[str, str]) -> None:
    """This file's `shoot` half under the screenshot venv's Python (playwright)."""
    command = [args.browser_python, __file__, "shoot", "--out", str(args.out)]
    for name, value in targets.items():
        command += [f"--{name.replace('_', '-')}", value]
    subprocess.run(command, check=True, timeout=600)


def scenario_main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        if args.keep:
            folder = Path(args.keep).resolve()
            folder.mkdir(parents=True, exist_ok=False)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shots-")))
        mlflow_url, prefect_api = stack.enter_context(servers(folder))
        log(f"MLflow {mlflow_url}, Prefect {prefect_api}, scratch {folder}")
        result = run_scenario(folder, mlflow_url, prefect_api, args.days, args.break_day)
        experiment, run = monitoring_run(mlflow_url, result["model_version"])
        artifact = score_artifact(prefect_api)
        targets = {
            "mlflow_url": mlflow_url,
            "experiment_id": experiment,
            "run_id": run,
            "prefect_api": prefect_api,
            "artifact_id": artifact["id"],
            "flow_run_id": artifact.get("flow_run_id") or "",
        }
        log(f"shooting {json.dumps(targets)}")
        shoot_in_browser(args, targets)


# --- the browser (the screenshot venv: playwright and the standard library only) -------------


def shoot_main(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            shoot_mlflow(page, args, Path(args.out) / MLFLOW_PNG)
            shoot_prefect(page, args, Path(args.out) / PREFECT_PNG)
        finally:
            browser.close()


def shoot_mlflow(page: Any, args: argparse.Namespace, path: Path) -> None:
    """The monitoring run's model metrics, filtered to the pooled live curves."""
    url = f"{args.mlflow_url}/#/experiments/{args.experiment_id}/runs/{args.run_id}/model-metrics"
    page.goto(url)
    search = page.get_by_placeholder("Search metric charts")
    search.wait_for(timeout=UI_TIMEOUT_MS)
    # the workflow switch says "Model training", which names the run's parent "Runs" (the UI
    # keeps it in local storage, so the page is opened again to read it back)
    page.get_by_text("Model training", exact=True).click()
    page.goto(url)
    search.wait_for(timeout=UI_TIMEOUT_MS)
    close_assistant(page)
    search.fill(MLFLOW_CHARTS)
    charts = page.locator(".js-plotly-plot", has=page.locator("path.js-line"))
    for name in CHART_NAMES:  # each chart's title, and a drawn line in as many charts
        page.get_by_text(name, exact=True).first.wait_for(timeout=UI_TIMEOUT_MS)
    charts.nth(len(CHART_NAMES) - 1).wait_for(timeout=UI_TIMEOUT_MS)
    boxes = [charts.nth(i).bounding_box() for i in range(len(CHART_NAMES))]
    bottom = max(box["y"] + box["height"] for box in boxes if box)
    save(page, path, height=bottom + 64)


def close_assistant(page: Any) -> None:
    """The MLflow Assistant panel opens beside a run on first visit: closed, if there."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()
        close.first.wait_for(state="detached", timeout=UI_TIMEOUT_MS)


def shoot_prefect(page: Any, args: argparse.Namespace, path: Path) -> None:
    """The score artifact's page: its table of live scores beside the flow run it came from."""
    ui = args.prefect_api.removesuffix("/api")
    page.set_viewport_size(WIDE)
    page.goto(f"{ui}/artifacts/artifact/{args.artifact_id}")
    page.locator("table tbody tr").first.wait_for(timeout=UI_TIMEOUT_MS)
    rows = page.locator("table")
    box = rows.first.bounding_box()
    save(page, path, height=(box["y"] + box["height"] + 24) if box else WIDE["height"])


def save(page: Any, path: Path, height: float) -> None:
    """The page's top `height` pixels (within the viewport) as a PNG."""
    size = page.viewport_size
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(height, size["height"])}
    page.screenshot(path=str(path), clip=clip)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part")
    parser.add_argument("--days", type=int, default=40, help="trading days live (default 40)")
    parser.add_argument(
        "--break-day", type=int, default=20, help="live day of the regime break (default 20)"
    )
    parser.add_argument("--keep", help="scratch folder to create and keep (default: temporary)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go")
    parser.add_argument(
        "--browser-python",
        default=str(ROOT / ".shots-venv/bin/python"),
        help="a Python with playwright (default: .shots-venv, made by `make screenshots`)",
    )
    shoot = sub.add_parser("shoot", help="the browser half (under the screenshot venv)")
    shoot.add_argument("--out", required=True)
    for name in ("mlflow-url", "experiment-id", "run-id", "prefect-api", "artifact-id"):
        shoot.add_argument(f"--{name}", required=True)
    shoot.add_argument("--flow-run-id", default="")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.part == "shoot":
        shoot_main(arguments)
    else:
        scenario_main(arguments)
