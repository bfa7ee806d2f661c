"""Packing a stream of windows in bounded memory.

Each window of documents is packed together with the sequences still open
from earlier windows, which sit in the same tree and stacks as the new
ones. Afterwards every sequence is emitted except the ``max_open`` with the
most free space, which are carried into the next window; so memory is
bounded by the window plus ``max_open * seq_len`` tokens, and the packing
stays close to one global BFD. Methods that cannot continue from open
sequences (``Method.streams`` is False) pack every window on its own.

- :class:`StreamPacker` works on lengths: each step returns the
  :class:`~bfpack.Packing` of the sequences it completes.
- :class:`TableStreamPacker` works on Arrow tables: each step returns the
  packed table of the sequences it completes, and the tokens of the open
  sequences are carried inside it. The Parquet writer, and any other
  streaming source, only feed it windows.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ._jit import readonly
from ._kernels.layout import merge_open
from ._validate import (
    as_bool,
    as_int,
    as_lengths,
    as_long_docs,
    as_method,
    as_seed,
    as_seq_len,
    as_table,
    check_same_columns,
)
from .methods import NO_OPEN_SEQUENCES
from .packing import DocumentCounts, Packing, PackingStats, count
from .table import OutputSpec, assemble, document_lengths, row_order

#: Open sequences carried between windows by default.
DEFAULT_MAX_OPEN = 4096


def default_max_open(seq_len: int, window_tokens: int) -> int:
    """Sequences to carry between windows of ``window_tokens`` tokens.

    Their tokens stay in memory, so they are kept to a quarter of a window:
    ``min(4096, window_tokens // (4 * seq_len))``, at least 16.
    """
    return min(DEFAULT_MAX_OPEN, max(16, window_tokens // (4 * seq_len)))


@dataclass(frozen=True)
class _Step:
    """One window, packed: ``plan`` numbers the pieces carried into the
    window as documents ``0 .. C - 1`` and the window's documents from
    ``C``; ``emit`` lists the sequences completed now, ``carried`` the
    pieces of the ones kept open."""

    plan: Packing
    emit: np.ndarray
    carried: np.ndarray


class StreamPacker:
    """Pack windows of document lengths one after another.

    Parameters
    ----------
    seq_len : int
        Sequence capacity.
    method : str
        A method of :data:`bfpack.methods.METHODS`; only methods that
        stream (``"bfd"``) carry open sequences between windows.
    long_docs : {"split", "truncate"}
        As in :func:`bfpack.pack`.
    max_open : int
        Sequences with free space carried between windows, at most; the
        roomiest are kept. Ignored by methods that do not stream.

    Notes
    -----
    The sequences of a step are the ones completed in it (sequences
    continued from earlier windows first, then new ones, in order of
    opening); with ``last=True`` every open sequence is completed.
    Documents are numbered across the whole stream: document ``i`` of a
    window that follows ``n`` documents is document ``n + i``.
    """

    def __init__(
        self,
        seq_len: int,
        *,
        method: str = "bfd",
        long_docs: str = "split",
        max_open: int = DEFAULT_MAX_OPEN,
    ) -> None:
        self.seq_len = as_seq_len(seq_len)
        self.method = as_method(method)
        self.long_docs = as_long_docs(long_docs)
        self.max_open = as_int(max_open, "max_open", lo=0) if self.method.streams else 0
        # Carried pieces, sequence by sequence: their lengths, and where
        # they come from (document across the stream, token offset).
        self._open_offsets = readonly(np.zeros(1, dtype=np.int64))
        self._open_len = readonly(np.empty(0, dtype=np.int64))
        self._open_doc = np.empty(0, dtype=np.int64)
        self._open_start = np.empty(0, dtype=np.int64)
        self._open_free = NO_OPEN_SEQUENCES
        self._counts = DocumentCounts()
        self._sequences = 0

    @property
    def num_open(self) -> int:
        """Sequences currently carried."""
        return self._open_free.shape[0]

    @property
    def counts(self) -> DocumentCounts:
        """What the windows so far held: documents, tokens, cuts."""
        return self._counts

    @property
    def open_lengths(self) -> np.ndarray:
        """Lengths of the pieces of the open sequences, sequence after sequence."""
        return self._open_len

    def step(self, lengths: Any, *, last: bool = False) -> Packing:
        """Pack one window; with ``last=True`` nothing is carried on.

        Parameters
        ----------
        lengths : array_like of int
            Tokens of each document of the window (as in :func:`bfpack.pack`).
        last : bool
            Whether this is the last window.

        Returns
        -------
        Packing
            The sequences completed by this window, documents numbered
            across the stream. Its ``counts`` are None: the statistics of
            the stream so far are :meth:`stats`.
        """
        first_doc = self._counts.documents
        step = self._advance(lengths, as_bool(last, "last"))
        # Local document d < C is carried piece d, which starts at token
        # _open_start[d] of stream document _open_doc[d]; local d >= C is
        # document d - C of this window.
        num_window = self._counts.documents - first_doc
        doc_of = np.concatenate([self._open_doc, first_doc + np.arange(num_window)])
        shift_of = np.concatenate([self._open_start, np.zeros(num_window, np.int64)])
        plan = step.plan.take(step.emit)
        kept = step.plan.piece_doc[step.carried]
        self._open_doc = doc_of[kept]
        self._open_start = shift_of[kept] + step.plan.piece_start[step.carried]
        return Packing(
            seq_len=plan.seq_len,
            method=plan.method,
            long_docs=plan.long_docs,
            seq_offsets=plan.seq_offsets,
            piece_doc=doc_of[plan.piece_doc],
            piece_start=plan.piece_start + shift_of[plan.piece_doc],
            piece_len=plan.piece_len,
            seq_fill=plan.seq_fill,
        )

    def _advance(self, lengths: Any, last: bool) -> _Step:
        """Pack one window after the open sequences; update the carried state."""
        lengths = as_lengths(lengths)
        L = self.seq_len
        split = self.long_docs == "split"
        counts = count(lengths, L, split)
        placed = self.method.place(lengths, L, split, counts, self._open_free)
        layout = merge_open(self._open_offsets, self._open_len, *placed.layout)
        plan = Packing.from_layout(
            layout, placed.seq_free, seq_len=L, method=self.method.name, long_docs=self.long_docs
        )
        free = placed.seq_free
        keep = np.flatnonzero(free > 0) if not last else np.empty(0, np.int64)
        if keep.shape[0] > self.max_open:
            roomiest = np.argsort(-free[keep], kind="stable")[: self.max_open]
            keep = np.sort(keep[roomiest])
        emit_mask = np.ones(free.shape[0], dtype=bool)
        emit_mask[keep] = False
        emit = np.flatnonzero(emit_mask)

        # Piece indices offsets[b] .. offsets[b + 1] - 1 of every kept b.
        offsets = layout.seq_offsets
        sizes = offsets[keep + 1] - offsets[keep]
        before = np.cumsum(sizes) - sizes
        carried = np.repeat(offsets[keep] - before, sizes) + np.arange(sizes.sum())
        self._open_offsets = readonly(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        self._open_len = readonly(layout.piece_len[carried].astype(np.int64))
        self._open_free = readonly(free[keep])
        self._counts = self._counts + DocumentCounts.of(lengths.shape[0], counts, placed)
        self._sequences += emit.shape[0]
        return _Step(plan, emit, carried)

    def stats(self) -> PackingStats:
        """Totals over the windows so far, as :class:`~bfpack.PackingStats`.

        Sequences still open count only once emitted.
        """
        return PackingStats.of(
            method=self.method.name,
            long_docs=self.long_docs,
            seq_len=self.seq_len,
            counts=self._counts,
            sequences=self._sequences,
            tokens_open=int(self._open_len.sum()),
        )


class TableStreamPacker:
    """Pack windows of Arrow tables, carrying open sequences and their tokens.

    Parameters
    ----------
    seq_len : int
        Tokens per packed row.
    spec : OutputSpec
        What the packed tables hold (:meth:`OutputSpec.for_schema` of the
        first window's schema).
    method, long_docs, max_open
        As in :class:`StreamPacker`.
    seed : int, optional
        Shuffle the rows of every output with its own seed: the ``k``-th
        output that has rows uses ``seed + k``.

    Notes
    -----
    A step packs the window with the pieces of the open sequences in front
    of it (as documents of their own), writes the completed sequences as
    rows, and keeps the tokens of the pieces still open: memory holds one
    window and at most ``max_open * seq_len`` carried tokens per column.
    Every window must hold the packed columns with the token types of
    ``spec``; other columns are ignored.

    Examples
    --------
    >>> spec = OutputSpec.for_schema(first.schema, columns="input_ids")
    >>> packer = TableStreamPacker(2048, spec)
    >>> for window in windows:                      # doctest: +SKIP
    ...     write(packer.step(window))
    >>> write(packer.finish())                      # doctest: +SKIP
    """

    def __init__(
        self,
        seq_len: int,
        spec: OutputSpec,
        *,
        method: str = "bfd",
        long_docs: str = "split",
        max_open: int = DEFAULT_MAX_OPEN,
        seed: int | None = None,
    ) -> None:
        if not isinstance(spec, OutputSpec):
            raise TypeError(
                f"spec must be an OutputSpec, got {type(spec).__name__}; build "
                f"one with OutputSpec.for_schema(table.schema, columns=...)"
            )
        self._packer = StreamPacker(seq_len, method=method, long_docs=long_docs, max_open=max_open)
        self.spec = spec
        self.seed = as_seed(seed)
        self._schema = spec.schema
        self._carry = self._schema.empty_table()
        self._rows = 0
        self._outputs = 0

    @property
    def seq_len(self) -> int:
        """Tokens per packed row."""
        return self._packer.seq_len

    @property
    def num_open(self) -> int:
        """Sequences currently carried."""
        return self._packer.num_open

    @property
    def counts(self) -> DocumentCounts:
        """What the windows so far held: documents, tokens, cuts."""
        return self._packer.counts

    @property
    def open_pieces(self) -> pa.Table:
        """The pieces of the open sequences, one row per piece (the packed
        columns only): what :meth:`finish` would still pack."""
        return self._carry

    def step(self, table: pa.Table | pa.RecordBatch, *, last: bool = False) -> pa.Table:
        """Pack one window; with ``last=True`` every open sequence is written.

        Parameters
        ----------
        table : pyarrow.Table or RecordBatch
            One row per document.
        last : bool
            Whether this is the last window.

        Returns
        -------
        pyarrow.Table
            The sequences completed by this window, as :func:`bfpack.pack_table`
            writes them (possibly no rows).
        """
        table = as_table(table)
        check_same_columns(table.schema, self._schema, "the window")
        window = table.select(list(self.spec.columns)).replace_schema_metadata(None)
        if not window.schema.equals(self._schema):
            window = window.cast(self._schema)
        lengths = document_lengths(window, self.spec.columns, self._rows)
        step = self._packer._advance(lengths, as_bool(last, "last"))
        source = pa.concat_tables([self._carry, window]) if self._carry.num_rows else window
        rows = step.emit
        if self.seed is not None and rows.shape[0]:
            rows = rows[row_order(rows.shape[0], self.seed + self._outputs)]
        out = assemble(source, step.plan, self.spec, rows)
        self._carry = assemble(
            source, _one_piece_per_sequence(step.plan, step.carried), self.spec.without_extras()
        ).select(list(self.spec.columns))
        self._carry = self._carry.cast(self._schema)
        self._rows += window.num_rows
        self._outputs += out.num_rows > 0
        return out

    def finish(self) -> pa.Table:
        """Write every open sequence (a last step over an empty window)."""
        return self.step(self._schema.empty_table(), last=True)

    def stats(self) -> PackingStats:
        """Totals over the windows so far (see :meth:`StreamPacker.stats`)."""
        return self._packer.stats()


def _one_piece_per_sequence(plan: Packing, pieces: np.ndarray) -> Packing:
    """The pieces ``pieces`` of ``plan``, each as a sequence of its own."""
    length = plan.piece_len[pieces]
    return Packing(
        seq_len=plan.seq_len,
        method=plan.method,
        long_docs=plan.long_docs,
        seq_offsets=np.arange(pieces.shape[0] + 1, dtype=np.int64),
        piece_doc=plan.piece_doc[pieces],
        piece_start=plan.piece_start[pieces],
        piece_len=length,
        seq_fill=length,
    )


def windows(
    tables: Iterable[pa.Table | pa.RecordBatch], spec: OutputSpec, window_tokens: int
) -> Generator[tuple[pa.Table, bool], None, None]:
    """Regroup a stream of tables into windows for :meth:`TableStreamPacker.step`.

    Yields ``(window, last)``: tables of whole documents (the columns of
    ``spec``), each just reaching ``window_tokens`` tokens (the last may
    hold fewer), and whether it is the last. The cut falls after the
    document that reaches the window, wherever the input tables end, so
    the windows do not depend on how the stream is batched. One table is
    read ahead, so the last window is known as such without holding two
    windows; a stream with no rows gives one empty window.
    """
    window_tokens = as_int(window_tokens, "window_tokens", lo=1, unit="tokens")
    if not isinstance(spec, OutputSpec):
        raise TypeError(f"spec must be an OutputSpec, got {type(spec).__name__}")
    return _windows(tables, spec, window_tokens)


def _windows(
    tables: Iterable[pa.Table | pa.RecordBatch], spec: OutputSpec, window_tokens: int
) -> Generator[tuple[pa.Table, bool], None, None]:
    schema = spec.schema
    stream = (t for t in map(as_table, tables) if t.num_rows)
    parts: list[pa.Table] = []
    tokens = 0
    yielded = False
    table = next(stream, None)
    while table is not None:
        check_same_columns(table.schema, schema, "a table of the stream")
        table = table.select(list(spec.columns))
        n = document_lengths(table, spec.columns[:1])
        # Rows up to the document that reaches the window, inclusive.
        upto = int(np.searchsorted(np.cumsum(n), window_tokens - tokens)) + 1
        if upto > table.num_rows:
            parts.append(table)
            tokens += int(n.sum())
            table = next(stream, None)
            continue
        parts.append(table.slice(0, upto))
        table = table.slice(upto) if upto < table.num_rows else next(stream, None)
        yield _concat(parts, schema), table is None
        yielded = True
        parts, tokens = [], 0
    if parts or not yielded:
        yield _concat(parts, schema), True


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The rows of ``parts``, in the types of ``schema``."""
    same = []
    for t in parts:
        t = t.replace_schema_metadata(None)
        same.append(t if t.schema.equals(schema) else t.cast(schema))
    return pa.concat_tables(same) if same else schema.empty_table()
