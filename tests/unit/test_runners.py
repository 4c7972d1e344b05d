"""Choosing a task runner from the CLI's options."""

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.runners import task_runner
from lstm_pipeline.errors import InputError


def test_threads_unless_dask_is_asked_for():
    assert isinstance(task_runner(), ThreadPoolTaskRunner)
    assert isinstance(task_runner("threads"), ThreadPoolTaskRunner)


def test_an_address_implies_dask_on_that_cluster():
    runner = task_runner(address="tcp://scheduler:8786")
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://scheduler:8786"
    assert task_runner("dask", "tcp://scheduler:8786") == runner


def test_dask_without_an_address_is_a_temporary_cluster_of_single_threaded_processes():
    runner = task_runner("dask")
    assert isinstance(runner, DaskTaskRunner) and runner.address is None
    assert runner.cluster_kwargs == {"processes": True, "threads_per_worker": 1}


def test_threads_with_an_address_is_refused():
    with pytest.raises(InputError, match="--dask-address tcp://s:8786 needs --task-runner dask"):
        task_runner("threads", "tcp://s:8786")
