"""``bfpack.pack`` next to its floor and its fastest peer, on the same lengths.

The implementations live in :mod:`.baselines` (shared with
``tools/bench_table.py``); compare these timings with ``pack.Pack.time_pack``
of the same run.
"""

import bfpack

from .baselines import (
    counting_sort_order, excess_over_lower_bound, obfd, obfd_input,
    require_lightbinpack, warm_counting_sort)
from .common import SEQ_LENS, SIZES, Benchmark, lengths, num_docs, tiny_lengths


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
    """``bfpack`` BFD on the pieces lightbinpack gets: lengths capped at ``seq_len``."""

    params = [SIZES, SEQ_LENS]
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        bfpack.pack(tiny_lengths(seq_len), seq_len, long_docs="truncate")

    def time_pack_truncate(self, n_docs, seq_len):
        bfpack.pack(self.lengths, seq_len, long_docs="truncate")


_OBFD_INPUT = {}


def _obfd_items(n_docs, seq_len):
    key = (num_docs(n_docs), seq_len)
    items = _OBFD_INPUT.get(key)
    if items is None:
        items = _OBFD_INPUT[key] = obfd_input(lengths(n_docs), seq_len)
    return items


class LightBinPackOBFD(Benchmark):
    """lightbinpack ``obfd`` (C++ BFD) on the capped lengths as a Python list.

    1.5-3 s a call at 10M documents, so few samples. The list is built in
    ``setup`` and cached; one untimed call first, because the first call
    in a process also pays for faulting in fresh memory for ~3M lists.
    Like every asv time benchmark, timed with the garbage collector off:
    with it on (as users run it) a call takes 2-3x longer.
    """

    params = [SIZES, [2048]]
    param_names = ["n_docs", "seq_len"]
    repeat = (2, 5, 30.0)
    warmup_time = 0.1
    timeout = 600.0

    def setup(self, n_docs, seq_len):
        require_lightbinpack()
        self.items = _obfd_items(n_docs, seq_len)

    def time_obfd(self, n_docs, seq_len):
        obfd(self.items, seq_len)

    def track_excess_sequences(self, n_docs, seq_len):
        bins = obfd(self.items, seq_len)
        return excess_over_lower_bound(len(bins), sum(self.items), seq_len)

    track_excess_sequences.unit = "sequences over lower bound"
