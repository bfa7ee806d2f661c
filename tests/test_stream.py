"""Tests of :class:`bfpack.StreamPacker` (windows of lengths) and
:class:`bfpack.TableStreamPacker` (windows of Arrow tables), against the
slow stream reference in ``naive.py``."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
from bfpack import METHODS, OutputSpec, Packing, StreamPacker, TableStreamPacker
from bfpack.corpus import web_like_lengths
from bfpack.parquet._source import ParquetSource
from bfpack.stream import default_max_open, length_windows, windows

from naive import cut_counts, naive_stream
from plans import as_lists
from tokens import COLUMNS, check_packed, token_table


def run_stream(windows, seq_len, method="bfd", long_docs="split", max_open=4096):
    """Feed ``windows`` to a StreamPacker; return every step's Packing and the packer."""
    packer = StreamPacker(seq_len, method=method, long_docs=long_docs, max_open=max_open)
    plans = []
    for i, lengths in enumerate(windows):
        plan = packer.step(np.asarray(lengths, dtype=np.int64), last=i == len(windows) - 1)
        assert isinstance(plan, Packing) and plan.counts is None
        assert packer.num_open <= (max_open if METHODS[method].streams else 0)
        plans.append(plan)
    assert packer.num_open == 0
    return plans, packer


def expected_stats(windows, emitted, seq_len, method, long_docs):
    """The stream's statistics, counted from the lengths and the reference's
    emitted sequences alone."""
    lengths = np.array([n for w in windows for n in w], dtype=np.int64)
    keep = (
        lengths
        if not METHODS[method].cuts_by_long_docs or long_docs == "split"
        else np.minimum(lengths, seq_len)
    )
    seqs = [s for step in emitted for s in step]
    truncated, cuts, dropped = cut_counts(lengths, seqs)
    packed = int(keep.sum())
    return dict(
        method=method,
        long_docs=long_docs,
        seq_len=seq_len,
        documents=len(lengths),
        empty_documents=int((lengths == 0).sum()),
        tokens=int(lengths.sum()),
        tokens_packed=packed,
        sequences=len(seqs),
        lower_bound=-(-packed // seq_len),
        excess_sequences=len(seqs) - -(-packed // seq_len),
        padding_tokens=len(seqs) * seq_len - packed,
        documents_truncated=truncated,
        truncation_cuts=cuts,
        tokens_dropped=dropped,
    )


@st.composite
def streams(draw):
    seq_len = draw(st.sampled_from([1, 2, 3, 7, 16, 50]))
    one = st.one_of(
        st.integers(0, seq_len),
        st.integers(1, max(1, seq_len // 4)),
        st.integers(0, 3 * seq_len + 1),
    )
    windows = draw(st.lists(st.lists(one, max_size=25), min_size=1, max_size=6))
    max_open = draw(st.sampled_from([0, 1, 2, 5, 4096]))
    long_docs = draw(st.sampled_from(["split", "truncate"]))
    method = draw(st.sampled_from(sorted(METHODS)))
    return windows, seq_len, method, long_docs, max_open


@settings(max_examples=200)
@given(streams())
def test_steps_are_the_reference_stream(case):
    windows, seq_len, method, long_docs, max_open = case
    plans, packer = run_stream(windows, seq_len, method, long_docs, max_open)
    ref = naive_stream(
        windows, seq_len, method, long_docs, max_open, streams=METHODS[method].streams
    )
    assert [as_lists(p) for p in plans] == ref
    got = packer.stats().to_dict()
    want = expected_stats(windows, ref, seq_len, method, long_docs)
    assert {k: got[k] for k in want} == want
    assert got["fill"] == pytest.approx(
        want["tokens_packed"] / (want["sequences"] * seq_len) if want["sequences"] else 1.0
    )


@pytest.mark.parametrize(
    "max_open,long_docs", [(0, "split"), (1, "truncate"), (16, "split"), (4096, "truncate")]
)
def test_medium_stream_is_the_reference(max_open, long_docs):
    seq_len = 512
    lengths = web_like_lengths(6_000, seed=3) // 4
    lengths[::97] = 0
    windows = np.array_split(lengths, [1000, 1000, 1001, 3000, 4500])
    plans, _ = run_stream(windows, seq_len, "bfd", long_docs, max_open)
    ref = naive_stream(windows, seq_len, "bfd", long_docs, max_open)
    assert [as_lists(p) for p in plans] == ref


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("long_docs", ["split", "truncate"])
def test_one_window_is_the_global_pack(method, long_docs):
    lengths = web_like_lengths(5000, seed=4)
    plan = bfpack.pack(lengths, 2048, method=method, long_docs=long_docs)
    step = StreamPacker(2048, method=method, long_docs=long_docs).step(lengths, last=True)
    for name in ("seq_offsets", "piece_doc", "piece_start", "piece_len", "seq_fill"):
        np.testing.assert_array_equal(getattr(step, name), getattr(plan, name), err_msg=name)
        assert not getattr(step, name).flags.writeable


def test_stats_before_the_last_window_count_written_sequences_only():
    packer = StreamPacker(10, max_open=4)
    plan = packer.step([3, 4, 10, 25])
    s = packer.stats()
    assert s.sequences == plan.num_sequences == 3
    assert packer.num_open == 2
    open_tokens = s.tokens_packed - int(plan.seq_fill.sum())
    assert open_tokens == 3 + 4 + 5
    assert s.padding_tokens == s.sequences * 10 - (s.tokens_packed - open_tokens)
    plan = packer.step([], last=True)
    assert packer.num_open == 0
    assert packer.stats().sequences == s.sequences + plan.num_sequences
    assert packer.stats().padding_tokens == packer.stats().sequences * 10 - 42


def test_empty_windows_keep_the_open_sequences():
    packer = StreamPacker(10, max_open=8)
    assert packer.step([3, 4]).num_sequences == 0 and packer.num_open == 1
    assert packer.step([]).num_sequences == 0 and packer.num_open == 1
    plan = packer.step([], last=True)
    assert as_lists(plan) == [[(1, 0, 4), (0, 0, 3)]]


def test_documents_are_numbered_across_the_stream():
    packer = StreamPacker(10, max_open=8)
    assert packer.step([12]).num_sequences == 1  # doc 0: 10 + 2, the 2 stays open
    plan = packer.step([0, 5], last=True)  # docs 1 (empty) and 2
    assert as_lists(plan) == [[(0, 10, 2), (2, 0, 5)]]


def test_non_streaming_methods_ignore_max_open():
    for method in (m for m in METHODS if not METHODS[m].streams):
        packer = StreamPacker(10, method=method, max_open=100)
        packer.step([3, 4])
        assert packer.num_open == 0 and packer.max_open == 0


def test_take_numbers_and_reorders_sequences():
    plan = bfpack.pack([8, 6, 3, 1, 12], 10)
    sub = plan.take([2, 0, 2])
    assert as_lists(sub) == [as_lists(plan)[2], as_lists(plan)[0], as_lists(plan)[2]]
    assert sub.seq_fill.tolist() == plan.seq_fill[[2, 0, 2]].tolist()
    assert sub.take([]).num_sequences == 0
    with pytest.raises(ValueError, match="selection of sequences"):
        sub.stats()
    with pytest.raises(ValueError, match=rf"rows\[1\] = 9 is outside \[0, {plan.num_sequences}\)"):
        plan.take([0, 9])
    with pytest.raises(TypeError, match="integer indices"):
        plan.take([0.5])


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(seq_len=0), ValueError, "seq_len must be between 1"),
        (dict(seq_len="8"), TypeError, "seq_len must be an integer number of tokens"),
        (dict(seq_len=8, long_docs="drop"), ValueError, "long_docs must be one of"),
        (dict(seq_len=8, method="nf"), ValueError, "method must be one of 'bfd', 'ffd', 'concat'"),
        (dict(seq_len=8, max_open=-1), ValueError, "max_open must be >= 0, got -1"),
        (dict(seq_len=8, max_open=1.5), TypeError, "max_open must be an integer, got float"),
        (dict(seq_len=8, max_open=True), TypeError, "max_open must be an integer, got a bool"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        StreamPacker(**kwargs)


def test_numpy_integer_arguments():
    packer = StreamPacker(np.int32(10), max_open=np.int64(4))
    assert (packer.seq_len, packer.max_open) == (10, 4)
    assert type(packer.max_open) is int


def test_bad_lengths_and_last():
    packer = StreamPacker(8)
    with pytest.raises(ValueError, match=r"lengths\[1\] = -2 is negative"):
        packer.step([1, -2])
    with pytest.raises(TypeError, match="integer token counts"):
        packer.step(["a"])
    with pytest.raises(TypeError, match="last must be True or False"):
        packer.step([1], last=1)
    # A refused window changes nothing.
    assert packer.stats().documents == 0


class Cut(Exception):
    """An interrupt or failure in the middle of a step."""


def fail_once(monkeypatch, owner, name):
    """Make ``owner.name`` raise Cut on its next call only."""
    original = getattr(owner, name)

    def failing(*args, **kwargs):
        monkeypatch.setattr(owner, name, original)
        raise Cut

    monkeypatch.setattr(owner, name, failing)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_step_cut_midway_changes_nothing(monkeypatch, method):
    windows = np.split(web_like_lengths(600, seed=3) // 8, [200, 400])
    whole, _ = run_stream(windows, 128, method=method, max_open=9)
    packer = StreamPacker(128, method=method, max_open=9)
    packer.step(windows[0])
    # After the window is packed, before the sequences are numbered.
    fail_once(monkeypatch, Packing, "take")
    with pytest.raises(Cut):
        packer.step(windows[1])
    second = packer.step(windows[1])
    third = packer.step(windows[2], last=True)
    assert as_lists(second) == as_lists(whole[1])
    assert as_lists(third) == as_lists(whole[2])


# --------------------------------------------------------------------------
# TableStreamPacker
# --------------------------------------------------------------------------


def table_windows(lengths, cuts, **kwargs):
    """Token tables of ``lengths`` cut at ``cuts``, documents numbered across them."""
    bounds = [0, *cuts, len(lengths)]
    return [token_table(lengths[a:b], first_doc=a, **kwargs) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize(
    "pad,positions", [(None, False), ({"input_ids": -1, "labels": -100, "mask": 0}, True)]
)
def test_table_stream_equals_the_lengths_stream(method, pad, positions):
    seq_len = 64
    lengths = web_like_lengths(1500, seed=8) // 16
    lengths[::31] = 0
    cuts = [100, 100, 700, 701, 1200]
    windows = table_windows(lengths, cuts)
    spec = OutputSpec.for_schema(
        windows[0].schema, columns=list(COLUMNS), pad_value=pad, position_ids=positions
    )
    packer = TableStreamPacker(seq_len, spec, method=method, max_open=7)
    ref = StreamPacker(seq_len, method=method, max_open=7)
    outs = []
    for i, (w, lens) in enumerate(zip(windows, np.split(lengths, cuts))):
        last = i == len(windows) - 1
        out = packer.step(w, last=last)
        plan = ref.step(lens, last=last)
        assert out.num_rows == plan.num_sequences
        check_packed(
            out,
            lengths,
            seq_len,
            pad=pad,
            position_ids=positions,
            long_docs="concat" if method == "concat" else "split",
            plan=plan,
            complete=False,
        )
        outs.append(out)
        assert packer.num_open == ref.num_open
        carried = packer.open_pieces
        assert carried.column_names == list(COLUMNS)
        written = sum(sum(r) for o in outs for r in o["seq_lengths"].to_pylist())
        assert (
            sum(len(r) for r in carried["input_ids"].to_pylist())
            == ref.stats().tokens_packed - written
        )
    full = pa.concat_tables(outs)
    check_packed(
        full,
        lengths,
        seq_len,
        pad=pad,
        position_ids=positions,
        long_docs="concat" if method == "concat" else "split",
    )
    assert packer.stats() == ref.stats()


def test_a_table_step_cut_midway_changes_nothing(monkeypatch):
    import bfpack.stream

    lengths = web_like_lengths(600, seed=4) // 8
    windows = table_windows(lengths, [200, 400])
    spec = OutputSpec.for_schema(windows[0].schema, columns=list(COLUMNS), position_ids=True)

    def packer():
        return TableStreamPacker(128, spec, max_open=9, seed=1)

    ref = packer()
    expected = [ref.step(w, last=i == 2) for i, w in enumerate(windows)]
    cut = packer()
    cut.step(windows[0])
    # After the packed rows are assembled, before the carried tokens are.
    calls = []
    real = bfpack.stream.assemble

    def assemble(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Cut
        return real(*args, **kwargs)

    monkeypatch.setattr(bfpack.stream, "assemble", assemble)
    with pytest.raises(Cut):
        cut.step(windows[1])
    first_only = packer()
    first_only.step(windows[0])
    assert cut.stats() == first_only.stats()
    outs = [cut.step(windows[1]), cut.step(windows[2], last=True)]
    assert [o.equals(e) for o, e in zip(outs, expected[1:])] == [True, True]
    assert cut.stats() == ref.stats()


def test_open_pieces_are_the_carried_tokens():
    spec = OutputSpec.for_schema(token_table([1]).schema, columns=["input_ids"])
    packer = TableStreamPacker(10, spec, max_open=8)
    out = packer.step(token_table([12, 3]))  # 10 | 2 + 3 open
    assert out.num_rows == 1
    pieces = packer.open_pieces
    assert pieces.column_names == ["input_ids"]
    assert sorted(map(tuple, pieces["input_ids"].to_pylist())) == [
        (10, 11),
        (100_000, 100_001, 100_002),
    ]
    rest = packer.finish()
    assert rest["seq_lengths"].to_pylist() == [[3, 2]]
    assert packer.open_pieces.num_rows == 0 and packer.num_open == 0


def test_table_stream_seed_shuffles_each_output_with_its_own_seed():
    seq_len = 32
    lengths = web_like_lengths(800, seed=9) // 20
    windows = table_windows(lengths, [400])
    spec = OutputSpec.for_schema(windows[0].schema, columns=["input_ids"])

    def run(seed):
        packer = TableStreamPacker(seq_len, spec, seed=seed, max_open=5)
        return [packer.step(windows[0]), packer.step(windows[1], last=True)]

    plain, a, b = run(None), run(3), run(3)
    for k in range(2):
        assert a[k].equals(b[k])
        assert not a[k].equals(plain[k])
        order = np.random.default_rng(3 + k).permutation(plain[k].num_rows)
        assert a[k].equals(plain[k].take(order))


def test_table_stream_ignores_other_columns_and_accepts_large_lists():
    lengths = np.array([3, 9, 4, 0, 7])
    first = token_table(lengths[:2], doc_id=True)
    second = token_table(lengths[2:], large=True, first_doc=2)
    spec = OutputSpec.for_schema(first.schema, columns=["input_ids", "mask"])
    packer = TableStreamPacker(8, spec)
    out = pa.concat_tables([packer.step(first), packer.step(second, last=True)])
    assert out.schema.field("input_ids").type == pa.list_(pa.int64())
    check_packed(out, lengths, 8, columns=["input_ids", "mask"])


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (pa.table({"labels": pa.array([[1]])}), ValueError, "the window has no column 'input_ids'"),
        (
            pa.table({"input_ids": pa.array([[1.5]])}),
            TypeError,
            "column 'input_ids' is list<item: double>, but list<item: int64>",
        ),
        (pa.table({"input_ids": pa.array([1])}), TypeError, "column 'input_ids' is int64"),
        ("not a table", TypeError, "pyarrow.Table or RecordBatch"),
    ],
)
def test_table_stream_bad_windows(bad, exc, match):
    spec = OutputSpec.for_schema(token_table([1]).schema, columns=["input_ids"])
    packer = TableStreamPacker(8, spec)
    packer.step(token_table([5]))
    with pytest.raises(exc, match=match):
        packer.step(bad)
    assert packer.num_open == 1 and packer.stats().documents == 1


def test_table_stream_bad_spec():
    with pytest.raises(TypeError, match="spec must be an OutputSpec"):
        TableStreamPacker(8, ["input_ids"])
    spec = OutputSpec.for_schema(token_table([1]).schema)
    with pytest.raises(TypeError, match="seed must be an integer"):
        TableStreamPacker(8, spec, seed="1")


# --------------------------------------------------------------------------
# Quality: close to one global BFD
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_lengths():
    return web_like_lengths(2_000_000, seed=0)


def _stream_sequences(lengths, seq_len, window, max_open):
    packer = StreamPacker(seq_len, max_open=max_open)
    total = 0
    for lo in range(0, lengths.shape[0], window):
        total += packer.step(
            lengths[lo : lo + window], last=lo + window >= lengths.shape[0]
        ).num_sequences
    assert packer.stats().sequences == total
    return total, packer.stats()


@pytest.mark.slow
@pytest.mark.parametrize("seq_len", [2048, 8192])
def test_quality_close_to_global_bfd(web_lengths, seq_len):
    plan = bfpack.pack(web_lengths, seq_len)
    best = plan.num_sequences
    carried, stats = _stream_sequences(web_lengths, seq_len, 100_000, 4096)
    alone, _ = _stream_sequences(web_lengths, seq_len, 100_000, 0)
    assert best <= carried <= best * 1.0001, (best, carried)
    assert best <= alone <= best * 1.0001, (best, alone)
    # Carrying open sequences recovers most of the per-window cost.
    assert carried - best <= alone - best
    assert stats.tokens == int(web_lengths.sum())
    assert stats.documents_truncated == plan.stats().documents_truncated


# --------------------------------------------------------------------------
# bfpack.stream.windows: any stream of tables regrouped into the windows the
# Parquet reader makes, whatever the batching.

WINDOW_COLUMNS = ["input_ids", "labels"]


def spec_of(table):
    return bfpack.OutputSpec.for_schema(table.schema, columns=WINDOW_COLUMNS)


def batches(table, cuts):
    """``table`` cut at row positions ``cuts`` (empty tables included)."""
    bounds = [0, *sorted(cuts), table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]


@st.composite
def window_streams(draw):
    lengths = np.array(draw(st.lists(st.integers(0, 50), max_size=40)), dtype=np.int64)
    table = token_table(lengths)
    cuts = draw(st.lists(st.integers(0, len(lengths)), max_size=6))
    return table, cuts, draw(st.integers(1, 200))


@given(window_streams())
def test_windows_do_not_depend_on_batching(case):
    table, cuts, window_tokens = case
    spec = spec_of(table)
    one = list(windows([table], spec, window_tokens))
    many = list(windows(batches(table, cuts), spec, window_tokens))
    assert [last for _, last in one] == [last for _, last in many]
    assert [last for _, last in one] == [False] * (len(one) - 1) + [True]
    for (a, _), (b, _) in zip(one, many):
        assert a.equals(b) and a.column_names == WINDOW_COLUMNS
    # Every window but the last reaches window_tokens with its last document only.
    for w, last in one:
        n = np.array([len(x) for x in w.column("input_ids").to_pylist()], dtype=np.int64)
        if not last:
            assert n.sum() >= window_tokens > n[:-1].sum()
    assert pa.concat_tables(w for w, _ in one).equals(table.select(WINDOW_COLUMNS))


@given(window_streams())
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


def test_windows_bad_arguments():
    table = token_table(np.array([3, 4]))
    spec = spec_of(table)
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        windows([table], spec, 0)
    with pytest.raises(TypeError, match="spec must be an OutputSpec"):
        windows([table], WINDOW_COLUMNS, 10)
    with pytest.raises(ValueError, match="a table of the stream has no column 'labels'"):
        list(windows([table.select(["input_ids"])], spec, 10))


def test_default_max_open():
    assert default_max_open(2048, 1 << 24) == 2048
    assert default_max_open(128, 1 << 30) == 4096
    assert default_max_open(2048, 1000) == 16
