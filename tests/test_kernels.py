"""Kernel-level tests: each kernel against a few lines of plain Python.

The public functions are tested end to end elsewhere; these pin down the
pieces at their edges (tree search with one leaf or nothing that fits, the
any-fit sequence bound, merging and selecting sequences, packing after open
sequences), where an end-to-end test would only see a wrong packing.
Arguments are passed as the wrappers pass them (read-only inputs, see
``bfpack._jit``).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bfpack._jit import readonly
from bfpack._kernels.anyfit import max_new_sequences
from bfpack._kernels.bfd import BLOCK, best_fit
from bfpack._kernels.ffd import first_fit
from bfpack._kernels.gather import gather_piece_lengths, position_ids, row_offsets
from bfpack._kernels.layout import merge_open, take_sequences
from bfpack._kernels.pieces import count_pieces, sort_pieces
from bfpack._kernels.tree import tree_leftmost_at_least, tree_set, tree_width

from naive import naive_bfd, naive_ffd, sorted_pieces, split_pieces


def ro(values, dtype=np.int64):
    return readonly(np.asarray(values, dtype=dtype))


# --------------------------------------------------------------------------
# Segment tree
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,width", [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (2048, 2048), (2049, 4096)]
)
def test_tree_width(n, width):
    assert tree_width(n) == width


def leftmost(leaves, x):
    return next((i for i, v in enumerate(leaves) if v >= x), -1)


def tree_of(leaves, width):
    """A tree over ``leaves`` (int32, as the kernels build them), leaf by leaf."""
    tree = np.zeros(2 * width, dtype=np.int32)
    for leaf, value in enumerate(leaves):
        tree_set(tree, width, leaf, value)
    return tree


def check_tree(tree, width, leaves):
    assert tree[width : width + len(leaves)].tolist() == list(leaves)
    for node in range(1, width):
        assert tree[node] == max(tree[2 * node], tree[2 * node + 1]), node


@settings(max_examples=200)
@given(
    leaves=st.lists(st.integers(0, 50), min_size=1, max_size=40),
    queries=st.lists(st.integers(0, 52), max_size=10),
)
def test_tree_search_is_the_leftmost_leaf_at_least_x(leaves, queries):
    width = tree_width(len(leaves))
    tree = tree_of(leaves, width)
    check_tree(tree, width, leaves)
    for x in [0, 1, max(leaves), max(leaves) + 1, *queries]:
        assert tree_leftmost_at_least(tree, width, x) == leftmost(leaves, x), x


@settings(max_examples=100)
@given(
    size=st.integers(1, 33),
    updates=st.lists(st.tuples(st.integers(0, 32), st.integers(0, 40)), max_size=60),
)
def test_tree_set_keeps_every_node_the_max_of_its_children(size, updates):
    leaves = [0] * size
    width = tree_width(size)
    tree = tree_of([0] * size, width)
    for leaf, value in updates:
        leaf %= size
        tree_set(tree, width, leaf, value)
        leaves[leaf] = value
        check_tree(tree, width, leaves)
        assert tree_leftmost_at_least(tree, width, value) == leftmost(leaves, value)


def test_tree_edges():
    # One leaf; the last leaf of a full width; nothing fits.
    tree = tree_of([7], 1)
    assert tree_leftmost_at_least(tree, 1, 7) == 0
    assert tree_leftmost_at_least(tree, 1, 8) == -1
    tree = tree_of([0, 0, 0, 9], 4)
    assert tree_leftmost_at_least(tree, 4, 9) == 3
    assert tree_leftmost_at_least(tree, 4, 10) == -1
    # Padding leaves (beyond the real ones) hold 0 and are never found for x >= 1.
    tree = tree_of([3, 1, 2], 4)
    assert tree[4 + 3] == 0 and tree_leftmost_at_least(tree, 4, 1) == 0


# --------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------

lengths_strategy = st.lists(st.integers(0, 40), max_size=40)


@settings(max_examples=150)
@given(lengths=lengths_strategy, seq_len=st.integers(1, 12), split=st.booleans())
def test_count_and_sort_pieces_are_the_reference_cut(lengths, seq_len, split):
    long_docs = "split" if split else "truncate"
    counts = count_pieces(ro(lengths), seq_len, split)
    pieces = split_pieces(lengths, seq_len, long_docs)
    assert counts.first_bad == -1
    assert counts.size_count.tolist() == [0] + [
        sum(1 for p in pieces if p[2] == s) for s in range(1, seq_len + 1)
    ]
    assert counts.tokens == sum(lengths)
    assert counts.tokens_dropped == sum(lengths) - sum(p[2] for p in pieces)
    assert counts.empty_documents == lengths.count(0)
    assert counts.documents_truncated == sum(n > seq_len for n in lengths)
    for dtype in (np.int32, np.int64):
        sorted_doc = np.empty(len(pieces), dtype=dtype)
        sort_pieces(ro(lengths), seq_len, split, counts.size_count, sorted_doc)
        # The last piece of a split document is ~doc (it does not start at 0).
        want = [
            ~d if s > 0 and n < seq_len else d
            for d, s, n in sorted_pieces(lengths, seq_len, long_docs)
        ]
        assert sorted_doc.tolist() == want


@pytest.mark.parametrize(
    "lengths,bad", [([3, -1, -5], 1), ([2**62, 2**62, 1], 1), ([0, 2**63 - 1, 1], 2)]
)
def test_count_pieces_reports_the_first_bad_length(lengths, bad):
    assert count_pieces(ro(lengths), 10, True).first_bad == bad


# --------------------------------------------------------------------------
# Any-fit: the sequence bound and packing after open sequences
# --------------------------------------------------------------------------


def size_count_of(pieces, seq_len):
    counts = np.zeros(seq_len + 1, dtype=np.int64)
    for p in pieces:
        counts[p] += 1
    return counts


@settings(max_examples=200)
@given(pieces=st.lists(st.integers(1, 20), max_size=50), seq_len=st.integers(20, 40))
def test_sequence_bound_holds_for_every_any_fit_packer(pieces, seq_len):
    counts = size_count_of(pieces, seq_len)
    bound = max_new_sequences(counts, seq_len)
    assert bound == min(len(pieces), 2 * sum(pieces) // seq_len + 1)
    for ref in (naive_bfd, naive_ffd):
        assert len(ref(pieces, seq_len)) <= bound


@pytest.mark.parametrize(
    "pieces,seq_len,expected",
    [
        ([6, 6, 6], 10, 3),  # every piece above L/2: one sequence each, the bound is tight
        ([1], 10, 1),  # 2 * 1 // 10 + 1 = 1
        ([5] * 10, 10, 10),  # 2 * 50 // 10 + 1 = 11 > 10 pieces
        ([], 10, 0),
    ],
)
def test_sequence_bound_by_hand(pieces, seq_len, expected):
    assert max_new_sequences(size_count_of(pieces, seq_len), seq_len) == expected


@st.composite
def open_cases(draw):
    seq_len = draw(st.integers(2, 30))
    free = draw(st.lists(st.integers(1, seq_len - 1), max_size=8))
    pieces = draw(st.lists(st.integers(1, seq_len), max_size=30))
    return seq_len, free, pieces


@st.composite
def deep_stack_cases(draw):
    """Many open sequences sharing a few free-space values: BFD's stacks
    span several blocks of BLOCK entries, empty out and fill up again."""
    seq_len = draw(st.integers(4, 16))
    values = draw(st.lists(st.integers(1, seq_len - 1), min_size=1, max_size=3))
    free = draw(st.lists(st.sampled_from(values), min_size=BLOCK, max_size=3 * BLOCK + 5))
    pieces = draw(st.lists(st.integers(1, seq_len), max_size=4 * BLOCK))
    return seq_len, free, pieces


def check_any_fit(kernel, ref, case):
    seq_len, free, pieces = case
    # Open sequence b holds one filler piece, document -1 - b, of its tokens.
    open_seqs = [[(-1 - b, 0, seq_len - f)] for b, f in enumerate(free)]
    expected = ref(pieces, seq_len, open_sequences=open_seqs)
    counts = size_count_of(pieces, seq_len)
    for dtype in (np.int32, np.int64):
        piece_seq = np.empty(len(pieces), dtype=dtype)
        fit = kernel(counts, seq_len, ro(free), piece_seq)
        assert fit.seq_count.tolist() == [len(s) - (b < len(free)) for b, s in enumerate(expected)]
        assert fit.seq_free.tolist() == [seq_len - sum(p[2] for p in s) for s in expected]
        # Pieces in sorted order (longest first, equal ones in input order).
        placed = {p: b for b, s in enumerate(expected) for p in s if p[0] >= 0}
        want = [placed[p] for p in sorted_pieces(pieces, seq_len)]
        assert piece_seq.tolist() == want


ANY_FIT = pytest.mark.parametrize(
    "kernel,ref", [(best_fit, naive_bfd), (first_fit, naive_ffd)], ids=["bfd", "ffd"]
)


@ANY_FIT
@settings(max_examples=200)
@given(case=open_cases())
def test_any_fit_after_open_sequences_is_the_reference(kernel, ref, case):
    check_any_fit(kernel, ref, case)


@ANY_FIT
@settings(max_examples=60)
@given(case=deep_stack_cases())
def test_any_fit_with_deep_stacks_is_the_reference(kernel, ref, case):
    check_any_fit(kernel, ref, case)


# --------------------------------------------------------------------------
# Layout: merging open sequences, taking sequences
# --------------------------------------------------------------------------


@st.composite
def csr(draw, max_seqs=6, min_seqs=0):
    sizes = draw(st.lists(st.integers(0, 4), min_size=min_seqs, max_size=max_seqs))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offsets[-1])
    doc = np.array(
        draw(st.lists(st.integers(0, 99), min_size=total, max_size=total)), dtype=np.int64
    )
    start = np.array(
        draw(st.lists(st.integers(0, 99), min_size=total, max_size=total)), dtype=np.int64
    )
    length = np.array(
        draw(st.lists(st.integers(1, 9), min_size=total, max_size=total)), dtype=np.int32
    )
    return offsets, doc, start, length


def seqs_of(offsets, doc, start, length):
    return [
        list(zip(doc[a:b].tolist(), start[a:b].tolist(), length[a:b].tolist()))
        for a, b in zip(offsets[:-1], offsets[1:])
    ]


@settings(max_examples=150)
@given(data=st.data())
def test_merge_open_puts_the_carried_pieces_first(data):
    open_offsets, _, _, open_len = data.draw(csr())
    num_open = open_offsets.shape[0] - 1
    new = data.draw(csr(max_seqs=num_open + 4, min_seqs=num_open))
    merged = merge_open(ro(open_offsets), ro(open_len), *(ro(a, a.dtype) for a in new))
    carried = len(open_len)
    want = seqs_of(*new)
    want = [[(d + carried, s, n) for d, s, n in seq] for seq in want]
    for b in range(num_open):
        lo, hi = open_offsets[b], open_offsets[b + 1]
        want[b] = [(k, 0, int(open_len[k])) for k in range(lo, hi)] + want[b]
    assert seqs_of(*merged) == want
    assert merged.piece_len.dtype == np.int32


@settings(max_examples=150)
@given(data=st.data())
def test_take_sequences_selects_in_order(data):
    layout = data.draw(csr())
    num_seqs = layout[0].shape[0] - 1
    rows = data.draw(st.lists(st.integers(0, max(num_seqs - 1, 0)), max_size=8 if num_seqs else 0))
    taken = take_sequences(*(ro(a, a.dtype) for a in layout), ro(rows))
    assert seqs_of(*taken) == [seqs_of(*layout)[r] for r in rows]


# --------------------------------------------------------------------------
# Gather: row offsets, piece lengths, positions
# --------------------------------------------------------------------------


@settings(max_examples=100)
@given(data=st.data(), pad=st.booleans())
def test_row_offsets_piece_lengths_and_positions(data, pad):
    offsets, _, _, length = data.draw(csr())
    seqs = [length[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
    rows = data.draw(st.permutations(range(len(seqs))))
    pad_to = 40 if pad else 0
    out = row_offsets(ro(rows), ro(offsets), ro(length, np.int32), pad_to)
    want_len = [pad_to if pad else sum(seqs[r]) for r in rows]
    assert out.tolist() == np.concatenate([[0], np.cumsum(want_len, dtype=np.int64)]).tolist()
    len_offsets, len_values = gather_piece_lengths(ro(rows), ro(offsets), ro(length, np.int32))
    assert [len_values[a:b].tolist() for a, b in zip(len_offsets[:-1], len_offsets[1:])] == [
        seqs[r] for r in rows
    ]
    positions = position_ids(len_offsets, len_values, out)
    want = []
    for r, n in zip(rows, want_len):
        row = [i for k in seqs[r] for i in range(k)]
        want.extend(row + [0] * (n - len(row)))
    assert positions.tolist() == want
