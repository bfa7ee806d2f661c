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
from .tree import tree_leftmost_at_least, tree_set, tree_width

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
    chains of ``BLOCK``-entry blocks (``below[blk]`` is the next block
    down), so pushing and popping touch only the top block of a stack,
    which stays in cache, and nothing per sequence is read or written until
    the sequence is full or packing ends. ``last[c]`` is one past the entry
    on top of stack ``c`` (0: empty), which gives both its block and how
    full that block is. Blocks are taken from a free list (linked through
    ``below``), else from the untouched end of the pool, so the memory used
    follows the sequences open, not ``seq_len``. The stack code is written
    inline: numba calls that pass arrays cost reference counting in this,
    the hottest loop.

    Memory beyond the output: ``last`` (int64) and the tree (int32, at most
    ``4 * seq_len`` entries), about 24 bytes per token of ``seq_len``.
    """
    num_open = open_free.shape[0]
    # Sized once for the worst case: reallocating inside the loop would
    # keep numba from holding the arrays in registers. Pages never touched
    # cost no memory.
    max_seqs = num_open + max_new_sequences(size_count, seq_len)
    count = np.empty(max_seqs, dtype=np.int64)
    free = np.empty(max_seqs, dtype=np.int64)
    # Every stack is a chain of full blocks plus at most one partial block
    # on top, and stacks are non-empty only for free-space values some open
    # sequence has: fewer than min(seq_len, max_seqs) of them.
    num_blocks = max_seqs // BLOCK + min(seq_len, max_seqs) + 1
    entry_seq = np.empty(num_blocks * BLOCK, dtype=np.int64)
    entry_count = np.empty(num_blocks * BLOCK, dtype=np.int64)
    below = np.empty(num_blocks, dtype=np.int64)
    free_block = -1  # head of the free list
    fresh_block = 0  # first block never used
    last = np.zeros(seq_len + 1, dtype=np.int64)

    # Free space fits in int32 (seq_len < 2**31 is checked by the caller).
    width = tree_width(seq_len)
    tree = np.zeros(2 * width, dtype=np.int32)
    tree_set(tree, width, seq_len - 1, seq_len)
    for b in range(num_open):
        c = open_free[b]
        i = last[c]
        if i == 0:
            tree_set(tree, width, c - 1, c)
        if i % BLOCK == 0:  # nothing was freed yet: a fresh block
            below[fresh_block] = i
            i = fresh_block * BLOCK
            fresh_block += 1
        entry_seq[i] = b
        entry_count[i] = 0
        last[c] = i + 1

    num_seqs = num_open
    p = 0
    for s in range(seq_len, 0, -1):
        m = size_count[s]
        while m > 0:
            c = tree_leftmost_at_least(tree, width, s) + 1
            fresh = c == seq_len
            per_seq = c // s
            while m > 0 and (fresh or last[c] > 0):
                if fresh:
                    b = num_seqs
                    num_seqs += 1
                    n = 0
                else:
                    i = last[c] - 1
                    b = entry_seq[i]
                    n = entry_count[i]
                    if i % BLOCK == 0:
                        blk = i // BLOCK
                        last[c] = below[blk]
                        below[blk] = free_block
                        free_block = blk
                    else:
                        last[c] = i
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
                i = last[left]
                if i == 0:
                    tree_set(tree, width, left - 1, left)
                if i % BLOCK == 0:
                    if free_block >= 0:
                        blk = free_block
                        free_block = below[blk]
                    else:
                        blk = fresh_block
                        fresh_block += 1
                    below[blk] = i
                    i = blk * BLOCK
                entry_seq[i] = b
                entry_count[i] = n
                last[left] = i + 1
            if not fresh and last[c] == 0:
                tree_set(tree, width, c - 1, 0)
    # Sequences still holding free space are the ones left on the stacks.
    for c in range(1, seq_len):
        i = last[c]
        while i > 0:
            top = i - 1
            for j in range(top - top % BLOCK, i):
                count[entry_seq[j]] = entry_count[j]
                free[entry_seq[j]] = c
            i = below[top // BLOCK]
    return Fit(count[:num_seqs], free[:num_seqs])
