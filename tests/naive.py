"""Slow, obviously correct references for :func:`bfpack.pack`.

Everything here is plain Python over lists of ``(doc, start, length)``
pieces: no trees, no histograms, no bulk placement. A packing is a list of
sequences, each a list of pieces in the order they were placed; sequences
are listed in the order they were opened.
"""

import re


def split_pieces(lengths, seq_len, long_docs="split"):
    """Cut every document into pieces of at most ``seq_len`` tokens.

    ``"split"``: chunks of ``seq_len`` tokens from the start, then the
    remainder. ``"truncate"``: the first ``seq_len`` tokens only. Empty
    documents give no piece. Pieces come in document order, then token order.
    """
    pieces = []
    for doc, n in enumerate(lengths):
        n = int(n)
        if long_docs == "truncate":
            n = min(n, seq_len)
        for start in range(0, n, seq_len):
            pieces.append((doc, start, min(seq_len, n - start)))
    return pieces


def sorted_pieces(lengths, seq_len, long_docs="split"):
    """Pieces longest first; ``sorted`` is stable, so ties keep input order."""
    return sorted(split_pieces(lengths, seq_len, long_docs), key=lambda p: -p[2])


def _any_fit(lengths, seq_len, long_docs, choose, open_sequences=()):
    """Place sorted pieces one at a time into ``choose(candidates)``.

    ``candidates`` lists ``(free, last_used, j)`` for every open sequence
    ``j`` that still has room for the piece; ``last_used`` is the step at
    which sequence ``j`` last received a piece (so also the step at which it
    reached its current free space). ``choose`` returns a ``j``, or ``None``
    to open a new sequence.

    ``open_sequences`` are sequences (lists of pieces) already open before
    the first piece, in order; they count as used one after another, the
    last most recently, before any new piece.
    """
    sequences = [list(seq) for seq in open_sequences]
    free = [seq_len - sum(p[2] for p in seq) for seq in sequences]
    last_used = list(range(-len(sequences), 0))
    for step, piece in enumerate(sorted_pieces(lengths, seq_len, long_docs)):
        size = piece[2]
        candidates = [(free[j], last_used[j], j) for j in range(len(sequences)) if free[j] >= size]
        j = choose(candidates) if candidates else None
        if j is None:
            sequences.append([])
            free.append(seq_len)
            last_used.append(step)
            j = len(sequences) - 1
        sequences[j].append(piece)
        free[j] -= size
        last_used[j] = step
    return sequences


def naive_bfd(lengths, seq_len, long_docs="split", open_sequences=()):
    """Best-fit decreasing: the sequence with the least free space that fits.

    Among sequences with equal free space, the one that reached it most
    recently (the tie rule documented by :func:`bfpack.pack`).
    """
    return _any_fit(
        lengths,
        seq_len,
        long_docs,
        lambda cands: min(cands, key=lambda c: (c[0], -c[1]))[2],
        open_sequences,
    )


def naive_ffd(lengths, seq_len, long_docs="split", open_sequences=()):
    """First-fit decreasing: the oldest sequence that fits."""
    return _any_fit(
        lengths, seq_len, long_docs, lambda cands: min(c[2] for c in cands), open_sequences
    )


def naive_concat(lengths, seq_len):
    """Documents in order as one token stream, cut every ``seq_len`` tokens."""
    sequences = []
    room = 0
    for doc, n in enumerate(lengths):
        start = 0
        while start < int(n):
            if room == 0:
                sequences.append([])
                room = seq_len
            k = min(int(n) - start, room)
            sequences[-1].append((doc, start, k))
            start += k
            room -= k
    return sequences


def cut_counts(lengths, sequences):
    """``(documents_truncated, truncation_cuts, tokens_dropped)`` of a packing.

    Counted directly: a document is cut when it lies in more than one piece
    or lost tokens; each extra piece is one cut, and dropping a tail is one.
    """
    pieces = {}
    kept = {}
    for seq in sequences:
        for doc, _, size in seq:
            pieces[doc] = pieces.get(doc, 0) + 1
            kept[doc] = kept.get(doc, 0) + size
    truncated = cuts = dropped = 0
    for doc, n in enumerate(lengths):
        lost = int(n) - kept.get(doc, 0)
        extra = max(pieces.get(doc, 0) - 1, 0) + (1 if lost else 0)
        truncated += extra > 0
        cuts += extra
        dropped += lost
    return truncated, cuts, dropped


def naive_concat_method(lengths, seq_len, long_docs="split"):
    """:func:`naive_concat` with the signature of the other references
    (concatenation ignores ``long_docs``)."""
    return naive_concat(lengths, seq_len)


#: The slow reference of every method of ``bfpack.METHODS`` (the tests
#: check that the two registries hold the same names).
REFERENCES = {"bfd": naive_bfd, "ffd": naive_ffd, "concat": naive_concat_method}
#: References that can start from open sequences (any-fit methods).
OPEN_REFERENCES = {"bfd": naive_bfd, "ffd": naive_ffd}


def naive_pack(lengths, seq_len, method="bfd", long_docs="split"):
    """The reference packing for any ``method``, as a list of sequences."""
    return REFERENCES[method](lengths, seq_len, long_docs)


def naive_stream(windows, seq_len, method="bfd", long_docs="split", max_open=4096, streams=True):
    """Windows packed one after another, carrying the roomiest open sequences.

    After each window but the last, the sequences with free space are
    candidates to stay open; the ``max_open`` with the most free space stay
    (ties: the older sequence), the others and the full ones are emitted,
    in order of opening. Sequences kept open come first in the next window,
    in the order they were opened. ``streams=False``: every window alone.
    Documents are numbered across the windows. Returns the emitted
    sequences of each window.
    """
    emitted = []
    open_seqs = []
    base = 0
    for k, lengths in enumerate(windows):
        last = k == len(windows) - 1
        # Empty documents in front number this window's documents from base.
        numbered = [0] * base + [int(n) for n in lengths]
        if streams:
            seqs = OPEN_REFERENCES[method](numbered, seq_len, long_docs, open_seqs)
        else:
            seqs = REFERENCES[method](numbered, seq_len, long_docs)
        free = [seq_len - sum(p[2] for p in seq) for seq in seqs]
        kept = []
        if streams and not last:
            room = [j for j in range(len(seqs)) if free[j] > 0]
            kept = sorted(sorted(room, key=lambda j: (-free[j], j))[:max_open])
        emitted.append([seq for j, seq in enumerate(seqs) if j not in kept])
        open_seqs = [seqs[j] for j in kept]
        base += len(lengths)
    return emitted


# GPT-2's pre-tokenization pattern without its English contractions, on
# bytes, every non-ASCII byte a letter: the reference of the built-in
# corpus's word split (bfpack.corpus).
WORD_PATTERN = rb" ?[A-Za-z\x80-\xff]+| ?[0-9]+| ?[^\sA-Za-z0-9\x80-\xff]+|\s+(?!\S)|\s+"


def naive_words(text):
    """The tokens of ``text`` (bytes) under :data:`WORD_PATTERN`."""
    return re.findall(WORD_PATTERN, text)


# ---------------------------------------------------------------------------
# Training batches of packed rows (bfpack.torch.PackedCollator), token by token.

IGNORE = -100


def naive_pieces(row):
    """``[(tokens, labels), ...]`` of each piece of a packed row (plain lists)."""
    ids = [int(x) for x in row["input_ids"]]
    labels = [int(x) for x in row["labels"]] if row.get("labels") is not None else ids
    out, at = [], 0
    for n in row["seq_lengths"]:
        n = int(n)
        out.append((ids[at : at + n], labels[at : at + n]))
        at += n
    return out


def naive_padding_free(rows):
    """The padding-free batch as plain lists: one flat sequence of every piece."""
    ids, labels, positions, documents, cu = [], [], [], [], [0]
    for row in rows:
        for tokens, targets in naive_pieces(row):
            for p, (t, y) in enumerate(zip(tokens, targets)):
                ids.append(t)
                labels.append(IGNORE if p == 0 else y)
                positions.append(p)
                documents.append(len(cu) - 1)
            cu.append(cu[-1] + len(tokens))
    longest = max((b - a for a, b in zip(cu, cu[1:])), default=0)
    return dict(
        input_ids=ids,
        labels=labels,
        position_ids=positions,
        document_ids=documents,
        cu_seqlens=cu,
        max_seqlen=longest,
    )


def naive_padded(rows, seq_len, pad):
    """The padded batch as lists of rows, and the allowed (query, key) pairs
    of each row: same piece and key <= query, or a padding slot's own."""
    out = dict(input_ids=[], labels=[], position_ids=[], document_ids=[], allowed=[])
    for row in rows:
        ids, labels, positions, documents = [], [], [], []
        for d, (tokens, targets) in enumerate(naive_pieces(row)):
            for p, (t, y) in enumerate(zip(tokens, targets)):
                ids.append(t)
                labels.append(IGNORE if p == 0 else y)
                positions.append(p)
                documents.append(d)
        fill = seq_len - len(ids)
        out["input_ids"].append(ids + [pad] * fill)
        out["labels"].append(labels + [IGNORE] * fill)
        out["position_ids"].append(positions + [0] * fill)
        out["document_ids"].append(documents + [-1] * fill)
        docs = out["document_ids"][-1]
        out["allowed"].append(
            [
                [(k <= q and docs[q] == docs[k] and docs[q] >= 0) or k == q for k in range(seq_len)]
                for q in range(seq_len)
            ]
        )
    return out
