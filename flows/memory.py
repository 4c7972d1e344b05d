"""glibc's malloc told to keep freed memory in the process, for a command's large arrays.

By default glibc hands a freed block above its mmap threshold (128 KiB, rising to 32 MiB at
most) straight back to the kernel, so the next array of that size faults in fresh pages again.
A training run on a universe makes and drops hundreds of them: the windows, each split's
predictions and its `[N, H, Q]` baselines, the long dataset frame. On the virtual machines
measured here a page fault is dear: touching a fresh 400 MB array took 0.12 s at best and up to
4 s, against 0.04 s for memory the process had used before. Kept, a freed block is reused by
the next array instead. The price is resident memory that does not shrink before the command
ends, which a command of minutes does anyway; its peak is unchanged.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt's parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below this come from the heap and go back to it when freed
TRIM_THRESHOLD = (1 << 31) - 1  # the heap's free top goes back to the kernel beyond this (max int)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False (nothing done) where the
    C library is not glibc (musl, macOS), whose allocators differ."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
