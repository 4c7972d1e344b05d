"""A served or work-pool run imports the flows afresh: the Dask scheduler named in its
environment becomes their task runner. (Choosing a runner from the CLI's options:
tests/unit/test_runners.py.)"""

import os
import subprocess
import sys

import pytest

from flows.runners import DASK_ADDRESS_ENV
from tests.conftest import ROOT


@pytest.mark.slow
def test_deployed_flows_imported_with_the_variable_set_default_to_that_cluster():
    """How a served or work-pool run gets Dask: its process imports the flow afresh."""
    code = (
        "from flows.training import train_flow\nfrom flows.inference import forecast_flow\n"
        "print(*(type(f.task_runner).__name__ + ' ' + str(f.task_runner.address)"
        " for f in (train_flow, forecast_flow)), sep='\\n')"
    )
    env = {**os.environ, DASK_ADDRESS_ENV: "tcp://env:8786", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines() == ["DaskTaskRunner tcp://env:8786"] * 2
