"""The packing methods: one registry that every part of bfpack reads.

:data:`METHODS` maps a method's name to a :class:`Method`: how it places
pieces, whether it continues from sequences left open by an earlier window
(streaming), and whether it cuts long documents by ``long_docs`` or
wherever a sequence ends. :func:`bfpack.pack`, the stream packers, the
command line's choices, :mod:`bfpack.analysis`, the tests (each method has
a slow reference in ``tests/naive.py``) and the benchmarks all read it.

Adding an any-fit method (worst fit, say) is one kernel file under
``bfpack/_kernels`` with the signature of :func:`._kernels.bfd.best_fit`
and one entry here, ``place=any_fit(kernel)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ._jit import call, readonly
from ._kernels.anyfit import max_new_sequences
from ._kernels.bfd import best_fit
from ._kernels.concat import concatenate
from ._kernels.ffd import first_fit
from ._kernels.layout import lay_out
from ._kernels.pieces import sort_pieces
from ._kernels.results import Layout, PieceCounts
from ._memory import check_layout_fits
from ._validate import as_choice

# Below this many pieces and documents, scratch indices are int32. A module
# constant so that tests can force the int64 path on small inputs.
_INT32_INDEX_LIMIT = 2**31


class Placement(NamedTuple):
    """What a method's ``place`` returns: the layout of the pieces it placed
    (sequences ``0 .. B0 - 1`` continue the open ones), the free tokens left
    in every sequence, and the cuts it made inside documents."""

    layout: Layout
    seq_free: np.ndarray
    documents_truncated: int
    truncation_cuts: int
    tokens_dropped: int


#: ``place(lengths, seq_len, split, counts, open_free) -> Placement``:
#: ``lengths`` (read-only int64) cut as ``split`` says into the pieces
#: counted by ``counts``, packed after sequences with ``open_free`` free
#: tokens (empty unless the method streams).
Placer = Callable[[np.ndarray, int, bool, PieceCounts, np.ndarray], Placement]


@dataclass(frozen=True)
class Method:
    """A packing method of the registry.

    Attributes
    ----------
    name : str
        What users pass as ``method=``.
    summary : str
        One line for help texts and tables.
    place : callable
        ``place(lengths, seq_len, split, counts, open_free) -> Placement``.
    streams : bool
        Whether windows are packed after the sequences left open by earlier
        windows (otherwise every window is packed on its own).
    cuts_by_long_docs : bool
        Whether documents are cut only as ``long_docs`` says (into
        ``seq_len`` chunks, or truncated); otherwise they are cut wherever a
        sequence ends and ``long_docs`` is ignored.
    """

    name: str
    summary: str
    place: Placer
    streams: bool
    cuts_by_long_docs: bool


def any_fit(kernel: Callable) -> Placer:
    """The placer of an any-fit kernel with :func:`._kernels.bfd.best_fit`'s
    signature: sort the pieces by length, fit them, lay them out."""

    def place(
        lengths: np.ndarray, seq_len: int, split: bool, counts: PieceCounts, open_free: np.ndarray
    ) -> Placement:
        size_count = counts.size_count
        num_pieces = int(size_count.sum())
        new_seqs = int(call(max_new_sequences, size_count, seq_len))
        check_layout_fits(num_pieces, open_free.shape[0] + new_seqs, seq_len)
        start = np.empty(num_pieces, dtype=np.int64)
        if max(num_pieces, lengths.shape[0]) < _INT32_INDEX_LIMIT:
            # The scratch arrays, at half width, live in the memory of
            # piece_start, which is written last: writing fresh memory is
            # what costs most here, so every byte not allocated is time saved.
            scratch = start.view(np.int32)
            sorted_doc, piece_seq = scratch[:num_pieces], scratch[num_pieces:]
        else:
            sorted_doc = np.empty(num_pieces, dtype=np.int64)
            piece_seq = np.empty(num_pieces, dtype=np.int64)
        fit = call(kernel, size_count, seq_len, open_free, piece_seq)
        call(sort_pieces, lengths, seq_len, split, size_count, sorted_doc)
        layout = call(
            lay_out, sorted_doc, piece_seq, fit.seq_count, size_count, lengths, seq_len, start
        )
        return Placement(
            layout,
            fit.seq_free,
            counts.documents_truncated,
            counts.truncation_cuts,
            counts.tokens_dropped,
        )

    return place


def _place_concat(
    lengths: np.ndarray, seq_len: int, split: bool, counts: PieceCounts, open_free: np.ndarray
) -> Placement:
    # Every document is one piece plus one per sequence boundary inside it.
    num_seqs = -(-int(counts.tokens) // seq_len)
    num_docs = lengths.shape[0] - int(counts.empty_documents)
    check_layout_fits(num_docs + num_seqs, num_seqs, seq_len)
    result = call(concatenate, lengths, seq_len)
    # Every sequence is full but the last, which holds what is left.
    num_seqs = result.layout.seq_offsets.shape[0] - 1
    free = np.zeros(num_seqs, dtype=np.int64)
    if num_seqs:
        free[-1] = num_seqs * seq_len - counts.tokens
    return Placement(result.layout, free, result.documents_truncated, result.truncation_cuts, 0)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "bfd",
            "best-fit decreasing: each piece, longest first, into the "
            "fullest sequence that holds it (Ding et al. 2024)",
            place=any_fit(best_fit),
            streams=True,
            cuts_by_long_docs=True,
        ),
        # The kernel can continue from open sequences too; windows stay
        # independent so that ffd output is what bfpack has always written.
        Method(
            "ffd",
            "first-fit decreasing: each piece, longest first, into the "
            "oldest sequence that holds it",
            place=any_fit(first_fit),
            streams=False,
            cuts_by_long_docs=True,
        ),
        Method(
            "concat",
            "the usual baseline: documents in order, concatenated and cut every seq_len tokens",
            place=_place_concat,
            streams=False,
            cuts_by_long_docs=False,
        ),
    )
}

#: Read-only empty array: no sequence is open.
NO_OPEN_SEQUENCES = readonly(np.empty(0, dtype=np.int64))


def as_method(method: Any) -> Method:
    """The registered :class:`Method` named ``method`` (ValueError naming the choices)."""
    return METHODS[as_choice(method, "method", tuple(METHODS))]
