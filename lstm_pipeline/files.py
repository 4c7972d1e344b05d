"""Files written so that a crash never leaves half of one: temp file, fsync, rename."""

from __future__ import annotations

import glob
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lstm_pipeline.errors import InputError


def write_atomic(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call `write(tmp)` on a temp file beside `path`, then rename it over `path`.

    A crash mid-write leaves the previous file intact: readers see the old or the new, never half.
    The temp file is hidden and named `.NAME.PID@HOST.XXXX.tmp`, so nothing reads it, and a
    writer that was killed leaves one behind only until the next write on its host removes it.
    The new file gets the old one's mode, or a new file's, so whoever could read it before still
    can.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_temps(path)
    mode = mode_for(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as done:  # on disk before the rename makes it visible
            os.fsync(done.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{this_host()}."


# mkstemp's random part and the suffix that follow the prefix: `XXXXXXXX.tmp`
TEMP_TAIL = 8 + len(".tmp")


def check_writable(path: str | Path, what: str) -> None:
    """InputError naming `what` unless write_atomic could write `path`: a file name, not a
    folder, whose names (its temp file's too) the file system takes, in a folder that takes new
    files (check_can_create_in)."""
    path = Path(path)
    name = len(os.fsencode(path.name))
    fits = NAME_MAX - (len(os.fsencode(_temp_prefix(path))) + TEMP_TAIL - name)  # temp beside it
    if name > fits or any(len(os.fsencode(part)) > NAME_MAX for part in path.parent.parts):
        raise InputError(
            f"{what} {path}: name too long (file names up to {fits} bytes here, folder names "
            f"up to {NAME_MAX})"
        )
    if path.is_dir():
        raise InputError(f"{what} {path}: is a folder, not a file name")
    check_can_create_in(path.parent, f"{what} {path}")


NAME_MAX = 255  # bytes in one file or folder name: ext4, xfs, btrfs, tmpfs, NTFS, APFS


def check_can_create_in(folder: str | Path, what: str) -> None:
    """InputError naming `what` unless files can be created in `folder`: it exists, or its
    nearest existing parent does (where mkdir starts), and takes new files. Probed by creating
    and removing one nameless file there, so a job fails before its work, changing nothing."""
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{what}: cannot write in {existing} ({reason})") from None


def mode_for(path: Path) -> int:
    """The mode a write over `path` should leave: its own, else what open() gives a new file
    (0666 less the umask). The temp file's would be mkstemp's 0600, owner only."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def remove_dead_writers_temps(path: Path) -> list[Path]:
    """Delete the temp files of `path` whose writer process no longer exists; returns them.

    Only this host's writers can be seen, so on a shared volume another host's temp file is
    left alone, as is a live writer's: concurrent writers never break each other. A temp file
    named without its host (`.NAME.PID.XXXX.tmp`, written before hosts were named) may be
    another host's: it goes only when no process here has its id and it has not changed for
    OLD_TEMP_AGE_S, far longer than any write takes.
    """
    removed = []
    for tmp in path.parent.glob(glob.escape(f".{path.name}.") + "*.tmp"):
        if _writer_is_gone(tmp, tmp.name.removeprefix(f".{path.name}.")):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


OLD_TEMP_AGE_S = 24 * 3600  # a temp file without a host is left alone for a day


def _writer_is_gone(tmp: Path, rest: str) -> bool:
    """Whether the writer of `tmp` (`rest`: `PID@HOST.XXXX.tmp`, or `PID.XXXX.tmp`) is gone."""
    pid, at, host = rest.removesuffix(".tmp").rpartition(".")[0].partition("@")
    if not pid.isdigit() or process_exists(int(pid)):
        return False
    if at:
        return host == this_host()
    try:
        return time.time() - tmp.stat().st_mtime > OLD_TEMP_AGE_S
    except FileNotFoundError:
        return False


def this_host() -> str:
    """This machine's name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a reused id reads as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask sets it,
    for every thread at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
