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

from ._interrupt import held
from ._jit import call, readonly
from ._kernels.layout import merge_open
from ._validate import (
    as_bool,
    as_int,
    as_lengths,
    as_long_docs,
    as_seed,
    as_seq_len,
    as_table,
    check_same_columns,
)
from .methods import NO_OPEN_SEQUENCES, as_method
from .packing import DocumentCounts, Packing, PackingStats, count
from .table import (
    DOC_INDEX,
    DOC_OFFSET,
    OutputSpec,
    PieceSources,
    aligned_lengths,
    assemble,
    row_order,
)

#: Open sequences carried between windows by default.
DEFAULT_MAX_OPEN = 4096


def default_max_open(seq_len: int, window_tokens: int) -> int:
    """Sequences to carry between windows of ``window_tokens`` tokens.

    Their tokens stay in memory, so they are kept to a quarter of a window:
    ``min(4096, window_tokens // (4 * seq_len))``, at least 16.
    """
    return min(DEFAULT_MAX_OPEN, max(16, window_tokens // (4 * seq_len)))


@dataclass(frozen=True)
class _Carried:
    """What a :class:`StreamPacker` carries from window to window.

    Replaced whole at the end of a step, so a step that fails or is
    interrupted leaves the packer as it was.
    """

    offsets: np.ndarray  # the open sequences' pieces: offsets[j]:offsets[j + 1]
    lengths: np.ndarray  # each piece's length
    doc: np.ndarray  # each piece's document, across the stream
    start: np.ndarray  # each piece's first token in its document
    free: np.ndarray  # each open sequence's free tokens
    counts: DocumentCounts  # what the windows so far held
    sequences: int  # sequences completed so far


_NOTHING_CARRIED = _Carried(
    offsets=readonly(np.zeros(1, dtype=np.int64)),
    lengths=readonly(np.empty(0, dtype=np.int64)),
    doc=readonly(np.empty(0, dtype=np.int64)),
    start=readonly(np.empty(0, dtype=np.int64)),
    free=NO_OPEN_SEQUENCES,
    counts=DocumentCounts(),
    sequences=0,
)


@dataclass(frozen=True)
class _Step:
    """One window, packed: ``plan`` numbers the pieces carried into the
    window as documents ``0 .. C - 1`` and the window's documents from
    ``C``; ``emit`` lists the sequences completed now, ``carried`` the
    pieces of the ones kept open. Local document ``d`` is token
    ``start_of[d]`` onwards of stream document ``doc_of[d]``. ``after`` is
    what the packer carries once the step is taken."""

    plan: Packing
    emit: np.ndarray
    carried: np.ndarray
    doc_of: np.ndarray
    start_of: np.ndarray
    after: _Carried


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
        self._carried = _NOTHING_CARRIED

    @property
    def num_open(self) -> int:
        """Sequences currently carried."""
        return self._carried.free.shape[0]

    @property
    def counts(self) -> DocumentCounts:
        """What the windows so far held: documents, tokens, cuts."""
        return self._carried.counts

    @property
    def open_lengths(self) -> np.ndarray:
        """Lengths of the pieces of the open sequences, sequence after sequence."""
        return self._carried.lengths

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

        A step that raises (bad lengths, an interrupt) changes nothing: the
        next step continues from the windows before it.
        """
        step = self._advance(lengths, as_bool(last, "last"))
        plan = step.plan.take(step.emit)
        packed = Packing(
            seq_len=plan.seq_len,
            method=plan.method,
            long_docs=plan.long_docs,
            seq_offsets=plan.seq_offsets,
            piece_doc=step.doc_of[plan.piece_doc],
            piece_start=plan.piece_start + step.start_of[plan.piece_doc],
            piece_len=plan.piece_len,
            seq_fill=plan.seq_fill,
        )
        self._carried = step.after
        return packed

    def _advance(self, lengths: Any, last: bool) -> _Step:
        """Pack one window after the open sequences; the packer is not
        changed (the caller stores ``after`` once it has what it needs)."""
        lengths = as_lengths(lengths)
        L = self.seq_len
        split = self.long_docs == "split"
        before = self._carried
        counts = count(lengths, L, split)
        placed = self.method.place(lengths, L, split, counts, before.free)
        layout = call(merge_open, before.offsets, before.lengths, *placed.layout)
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
        preceding = np.cumsum(sizes) - sizes
        carried = np.repeat(offsets[keep] - preceding, sizes) + np.arange(sizes.sum())
        # Local document d < C is carried piece d, which starts at token
        # start[d] of stream document doc[d]; local d >= C is document
        # d - C of this window.
        first_doc = before.counts.documents
        doc_of = np.concatenate([before.doc, first_doc + np.arange(lengths.shape[0])])
        start_of = np.concatenate([before.start, np.zeros(lengths.shape[0], np.int64)])
        kept = plan.piece_doc[carried]
        after = _Carried(
            offsets=readonly(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)),
            lengths=readonly(layout.piece_len[carried].astype(np.int64)),
            doc=readonly(doc_of[kept]),
            start=readonly(start_of[kept] + plan.piece_start[carried]),
            free=readonly(free[keep]),
            counts=before.counts + DocumentCounts.of(lengths.shape[0], counts, placed),
            sequences=before.sequences + emit.shape[0],
        )
        return _Step(plan, emit, carried, doc_of, start_of, after)

    def stats(self) -> PackingStats:
        """Totals over the windows so far, as :class:`~bfpack.PackingStats`.

        Sequences still open count only once emitted.
        """
        return PackingStats.of(
            method=self.method.name,
            long_docs=self.long_docs,
            seq_len=self.seq_len,
            counts=self._carried.counts,
            sequences=self._carried.sequences,
            tokens_open=int(self._carried.lengths.sum()),
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
    first_document : int
        With ``spec.provenance``: the ``doc_index`` of the stream's first
        document (documents are numbered on from it, empty ones included).
    pieces : bool
        The windows are the :attr:`open_pieces` of other packers of the
        same spec, not documents: their provenance is read from their
        ``doc_index`` and ``doc_offset`` columns, and they already hold
        their separators.

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
    >>> import pyarrow as pa
    >>> first = pa.table({"input_ids": [[1, 2, 3], [4, 5]]})
    >>> spec = OutputSpec.for_schema(first.schema, columns="input_ids")
    >>> packer = TableStreamPacker(4, spec)
    >>> packer.step(first).num_rows  # both sequences still open
    0
    >>> packer.step(pa.table({"input_ids": [[6], [7, 8, 9, 10]]})).num_rows
    2
    >>> packer.finish().to_pydict()  # the sequence left open
    {'input_ids': [[4, 5]], 'seq_lengths': [[2]]}
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
        first_document: int = 0,
        pieces: bool = False,
    ) -> None:
        if not isinstance(spec, OutputSpec):
            raise TypeError(
                f"spec must be an OutputSpec, got {type(spec).__name__}; build "
                f"one with OutputSpec.for_schema(table.schema, columns=...)"
            )
        self._packer = StreamPacker(seq_len, method=method, long_docs=long_docs, max_open=max_open)
        self.spec = spec
        self.seed = as_seed(seed)
        self._first = as_int(first_document, "first_document", lo=0)
        self._pieces = as_bool(pieces, "pieces")
        self._schema = spec.piece_schema if self._pieces else spec.schema
        self._carry = spec.piece_schema.empty_table()
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
        """The pieces of the open sequences, one row per piece: what
        :meth:`finish` would still pack. Its columns are ``spec.piece_schema``:
        the packed columns (separators included), the carried ones and,
        with provenance, each piece's ``doc_index`` and ``doc_offset``."""
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

        A step that raises (a window of the wrong columns, an interrupt)
        changes nothing: the next step continues from the windows before it.
        """
        table = as_table(table)
        spec = self.spec
        check_same_columns(table.schema, self._schema, "the window")
        window = table.select(self._schema.names).replace_schema_metadata(None)
        if not window.schema.equals(self._schema):
            window = window.cast(self._schema)
        lengths = aligned_lengths(window, spec.columns, self._rows)
        if not self._pieces:
            lengths = spec.document_lengths(lengths)
        step = self._packer._advance(lengths, as_bool(last, "last"))
        sources = self._sources(window, step) if spec.provenance else None
        if spec.provenance and not self._pieces:
            window = window.append_column(DOC_INDEX, pa.nulls(window.num_rows, pa.int64()))
            window = window.append_column(DOC_OFFSET, pa.nulls(window.num_rows, pa.int64()))
        source = pa.concat_tables([self._carry, window]) if self._carry.num_rows else window
        rows = step.emit
        if self.seed is not None and rows.shape[0]:
            rows = rows[row_order(rows.shape[0], self.seed + self._outputs)]
        out = assemble(source, step.plan, spec, rows, sources=sources)
        kept = _one_piece_per_sequence(step.plan, step.carried)
        carry = assemble(source, kept, spec.without_extras()).select(list(spec.columns))
        for name in spec.carry:
            carry = carry.append_column(name, source.column(name).take(kept.piece_doc))
        if sources is not None:
            for name, values in zip((DOC_INDEX, DOC_OFFSET), sources):
                carry = carry.append_column(name, pa.array(values[step.carried], pa.int64()))
        carry = carry.cast(spec.piece_schema)
        with held():  # all at once: a step that raises changes nothing
            self._packer._carried = step.after
            self._carry = carry
            self._rows += window.num_rows
            self._outputs += out.num_rows > 0
        return out

    def _sources(self, window: pa.Table, step: _Step) -> PieceSources:
        """Each piece's document and offset: the open pieces' as recorded,
        then the window's documents, numbered on (or, for pieces, as recorded)."""
        n = window.num_rows
        if self._pieces:
            doc = window.column(DOC_INDEX).to_numpy()
            offset = window.column(DOC_OFFSET).to_numpy()
        else:
            doc = self._first + self._packer.counts.documents + np.arange(n, dtype=np.int64)
            offset = np.zeros(n, dtype=np.int64)
        doc = np.concatenate([self._carry.column(DOC_INDEX).to_numpy(), doc]).astype(np.int64)
        offset = np.concatenate([self._carry.column(DOC_OFFSET).to_numpy(), offset])
        local = step.plan.piece_doc
        return PieceSources(doc[local], offset[local].astype(np.int64) + step.plan.piece_start)

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
    tables: Iterable[pa.Table | pa.RecordBatch],
    spec: OutputSpec,
    window_tokens: int,
    *,
    pieces: bool = False,
) -> Generator[tuple[pa.Table, bool], None, None]:
    """Regroup a stream of tables into windows for :meth:`TableStreamPacker.step`.

    Yields ``(window, last)``: tables of whole documents (the columns of
    ``spec``), each just reaching ``window_tokens`` tokens (the last may
    hold fewer), and whether it is the last. The cut falls after the
    document that reaches the window, wherever the input tables end, so
    the windows do not depend on how the stream is batched. One table is
    read ahead, so the last window is known as such without holding two
    windows; a stream with no rows gives one empty window. Tokens are
    counted as packed: with their separators. With ``pieces`` the tables
    are open pieces (``spec.piece_schema``, separators already in).
    """
    window_tokens = as_int(window_tokens, "window_tokens", lo=1, unit="tokens")
    if not isinstance(spec, OutputSpec):
        raise TypeError(f"spec must be an OutputSpec, got {type(spec).__name__}")
    return _windows(tables, spec, window_tokens, as_bool(pieces, "pieces"))


def _windows(
    tables: Iterable[pa.Table | pa.RecordBatch],
    spec: OutputSpec,
    window_tokens: int,
    pieces: bool,
) -> Generator[tuple[pa.Table, bool], None, None]:
    schema = spec.piece_schema if pieces else spec.schema
    stream = (t for t in map(as_table, tables) if t.num_rows)
    parts: list[pa.Table] = []
    tokens = 0
    yielded = False
    table = next(stream, None)
    while table is not None:
        check_same_columns(table.schema, schema, "a table of the stream")
        table = table.select(schema.names)
        n = aligned_lengths(table, spec.columns[:1])
        if not pieces:  # windows of the tokens packed, separators included
            n = spec.document_lengths(n)
        upto = _window_end(np.cumsum(n), window_tokens - tokens)
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


def length_windows(lengths: np.ndarray, window_tokens: int) -> list[np.ndarray]:
    """``lengths`` cut into windows as :func:`windows` cuts tables: each
    window ends with the document that reaches ``window_tokens`` tokens.

    No window for no documents.
    """
    out = []
    start = 0
    ends = np.cumsum(lengths)
    while start < lengths.shape[0]:
        before = int(ends[start - 1]) if start else 0
        stop = _window_end(ends, before + window_tokens)
        out.append(lengths[start:stop])
        start = stop
    return out


def _window_end(ends: np.ndarray, reach: int) -> int:
    """The rule of every window cut: the documents whose running token
    totals are ``ends``, up to the one that reaches ``reach`` tokens,
    inclusive (``len(ends) + 1`` when none does)."""
    return int(np.searchsorted(ends, reach)) + 1


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The rows of ``parts``, in the types of ``schema``."""
    same = []
    for t in parts:
        t = t.replace_schema_metadata(None)
        same.append(t if t.schema.equals(schema) else t.cast(schema))
    return pa.concat_tables(same) if same else schema.empty_table()
