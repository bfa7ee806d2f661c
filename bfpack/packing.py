"""Packing document lengths into sequences: :func:`pack` and its result."""

from dataclasses import asdict, dataclass

import numpy as np

from ._kernels.bestfit import best_fit, first_fit
from ._kernels.layout import concatenate, lay_out
from ._kernels.pieces import piece_histogram, sort_pieces
from ._validate import LONG_DOCS, METHODS, as_choice, as_lengths, as_seq_len

_NO_OPEN_SEQUENCES = np.empty(0, dtype=np.int64)
# Below this many pieces and documents, scratch indices are int32. A module
# constant so that tests can force the int64 path on small inputs.
_INT32_INDEX_LIMIT = 2**31


@dataclass(frozen=True)
class PackingStats:
    """What a packing costs, in sequences and in cut documents.

    Attributes
    ----------
    method, long_docs : str
        How the packing was made.
    seq_len : int
        Capacity of a sequence, in tokens.
    documents : int
        Input documents, empty ones included.
    empty_documents : int
        Documents of zero tokens (they produce no piece).
    tokens : int
        Tokens in the input.
    tokens_packed : int
        Tokens placed in sequences (``tokens - tokens_dropped``).
    sequences : int
        Sequences produced.
    lower_bound : int
        ``ceil(tokens_packed / seq_len)``: no packing of these tokens needs
        fewer sequences.
    excess_sequences : int
        ``sequences - lower_bound``.
    padding_tokens : int
        Free slots left: ``sequences * seq_len - tokens_packed``.
    fill : float
        ``tokens_packed / (sequences * seq_len)``; 1.0 when nothing is packed.
    documents_truncated : int
        Documents that do not sit whole in one sequence.
    truncation_cuts : int
        Cuts made inside documents (a document in ``k`` pieces has
        ``k - 1``; a document truncated to ``seq_len`` has one).
    tokens_dropped : int
        Tokens discarded by ``long_docs="truncate"``.
    """

    method: str
    long_docs: str
    seq_len: int
    documents: int
    empty_documents: int
    tokens: int
    tokens_packed: int
    sequences: int
    lower_bound: int
    excess_sequences: int
    padding_tokens: int
    fill: float
    documents_truncated: int
    truncation_cuts: int
    tokens_dropped: int

    @classmethod
    def from_counts(cls, *, method, long_docs, seq_len, documents,
                    empty_documents, tokens, tokens_dropped, sequences,
                    documents_truncated, truncation_cuts, tokens_open=0):
        """The statistics, with bounds and ratios derived from raw counts.

        ``tokens_open``: packed tokens in sequences not written yet (when
        streaming); they count towards the lower bound, not the fill.
        """
        packed = tokens - tokens_dropped
        written = packed - tokens_open
        lower = -(-packed // seq_len)
        slots = sequences * seq_len
        return cls(
            method=method, long_docs=long_docs, seq_len=seq_len,
            documents=documents, empty_documents=empty_documents,
            tokens=tokens, tokens_packed=packed, sequences=sequences,
            lower_bound=lower, excess_sequences=sequences - lower,
            padding_tokens=slots - written,
            fill=written / slots if slots else 1.0,
            documents_truncated=documents_truncated,
            truncation_cuts=truncation_cuts, tokens_dropped=tokens_dropped)

    def to_dict(self):
        """The statistics as a plain ``dict``."""
        return asdict(self)

    def __str__(self):
        width = max(map(len, self.__dataclass_fields__))
        rows = []
        for key, value in self.to_dict().items():
            text = f"{value:.6f}" if isinstance(value, float) else (
                f"{value:,}" if isinstance(value, int) else value)
            rows.append(f"{key:<{width}}  {text}")
        return "\n".join(rows)


@dataclass(frozen=True, repr=False)
class Packing:
    """Documents (or pieces of them) assigned to sequences, in CSR form.

    The pieces of sequence ``j`` are ``seq_offsets[j]:seq_offsets[j + 1]`` of
    the ``piece_*`` arrays, in the order they were placed. Offsets,
    documents and starts are int64; lengths and fills, which never exceed
    ``seq_len < 2**31``, are int32 (as flash-attention's ``cu_seqlens``).
    All arrays are read-only.

    Attributes
    ----------
    seq_len : int
        Capacity of every sequence, in tokens.
    method, long_docs : str
        The options given to :func:`pack`.
    seq_offsets : ndarray, shape (num_sequences + 1,)
        Start of each sequence's pieces; ``seq_offsets[0] == 0``.
    piece_doc : ndarray, shape (num_pieces,)
        Index of the document a piece comes from.
    piece_start : ndarray, shape (num_pieces,)
        Token offset of the piece inside its document.
    piece_len : ndarray of int32, shape (num_pieces,)
        Tokens in the piece (``1 .. seq_len``).
    seq_fill : ndarray of int32, shape (num_sequences,)
        Tokens in each sequence.
    """

    seq_len: int
    method: str
    long_docs: str
    seq_offsets: np.ndarray
    piece_doc: np.ndarray
    piece_start: np.ndarray
    piece_len: np.ndarray
    seq_fill: np.ndarray
    num_documents: int
    empty_documents: int
    num_tokens: int
    tokens_dropped: int
    documents_truncated: int
    truncation_cuts: int

    def __post_init__(self):
        for name in ("seq_offsets", "piece_doc", "piece_start", "piece_len",
                     "seq_fill"):
            getattr(self, name).flags.writeable = False

    @property
    def num_sequences(self):
        """Number of sequences."""
        return self.seq_offsets.shape[0] - 1

    @property
    def num_pieces(self):
        """Number of pieces (whole documents and parts of split ones)."""
        return self.piece_doc.shape[0]

    def __len__(self):
        return self.num_sequences

    def sequence(self, j):
        """The pieces of sequence ``j`` as ``(doc, start, length)`` arrays."""
        j = range(self.num_sequences)[j]
        lo, hi = self.seq_offsets[j], self.seq_offsets[j + 1]
        return self.piece_doc[lo:hi], self.piece_start[lo:hi], self.piece_len[lo:hi]

    def stats(self):
        """Summary of the packing; see :class:`PackingStats`."""
        return PackingStats.from_counts(
            method=self.method, long_docs=self.long_docs,
            seq_len=self.seq_len, documents=self.num_documents,
            empty_documents=self.empty_documents, tokens=self.num_tokens,
            tokens_dropped=self.tokens_dropped, sequences=self.num_sequences,
            documents_truncated=self.documents_truncated,
            truncation_cuts=self.truncation_cuts)

    def __repr__(self):
        return (f"Packing(method={self.method!r}, seq_len={self.seq_len}, "
                f"documents={self.num_documents}, pieces={self.num_pieces}, "
                f"sequences={self.num_sequences})")


def pack(lengths, seq_len, *, method="bfd", long_docs="split"):
    """Assign documents to sequences of ``seq_len`` tokens.

    Documents longer than ``seq_len`` are first cut into chunks of
    ``seq_len`` tokens from their start plus the remainder (``"split"``) or
    cut to their first ``seq_len`` tokens (``"truncate"``). The pieces are
    then packed whole, so no other document is cut.

    Parameters
    ----------
    lengths : array_like of int, shape (N,)
        Tokens in each document; numpy array of any integer dtype (floats
        with no fraction are accepted), list, or pyarrow Array/ChunkedArray.
        Zero-length documents produce no piece.
    seq_len : int
        Capacity of a sequence (the context length), ``>= 1``.
    method : {"bfd", "ffd", "concat"}
        ``"bfd"``: best-fit decreasing, each piece, longest first, goes to
        the sequence with the least free space that still holds it.
        ``"ffd"``: first-fit decreasing, to the oldest sequence that holds
        it. ``"concat"``: the usual baseline, documents in input order
        concatenated and cut every ``seq_len`` tokens.
    long_docs : {"split", "truncate"}
        What happens to documents longer than ``seq_len``; ignored by
        ``"concat"``.

    Returns
    -------
    Packing
        The assignment in CSR form, with :meth:`Packing.stats`.

    Raises
    ------
    TypeError
        ``lengths`` is not integer data (bool, str, object) or ``seq_len`` is
        not an integer.
    ValueError
        ``lengths`` is not 1-D, holds negative, NaN or fractional values or
        nulls; ``seq_len < 1``; unknown ``method`` or ``long_docs``.

    Notes
    -----
    The result depends only on the values of ``lengths``, never on the
    container. Ties are broken deterministically: pieces of equal length are
    placed in document order (and the chunks of a document in token order);
    among sequences with equal free space, BFD uses the one that reached
    that free space most recently. Sequences are numbered in the order they
    are opened, so BFD and FFD output is ordered roughly by decreasing
    piece length; shuffle the sequences before training.

    The work is ``O(N + P log L + L)`` for ``P`` pieces with BFD (one tree
    walk per change of piece length or free space, not per piece) and
    ``O(N + P log S)`` with FFD. Memory is the output plus ``O(S + L)``:
    a few int64 counters per token of ``seq_len``, so a context of 10**8
    tokens needs gigabytes.

    Examples
    --------
    >>> plan = pack([3000, 1500, 500, 100], seq_len=2048)
    >>> plan.num_sequences, plan.stats().truncation_cuts
    (3, 1)
    """
    lengths = as_lengths(lengths)
    seq_len = as_seq_len(seq_len)
    method = as_choice(method, "method", METHODS)
    long_docs = as_choice(long_docs, "long_docs", LONG_DOCS)
    split = long_docs == "split"

    size_count, tokens, dropped, docs_cut, cuts, empty = histogram(
        lengths, seq_len, split)
    counters = dict(num_documents=lengths.shape[0], empty_documents=empty,
                    num_tokens=tokens)
    if method == "concat":
        offsets, doc, start, length, docs_cut, cuts = concatenate(lengths, seq_len)
        # Every sequence is full but the last, which holds what is left.
        fill = np.full(offsets.shape[0] - 1, seq_len, dtype=np.int32)
        if fill.shape[0]:
            fill[-1] = tokens - (fill.shape[0] - 1) * seq_len
        return Packing(seq_len, method, long_docs, offsets, doc, start, length,
                       fill, tokens_dropped=0, documents_truncated=docs_cut,
                       truncation_cuts=cuts, **counters)

    offsets, doc, start, length, free = place(
        lengths, seq_len, split, size_count, method, _NO_OPEN_SEQUENCES)
    fill = np.subtract(seq_len, free, dtype=np.int32)
    return Packing(seq_len, method, long_docs, offsets, doc, start, length,
                   fill, tokens_dropped=dropped,
                   documents_truncated=docs_cut, truncation_cuts=cuts,
                   **counters)


def histogram(lengths, seq_len, split):
    """Pieces per length and cut counters of validated ``lengths``.

    Returns ``(size_count, tokens, dropped, docs_cut, cuts, empty_docs)``;
    raises ValueError on a negative length or a total past int64.
    """
    (size_count, tokens, dropped, docs_cut, cuts, empty,
     bad) = piece_histogram(lengths, seq_len, split)
    if bad >= 0 and lengths[bad] < 0:
        raise ValueError(
            f"lengths[{bad}] = {lengths[bad]} is negative; lengths are "
            f"token counts (>= 0)")
    if bad >= 0:
        raise ValueError(
            f"the token total passes the int64 range at lengths[{bad}] = "
            f"{lengths[bad]}; lengths must be token counts")
    return size_count, tokens, dropped, docs_cut, cuts, empty


def place(lengths, seq_len, split, size_count, method, open_free):
    """Pack the pieces with BFD (after sequences ``open_free``) or FFD.

    Returns ``(seq_offsets, piece_doc, piece_start, piece_len, free)``;
    sequences ``0 .. len(open_free) - 1`` are the open ones (BFD only), and
    only the pieces placed now are listed.
    """
    num_pieces = int(size_count.sum())
    start = np.empty(num_pieces, dtype=np.int64)
    if max(num_pieces, lengths.shape[0]) < _INT32_INDEX_LIMIT:
        # The scratch arrays, at half width, live in the memory of
        # piece_start, which is written last: writing fresh memory is what
        # costs most here, so every byte not allocated is time saved.
        scratch = start.view(np.int32)
        sorted_doc, piece_bin = scratch[:num_pieces], scratch[num_pieces:]
    else:
        sorted_doc = np.empty(num_pieces, dtype=np.int64)
        piece_bin = np.empty(num_pieces, dtype=np.int64)
    if method == "bfd":
        count, free = best_fit(size_count, seq_len, open_free, piece_bin)
    else:
        count, free = first_fit(size_count, seq_len, piece_bin)
    sort_pieces(lengths, seq_len, split, size_count, sorted_doc)
    offsets, doc, length = lay_out(sorted_doc, piece_bin, count, size_count,
                                   lengths, seq_len, start)
    return offsets, doc, start, length, free
