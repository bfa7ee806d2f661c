"""The usual baseline: concatenate the documents and cut every ``L`` tokens.

Documents stay in input order and are cut wherever a sequence ends, so most
documents longer than a few hundred tokens are truncated somewhere.
"""

import numpy as np

from .._jit import jit
from .results import Concatenation, Layout


@jit
def concatenate(lengths, seq_len):
    """Documents in order as one stream, cut every ``seq_len`` tokens.

    Returns a :class:`Concatenation`: the layout and the cuts it made.
    """
    tokens = 0
    num_pieces = 0
    num_docs = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        if n > 0:
            num_docs += 1
            # Sequences touched by tokens [tokens, tokens + n).
            num_pieces += (tokens + n - 1) // seq_len - tokens // seq_len + 1
            tokens += n
    # Not (tokens + seq_len - 1) // seq_len: that overflows near 2**63.
    num_seqs = tokens // seq_len + (tokens % seq_len > 0)
    seq_offsets = np.empty(num_seqs + 1, dtype=np.int64)
    piece_doc = np.empty(num_pieces, dtype=np.int64)
    piece_start = np.empty(num_pieces, dtype=np.int64)
    piece_len = np.empty(num_pieces, dtype=np.int32)
    seq_offsets[0] = 0
    docs_cut = 0
    p = 0
    room = seq_len
    seq = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        if n <= 0:
            continue
        if n > room:
            docs_cut += 1
        start = 0
        while start < n:
            k = min(n - start, room)
            piece_doc[p] = i
            piece_start[p] = start
            piece_len[p] = k
            p += 1
            start += k
            room -= k
            if room == 0:
                seq += 1
                seq_offsets[seq] = p
                room = seq_len
    if room < seq_len:
        seq_offsets[num_seqs] = p
    layout = Layout(seq_offsets, piece_doc, piece_start, piece_len)
    return Concatenation(layout, docs_cut, num_pieces - num_docs)
