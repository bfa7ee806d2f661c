"""Streaming BFD (``bfpack.stream.StreamPacker``): quality against one global pack."""

import bfpack
from bfpack.stream import StreamPacker

from .common import Benchmark, lengths, num_docs, tiny_lengths

#: Documents per window, as a fraction of the corpus: 20 windows.
WINDOWS = 20


class StreamQuality(Benchmark):
    """Sequences added by packing in windows, over one global BFD.

    The issue's target: with windows of 1M documents over 20M web-like
    lengths, at most 0.01% more sequences than a global BFD.
    """

    params = [[20_000_000], [2048, 8192], [0, 4096]]
    param_names = ["n_docs", "seq_len", "max_open"]
    timeout = 600

    def setup(self, n_docs, seq_len, max_open):
        self.lengths = lengths(n_docs)
        bfpack.pack(tiny_lengths(seq_len), seq_len)
        self.window = max(num_docs(n_docs) // WINDOWS, 1)

    def _stream(self, seq_len, max_open):
        packer = StreamPacker(seq_len, max_open=max_open)
        n = self.lengths.shape[0]
        for lo in range(0, n, self.window):
            packer.step(self.lengths[lo : lo + self.window], last=lo + self.window >= n)
        return packer.stats().sequences

    def track_excess_over_global_percent(self, n_docs, seq_len, max_open):
        best = bfpack.pack(self.lengths, seq_len).num_sequences
        return 100 * (self._stream(seq_len, max_open) / best - 1)

    track_excess_over_global_percent.unit = "% sequences over global BFD"

    def time_stream(self, n_docs, seq_len, max_open):
        self._stream(seq_len, max_open)
