"""``bfpack.stream.windows``: any stream of tables regrouped into the windows
the Parquet reader makes, whatever the batching."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
from bfpack._source import ParquetSource
from bfpack.stream import default_max_open, length_windows, windows

from tokens import token_table

COLUMNS = ["input_ids", "labels"]


def spec_of(table):
    return bfpack.OutputSpec.for_schema(table.schema, columns=COLUMNS)


def batches(table, cuts):
    """``table`` cut at row positions ``cuts`` (empty tables included)."""
    bounds = [0, *sorted(cuts), table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]


@st.composite
def streams(draw):
    lengths = np.array(draw(st.lists(st.integers(0, 50), max_size=40)), dtype=np.int64)
    table = token_table(lengths)
    cuts = draw(st.lists(st.integers(0, len(lengths)), max_size=6))
    return table, cuts, draw(st.integers(1, 200))


@given(streams())
def test_windows_do_not_depend_on_batching(case):
    table, cuts, window_tokens = case
    spec = spec_of(table)
    one = list(windows([table], spec, window_tokens))
    many = list(windows(batches(table, cuts), spec, window_tokens))
    assert [last for _, last in one] == [last for _, last in many]
    assert [last for _, last in one] == [False] * (len(one) - 1) + [True]
    for (a, _), (b, _) in zip(one, many):
        assert a.equals(b) and a.column_names == COLUMNS
    # Every window but the last reaches window_tokens with its last document only.
    for w, last in one:
        n = np.array([len(x) for x in w.column("input_ids").to_pylist()], dtype=np.int64)
        if not last:
            assert n.sum() >= window_tokens > n[:-1].sum()
    assert pa.concat_tables(w for w, _ in one).equals(table.select(COLUMNS))


@settings(deadline=None)
@given(streams())
def test_lengths_are_cut_into_the_windows_of_their_tables(case):
    # One rule cuts tables (pack_parquet) and bare lengths (sequences_of_lengths).
    table, _, window_tokens = case
    lengths = np.array([len(x) for x in table.column("input_ids").to_pylist()], dtype=np.int64)
    cut = length_windows(lengths, window_tokens)
    expected = [w.num_rows for w, _ in windows([table], spec_of(table), window_tokens)]
    assert [w.shape[0] for w in cut] == (expected if len(lengths) else [])
    assert np.array_equal(np.concatenate([lengths[:0], *cut]), lengths)


def test_windows_are_the_parquet_readers(tmp_path):
    lengths = np.random.default_rng(1).integers(0, 300, 500)
    table = token_table(lengths)
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=37)
    spec = spec_of(table)
    expected = list(ParquetSource.open(tmp_path / "a.parquet").windows(spec, 2000))
    got = list(windows(table.to_batches(max_chunksize=53), spec, 2000))
    assert len(got) == len(expected) > 5
    for (a, la), (b, lb) in zip(got, expected):
        assert la == lb and a.equals(b)


def test_an_empty_stream_is_one_empty_window():
    spec = spec_of(token_table(np.array([3])))
    [(window, last)] = list(windows([], spec, 10))
    assert last and window.num_rows == 0 and window.schema.equals(spec.schema)


def test_bad_arguments():
    table = token_table(np.array([3, 4]))
    spec = spec_of(table)
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        windows([table], spec, 0)
    with pytest.raises(TypeError, match="spec must be an OutputSpec"):
        windows([table], COLUMNS, 10)
    with pytest.raises(ValueError, match="a table of the stream has no column 'labels'"):
        list(windows([table.select(["input_ids"])], spec, 10))


def test_default_max_open():
    assert default_max_open(2048, 1 << 24) == 2048
    assert default_max_open(128, 1 << 30) == 4096
    assert default_max_open(2048, 1000) == 16
