"""Where a flow's submitted tasks run: threads in the flow's process, or a Dask cluster.

Chosen per run from the CLI (`--task-runner`, `--dask-address`) and applied with
`flow.with_options(task_runner=...)`. Deployments (`serve`, prefect.yaml) run the flows as
imported, so the deployed flows' default reads $LSTM_PIPELINE_DASK_ADDRESS. What is submitted:
per-ticker fetches, backtest folds and tuning trials. Everything else, MLflow included, runs in
the flow's own process, so Dask workers need the package, the data source and (for tuning) the
Optuna storage, but never the tracking server.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from lstm_pipeline.errors import InputError, one_line

if TYPE_CHECKING:  # prefect is imported when a runner is made: the CLI's --help reads this module
    from prefect.task_runners import TaskRunner

RunnerKind = Literal["threads", "dask"]
DEFAULT_RUNNER: RunnerKind = "threads"
DASK_ADDRESS_ENV = "LSTM_PIPELINE_DASK_ADDRESS"  # a scheduler, e.g. tcp://scheduler:8786
# Threads for submitted tasks. Prefect's default is unbounded: 500 tickers ran 500 loads at
# once, each file's parsing temporaries alive together (0.95 GB peak for 500 csv files of
# 2,500 rows), for no speed on two cores and a GIL. 16 still overlaps network waits.
THREADS = 16


def task_runner(kind: RunnerKind | None = None, address: str | None = None) -> TaskRunner[Any]:
    """Threads by default; Dask at `address` (an existing scheduler, which implies dask), else
    a temporary local Dask cluster of worker processes for this run alone."""
    if kind == "threads" and address:
        raise InputError(f"--dask-address {address} needs --task-runner dask, not threads")
    if (kind or DEFAULT_RUNNER) == "threads" and not address:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=THREADS)
    from prefect_dask import DaskTaskRunner  # imports dask only when asked for

    if address:
        return DaskTaskRunner(address=check_dask_address(address))
    return DaskTaskRunner(cluster_kwargs=dict(LOCAL_CLUSTER))


def check_dask_address(address: str) -> str:
    """`address` if it names a scheduler (`tcp://host:port`, `host:port`, `tls://...`);
    InputError otherwise, before any flow runs, instead of Dask's error at the first task."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            host, port = parse_host_port(location)
            if not host or not 0 < port < 65536:
                raise ValueError("a host and a port from 1 to 65535 are needed")
    except ValueError as exc:
        raise InputError(
            f"--dask-address {address!r} is not a scheduler address such as "
            f"tcp://scheduler:8786 ({one_line(exc)})"
        ) from None
    return address


# processes: one torch fit per worker process, each with its own RNG and one thread (Dask's
# nanny sets OMP_NUM_THREADS=1 in each worker), so fits neither share a seed stream nor
# oversubscribe the cores. Loopback: the scheduler, workers and nannies bind 127.0.0.1, and
# the dashboard (Dask's default: every interface, port 8787) a free loopback port.
LOCAL_CLUSTER: dict[str, Any] = {
    "processes": True,
    "threads_per_worker": 1,
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
}


def from_environment(kind: RunnerKind | None = None, address: str | None = None) -> TaskRunner[Any]:
    """The runner for `kind` and `address`; without an address, $LSTM_PIPELINE_DASK_ADDRESS is
    the Dask scheduler when set, unless threads are asked for by name. A deployed flow's
    default (its runs import the flow in a fresh process, which inherits the environment of
    `serve` or of the work pool's job), and the CLI's choice."""
    return task_runner(kind, _address(kind, address))


def _address(kind: RunnerKind | None, address: str | None) -> str | None:
    """`address`, else $LSTM_PIPELINE_DASK_ADDRESS unless threads are asked for by name."""
    if not address and kind != "threads":
        return os.environ.get(DASK_ADDRESS_ENV) or None
    return address


def threads_asked(kind: RunnerKind | None = None, address: str | None = None) -> bool:
    """Whether from_environment(kind, address) makes a thread runner, told without importing
    Prefect (a command decides so whether to load its universe ahead)."""
    return (kind or DEFAULT_RUNNER) == "threads" and not _address(kind, address)


def on_threads() -> bool:
    """Whether the running flow's tasks run on threads of this process (else Dask workers)."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    return context is None or isinstance(context.task_runner, ThreadPoolTaskRunner)
