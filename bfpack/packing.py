"""Packing document lengths into sequences: :func:`pack`, :class:`Packing`
and :class:`PackingStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._jit import call
from ._kernels.layout import take_sequences
from ._kernels.pieces import count_pieces
from ._kernels.results import Layout, PieceCounts
from ._validate import as_indices, as_lengths, as_long_docs, as_seq_len, raise_bad_length
from .methods import NO_OPEN_SEQUENCES, Placement, as_method


@dataclass(frozen=True, kw_only=True)
class DocumentCounts:
    """What was packed: documents, tokens, and the cuts made inside them.

    Counts add up (``a + b``) over windows of one stream.

    Attributes
    ----------
    documents : int
        Input documents, empty ones included.
    empty_documents : int
        Documents of zero tokens (they produce no piece).
    tokens : int
        Tokens in the input.
    tokens_dropped : int
        Tokens discarded by ``long_docs="truncate"``.
    documents_truncated : int
        Documents that do not sit whole in one sequence.
    truncation_cuts : int
        Cuts made inside documents (a document in ``k`` pieces has
        ``k - 1``; a document truncated to ``seq_len`` has one).
    """

    documents: int = 0
    empty_documents: int = 0
    tokens: int = 0
    tokens_dropped: int = 0
    documents_truncated: int = 0
    truncation_cuts: int = 0

    def __add__(self, other: DocumentCounts) -> DocumentCounts:
        return DocumentCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @classmethod
    def of(cls, num_documents: int, counts: PieceCounts, placement: Placement) -> DocumentCounts:
        """The counts of ``num_documents`` documents cut and placed as given."""
        # Plain ints whatever the kernels return (numpy scalars when numba's
        # JIT is disabled), so statistics serialize as JSON.
        return cls(
            documents=int(num_documents),
            empty_documents=int(counts.empty_documents),
            tokens=int(counts.tokens),
            tokens_dropped=int(placement.tokens_dropped),
            documents_truncated=int(placement.documents_truncated),
            truncation_cuts=int(placement.truncation_cuts),
        )


@dataclass(frozen=True, kw_only=True)
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
    def of(
        cls,
        *,
        method: str,
        long_docs: str,
        seq_len: int,
        counts: DocumentCounts,
        sequences: int,
        tokens_open: int = 0,
    ) -> PackingStats:
        """The statistics of ``counts`` packed into ``sequences`` sequences.

        ``tokens_open``: packed tokens in sequences not written yet (when
        streaming); they count towards the lower bound, not the fill.
        """
        packed = counts.tokens - counts.tokens_dropped
        written = packed - tokens_open
        lower = -(-packed // seq_len)
        slots = sequences * seq_len
        return cls(
            method=method,
            long_docs=long_docs,
            seq_len=seq_len,
            documents=counts.documents,
            empty_documents=counts.empty_documents,
            tokens=counts.tokens,
            tokens_packed=packed,
            sequences=sequences,
            lower_bound=lower,
            excess_sequences=sequences - lower,
            padding_tokens=slots - written,
            fill=written / slots if slots else 1.0,
            documents_truncated=counts.documents_truncated,
            truncation_cuts=counts.truncation_cuts,
            tokens_dropped=counts.tokens_dropped,
        )

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a plain ``dict``."""
        return asdict(self)

    def __str__(self) -> str:
        width = max(map(len, self.__dataclass_fields__))
        rows = []
        for key, value in self.to_dict().items():
            text = (
                f"{value:.6f}"
                if isinstance(value, float)
                else (f"{value:,}" if isinstance(value, int) else value)
            )
            rows.append(f"{key:<{width}}  {text}")
        return "\n".join(rows)


_ARRAYS = ("seq_offsets", "piece_doc", "piece_start", "piece_len", "seq_fill")


@dataclass(frozen=True, kw_only=True, repr=False)
class Packing:
    """Documents (or pieces of them) assigned to sequences, in CSR form.

    The pieces of sequence ``j`` are ``seq_offsets[j]:seq_offsets[j + 1]`` of
    the ``piece_*`` arrays, in the order they were placed. Offsets,
    documents and starts are int64; lengths and fills, which never exceed
    ``seq_len < 2**31``, are int32 (as flash-attention's ``cu_seqlens``).
    All arrays are read-only.

    The same type describes a whole packing (:func:`pack`), a selection of
    its sequences (:meth:`take`) and the sequences a stream packer emits
    (:meth:`bfpack.stream.StreamPacker.step`).

    Attributes
    ----------
    seq_len : int
        Capacity of every sequence, in tokens.
    method, long_docs : str
        The options the packing was made with.
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
    counts : DocumentCounts or None
        The documents that were packed; None for a selection of sequences,
        whose documents may lie partly outside it.
    """

    seq_len: int
    method: str
    long_docs: str
    seq_offsets: np.ndarray
    piece_doc: np.ndarray
    piece_start: np.ndarray
    piece_len: np.ndarray
    seq_fill: np.ndarray
    counts: DocumentCounts | None = None

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            getattr(self, name).flags.writeable = False

    @classmethod
    def from_layout(
        cls,
        layout: Layout,
        seq_free: np.ndarray,
        *,
        seq_len: int,
        method: str,
        long_docs: str,
        counts: DocumentCounts | None = None,
    ) -> Packing:
        """The packing of a kernel's layout and free space per sequence."""
        fill = np.subtract(seq_len, seq_free, dtype=np.int32)
        return cls(
            seq_len=seq_len,
            method=method,
            long_docs=long_docs,
            **layout._asdict(),
            seq_fill=fill,
            counts=counts,
        )

    @property
    def num_sequences(self) -> int:
        """Number of sequences."""
        return self.seq_offsets.shape[0] - 1

    @property
    def num_pieces(self) -> int:
        """Number of pieces (whole documents and parts of split ones)."""
        return self.piece_doc.shape[0]

    def __len__(self) -> int:
        return self.num_sequences

    def sequence(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces of sequence ``j`` as ``(doc, start, length)`` arrays."""
        j = range(self.num_sequences)[j]
        lo, hi = self.seq_offsets[j], self.seq_offsets[j + 1]
        return self.piece_doc[lo:hi], self.piece_start[lo:hi], self.piece_len[lo:hi]

    def take(self, rows: Any) -> Packing:
        """The sequences ``rows``, in that order, as a new :class:`Packing`.

        Parameters
        ----------
        rows : array_like of int
            Sequence indices in ``[0, num_sequences)``; a sequence may be
            taken more than once.

        Returns
        -------
        Packing
            With ``counts=None``: statistics belong to a whole packing.
        """
        rows = as_indices(rows, self.num_sequences, "rows")
        layout = call(
            take_sequences, self.seq_offsets, self.piece_doc, self.piece_start, self.piece_len, rows
        )
        return Packing(
            seq_len=self.seq_len,
            method=self.method,
            long_docs=self.long_docs,
            **layout._asdict(),
            seq_fill=self.seq_fill[rows],
        )

    def stats(self) -> PackingStats:
        """Summary of the packing; see :class:`PackingStats`.

        Raises
        ------
        ValueError
            For a selection of sequences (``counts`` is None).
        """
        if self.counts is None:
            raise ValueError(
                "this Packing is a selection of sequences (from take() or a "
                "stream step), so document statistics do not apply; take "
                "stats() of the whole packing or of the stream packer"
            )
        return PackingStats.of(
            method=self.method,
            long_docs=self.long_docs,
            seq_len=self.seq_len,
            counts=self.counts,
            sequences=self.num_sequences,
        )

    def __repr__(self) -> str:
        docs = "?" if self.counts is None else self.counts.documents
        return (
            f"Packing(method={self.method!r}, seq_len={self.seq_len}, "
            f"documents={docs}, pieces={self.num_pieces}, "
            f"sequences={self.num_sequences})"
        )


def count(lengths: np.ndarray, seq_len: int, split: bool) -> PieceCounts:
    """Pieces per length and cut counters of validated ``lengths``.

    Raises ValueError on a negative length or a token total past int64.
    """
    counts = call(count_pieces, lengths, seq_len, split)
    if counts.first_bad >= 0:
        raise_bad_length(lengths, counts.first_bad)
    return counts


def pack(lengths: Any, seq_len: Any, *, method: str = "bfd", long_docs: str = "split") -> Packing:
    """Assign documents to sequences of ``seq_len`` tokens.

    Documents longer than ``seq_len`` are first cut into chunks of
    ``seq_len`` tokens from their start plus the remainder (``"split"``) or
    cut to their first ``seq_len`` tokens (``"truncate"``). The pieces are
    then packed whole, so no other document is cut.

    Parameters
    ----------
    lengths : array_like of int, shape (N,)
        Tokens in each document; numpy array of any integer dtype (floats
        with no fraction are accepted; a masked array only without masked
        entries), list, or pyarrow Array/ChunkedArray.
        Zero-length documents produce no piece.
    seq_len : int
        Capacity of a sequence (the context length), ``>= 1``.
    method : str
        A method of :data:`bfpack.methods.METHODS`. ``"bfd"``: best-fit
        decreasing, each piece, longest first, goes to the sequence with
        the least free space that still holds it. ``"ffd"``: first-fit
        decreasing, to the oldest sequence that holds it. ``"concat"``: the
        usual baseline, documents in input order concatenated and cut every
        ``seq_len`` tokens.
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
        ``lengths`` is not integer data (bool, str, object), is an iterator
        or a set (not an array), or ``seq_len`` is not an integer.
    ValueError
        ``lengths`` is not 1-D, holds negative, NaN or fractional values,
        nulls or masked values; ``seq_len < 1`` or too large for the
        machine's memory; the packing's layout cannot fit in memory;
        unknown ``method`` or ``long_docs``.

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
    at most 32 bytes per token of ``seq_len`` (arrays indexed by length),
    so a context of 2**24 tokens needs 0.5 GB; a ``seq_len`` or a packing
    that cannot fit in the machine's memory raises ValueError up front.

    Examples
    --------
    >>> plan = pack([3000, 1500, 500, 100], seq_len=2048)
    >>> plan.num_sequences, plan.stats().truncation_cuts
    (3, 1)
    """
    lengths = as_lengths(lengths)
    seq_len = as_seq_len(seq_len)
    chosen = as_method(method)
    long_docs = as_long_docs(long_docs)
    split = long_docs == "split"
    counts = count(lengths, seq_len, split)
    placed = chosen.place(lengths, seq_len, split, counts, NO_OPEN_SEQUENCES)
    return Packing.from_layout(
        placed.layout,
        placed.seq_free,
        seq_len=seq_len,
        method=chosen.name,
        long_docs=long_docs,
        counts=DocumentCounts.of(lengths.shape[0], counts, placed),
    )
