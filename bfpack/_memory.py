"""The memory policy: what this machine may hold, and giving freed memory back.

bfpack refuses, before any work, a packing whose working memory could never
be allocated (:func:`check_seq_len_fits`, :func:`check_layout_fits`), and
gives freed buffers back to the system between windows
(:func:`release_free_memory`).
"""

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable

import pyarrow as pa

#: Working memory per token of seq_len, at most, whatever the documents:
#: the histogram of piece lengths and BFD's stack tops (int64 each) and its
#: tree (int32, ``2 * width`` nodes for ``seq_len <= width < 2 * seq_len``).
SEQ_LEN_BYTES = 32
#: Memory of a packing's layout, at least: per piece its document, start
#: (int64) and length (int32); per sequence its offset, pieces and free
#: space (int64) and fill (int32).
PIECE_BYTES = 20
SEQUENCE_BYTES = 28
#: Where a container's memory limit is read (cgroup v2, then v1).
CGROUP_MEMORY_LIMITS = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


@functools.cache
def memory_limit() -> int | None:
    """Bytes of memory this process may ever use: the machine's physical
    memory, or a container's (cgroup) limit where lower; None if unknown."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        pass
    for path in CGROUP_MEMORY_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" means no limit
            limits.append(int(text))
    positive = [n for n in limits if n > 0]
    return min(positive) if positive else None


def check_seq_len_fits(seq_len: int) -> None:
    """ValueError unless the working memory of ``seq_len`` (:data:`SEQ_LEN_BYTES`
    per token) fits in :func:`memory_limit`.

    The packers keep arrays indexed by piece length, so ``seq_len`` costs
    memory whatever the documents; a value whose arrays could never be
    allocated is refused before any work.
    """
    memory = memory_limit()
    if memory is not None and seq_len * SEQ_LEN_BYTES > memory:
        raise ValueError(
            f"seq_len={seq_len} needs {_gb(seq_len * SEQ_LEN_BYTES)} of working memory "
            f"({SEQ_LEN_BYTES} bytes per token of seq_len), more than the "
            f"{_gb(memory)} of this machine; seq_len can be at most "
            f"{memory // SEQ_LEN_BYTES} here"
        )


def check_layout_fits(num_pieces: int, num_sequences: int, seq_len: int) -> None:
    """ValueError, before any is allocated, if the layout of ``num_pieces``
    pieces in ``num_sequences`` sequences cannot fit in :func:`memory_limit`
    (documents of a huge total length at a small ``seq_len``)."""
    memory = memory_limit()
    need = num_pieces * PIECE_BYTES + num_sequences * SEQUENCE_BYTES
    if memory is not None and need > memory:
        raise ValueError(
            f"at seq_len={seq_len} these documents make {num_pieces:,} pieces in "
            f"{num_sequences:,} sequences, whose layout needs {_gb(need)}, more than "
            f"the {_gb(memory)} of this machine; pack fewer tokens at a time (in "
            f"windows, e.g. with bfpack.StreamPacker) or use a larger seq_len"
        )


def _gb(num_bytes: int) -> str:
    if num_bytes < 2**30:
        return f"{num_bytes / 2**20:,.1f} MiB"
    return f"{num_bytes / 2**30:,.1f} GiB"


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
