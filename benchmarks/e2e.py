"""End to end: the demo's training and forecast flows against a real Prefect server, split by stage.

Starts `prefect server` on a free loopback port (its own PREFECT_HOME), then runs the demo's
jobs in this process (bundled sample, default config, MLflow store `mlflow/mlflow.db` in a temp
working directory, created before the first repetition) `--repeats` times. Each flow's wall
time is split with the task runs' start/end times read back from the Prefect API (concurrent
per-ticker fetches count once, cached ones 0), plus timers
around the few library calls that run inline in the flow or inside the fit (per-epoch MLflow
logging in the `on_epoch_end` callback, run tags, ending the run, the evaluation plots):

- data: fetch (read + validate) per ticker, windows, data summary tags;
- training: the fit task minus its per-epoch MLflow logging;
- evaluation: val/test scores and per-ticker tables (the evaluate task minus its plots);
- tracking/registry: opening the run, dataset, epoch metrics, report and plots, judge,
  register and gate, tags, ending the run;
- export: ONNX export with its parity check;
- orchestration: flow wall time minus everything above (flow and task run creation, state
  changes, logging to the API, result handling, and the Prefect UI artifacts the flow
  publishes, also shown on their own as `timed_inside_s.prefect_artifacts`).

JSON to benchmarks/results/e2e-cpu.json and a table (medians over the repetitions).
Usage: python benchmarks/e2e.py [--repeats 3] [--max-epochs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from common import ROOT, load, median, table, write

sys.path.insert(0, str(ROOT))  # tests.integration.processes: the tests' server helpers

from tests.integration.processes import PREFECT, free_port, serving  # noqa: E402

# "other": task runs of a name listed below in neither map (a task added to a flow since)
TRAIN_STAGES = (
    "data",
    "training",
    "evaluation",
    "tracking/registry",
    "export",
    "other",
    "orchestration",
)
FORECAST_STAGES = ("data", "registry", "inference", "write", "other", "orchestration")
# task name prefix -> stage (yfinance fetches are named fetch-TICKER, local files' loads
# load-FIRST..LAST, the others NAME-<id>)
TRAIN_TASKS = {
    "fetch": "data",
    "load": "data",
    "build_window_sets": "data",
    "start_run": "tracking/registry",
    "log_dataset": "tracking/registry",
    "train_model": "training",
    "run_report": "evaluation",
    "log_report": "tracking/registry",
    "export_model": "export",
    "judge": "tracking/registry",
    "register_and_gate": "tracking/registry",
}
FORECAST_TASKS = {
    "fetch": "data",
    "load": "data",
    "resolve_model": "registry",
    "open_model": "inference",
    "forecast": "inference",
    "write": "write",
}


@contextmanager
def prefect_server(folder: Path) -> Iterator[str]:
    """`make prefect-server` on a free port with its own home; PREFECT_API_URL set for us."""
    folder.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {"PREFECT_HOME": str(folder / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with serving(args, f"{api}/health", folder / "server.log", env):
        os.environ.update(env, PREFECT_API_URL=api)
        yield api


class Timers:
    """Seconds spent in wrapped library functions, by stage, since the last `take()`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, module: Any, name: str, stage: str, when: Callable[..., bool] | None = None):
        original = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if when is None or when(*args, **kwargs):
                    self.seconds[stage] += time.perf_counter() - started

        setattr(module, name, timed)

    def take(self) -> dict[str, float]:
        taken, self.seconds = dict(self.seconds), defaultdict(float)
        return taken


def instrument() -> Timers:
    """Time the calls that no task run covers, or that a task run covers under another stage."""
    import flows.inference
    import flows.training
    from lstm_pipeline import pipeline
    from lstm_pipeline.tracking import Run

    timers = Timers()
    # per-epoch metrics from fit's callback (step given); log_report's final metrics have none
    timers.wrap(Run, "log_metrics", "epoch_logging", lambda *a, step=None: step is not None)
    timers.wrap(Run, "set_tags", "inline_tracking")  # in the flow body
    timers.wrap(Run, "end", "inline_tracking")  # Run.closing, in the flow body
    timers.wrap(pipeline, "data_summary", "inline_data")  # in the flow body
    timers.wrap(pipeline, "evaluation_figures", "plots")  # inside the evaluate task
    # Prefect UI artifacts published in the flow body: orchestration, shown on their own
    for module in (flows.training, flows.inference):
        for name in ("publish_training_summary", "publish_forecasts"):
            if hasattr(module, name):
                timers.wrap(module, name, "prefect_artifacts")
    return timers


def task_runs(flow_run_id: Any, expected_min: int) -> list[Any]:
    """The flow run's task runs once the server has recorded all of them as finished.

    Prefect 3 clients report task runs as events that the server writes a moment later.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
            )
            if len(runs) >= expected_min and all(r.state and r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(runs)} finished task runs recorded")
            time.sleep(0.5)


def union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by the intervals: concurrent runs (per-ticker fetches) count once."""
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def by_stage(runs: list[Any], stages: dict[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per stage (the time its task runs cover) and per task name (summed).

    Task runs served from Prefect's cache (a rerun's fetches) ran nothing: they count 0.
    """
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    task_s: dict[str, float] = defaultdict(float)
    for run in runs:
        names = (p for p in sorted(stages, key=len, reverse=True) if run.name.startswith(p))
        prefix = next(names, run.name)
        if run.start_time is None or run.end_time is None:
            task_s[f"{prefix} (cached)"] += 0.0
            continue
        spans[stages.get(prefix, "other")].append((run.start_time, run.end_time))
        task_s[prefix] += (run.end_time - run.start_time).total_seconds()
    return {k: union_seconds(v) for k, v in spans.items()}, dict(task_s)


def run_flow(call: Callable[[], Any]) -> tuple[Any, float, Any]:
    """(result, client-side wall seconds, flow run id)."""
    started = time.perf_counter()
    state = call()
    wall = time.perf_counter() - started
    return state.result(), wall, state.state_details.flow_run_id


def measure(
    call: Callable[[], Any],
    tasks: dict[str, str],
    stages: tuple[str, ...],
    timers: Timers,
    regroup: Callable[[dict[str, float], dict[str, float]], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run one flow; its result and wall time split by stage (orchestration the remainder).

    `regroup(stage_s, timed_inside_s)` moves timed calls between stages before the remainder.
    """
    timers.take()
    result, wall, flow_run_id = run_flow(call)
    extra = timers.take()
    # a source has fetch- tasks (yfinance) or load- tasks (local files), never both
    stage, task_s = by_stage(task_runs(flow_run_id, len(tasks) - 1), tasks)
    if regroup is not None:
        regroup(stage, extra)
    stage["orchestration"] = wall - sum(stage.values())
    record = {
        "wall_s": wall,
        "stages_s": {k: stage.get(k, 0.0) for k in stages},
        "tasks_s": task_s,
        "timed_inside_s": extra,
    }
    return result, record


def regroup_training(stage: dict[str, float], extra: dict[str, float]) -> None:
    """Epoch logging out of the fit, plots out of evaluation: both are tracking."""
    epoch_logging, plots = extra.get("epoch_logging", 0.0), extra.get("plots", 0.0)
    stage["training"] = stage.get("training", 0.0) - epoch_logging
    stage["evaluation"] = stage.get("evaluation", 0.0) - plots
    stage["tracking/registry"] = (
        stage.get("tracking/registry", 0.0)
        + epoch_logging
        + plots
        + extra.get("inline_tracking", 0.0)
    )
    stage["data"] = stage.get("data", 0.0) + extra.get("inline_data", 0.0)


def training(cfg: Any, timers: Timers) -> dict[str, Any]:
    from flows.training import train_flow

    result, record = measure(
        lambda: train_flow(cfg, return_state=True),
        TRAIN_TASKS,
        TRAIN_STAGES,
        timers,
        regroup_training,
    )
    record["epochs"] = result["metrics"]["stopped_epoch"]
    record["model_version"] = result["model_version"]
    record["promoted"] = result["promoted"]
    return record


def forecasting(cfg: Any, model_uri: str, output: Path, timers: Timers) -> dict[str, Any]:
    from flows.inference import forecast_flow

    result, record = measure(
        lambda: forecast_flow(cfg.data, model_uri, str(output), return_state=True),
        FORECAST_TASKS,
        FORECAST_STAGES,
        timers,
    )
    record["rows"] = result["rows"]
    return record


def summarise(reps: list[dict[str, Any]], stages: tuple[str, ...]) -> dict[str, Any]:
    wall = median(r["wall_s"] for r in reps)
    out: dict[str, Any] = {"wall_s": wall, "stages_s": {}, "stages_share": {}}
    for s in stages:
        out["stages_s"][s] = median(r["stages_s"][s] for r in reps)
        out["stages_share"][s] = median(r["stages_s"][s] / r["wall_s"] for r in reps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, help="default: the demo's config")
    parser.add_argument(
        "--quick", action="store_true", help="1 repeat, 1 epoch, hidden size 8: a smoke run"
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.max_epochs = 1, 1
    if args.output:
        args.output = args.output.resolve()  # before the chdir below
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder:
        work = Path(folder)
        os.chdir(work)  # the demo's layout: mlflow/mlflow.db and forecasts/ here
        with prefect_server(work / "prefect"):
            import_started = time.perf_counter()
            from flows.cli import configure_logging

            configure_logging()  # as `make demo` does
            import flows.inference  # noqa: F401
            import flows.training  # noqa: F401
            from lstm_pipeline.config import build_config
            from lstm_pipeline.tracking import Store

            import_s = time.perf_counter() - import_started
            cfg = build_config(
                data__source="sample",
                train__max_epochs=args.max_epochs,
                model__hidden_size=8 if args.quick else None,
            )
            Store.open().experiment_id(cfg.tracking.experiment)  # the store exists first
            timers = instrument()
            load_before = load()
            train_reps, forecast_reps = [], []
            for i in range(args.repeats):
                train = training(cfg, timers)
                uri = f"models:/{cfg.tracking.model_name}/{train['model_version']}"
                forecast = forecasting(cfg, uri, work / "forecasts" / "forecasts.csv", timers)
                train_reps.append(train)
                forecast_reps.append(forecast)
                print(
                    f"repeat {i + 1}: training flow {train['wall_s']:.1f} s "
                    f"({train['epochs']} epochs), forecast flow {forecast['wall_s']:.1f} s, "
                    f"load {load()}",
                    flush=True,
                )
            from prefect.logging.handlers import APILogHandler

            APILogHandler().flush()  # send the flow-run logs while the server is still up
    report = {
        "config": {
            "source": "sample",
            "tickers": list(cfg.data.tickers),
            "max_epochs": args.max_epochs,
        },
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "import_s": import_s,
        "training_flow": summarise(train_reps, TRAIN_STAGES),
        "forecast_flow": summarise(forecast_reps, FORECAST_STAGES),
        "runs": {"training": train_reps, "forecast": forecast_reps},
    }
    share = report["training_flow"]["stages_share"]
    report["orchestration_plus_tracking_share"] = median(
        (r["stages_s"]["orchestration"] + r["stages_s"]["tracking/registry"]) / r["wall_s"]
        for r in train_reps
    )
    report["orchestration_plus_tracking_s"] = median(
        r["stages_s"]["orchestration"] + r["stages_s"]["tracking/registry"] for r in train_reps
    )
    output = write("e2e-cpu", report, args.output)
    for name, stages in (("training_flow", TRAIN_STAGES), ("forecast_flow", FORECAST_STAGES)):
        flow = report[name]
        rows = [[s, f"{flow['stages_s'][s]:.2f}", f"{flow['stages_share'][s]:.0%}"] for s in stages]
        rows.append(["**wall**", f"**{flow['wall_s']:.2f}**", "100%"])
        print(f"\n{name} (median of {args.repeats}):")
        print(table(["stage", "seconds", "share"], rows))
    print(
        f"\norchestration + tracking: {report['orchestration_plus_tracking_s']:.2f} s,"
        f" {report['orchestration_plus_tracking_share']:.1%} of the"
        f" training flow (target < 20%); tracking {share['tracking/registry']:.1%}, orchestration"
        f" {share['orchestration']:.1%}; load before {load_before}, after {load()}; wrote {output}"
    )


if __name__ == "__main__":
    main()
