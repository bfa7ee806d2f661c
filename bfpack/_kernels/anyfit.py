"""What every any-fit packer shares.

An any-fit packer places pieces one at a time and opens a new sequence only
when the piece fits in none of the open ones (best fit and first fit both
are any-fit). Sorted pieces come from the histogram of their lengths
(``size_count[s]`` pieces of ``s`` tokens, longest first; equal pieces in
document order), and the packer writes the sequence of every sorted piece.
"""

from .._jit import jit


@jit
def max_new_sequences(size_count, seq_len):
    """Upper bound on the sequences any-fit packing opens for these pieces.

    Any-fit never leaves two sequences at most half full (the second one's
    first piece would have fitted into the first), so of the ``S``
    sequences, ``S - 1`` hold more than ``L / 2`` tokens each and
    ``S <= 2 T // L + 1`` for ``T`` tokens; and no packing opens more
    sequences than it has pieces.
    """
    tokens = 0
    pieces = 0
    for s in range(1, seq_len + 1):
        tokens += s * size_count[s]
        pieces += size_count[s]
    # 2 T // L + 1 without computing 2 T, which passes int64 from T >= 2**62.
    q = tokens // seq_len
    if q >= pieces - q:  # 2 q >= pieces
        return pieces
    return min(pieces, 2 * q + 2 * (tokens - q * seq_len) // seq_len + 1)
