"""Best-fit decreasing: each piece goes to the sequence with the least free
space that still holds it.

Bulk placement: after the sort, equal pieces are consecutive. A sequence
with ``c`` free tokens that is the best fit for a piece of ``s`` tokens
stays the best fit while it has room, so it takes ``min(m, c // s)`` of
the ``m`` remaining pieces at once. The result is exactly the item-by-item
packing, with one tree walk per (length, free space) step instead of one
per piece.
"""

import numpy as np

from .._jit import jit
from .anyfit import max_new_sequences
from .results import Fit
from .tree import tree_build, tree_leftmost_at_least, tree_set, tree_width

# Entries per block of the free-space stacks (see best_fit).
BLOCK = 32


@jit
def best_fit(size_count, seq_len, open_free, piece_seq):
    """Best-fit decreasing, continuing from sequences already open.

    Parameters
    ----------
    size_count : int64 array (seq_len + 1,)
        Pieces per length.
    seq_len : int
        Capacity of a sequence.
    open_free : int64 array (B0,)
        Free tokens of sequences opened earlier (0 < free < seq_len); they
        keep numbers ``0 .. B0 - 1``.
    piece_seq : int32 or int64 array (P,)
        Output: the sequence of each piece, in sorted order.

    Returns
    -------
    Fit
        Pieces placed in and free tokens left in each sequence, numbered in
        order of opening (``B0`` open ones first).

    Notes
    -----
    Leaf ``c - 1`` of the tree holds ``c`` while some sequence has exactly
    ``c`` free tokens; the leaf for ``L`` always holds ``L`` and stands for
    opening a new sequence.

    Sequences with equal free space are interchangeable for best fit, so
    each free-space value ``c`` keeps a stack of (sequence, pieces so far)
    entries; the one that reached ``c`` last is used first. The stacks are
    chains of ``BLOCK``-entry blocks from a shared pool (``below[blk]`` is
    the next block down), so pushing and popping touch only the top block
    of a stack, which stays in cache, and nothing per sequence is read or
    written until the sequence is full or packing ends. The stack code is
    written inline: numba calls that pass arrays cost reference counting
    in this, the hottest loop.
    """
    num_open = open_free.shape[0]
    # Sized once for the worst case: reallocating inside the loop would
    # keep numba from holding the arrays in registers.
    max_seqs = num_open + max_new_sequences(size_count, seq_len)
    count = np.empty(max_seqs, dtype=np.int64)
    free = np.empty(max_seqs, dtype=np.int64)

    # Every stack has at most one block that is not full.
    num_blocks = max_seqs // BLOCK + seq_len + 2
    entry_seq = np.empty(num_blocks * BLOCK, dtype=np.int64)
    entry_count = np.empty(num_blocks * BLOCK, dtype=np.int64)
    below = np.empty(num_blocks, dtype=np.int64)
    pool = np.arange(num_blocks)
    pool_size = num_blocks
    top = np.full(seq_len + 1, -1, dtype=np.int64)
    top_size = np.zeros(seq_len + 1, dtype=np.int64)

    leaves = np.zeros(seq_len, dtype=np.int64)
    for b in range(num_open):
        # The pool was sized for these, so no growth check here.
        c = open_free[b]
        if top[c] < 0 or top_size[c] == BLOCK:
            pool_size -= 1
            blk = pool[pool_size]
            below[blk] = top[c]
            top[c] = blk
            top_size[c] = 0
        i = top[c] * BLOCK + top_size[c]
        entry_seq[i] = b
        entry_count[i] = 0
        top_size[c] += 1
        leaves[c - 1] = c
    leaves[seq_len - 1] = seq_len
    width = tree_width(seq_len)
    tree = tree_build(leaves, width)

    num_seqs = num_open
    p = 0
    for s in range(seq_len, 0, -1):
        m = size_count[s]
        while m > 0:
            c = tree_leftmost_at_least(tree, width, s) + 1
            fresh = c == seq_len
            per_seq = c // s
            while m > 0 and (fresh or top[c] >= 0):
                if fresh:
                    b = num_seqs
                    num_seqs += 1
                    n = 0
                else:
                    blk = top[c]
                    top_size[c] -= 1
                    i = blk * BLOCK + top_size[c]
                    b = entry_seq[i]
                    n = entry_count[i]
                    if top_size[c] == 0:
                        top[c] = below[blk]
                        top_size[c] = BLOCK
                        pool[pool_size] = blk
                        pool_size += 1
                k = min(m, per_seq)
                for q in range(p, p + k):
                    piece_seq[q] = b
                p += k
                m -= k
                n += k
                left = c - k * s
                if left == 0:
                    count[b] = n
                    free[b] = 0
                    continue
                if top[left] < 0:
                    tree_set(tree, width, left - 1, left)
                if top[left] < 0 or top_size[left] == BLOCK:
                    pool_size -= 1
                    blk = pool[pool_size]
                    below[blk] = top[left]
                    top[left] = blk
                    top_size[left] = 0
                i = top[left] * BLOCK + top_size[left]
                entry_seq[i] = b
                entry_count[i] = n
                top_size[left] += 1
            if not fresh and top[c] < 0:
                tree_set(tree, width, c - 1, 0)
    # Sequences still holding free space are the ones left on the stacks.
    for c in range(1, seq_len):
        if top[c] < 0:
            continue
        blk = top[c]
        size = top_size[c]
        while blk >= 0:
            for i in range(blk * BLOCK, blk * BLOCK + size):
                count[entry_seq[i]] = entry_count[i]
                free[entry_seq[i]] = c
            blk = below[blk]
            size = BLOCK
    return Fit(count[:num_seqs], free[:num_seqs])
