"""Packing Arrow tables of token lists: :func:`pack_table` and helpers."""

import numbers

import numba
import numpy as np
import pyarrow as pa

from ._kernels.gather import (gather_piece_lengths, gather_tokens,
                              position_ids as _position_ids, row_offsets)
from ._validate import as_lengths
from .packing import pack

SEQ_LENGTHS = "seq_lengths"
POSITION_IDS = "position_ids"
_INT32_MAX = np.iinfo(np.int32).max


def pack_table(table, seq_len, *, columns=None, method="bfd", long_docs="split",
               pad_value=None, position_ids=False, seed=None):
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
        column. Every packed column must hold lists of the same length in
        each row; a null list is an empty document. Other columns are per
        document and are not carried over.
    method, long_docs : str
        As in :func:`bfpack.pack`.
    pad_value : int or dict, optional
        Pad every row to exactly ``seq_len`` tokens with this value (or with
        ``pad_value[column]`` per column). Padding is not a piece: it does
        not appear in ``seq_lengths``.
    position_ids : bool
        Add a ``position_ids`` column (list<int32>) that restarts at 0 at
        every piece; padding slots hold 0.
    seed : int, optional
        Shuffle the output rows with this seed. BFD opens sequences from the
        longest pieces to the shortest, so unshuffled rows are ordered by
        content length. The same seed gives the same order.

    Returns
    -------
    pyarrow.Table
        One row per packed sequence: each packed column (same value type,
        list or large_list as needed), then ``seq_lengths`` (list<int32>,
        the length of each piece in the row, in order), then
        ``position_ids`` if asked.

    Raises
    ------
    TypeError
        ``table`` is not an Arrow table, a column is not a list column of
        numbers, ``pad_value`` or ``seed`` is not an integer.
    ValueError
        A column is missing, rows of packed columns differ in length, a list
        holds nulls, ``pad_value`` does not fit the column type, or an
        option of :func:`bfpack.pack` is invalid.

    Notes
    -----
    Tokens are copied once, straight from the Arrow buffers (sliced and
    chunked columns included) into the output buffers, by a compiled
    kernel; nothing loops over documents in Python.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(
            f"table must be a pyarrow.Table or RecordBatch, got "
            f"{type(table).__name__}; e.g. pyarrow.Table.from_pydict(...)")
    names = packed_columns(table.schema, columns)
    pads = pad_values(table.schema, names, pad_value)
    lengths = document_lengths(table, names)
    plan = pack(lengths, seq_len, method=method, long_docs=long_docs)
    rows = row_order(plan.num_sequences, seed)
    return assemble(table, names, plan.seq_len, plan.seq_offsets,
                    plan.piece_doc, plan.piece_start, plan.piece_len, rows,
                    pads, position_ids)


def document_lengths(table, columns, first_row=0):
    """Tokens per row of ``columns`` (int64); they must agree row by row.

    Null lists count as empty. Raises ValueError naming the first row where
    two columns disagree (counting from ``first_row``), or the first column
    holding null tokens.
    """
    lengths = None
    for name in columns:
        col = table.column(name)
        if any(chunk.values.null_count and chunk.flatten().null_count
               for chunk in col.chunks):
            raise ValueError(
                f"column {name!r} has null tokens inside its lists; fill them "
                f"(e.g. with a pad id) before packing")
        n = np.zeros(len(col), dtype=np.int64)
        lo = 0
        for chunk in col.chunks:
            offsets = chunk.offsets.to_numpy()
            n[lo:lo + len(chunk)] = np.diff(offsets)
            if chunk.null_count:
                n[lo:lo + len(chunk)][chunk.is_null().to_numpy(zero_copy_only=False)] = 0
            lo += len(chunk)
        if lengths is None:
            lengths, first = n, name
        elif not np.array_equal(lengths, n):
            row = int(np.flatnonzero(lengths != n)[0])
            raise ValueError(
                f"row {first_row + row}: column {name!r} has {n[row]} tokens but "
                f"{first!r} has {lengths[row]}; packed columns must be "
                f"aligned token by token (pass columns=[...] to pack fewer)")
    return lengths


def packed_columns(schema, columns):
    """Names of the columns to pack, checked against ``schema``."""
    if columns is None:
        names = [f.name for f in schema
                 if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)]
        if not names:
            raise ValueError(
                "the table has no list column to pack; columns: "
                f"{schema.names}")
    else:
        names = [columns] if isinstance(columns, str) else list(columns)
        if not names:
            raise ValueError("columns is empty; name at least one list column")
    for name in names:
        if name not in schema.names:
            raise ValueError(
                f"column {name!r} is not in the table; its columns are "
                f"{schema.names}")
        t = schema.field(name).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise TypeError(
                f"column {name!r} has type {t}, not a list of tokens; pack "
                f"list<int> columns only")
        v = t.value_type
        if not (pa.types.is_integer(v) or pa.types.is_float32(v)
                or pa.types.is_float64(v)):
            raise TypeError(
                f"column {name!r} holds {v} values; only integer, float32 or "
                f"float64 tokens can be packed (cast the column first)")
        if name in (SEQ_LENGTHS, POSITION_IDS):
            raise ValueError(
                f"column {name!r} would clash with the column bfpack adds; "
                f"rename it first")
    if len(set(names)) != len(names):
        raise ValueError(f"columns lists a column twice: {names}")
    return names


def pad_values(schema, names, pad_value):
    """Per-column pad value, or None for no padding."""
    if pad_value is None:
        return None
    if isinstance(pad_value, dict):
        missing = [n for n in names if n not in pad_value]
        if missing:
            raise ValueError(
                f"pad_value has no value for column(s) {missing}; give one "
                f"for every packed column")
        pads = {n: pad_value[n] for n in names}
    else:
        pads = dict.fromkeys(names, pad_value)
    for name, value in pads.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"pad_value for {name!r} must be an integer, got {value!r}")
        dtype = np.dtype(schema.field(name).type.value_type.to_pandas_dtype())
        if dtype.kind in "iu" and not (np.iinfo(dtype).min <= value <= np.iinfo(dtype).max):
            raise ValueError(
                f"pad_value {value} does not fit column {name!r} of type "
                f"{dtype}; pick a value in its range")
        pads[name] = int(value)
    return pads


def row_order(num_rows, seed):
    """Row permutation for ``seed`` (identity for None)."""
    if seed is None:
        return np.arange(num_rows, dtype=np.int64)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(int(seed)).permutation(num_rows).astype(np.int64)


def assemble(table, names, seq_len, seq_offsets, piece_doc, piece_start,
             piece_len, rows, pads, with_positions):
    """Build the packed table: row ``r`` holds the pieces of sequence
    ``rows[r]`` of the CSR packing over ``table``'s rows."""
    pad_to = seq_len if pads is not None else 0
    out_offsets = row_offsets(rows, seq_offsets, piece_len, pad_to)
    arrays = {}
    for name in names:
        col = table.column(name)
        values, offsets, first_doc = _chunk_buffers(col)
        dtype = np.dtype(col.type.value_type.to_pandas_dtype())
        out = np.empty(out_offsets[-1], dtype=dtype)
        pad = dtype.type(pads[name] if pads is not None else 0)
        gather_tokens(values, offsets, first_doc, rows, seq_offsets,
                      piece_doc, piece_start, piece_len, out_offsets, pad, out)
        arrays[name] = _list_array(out_offsets, out, col.type.value_field,
                                   large=pa.types.is_large_list(col.type))
    len_offsets, len_values = gather_piece_lengths(rows, seq_offsets, piece_len)
    arrays[SEQ_LENGTHS] = _list_array(len_offsets, len_values, pa.int32())
    if with_positions:
        positions = _position_ids(len_offsets, len_values, out_offsets)
        arrays[POSITION_IDS] = _list_array(out_offsets, positions, pa.int32())
    return pa.table(arrays)


def _list_array(offsets, values, value_field, large=False):
    """A list (or large_list, when asked or needed) array over numpy buffers."""
    large = large or offsets[-1] > _INT32_MAX
    typ = pa.large_list(value_field) if large else pa.list_(value_field)
    offsets = offsets if large else offsets.astype(np.int32)
    field = typ.value_field
    return pa.Array.from_buffers(
        typ, len(offsets) - 1, [None, pa.py_buffer(offsets)],
        children=[pa.Array.from_buffers(field.type, len(values),
                                        [None, pa.py_buffer(values)])])


def _readonly(a):
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _primitive_view(arr, dtype):
    """Zero-copy numpy view of a primitive Arrow array's data, slice applied."""
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return _readonly(np.empty(0, dtype=dtype))
    data = np.frombuffer(buf, dtype=dtype)
    return _readonly(data[arr.offset:arr.offset + len(arr)])


def _chunk_buffers(col):
    """Typed lists of each chunk's values and offsets, plus first documents."""
    dtype = np.dtype(col.type.value_type.to_pandas_dtype())
    off_dtype = np.int64 if pa.types.is_large_list(col.type) else np.int32
    values = numba.typed.List()
    offsets = numba.typed.List()
    first_doc = [0]
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        values.append(_primitive_view(chunk.values, dtype))
        offsets.append(_primitive_view(chunk.offsets, off_dtype))
        first_doc.append(first_doc[-1] + len(chunk))
    if not len(values):
        values.append(_readonly(np.empty(0, dtype=dtype)))
        offsets.append(_readonly(np.zeros(1, dtype=off_dtype)))
        first_doc.append(0)
    return values, offsets, np.array(first_doc, dtype=np.int64)


def cu_seqlens(seq_lengths):
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
    lengths = _flat_lengths(seq_lengths)
    out = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > _INT32_MAX:
        raise ValueError("the batch holds more than 2**31 - 1 tokens; "
                         "cu_seqlens is int32")
    return out.astype(np.int32)


def max_seqlen(seq_lengths):
    """Longest piece in a row or batch of ``seq_lengths``, as a Python int."""
    lengths = _flat_lengths(seq_lengths)
    return int(lengths.max()) if lengths.shape[0] else 0


def _flat_lengths(seq_lengths):
    if isinstance(seq_lengths, (pa.ListScalar, pa.LargeListScalar)):
        seq_lengths = seq_lengths.values  # one row, e.g. table["seq_lengths"][0]
    if isinstance(seq_lengths, pa.ChunkedArray):
        seq_lengths = seq_lengths.combine_chunks()
    if isinstance(seq_lengths, (pa.ListArray, pa.LargeListArray)):
        seq_lengths = seq_lengths.flatten()
    elif isinstance(seq_lengths, (list, tuple)) and seq_lengths and all(
            isinstance(r, (list, tuple, np.ndarray)) for r in seq_lengths):
        seq_lengths = np.concatenate([np.asarray(r, dtype=np.int64).ravel()
                                      for r in seq_lengths])
    return as_lengths(seq_lengths, name="seq_lengths")
