"""The CSR layout of a packing: building it, merging it, selecting from it.

A packing is stored by sequence: the pieces of sequence ``j`` are
``seq_offsets[j]:seq_offsets[j + 1]`` of ``piece_doc``, ``piece_start`` and
``piece_len`` (a :class:`.results.Layout`).
"""

import numpy as np

from .._jit import jit
from .results import Layout


@jit
def lay_out(sorted_doc, piece_seq, seq_count, size_count, lengths, seq_len, piece_start):
    """Lay out the pieces sequence by sequence; returns a :class:`Layout`.

    ``sorted_doc`` and ``piece_seq`` give the document and the sequence of
    every piece in sorted order (longest first, equal pieces in document
    order; the last piece of a split document as ``~doc``), ``seq_count``
    the pieces each sequence received. Fills ``piece_start`` (int64, one
    slot per piece) last, so ``sorted_doc`` and ``piece_seq`` may live in
    its memory. Pieces of a sequence are listed in placement order.

    Walking the sorted order keeps the writes near each other (pieces placed
    one after another go to sequences opened near each other), but each
    sequence's slots are still written at several different times, so every
    scattered array costs a cache-line read and write-back per piece. Only
    the document and the length are scattered; starts follow in a
    sequential pass.
    """
    num_seqs = seq_count.shape[0]
    num_pieces = piece_seq.shape[0]
    # cursor[b] is where the next piece of sequence b goes; after the pass
    # it has advanced to the start of sequence b + 1.
    cursor = np.empty(num_seqs + 1, dtype=np.int64)
    cursor[0] = 0
    for b in range(num_seqs):
        cursor[b + 1] = cursor[b] + seq_count[b]
    piece_doc = np.empty(num_pieces, dtype=np.int64)
    piece_len = np.empty(num_pieces, dtype=np.int32)
    p = 0
    for s in range(seq_len, 0, -1):
        for _ in range(size_count[s]):
            b = piece_seq[p]
            dst = cursor[b]
            cursor[b] = dst + 1
            piece_doc[dst] = sorted_doc[p]
            piece_len[dst] = s
            p += 1
    for b in range(num_seqs, 0, -1):
        cursor[b] = cursor[b - 1]
    cursor[0] = 0
    _piece_starts(piece_doc, piece_len, lengths, seq_len, piece_start)
    return Layout(cursor, piece_doc, piece_start, piece_len)


@jit
def _piece_starts(piece_doc, piece_len, lengths, seq_len, piece_start):
    """Token offset of each piece; decodes ``~doc`` in ``piece_doc``.

    A piece of ``seq_len`` tokens is the next chunk of its document: the
    chunks of a document are consecutive in sorted order and each fills a
    sequence of its own, so they are also consecutive here. A shorter piece
    is a whole document, or the end of a split one when stored as ``~doc``.
    """
    prev_doc = -1
    prev_start = 0
    for q in range(piece_doc.shape[0]):
        doc = piece_doc[q]
        if doc < 0:
            doc = ~doc
            piece_doc[q] = doc
            piece_start[q] = lengths[doc] - piece_len[q]
        elif piece_len[q] == seq_len:
            prev_start = prev_start + seq_len if doc == prev_doc else 0
            prev_doc = doc
            piece_start[q] = prev_start
        else:
            piece_start[q] = 0


@jit
def merge_open(open_offsets, open_len, seq_offsets, piece_doc, piece_start, piece_len):
    """Put the pieces of sequences that were already open in front.

    Sequence ``b < B0`` already held pieces ``open_offsets[b]:open_offsets[b
    + 1]`` (lengths ``open_len``), numbered as documents ``0 .. C - 1``; the
    new pieces' documents are shifted by ``C``. Returns the merged
    :class:`Layout`.
    """
    num_open = open_offsets.shape[0] - 1
    num_carried = open_len.shape[0]
    num_seqs = seq_offsets.shape[0] - 1
    total = num_carried + piece_doc.shape[0]
    offsets = np.empty(num_seqs + 1, dtype=np.int64)
    doc = np.empty(total, dtype=np.int64)
    start = np.empty(total, dtype=np.int64)
    length = np.empty(total, dtype=np.int32)
    q = 0
    for b in range(num_seqs):
        offsets[b] = q
        if b < num_open:
            for k in range(open_offsets[b], open_offsets[b + 1]):
                doc[q] = k
                start[q] = 0
                length[q] = open_len[k]
                q += 1
        for k in range(seq_offsets[b], seq_offsets[b + 1]):
            doc[q] = piece_doc[k] + num_carried
            start[q] = piece_start[k]
            length[q] = piece_len[k]
            q += 1
    offsets[num_seqs] = q
    return Layout(offsets, doc, start, length)


@jit
def take_sequences(seq_offsets, piece_doc, piece_start, piece_len, rows):
    """The sequences ``rows`` (in that order) of a layout, as a new :class:`Layout`."""
    offsets = np.empty(rows.shape[0] + 1, dtype=np.int64)
    offsets[0] = 0
    for r in range(rows.shape[0]):
        j = rows[r]
        offsets[r + 1] = offsets[r] + seq_offsets[j + 1] - seq_offsets[j]
    total = offsets[rows.shape[0]]
    doc = np.empty(total, dtype=np.int64)
    start = np.empty(total, dtype=np.int64)
    length = np.empty(total, dtype=np.int32)
    for r in range(rows.shape[0]):
        lo = seq_offsets[rows[r]]
        for q in range(offsets[r], offsets[r + 1]):
            k = lo + q - offsets[r]
            doc[q] = piece_doc[k]
            start[q] = piece_start[k]
            length[q] = piece_len[k]
    return Layout(offsets, doc, start, length)
