"""Moving tokens: copying packed pieces out of Arrow list buffers.

A list column arrives as one or more chunks, each a flat ``values`` buffer
and an ``offsets`` buffer (document ``i`` of the chunk is
``values[offsets[i]:offsets[i + 1]]``). Sliced Arrow arrays keep their
original buffers and shifted offsets, which index the same way, so nothing
is copied on input.
"""

import numpy as np

from .._jit import jit


@jit
def row_offsets(rows, seq_offsets, piece_len, pad_to):
    """Offsets of the output rows (sequence ``rows[r]`` is row ``r``).

    With ``pad_to > 0`` every row is ``pad_to`` long.
    """
    out = np.empty(rows.shape[0] + 1, dtype=np.int64)
    out[0] = 0
    for r in range(rows.shape[0]):
        if pad_to > 0:
            out[r + 1] = out[r] + pad_to
            continue
        j = rows[r]
        fill = 0
        for k in range(seq_offsets[j], seq_offsets[j + 1]):
            fill += piece_len[k]
        out[r + 1] = out[r] + fill
    return out


@jit
def gather_tokens(
    values,
    offsets,
    chunk_first_doc,
    rows,
    seq_offsets,
    piece_doc,
    piece_start,
    piece_len,
    out_offsets,
    pad,
    out,
):
    """Copy every piece's tokens into ``out``, row by row.

    ``values`` and ``offsets`` are typed lists with one buffer per chunk;
    ``chunk_first_doc[c]`` is the first document of chunk ``c`` (plus a
    final entry, the number of documents). Slots of a row past its pieces
    get ``pad``.
    """
    num_chunks = chunk_first_doc.shape[0] - 1
    for r in range(rows.shape[0]):
        j = rows[r]
        pos = out_offsets[r]
        for k in range(seq_offsets[j], seq_offsets[j + 1]):
            doc = piece_doc[k]
            c = 0
            if num_chunks > 1:
                c = np.searchsorted(chunk_first_doc, doc, side="right") - 1
            src = offsets[c][doc - chunk_first_doc[c]] + piece_start[k]
            n = piece_len[k]
            out[pos : pos + n] = values[c][src : src + n]
            pos += n
        out[pos : out_offsets[r + 1]] = pad


@jit
def gather_piece_lengths(rows, seq_offsets, piece_len):
    """``seq_lengths`` column: offsets and int32 piece lengths, row order."""
    offsets = np.empty(rows.shape[0] + 1, dtype=np.int64)
    values = np.empty(piece_len.shape[0], dtype=np.int32)
    offsets[0] = 0
    q = 0
    for r in range(rows.shape[0]):
        j = rows[r]
        for k in range(seq_offsets[j], seq_offsets[j + 1]):
            values[q] = piece_len[k]
            q += 1
        offsets[r + 1] = q
    return offsets, values


@jit
def position_ids(seq_len_offsets, seq_len_values, out_offsets):
    """Positions restarting at 0 at every piece; padding slots get 0."""
    out = np.zeros(out_offsets[-1], dtype=np.int32)
    for r in range(out_offsets.shape[0] - 1):
        pos = out_offsets[r]
        for k in range(seq_len_offsets[r], seq_len_offsets[r + 1]):
            for i in range(seq_len_values[k]):
                out[pos + i] = i
            pos += seq_len_values[k]
    return out
