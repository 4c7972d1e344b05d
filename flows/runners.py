"""Where a flow's submitted tasks run: threads in the flow's process, or a Dask cluster.

Chosen per run from the CLI (`--task-runner`, `--dask-address`) and applied with
`flow.with_options(task_runner=...)`; the flows themselves name no runner. What is submitted:
per-ticker fetches, backtest folds and tuning trials. Everything else, MLflow included, runs in
the flow's own process, so Dask workers need the package, the data source and (for tuning) the
Optuna storage, but never the tracking server.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from lstm_pipeline.errors import InputError

RunnerKind = Literal["threads", "dask"]


def task_runner(kind: RunnerKind | None = None, address: str | None = None) -> TaskRunner[Any]:
    """Threads by default; Dask at `address` (an existing scheduler, which implies dask), else
    a temporary local Dask cluster of worker processes for this run alone."""
    if kind == "threads" and address:
        raise InputError(f"--dask-address {address} needs --task-runner dask, not threads")
    if (kind or "threads") == "threads" and not address:
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner  # imports dask only when asked for

    if address:
        return DaskTaskRunner(address=address)
    # processes: one torch fit per worker process, each with its own RNG and one thread
    # (Dask's nanny sets OMP_NUM_THREADS=1 in each worker), so fits neither share a seed
    # stream nor oversubscribe the cores
    return DaskTaskRunner(cluster_kwargs={"processes": True, "threads_per_worker": 1})
