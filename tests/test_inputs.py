"""Inputs a hostile user tries: what ``seq_len`` costs in memory,
masked arrays, pad values of every column type, and messages that name the
real problem."""

import json
import os
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bfpack
from bfpack import _memory
from bfpack.analysis import _edges

from naive import naive_bfd, naive_concat

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

# ---------------------------------------------------------------------------
# seq_len: memory follows what is open, and a seq_len that cannot fit is refused

MEMORY_PROBE = r"""
import json, sys
import numpy as np
import bfpack

def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))

seq_len, method = int(sys.argv[1]), sys.argv[2]
bfpack.pack(np.arange(1, 50), 16, method=method)  # compile first
lengths = np.random.default_rng(0).integers(1, 10**6, 10)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = peak()
plan = bfpack.pack(lengths, seq_len, method=method)
assert int(plan.piece_len.sum()) == int(lengths.sum())
print(json.dumps({"before": before, "peak": peak()}))
"""


def _peak_memory(seq_len, method):
    """Peak resident bytes of a process packing 10 documents, and before the pack."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs /proc/self/clear_refs to reset the peak")
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(seq_len), method],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(JIT_DISABLED, reason="kernels as Python would loop 2**24 times for minutes")
def test_seq_len_2_24_with_ten_documents_stays_under_1_gb():
    # Was 1.1 GB (the stack pool alone took 512 bytes of address space per
    # token of seq_len); now the arrays indexed by length, about 24 bytes.
    seq_len = 2**24
    memory = _peak_memory(seq_len, "bfd")
    assert memory["peak"] < 2**30, memory
    assert memory["peak"] - memory["before"] <= _memory.SEQ_LEN_BYTES * seq_len, memory


@pytest.mark.slow
@pytest.mark.skipif(JIT_DISABLED, reason="kernels as Python would loop 2**22 times")
@pytest.mark.parametrize("method", ["bfd", "ffd", "concat"])
def test_working_memory_per_token_of_seq_len_is_bounded(method):
    # Just past a power of two, BFD's tree is at its largest relative to seq_len.
    seq_len = 2**22 + 1
    memory = _peak_memory(seq_len, method)
    # Beyond the arrays indexed by length, a few small ones.
    slack = 2**20
    assert memory["peak"] - memory["before"] <= _memory.SEQ_LEN_BYTES * seq_len + slack, memory


@pytest.fixture
def one_mib(monkeypatch):
    """A machine of 1 MiB: seq_len up to 2**20 // 32."""
    monkeypatch.setattr(_memory, "memory_limit", lambda: 2**20)
    return 2**20 // _memory.SEQ_LEN_BYTES


def test_a_seq_len_that_cannot_fit_is_refused_up_front(one_mib, tmp_path):
    table = pa.table({"ids": [[1, 2, 3]]})
    pq.write_table(table, tmp_path / "src.parquet")
    spec = bfpack.OutputSpec.for_schema(table.schema)
    calls = [
        lambda n: bfpack.pack([3, 4], n),
        lambda n: bfpack.pack_table(table, n),
        lambda n: bfpack.StreamPacker(n),
        lambda n: bfpack.TableStreamPacker(n, spec),
        lambda n: bfpack.compare([3, 4], n),
        lambda n: bfpack.pack_parquet(tmp_path / "src.parquet", tmp_path / "out", n),
    ]
    message = (
        rf"seq_len={one_mib + 1} needs 1\.0 MiB of working memory \(32 bytes per "
        rf"token of seq_len\), more than the 1\.0 MiB of this machine; seq_len can "
        rf"be at most {one_mib} here"
    )
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call(one_mib + 1)
    assert not (tmp_path / "out").exists()
    assert bfpack.pack([3, 4], one_mib).num_sequences == 1


def test_the_memory_limit_is_the_lower_of_the_machine_and_its_container(tmp_path, monkeypatch):
    physical = _memory.memory_limit.__wrapped__()
    assert physical is None or physical > 2**20
    limits = [tmp_path / "v2", tmp_path / "v1"]
    monkeypatch.setattr(_memory, "CGROUP_MEMORY_LIMITS", tuple(map(str, limits)))
    limits[0].write_text("max\n")  # cgroup v2 without a limit
    limits[1].write_text(f"{2**20}\n")
    assert _memory.memory_limit.__wrapped__() == 2**20
    limits[1].write_text(f"{2**70}\n")  # cgroup v1 without a limit: a huge number
    assert _memory.memory_limit.__wrapped__() == (physical or 2**70)


# ---------------------------------------------------------------------------
# Layouts that cannot be allocated (concat said "negative dimensions")


@pytest.mark.parametrize(
    "lengths,seq_len,method",
    [
        ([2**62, 2**62 - 1], 2, "concat"),  # the sequence count overflowed int64
        ([2**63 - 1], 2**20, "concat"),
        ([2**63 - 1], 2**20, "bfd"),  # was a MemoryError for 64 TiB
        ([2**40, 2**40], 1, "ffd"),
    ],
)
def test_a_layout_too_large_for_memory_is_a_value_error(lengths, seq_len, method):
    with pytest.raises(ValueError, match=r"these documents make [\d,]+ pieces in [\d,]+ sequences"):
        bfpack.pack(lengths, seq_len, method=method)
    with pytest.raises(ValueError, match="whose layout needs"):
        bfpack.StreamPacker(seq_len, method=method).step(lengths)


def test_huge_documents_truncated_fit():
    plan = bfpack.pack([2**61, 2**61], 3, long_docs="truncate")
    assert plan.piece_len.tolist() == [3, 3]


@settings(max_examples=60)
@given(
    # At most a few hundred thousand pieces: the test allocates them.
    lengths=st.lists(st.integers(0, 2**38), min_size=1, max_size=3),
    seq_len=st.integers(2**20, 2**24),
)
def test_concat_of_long_documents_is_exact(lengths, seq_len):
    total = sum(lengths)
    plan = bfpack.pack(lengths, seq_len, method="concat")
    assert plan.num_sequences == -(-total // seq_len)
    assert int(plan.seq_fill.astype(np.int64).sum()) == total
    if plan.num_pieces < 1000:
        expected = naive_concat(lengths, seq_len)
        assert plan.seq_offsets.tolist() == np.cumsum([0] + [len(s) for s in expected]).tolist()


# ---------------------------------------------------------------------------
# Masked arrays (the mask was ignored: 1,003,006 tokens packed)


def test_a_masked_array_with_masked_entries_is_refused_like_nulls():
    lengths = np.ma.masked_array([3000, 999999, 7, 5], mask=[0, 1, 0, 1])
    match = r"lengths has 2 masked values; fill them \(e\.g\. lengths\.filled\(0\)\) or drop them"
    with pytest.raises(ValueError, match=match):
        bfpack.pack(lengths, 2048)
    with pytest.raises(ValueError, match="lengths has 2 masked values"):
        bfpack.StreamPacker(2048).step(lengths)
    with pytest.raises(ValueError, match="seq_lengths has 2 masked values"):
        bfpack.cu_seqlens(lengths)
    plan = bfpack.pack([3000, 7], 2048)
    with pytest.raises(ValueError, match="rows has 1 masked values"):
        plan.take(np.ma.masked_array([0, 1], mask=[0, 1]))
    with pytest.raises(ValueError, match="bins has 1 masked values"):
        bfpack.truncation_profile([3, 40], 8, bins=np.ma.masked_array([0, 5, 9], mask=[0, 1, 0]))


@given(hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(0, 5000)))
def test_an_unmasked_masked_array_packs_as_its_data(data):
    for mask in (np.ma.nomask, np.zeros(data.shape, bool)):
        plan = bfpack.pack(np.ma.masked_array(data, mask=mask), 2048)
        assert plan.stats() == bfpack.pack(data, 2048).stats()
        assert plan.piece_doc.tolist() == bfpack.pack(data, 2048).piece_doc.tolist()


# ---------------------------------------------------------------------------
# Containers numpy cannot read as an array ("got an array of shape ()")


@pytest.mark.parametrize(
    "lengths,match",
    [
        ((n for n in [3, 4]), r"got generator; make an array of it first, e\.g\. np\.fromiter"),
        (iter([3, 4]), r"got list_iterator; make an array of it first"),
        ({3, 4}, r"got set$"),
        ({3: 1}, r"got dict$"),
        ("34", r"got str$"),
        (b"34", r"got bytes$"),
        (None, r"got NoneType$"),
        (object(), r"got object$"),
    ],
    ids=["generator", "iterator", "set", "dict", "str", "bytes", "None", "object"],
)
def test_lengths_that_are_not_an_array_are_type_errors(lengths, match):
    with pytest.raises(TypeError, match=r"lengths must be a list or 1-D array of token counts, "):
        bfpack.pack(lengths, 8)
    with pytest.raises(TypeError, match=match):
        bfpack.pack(lengths, 8)


def test_a_range_and_a_tuple_are_arrays():
    assert bfpack.pack(range(5), 8).stats().tokens == 10
    assert bfpack.pack((3, 4), 8).stats().tokens == 7


# ---------------------------------------------------------------------------
# Duplicate column names (KeyError: Column a does not exist in schema)


def test_duplicate_packed_column_names_are_named():
    table = pa.table([pa.array([[1]]), pa.array([[2]]), pa.array([[3]])], names=["a", "a", "b"])
    match = r"the table has 2 columns named 'a'; rename them \(Table\.rename_columns\)"
    with pytest.raises(ValueError, match=match):
        bfpack.pack_table(table, 4)
    with pytest.raises(ValueError, match=match):
        bfpack.pack_table(table, 4, columns=["b", "a"])
    with pytest.raises(ValueError, match=match):
        bfpack.truncation_profile(table, 4, column="a")
    spec = bfpack.OutputSpec.for_schema(table.select([0]).schema)
    with pytest.raises(ValueError, match=match):
        bfpack.TableStreamPacker(4, spec).step(table)
    # A duplicate that is not packed does not matter.
    assert bfpack.pack_table(table, 4, columns="b")["b"].to_pylist() == [[3]]


# ---------------------------------------------------------------------------
# Pad values: every column type, float range included, before any data is read


def _float_table(typ):
    values = np.array([1, 2], np.float16) if typ == pa.float16() else pa.array([1.0, 2.0]).cast(typ)
    ids = pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), pa.array([7, 8], pa.int32()))
    return pa.table(
        {"ids": ids, "w": pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), values)}
    )


@pytest.mark.parametrize("typ", [pa.float16(), pa.float32(), pa.float64()])
@pytest.mark.parametrize("pad", [1.5, np.float32(-0.25), np.float64(2.0), 0, np.int8(3)])
def test_a_float_column_takes_float_pad_values(typ, pad):
    out = bfpack.pack_table(_float_table(typ), 4, pad_value={"ids": 0, "w": pad})
    assert out["w"].to_pylist() == [[1.0, 2.0, float(pad), float(pad)]]
    assert out["ids"].to_pylist() == [[7, 8, 0, 0]]


@pytest.mark.parametrize(
    "typ,pad,exc,match",
    [
        (
            pa.float32(),
            1e60,
            ValueError,
            r"pad_value 1e\+60 does not fit column 'w' of type float32",
        ),
        (pa.float32(), 10**60, ValueError, r"pad_value 1\.000e\+60 does not fit"),
        (pa.float64(), 10**400, ValueError, r"pad_value 1\.000e\+400 does not fit"),
        (
            pa.float16(),
            65520.0,
            ValueError,
            r"pad_value 65520\.0 does not fit .* \[-65504\.0, 65504\.0\]",
        ),
        (pa.float16(), np.float64(-1e5), ValueError, "does not fit column 'w' of type float16"),
        (pa.float32(), float("nan"), ValueError, r"pad_value for 'w' is nan; pad with a finite"),
        (pa.float64(), float("-inf"), ValueError, r"pad_value for 'w' is -inf"),
        (
            pa.float32(),
            True,
            TypeError,
            r"pad_value for 'w' must be a number \(the column holds float32\)",
        ),
        (pa.float32(), "0", TypeError, r"pad_value for 'w' must be a number"),
        (pa.float32(), Decimal(1), TypeError, r"pad_value for 'w' must be a number"),
    ],
)
def test_bad_pad_values_for_float_columns(typ, pad, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(_float_table(typ), 4, pad_value={"ids": 0, "w": pad})


def test_a_float_pad_value_for_an_integer_column_is_a_type_error():
    with pytest.raises(
        TypeError,
        match=r"pad_value for 'ids' must be an integer \(the column holds int32\), got 0\.0",
    ):
        bfpack.pack_table(_float_table(pa.float32()), 4, pad_value=0.0)


def test_values_that_round_to_the_largest_float_fit():
    largest = float(np.finfo(np.float32).max)
    out = bfpack.pack_table(
        _float_table(pa.float32()), 4, pad_value={"ids": 0, "w": largest * (1 + 2**-30)}
    )
    assert out["w"].to_pylist()[0][-1] == largest


def test_pad_values_are_checked_before_any_data_is_read(tmp_path):
    table = _float_table(pa.float32())
    pq.write_table(table, tmp_path / "src.parquet")
    for pad in (10**400, 1e60, float("nan")):
        with pytest.raises(ValueError, match="pad_value"):
            bfpack.pack_parquet(
                tmp_path / "src.parquet", tmp_path / "out", 4, pad_value={"ids": 0, "w": pad}
            )
        assert not (tmp_path / "out").exists()
    manifest = bfpack.pack_parquet(
        tmp_path / "src.parquet", tmp_path / "out", 4, pad_value={"ids": 0, "w": 0.5}
    )
    assert manifest["options"]["pad_value"] == {"ids": 0, "w": 0.5}
    out = pq.read_table(tmp_path / "out")
    assert out["w"].to_pylist() == [[1.0, 2.0, 0.5, 0.5]]


# ---------------------------------------------------------------------------
# cu_seqlens and max_seqlen took negative and fractional lengths


@pytest.mark.parametrize(
    "seq_lengths,exc,match",
    [
        ([3, -1, 4], ValueError, r"seq_lengths\[1\] = -1 is negative"),
        ([[3, -1], [2]], ValueError, r"seq_lengths\[1\] = -1 is negative"),
        ([[3, 2.5], [2]], ValueError, r"seq_lengths\[0\]\[1\] = 2\.5 is not a whole number"),
        ([2**31, -(2**31) + 5], ValueError, "is negative"),
        (pa.array([[3, -2]]), ValueError, "is negative"),
        ((n for n in [3]), TypeError, "got generator"),
    ],
)
def test_cu_seqlens_refuses_what_is_not_a_length(seq_lengths, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.cu_seqlens(seq_lengths)
    with pytest.raises(exc, match=match):
        bfpack.max_seqlen(seq_lengths)


# ---------------------------------------------------------------------------
# Bin edges of truncation_profile: NaN became -2**63, 0.5 became 0, 2**70 overflowed


@pytest.mark.parametrize(
    "bins,edges",
    [
        ([0.5, 10.5, 50], [1, 11, 50]),  # float edges rounded up: the same integer bins
        ([0, 10, np.inf], [0, 10, 2**63 - 1]),
        ([-np.inf, 10], [-(2**63), 10]),
        ([0, 2**70], [0, 2**63 - 1]),
        (np.array([0, 10, 2**64 - 1], np.uint64), [0, 10, 2**63 - 1]),
        (np.array([1, 5], np.int8), [1, 5]),
        ([0.2, 0.7, 20], [1, 1, 20]),  # an empty bin
    ],
)
def test_bin_edges(bins, edges):
    got = _edges(np.array([3, 10]), bins)
    assert got.dtype == np.int64 and got.tolist() == edges


@settings(max_examples=100)
@given(
    lengths=st.lists(st.integers(0, 200), min_size=1, max_size=30),
    edges=st.lists(st.floats(-10, 300, allow_nan=False), min_size=2, max_size=6, unique=True),
)
def test_float_bin_edges_bin_lengths_as_floats_would(lengths, edges):
    edges = sorted(edges)
    prof = bfpack.truncation_profile(lengths, 64, ("concat",), bins=edges).to_pydict()
    expected = [
        sum(edges[i] <= n < edges[i + 1] for n in lengths if n > 0) for i in range(len(edges) - 1)
    ]
    assert prof["documents"] == [e for e in expected if e]


@pytest.mark.parametrize(
    "bins,exc,match",
    [
        ([0, np.nan, 20], ValueError, "bins holds NaN"),
        ([10, 5, 20], ValueError, "increasing bin edges"),
        ([True, False], TypeError, "got dtype bool"),
        (["a", "b"], TypeError, "got dtype <U1"),
        ({1, 2}, TypeError, "bins must be an integer, got set"),
        (iter([1, 2]), TypeError, "bins must be an integer, got list_iterator"),
    ],
)
def test_bad_bin_edges(bins, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.truncation_profile([3, 40], 8, bins=bins)


# ---------------------------------------------------------------------------
# Odd numeric inputs, found with hypothesis: every container of the same
# values packs the same, or is refused with TypeError/ValueError.


@settings(max_examples=150)
@given(
    values=st.lists(
        st.one_of(
            st.integers(-5, 3000),
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.integers(2**62, 2**64),
        ),
        max_size=8,
    ),
    seq_len=st.integers(1, 2048),
)
def test_odd_lengths_pack_exactly_or_are_refused(values, seq_len):
    try:
        plan = bfpack.pack(values, seq_len)
    except (TypeError, ValueError):
        return
    lengths = [int(v) for v in values]
    assert all(v >= 0 and v == int(v) for v in values)
    if sum(lengths) < 10**6:
        expected = naive_bfd(lengths, seq_len)
        assert plan.num_sequences == len(expected)
