"""Keep freed memory in the process, so that large CPU tensors are not page-faulted in afresh at every use.

glibc's malloc serves big blocks (a tool's activations on a batch: tens of MB) with ``mmap`` and hands them
back to the kernel when freed, so the next batch pays a page fault per 4 KB page (the README gives the
measured cost). Raising malloc's thresholds keeps such blocks in the heap for reuse. Results are bit for bit
the same; the cost is that the process keeps its peak memory.
The command lines that train or evaluate call :func:`retain_freed_memory`; importing restore-gym does not.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters (malloc.h); both must be set, since setting either turns off glibc's adaptive threshold.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
DEFAULT_THRESHOLD = 1 << 30


def retain_freed_memory(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Make this process's glibc malloc serve blocks below ``threshold`` bytes from its heap and never trim
    it below that; returns whether it took effect (False where the C library is not glibc)."""
    if not 0 < threshold < 2**31:
        raise ValueError(f"threshold must be between 1 byte and 2 GiB (mallopt takes an int), got {threshold}")
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold))
