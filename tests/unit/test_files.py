"""Atomic writes: the old file or the new one, never half, and readable by whoever could."""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstm_pipeline import files
from lstm_pipeline.errors import InputError


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.write_atomic(target, crash)
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path: Path, umask_027):
    assert files.current_umask() == 0o027
    path = tmp_path / "forecasts.csv"
    files.write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert mode(path) == 0o640  # not mkstemp's 0600: the group may read what it could before
    plain = tmp_path / "plain.csv"
    plain.write_text("by open()")
    assert mode(path) == mode(plain)


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_027):
    path = tmp_path / "AAPL.parquet"
    path.write_text("old")
    path.chmod(0o604)
    files.write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and mode(path) == 0o604


def test_a_writable_place_passes_and_nothing_is_left_there(tmp_path: Path):
    files.check_writable(tmp_path / "new" / "deeper" / "f.csv", "output")  # folders come later
    files.check_writable(tmp_path / "f.csv", "output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "a-file/f.csv",
            "output {tmp}/a-file/f.csv: cannot write in {tmp}/a-file (Not a directory)",
        ),
        ("a-folder", "output {tmp}/a-folder: is a folder, not a file name"),
    ],
)
def test_an_unwritable_place_is_one_line_naming_it(tmp_path: Path, name: str, message: str):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(InputError) as caught:
        files.check_writable(tmp_path / name, "output")
    assert str(caught.value) == message.format(tmp=tmp_path)


def test_a_temp_file_names_its_writers_host_and_process(tmp_path: Path):
    names = []
    files.write_atomic(tmp_path / "f.csv", lambda tmp: names.append(tmp.name) or tmp.write_text(""))
    assert names[0].startswith(f".f.csv.{os.getpid()}@{files.this_host()}.")


def test_only_this_hosts_dead_writers_temps_are_swept_from_a_shared_folder(tmp_path: Path):
    """On a shared volume a process id says nothing about another host's writers."""
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
    here, now = files.this_host(), time.time()
    temps = {
        "dead here": (f"{gone}@{here}", now, False),
        "alive here": (f"{os.getpid()}@{here}", now, True),
        "another host's": (f"{gone}@other-host.example", now, True),
        "old name, maybe another host's live write": (f"{gone}", now, True),
        "old name, untouched for two days": (f"{gone}", now - 2 * 86400, False),
        "not ours": ("notapid", now, True),
    }
    for name, (writer, mtime, _) in temps.items():
        tmp = tmp_path / f".f.csv.{writer}.x{abs(hash(name)) % 1000}.tmp"
        tmp.write_text(name)
        os.utime(tmp, (mtime, mtime))
    files.write_atomic(tmp_path / "f.csv", lambda tmp: tmp.write_text("new"))
    left = {p.read_text() for p in tmp_path.glob(".f.csv.*.tmp")}
    assert left == {name for name, (_, _, kept) in temps.items() if kept}


@pytest.mark.parametrize("name", [f"out/{'x' * 300}.csv", f"{'y' * 256}/f.csv", f"{'z' * 250}.csv"])
def test_a_name_the_file_system_cannot_take_is_refused_before_anything_is_made(
    tmp_path: Path, name: str
):
    """The last one fits alone, but not with the temp file's prefix written beside it."""
    with pytest.raises(InputError, match=r": name too long \(file names up to \d+ bytes here"):
        files.check_writable(tmp_path / name, "output")
    assert list(tmp_path.iterdir()) == []
