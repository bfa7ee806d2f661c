"""``bfpack.pack`` next to its floor and its peers, on the same lengths.

The implementations live in :mod:`.baselines`. lightbinpack and
``binpacking`` cannot split long documents (TRL's ``bfd-requeue`` can, with
the same pieces as bfpack's ``long_docs="split"``, but splitting only adds
chunks before the packing timed here), so every peer gets the lengths capped
at ``seq_len`` as a Python list, and :class:`PackTruncate` times ``bfpack``
on exactly those pieces;
compare their timings with it (and ``pack.Pack.time_pack``) of the same run.
Each peer is skipped when its package is missing, and runs only at the
sizes it can manage (:data:`.baselines.PEERS`):

=====================================  ============  ======================
peer                                   sizes         ~ seconds at 1M docs
=====================================  ============  ======================
lightbinpack ``obfd`` (C++ BFD)        10k-10M       0.15
lightbinpack ``ffd`` (C++ FFD)         10k-10M       0.35
pure-Python BFD (segment tree, TRL)    10k-1M        3
``binpacking.to_constant_volume``      10k           (2-4 s at 10k)
=====================================  ============  ======================
"""

import bfpack

from .baselines import (
    PEERS,
    capped_items,
    counting_sort_order,
    excess_over_lower_bound,
    peer_sizes,
    require_peer,
    warm_counting_sort,
)
from .common import (
    SEQ_LENS,
    SIZES,
    Benchmark,
    lengths,
    median_seconds,
    num_docs,
    tiny_lengths,
)

#: Document counts of the peer comparison: :data:`.common.SIZES` and 10k,
#: where even the quadratic ``binpacking`` finishes in seconds.
PEER_SIZES = (10_000, *SIZES)


class CountingSortFloor(Benchmark):
    """Stable counting sort of the capped lengths: what any BFD must pay."""

    params = [SIZES, SEQ_LENS]
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        warm_counting_sort()

    def time_counting_sort(self, n_docs, seq_len):
        counting_sort_order(self.lengths, seq_len)


class PackTruncate(Benchmark):
    """``bfpack`` BFD on the pieces the peers get: lengths capped at ``seq_len``."""

    params = [PEER_SIZES, SEQ_LENS]
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        bfpack.pack(tiny_lengths(seq_len), seq_len, long_docs="truncate")

    def _pack(self, seq_len):
        return bfpack.pack(self.lengths, seq_len, long_docs="truncate")

    def time_pack_truncate(self, n_docs, seq_len):
        self._pack(seq_len)

    def track_sequences(self, n_docs, seq_len):
        return self._pack(seq_len).num_sequences

    track_sequences.unit = "sequences"

    def track_excess_sequences(self, n_docs, seq_len):
        return self._pack(seq_len).stats().excess_sequences

    track_excess_sequences.unit = "sequences over lower bound"


_CAPPED = {}


def _capped_items(n_docs, seq_len):
    # One list per (size, seq_len) and process, shared by every peer.
    key = (num_docs(n_docs), seq_len)
    items = _CAPPED.get(key)
    if items is None:
        items = _CAPPED[key] = capped_items(lengths(n_docs), seq_len)
    return items


class _Peer(Benchmark):
    """Base class: peer :attr:`peer` (a key of ``PEERS``) on the capped lengths.

    The list is built in ``setup`` and cached. Like every asv time
    benchmark, timed with the garbage collector off: with it on (as users
    run them) the peers that build millions of Python lists are 2-3x
    slower. Subclasses add ``time_<name>``; ``track_excess_sequences`` is
    shared. (The leading underscore hides this class from asv.)
    """

    peer = None
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        require_peer(self.peer)
        self.items = _capped_items(n_docs, seq_len)

    def _pack(self, seq_len):
        return PEERS[self.peer].pack(self.items, seq_len)

    def track_excess_sequences(self, n_docs, seq_len):
        bins = self._pack(seq_len)
        return excess_over_lower_bound(len(bins), sum(self.items), seq_len)

    track_excess_sequences.unit = "sequences over lower bound"


class LightBinPackOBFD(_Peer):
    """lightbinpack ``obfd`` (C++ BFD) on the capped lengths as a Python list.

    1.5-3 s a call at 10M documents, so few samples; one untimed call
    first, because the first call in a process also pays for faulting in
    fresh memory for ~3M lists.
    """

    peer = "obfd"
    params = [peer_sizes(peer, PEER_SIZES), [2048]]
    repeat = (2, 5, 30.0)
    warmup_time = 0.1
    timeout = 600.0

    def time_obfd(self, n_docs, seq_len):
        self._pack(seq_len)

    def track_seconds_gc_on(self, n_docs, seq_len):
        """Median of 3 calls with the garbage collector on, as scripts run it:
        ``obfd`` returns millions of Python lists, which the collector scans."""
        return median_seconds(lambda: self._pack(seq_len), gc_off=False)

    track_seconds_gc_on.unit = "seconds"


class LightBinPackFFD(_Peer):
    """lightbinpack ``ffd`` (C++ first-fit decreasing) on the capped lengths."""

    peer = "lightbinpack_ffd"
    params = [peer_sizes(peer, PEER_SIZES), [2048]]
    repeat = (2, 5, 30.0)
    warmup_time = 0.1
    timeout = 600.0

    def time_ffd(self, n_docs, seq_len):
        self._pack(seq_len)


class PythonBFD(_Peer):
    """Best-fit decreasing in pure Python with a segment tree, as in the paper
    and TRL's ``pack_dataset(strategy="bfd")`` (:func:`.baselines.python_bfd`).

    ~20 ms at 10k documents, ~0.2 s at 100k, ~3 s at 1M.
    """

    peer = "python_bfd"
    params = [peer_sizes(peer, PEER_SIZES), [2048]]
    repeat = (1, 3, 30.0)
    min_run_count = 1
    warmup_time = 0.0
    timeout = 600.0

    def time_python_bfd(self, n_docs, seq_len):
        self._pack(seq_len)


class BinpackingConstantVolume(_Peer):
    """``binpacking.to_constant_volume`` (pure Python, ``O(N x bins)``).

    Quadratic: 2-4 s a call at 10k documents, ~4 minutes at 100k, hours at
    1M, so 10k only, with at most 3 samples and no warm-up.
    """

    peer = "binpacking"
    params = [peer_sizes(peer, PEER_SIZES), [2048]]
    repeat = (1, 3, 10.0)
    rounds = 1
    min_run_count = 1
    warmup_time = 0.0

    def time_to_constant_volume(self, n_docs, seq_len):
        self._pack(seq_len)
