"""flows/memory.py: freed memory stays in the process for the next array."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# a 256 MB array made and dropped, then the bytes glibc holds free for reuse (mallinfo2)
HELD_AFTER_FREE = """
import ctypes, sys
import numpy as np
from flows.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
array = np.ones(32_000_000)  # 256 MB
del array
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
print(kept, libc.mallinfo2().fordblks)
"""


def held_after_free(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", HELD_AFTER_FREE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_freed_large_array_stays_in_the_process_for_reuse() -> None:
    kept, held = held_after_free("keep")
    assert kept == "True"
    assert held >= 256_000_000  # the array's pages, free in the heap, ready for the next one


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_by_default_glibc_hands_a_freed_large_array_back() -> None:
    # the behaviour keep_freed_memory changes: without it the pages go back to the kernel
    _, held = held_after_free("default")
    assert held < 32_000_000
