"""Tests of :func:`bfpack.pack` against the references in ``naive.py``."""

import dataclasses
import json
import warnings

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
import bfpack.corpus
import bfpack.methods

from naive import cut_counts, naive_bfd, naive_concat, naive_ffd, naive_pack, split_pieces
from plans import as_lists

METHODS = list(bfpack.METHODS)
LONG_DOCS = ["split", "truncate"]
ARRAYS = ["seq_offsets", "piece_doc", "piece_start", "piece_len", "seq_fill"]
# Lengths and fills never exceed seq_len < 2**31: int32, like cu_seqlens.
DTYPES = dict(
    seq_offsets=np.int64,
    piece_doc=np.int64,
    piece_start=np.int64,
    piece_len=np.int32,
    seq_fill=np.int32,
)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

SEQ_LENS = st.one_of(
    st.integers(1, 8),
    st.integers(1, 9000),
    st.sampled_from(
        [1, 2, 3, 5, 63, 64, 100, 511, 1000, 1024, 2047, 2048, 3000, 4096, 8191, 8192, 9000]
    ),
)


@st.composite
def documents(draw, max_docs=80):
    """``(lengths, seq_len)`` with the lengths that stress a packer.

    Zeros, lengths that fit, small lengths (many share a sequence), lengths
    just above ``seq_len / 2`` (no two of them share a sequence), lengths at
    and around multiples of ``seq_len``, lengths several times ``seq_len``;
    half the time only a few distinct values, repeated, so that many pieces
    have equal length.
    """
    L = draw(SEQ_LENS)
    half = L // 2
    special = sorted(
        {
            0,
            1,
            max(half, 1),
            half + 1,
            min(half + 2, L),
            max(L - 1, 1),
            L,
            L + 1,
            2 * L,
            2 * L + 1,
            3 * L + half + 1,
            5 * L - 1,
        }
    )
    one = st.one_of(
        st.integers(0, L),
        st.integers(1, max(1, L // 8)),
        st.integers(half + 1, min(half + 3, L)),
        st.sampled_from(special),
        st.integers(L + 1, 6 * L),
    )
    if draw(st.booleans()):
        one = st.sampled_from(draw(st.lists(one, min_size=1, max_size=3)))
    n = draw(st.integers(0, max_docs))
    return draw(st.lists(one, min_size=n, max_size=n)), L


def lognormal_lengths(n, seed=0, mu=6.0, sigma=1.3):
    """Token counts shaped like web text: ``lognormal(mu, sigma) + 1``."""
    rng = np.random.default_rng(seed)
    return rng.lognormal(mu, sigma, n).astype(np.int64) + 1


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def fills(sequences):
    return sorted(sum(p[2] for p in seq) for seq in sequences)


def kept_tokens(lengths, L, method, long_docs):
    lengths = np.asarray(lengths, dtype=np.int64)
    if method != "concat" and long_docs == "truncate":
        return np.minimum(lengths, L)
    return lengths


def check_plan(plan, lengths, L, method, long_docs):
    """Assert every invariant of a packing of ``lengths`` (vectorized)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    kept = kept_tokens(lengths, L, method, long_docs)
    assert (plan.seq_len, plan.method, plan.long_docs) == (L, method, long_docs)
    for name in ARRAYS:
        arr = getattr(plan, name)
        assert arr.dtype == DTYPES[name] and arr.ndim == 1, name
        assert not arr.flags.writeable, name
    off, doc, start, size, fill = (getattr(plan, name) for name in ARRAYS)
    S, P = plan.num_sequences, plan.num_pieces
    assert len(plan) == S == off.shape[0] - 1 == fill.shape[0]
    assert P == doc.shape[0] == start.shape[0] == size.shape[0]
    assert off[0] == 0 and off[-1] == P
    assert (np.diff(off) >= 1).all(), "empty sequence"
    assert ((size >= 1) & (size <= L)).all()
    csum = np.concatenate([[0], np.cumsum(size)])
    np.testing.assert_array_equal(fill, csum[off[1:]] - csum[off[:-1]])
    assert ((fill >= 1) & (fill <= L)).all()

    # Each document's pieces, in the order they appear, tile [0, kept).
    assert ((doc >= 0) & (doc < lengths.shape[0])).all()
    order = np.argsort(doc, kind="stable")
    d, s, e = doc[order], start[order], start[order] + size[order]
    first = np.ones(P, dtype=bool)
    first[1:] = d[1:] != d[:-1]
    last = np.ones(P, dtype=bool)
    last[:-1] = first[1:]
    np.testing.assert_array_equal(s, np.where(first, 0, np.roll(e, 1)))
    np.testing.assert_array_equal(d[last], np.flatnonzero(kept > 0))
    np.testing.assert_array_equal(e[last], kept[kept > 0])
    if method != "concat":
        # Whole chunks of L, then the remainder: exactly split_pieces.
        assert (size[order][~last] == L).all()
        if lengths.shape[0] <= 200:
            assert sorted(zip(doc.tolist(), start.tolist(), size.tolist())) == split_pieces(
                lengths, L, long_docs
            )
        # Any-fit: a sequence was opened only because the piece did not fit
        # any older one, so no two sequences fit together.
        if S >= 2:
            low = np.sort(fill)[:2]
            assert low.sum() > L
    else:
        assert S == -(-int(lengths.sum()) // L)
        assert (np.diff(doc) >= 0).all(), "concat keeps document order"
        assert (fill[:-1] == L).all()

    st_ = plan.stats()
    assert isinstance(st_, bfpack.PackingStats)
    tokens = int(lengths.sum())
    packed = int(kept.sum())
    lower = -(-packed // L)
    expect = dict(
        method=method,
        long_docs=long_docs,
        seq_len=L,
        documents=lengths.shape[0],
        empty_documents=int((lengths == 0).sum()),
        tokens=tokens,
        tokens_packed=packed,
        sequences=S,
        lower_bound=lower,
        excess_sequences=S - lower,
        padding_tokens=S * L - packed,
        tokens_dropped=tokens - packed,
    )
    got = st_.to_dict()
    assert {k: got[k] for k in expect} == expect
    assert int(size.sum()) == packed
    assert S >= lower
    assert S >= int((2 * size > L).sum()), "two pieces > L/2 share a sequence"
    assert got["fill"] == pytest.approx(packed / (S * L) if S else 1.0, rel=1e-15)
    assert 0.0 < got["fill"] <= 1.0
    return plan


def direct_cut_counts(lengths, L, method, long_docs):
    """Cut counts from the references (independent of the packer)."""
    if method == "concat":
        return cut_counts(lengths, naive_concat(lengths, L))
    return cut_counts(lengths, [split_pieces(lengths, L, long_docs)])


def stats_cut_counts(plan):
    s = plan.stats()
    return s.documents_truncated, s.truncation_cuts, s.tokens_dropped


# --------------------------------------------------------------------------
# Against the references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", ["bfd", "ffd"])
@settings(deadline=None, max_examples=400)
@given(case=documents())
def test_same_sequence_count_and_fills_as_reference(case, method, long_docs):
    # Tie-break free: any best (first) fit gives these counts and fills.
    lengths, L = case
    plan = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    ref = naive_pack(lengths, L, method, long_docs)
    assert plan.num_sequences == len(ref)
    assert sorted(plan.seq_fill.tolist()) == fills(ref)


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
@settings(deadline=None, max_examples=400)
@given(case=documents())
def test_same_assignment_as_reference(case, method, long_docs):
    # FFD and concat have no ties. BFD ties (equal free space) are broken
    # as documented by pack: the sequence that reached that free space most
    # recently wins; naive_bfd applies that rule piece by piece, so the
    # bulk placement of the kernel must reproduce it exactly, with the
    # sequences numbered in order of opening and pieces in placement order.
    lengths, L = case
    plan = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    assert as_lists(plan) == naive_pack(lengths, L, method, long_docs)


@pytest.mark.parametrize("L", [512, 2048])
def test_same_assignment_as_reference_lognormal(L):
    # A realistic mix: many lengths, long runs of equal pieces, long tails.
    lengths = lognormal_lengths(600, seed=L).tolist()
    for method, ref in [("bfd", naive_bfd), ("ffd", naive_ffd)]:
        for long_docs in LONG_DOCS:
            plan = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
            assert as_lists(plan) == ref(lengths, L, long_docs), (method, long_docs)


@pytest.mark.parametrize(
    "method, expected",
    [
        # L=10, [8, 6, 3, 1]: the 1 goes to the fullest sequence that fits
        # (BFD, 1 free) or to the oldest (FFD, 2 free).
        ("bfd", [[(0, 0, 8)], [(1, 0, 6), (2, 0, 3), (3, 0, 1)]]),
        ("ffd", [[(0, 0, 8), (3, 0, 1)], [(1, 0, 6), (2, 0, 3)]]),
        ("concat", [[(0, 0, 8), (1, 0, 2)], [(1, 2, 4), (2, 0, 3), (3, 0, 1)]]),
    ],
)
def test_small_case_by_hand(method, expected):
    plan = bfpack.pack([8, 6, 3, 1], 10, method=method)
    assert as_lists(plan) == expected
    assert naive_pack([8, 6, 3, 1], 10, method) == expected


@pytest.mark.parametrize(
    "method, expected",
    [
        # Equal free space (4 and 4): BFD takes the one that got there last.
        ("bfd", [[(0, 0, 6)], [(1, 0, 6), (2, 0, 1)]]),
        ("ffd", [[(0, 0, 6), (2, 0, 1)], [(1, 0, 6)]]),
    ],
)
def test_tie_break_by_hand(method, expected):
    assert as_lists(bfpack.pack([6, 6, 1], 10, method=method)) == expected


def test_docstring_example():
    plan = bfpack.pack([3000, 1500, 500, 100], seq_len=2048)
    assert (plan.num_sequences, plan.stats().truncation_cuts) == (3, 1)
    assert as_lists(plan) == [
        [(0, 0, 2048)],
        [(1, 0, 1500), (2, 0, 500)],
        [(0, 2048, 952), (3, 0, 100)],
    ]


# --------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
@settings(deadline=None, max_examples=300)
@given(case=documents())
def test_invariants(case, method, long_docs):
    lengths, L = case
    plan = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    check_plan(plan, lengths, L, method, long_docs)
    assert stats_cut_counts(plan) == direct_cut_counts(lengths, L, method, long_docs)


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("L", [1000, 4096])
def test_invariants_lognormal(method, long_docs, L):
    lengths = lognormal_lengths(30_000, seed=L)
    plan = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    check_plan(plan, lengths, L, method, long_docs)
    assert stats_cut_counts(plan) == direct_cut_counts(lengths, L, method, long_docs)


def test_truncate_keeps_the_first_seq_len_tokens():
    lengths = [0, 5, 10, 11, 25, 30, 100]
    plan = bfpack.pack(lengths, 10, long_docs="truncate")
    got = sorted(zip(plan.piece_doc.tolist(), plan.piece_start.tolist(), plan.piece_len.tolist()))
    assert got == [(1, 0, 5), (2, 0, 10), (3, 0, 10), (4, 0, 10), (5, 0, 10), (6, 0, 10)]
    s = plan.stats()
    assert (s.documents_truncated, s.truncation_cuts, s.tokens_dropped) == (4, 4, 1 + 15 + 20 + 90)
    assert (s.tokens, s.tokens_packed) == (181, 55)


def test_split_counts_by_hand():
    # 25 -> 10+10+5 (2 cuts), 30 -> 10+10+10 (2 cuts), 11 -> 10+1 (1 cut);
    # 10 fits whole.
    plan = bfpack.pack([25, 10, 30, 11, 0], 10)
    s = plan.stats()
    assert (s.documents_truncated, s.truncation_cuts, s.tokens_dropped) == (3, 5, 0)
    assert plan.num_pieces == 3 + 1 + 3 + 2
    assert (s.documents, s.empty_documents, s.tokens) == (5, 1, 76)


def test_concat_cut_counts_by_hand():
    # Stream: [7 | 3] [4 .. ] -> doc 1 is cut once, doc 2 (9) spans 2 seqs.
    plan = bfpack.pack([7, 7, 9, 0, 1], 10, method="concat")
    assert as_lists(plan) == [
        [(0, 0, 7), (1, 0, 3)],
        [(1, 3, 4), (2, 0, 6)],
        [(2, 6, 3), (4, 0, 1)],
    ]
    s = plan.stats()
    assert (s.documents_truncated, s.truncation_cuts) == (2, 2)
    assert plan.seq_fill.tolist() == [10, 10, 4]


def test_concat_ignores_long_docs():
    lengths = lognormal_lengths(500)
    a = bfpack.pack(lengths, 300, method="concat", long_docs="split")
    b = bfpack.pack(lengths, 300, method="concat", long_docs="truncate")
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert b.long_docs == "truncate"
    assert b.stats().tokens_dropped == 0
    assert a.num_sequences == -(-int(lengths.sum()) // 300)


def test_sequence_accessor():
    plan = bfpack.pack([8, 6, 3, 1, 12], 10)
    for j in range(plan.num_sequences):
        lo, hi = plan.seq_offsets[j], plan.seq_offsets[j + 1]
        for got, arr in zip(plan.sequence(j), (plan.piece_doc, plan.piece_start, plan.piece_len)):
            np.testing.assert_array_equal(got, arr[lo:hi])
    last = plan.sequence(plan.num_sequences - 1)
    for a, b in zip(plan.sequence(-1), last):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError):
        plan.sequence(plan.num_sequences)
    with pytest.raises(IndexError):
        plan.sequence(-plan.num_sequences - 1)
    doc, _, _ = plan.sequence(0)
    with pytest.raises(ValueError, match="read-only"):
        doc[0] = 1


def test_stats_is_plain_data():
    s = bfpack.pack(lognormal_lengths(100), 512).stats()
    d = s.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(bfpack.PackingStats)]
    for key, value in d.items():
        assert type(value) in (int, float, str), (key, type(value))
    assert json.loads(json.dumps(d)) == d
    assert "excess_sequences" in str(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sequences = 0


# --------------------------------------------------------------------------
# Determinism: the result depends on the values only
# --------------------------------------------------------------------------


def _containers(values):
    """The same lengths (all < 2**16) in every accepted container."""
    arr = np.asarray(values, dtype=np.int64)
    strided = np.repeat(arr, 2)[::2]
    assert len(arr) < 2 or not strided.flags.c_contiguous
    third = len(arr) // 3
    out = {
        "list": arr.tolist(),
        "tuple": tuple(arr.tolist()),
        "int32": arr.astype(np.int32),
        "uint16": arr.astype(np.uint16),
        "uint32": arr.astype(np.uint32),
        "uint64": arr.astype(np.uint64),
        "int64": arr.copy(),
        "int64 big-endian": arr.astype(">i8"),
        "int64 strided": strided,
        "float32 integral": arr.astype(np.float32),
        "float64 integral": arr.astype(np.float64),
        "pyarrow int64": pa.array(arr),
        "pyarrow uint16": pa.array(arr.astype(np.uint16)),
        "pyarrow float64": pa.array(arr.astype(np.float64)),
        "pyarrow sliced": pa.array(np.concatenate([[7, 7], arr]))[2:],
        "pyarrow chunked": pa.chunked_array(
            [arr[:third], arr[third:third], arr[third:]], type=pa.int32()
        ),
        "pyarrow chunked one chunk": pa.chunked_array([arr]),
    }
    for dtype in (np.int8, np.int16):
        if arr.max(initial=0) <= np.iinfo(dtype).max:
            out[np.dtype(dtype).name] = arr.astype(dtype)
    return out


def assert_same_plan(a, b):
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.stats() == b.stats()


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
def test_same_result_for_every_container(method, long_docs):
    values = np.random.default_rng(7).integers(0, 5000, 3000)
    values[::17] = 0
    values[1::5] = 1500
    expected = bfpack.pack(values.tolist(), 1024, method=method, long_docs=long_docs)
    check_plan(expected, values, 1024, method, long_docs)
    for name, lengths in _containers(values).items():
        plan = bfpack.pack(lengths, 1024, method=method, long_docs=long_docs)
        try:
            assert_same_plan(plan, expected)
        except AssertionError as exc:
            raise AssertionError(f"container {name}: {exc}") from None


@settings(deadline=None, max_examples=40)
@given(case=documents(max_docs=30))
def test_same_result_for_every_container_hypothesis(case):
    lengths, L = case
    lengths = [min(n, 2**16 - 1) for n in lengths]
    expected = bfpack.pack(lengths, L)
    for name, container in _containers(lengths).items():
        try:
            assert_same_plan(bfpack.pack(container, L), expected)
        except AssertionError as exc:
            raise AssertionError(f"container {name}: {exc}") from None


@pytest.mark.parametrize("method", METHODS)
def test_same_result_twice(method):
    lengths = lognormal_lengths(20_000, seed=3)
    a = bfpack.pack(lengths, 2048, method=method)
    b = bfpack.pack(lengths, 2048, method=method)
    assert_same_plan(a, b)


def test_input_is_neither_modified_nor_aliased():
    lengths = lognormal_lengths(2000, seed=5)
    before = lengths.copy()
    plan = bfpack.pack(lengths, 512)
    np.testing.assert_array_equal(lengths, before)
    assert lengths.flags.writeable
    for name in ARRAYS:
        assert not np.shares_memory(getattr(plan, name), lengths), name
    snapshot = plan.piece_len.copy()
    lengths[:] = 0
    np.testing.assert_array_equal(plan.piece_len, snapshot)


def test_seq_len_accepts_numpy_integers():
    plan = bfpack.pack([5, 7, 9], np.int32(10))
    assert type(plan.seq_len) is int and plan.seq_len == 10
    assert_same_plan(plan, bfpack.pack([5, 7, 9], 10))
    assert bfpack.pack([5], np.uint8(3)).num_sequences == 2


# --------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------

EMPTY_INPUTS = {
    "list": [],
    "tuple": (),
    "int64": np.array([], dtype=np.int64),
    "float64": np.array([], dtype=np.float64),
    "uint8": np.array([], dtype=np.uint8),
    "pyarrow": pa.array([], type=pa.int64()),
    "pyarrow chunked, no chunks": pa.chunked_array([], type=pa.int64()),
}


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lengths", EMPTY_INPUTS.values(), ids=EMPTY_INPUTS)
def test_empty_input(lengths, method, long_docs):
    plan = bfpack.pack(lengths, 2048, method=method, long_docs=long_docs)
    assert plan.seq_offsets.tolist() == [0]
    assert plan.num_sequences == plan.num_pieces == len(plan) == 0
    for name in ARRAYS[1:]:
        assert getattr(plan, name).shape == (0,)
    s = plan.stats()
    assert (s.documents, s.tokens, s.sequences, s.lower_bound, s.padding_tokens, s.fill) == (
        0,
        0,
        0,
        0,
        0,
        1.0,
    )
    check_plan(plan, [], 2048, method, long_docs)


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
def test_all_zero_lengths(method, long_docs):
    plan = bfpack.pack(np.zeros(1000, dtype=np.int32), 7, method=method, long_docs=long_docs)
    assert plan.seq_offsets.tolist() == [0] and plan.num_pieces == 0
    s = plan.stats()
    assert (s.documents, s.empty_documents, s.tokens, s.sequences) == (1000, 1000, 0, 0)


@pytest.mark.parametrize("method", METHODS)
def test_seq_len_one(method):
    plan = check_plan(
        bfpack.pack([0, 1, 3, 0, 2], 1, method=method), [0, 1, 3, 0, 2], 1, method, "split"
    )
    assert plan.num_sequences == 6
    assert plan.seq_fill.tolist() == [1] * 6
    assert plan.stats().truncation_cuts == 3
    if method != "concat":
        t = bfpack.pack([0, 1, 3, 0, 2], 1, method=method, long_docs="truncate")
        assert t.num_sequences == 3
        assert t.stats().tokens_dropped == 3


@pytest.mark.parametrize("long_docs", LONG_DOCS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("L", [1, 2, 2048, 8191])
def test_single_document_of_exactly_seq_len(L, method, long_docs):
    plan = bfpack.pack([L], L, method=method, long_docs=long_docs)
    assert as_lists(plan) == [[(0, 0, L)]]
    s = plan.stats()
    assert (
        s.documents_truncated,
        s.truncation_cuts,
        s.tokens_dropped,
        s.excess_sequences,
        s.padding_tokens,
        s.fill,
    ) == (0, 0, 0, 0, 0, 1.0)


@pytest.mark.parametrize("method", ["bfd", "ffd"])
def test_documents_of_exact_multiples(method):
    L = 100
    plan = bfpack.pack([2 * L, L, 3 * L], L, method=method)
    assert sorted(as_lists(plan)) == [
        [(0, 0, L)],
        [(0, L, L)],
        [(1, 0, L)],
        [(2, 0, L)],
        [(2, L, L)],
        [(2, 2 * L, L)],
    ]
    s = plan.stats()
    # No remainder: a document in k chunks has k - 1 cuts.
    assert (s.documents_truncated, s.truncation_cuts, s.padding_tokens) == (2, 1 + 2, 0)
    t = bfpack.pack([2 * L, L, 3 * L], L, method=method, long_docs="truncate")
    assert t.num_sequences == 3
    st_ = t.stats()
    assert (st_.documents_truncated, st_.truncation_cuts, st_.tokens_dropped) == (2, 2, L + 2 * L)


def test_chunks_open_sequences_in_document_order():
    # Full chunks are placed first, in document then token order.
    plan = bfpack.pack([250, 5, 120], 100)
    assert as_lists(plan)[:3] == [[(0, 0, 100)], [(0, 100, 100)], [(2, 0, 100)]]


def test_pieces_just_above_half_never_share():
    L = 1001
    lengths = [501] * 40 + [500] * 40
    plan = bfpack.pack(lengths, L)
    assert plan.num_sequences == 40
    assert plan.seq_fill.tolist() == [1001] * 40
    assert bfpack.pack([501] * 40, L).num_sequences == 40


@pytest.mark.parametrize("method", METHODS)
def test_large_seq_len(method):
    L = 1_000_003
    lengths = [L, 5, 3 * L + 7, 2 * L]
    plan = bfpack.pack(lengths, L, method=method)
    check_plan(plan, lengths, L, method, "split")
    if method != "concat":
        assert sorted(plan.seq_fill.tolist()) == [12] + [L] * 6


@pytest.mark.parametrize("method", METHODS)
def test_arrays_are_read_only(method):
    plan = bfpack.pack([5, 12, 3], 10, method=method)
    for name in ARRAYS:
        arr = getattr(plan, name)
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 99
        with pytest.raises(ValueError, match="read-only"):
            arr += 1


def test_packing_is_immutable():
    plan = bfpack.pack([5, 12, 3], 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seq_len = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.piece_len = np.zeros(3, dtype=np.int64)
    with pytest.raises(AttributeError):
        del plan.method
    assert plan.seq_len == 10 and "bfd" in repr(plan)


# --------------------------------------------------------------------------
# Quality at scale (the paper's claims, in shape)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_lengths():
    return lognormal_lengths(200_000, seed=0)


@pytest.mark.parametrize("L", [2048, 8192])
def test_quality_at_scale(web_lengths, L):
    bfd = bfpack.pack(web_lengths, L)
    ffd = bfpack.pack(web_lengths, L, method="ffd")
    concat = bfpack.pack(web_lengths, L, method="concat")
    check_plan(bfd, web_lengths, L, "bfd", "split")
    s = bfd.stats()
    assert s.lower_bound == concat.num_sequences
    # Near-optimal: a handful of sequences over ~1e5.
    assert s.excess_sequences <= 2 + s.lower_bound // 100_000
    assert ffd.stats().excess_sequences <= 2 + s.lower_bound // 100_000
    assert bfd.num_sequences <= ffd.num_sequences
    # The paper: best-fit adds well under 0.1% sequences over concatenation
    # while cutting far fewer documents.
    assert (bfd.num_sequences - concat.num_sequences) / concat.num_sequences < 1e-3
    assert s.documents_truncated == int((web_lengths > L).sum())
    assert s.truncation_cuts < concat.stats().truncation_cuts


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "lengths",
    [
        [5, 3, -1, 4],
        np.array([5, 3, -1, -7], dtype=np.int8),
        np.array([5.0, 3.0, -1.0]),
        pa.array([5, 3, -1], type=pa.int32()),
    ],
    ids=["list", "int8", "float", "pyarrow"],
)
def test_negative_lengths(lengths, method):
    with pytest.raises(ValueError, match=r"lengths\[2\] = -1 is negative"):
        bfpack.pack(lengths, 10, method=method)


def test_negative_length_after_long_documents():
    lengths = np.full(1000, 50_000, dtype=np.int64)
    lengths[777] = -3
    with pytest.raises(ValueError, match=r"lengths\[777\] = -3 is negative"):
        bfpack.pack(lengths, 100)


@pytest.mark.parametrize(
    "lengths, match",
    [
        (np.array([1.0, 2.5]), r"lengths\[1\] = 2.5 is not a whole number"),
        ([3, 4, 0.1], r"lengths\[2\] = 0.1 is not a whole number"),
        (np.array([1.0, np.nan]), r"lengths\[1\] is nan.*finite"),
        (np.array([np.inf, 1.0]), r"lengths\[0\] is inf.*finite"),
        (np.array([1.0, -np.inf]), r"lengths\[1\] is -inf.*finite"),
        (pa.array([1.0, float("nan")]), r"lengths\[1\] is nan"),
        (np.array([1e30]), r"int64"),
        (
            np.array([1, 2], dtype=np.uint64) << np.uint64(63),
            r"lengths\[0\] = 9223372036854775808 does not fit in int64",
        ),
        (
            np.array([7, 2**64 - 1], dtype=np.uint64),
            r"lengths\[1\] = 18446744073709551615 does not fit in int64",
        ),
        (pa.array([1, 2**63], type=pa.uint64()), r"lengths\[1\].*int64"),
        (np.zeros((2, 2), dtype=np.int64), r"1-D.*shape \(2, 2\)"),
        ([[1, 2], [3, 4]], r"1-D.*shape \(2, 2\)"),
        (np.int64(5), r"1-D.*shape \(\)"),
        (5, r"1-D.*shape \(\)"),
        (pa.array([1, None, 3]), r"1 null values"),
        (pa.chunked_array([[1, None], [None]]), r"2 null values"),
    ],
)
def test_bad_values(lengths, match):
    with pytest.raises(ValueError, match=match):
        bfpack.pack(lengths, 10)


@pytest.mark.parametrize(
    "lengths, match",
    [
        (np.array([True, False]), r"dtype bool.*astype"),
        ([True, False], r"dtype bool"),
        (np.array(["1", "2"]), r"integer token counts.*<U1.*astype"),
        (["1", "2"], r"integer token counts.*<U1"),
        (np.array([1, 2], dtype=object), r"dtype object"),
        ([1, None], r"dtype object"),
        (np.array([1 + 0j, 2]), r"dtype complex128"),
        (np.array([1, 2], dtype="m8[s]"), r"dtype timedelta64"),
        (pa.array(["1", "2"]), r"Arrow type string.*cast"),
        (pa.array([True, False]), r"Arrow type bool"),
        (pa.chunked_array([["a"]]), r"Arrow type string"),
        (pa.scalar(5), r"1-D array of integers, got Int64Scalar"),
    ],
)
def test_bad_types(lengths, match):
    with pytest.raises(TypeError, match=match):
        bfpack.pack(lengths, 10)


@pytest.mark.parametrize("seq_len", [0, -5, 2**31, np.int64(-1)])
def test_seq_len_out_of_range(seq_len):
    with pytest.raises(
        ValueError,
        match=rf"seq_len must be between 1 and "
        rf"2147483647 tokens, got {seq_len}",
    ):
        bfpack.pack([1, 2], seq_len)


@pytest.mark.parametrize("seq_len", [2048.0, "2048", True, np.True_, None, np.float32(8), [2048]])
def test_seq_len_not_an_integer(seq_len):
    with pytest.raises(TypeError, match=r"seq_len must be an integer number"):
        bfpack.pack([1, 2], seq_len)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="BFD"), r"method must be one of 'bfd', 'ffd', 'concat'; got 'BFD'"),
        (dict(method="best_fit"), r"method must be one of .*'best_fit'"),
        (dict(method=None), r"method must be one of .*None"),
        (dict(long_docs="drop"), r"long_docs must be one of 'split', 'truncate'; got 'drop'"),
        (dict(long_docs=""), r"long_docs must be one of 'split', 'truncate'"),
    ],
)
def test_unknown_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bfpack.pack([1, 2], 10, **kwargs)


# --------------------------------------------------------------------------
# Bugs found while writing these tests (they fail as of e131de9)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [
        np.array([10, 2.0**63]),
        np.array([10, 2.0**63], dtype=np.float32),
        [10, 2**63],  # numpy makes this list float64
    ],
    ids=["float64", "float32", "list"],
)
def test_float_just_above_int64_range(lengths):
    # 2**63 is the first float above int64 max; it must be reported as out
    # of range, not cast to -2**63 and reported as negative.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"int64"):
            bfpack.pack(lengths, 10)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_valid_float_lengths_raise_no_warning(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = bfpack.pack(np.array([1, 2, 3], dtype=dtype), 2)
    assert plan.piece_len.tolist() == [2, 2, 1, 1]


def test_token_total_beyond_int64_is_not_silent():
    # Each length fits in int64 (as accepted for uint64 input), but their
    # sum does not: the call must refuse, naming the length that overflows.
    lengths = np.full(3, 2**62, dtype=np.int64)
    for method in METHODS:
        with pytest.raises(
            ValueError,
            match=rf"the token total passes the int64 range at lengths\[1\] = {2**62}",
        ):
            bfpack.pack(lengths, 10, method=method, long_docs="truncate")


# --------------------------------------------------------------------------
# The int64 scratch path, used from 2**31 pieces or documents on: the threshold
# is lowered to force it, and the results must not change.


@pytest.fixture
def wide_indices(monkeypatch):
    monkeypatch.setattr(bfpack.methods, "_INT32_INDEX_LIMIT", 0)


@pytest.mark.parametrize("method", ["bfd", "ffd"])
@pytest.mark.parametrize("long_docs", ["split", "truncate"])
@settings(max_examples=60)
@given(case=documents())
def test_int64_scratch_gives_the_same_packing(case, method, long_docs):
    lengths, L = case
    narrow = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bfpack.methods, "_INT32_INDEX_LIMIT", 0)
        wide = bfpack.pack(lengths, L, method=method, long_docs=long_docs)
    check_plan(wide, lengths, L, method, long_docs)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(wide, name), getattr(narrow, name))


def test_int64_scratch_on_web_like_lengths(wide_indices):
    lengths = bfpack.corpus.web_like_lengths(20_000, seed=5)
    plan = bfpack.pack(lengths, 2048)
    check_plan(plan, lengths, 2048, "bfd", "split")
