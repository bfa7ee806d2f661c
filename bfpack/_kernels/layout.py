"""Turning per-piece assignments into the CSR layout of a packing.

A packing is stored by sequence: the pieces of sequence ``j`` are
``seq_offsets[j]:seq_offsets[j + 1]`` of ``piece_doc``, ``piece_start`` and
``piece_len``.
"""

import numpy as np

from .._jit import jit


@jit
def lay_out(sorted_doc, piece_bin, bin_count, size_count, lengths, seq_len,
            piece_start):
    """Lay out the pieces sequence by sequence.

    ``sorted_doc`` and ``piece_bin`` give the document and the sequence of
    every piece in sorted order (longest first, equal pieces in document
    order; the last piece of a split document as ``~doc``), ``bin_count``
    the pieces each sequence received. Fills ``piece_start`` (int64, one
    slot per piece) last, so ``sorted_doc`` and ``piece_bin`` may live in
    its memory. Returns ``(seq_offsets, piece_doc, piece_len)``, the pieces
    of each sequence in placement order.

    Walking the sorted order keeps the writes near each other (pieces placed
    one after another go to sequences opened near each other), but each
    sequence's slots are still written at several different times, so every
    scattered array costs a cache-line read and write-back per piece. Only
    the document and the length are scattered; starts follow in a
    sequential pass.
    """
    num_bins = bin_count.shape[0]
    num_pieces = piece_bin.shape[0]
    # cursor[b] is where the next piece of sequence b goes; after the pass
    # it has advanced to the start of sequence b + 1.
    cursor = np.empty(num_bins + 1, dtype=np.int64)
    cursor[0] = 0
    for b in range(num_bins):
        cursor[b + 1] = cursor[b] + bin_count[b]
    piece_doc = np.empty(num_pieces, dtype=np.int64)
    piece_len = np.empty(num_pieces, dtype=np.int32)
    p = 0
    for s in range(seq_len, 0, -1):
        for _ in range(size_count[s]):
            b = piece_bin[p]
            dst = cursor[b]
            cursor[b] = dst + 1
            piece_doc[dst] = sorted_doc[p]
            piece_len[dst] = s
            p += 1
    for b in range(num_bins, 0, -1):
        cursor[b] = cursor[b - 1]
    cursor[0] = 0
    _piece_starts(piece_doc, piece_len, lengths, seq_len, piece_start)
    return cursor, piece_doc, piece_len


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
def concatenate(lengths, seq_len):
    """The baseline: documents in order, one stream, cut every ``seq_len``.

    Returns ``(seq_offsets, piece_doc, piece_start, piece_len, docs_cut,
    cuts)``.
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
    num_seqs = (tokens + seq_len - 1) // seq_len
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
    return (seq_offsets, piece_doc, piece_start, piece_len, docs_cut,
            num_pieces - num_docs)


@jit
def prepend_open(open_offsets, open_len, seq_offsets, piece_doc, piece_start,
                 piece_len):
    """Put the pieces of sequences that were already open in front.

    Sequence ``b < B0`` already held pieces ``open_offsets[b]:open_offsets[b
    + 1]`` (lengths ``open_len``), numbered as documents ``0 .. C - 1``; the
    new pieces' documents are shifted by ``C``. Returns the merged CSR.
    """
    num_open = open_offsets.shape[0] - 1
    num_carried = open_len.shape[0]
    num_bins = seq_offsets.shape[0] - 1
    total = num_carried + piece_doc.shape[0]
    offsets = np.empty(num_bins + 1, dtype=np.int64)
    doc = np.empty(total, dtype=np.int64)
    start = np.empty(total, dtype=np.int64)
    length = np.empty(total, dtype=np.int32)
    q = 0
    for b in range(num_bins):
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
    offsets[num_bins] = q
    return offsets, doc, start, length
