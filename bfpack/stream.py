"""Best-fit packing of a stream of windows in bounded memory.

Each window of documents is packed with BFD together with the sequences
still open from earlier windows, which sit in the same tree and stacks as
the new ones. Afterwards every sequence is written out except the
``max_open`` with the most free space, which are carried into the next
window; so memory is bounded by the window plus ``max_open * seq_len``
tokens, and the packing stays close to one global BFD.
"""

from dataclasses import dataclass

import numpy as np

from ._kernels.layout import prepend_open
from ._validate import LONG_DOCS, as_choice, as_lengths, as_seq_len
from .packing import PackingStats, histogram, place


@dataclass(frozen=True)
class Window:
    """What one step of :class:`StreamPacker` decided.

    Pieces are in CSR form over the window's sequences. Documents
    ``0 .. num_carried - 1`` are the pieces carried from earlier windows
    (in the order of the previous window's ``carry_pieces``); document
    ``num_carried + i`` is document ``i`` of this window.

    Attributes
    ----------
    seq_offsets, piece_doc, piece_start, piece_len : ndarray
        Every sequence of the window, open ones first.
    emit : ndarray
        Sequences to write now, in order.
    carry_pieces : ndarray
        Indices into the piece arrays of the pieces carried forward (the
        pieces of the sequences kept open, sequence by sequence).
    num_carried : int
        Carried pieces this window started with.
    """

    seq_offsets: np.ndarray
    piece_doc: np.ndarray
    piece_start: np.ndarray
    piece_len: np.ndarray
    emit: np.ndarray
    carry_pieces: np.ndarray
    num_carried: int


class StreamPacker:
    """Pack windows of documents one after another with carried-over BFD.

    Parameters
    ----------
    seq_len : int
        Sequence capacity.
    long_docs : {"split", "truncate"}
        As in :func:`bfpack.pack`.
    max_open : int
        Sequences with free space carried between windows, at most.
    """

    def __init__(self, seq_len, long_docs="split", max_open=4096):
        self.seq_len = as_seq_len(seq_len)
        self.long_docs = as_choice(long_docs, "long_docs", LONG_DOCS)
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 0:
            raise ValueError(f"max_open must be an integer >= 0, got {max_open!r}")
        self.max_open = max_open
        self._open_offsets = np.zeros(1, dtype=np.int64)
        self._open_len = np.empty(0, dtype=np.int64)
        self._open_free = np.empty(0, dtype=np.int64)
        self._totals = dict(documents=0, empty_documents=0, tokens=0,
                            tokens_dropped=0, documents_truncated=0,
                            truncation_cuts=0, sequences=0)

    @property
    def num_open(self):
        """Sequences currently carried."""
        return self._open_free.shape[0]

    def step(self, lengths, last=False):
        """Pack one window; with ``last=True`` nothing is carried on.

        Returns a :class:`Window`.
        """
        lengths = as_lengths(lengths)
        L = self.seq_len
        split = self.long_docs == "split"
        size_count, tokens, dropped, docs_cut, cuts, empty = histogram(
            lengths, L, split)
        offsets, doc, start, length, free = place(
            lengths, L, split, size_count, "bfd", self._open_free)
        num_carried = self._open_len.shape[0]
        offsets, doc, start, length = prepend_open(
            self._open_offsets, self._open_len, offsets, doc, start, length)

        keep = np.flatnonzero(free > 0) if not last else np.empty(0, np.int64)
        if keep.shape[0] > self.max_open:
            roomiest = np.argsort(-free[keep], kind="stable")[:self.max_open]
            keep = np.sort(keep[roomiest])
        emit_mask = np.ones(free.shape[0], dtype=bool)
        emit_mask[keep] = False
        emit = np.flatnonzero(emit_mask)

        # Piece indices offsets[b] .. offsets[b + 1] - 1 of every kept b.
        counts = offsets[keep + 1] - offsets[keep]
        before = np.cumsum(counts) - counts
        carry_pieces = (np.repeat(offsets[keep] - before, counts)
                        + np.arange(counts.sum()))
        self._open_offsets = np.concatenate([[0], np.cumsum(counts)])
        self._open_len = length[carry_pieces]
        self._open_free = free[keep]

        t = self._totals
        t["documents"] += lengths.shape[0]
        t["empty_documents"] += empty
        t["tokens"] += tokens
        t["tokens_dropped"] += dropped
        t["documents_truncated"] += docs_cut
        t["truncation_cuts"] += cuts
        t["sequences"] += emit.shape[0]
        return Window(offsets, doc, start, length, emit, carry_pieces,
                      num_carried)

    def stats(self):
        """Totals over the windows so far, as :class:`PackingStats`.

        Sequences still open count only once written.
        """
        return PackingStats.from_counts(
            method="bfd", long_docs=self.long_docs, seq_len=self.seq_len,
            tokens_open=int(self._open_len.sum()), **self._totals)
