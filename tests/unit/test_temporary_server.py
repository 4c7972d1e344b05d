"""The temporary Prefect server a command starts: Prefect's own command behind a watchdog, and
only when no API is configured. (That it dies with a killed command is in
tests/integration/test_leftover_processes.py.)"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
    temporary_settings,
)

from flows import temporary_server
from flows.temporary_server import WATCHDOG, _tied_server_class


def launch(cls: type[Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments `cls` on port 8123 would hand to subprocess.Popen (nothing is started)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, env: calls.append(locals()))
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})  # one instance per port
    cls(port=8123)._run_uvicorn_command()
    (call,) = calls
    return call


def test_the_tied_server_runs_prefects_own_command_behind_the_watchdog(monkeypatch):
    prefects, tied = (
        launch(cls, monkeypatch) for cls in (SubprocessASGIServer, _tied_server_class())
    )
    python, dash_m, uvicorn, *options = prefects["args"]
    assert [dash_m, uvicorn] == ["-m", "uvicorn"]
    assert tied["args"] == [python, "-c", WATCHDOG, str(os.getpid()), *options]
    assert tied["env"] == prefects["env"]


@pytest.mark.parametrize(
    "settings",
    [{PREFECT_API_URL: "http://127.0.0.1:4200/api"}, {PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: False}],
    ids=["an API URL is set", "temporary servers are off"],
)
def test_no_server_is_started_when_prefect_has_an_api_or_may_not_start_one(settings, monkeypatch):
    def no_server() -> None:
        raise AssertionError("a server was started")

    monkeypatch.setattr(temporary_server, "_tied_server_class", no_server)
    before = os.environ.get("PREFECT_API_URL")
    with temporary_settings(updates=settings):
        temporary_server.use_tied_server()
    assert os.environ.get("PREFECT_API_URL") == before
