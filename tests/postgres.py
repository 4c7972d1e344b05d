"""A throwaway PostgreSQL server for tests: initdb in a temp folder, trust auth, loopback only.

PostgreSQL refuses to run as root, so the server runs as the `postgres` user (runuser) when
this process is root. `postgres_unavailable()` says why none can start here, for a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.processes import free_port

SERVER_USER = "postgres"


def postgres_bindir() -> Path | None:
    """The folder of initdb and pg_ctl (`pg_config --bindir`), or None without them."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(found.stdout.strip())
    return bindir if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file() else None


def postgres_unavailable() -> str | None:
    """Why no server can start here (a skip's reason), or None."""
    if postgres_bindir() is None:
        return "no PostgreSQL server binaries (pg_config --bindir has no initdb/pg_ctl)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and no '{SERVER_USER}' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start PostgreSQL as another user"
    return None


def _as_server_user(*command: str) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else list(command)


@contextmanager
def running_postgres() -> Iterator[str]:
    """A new cluster on a free loopback port for the block; yields a SQLAlchemy URL of its
    `postgres` database (user postgres, no password: trust auth)."""
    bindir = postgres_bindir()
    assert bindir is not None, postgres_unavailable()
    folder = Path(tempfile.mkdtemp(prefix="lstm-pipeline-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data, port = folder / "data", free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run(_as_server_user(*initdb, "-E", "UTF8", "--no-sync"), **run)  # type: ignore[call-overload]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    subprocess.run(_as_server_user(*pg_ctl, "-o", options, "-w", "start"), **run)  # type: ignore[call-overload]
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [*pg_ctl, "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_server_user(*stop), capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)
