"""The temporary Prefect server of a command run without PREFECT_API_URL, tied to its process.

Left to itself, Prefect starts that server (a uvicorn process, ~225 MB) the first time a flow
needs an API, and stops it from an atexit hook: a command killed by SIGKILL, or aborted by
SIGABRT, runs no hook, and the server lived on for good. Each worker of a local Dask cluster
also started a server of its own, as its tasks carry the flow's settings, which named no API.

So a command starts the server itself, before its flow, with the command Prefect would run
(`SubprocessASGIServer`: loopback, a free port, its health check, its atexit stop), launched
through a watchdog that ends the server once the command's process is gone, however it died.
Then the server's URL becomes this process's PREFECT_API_URL: its flows, and the Dask workers
it spawns, use that one server. With PREFECT_API_URL already set, nothing changes here.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Runs first in the server's process, then uvicorn exactly as `python -m uvicorn` would. It
# watches the parent process, not a signal: PR_SET_PDEATHSIG fires when the parent *thread*
# ends and exists on Linux only, while getppid() changes (to init or a subreaper) only when the
# whole parent process is gone, on every POSIX system. SIGTERM is uvicorn's graceful shutdown
# (the server's sqlite database is closed cleanly); a shutdown that hangs is cut short.
WATCHDOG = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv.pop(1))
def end_with_parent():
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)
threading.Thread(target=end_with_parent, name="end-with-parent", daemon=True).start()
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def use_tied_server() -> None:
    """Start this command's temporary Prefect server, tied to this process, unless Prefect
    already has an API (PREFECT_API_URL, from the environment or a profile) or forbids a
    temporary one. Call before the command's first flow; once per process is enough."""
    if os.name != "posix":  # no getppid() watch on Windows: Prefect starts its own, as before
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return
    server = _tied_server_class()()  # prefect's server module: ~1.5 s to import, so only now
    server.start()  # Prefect's own start: port, health check, atexit stop
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by Dask's worker processes
    refresh_global_settings_context()  # the settings this process's flows (and tasks) carry


def _tied_server_class() -> type[Any]:
    import subprocess

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class TiedServer(SubprocessASGIServer):
        """Prefect's temporary server, launched through WATCHDOG."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect's own command and environment (SubprocessASGIServer in prefect 3.8.8;
            # tests/unit/test_temporary_server.py compares them), WATCHDOG in front of uvicorn
            return subprocess.Popen(
                args=[sys.executable, "-c", WATCHDOG, str(os.getpid())]
                + ["--app-dir", str(prefect.__module_path__.parent)]
                + ["--factory", "prefect.server.api.server:create_app"]
                + ["--host", "127.0.0.1", "--port", str(self.port)]
                + ["--log-level", "error", "--lifespan", "on"],
                env={
                    **os.environ,
                    "PREFECT_UI_ENABLED": "0",
                    "PREFECT__SERVER_EPHEMERAL": "1",
                    "PREFECT__SERVER_FINAL": "1",
                    **get_current_settings().to_environment_variables(exclude_unset=True),
                },
            )

    return TiedServer
