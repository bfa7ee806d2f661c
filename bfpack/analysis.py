"""What a packing method does to a corpus: truncation profiles, comparisons.

These reproduce, on any corpus, the evidence of Ding et al. (2024): their
Figure 4 (truncations per document as a function of document length,
concatenation against best-fit packing) and their Tables 1-2 (sequences
and runtime).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._validate import (
    as_bin_edges,
    as_columns,
    as_int,
    as_lengths,
    as_long_docs,
    as_method,
    as_seq_len,
    as_table,
)
from .methods import METHODS
from .packing import Packing, pack
from .table import RESERVED_COLUMNS, document_lengths

# The clock compare() times packs with (a name of its own, so tests can replace it).
_clock = time.perf_counter

#: The method :func:`compare` lists first, so ``vs_first`` compares with it.
BASELINE = "concat"


def _lengths_of(data: Any, column: str | None) -> np.ndarray:
    """Document lengths from plain lengths or from a table's token column."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        table = as_table(data)
        names = as_columns(table.schema, column, RESERVED_COLUMNS)
        return document_lengths(table, names[:1])
    if column is not None:
        raise ValueError("column= only applies when data is a pyarrow table")
    return as_lengths(data)


def _methods(methods: Any) -> list[str]:
    """Validated method names; None: the baseline, then every other registered method."""
    if methods is None:
        return [BASELINE, *(m for m in METHODS if m != BASELINE)]
    if isinstance(methods, str):
        methods = [methods]
    return [as_method(m).name for m in methods]


def _cuts_per_document(plan: Packing, lengths: np.ndarray) -> np.ndarray:
    """Cuts made inside each document by ``plan``."""
    pieces = np.bincount(plan.piece_doc, minlength=lengths.shape[0])
    cuts = np.maximum(pieces - 1, 0)
    if plan.long_docs == "truncate" and METHODS[plan.method].cuts_by_long_docs:
        cuts += lengths > plan.seq_len
    return cuts


def _edges(lengths: np.ndarray, bins: Any) -> np.ndarray:
    top = max(int(lengths.max()) if lengths.shape[0] else 1, 1)
    if bins is None:
        # One bin per power of two: 1, 2-3, 4-7, ...
        return 2 ** np.arange(0, int(np.ceil(np.log2(top + 1))) + 1)
    if np.ndim(bins) == 0:
        count = as_int(bins, "bins", lo=1)
        edges = np.unique(np.round(np.logspace(0, np.log10(top + 1), count + 1)))
        edges[-1] = max(edges[-1], top + 1)
        return edges.astype(np.int64)
    return as_bin_edges(bins)


def truncation_profile(
    data: Any,
    seq_len: int,
    methods: Sequence[str] = ("concat", "bfd"),
    bins: Any = None,
    *,
    long_docs: str = "split",
    column: str | None = None,
) -> pa.Table:
    """Truncations per document as a function of document length.

    Parameters
    ----------
    data : array_like of int, or pyarrow.Table
        Document lengths, or a table whose token list column gives them.
    seq_len : int
        Context length.
    methods : sequence of str
        Methods of :data:`bfpack.methods.METHODS` to profile.
    bins : int or array_like, optional
        Document-length bins: ``None`` for one bin per power of two, a
        count for that many log-spaced bins, or increasing edges (bin ``i``
        holds lengths in ``[edges[i], edges[i + 1])``).
    long_docs : {"split", "truncate"}
        As in :func:`bfpack.pack`.
    column : str, optional
        The token column when ``data`` is a table (default: its first list
        column).

    Returns
    -------
    pyarrow.Table
        One row per (method, non-empty bin): ``method``, ``length_lo``,
        ``length_hi`` (the bin), ``documents``, ``cuts_per_document``
        (mean cuts inside a document), ``share_truncated`` (documents cut at
        least once), and ``min_cuts_per_document``, the fewest cuts any
        packing can make, ``ceil(length / seq_len) - 1`` on average. Read it
        with ``.to_pandas()`` or ``polars.from_arrow``.
    """
    lengths = _lengths_of(data, column)
    seq_len = as_seq_len(seq_len)
    methods = _methods(methods)
    long_docs = as_long_docs(long_docs)
    edges = _edges(lengths, bins)
    which = np.searchsorted(edges, lengths, side="right") - 1
    inside = (which >= 0) & (which < edges.shape[0] - 1) & (lengths > 0)
    which = which[inside]
    nbins = edges.shape[0] - 1
    docs = np.bincount(which, minlength=nbins)
    keep = docs > 0
    minimum = np.bincount(which, weights=(-(-lengths[inside] // seq_len) - 1), minlength=nbins)
    columns: dict[str, Any] = {
        k: []
        for k in (
            "method",
            "length_lo",
            "length_hi",
            "documents",
            "cuts_per_document",
            "share_truncated",
            "min_cuts_per_document",
        )
    }
    for method in methods:
        plan = pack(lengths, seq_len, method=method, long_docs=long_docs)
        cuts = _cuts_per_document(plan, lengths)[inside]
        total = np.bincount(which, weights=cuts, minlength=nbins)
        cut = np.bincount(which, weights=cuts > 0, minlength=nbins)
        columns["method"] += [method] * int(keep.sum())
        columns["length_lo"].append(edges[:-1][keep])
        columns["length_hi"].append(edges[1:][keep])
        columns["documents"].append(docs[keep])
        columns["cuts_per_document"].append(total[keep] / docs[keep])
        columns["share_truncated"].append(cut[keep] / docs[keep])
        columns["min_cuts_per_document"].append(minimum[keep] / docs[keep])
    for key, parts in columns.items():
        if key != "method":
            dtype = np.float64 if "per" in key or "share" in key else np.int64
            columns[key] = np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)
    return pa.table(columns)


def compare(
    data: Any,
    seq_len: int,
    methods: Sequence[str] | None = None,
    *,
    long_docs: str = "split",
    column: str | None = None,
) -> pa.Table:
    """Pack the same documents with several methods, one row per method.

    Parameters
    ----------
    data, seq_len, long_docs, column
        As in :func:`truncation_profile`.
    methods : sequence of str, optional
        Methods of :data:`bfpack.methods.METHODS`; by default the baseline
        ``concat`` first, then every other registered method.

    Returns
    -------
    pyarrow.Table
        Columns ``method``, ``sequences``, ``lower_bound``,
        ``excess_sequences``, ``vs_first`` (relative change in sequences
        against the first method, concat by default: the paper's Table 2),
        ``fill``, ``padding_tokens``, ``documents_truncated``,
        ``truncation_cuts``, ``tokens_dropped``, ``seconds`` (time of
        :func:`bfpack.pack`, compilation excluded).
    """
    lengths = _lengths_of(data, column)
    seq_len = as_seq_len(seq_len)
    methods = _methods(methods)
    long_docs = as_long_docs(long_docs)
    rows = []
    for method in methods:
        pack(lengths[:1], seq_len, method=method, long_docs=long_docs)  # compile
        t0 = _clock()
        stats = pack(lengths, seq_len, method=method, long_docs=long_docs).stats()
        rows.append((method, stats, _clock() - t0))
    base = rows[0][1].sequences if rows else 0
    names = (
        "sequences",
        "lower_bound",
        "excess_sequences",
        "fill",
        "padding_tokens",
        "documents_truncated",
        "truncation_cuts",
        "tokens_dropped",
    )
    table: dict[str, list[Any]] = {"method": [m for m, _, _ in rows]}
    for name in names:
        table[name] = [getattr(s, name) for _, s, _ in rows]
    table["vs_first"] = [s.sequences / base - 1 if base else 0.0 for _, s, _ in rows]
    table["seconds"] = [t for _, _, t in rows]
    return pa.table(table)
