"""Slow, obviously correct references for :func:`bfpack.pack`.

Everything here is plain Python over lists of ``(doc, start, length)``
pieces: no trees, no histograms, no bulk placement. A packing is a list of
sequences, each a list of pieces in the order they were placed; sequences
are listed in the order they were opened.
"""


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


def _any_fit(lengths, seq_len, long_docs, choose):
    """Place sorted pieces one at a time into ``choose(candidates)``.

    ``candidates`` lists ``(free, last_used, j)`` for every open sequence
    ``j`` that still has room for the piece; ``last_used`` is the step at
    which sequence ``j`` last received a piece (so also the step at which it
    reached its current free space). ``choose`` returns a ``j``, or ``None``
    to open a new sequence.
    """
    sequences, free, last_used = [], [], []
    for step, piece in enumerate(sorted_pieces(lengths, seq_len, long_docs)):
        size = piece[2]
        candidates = [(free[j], last_used[j], j)
                      for j in range(len(sequences)) if free[j] >= size]
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


def naive_bfd(lengths, seq_len, long_docs="split"):
    """Best-fit decreasing: the sequence with the least free space that fits.

    Among sequences with equal free space, the one that reached it most
    recently (the tie rule documented by :func:`bfpack.pack`).
    """
    return _any_fit(lengths, seq_len, long_docs,
                    lambda cands: min(cands, key=lambda c: (c[0], -c[1]))[2])


def naive_ffd(lengths, seq_len, long_docs="split"):
    """First-fit decreasing: the oldest sequence that fits."""
    return _any_fit(lengths, seq_len, long_docs,
                    lambda cands: min(c[2] for c in cands))


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


REFERENCES = {"bfd": naive_bfd, "ffd": naive_ffd}


def naive_pack(lengths, seq_len, method="bfd", long_docs="split"):
    """The reference packing for any ``method``, as a list of sequences."""
    if method == "concat":
        return naive_concat(lengths, seq_len)
    return REFERENCES[method](lengths, seq_len, long_docs)
