"""First-fit decreasing: each piece goes to the oldest sequence that holds it.

A max tree over the sequences, in order of opening, holds each one's free
space; leaves of sequences not opened yet hold ``L``, so the leftmost leaf
with room is either an open sequence or the next one to open. Equal pieces
are placed in bulk as in :mod:`.bfd`: the first fit for a piece of ``s``
tokens with ``c`` free takes ``min(m, c // s)`` of the ``m`` left.
"""

import numpy as np

from .._jit import jit
from .anyfit import max_new_sequences
from .results import Fit
from .tree import tree_leftmost_at_least, tree_set, tree_width


@jit
def first_fit(size_count, seq_len, open_free, piece_seq):
    """First-fit decreasing after the sequences ``open_free`` (the oldest).

    Same arguments and result as :func:`.bfd.best_fit`.
    """
    num_open = open_free.shape[0]
    max_seqs = max(num_open + max_new_sequences(size_count, seq_len), 1)
    count = np.zeros(max_seqs, dtype=np.int64)
    width = tree_width(max_seqs)
    # Free space fits in int32 (seq_len < 2**31 is checked by the caller).
    tree = np.full(2 * width, seq_len, dtype=np.int32)
    for b in range(num_open):
        tree_set(tree, width, b, open_free[b])
    num_seqs = num_open
    p = 0
    for s in range(seq_len, 0, -1):
        m = size_count[s]
        while m > 0:
            b = tree_leftmost_at_least(tree, width, s)
            c = np.int64(tree[width + b])
            k = min(m, c // s)
            piece_seq[p : p + k] = b
            p += k
            m -= k
            count[b] += k
            tree_set(tree, width, b, c - k * s)
            num_seqs = max(num_seqs, b + 1)
    free = tree[width : width + num_seqs].astype(np.int64)
    return Fit(count[:num_seqs], free)
