"""What a packing method does to a corpus: truncation profiles, comparisons.

These reproduce, on any corpus, the evidence of Ding et al. (2024): their
Figure 4 (truncations per document as a function of document length,
concatenation against best-fit packing) and their Tables 1-2 (sequences
and runtime).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ._validate import (
    as_bin_edges,
    as_column,
    as_int,
    as_lengths,
    as_long_docs,
    as_seq_len,
    as_table,
)
from .methods import METHODS, as_method
from .options import DEFAULT_WINDOW_TOKENS, PackOptions
from .packing import DocumentCounts, Packing, PackingStats, pack
from .stream import length_windows
from .table import aligned_lengths

# The clock compare() times packs with (a name of its own, so tests can replace it).
_clock = time.perf_counter

#: The method :func:`compare` lists first, so ``vs_first`` compares with it.
BASELINE = "concat"


def document_lengths(data: Any, *, column: str | None = None) -> np.ndarray:
    """Tokens per document of a table, a list column or a Parquet dataset.

    What :func:`bfpack.pack` takes, read from token data: the lengths of
    your own corpus, to compare methods or choose ``seq_len`` before packing.

    Parameters
    ----------
    data : pyarrow.Table, RecordBatch, list Array or ChunkedArray, str or os.PathLike
        One row per document, or the path of a Parquet file or of a
        directory of them (or of any source :func:`bfpack.pack_parquet`
        reads: Arrow IPC, ``save_to_disk``, JSON Lines). A dataset is
        read one column and one batch at a time (memory stays bounded),
        files in the order
        :func:`bfpack.pack_parquet` reads them, so document ``i`` here is
        document ``i`` there.
    column : str, optional
        The token list column of a table or dataset (default: its first
        list column).

    Returns
    -------
    numpy.ndarray
        Read-only int64, one length per row; null lists count as empty.

    Raises
    ------
    TypeError
        ``data`` is none of the above, the column is not a list of numbers,
        or ``column`` is not a string.
    ValueError
        No list column, an unknown column, null tokens inside a list, or a
        path that is not Parquet.
    FileNotFoundError
        The path does not exist.
    """
    if isinstance(data, (str, os.PathLike)):
        return _dataset_lengths(data, column)
    if isinstance(data, (pa.Array, pa.ChunkedArray)):
        if column is not None:
            raise ValueError("column= only applies to a table or a Parquet dataset, not an array")
        data = pa.table({"tokens": data})
    elif not isinstance(data, (pa.Table, pa.RecordBatch)):
        raise TypeError(
            f"data must be a pyarrow Table, RecordBatch or list array, or the path of a "
            f"Parquet dataset; got {type(data).__name__} (lengths already? pass them to "
            f"bfpack.pack directly)"
        )
    table = as_table(data)
    return aligned_lengths(table, [as_column(table.schema, column)])


def sequences_of_lengths(
    groups: Sequence[Any],
    seq_len: int,
    *,
    method: str = "bfd",
    long_docs: str = "split",
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    max_open: int | None = None,
) -> PackingStats:
    """Pack document lengths into sequences as :func:`bfpack.dask.pack_parquet` does.

    Each group is packed as one task packs its files: in windows of
    ``window_tokens`` tokens, carrying up to ``max_open`` open sequences
    from window to window, completing the rest. The sequences still open at
    the end of every group are then packed together, in group order, as the
    driver packs them. No token is read or written, so the cost of packing
    in tasks can be measured at any scale.

    Parameters
    ----------
    groups : sequence of array_like
        The document lengths of each task (of each group of input files),
        in order.
    seq_len, method, long_docs, window_tokens, max_open
        As in :func:`bfpack.pack_parquet`.

    Returns
    -------
    PackingStats
        The statistics the packed output would record in its manifest.

    Raises
    ------
    TypeError, ValueError
        Bad options or lengths, or no group.

    Examples
    --------
    >>> stats = sequences_of_lengths([[5, 3, 8], [2, 6]], 8, window_tokens=8)
    >>> stats.documents, stats.tokens, stats.sequences
    (5, 24, 3)
    """
    o = PackOptions(
        seq_len, method=method, long_docs=long_docs, window_tokens=window_tokens, max_open=max_open
    )
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not len(groups):
        raise ValueError(
            "groups must be a non-empty list of the document lengths of each group, "
            f"e.g. [[5, 3], [8]]; got {groups!r:.60}"
        )
    counts = DocumentCounts()
    sequences = 0
    leftovers = []
    for i, lengths in enumerate(groups):
        packer = o.length_packer()
        for window in length_windows(as_lengths(lengths, f"groups[{i}]"), o.window_tokens):
            packer.step(window)
        counts = counts + packer.counts
        sequences += packer.stats().sequences
        leftovers.append(packer.open_lengths)
    last = o.length_packer()
    pieces = np.concatenate(leftovers)
    windows = length_windows(pieces, o.window_tokens) or [pieces]
    for k, window in enumerate(windows):
        last.step(window, last=k == len(windows) - 1)
    return PackingStats.of(
        method=o.method,
        long_docs=o.long_docs,
        seq_len=o.seq_len,
        counts=counts,
        sequences=sequences + last.stats().sequences,
    )


def _dataset_lengths(path: str | os.PathLike, column: str | None) -> np.ndarray:
    """:func:`document_lengths` of a Parquet file or directory."""
    # Imported here: the Parquet layer is needed only for paths.
    from .parquet._source import ParquetSource

    source = ParquetSource.open(path)
    name = as_column(source.files[0].schema, column)
    return as_lengths(
        source.lengths(source.spec(columns=name))
    )  # the column, checked in every file


def _lengths_of(data: Any, column: str | None) -> np.ndarray:
    """Document lengths from plain lengths, or from token data (a table, a Parquet path)."""
    if isinstance(data, (pa.Table, pa.RecordBatch, str, os.PathLike)):
        return document_lengths(data, column=column)
    if column is not None:
        raise ValueError("column= only applies when data is a table or a Parquet dataset")
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
    data : array_like of int, pyarrow.Table, str or os.PathLike
        Document lengths, or token data whose list column gives them: a
        table or the path of a Parquet dataset (see
        :func:`document_lengths`).
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
        The token column when ``data`` is a table or a dataset (default:
        its first list column).

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
        :func:`bfpack.pack`, compilation excluded), and the fewest
        truncations any packing can make, the same in every row:
        ``min_documents_truncated`` (the documents longer than ``seq_len``)
        and ``min_truncation_cuts`` (``ceil(length / seq_len) - 1`` cuts in
        each of them when splitting, one when truncating).
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
    long = lengths[lengths > seq_len]
    cuts = (-(-long // seq_len) - 1).sum() if long_docs == "split" else long.shape[0]
    table["min_documents_truncated"] = [int(long.shape[0])] * len(rows)
    table["min_truncation_cuts"] = [int(cuts)] * len(rows)
    return pa.table(table)
