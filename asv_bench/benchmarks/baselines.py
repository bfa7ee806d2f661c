"""What bfpack is measured against, shared with ``tools/bench_table.py``.

- :func:`counting_sort_order`: a stable counting sort of the lengths capped
  at ``seq_len``, longest first, returning the permutation. Any
  best-fit-decreasing packer has to order its pieces at least this way, so
  this is the floor for ``pack``.
- :func:`obfd`: lightbinpack's C++ best-fit decreasing (``lightbinpack.obfd``),
  the fastest BFD on PyPI we know of. It takes a Python list of ints and
  the capacity, rejects items larger than the capacity, and returns the
  bins as lists of item indices. It cannot split long documents, so it gets
  the lengths capped at ``seq_len`` (:func:`obfd_input`), the same pieces
  ``bfpack.pack(..., long_docs="truncate")`` packs.

What the token-moving calls are measured against:

- :func:`copy_floor`: a numpy copy of the flat token buffer, the memory
  copy any packer of the tokens pays (the floor for ``bfpack.pack_table``).
- :func:`pyarrow_rewrite`: read a Parquet dataset with ``pyarrow.dataset``
  and write the same batches back with ``pyarrow.parquet.ParquetWriter``
  (default compression), what ``bfpack.parquet.pack_parquet`` costs at
  least besides packing.
"""

import os
import shutil

import numba
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

try:
    import lightbinpack
except ImportError:  # optional peer
    lightbinpack = None

HAVE_LIGHTBINPACK = lightbinpack is not None


@numba.njit(cache=True, nogil=True)
def _counting_sort_order(lengths, seq_len):
    n = lengths.shape[0]
    count = np.zeros(seq_len + 1, dtype=np.int64)
    for i in range(n):
        v = min(max(lengths[i], 0), seq_len)
        count[v] += 1
    # Longest first: key k starts after every key larger than k.
    start = np.empty(seq_len + 1, dtype=np.int64)
    acc = 0
    for k in range(seq_len, -1, -1):
        start[k] = acc
        acc += count[k]
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        v = min(max(lengths[i], 0), seq_len)
        order[start[v]] = i
        start[v] += 1
    return order


def counting_sort_order(lengths, seq_len):
    """Document indices ordered by ``min(length, seq_len)``, longest first.

    Stable (equal keys keep document order); ``O(N + seq_len)``.

    Parameters
    ----------
    lengths : ndarray of int64, shape (N,)
    seq_len : int

    Returns
    -------
    ndarray of int64, shape (N,)
        The permutation.
    """
    return _counting_sort_order(np.ascontiguousarray(lengths, dtype=np.int64),
                                int(seq_len))


def warm_counting_sort():
    """Compile (or load from numba's cache) :func:`counting_sort_order`."""
    # Both specializations: writable and read-only (the cached lengths).
    lengths = np.array([3, 1, 2], dtype=np.int64)
    counting_sort_order(lengths, 2)
    lengths.flags.writeable = False
    counting_sort_order(lengths, 2)


def require_lightbinpack():
    """Raise ``NotImplementedError`` (asv: skip) when lightbinpack is missing."""
    if not HAVE_LIGHTBINPACK:
        raise NotImplementedError("lightbinpack is not installed")


def lightbinpack_version():
    """Installed lightbinpack version, or ``None``."""
    if not HAVE_LIGHTBINPACK:
        return None
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("lightbinpack")
    except PackageNotFoundError:
        return getattr(lightbinpack, "__version__", "unknown")


def obfd_input(lengths, seq_len):
    """``lengths`` capped at ``seq_len`` as a Python list (what :func:`obfd` takes).

    Converting 10M lengths takes ~0.2 s and ~400 MB; do it outside the
    timed code.
    """
    return np.minimum(lengths, seq_len).tolist()


def obfd(items, seq_len):
    """lightbinpack's best-fit decreasing: ``list[list[int]]`` of item indices per bin."""
    return lightbinpack.obfd(items, seq_len)


def excess_over_lower_bound(num_bins, total_tokens, seq_len):
    """Bins beyond ``ceil(total_tokens / seq_len)``."""
    return num_bins - (-(-total_tokens // seq_len))


def copy_floor(values):
    """A copy of the flat token buffer (``numpy.ndarray.copy``)."""
    return values.copy()


def pyarrow_rewrite(src, dst, columns=("input_ids",)):
    """Stream the ``columns`` of the Parquet dataset ``src`` into ``dst/part-00000.parquet``.

    Batches from ``pyarrow.dataset`` (one per source row group) go straight
    to one ``pyarrow.parquet.ParquetWriter`` with its default compression,
    each as a row group. Like ``pack_parquet(..., overwrite=True)`` it first
    removes an existing ``dst``. Returns the rows written.
    """
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    dataset = ds.dataset(src, format="parquet")
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    rows = 0
    with pq.ParquetWriter(os.path.join(dst, "part-00000.parquet"),
                          schema) as writer:
        for batch in dataset.to_batches(columns=list(columns)):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
