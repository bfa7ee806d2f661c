"""Shared data, timing settings and memory probes for the bfpack benchmarks.

Sizes can be shrunk for smoke tests without touching the benchmark
parameters: set ``BFPACK_BENCH_SMOKE=1`` (at most 1,000 documents) or
``BFPACK_BENCH_MAX_DOCS=n`` in the environment, or assign
:data:`MAX_DOCS` at run time. :func:`lengths` then returns ``min(n,
MAX_DOCS)`` documents while the parameter still reads ``n``; token counts
are capped the same way at ``MAX_DOCS * 100`` tokens (:func:`num_tokens`),
so the 100M-token table becomes ~100k tokens in smoke mode.
``tests/test_benchmarks.py`` runs the whole suite through asv that way.
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import bfpack

#: Document counts the benchmarks are parameterized over.
SIZES = (100_000, 1_000_000, 10_000_000)
#: Context lengths (tokens per sequence).
SEQ_LENS = (2048, 8192)
#: ``bfpack.pack`` methods, from the registry.
try:
    METHODS = tuple(bfpack.METHODS)
except AttributeError:  # asv also benchmarks older commits: efe70bc has no registry
    METHODS = ("bfd", "ffd", "concat")

#: Seed of the document lengths; the same for every size.
SEED = 20240415
#: Parameters of the lognormal document-length distribution (natural log of
#: tokens): median ~405 tokens, mean ~940, 10.6% longer than 2048 and 1.0%
#: longer than 8192, so splitting long documents matters.
LOG_MEAN, LOG_SIGMA = 6.0, 1.3

SMOKE_DOCS = 1_000
#: Whether ``BFPACK_BENCH_SMOKE`` asks for a smoke run (tiny inputs, no compilation timed).
SMOKE = os.environ.get("BFPACK_BENCH_SMOKE", "") not in ("", "0")


def _max_docs_from_env():
    if os.environ.get("BFPACK_BENCH_MAX_DOCS"):
        return int(os.environ["BFPACK_BENCH_MAX_DOCS"])
    if SMOKE:
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
    arr = np.array(
        [
            1,
            2,
            3,
            seq_len // 2,
            seq_len - 1,
            seq_len,
            seq_len + 1,
            3 * seq_len + 5,
            7,
            seq_len // 3,
        ],
        dtype=np.int64,
    )
    arr.flags.writeable = False
    return arr


# ---------------------------------------------------------------------------
# Token tables: the same lognormal lengths, filled with random token ids.

#: Tokens of the ``pack_table`` benchmark table (~106k documents).
TABLE_TOKENS = 100_000_000
#: Token ids are uniform in ``[0, VOCAB)`` (GPT-2's vocabulary size), int32.
VOCAB = 50_257
#: Tokens per document allowed by :data:`MAX_DOCS` (smoke mode: 100k tokens).
SMOKE_TOKENS_PER_DOC = 100
#: The packed column.
TOKEN_COLUMN = "input_ids"

_TABLES = {}


def num_tokens(n):
    """Tokens actually used for a parameter of ``n`` tokens.

    ``n`` capped at ``MAX_DOCS * SMOKE_TOKENS_PER_DOC`` (no cap when
    :data:`MAX_DOCS` is ``None``).
    """
    return n if MAX_DOCS is None else min(n, MAX_DOCS * SMOKE_TOKENS_PER_DOC)


def lengths_for_tokens(n_tokens, seed=SEED):
    """The shortest prefix of ``make_lengths(., seed)`` holding ``>= n_tokens`` tokens."""
    m = max(16, n_tokens // 800)  # the mean length is ~940
    while True:
        lens = make_lengths(m, seed)
        total = np.cumsum(lens)
        if total[-1] >= n_tokens:
            return lens[: int(np.searchsorted(total, n_tokens)) + 1]
        m *= 2


def make_tokens(n, seed=SEED):
    """``n`` random token ids in ``[0, VOCAB)``, int32 (drawn in chunks)."""
    rng = np.random.default_rng([seed, 1])
    out = np.empty(n, dtype=np.int32)
    step = 1 << 24
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        out[lo:hi] = rng.integers(0, VOCAB, hi - lo, dtype=np.int32)
    return out


def list_table(lengths, values):
    """A one-column table (``input_ids``: list<int32>) over these buffers (zero-copy)."""
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return pa.table({TOKEN_COLUMN: column})


def make_token_table(n_tokens, seed=SEED):
    """Documents of ``lengths_for_tokens(n_tokens, seed)`` filled with :func:`make_tokens`.

    One chunk; at least ``n_tokens`` tokens (the last document is whole).
    With the default seed the lengths are a prefix of :func:`lengths`'s.
    """
    lens = lengths_for_tokens(n_tokens, seed)
    values = make_tokens(int(lens.sum()), seed)
    values.flags.writeable = False
    return list_table(lens, values)


def token_table(n_tokens):
    """Cached :func:`make_token_table` for parameter ``n_tokens`` (see :func:`num_tokens`)."""
    n = num_tokens(n_tokens)
    table = _TABLES.get(n)
    if table is None:
        table = _TABLES[n] = make_token_table(n)
    return table


def values_view(table, column=TOKEN_COLUMN):
    """Read-only numpy view of the flat int32 token buffer of a one-chunk list column."""
    chunk = table.column(column).chunk(0)
    values = chunk.values
    return np.frombuffer(
        values.buffers()[1], dtype=np.int32, count=len(values), offset=values.offset * 4
    )


def tiny_token_table(seq_len):
    """A few documents of :func:`tiny_lengths` over read-only buffers, for JIT warm-up."""
    lens = tiny_lengths(seq_len)
    values = np.arange(int(lens.sum()), dtype=np.int32)
    values.flags.writeable = False
    return list_table(lens, values)


def write_parquet_shards(folder, n_shards, shard_tokens, row_group_docs=4096, first_seed=SEED):
    """Write ``part-00000.parquet``, ... each a :func:`make_token_table` of ``shard_tokens``.

    Shard ``s`` has seed ``first_seed + s`` (its own lengths and tokens);
    row groups of ``row_group_docs`` documents (~4M tokens); pyarrow's
    default compression (snappy). Returns one dict per shard: ``path``,
    ``documents``, ``tokens``.
    """
    os.makedirs(folder, exist_ok=True)
    shards = []
    for s in range(n_shards):
        path = os.path.join(folder, f"part-{s:05d}.parquet")
        table = make_token_table(shard_tokens, first_seed + s)
        pq.write_table(table, path, row_group_size=row_group_docs)
        shards.append(
            {
                "path": path,
                "documents": table.num_rows,
                "tokens": len(table.column(TOKEN_COLUMN).chunk(0).values),
            }
        )
        del table
    return shards


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
        raise NotImplementedError("peak memory needs a writable /proc/self/clear_refs and VmHWM")


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
# Peak memory of a fresh process.

FRESH_PROCESS_EPILOGUE = """
import json as _json
_status = {}
with open("/proc/self/status") as _f:
    for _line in _f:
        _key, _, _rest = _line.partition(":")
        if _key in ("VmHWM", "VmRSS"):
            _status[_key] = int(_rest.split()[0])
print("BFPACK_BENCH_STATUS " + _json.dumps(_status))
"""


def fresh_process_status(code, *args, timeout=600):
    """Run ``code`` in a fresh interpreter; return its ``VmHWM`` and ``VmRSS`` (KiB) at the end.

    The child reads its own ``/proc/self/status`` after ``code`` (with
    ``sys.argv[1:] == args``), so the peak is that process's alone.
    (``ru_maxrss`` of children is no use here: it survives ``exec``, so a
    child of a big process reports its parent's peak.) Raises
    ``RuntimeError`` with the end of the child's stderr when it fails.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code + FRESH_PROCESS_EPILOGUE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        raise RuntimeError(
            f"the child exited with status {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith("BFPACK_BENCH_STATUS "):
            return json.loads(line.partition(" ")[2])
    raise RuntimeError(f"no status line in the child's output: {proc.stdout!r}")


# ---------------------------------------------------------------------------
# Timing inside ``track_`` benchmarks (ratios, the garbage collector on).


def median_seconds(func, runs=3, *, gc_off=True):
    """Median wall time of ``runs`` calls of ``func()``, after one untimed call.

    The garbage collector is off during each call, as in ``timeit`` (and
    asv's ``time_`` benchmarks), unless ``gc_off`` is False.
    """
    func()
    return statistics.median(_time_once(func, gc_off) for _ in range(runs))


def _time_once(func, gc_off=True):
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        func()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def median_seconds_pair(func, ref, runs=3):
    """Medians of ``runs`` timings each of ``func()`` and ``ref()``, interleaved.

    One untimed call of each first. Interleaving puts both under the same
    load when a neighbour comes and goes; the ratio of the two medians is
    what the ``track_time_ratio`` benchmarks report.
    Returns ``(median func seconds, median ref seconds)``.
    """
    func()
    ref()
    a, b = [], []
    for _ in range(runs):
        a.append(_time_once(func))
        b.append(_time_once(ref))
    return statistics.median(a), statistics.median(b)


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
