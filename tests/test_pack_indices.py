"""``pack_table(table, L, indices=...)``: a selection or permutation of the
rows, packed in that order without copying the table, exactly as if the
rows had been taken first."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bfpack

from tokens import token_table

SEQ_LEN = 16


@st.composite
def tables_and_indices(draw):
    lengths = draw(st.lists(st.integers(0, 3 * SEQ_LEN), min_size=1, max_size=30))
    table = token_table(np.array(lengths), columns=("input_ids", "labels"))
    n = len(lengths)
    indices = draw(st.lists(st.integers(0, n - 1), max_size=2 * n))  # repeats allowed
    chunked = draw(st.booleans())
    if chunked and n > 1:  # two chunks, as a concatenated dataset has
        table = pa.concat_tables([table.slice(0, n // 2), table.slice(n // 2)])
    return table, np.array(indices, dtype=draw(st.sampled_from([np.int64, np.uint64, np.int32])))


@given(tables_and_indices(), st.sampled_from(["split", "truncate"]), st.booleans())
def test_indices_are_the_rows_taken_first(case, long_docs, extras):
    table, indices = case
    options = dict(columns=["input_ids", "labels"], long_docs=long_docs, seed=3)
    if extras:
        options.update(pad_value=0, position_ids=True)
    got = bfpack.pack_table(table, SEQ_LEN, indices=indices, **options)
    expected = bfpack.pack_table(table.take(pa.array(indices, pa.int64())), SEQ_LEN, **options)
    assert got.equals(expected)


def test_default_is_every_row_in_order():
    table = token_table(np.array([5, 20, 0, 7]))
    assert bfpack.pack_table(table, SEQ_LEN, indices=np.arange(4)).equals(
        bfpack.pack_table(table, SEQ_LEN)
    )


def test_an_arrow_array_of_indices():
    table = token_table(np.array([5, 20, 0, 7]))
    idx = pa.chunked_array([pa.array([3, 1], pa.uint64())])  # as datasets stores them
    assert bfpack.pack_table(table, SEQ_LEN, indices=idx).equals(
        bfpack.pack_table(table.take([3, 1]), SEQ_LEN)
    )


@pytest.mark.parametrize(
    "indices, error, match",
    [
        ([0, 4], ValueError, r"indices\[1\] = 4 is outside \[0, 4\)"),
        ([-1], ValueError, r"indices\[0\] = -1"),
        ([[0, 1]], ValueError, "indices must be 1-D"),
        ([0.5], TypeError, "indices must hold integer indices"),
    ],
)
def test_bad_indices(indices, error, match):
    table = token_table(np.array([5, 20, 0, 7]))
    with pytest.raises(error, match=match):
        bfpack.pack_table(table, SEQ_LEN, indices=indices)
