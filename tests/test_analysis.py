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
    assert len(ax.patches) == 2
    assert plot_fill(plans["bfd"]).axes[0].get_legend().get_texts()[0].get_text() == "bfd"
