"""Moving tokens: copying packed pieces out of Arrow list buffers.

A list column arrives as one or more chunks, each a flat ``values`` buffer
and an ``offsets`` buffer. The kernel is handed, per document, the memory
address of its first token wherever its chunk's buffer is
(:func:`bfpack._arrow.document_addresses`), so a column of any number of
chunks, sliced or not, is read in place: nothing is copied on input.
"""

import numpy as np

from .._jit import as_pointer, carray, jit


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
    doc_address,
    rows,
    seq_offsets,
    piece_doc,
    piece_start,
    piece_len,
    piece_copied,
    out_offsets,
    pad,
    appended,
    out,
):
    """Copy every piece's tokens into ``out``, row by row.

    ``doc_address[d]`` (int64) is the address of document ``d``'s first
    token, a value of ``out``'s type in a buffer the caller keeps alive.
    Piece ``k`` takes ``piece_copied[k]`` tokens from its document and
    fills the rest of its ``piece_len[k]`` slots (one, a separator) with
    ``appended``. Slots of a row past its pieces get ``pad``.
    """
    size = out.itemsize
    for r in range(rows.shape[0]):
        j = rows[r]
        pos = out_offsets[r]
        for k in range(seq_offsets[j], seq_offsets[j + 1]):
            n = piece_len[k]
            m = piece_copied[k]
            src = as_pointer(doc_address[piece_doc[k]] + piece_start[k] * size)
            out[pos : pos + m] = carray(src, m, out.dtype)
            out[pos + m : pos + n] = appended
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
