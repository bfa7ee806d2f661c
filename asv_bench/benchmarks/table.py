"""``bfpack.pack_table``: time and memory next to a copy of the same tokens.

The table is one ``input_ids`` column (list<int32>) of ~106k documents of
lognormal lengths, 100M random token ids (:func:`.common.token_table`;
~100k tokens in smoke mode). The floor is a numpy copy of its flat token
buffer (:func:`.baselines.copy_floor`): packing moves every token once, so
it cannot beat a memory copy. Targets from the issue: at most 3x the floor's
time, and a peak at most 2x input plus output.
"""

import bfpack

from .baselines import copy_floor
from .common import (
    TABLE_TOKENS,
    Benchmark,
    median_seconds_pair,
    peak_bytes,
    peak_probe_available,
    tiny_token_table,
    token_table,
    values_view,
)

SEQ_LEN = 2048

_WARMED_FULL_SIZE = set()


def warm_pack_table(seq_len=SEQ_LEN):
    """Compile (or load from numba's cache) the kernels ``pack_table`` calls."""
    bfpack.pack_table(tiny_token_table(seq_len), seq_len)


def _warm_full_size(table, values):
    # The first 400 MB allocation and copy in a fresh process costs several
    # times a later one (page faults into memory the process never had), and
    # asv --quick times one call without warm-up: one untimed call of each,
    # once per process and table.
    key = id(table)
    if key not in _WARMED_FULL_SIZE:
        bfpack.pack_table(table, SEQ_LEN)
        copy_floor(values)
        _WARMED_FULL_SIZE.add(key)


class PackTable(Benchmark):
    """``pack_table(table, 2048)`` of 100M tokens, and the copy floor."""

    def setup(self):
        self.table = token_table(TABLE_TOKENS)
        self.values = values_view(self.table)
        warm_pack_table()
        _warm_full_size(self.table, self.values)

    def time_pack_table(self):
        bfpack.pack_table(self.table, SEQ_LEN)

    def time_copy_floor(self):
        copy_floor(self.values)

    def peakmem_pack_table(self):
        # The whole process's peak: the 400 MB table, the interpreter and
        # the output. track_memory_ratio counts the call alone.
        bfpack.pack_table(self.table, SEQ_LEN)

    def track_time_ratio(self):
        packed, floor = median_seconds_pair(
            lambda: bfpack.pack_table(self.table, SEQ_LEN), lambda: copy_floor(self.values), runs=5
        )
        return packed / floor

    track_time_ratio.unit = "x copy"

    def track_memory_ratio(self):
        """Peak beyond what was resident, over input bytes plus output bytes.

        ``nan`` where ``VmHWM`` cannot be reset (not Linux).
        """
        if not peak_probe_available():
            return float("nan")
        out, extra = peak_bytes(bfpack.pack_table, self.table, SEQ_LEN)
        return extra / (self.table.nbytes + out.nbytes)

    track_memory_ratio.unit = "x (input+output)"
