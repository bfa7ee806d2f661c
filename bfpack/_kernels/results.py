"""Named results of the kernels (numba builds and returns these tuples)."""

from typing import NamedTuple

import numpy as np


class PieceCounts(NamedTuple):
    """What one pass over the lengths learns (:func:`.pieces.count_pieces`).

    ``size_count[s]`` is the number of pieces of ``s`` tokens (index 0
    unused). ``first_bad`` is -1, or the index of the first length that is
    negative or takes the token total past int64 (the other fields are then
    meaningless).
    """

    size_count: np.ndarray
    tokens: int
    tokens_dropped: int
    documents_truncated: int
    truncation_cuts: int
    empty_documents: int
    first_bad: int


class Fit(NamedTuple):
    """Sequences made by an any-fit packer, numbered in order of opening."""

    seq_count: np.ndarray  # int64: pieces placed in each sequence
    seq_free: np.ndarray  # int64: free tokens left in each sequence


class Layout(NamedTuple):
    """A packing in CSR form: the pieces of sequence ``j`` are
    ``seq_offsets[j]:seq_offsets[j + 1]`` of the ``piece_*`` arrays."""

    seq_offsets: np.ndarray  # int64, (S + 1,)
    piece_doc: np.ndarray  # int64, (P,)
    piece_start: np.ndarray  # int64, (P,)
    piece_len: np.ndarray  # int32, (P,)


class Concatenation(NamedTuple):
    """The concatenation baseline: its layout and the cuts it made."""

    layout: Layout
    documents_truncated: int
    truncation_cuts: int
