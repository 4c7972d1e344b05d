"""Real server processes for tests: a free loopback port, start, wait until healthy, stop; and
the processes a command left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's bin: mlflow, and uvicorn that it starts
MLFLOW = str(BIN / "mlflow")
PREFECT = str(BIN / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port that refuses connections while this process lives: bound but never
    listening, so no server of a parallel test can take it (a free_port() port is free to all)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _HELD.append(held)
    return int(held.getsockname()[1])


@contextmanager
def serving(args: list[str], url: str, log_path: Path, env: dict[str, str]) -> Iterator[str]:
    """Run `args` in its own process group until `url` answers 200; stop the group after."""
    with serving_process(args, url, log_path, env):
        yield url


@contextmanager
def serving_process(
    args: list[str], url: str, log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen]:
    """Like `serving`, yielding the process (for tests that kill the server themselves)."""
    with running(args, log_path, env) as proc:
        _wait_until_healthy(proc, url, log_path)
        yield proc


@contextmanager
def running(args: list[str], log_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """Run `args` in its own process group, output to `log_path`; stop the group after."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args,
            cwd=log_path.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopped with its workers, by our own id
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env},
        )
        try:
            yield proc
        finally:
            with suppress(ProcessLookupError):  # it may have died already
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            _wait_for_group_exit(proc.pid)


def _wait_until_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log_path.read_text()[-3000:])
        time.sleep(0.5)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (started with start_new_session) and reap it."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _wait_for_group_exit(proc.pid)


def _wait_for_group_exit(pgid: int, seconds: float = 30) -> None:
    """MLflow's job-runner children outlive the server by ~10 s: wait for the whole group."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)


# Every process a test's command starts inherits its environment, so a variable set for the
# command marks its whole tree: a temporary server, Dask workers, whatever they start in turn.
MARK = "LSTM_PIPELINE_TEST_MARK"


def new_mark() -> dict[str, str]:
    """An environment entry (for start_cli's `env`) no other command carries."""
    return {MARK: uuid.uuid4().hex}


def marked_processes(mark: dict[str, str]) -> dict[int, str]:
    """The live processes whose environment carries `mark`: pid -> command line (Linux)."""
    entry = f"{MARK}={mark[MARK]}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:  # a process may end while it is read; another user's cannot be read
            environ = (proc / "environ").read_bytes()  # a zombie's is empty: it is gone
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if entry in environ.split(b"\0"):
            found[int(proc.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def leftovers(mark: dict[str, str], seconds: float = 30) -> dict[int, str]:
    """The processes carrying `mark` still alive after up to `seconds` (none, once each has
    seen its parent die and shut down); those left are killed, so no test leaks them."""
    deadline = time.monotonic() + seconds
    while (left := marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.25)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
