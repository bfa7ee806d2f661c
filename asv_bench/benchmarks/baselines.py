"""What bfpack is measured against: one definition for the benchmarks and the tests.

- :func:`counting_sort_order`: a stable counting sort of the lengths capped
  at ``seq_len``, longest first, returning the permutation. Any
  best-fit-decreasing packer has to order its pieces at least this way, so
  this is the floor for ``pack``.
- The peers: other bin packers a user would pick instead, run on the same
  lengths. None of them splits long documents, so each gets the lengths
  capped at ``seq_len`` as a Python list (:func:`capped_items`), the same
  pieces ``bfpack.pack(..., long_docs="truncate")`` packs; compare them with
  that call. :data:`PEERS` lists them (name, the package it needs, the
  sizes the benchmarks run it at), each a function ``(items, seq_len) ->
  bins``, one list per bin:

  - :func:`obfd`: lightbinpack's C++ best-fit decreasing
    (``lightbinpack.obfd``), the fastest BFD on PyPI we know of;
  - :func:`lightbinpack_ffd`: lightbinpack's C++ first-fit decreasing
    (``lightbinpack.ffd``);
  - :func:`binpacking_constant_volume`: ``binpacking.to_constant_volume``,
    pure Python. It puts each item (largest first) into the *emptiest* bin
    that still holds it (worst-fit decreasing, not best fit), scanning every
    open bin: ``O(N x bins)``: 2-4 s at 10k documents, ~4 min at 100k;
  - :func:`python_bfd`: best-fit decreasing in pure Python with a max
    segment tree over the free space, the algorithm of Ding et al. (2024)
    and of Hugging Face TRL's ``pack_dataset(strategy="bfd")``, re-written
    here (:func:`python_bfd`), one piece at a time.

What the token-moving calls are measured against:

- :func:`copy_floor`: a numpy copy of the flat token buffer, the memory
  copy any packer of the tokens pays (the floor for ``bfpack.pack_table``).
- :func:`pyarrow_rewrite`: read a Parquet dataset with ``pyarrow.dataset``
  and write the same batches back with ``pyarrow.parquet.ParquetWriter``
  with the writer settings of bfpack's shards
  (``bfpack.parquet._shards.WRITE_OPTIONS``), what ``bfpack.parquet.pack_parquet``
  costs at least besides packing.
"""

import os
import shutil
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

try:
    import lightbinpack
except ImportError:  # optional peer
    lightbinpack = None

try:
    import binpacking
except ImportError:  # optional peer
    binpacking = None

HAVE_LIGHTBINPACK = lightbinpack is not None
HAVE_BINPACKING = binpacking is not None


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
    return _counting_sort_order(np.ascontiguousarray(lengths, dtype=np.int64), int(seq_len))


def warm_counting_sort():
    """Compile (or load from numba's cache) :func:`counting_sort_order`."""
    # Both specializations: writable and read-only (the cached lengths).
    lengths = np.array([3, 1, 2], dtype=np.int64)
    counting_sort_order(lengths, 2)
    lengths.flags.writeable = False
    counting_sort_order(lengths, 2)


def capped_items(lengths, seq_len):
    """``lengths`` capped at ``seq_len`` as a Python list (what every peer takes).

    The pieces ``bfpack.pack(lengths, seq_len, long_docs="truncate")``
    packs. Converting 10M lengths takes ~0.2 s and ~400 MB; do it outside
    the timed code.
    """
    return np.minimum(lengths, seq_len).tolist()


def obfd(items, seq_len):
    """lightbinpack's best-fit decreasing: ``list[list[int]]`` of item indices per bin."""
    return lightbinpack.obfd(items, seq_len)


def lightbinpack_ffd(items, seq_len):
    """lightbinpack's first-fit decreasing: ``list[list[int]]`` of item indices per bin.

    ``lightbinpack.ffd(lengths, batch_max_length)`` takes numbers (ints or
    floats) and rejects an item larger than the capacity, like ``obfd``.
    """
    return lightbinpack.ffd(items, seq_len)


def binpacking_constant_volume(items, seq_len):
    """``binpacking.to_constant_volume`` on ``{index: length}``: item indices per bin.

    Given a dict, the package returns one ``{key: weight}`` dict per bin;
    keying by index gives the same output as the other peers (building the
    dict and listing the keys is ~0.01% of the call). The package sorts the
    items largest first and puts each into the *emptiest* open bin that
    still holds it (its comments call this "least loaded fit"; it is
    worst-fit decreasing, not best fit), scanning every open bin for every
    item: ``O(N x bins)``, quadratic in practice (2-4 s at 10k documents,
    ~4 min at 100k).
    """
    bins = binpacking.to_constant_volume(dict(enumerate(items)), seq_len)
    return [list(b) for b in bins]


def python_bfd(items, seq_len):
    """Best-fit decreasing in pure Python with a max segment tree over free space.

    The algorithm of Ding et al. (2024) and of Hugging Face TRL's
    ``pack_dataset(strategy="bfd")`` (which runs it inside each
    ``datasets.map`` batch of 1,000 rows; here it packs all the items at
    once), written out one piece at a time, without bfpack's bulk placement
    of equal pieces:

    1. Sort the items by length, longest first (stable).
    2. Keep a max segment tree whose leaf ``c`` (``1 <= c <= seq_len``)
       holds ``c`` while some open bin has exactly ``c`` tokens free and 0
       otherwise; leaf ``seq_len`` always holds ``seq_len`` and stands for
       "open a new bin". Stored as an implicit heap: node 1 is the root,
       node ``k`` has children ``2k`` and ``2k + 1``.
    3. For each item, walk from the root to the leftmost leaf holding at
       least the item's size: that is the smallest free space that fits.
       Take a bin with that much space from the table ``free space -> bins``
       (or open one), put the item in, and file the bin under its new free
       space; set or clear the two leaves whose bin lists became non-empty
       or empty.

    Among bins with the same free space it takes the one that reached it
    last, the tie rule of ``bfpack.pack``, so it gives the same bins as
    ``bfpack.pack(items, seq_len)`` and as ``naive_bfd`` of
    ``tests/naive.py`` (``tests/test_benchmarks.py`` checks the latter).
    ``O(N log N + N log seq_len)``.

    Parameters
    ----------
    items : list of int
        Item sizes, each in ``[1, seq_len]`` (:func:`capped_items`).
    seq_len : int
        Bin capacity.

    Returns
    -------
    list of list of int
        Item indices per bin, bins in the order they were opened, items in
        the order they were placed.
    """
    if items and not 1 <= min(items) <= max(items) <= seq_len:
        raise ValueError(f"items must be in [1, {seq_len}]")
    leaves = 1 << (seq_len - 1).bit_length()  # a power of two >= seq_len
    tree = [0] * (2 * leaves)  # leaf c is node leaves + c - 1

    def set_leaf(space, value):
        node = leaves + space - 1
        tree[node] = value
        node >>= 1
        while node:
            left, right = tree[2 * node], tree[2 * node + 1]
            tree[node] = left if left >= right else right
            node >>= 1

    set_leaf(seq_len, seq_len)
    # Bins with exactly c tokens free, the most recent last.
    bins_with_space = [[] for _ in range(seq_len + 1)]
    bins = []
    for item in sorted(range(len(items)), key=items.__getitem__, reverse=True):
        size = items[item]
        node = 1
        while node < leaves:
            node *= 2  # left child...
            if tree[node] < size:
                node += 1  # ...unless it holds too little
        space = tree[node]
        if space == seq_len:
            b = len(bins)
            bins.append([])
        else:
            waiting = bins_with_space[space]
            b = waiting.pop()
            if not waiting:
                set_leaf(space, 0)
        bins[b].append(item)
        space -= size
        if space:
            waiting = bins_with_space[space]
            if not waiting:
                set_leaf(space, space)
            waiting.append(b)
    return bins


class Peer(NamedTuple):
    """A packer benchmarked against ``bfpack.pack(..., long_docs="truncate")``."""

    #: Row label, e.g. ``"lightbinpack obfd"``.
    label: str
    #: The package it needs (``""``: none).
    package: str
    #: Whether that package is importable.
    available: bool
    #: ``pack(items, seq_len) -> list of bins``, each a list of item indices.
    pack: Callable
    #: Largest document count worth running it at (``None``: no limit).
    max_docs: int | None


#: The peers, by key. ``binpacking`` is quadratic: 10k documents only
#: (2-4 s a call; 100k takes ~4 min). The pure-Python BFD: up to 1M.
PEERS = {
    "obfd": Peer("lightbinpack obfd", "lightbinpack", HAVE_LIGHTBINPACK, obfd, None),
    "lightbinpack_ffd": Peer(
        "lightbinpack ffd", "lightbinpack", HAVE_LIGHTBINPACK, lightbinpack_ffd, None
    ),
    "binpacking": Peer(
        "binpacking to_constant_volume",
        "binpacking",
        HAVE_BINPACKING,
        binpacking_constant_volume,
        10_000,
    ),
    "python_bfd": Peer("pure-Python BFD (segment tree, as TRL)", "", True, python_bfd, 1_000_000),
}


def require_peer(key):
    """Raise ``NotImplementedError`` (asv: skip) when peer ``key``'s package is missing."""
    peer = PEERS[key]
    if not peer.available:
        raise NotImplementedError(f"{peer.package} is not installed")


def peer_sizes(key, sizes):
    """The document counts of ``sizes`` that peer ``key`` is run at."""
    limit = PEERS[key].max_docs
    return [n for n in sizes if limit is None or n <= limit]


def excess_over_lower_bound(num_bins, total_tokens, seq_len):
    """Bins beyond ``ceil(total_tokens / seq_len)``."""
    return num_bins - (-(-total_tokens // seq_len))


def copy_floor(values):
    """A copy of the flat token buffer (``numpy.ndarray.copy``)."""
    return values.copy()


def pyarrow_rewrite(src, dst, columns=("input_ids",), write_options=None):
    """Stream the ``columns`` of the Parquet dataset ``src`` into ``dst/part-00000.parquet``.

    Batches from ``pyarrow.dataset`` (one per source row group) go straight
    to one ``pyarrow.parquet.ParquetWriter``, each as a row group, written
    with ``write_options`` (default: the settings of bfpack's shards). Like
    ``pack_parquet(..., overwrite=True)`` it first removes an existing
    ``dst``. Returns the rows written.
    """
    if write_options is None:
        from bfpack.parquet._shards import WRITE_OPTIONS as write_options
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    dataset = ds.dataset(src, format="parquet")
    schema = pa.schema([dataset.schema.field(c) for c in columns])
    rows = 0
    path = os.path.join(dst, "part-00000.parquet")
    with pq.ParquetWriter(path, schema, **write_options) as writer:
        for batch in dataset.to_batches(columns=list(columns)):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
