"""Tests of :func:`bfpack.pack_table`, :func:`bfpack.cu_seqlens` and
:func:`bfpack.max_seqlen`.

The token tables come from ``tokens.py``: every token encodes its document
and position, so the checks trace every packed token back to its source.
"""

import re
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack

from tokens import COLUMNS, STRIDE, check_packed, token_table

METHODS = list(bfpack.METHODS)
LONG_DOCS = ["split", "truncate"]


def _lengths(n, seq_len, seed=0, zeros=0.1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 3 * seq_len, n)
    lengths[rng.random(n) < zeros] = 0
    return lengths


# --------------------------------------------------------------------------
# Every token once, in the right place, with everything aligned
# --------------------------------------------------------------------------


@st.composite
def tables(draw):
    """A token table with random lengths (zeros and null lists included)
    and random packing options."""
    seq_len = draw(st.sampled_from([1, 2, 3, 5, 8, 13, 64]))
    n = draw(st.integers(0, 40))
    lengths = np.array(
        draw(
            st.lists(
                st.one_of(
                    st.integers(0, seq_len),
                    st.integers(0, 4 * seq_len + 1),
                    st.sampled_from([0, seq_len, 2 * seq_len]),
                ),
                min_size=n,
                max_size=n,
            )
        ),
        dtype=np.int64,
    )
    nulls = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool) & (
        lengths == 0
    )
    large = draw(st.booleans())
    kwargs = dict(
        method=draw(st.sampled_from(METHODS)),
        long_docs=draw(st.sampled_from(LONG_DOCS)),
        position_ids=draw(st.booleans()),
        seed=draw(st.one_of(st.none(), st.integers(0, 2**32))),
    )
    pad = draw(
        st.one_of(
            st.none(), st.integers(0, 7), st.just({"input_ids": 3, "labels": -100, "mask": 0})
        )
    )
    kwargs["pad_value"] = pad
    return lengths, nulls, large, seq_len, kwargs


@settings(max_examples=150)
@given(tables())
def test_every_token_once_in_place(case):
    lengths, nulls, large, seq_len, kwargs = case
    table = token_table(lengths, nulls=nulls, large=large)
    out = bfpack.pack_table(table, seq_len, **kwargs)
    plan = bfpack.pack(lengths, seq_len, method=kwargs["method"], long_docs=kwargs["long_docs"])
    rows = None if kwargs["seed"] is None else "any"
    # Concat cuts anywhere and keeps every token (it ignores long_docs).
    mode = "concat" if kwargs["method"] == "concat" else kwargs["long_docs"]
    pieces = check_packed(
        out,
        lengths,
        seq_len,
        long_docs=mode,
        pad=kwargs["pad_value"],
        position_ids=kwargs["position_ids"],
        plan=plan,
        rows=rows,
        large=large,
        value_types={"input_ids": pa.int64(), "labels": pa.int64(), "mask": pa.uint32()},
    )
    assert out.num_rows == plan.num_sequences
    kept = np.minimum(lengths, seq_len) if mode == "truncate" else lengths
    assert pieces[:, 2].sum() == kept.sum()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("long_docs", LONG_DOCS)
def test_medium_table_exact_plan(method, long_docs):
    seq_len = 256
    lengths = _lengths(3000, seq_len, seed=1)
    nulls = (lengths == 0) & (np.arange(len(lengths)) % 2 == 0)
    table = token_table(lengths, nulls=nulls)
    out = bfpack.pack_table(
        table,
        seq_len,
        method=method,
        long_docs=long_docs,
        pad_value={"input_ids": 0, "labels": -100, "mask": 7},
        position_ids=True,
    )
    plan = bfpack.pack(lengths, seq_len, method=method, long_docs=long_docs)
    check_packed(
        out,
        lengths,
        seq_len,
        long_docs="concat" if method == "concat" else long_docs,
        pad={"input_ids": 0, "labels": -100, "mask": 7},
        position_ids=True,
        plan=plan,
    )
    assert out.num_rows == plan.num_sequences


def test_truncate_drops_exactly_the_tail_of_long_documents():
    seq_len = 10
    lengths = np.array([25, 10, 11, 3, 0, 9, 30])
    out = bfpack.pack_table(token_table(lengths), seq_len, long_docs="truncate")
    tokens = np.sort(out["input_ids"].combine_chunks().flatten().to_numpy())
    want = np.sort(
        np.concatenate([d * STRIDE + np.arange(min(n, seq_len)) for d, n in enumerate(lengths)])
    )
    assert np.array_equal(tokens, want)


def test_small_table_by_hand():
    table = pa.table(
        {
            "ids": pa.array([[1, 2, 3], [4, 5], None, [6], []], pa.list_(pa.int64())),
            "lab": pa.array([[-1, -2, -3], [-4, -5], None, [-6], []], pa.list_(pa.int64())),
            "other": ["a", "b", "c", "d", "e"],
        }
    )
    out = bfpack.pack_table(table, 4, pad_value={"ids": 0, "lab": -100}, position_ids=True)
    assert out.to_pydict() == {
        "ids": [[1, 2, 3, 6], [4, 5, 0, 0]],
        "lab": [[-1, -2, -3, -6], [-4, -5, -100, -100]],
        "seq_lengths": [[3, 1], [2]],
        "position_ids": [[0, 1, 2, 0], [0, 1, 0, 0]],
    }
    out = bfpack.pack_table(table, 2, columns="ids")
    assert out.to_pydict() == {"ids": [[1, 2], [4, 5], [3, 6]], "seq_lengths": [[2], [2], [1, 1]]}


# Values each type holds exactly, derived from the decodable input_ids.
TYPES = {
    "int32": (pa.int32(), lambda t: t % (1 << 31)),
    "int64": (pa.int64(), lambda t: -t),
    "uint8": (pa.uint8(), lambda t: t % 251),
    "uint16": (pa.uint16(), lambda t: t % 65521),
    "uint32": (pa.uint32(), lambda t: t % (1 << 32)),
    "float32": (pa.float32(), lambda t: (t % (1 << 24)).astype(np.float64) + 0.5),
    "float64": (pa.float64(), lambda t: t.astype(np.float64) / 4),
}


@pytest.mark.parametrize("name", list(TYPES))
def test_token_types_are_kept(name):
    typ, f = TYPES[name]
    seq_len = 16
    lengths = _lengths(200, seq_len, seed=2)
    base = token_table(lengths, columns=["input_ids"], doc_id=False)
    tokens = base["input_ids"].combine_chunks().flatten().to_numpy()
    offsets = base["input_ids"].combine_chunks().offsets
    x = pa.ListArray.from_arrays(offsets, pa.array(f(tokens)).cast(typ))
    table = base.append_column("x", x)
    pad = {"input_ids": -1, "x": 5}
    out = bfpack.pack_table(table, seq_len, pad_value=pad, position_ids=True)
    assert out.schema.field("x").type == pa.list_(typ)
    ids = out["input_ids"].combine_chunks().flatten().to_numpy()
    xs = out["x"].combine_chunks().flatten().to_numpy()
    body = ids != -1
    assert np.array_equal(xs[body], pa.array(f(ids[body])).cast(typ).to_numpy())
    assert np.all(xs[~body] == 5)
    check_packed(
        out.select(["input_ids", "seq_lengths", "position_ids"]),
        lengths,
        seq_len,
        columns=["input_ids"],
        pad=-1,
        position_ids=True,
        plan=bfpack.pack(lengths, seq_len),
    )


def test_value_field_and_large_list_kept():
    lengths = _lengths(50, 8, seed=3)
    table = token_table(lengths, large=True)
    out = bfpack.pack_table(table, 8)
    for name in COLUMNS:
        assert out.schema.field(name).type == table.schema.field(name).type
    check_packed(out, lengths, 8, large=True, plan=bfpack.pack(lengths, 8))


def test_non_list_columns_are_dropped_and_default_picks_every_list_column():
    lengths = [3, 4]
    table = token_table(lengths).append_column("text", pa.array(["a", "b"]))
    out = bfpack.pack_table(table, 8)
    assert out.column_names == list(COLUMNS) + ["seq_lengths"]
    out = bfpack.pack_table(table, 8, columns=["labels", "input_ids"])
    assert out.column_names == ["labels", "input_ids", "seq_lengths"]
    assert np.array_equal(
        out["labels"].combine_chunks().flatten().to_numpy(),
        -out["input_ids"].combine_chunks().flatten().to_numpy(),
    )


def test_empty_and_all_empty_tables():
    for lengths, nulls in [([], None), ([0, 0, 0], [True, False, True])]:
        table = token_table(lengths, nulls=nulls)
        out = bfpack.pack_table(table, 8, pad_value=0, position_ids=True, seed=1)
        assert out.num_rows == 0
        assert out.column_names == list(COLUMNS) + ["seq_lengths", "position_ids"]
        assert out.schema.field("input_ids").type == pa.list_(pa.int64())
        assert out.schema.field("seq_lengths").type == pa.list_(pa.int32())


# --------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------


def test_seed_shuffles_rows_reproducibly():
    seq_len = 64
    lengths = _lengths(2000, seq_len, seed=4)
    table = token_table(lengths)
    plain = bfpack.pack_table(table, seq_len, position_ids=True)
    a = bfpack.pack_table(table, seq_len, seed=7, position_ids=True)
    b = bfpack.pack_table(table, seq_len, seed=7, position_ids=True)
    c = bfpack.pack_table(table, seq_len, seed=8, position_ids=True)
    assert a.equals(b)
    assert not a.equals(plain)
    assert not a.equals(c)
    assert plain.num_rows > 100
    # The same rows, in another order.
    for t in (a, c):
        assert sorted(map(str, t.to_pylist())) == sorted(map(str, plain.to_pylist()))
    check_packed(
        a, lengths, seq_len, position_ids=True, plan=bfpack.pack(lengths, seq_len), rows="any"
    )


def test_seed_accepts_numpy_integers():
    table = token_table(_lengths(300, 16, seed=5))
    assert bfpack.pack_table(table, 16, seed=np.int64(3)).equals(
        bfpack.pack_table(table, 16, seed=3)
    )


# --------------------------------------------------------------------------
# Sliced, chunked and batch inputs give the contiguous result
# --------------------------------------------------------------------------


def _contiguous(table):
    """The same data in fresh, unsliced, single-chunk buffers."""
    return pa.Table.from_pylist(table.to_pylist(), schema=table.schema)


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("k,m", [(0, 100), (13, 57), (99, 1), (50, 0), (1, 99)])
def test_sliced_table(k, m, large):
    seq_len = 16
    lengths = _lengths(100, seq_len, seed=6)
    nulls = (lengths == 0) & (np.arange(100) % 3 == 0)
    table = token_table(lengths, nulls=nulls, large=large)
    sliced = table.slice(k, m)
    kw = dict(pad_value=1, position_ids=True, seed=2)
    got = bfpack.pack_table(sliced, seq_len, **kw)
    assert got.equals(bfpack.pack_table(_contiguous(sliced), seq_len, **kw))
    check_packed(
        got,
        lengths[k : k + m],
        seq_len,
        pad=1,
        position_ids=True,
        first_doc=k,
        plan=bfpack.pack(lengths[k : k + m], seq_len),
        rows="any",
        large=large,
    )


def test_chunked_columns_with_empty_and_sliced_chunks():
    seq_len = 16
    lengths = _lengths(300, seq_len, seed=7)
    nulls = (lengths == 0) & (np.arange(300) % 2 == 0)
    whole = token_table(lengths, nulls=nulls, doc_id=False)
    cuts = [0, 0, 1, 40, 40, 41, 170, 299, 300, 300]
    # Tables concatenated: one chunk per piece, some of them empty.
    pieces = [whole.slice(a, b - a) for a, b in zip(cuts, cuts[1:])]
    chunked = pa.concat_tables(pieces)
    assert chunked["input_ids"].num_chunks == len(pieces)
    # Columns chunked differently from each other, with empty chunks too.
    mixed = {}
    for i, name in enumerate(COLUMNS):
        arr = whole[name].combine_chunks()
        bounds = [0, 7 * (i + 1), 7 * (i + 1), 150 + i, 300]
        chunks = [arr.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]
        mixed[name] = pa.chunked_array(
            [arr.slice(0, 0)] + chunks + [arr.slice(300, 0)], type=arr.type
        )
    mixed = pa.table(mixed)
    want = bfpack.pack_table(_contiguous(whole), seq_len, pad_value=0, position_ids=True)
    for method in METHODS:
        want = bfpack.pack_table(_contiguous(whole), seq_len, method=method, position_ids=True)
        for t in (chunked, mixed):
            got = bfpack.pack_table(t, seq_len, method=method, position_ids=True)
            assert got.equals(want), method
    check_packed(
        bfpack.pack_table(mixed, seq_len, position_ids=True),
        lengths,
        seq_len,
        position_ids=True,
        plan=bfpack.pack(lengths, seq_len),
    )


def test_all_chunks_empty():
    table = token_table([], doc_id=False)
    t = pa.table({n: pa.chunked_array([table[n].combine_chunks()] * 3) for n in COLUMNS})
    out = bfpack.pack_table(t, 4)
    assert out.num_rows == 0


def test_list_offsets_not_starting_at_zero_and_sliced_child():
    values = pa.array(np.arange(100, 120, dtype=np.int64))
    # Offsets start at 3 (a valid Arrow layout) and the child is sliced.
    a = pa.ListArray.from_arrays(pa.array([3, 5, 5, 9], pa.int32()), values.slice(2))
    out = bfpack.pack_table(pa.table({"x": a}), 4, pad_value=0)
    assert out.to_pydict() == {
        "x": [[107, 108, 109, 110], [105, 106, 0, 0]],
        "seq_lengths": [[4], [2]],
    }


def test_null_list_backed_by_values_is_empty():
    # A null slot may cover values in Arrow; they are not tokens.
    a = pa.ListArray.from_arrays(
        pa.array([0, 2, 5, 6], pa.int32()),
        pa.array([1, 2, None, 4, 5, 6], pa.int64()),
        mask=pa.array([False, True, False]),
    )
    out = bfpack.pack_table(pa.table({"x": a}), 4)
    assert out.to_pydict() == {"x": [[1, 2, 6]], "seq_lengths": [[2, 1]]}


def test_record_batch_input():
    seq_len = 32
    lengths = _lengths(200, seq_len, seed=8)
    table = token_table(lengths, nulls=lengths == 0)
    batch = table.to_batches()[0]
    assert isinstance(batch, pa.RecordBatch)
    kw = dict(pad_value=0, position_ids=True, seed=1)
    assert bfpack.pack_table(batch, seq_len, **kw).equals(bfpack.pack_table(table, seq_len, **kw))
    assert bfpack.pack_table(batch.slice(20, 100), seq_len, **kw).equals(
        bfpack.pack_table(_contiguous(table.slice(20, 100)), seq_len, **kw)
    )


def test_input_is_not_modified():
    lengths = _lengths(100, 8, seed=9)
    table = token_table(lengths)
    before = _contiguous(table)
    bfpack.pack_table(table, 8, pad_value=0, position_ids=True, seed=1)
    assert table.equals(before)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _ok_table():
    return token_table([3, 2, 0, 5])


def test_not_a_table():
    for bad in ({"x": [[1]]}, [[1, 2]], pa.array([[1]]), None):
        with pytest.raises(TypeError, match="pyarrow.Table or RecordBatch"):
            bfpack.pack_table(bad, 4)


@pytest.mark.parametrize(
    "columns,exc,match",
    [
        ("nope", ValueError, "'nope' is not in the table"),
        (["input_ids", "nope"], ValueError, "'nope' is not in the table"),
        ("doc_id", TypeError, "'doc_id' has type int64, not a list"),
        ([], ValueError, "columns is empty"),
        (["labels", "labels"], ValueError, "twice"),
    ],
)
def test_bad_columns(columns, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(_ok_table(), 4, columns=columns)


def test_no_list_column():
    with pytest.raises(ValueError, match="no list column"):
        bfpack.pack_table(pa.table({"n": [1, 2]}), 4)


@pytest.mark.parametrize(
    "values,vtype",
    [
        ([["a", "b"], ["c"]], "string"),
        ([[True], [False]], "bool"),
        ([[[1]], [[2]]], "list<item: int64>"),
    ],
)
def test_non_numeric_list_values(values, vtype):
    table = pa.table({"x": pa.array(values)})
    with pytest.raises(TypeError, match=f"holds {vtype} values"):
        bfpack.pack_table(table, 4)
    with pytest.raises(TypeError, match="'x'"):
        bfpack.pack_table(table, 4, columns=["x"])


@pytest.mark.parametrize("name", ["seq_lengths", "position_ids"])
def test_clashing_column_name(name):
    table = pa.table({"x": pa.array([[1, 2]]), name: pa.array([[1, 2]])})
    with pytest.raises(ValueError, match=f"'{name}' would clash"):
        bfpack.pack_table(table, 4)
    # Not packed: no clash.
    assert bfpack.pack_table(table, 4, columns="x").num_rows == 1


def test_mismatched_lengths_name_row_and_column():
    table = pa.table(
        {
            "a": pa.array([[1, 2], [3], [4, 5, 6], [7]]),
            "b": pa.array([[1, 2], [3], [4, 5], []]),
            "c": pa.array([[1, 2], [3], [4, 5, 6], [7]]),
        }
    )
    with pytest.raises(ValueError, match=r"row 2: column 'b' has 2 tokens but 'a' has 3"):
        bfpack.pack_table(table, 4)
    with pytest.raises(ValueError, match=r"row 2: column 'a' has 3 tokens but 'b' has 2"):
        bfpack.pack_table(table, 4, columns=["b", "a"])
    assert bfpack.pack_table(table, 4, columns=["a", "c"]).num_rows == 2
    # A null list against a non-empty one.
    t2 = pa.table({"a": pa.array([[1], None]), "b": pa.array([[1], [2]])})
    with pytest.raises(ValueError, match=r"row 1: column 'b' has 1 tokens but 'a' has 0"):
        bfpack.pack_table(t2, 4)
    # Rows count from the start of a chunked column too.
    t3 = pa.concat_tables([table.slice(0, 2), table.slice(0, 2), table.slice(2)])
    with pytest.raises(ValueError, match=r"row 4: column 'b'"):
        bfpack.pack_table(t3, 4)


def test_nulls_inside_lists():
    table = pa.table({"a": pa.array([[1, 2], [3, None]]), "b": pa.array([[1, 2], [3, 4]])})
    with pytest.raises(ValueError, match="'a' has null tokens"):
        bfpack.pack_table(table, 4)
    with pytest.raises(ValueError, match="'a' has null tokens"):
        bfpack.pack_table(table.slice(1), 4, columns="a")
    # Outside the slice, the null is not the table's.
    assert bfpack.pack_table(table.slice(0, 1), 4).num_rows == 1


@pytest.mark.parametrize(
    "typ,value",
    [
        (pa.uint16(), -1),
        (pa.uint16(), 65536),
        (pa.uint8(), 256),
        (pa.int8(), 128),
        (pa.int8(), -129),
        (pa.int32(), 2**31),
        (pa.uint32(), -1),
        (pa.int64(), 2**63),
        (pa.float16(), 70_000),
        (pa.float32(), 10**60),
        (pa.float32(), -(10**60)),
        (pa.float64(), 10**400),
    ],
)
def test_pad_value_out_of_range(typ, value):
    # float16 from numpy: pyarrow before 15 cannot cast to it.
    values = np.array([1, 2], np.float16) if typ == pa.float16() else pa.array([1, 2]).cast(typ)
    table = pa.table({"x": pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), values)})
    # Huge values are shown in scientific notation, not with 400 digits.
    shown = str(value) if len(str(value)) <= 20 else f"{Decimal(value):.3e}"
    with pytest.raises(ValueError, match=rf"pad_value {re.escape(shown)} does not fit column 'x'"):
        bfpack.pack_table(table, 4, pad_value=value)
    with pytest.raises(ValueError, match="does not fit"):
        bfpack.pack_table(table, 4, pad_value={"x": value})


@pytest.mark.parametrize(
    "typ,value",
    [
        (pa.uint16(), 65535),
        (pa.uint16(), 0),
        (pa.int32(), -(2**31)),
        (pa.uint32(), 2**32 - 1),
        (pa.int64(), 2**63 - 1),
        (pa.float32(), -1),
    ],
)
def test_pad_value_at_range_edges(typ, value):
    table = pa.table({"x": pa.array([[1, 2]], pa.list_(typ))})
    out = bfpack.pack_table(table, 4, pad_value=value)
    assert out["x"].to_pylist() == [[1, 2, value, value]]
    assert out.schema.field("x").type == pa.list_(typ)


@pytest.mark.parametrize(
    "pad,exc,match",
    [
        ({"input_ids": 0, "labels": 0}, ValueError, r"no value for column\(s\) \['mask'\]"),
        (True, TypeError, "must be an integer"),
        ({"input_ids": 0, "labels": False, "mask": 0}, TypeError, "'labels' must be an integer"),
        (1.5, TypeError, "must be an integer"),
        ("0", TypeError, "must be an integer"),
        ({"input_ids": 0, "labels": 0, "mask": np.float32(0)}, TypeError, "'mask' must be an int"),
    ],
)
def test_bad_pad_value(pad, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(_ok_table(), 4, pad_value=pad)


def test_pad_value_dict_may_name_unpacked_columns():
    out = bfpack.pack_table(
        _ok_table(), 8, columns="input_ids", pad_value={"input_ids": 9, "elsewhere": 1}
    )
    doc3 = [3 * STRIDE + i for i in range(5)]
    assert out["input_ids"].to_pylist() == [doc3 + [0, 1, 2], [STRIDE, STRIDE + 1] + [9] * 6]


@pytest.mark.parametrize(
    "seed,exc,match",
    [
        ("1", TypeError, "seed must be an integer, got str '1'"),
        (1.0, TypeError, "seed must be an integer, got float 1.0"),
        (True, TypeError, r"seed must be an integer, got a bool \(True\)"),
        (-1, ValueError, "seed must be >= 0, got -1"),
    ],
)
def test_bad_seed(seed, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(_ok_table(), 4, seed=seed)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(seq_len=0), ValueError, "seq_len"),
        (dict(seq_len="4"), TypeError, "seq_len"),
        (dict(seq_len=4, method="best"), ValueError, "method"),
        (dict(seq_len=4, long_docs="drop"), ValueError, "long_docs"),
    ],
)
def test_bad_pack_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(_ok_table(), **kwargs)


def test_float16_tokens_are_packed():
    # Regression: float16 passed validation and numba then raised
    # NotImplementedError. Tokens are moved as bits, so float16 packs like
    # any 2-byte type, padding included.
    # From numpy: pyarrow before 15 builds no float16 array from Python floats.
    x = pa.ListArray.from_arrays(
        pa.array([0, 2, 3], pa.int32()), np.array([1.5, 2, -3], np.float16)
    )
    out = bfpack.pack_table(pa.table({"x": x}), 4, pad_value=7)
    assert out.schema.field("x").type == pa.list_(pa.float16())
    assert out["x"].to_pylist() == [[1.5, 2.0, -3.0, 7.0]]
    assert out["seq_lengths"].to_pylist() == [[2, 1]]


# --------------------------------------------------------------------------
# cu_seqlens and max_seqlen
# --------------------------------------------------------------------------


def _packed():
    lengths = _lengths(400, 32, seed=10)
    return bfpack.pack_table(token_table(lengths), 32)


def test_cu_seqlens_of_a_row():
    cu = bfpack.cu_seqlens([3, 5, 2])
    assert cu.dtype == np.int32
    assert cu.tolist() == [0, 3, 8, 10]
    assert bfpack.cu_seqlens(np.array([4], dtype=np.int32)).tolist() == [0, 4]
    assert bfpack.cu_seqlens((1, 1)).tolist() == [0, 1, 2]
    m = bfpack.max_seqlen([3, 5, 2])
    assert m == 5 and type(m) is int


def test_cu_seqlens_of_a_batch():
    out = _packed()
    rows = out["seq_lengths"].to_pylist()
    flat = [n for r in rows for n in r]
    want = np.concatenate([[0], np.cumsum(flat)]).tolist()
    col = out["seq_lengths"]
    for batch in (
        rows,
        [np.array(r) for r in rows],
        col,
        col.combine_chunks(),
        pa.chunked_array(
            [
                col.combine_chunks().slice(0, 5),
                col.combine_chunks().slice(5, 0),
                col.combine_chunks().slice(5),
            ]
        ),
    ):
        cu = bfpack.cu_seqlens(batch)
        assert cu.dtype == np.int32
        assert cu.tolist() == want
        m = bfpack.max_seqlen(batch)
        assert type(m) is int and m == max(flat)
    # A slice of the batch: only its rows.
    part = col.combine_chunks().slice(3, 4)
    sub = [n for r in rows[3:7] for n in r]
    assert bfpack.cu_seqlens(part).tolist() == np.concatenate([[0], np.cumsum(sub)]).tolist()
    assert bfpack.max_seqlen(part) == max(sub)
    # Matches the flattened row layout: the tokens of row r end at cu[...].
    ids = out["input_ids"].combine_chunks()
    row_ends = np.cumsum([len(r) for r in ids.to_pylist()])
    assert set(row_ends.tolist()) <= set(want)


def test_cu_seqlens_of_a_large_list_batch():
    arr = pa.array([[2, 3], [4]], pa.large_list(pa.int32()))
    assert bfpack.cu_seqlens(arr).tolist() == [0, 2, 5, 9]
    assert bfpack.max_seqlen(pa.chunked_array([arr])) == 4


@pytest.mark.parametrize(
    "empty",
    [
        [],
        [[]],
        [[], []],
        np.array([], dtype=np.int32),
        pa.array([], pa.list_(pa.int32())),
        pa.array([[]], pa.list_(pa.int32())),
        pa.chunked_array([], pa.list_(pa.int32())),
    ],
)
def test_cu_seqlens_of_nothing(empty):
    cu = bfpack.cu_seqlens(empty)
    assert cu.dtype == np.int32 and cu.tolist() == [0]
    m = bfpack.max_seqlen(empty)
    assert type(m) is int and m == 0


def test_cu_seqlens_with_empty_rows_in_a_batch():
    assert bfpack.cu_seqlens([[], [3, 4], []]).tolist() == [0, 3, 7]
    assert bfpack.max_seqlen([[], [3, 4], []]) == 4


def test_cu_seqlens_overflow():
    with pytest.raises(ValueError, match="int32"):
        bfpack.cu_seqlens([2**31 - 1, 1])


def test_cu_seqlens_bad_input():
    with pytest.raises(TypeError):
        bfpack.cu_seqlens(["a", "b"])
    with pytest.raises(ValueError):
        bfpack.cu_seqlens(np.zeros((2, 2), dtype=np.int64))


def test_cu_seqlens_of_one_arrow_row():
    packed = bfpack.pack_table(pa.table({"x": [[1] * 5, [2] * 3, [3] * 7]}), 8)
    row = packed["seq_lengths"][0]
    np.testing.assert_array_equal(
        bfpack.cu_seqlens(row), np.concatenate([[0], np.cumsum(row.as_py())])
    )
    assert bfpack.max_seqlen(row) == max(row.as_py())


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        bfpack.pack_table(pa.table({"x": [[1, 2]]}), 4, seed=-1)


# --------------------------------------------------------------------------
# pack_table(table, L, indices=...): a selection or permutation of the rows,
# packed in that order without copying the table, as if the rows had been taken first.

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
