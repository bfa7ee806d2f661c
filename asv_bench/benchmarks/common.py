"""Shared data, timing settings and memory probe for the bfpack benchmarks.

Used by every benchmark module here and by ``tools/bench_table.py``, so the
asv suite and the README table measure the same inputs the same way.

Sizes can be shrunk for smoke tests without touching the benchmark
parameters: set ``BFPACK_BENCH_SMOKE=1`` (at most 1,000 documents) or
``BFPACK_BENCH_MAX_DOCS=n`` in the environment, or assign
:data:`MAX_DOCS` at run time. :func:`lengths` then returns ``min(n,
MAX_DOCS)`` documents while the parameter still reads ``n``.
"""

import gc
import os

import numpy as np

#: Document counts the benchmarks are parameterized over.
SIZES = (100_000, 1_000_000, 10_000_000)
#: Context lengths (tokens per sequence).
SEQ_LENS = (2048, 8192)
#: ``bfpack.pack`` methods.
METHODS = ("bfd", "ffd", "concat")

#: Seed of the document lengths; the same for every size.
SEED = 20240415
#: Parameters of the lognormal document-length distribution (natural log of
#: tokens): median ~405 tokens, mean ~940, 10.6% longer than 2048 and 1.0%
#: longer than 8192, so splitting long documents matters.
LOG_MEAN, LOG_SIGMA = 6.0, 1.3

SMOKE_DOCS = 1_000


def _max_docs_from_env():
    if os.environ.get("BFPACK_BENCH_MAX_DOCS"):
        return int(os.environ["BFPACK_BENCH_MAX_DOCS"])
    if os.environ.get("BFPACK_BENCH_SMOKE", "") not in ("", "0"):
        return SMOKE_DOCS
    return None


#: Upper limit on the documents :func:`lengths` returns (``None``: no limit).
MAX_DOCS = _max_docs_from_env()

_LENGTHS = {}
_CHUNK = 1 << 20


def num_docs(n):
    """Documents actually used for parameter ``n`` (``n`` capped by :data:`MAX_DOCS`)."""
    return n if MAX_DOCS is None else min(n, MAX_DOCS)


def make_lengths(n, seed=SEED):
    """``n`` document lengths, ``int64``, drawn as ``lognormal(6, 1.3) + 1``.

    Drawn in chunks so that generating 10M lengths never holds a float64
    copy of the whole array (which would inflate ``peakmem_`` results).
    The stream does not depend on the chunking: ``make_lengths(k)`` is a
    prefix of ``make_lengths(n)`` for ``k <= n``.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        # Assignment truncates toward zero, like ``.astype(np.int64)``.
        out[lo:hi] = rng.lognormal(LOG_MEAN, LOG_SIGMA, hi - lo) + 1.0
    return out


def lengths(n):
    """Cached read-only lengths for parameter ``n`` (see :func:`num_docs`)."""
    n = num_docs(n)
    arr = _LENGTHS.get(n)
    if arr is None:
        arr = make_lengths(n)
        arr.flags.writeable = False
        _LENGTHS[n] = arr
    return arr


def tiny_lengths(seq_len):
    """A few lengths on both sides of ``seq_len``, for JIT warm-up.

    Read-only like :func:`lengths`: numba compiles a separate specialization
    for read-only arrays, so warming up with a writable array would leave
    the compilation (or a cache load) inside the first timed call.
    """
    arr = np.array([1, 2, 3, seq_len // 2, seq_len - 1, seq_len, seq_len + 1,
                    3 * seq_len + 5, 7, seq_len // 3], dtype=np.int64)
    arr.flags.writeable = False
    return arr


def clear_cache():
    """Forget the cached lengths."""
    _LENGTHS.clear()


# ---------------------------------------------------------------------------
# Peak memory beyond what is already resident, from /proc/self/status.

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(*keys):
    found = {}
    with open(_STATUS) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in keys:
                found[key] = int(rest.split()[0])
    return tuple(found[k] for k in keys)


def _reset_peak():
    # "5" resets the peak resident set size (VmHWM) to the current RSS.
    with open(_CLEAR_REFS, "w") as f:
        f.write("5")


def _load_malloc_trim():
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory():
    """Collect garbage and hand free heap pages back to the OS (glibc).

    glibc raises its mmap threshold after large frees (up to 32 MB), so
    arrays of a few MB freed by an earlier call stay resident in the heap;
    without ``malloc_trim`` they would count as "already resident" and hide
    the next call's use of them.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def peak_probe_available():
    """True when VmHWM can be reset and read (Linux, own process)."""
    try:
        _reset_peak()
        _status_kib("VmHWM", "VmRSS")
    except (OSError, KeyError, ValueError):
        return False
    return True


def require_peak_probe():
    """Raise ``NotImplementedError`` (asv: skip) when :func:`peak_bytes` cannot work."""
    if not peak_probe_available():
        raise NotImplementedError(
            "peak memory needs a writable /proc/self/clear_refs and VmHWM")


def peak_bytes(func, *args, **kwargs):
    """Run ``func`` once; return ``(result, peak bytes beyond the RSS before)``.

    The peak is ``VmHWM`` after the call minus ``VmRSS`` before it, with the
    high-water mark reset just before the call, so memory that was resident
    already (the input, the interpreter, compiled kernels) is not counted
    and memory freed during the call is (it was resident at the peak).
    Free heap memory is released first (:func:`release_free_memory`).
    Counts resident pages, not allocations: memory allocated but never
    touched is not counted.
    """
    release_free_memory()
    _reset_peak()
    (rss_before,) = _status_kib("VmRSS")
    result = func(*args, **kwargs)
    (hwm_after,) = _status_kib("VmHWM")
    return result, (hwm_after - rss_before) * 1024


# ---------------------------------------------------------------------------
# asv settings.

class Benchmark:
    """Base class: asv settings sized for calls of 1 ms to a few seconds.

    One call per sample (``number = 1``): at 10M documents a call takes
    0.1-2 s, and with a ``setup`` asv re-runs it before every sample, so
    ``setup`` only fetches cached data and re-warms the JIT on a tiny input.
    At least 3 and at most 10 samples, stopping after ~20 s of sampling.
    """

    number = 1
    repeat = (3, 10, 20.0)
    min_run_count = 2
    # One untimed call at least (pages of the output arrays, caches).
    warmup_time = 0.2
    timeout = 300.0
