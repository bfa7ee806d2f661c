"""Cutting documents into pieces, counted by length.

A document of ``n`` tokens becomes ``n // L`` chunks of ``L`` tokens from its
start plus one remainder piece of ``n % L`` tokens (``split``), or a single
piece of ``min(n, L)`` tokens (``truncate``). Packers see only the
histogram of piece lengths: it fully describes the sorted order (longest
first, equal lengths in document order), which :func:`sort_pieces` then
materialises as document indices for the layout.
"""

import numpy as np

from .._jit import jit
from .results import PieceCounts


@jit
def count_pieces(lengths, seq_len, split):
    """Count pieces per length and the cost of cutting; a :class:`PieceCounts`."""
    limit = np.iinfo(np.int64).max
    size_count = np.zeros(seq_len + 1, dtype=np.int64)
    tokens = 0
    dropped = 0
    docs_cut = 0
    cuts = 0
    empty_docs = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        if n <= 0:
            if n < 0:
                return PieceCounts(size_count, 0, 0, 0, 0, 0, i)
            empty_docs += 1
            continue
        if n > limit - tokens:
            return PieceCounts(size_count, 0, 0, 0, 0, 0, i)
        tokens += n
        if n <= seq_len:
            size_count[n] += 1
            continue
        docs_cut += 1
        if split:
            chunks = n // seq_len
            rest = n - chunks * seq_len
            size_count[seq_len] += chunks
            if rest > 0:
                size_count[rest] += 1
                cuts += chunks
            else:
                cuts += chunks - 1
        else:
            size_count[seq_len] += 1
            dropped += n - seq_len
            cuts += 1
    return PieceCounts(size_count, tokens, dropped, docs_cut, cuts, empty_docs, -1)


@jit
def sort_pieces(lengths, seq_len, split, size_count, sorted_doc):
    """Write the document of every piece, longest piece first, into
    ``sorted_doc`` (a counting sort; int32 or int64, one slot per piece).

    The sort is stable: pieces of equal length keep document order, and the
    chunks of one document stay in token order. The last piece of a split
    document is stored as ``~doc`` (negative), so the layout knows it does
    not start at token 0 without reading the document's length.
    """
    # Only the lengths that occur are written: pages of cursor never touched
    # cost no memory, so a long seq_len with few pieces stays cheap.
    cursor = np.empty(seq_len + 1, dtype=np.int64)
    total = 0
    for s in range(seq_len, 0, -1):
        if size_count[s]:
            cursor[s] = total
            total += size_count[s]
    for i in range(lengths.shape[0]):
        n = lengths[i]
        if n <= 0:
            continue
        if n < seq_len:
            sorted_doc[cursor[n]] = i
            cursor[n] += 1
            continue
        chunks = n // seq_len if split else 1
        for _ in range(chunks):
            sorted_doc[cursor[seq_len]] = i
            cursor[seq_len] += 1
        rest = n - chunks * seq_len if split else 0
        if rest > 0:
            sorted_doc[cursor[rest]] = ~i
            cursor[rest] += 1
    return sorted_doc
