"""``bfpack.truncation_profile`` and ``bfpack.compare`` on 1M lognormal lengths at 2048.

Both pack the same lengths once per method and summarize; the
``track_time_ratio`` benchmarks divide their time by that of the
``bfpack.pack`` calls they make (timed interleaved in the same process),
so they show what the summary itself costs.
"""

import bfpack

from .common import METHODS, Benchmark, lengths, median_seconds_pair, tiny_lengths

N_DOCS = 1_000_000
SEQ_LEN = 2048
#: ``truncation_profile``'s default methods.
PROFILE_METHODS = ("concat", "bfd")
#: ``compare``'s default methods: every registered one (the order does not matter here).
COMPARE_METHODS = METHODS


def _warm(methods):
    # Compile (or load from numba's cache) every kernel these packs call.
    for method in methods:
        bfpack.pack(tiny_lengths(SEQ_LEN), SEQ_LEN, method=method)


def _packs(lens, methods):
    for method in methods:
        bfpack.pack(lens, SEQ_LEN, method=method)


class TruncationProfile(Benchmark):
    """``truncation_profile(lengths, 2048)``: concat and BFD, power-of-two bins."""

    params = [[N_DOCS], [SEQ_LEN]]
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        _warm(PROFILE_METHODS)
        bfpack.truncation_profile(tiny_lengths(seq_len), seq_len)

    def time_truncation_profile(self, n_docs, seq_len):
        bfpack.truncation_profile(self.lengths, seq_len)

    def track_time_ratio(self, n_docs, seq_len):
        profile, packs = median_seconds_pair(
            lambda: bfpack.truncation_profile(self.lengths, seq_len),
            lambda: _packs(self.lengths, PROFILE_METHODS),
            runs=3,
        )
        return profile / packs

    track_time_ratio.unit = "x its packs"


class Compare(Benchmark):
    """``compare(lengths, 2048)``: one row per registered method."""

    params = [[N_DOCS], [SEQ_LEN]]
    param_names = ["n_docs", "seq_len"]

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        _warm(COMPARE_METHODS)
        bfpack.compare(tiny_lengths(seq_len), seq_len)

    def time_compare(self, n_docs, seq_len):
        bfpack.compare(self.lengths, seq_len)

    def track_time_ratio(self, n_docs, seq_len):
        compared, packs = median_seconds_pair(
            lambda: bfpack.compare(self.lengths, seq_len),
            lambda: _packs(self.lengths, COMPARE_METHODS),
            runs=3,
        )
        return compared / packs

    track_time_ratio.unit = "x its packs"
