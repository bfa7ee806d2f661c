"""Tests of the analysis API and the plot helpers."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bfpack
import bfpack.corpus

from naive import naive_pack


def naive_cuts(lengths, L, method, long_docs):
    """Cuts inside each document, counted from the reference packing."""
    cuts = [0] * len(lengths)
    pieces = [p for seq in naive_pack(lengths, L, method, long_docs) for p in seq]
    for doc, _, _ in pieces:
        cuts[doc] += 1
    for doc, n in enumerate(lengths):
        kept = sum(p[2] for p in pieces if p[0] == doc)
        cuts[doc] = max(cuts[doc] - 1, 0) + (kept < n)
    return cuts


@settings(max_examples=40)
@given(
    lengths=st.lists(st.integers(0, 300), max_size=60),
    L=st.integers(1, 120),
    long_docs=st.sampled_from(["split", "truncate"]),
)
def test_profile_matches_direct_count(lengths, L, long_docs):
    edges = np.array([1, 2, 5, 17, 64, 129, 301])
    prof = bfpack.truncation_profile(
        lengths, L, ("concat", "bfd", "ffd"), bins=edges, long_docs=long_docs
    ).to_pydict()
    rows = list(zip(*prof.values()))
    expected = []
    for method in ("concat", "bfd", "ffd"):
        cuts = naive_cuts(lengths, L, method, long_docs)
        for lo, hi in zip(edges[:-1], edges[1:]):
            docs = [i for i, n in enumerate(lengths) if lo <= n < hi]
            if docs:
                expected.append(
                    (
                        method,
                        lo,
                        hi,
                        len(docs),
                        np.mean([cuts[i] for i in docs]),
                        np.mean([cuts[i] > 0 for i in docs]),
                        np.mean([-(-lengths[i] // L) - 1 for i in docs]),
                    )
                )
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert got[:4] == want[:4]
        np.testing.assert_allclose(got[4:], want[4:])


def test_bfd_cuts_only_what_it_must():
    lengths = bfpack.corpus.web_like_lengths(50_000, seed=2)
    prof = bfpack.truncation_profile(lengths, 2048, ("bfd",), bins=20).to_pydict()
    np.testing.assert_allclose(prof["cuts_per_document"], prof["min_cuts_per_document"])
    concat = bfpack.truncation_profile(lengths, 2048, ("concat",), bins=20).to_pydict()
    assert sum(concat["cuts_per_document"]) > sum(prof["cuts_per_document"])


def test_default_bins_are_powers_of_two():
    prof = bfpack.truncation_profile([1, 3, 4, 100], 8).to_pydict()
    assert prof["length_lo"][:3] == [1, 2, 4]
    assert all(hi == 2 * lo for lo, hi in zip(prof["length_lo"], prof["length_hi"]))
    assert sum(prof["documents"]) == 2 * 4  # two methods


def test_profile_of_a_table_equals_profile_of_its_lengths():
    table = pa.table({"ids": [[1] * 5, None, [2] * 40, [3] * 9]})
    a = bfpack.truncation_profile(table, 8, column="ids")
    b = bfpack.truncation_profile([5, 0, 40, 9], 8)
    assert a.equals(b)
    assert (
        bfpack.compare(table, 8)
        .column("sequences")
        .equals(bfpack.compare([5, 0, 40, 9], 8).column("sequences"))
    )


@pytest.mark.parametrize("bins", [0, [5, 5, 9], [[1, 2]], [3]])
def test_bad_bins(bins):
    with pytest.raises(ValueError, match="bins"):
        bfpack.truncation_profile([1, 2, 3], 4, bins=bins)


def test_column_without_table_is_an_error():
    with pytest.raises(ValueError, match="column"):
        bfpack.compare([1, 2], 4, column="ids")


def test_compare_rows_are_the_packings_stats(monkeypatch):
    # A clock that reads 0, 1, 3, 6, 10, ...: each method's seconds must be
    # the span between the two readings around its timed pack.
    readings = iter(np.cumsum(np.arange(100.0)))
    monkeypatch.setattr(bfpack.analysis, "_clock", lambda: next(readings))
    lengths = bfpack.corpus.web_like_lengths(5_000, seed=4)
    table = bfpack.compare(
        lengths, 1024, ("concat", "bfd", "ffd"), long_docs="truncate"
    ).to_pydict()
    assert table["method"] == ["concat", "bfd", "ffd"]
    for i, method in enumerate(table["method"]):
        s = bfpack.pack(lengths, 1024, method=method, long_docs="truncate").stats()
        for key in (
            "sequences",
            "lower_bound",
            "excess_sequences",
            "fill",
            "padding_tokens",
            "documents_truncated",
            "truncation_cuts",
            "tokens_dropped",
        ):
            assert table[key][i] == getattr(s, key), (method, key)
        assert table["seconds"][i] == 2 * i + 1
    base = table["sequences"][0]
    np.testing.assert_allclose(table["vs_first"], [s / base - 1 for s in table["sequences"]])


def test_core_import_does_not_import_optional_dependencies():
    optional = ["matplotlib", "torch", "datasets", "transformers", "trl"]
    code = (
        "import sys, bfpack; bfpack.pack([1, 2], 4); "
        f"print([m for m in {optional!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plots_return_figures():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from bfpack.plot import plot_fill, plot_truncations

    lengths = bfpack.corpus.web_like_lengths(2_000, seed=1)
    fig = plot_truncations(bfpack.truncation_profile(lengths, 512), title="t")
    assert isinstance(fig, matplotlib.figure.Figure)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["concat", "bfd", "fewest possible"]
    fig2, ax = matplotlib.pyplot.subplots()
    plans = {m: bfpack.pack(lengths, 512, method=m) for m in ("concat", "bfd")}
    assert plot_fill(plans, ax=ax) is fig2
    assert [c.get_label() for c in ax.containers] == ["concat", "bfd"]
    assert plot_fill(plans["bfd"]).axes[0].get_legend().get_texts()[0].get_text() == "bfd"
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("tokens", ["words", "bytes"])
@pytest.mark.parametrize("seq_len", [2048, 8192])
def test_truncation_plot_has_no_negative_cuts(tokens, seq_len):
    # The y-axis starts at 0 whatever symlog's padding would add below it.
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from bfpack.plot import plot_truncations

    prof = bfpack.truncation_profile(bfpack.corpus.stdlib_lengths(tokens), seq_len)
    ax = plot_truncations(prof).axes[0]
    lo, hi = ax.get_ylim()
    assert lo == 0
    top = max(prof["cuts_per_document"].to_pylist())
    assert hi > top  # the largest value is inside the axes
    matplotlib.pyplot.close("all")


def test_truncation_plots_on_shared_axes_show_every_value():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from bfpack.plot import plot_truncations

    lengths = bfpack.corpus.web_like_lengths(5_000, seed=6)
    profiles = [bfpack.truncation_profile(lengths, L) for L in (256, 4096)]
    fig, axes = matplotlib.pyplot.subplots(1, 2, sharey=True)
    for ax, prof in zip(axes, profiles):
        plot_truncations(prof, ax=ax)
    top = max(max(p["cuts_per_document"].to_pylist()) for p in profiles)
    assert all(ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > top for ax in axes)
    matplotlib.pyplot.close("all")


def test_fill_bars_do_not_hide_each_other():
    # Bars of two methods in one bin stand side by side, neither behind the other.
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from bfpack.plot import plot_fill

    lengths = bfpack.corpus.web_like_lengths(20_000, seed=3)
    plans = {m: bfpack.pack(lengths, 2048, method=m) for m in ("concat", "bfd", "ffd")}
    ax = plot_fill(plans, bins=20).axes[0]
    spans = []
    for container, plan in zip(ax.containers, plans.values()):
        bars = list(container)
        # Every sequence is counted once, in a visible bar.
        assert sum(b.get_height() for b in bars) == plan.num_sequences
        assert all(b.get_height() > 0 for b in bars)
        spans += [(b.get_x(), b.get_x() + b.get_width()) for b in bars]
    spans.sort()
    assert all(end <= nxt + 1e-12 for (_, end), (nxt, _) in zip(spans, spans[1:]))
    # Most sequences of every method are full: all of them have a bar in the last bin.
    assert sum(lo >= 0.95 - 1e-12 for lo, _ in spans) == 3
    assert ax.get_xlim() == (0, 1)
    matplotlib.pyplot.close("all")


def test_document_lengths_of_tables_and_arrays():
    ids = pa.array([[1, 2, 3], None, [], [4] * 7], type=pa.list_(pa.int32()))
    table = pa.table({"n": [0, 1, 2, 3], "ids": ids, "labels": [[1], [2, 2], [], [0]]})
    expected = [3, 0, 0, 7]
    for data in (table, table.to_batches()[0], ids, pa.chunked_array([ids[:1], ids[1:]])):
        got = bfpack.document_lengths(data)
        assert got.dtype == np.int64 and not got.flags.writeable
        assert got.tolist() == expected
    assert bfpack.document_lengths(table, column="labels").tolist() == [1, 2, 0, 1]


def test_document_lengths_of_parquet_in_pack_parquet_order(tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    parts = [[[1, 2], [3]], [[4] * 5, None, [6] * 3]]
    # Written in an order other than their names: the names decide.
    for k in (1, 0):
        pq.write_table(pa.table({"ids": parts[k]}), src / f"part-{k}.parquet", row_group_size=1)
    lengths = bfpack.document_lengths(src)
    assert lengths.tolist() == [2, 1, 5, 0, 3]
    assert bfpack.document_lengths(str(src / "part-1.parquet"), column="ids").tolist() == [5, 0, 3]
    manifest = bfpack.pack_parquet(src, tmp_path / "out", 4)
    assert manifest["stats"] == bfpack.pack(lengths, 4).stats().to_dict()
    # compare and truncation_profile take the path too.
    from_path = bfpack.compare(src, 4).drop_columns(["seconds"])
    assert from_path.equals(bfpack.compare(lengths, 4).drop_columns(["seconds"]))
    assert bfpack.truncation_profile(src, 4).equals(bfpack.truncation_profile(lengths, 4))


def test_document_lengths_errors(tmp_path):
    import pyarrow.parquet as pq

    table = pa.table({"n": [1], "ids": [[1, 2]], "words": [["a"]], "holes": [[1, None]]})
    with pytest.raises(TypeError, match="lengths already"):
        bfpack.document_lengths([1, 2, 3])
    with pytest.raises(TypeError, match="column must be a column name"):
        bfpack.document_lengths(table, column=["ids"])
    with pytest.raises(TypeError, match="not a list of tokens"):
        bfpack.document_lengths(table, column="n")
    with pytest.raises(TypeError, match="string values"):
        bfpack.document_lengths(table, column="words")
    with pytest.raises(ValueError, match="null tokens"):
        bfpack.document_lengths(table, column="holes")
    with pytest.raises(ValueError, match="'nope' is not in the table"):
        bfpack.document_lengths(table, column="nope")
    with pytest.raises(ValueError, match="no list column"):
        bfpack.document_lengths(pa.table({"n": [1]}))
    with pytest.raises(ValueError, match="only applies to a table"):
        bfpack.document_lengths(table["ids"], column="ids")
    with pytest.raises(FileNotFoundError):
        bfpack.document_lengths(tmp_path / "missing")
    (tmp_path / "notes.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a Parquet file"):
        bfpack.document_lengths(tmp_path / "notes.parquet")
    # A later file without the column is named.
    d = tmp_path / "d"
    d.mkdir()
    pq.write_table(pa.table({"ids": [[1]]}), d / "a.parquet")
    pq.write_table(pa.table({"other": [[1]]}), d / "b.parquet")
    with pytest.raises(ValueError, match="b.parquet"):
        bfpack.document_lengths(d)
    with pytest.raises(ValueError, match="column= only applies"):
        bfpack.compare([1, 2], 4, column="ids")


@settings(max_examples=30)
@given(
    lengths=st.lists(st.integers(0, 300), max_size=40),
    L=st.integers(1, 100),
    long_docs=st.sampled_from(["split", "truncate"]),
)
def test_compare_gives_the_fewest_possible_truncations(lengths, L, long_docs):
    table = bfpack.compare(lengths, L, long_docs=long_docs).to_pydict()
    long = [n for n in lengths if n > L]
    fewest_cuts = sum(-(-n // L) - 1 for n in long) if long_docs == "split" else len(long)
    assert set(table["min_documents_truncated"]) == {len(long)}
    assert set(table["min_truncation_cuts"]) == {fewest_cuts}
    for method, docs, cuts in zip(
        table["method"], table["documents_truncated"], table["truncation_cuts"]
    ):
        assert docs >= len(long) and cuts >= fewest_cuts
        if method != "concat":
            assert (docs, cuts) == (len(long), fewest_cuts)


def test_sequences_of_lengths_without_carried_sequences_is_bfd_per_group():
    # max_open=0: every group is packed whole in its one window, nothing is
    # handed on, so each group's sequences are those of one global BFD.
    rng = np.random.default_rng(5)
    groups = [rng.integers(0, 300, n) for n in (50, 1, 80)]
    stats = bfpack.analysis.sequences_of_lengths(groups, 128, window_tokens=1 << 30, max_open=0)
    assert stats.sequences == sum(bfpack.pack(g, 128).num_sequences for g in groups)
    assert stats.documents == sum(len(g) for g in groups)
    assert stats.tokens == sum(int(g.sum()) for g in groups)


def test_sequences_of_lengths_is_the_dask_drivers():
    import bfpack.dask

    assert bfpack.dask.sequences_of_lengths is bfpack.analysis.sequences_of_lengths


@pytest.mark.parametrize(
    "groups, error, match",
    [
        ([], ValueError, "groups must be a non-empty list"),
        ("abc", ValueError, "groups must be a non-empty list"),
        ([[1, 2], [3, -1]], ValueError, "negative"),
        ([[1, 2], [[3]]], ValueError, r"groups\[1\] must be 1-D"),
    ],
)
def test_sequences_of_lengths_errors(groups, error, match):
    with pytest.raises(error, match=match):
        bfpack.analysis.sequences_of_lengths(groups, 8)
