"""Giving freed memory back to the system between windows."""

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None; looked up on first use, not import
    (``find_library`` costs about 12 ms)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def release_free_memory() -> None:
    """Give the last window's freed buffers back to the system.

    Arrow's allocator keeps freed memory for reuse, and glibc keeps freed
    arrays below its (adaptive, up to 32 MB) mmap threshold on its heap;
    without this, resident memory creeps up window after window.
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
