"""Choosing a task runner from the CLI's options."""

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.runners import DASK_ADDRESS_ENV, THREADS, from_environment, task_runner
from lstm_pipeline.errors import InputError


def test_threads_unless_dask_is_asked_for():
    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    assert isinstance(task_runner("threads"), ThreadPoolTaskRunner)


def test_threads_are_bounded():
    """Prefect's default pool is unbounded: 500 tickers were 500 loads at once (0.95 GB)."""
    assert task_runner()._max_workers == THREADS == 16  # type: ignore[attr-defined]


def test_an_address_implies_dask_on_that_cluster():
    runner = task_runner(address="tcp://scheduler:8786")
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://scheduler:8786"
    assert task_runner("dask", "tcp://scheduler:8786") == runner


def test_dask_without_an_address_is_a_temporary_cluster_of_single_threaded_processes():
    runner = task_runner("dask")
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_kwargs["processes"] is True
    assert runner.cluster_kwargs["threads_per_worker"] == 1


def test_threads_with_an_address_is_refused():
    with pytest.raises(InputError, match="--dask-address tcp://s:8786 needs --task-runner dask"):
        task_runner("threads", "tcp://s:8786")


def test_the_environment_names_the_scheduler_unless_threads_are_asked_for(monkeypatch):
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://env:8786")
    runner = from_environment()
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://env:8786"
    assert isinstance(from_environment("threads"), ThreadPoolTaskRunner)
    monkeypatch.delenv(DASK_ADDRESS_ENV)
    assert isinstance(from_environment(), ThreadPoolTaskRunner)


@pytest.mark.parametrize(
    "address", ["notaurl", "tcp://scheduler", "tcp://scheduler:abc", "tcp://:8786", "s:70000"]
)
def test_an_address_that_names_no_scheduler_is_bad_input(address):
    with pytest.raises(InputError, match=f"--dask-address '{address}' is not a scheduler address"):
        task_runner("dask", address)
