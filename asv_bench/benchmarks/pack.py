"""``bfpack.pack``: time, peak memory and packing quality."""

import bfpack

from .common import (
    METHODS,
    SEQ_LENS,
    SIZES,
    Benchmark,
    lengths,
    peak_bytes,
    require_peak_probe,
    tiny_lengths,
)


def _warm(seq_len, method, long_docs="split"):
    # Compile (or load from numba's cache) the kernels this call needs.
    bfpack.pack(tiny_lengths(seq_len), seq_len, method=method, long_docs=long_docs)


class Pack(Benchmark):
    """One ``pack`` of lognormal lengths, long documents split."""

    params = [SIZES, SEQ_LENS, METHODS]
    param_names = ["n_docs", "seq_len", "method"]

    def setup(self, n_docs, seq_len, method):
        self.lengths = lengths(n_docs)
        _warm(seq_len, method)

    def time_pack(self, n_docs, seq_len, method):
        bfpack.pack(self.lengths, seq_len, method=method)

    def peakmem_pack(self, n_docs, seq_len, method):
        bfpack.pack(self.lengths, seq_len, method=method)


class PackQuality(Benchmark):
    """How close each method gets to ``ceil(tokens / seq_len)`` sequences."""

    params = [SIZES, SEQ_LENS, METHODS]
    param_names = ["n_docs", "seq_len", "method"]

    def setup(self, n_docs, seq_len, method):
        self.lengths = lengths(n_docs)

    def _stats(self, seq_len, method):
        return bfpack.pack(self.lengths, seq_len, method=method).stats()

    def track_sequences(self, n_docs, seq_len, method):
        return self._stats(seq_len, method).sequences

    track_sequences.unit = "sequences"

    def track_excess_sequences(self, n_docs, seq_len, method):
        return self._stats(seq_len, method).excess_sequences

    track_excess_sequences.unit = "sequences over lower bound"

    def track_fill(self, n_docs, seq_len, method):
        return self._stats(seq_len, method).fill

    track_fill.unit = "fraction of tokens"

    def track_documents_truncated(self, n_docs, seq_len, method):
        return self._stats(seq_len, method).documents_truncated

    track_documents_truncated.unit = "documents"


class PackMemory(Benchmark):
    """Peak resident memory of one ``pack`` of 10M documents, beyond the input
    and everything else already resident, per document.

    Long documents split and truncated (the pieces the peers get, as in
    ``peers.PackTruncate``); ``concat`` ignores ``long_docs``. Measured
    in-process from ``VmHWM`` (reset through ``/proc/self/clear_refs``);
    skipped where that is not available.
    """

    params = [[10_000_000], SEQ_LENS, METHODS, ["split", "truncate"]]
    param_names = ["n_docs", "seq_len", "method", "long_docs"]

    def setup(self, n_docs, seq_len, method, long_docs):
        require_peak_probe()
        self.lengths = lengths(n_docs)
        _warm(seq_len, method, long_docs)

    def track_bytes_per_document(self, n_docs, seq_len, method, long_docs):
        _, extra = peak_bytes(
            bfpack.pack, self.lengths, seq_len, method=method, long_docs=long_docs
        )
        return extra / self.lengths.shape[0]

    track_bytes_per_document.unit = "bytes/doc"
