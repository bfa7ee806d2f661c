"""Packed Arrow tables: :func:`pack_table`, :class:`OutputSpec`,
:func:`assemble`, and the flash-attention helpers :func:`cu_seqlens` and
:func:`max_seqlen`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from . import _batch
from ._arrow import document_addresses, has_null_values, list_array, row_lengths
from ._jit import call, readonly, token_bits, token_view
from ._kernels.gather import gather_piece_lengths, gather_tokens, row_offsets
from ._kernels.gather import position_ids as _position_ids
from ._validate import (
    as_bool,
    as_carry,
    as_columns,
    as_indices,
    as_lengths,
    as_pad_values,
    as_seed,
    as_seq_len,
    as_table,
    check_nonnegative,
    value_dtype,
)
from .packing import Packing, pack

SEQ_LENGTHS = "seq_lengths"
POSITION_IDS = "position_ids"
#: Columns bfpack adds to its output; no input column may take these names.
RESERVED_COLUMNS = (SEQ_LENGTHS, POSITION_IDS)
DOC_INDEX = "doc_index"
DOC_OFFSET = "doc_offset"
#: The provenance columns (``provenance=True``): per piece, its document's
#: index in the input and the offset of its first token in that document.
PROVENANCE_COLUMNS = (DOC_INDEX, DOC_OFFSET)


class PieceSources(NamedTuple):
    """Where each piece of a plan comes from, across the whole input
    (the ``doc_index`` and ``doc_offset`` that :func:`assemble` writes).

    Attributes
    ----------
    doc : numpy.ndarray of int64, shape (num_pieces,)
        Each piece's document, numbered from 0 in input order.
    offset : numpy.ndarray of int64, shape (num_pieces,)
        The offset of each piece's first token within its document.
    """

    doc: np.ndarray
    offset: np.ndarray


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    """What a packed table holds, checked against the input schema once.

    Attributes
    ----------
    columns : tuple of str
        The packed list columns (token ids and anything aligned with them),
        in output order.
    list_types : tuple of pyarrow.DataType
        Their types in the input (list or large_list of the token type);
        the output keeps them.
    pad_values : tuple of int or float, or None
        Per column, the value that pads rows to ``seq_len``; None: rows are
        as long as their pieces.
    position_ids : bool
        Whether a ``position_ids`` column is added.
    provenance : bool
        Whether ``doc_index`` and ``doc_offset`` columns are added.
    carry : tuple of str
        Per-document columns carried as a list per row, one value per piece.
    carry_types : tuple of pyarrow.DataType
        Their types in the input.
    separators : tuple of int or float, or None
        Per packed column, the value appended to every non-empty document
        before packing (counted in its length); None: nothing is appended.

    Every packed table also has ``seq_lengths``: the length of each piece
    of a row, in order (list<int32>).
    """

    columns: tuple[str, ...]
    list_types: tuple[pa.DataType, ...]
    pad_values: tuple[float, ...] | None = None
    position_ids: bool = False
    provenance: bool = False
    carry: tuple[str, ...] = ()
    carry_types: tuple[pa.DataType, ...] = ()
    separators: tuple[float, ...] | None = None

    @classmethod
    def for_schema(
        cls,
        schema: pa.Schema,
        *,
        columns: str | Sequence[str] | None = None,
        pad_value: float | Mapping[str, float] | None = None,
        position_ids: bool = False,
        provenance: bool = False,
        carry: str | Sequence[str] | None = None,
        separator: float | Mapping[str, float] | None = None,
    ) -> OutputSpec:
        """The spec for tables of ``schema``, with the options of :func:`pack_table`.

        Raises TypeError or ValueError for columns that are missing, not
        lists of numbers, or named like an added column, for pad values
        and separators of the wrong type or out of their column's range,
        and for carried columns that are missing, packed, or named like an
        added column.
        """
        provenance = as_bool(provenance, "provenance")
        reserved = RESERVED_COLUMNS + (PROVENANCE_COLUMNS if provenance else ())
        names = as_columns(schema, columns, reserved)
        carried = as_carry(schema, carry, names, reserved)
        return cls(
            columns=names,
            list_types=tuple(schema.field(n).type for n in names),
            pad_values=as_pad_values(schema, names, pad_value),
            position_ids=as_bool(position_ids, "position_ids"),
            provenance=provenance,
            carry=carried,
            carry_types=tuple(schema.field(n).type for n in carried),
            separators=as_pad_values(schema, names, separator, what="separator"),
        )

    @property
    def schema(self) -> pa.Schema:
        """The columns read from the input: the packed ones, then the carried ones."""
        names = self.columns + self.carry
        return pa.schema(
            [pa.field(n, t) for n, t in zip(names, self.list_types + self.carry_types)]
        )

    @property
    def piece_schema(self) -> pa.Schema:
        """:attr:`schema`, then (with provenance) ``doc_index`` and ``doc_offset``
        (int64): the pieces a stream packer keeps open, one per row."""
        if not self.provenance:
            return self.schema
        return pa.schema(list(self.schema) + [pa.field(n, pa.int64()) for n in PROVENANCE_COLUMNS])

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The columns of a packed table, in order."""
        return (
            self.columns
            + (SEQ_LENGTHS,)
            + ((POSITION_IDS,) if self.position_ids else ())
            + (PROVENANCE_COLUMNS if self.provenance else ())
            + self.carry
        )

    def without_extras(self) -> OutputSpec:
        """The same packed columns and separators, with no padding, no
        position ids, no provenance and nothing carried."""
        return OutputSpec(
            columns=self.columns, list_types=self.list_types, separators=self.separators
        )

    def document_lengths(self, tokens: np.ndarray) -> np.ndarray:
        """The lengths to pack for documents of ``tokens`` tokens: one more
        for every non-empty document when a separator is appended."""
        if self.separators is None:
            return tokens
        return as_lengths(tokens + (tokens > 0))


def aligned_lengths(table: pa.Table, columns: Sequence[str], first_row: int = 0) -> np.ndarray:
    """Tokens per row of ``columns`` (read-only int64); they must agree row by row.

    The packers' count of each document's tokens, over columns already
    checked (:func:`bfpack.document_lengths` is the public reader, of any data).

    Null lists count as empty. Raises ValueError naming the first row where
    two columns disagree (counting from ``first_row``), or the first column
    holding null tokens.
    """
    lengths = None
    for name in columns:
        col = table.column(name)
        if has_null_values(col):
            raise ValueError(
                f"column {name!r} has null tokens inside its lists; fill them "
                f"(e.g. with a pad id) before packing"
            )
        n = row_lengths(col)
        if lengths is None:
            lengths, first = n, name
        elif not np.array_equal(lengths, n):
            row = int(np.flatnonzero(lengths != n)[0])
            raise ValueError(
                f"row {first_row + row}: column {name!r} has {n[row]} tokens but "
                f"{first!r} has {lengths[row]}; packed columns must be "
                f"aligned token by token (pass columns=[...] to pack fewer)"
            )
    return as_lengths(lengths)


def row_order(num_rows: int, seed: int | None) -> np.ndarray:
    """The row permutation for a validated ``seed`` (identity for None)."""
    if seed is None:
        return np.arange(num_rows, dtype=np.int64)
    return np.random.default_rng(seed).permutation(num_rows).astype(np.int64)


def assemble(
    table: pa.Table,
    plan: Packing,
    spec: OutputSpec,
    rows: Any = None,
    *,
    sources: PieceSources | None = None,
) -> pa.Table:
    """The packed table of ``plan`` over the documents of ``table``.

    Parameters
    ----------
    table : pyarrow.Table
        One row per document of the plan (row ``i`` is document ``i``),
        holding the columns of ``spec``.
    plan : Packing
        Which pieces go in which sequence.
    spec : OutputSpec
        The output's columns, padding and position ids.
    rows : array_like of int, optional
        The sequences to write, in order (default: all, in plan order);
        output row ``r`` is sequence ``rows[r]``.
    sources : PieceSources, optional
        With ``spec.provenance``: each piece's document and offset in the
        whole input (default: ``plan.piece_doc`` and ``plan.piece_start``).

    A piece that reaches past its document's tokens in ``table`` ends with
    the column's separator (``spec.separators``): the plan packed each
    document one token longer.

    Returns
    -------
    pyarrow.Table
        The columns of ``spec.output_columns``.
    """
    if rows is None:
        rows = np.arange(plan.num_sequences)
    rows = as_indices(rows, plan.num_sequences, "rows")
    pad_to = plan.seq_len if spec.pad_values is not None else 0
    out_offsets = call(row_offsets, rows, plan.seq_offsets, plan.piece_len, pad_to)
    copied = plan.piece_len
    if spec.separators is not None and plan.num_pieces:
        # Tokens a piece takes from its document; the one slot past them
        # (at most one: the document was packed one token longer) is the separator.
        held = row_lengths(table.column(spec.columns[0]))[plan.piece_doc] - plan.piece_start
        copied = readonly(np.minimum(plan.piece_len, held).astype(plan.piece_len.dtype))
    arrays = {}
    for i, name in enumerate(spec.columns):
        pad = 0 if spec.pad_values is None else spec.pad_values[i]
        sep = pad if spec.separators is None else spec.separators[i]
        arrays[name] = _gather_column(
            table.column(name),
            spec.list_types[i],
            plan,
            rows,
            out_offsets,
            pad=pad,
            copied=copied,
            separator=sep,
        )
    len_offsets, len_values = call(gather_piece_lengths, rows, plan.seq_offsets, plan.piece_len)
    arrays[SEQ_LENGTHS] = list_array(len_offsets, len_values, pa.int32())
    if spec.position_ids:
        positions = call(_position_ids, len_offsets, len_values, out_offsets)
        arrays[POSITION_IDS] = list_array(out_offsets, positions, pa.int32())
    if spec.provenance or spec.carry:
        pieces = _pieces_of(plan, rows)
        if spec.provenance:
            if sources is None:
                sources = PieceSources(plan.piece_doc, plan.piece_start)
            arrays[DOC_INDEX] = _per_piece(len_offsets, sources.doc[pieces])
            arrays[DOC_OFFSET] = _per_piece(len_offsets, sources.offset[pieces])
        docs = plan.piece_doc[pieces]
        for name in spec.carry:
            arrays[name] = _per_piece(len_offsets, table.column(name).take(docs))
    return pa.table(arrays)


def _pieces_of(plan: Packing, rows: np.ndarray) -> np.ndarray:
    """The plan's pieces of sequences ``rows``, row after row (int64 indices)."""
    lo = plan.seq_offsets[rows]
    sizes = plan.seq_offsets[rows + 1] - lo
    before = np.cumsum(sizes) - sizes
    return np.repeat(lo - before, sizes) + np.arange(int(sizes.sum()), dtype=np.int64)


def _per_piece(offsets: np.ndarray, values: Any) -> pa.Array:
    """A list per row, one value per piece: ``values`` cut at ``offsets``
    (the offsets of ``seq_lengths``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(np.asarray(values, dtype=np.int64))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def _gather_column(
    col: pa.ChunkedArray,
    list_type: pa.DataType,
    plan: Packing,
    rows: np.ndarray,
    out_offsets: np.ndarray,
    *,
    pad: float,
    copied: np.ndarray,
    separator: float,
) -> pa.Array | pa.ChunkedArray:
    """One packed column: every piece's tokens, row by row, padded with
    ``pad``; a piece that copies fewer tokens than its length ends with
    ``separator``."""
    dtype = value_dtype(list_type)
    source = document_addresses(col, dtype)  # into col's buffers, alive meanwhile
    out = np.empty(out_offsets[-1], dtype=dtype)
    call(
        gather_tokens,
        source.doc_address,
        rows,
        plan.seq_offsets,
        plan.piece_doc,
        plan.piece_start,
        plan.piece_len,
        copied,
        out_offsets,
        token_bits(pad, dtype),
        token_bits(separator, dtype),
        token_view(out),
    )
    return list_array(
        out_offsets, out, list_type.value_field, large=pa.types.is_large_list(list_type)
    )


class TablePlan(NamedTuple):
    """A table's packing, before any token moves (:func:`plan_table`)."""

    spec: OutputSpec  # the output's columns
    plan: Packing  # pieces per sequence; piece_doc numbers rows of the table
    rows: np.ndarray  # the sequences in output order (int64)
    sources: PieceSources | None = None  # with indices: the pieces' documents in their order


def plan_table(
    table: pa.Table,
    seq_len: int,
    *,
    columns: str | Sequence[str] | None = None,
    method: str = "bfd",
    long_docs: str = "split",
    pad_value: float | Mapping[str, float] | None = None,
    position_ids: bool = False,
    seed: int | None = None,
    indices: Any = None,
    provenance: bool = False,
    carry: str | Sequence[str] | None = None,
    separator: float | Mapping[str, float] | None = None,
) -> TablePlan:
    """Plan :func:`pack_table` of ``table`` (a validated pyarrow Table).

    ``assemble(table, p.plan, p.spec, p.rows, sources=p.sources)`` of
    ``p = plan_table(table, ...)`` is ``pack_table(table, ...)``;
    assembling a few output rows at a time bounds memory.
    """
    seq_len = as_seq_len(seq_len)
    spec = OutputSpec.for_schema(
        table.schema,
        columns=columns,
        pad_value=pad_value,
        position_ids=position_ids,
        provenance=provenance,
        carry=carry,
        separator=separator,
    )
    seed = as_seed(seed)
    lengths = spec.document_lengths(aligned_lengths(table, spec.columns))
    if indices is not None:
        indices = as_indices(indices, table.num_rows, "indices")
        lengths = lengths[indices]
    plan = pack(lengths, seq_len, method=method, long_docs=long_docs)
    sources = None
    if indices is not None:
        # Document i of the plan is row indices[i] of the table.
        if spec.provenance:
            sources = PieceSources(plan.piece_doc, plan.piece_start)
        plan = dataclasses.replace(plan, piece_doc=indices[plan.piece_doc])
    return TablePlan(spec, plan, row_order(plan.num_sequences, seed), sources)


def pack_table(
    table: pa.Table | pa.RecordBatch,
    seq_len: int,
    *,
    columns: str | Sequence[str] | None = None,
    method: str = "bfd",
    long_docs: str = "split",
    pad_value: float | Mapping[str, float] | None = None,
    position_ids: bool = False,
    seed: int | None = None,
    indices: Any = None,
    provenance: bool = False,
    carry: str | Sequence[str] | None = None,
    separator: float | Mapping[str, float] | None = None,
) -> pa.Table:
    """Pack the token lists of an Arrow table into rows of at most ``seq_len``.

    Parameters
    ----------
    table : pyarrow.Table or pyarrow.RecordBatch
        One row per document.
    seq_len : int
        Tokens per packed row (the context length).
    columns : str or list of str, optional
        The list columns to pack (token ids and anything aligned with them,
        such as labels or loss masks). Default: every list or large_list
        column but ``attention_mask``, which is left out with a warning (a
        per-document mask packed along would let tokens attend across the
        documents of a row); name it here to pack it. Every packed column
        must hold lists of the same length in each row; a null list is an
        empty document. Other columns are per document and are not carried
        over.
    method, long_docs : str
        As in :func:`bfpack.pack`.
    pad_value : int, float or dict, optional
        Pad every row to exactly ``seq_len`` tokens with this value (or with
        ``pad_value[column]`` per column). Padding is not a piece: it does
        not appear in ``seq_lengths``. Integer columns take integers in
        their range; floating-point columns also take finite floats (rounded
        to the column's precision, refused past its largest value, where
        they would become inf). Checked before any token is read.
    position_ids : bool
        Add a ``position_ids`` column (list<int32>) that restarts at 0 at
        every piece; padding slots hold 0.
    seed : int, optional
        Shuffle the output rows with this seed. BFD opens sequences from the
        longest pieces to the shortest, so unshuffled rows are ordered by
        content length. The same seed gives the same order.
    indices : array_like of int, optional
        The documents are rows ``indices[0], indices[1], ...`` of ``table``,
        in that order (a selection or permutation, like the indices mapping
        of a ``datasets.Dataset``); nothing is copied to apply it. Default:
        every row, in order.
    provenance : bool
        Add ``doc_index`` and ``doc_offset`` columns (list<int64>, one value
        per piece, like ``seq_lengths``): the piece's document, numbered
        from 0 in input order (its row of ``table``, or its position in
        ``indices``), and the offset of the piece's first token in that
        document. Empty documents are numbered too, though they make no piece.
    carry : str or list of str, optional
        Per-document columns (any type but a list: an id, a URL, a source
        name) to carry into the output as a list per row, one value per
        piece (the piece's document's value; nulls stay null).
    separator : int, float or dict, optional
        Append this value (the tokenizer's ``eos_token_id``, say) to every
        non-empty document before packing, in every packed column (or
        ``separator[column]`` per column, e.g. ``-100`` for labels). It
        counts in the document's length, so a document of ``n`` tokens is
        packed as ``n + 1`` and ends, in its last piece, with the
        separator; ``seq_lengths`` and ``position_ids`` include it.
        Checked like ``pad_value``; one value for all columns is a token
        id, not negative.

    Returns
    -------
    pyarrow.Table
        One row per packed sequence: each packed column (its input type:
        list or large_list of the same values; a list column of more than
        2**31 - 1 values comes in several chunks), then ``seq_lengths`` (list<int32>,
        the length of each piece in the row, in order), then
        ``position_ids`` if asked, then ``doc_index`` and ``doc_offset``
        with ``provenance``, then the ``carry`` columns (list of their type).

    Raises
    ------
    TypeError
        ``table`` is not an Arrow table (a ``datasets.Dataset`` goes to
        :func:`bfpack.hf.pack_dataset`), a column is not a list column of
        numbers, ``seed`` is not an integer, ``pad_value`` is not an
        integer (a number, for a floating-point column).
    ValueError
        A column is missing or named twice, rows of packed columns differ in
        length, a list holds nulls, ``pad_value`` is not finite or does not
        fit the column type, an index is out of range, or an option of
        :func:`bfpack.pack` is invalid.

    Notes
    -----
    Tokens are copied once, straight from the Arrow buffers (sliced and
    chunked columns included) into the output buffers, by a compiled
    kernel; nothing loops over documents in Python.
    """
    table = as_table(table)
    p = plan_table(
        table,
        seq_len,
        columns=columns,
        method=method,
        long_docs=long_docs,
        pad_value=pad_value,
        position_ids=position_ids,
        seed=seed,
        indices=indices,
        provenance=provenance,
        carry=carry,
        separator=separator,
    )
    return assemble(table, p.plan, p.spec, p.rows, sources=p.sources)


def cu_seqlens(seq_lengths: Any) -> np.ndarray:
    """Cumulative piece lengths, as flash-attention's varlen kernels take them.

    Parameters
    ----------
    seq_lengths : array_like or pyarrow list array
        The ``seq_lengths`` of one packed row (a sequence or a pyarrow list
        scalar), or of several rows (a list of rows, or a pyarrow ListArray /
        ChunkedArray of them) laid end to end in one flattened batch.

    Returns
    -------
    numpy.ndarray
        int32, shape ``(num_pieces + 1,)``, starting at 0.

    Examples
    --------
    >>> cu_seqlens([3, 5, 2])
    array([ 0,  3,  8, 10], dtype=int32)
    """
    return _batch.cu_seqlens(_flat_lengths(seq_lengths))


def max_seqlen(seq_lengths: Any) -> int:
    """Longest piece in a row or batch of ``seq_lengths``, as a Python int."""
    return _batch.max_seqlen(_flat_lengths(seq_lengths))


def _flat_lengths(seq_lengths: Any) -> np.ndarray:
    if isinstance(seq_lengths, (pa.ListScalar, pa.LargeListScalar)):
        seq_lengths = seq_lengths.values  # one row, e.g. table["seq_lengths"][0]
    if isinstance(seq_lengths, pa.ChunkedArray):
        seq_lengths = seq_lengths.combine_chunks()
    if isinstance(seq_lengths, (pa.ListArray, pa.LargeListArray)):
        seq_lengths = seq_lengths.flatten()
    elif (
        isinstance(seq_lengths, (list, tuple))
        and seq_lengths
        and all(isinstance(r, (list, tuple, np.ndarray)) for r in seq_lengths)
    ):
        seq_lengths = np.concatenate(
            [as_lengths(r, name=f"seq_lengths[{i}]") for i, r in enumerate(seq_lengths)]
        )
    lengths = as_lengths(seq_lengths, name="seq_lengths")
    check_nonnegative(lengths, "seq_lengths")
    return lengths
