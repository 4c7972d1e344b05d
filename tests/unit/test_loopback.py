"""Security, read from the source: every server the Makefile starts binds loopback, and no code
binds every interface. (That a started server really listens on loopback only, and that
credentials never leak: tests/integration/test_security.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

VENV = Path(sys.executable).parent.parent
SERVER_TARGETS = ("mlflow-ui", "mlflow-server", "serve-model", "prefect-server")


def make_recipe(target: str, **variables: str) -> str:
    """The commands `make TARGET` would run (setup left out), with `variables` set."""
    assigned = [f"{k}={v}" for k, v in {"VENV": str(VENV), **variables}.items()]
    done = subprocess.run(
        ["make", "-s", "-n", "-o", "setup", "-C", str(ROOT), *assigned, target],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("target", SERVER_TARGETS)
def test_every_server_the_makefile_starts_binds_loopback(target):
    recipe = make_recipe(target)
    assert re.findall(r"--host (\S+)", recipe) == ["127.0.0.1"], recipe


def test_no_code_binds_every_interface():
    code = [
        ROOT / "Makefile",
        *(ROOT / "flows").rglob("*.py"),
        *(ROOT / "lstm_pipeline").rglob("*.py"),
    ]
    assert not [path for path in code if "0.0.0.0" in path.read_text()]


def test_the_prefect_uis_api_url_follows_the_port():
    recipe = make_recipe("prefect-server", PREFECT_PORT="4321")
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4321/api" in recipe, recipe
    assert "--port 4321" in recipe, recipe
