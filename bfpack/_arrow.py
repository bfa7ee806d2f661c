"""Arrow plumbing: numpy views of list columns, list arrays over numpy buffers.

A list column arrives as one or more chunks, each a flat ``values`` buffer
and an ``offsets`` buffer (document ``i`` of the chunk is
``values[offsets[i]:offsets[i + 1]]``). Sliced arrays keep their original
buffers and shifted offsets, which index the same way, so nothing is copied
on input but the offsets (turned into the int64 address of each document's
first token, 8 bytes per document: :func:`document_addresses`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ._jit import readonly

#: The largest int32: bounds seq_len, list offsets and ``cu_seqlens``.
INT32_MAX = int(np.iinfo(np.int32).max)
#: Values one list array holds at most (its offsets are int32). A module
#: constant so that tests can reach the limit with small inputs.
MAX_LIST_VALUES = INT32_MAX


def is_list_type(t: pa.DataType) -> bool:
    """Whether ``t`` is a list or large_list type."""
    return pa.types.is_list(t) or pa.types.is_large_list(t)


class TokenAddresses(NamedTuple):
    """Where every document's tokens start, as the gather kernel takes them."""

    doc_address: np.ndarray  # int64, read-only: address of document d's first token
    buffers: tuple[np.ndarray, ...]  # the chunks' values, which the addresses point into


def document_addresses(col: pa.ChunkedArray, dtype: np.dtype) -> TokenAddresses:
    """The address of each document's first token in the list column ``col``.

    Every chunk's values stay where Arrow holds them (sliced arrays
    included); only the offsets become addresses (8 bytes per document).
    The addresses are valid while the returned ``buffers`` (views of
    ``col``'s buffers) are alive.
    """
    off_dtype = np.dtype(np.int64 if pa.types.is_large_list(col.type) else np.int32)
    addresses = [np.zeros(0, dtype=np.int64)]
    buffers = []
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        values = primitive_view(chunk.values, dtype)
        offsets = primitive_view(chunk.offsets, off_dtype)[:-1].astype(np.int64)
        offsets *= dtype.itemsize
        offsets += values.ctypes.data
        addresses.append(offsets)
        buffers.append(values)
    return TokenAddresses(readonly(np.concatenate(addresses)), tuple(buffers))


def primitive_view(arr: pa.Array, dtype: np.dtype) -> np.ndarray:
    """Read-only numpy view of a primitive Arrow array's data, slice applied."""
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return readonly(np.empty(0, dtype=dtype))
    data = np.frombuffer(buf, dtype=dtype)
    return readonly(data[arr.offset : arr.offset + len(arr)])


def list_array(
    offsets: np.ndarray,
    values: np.ndarray,
    value_field: pa.Field | pa.DataType,
    large: bool = False,
) -> pa.Array | pa.ChunkedArray:
    """A list (or, when asked, large_list) array over numpy buffers.

    The type never depends on the size: a list array's int32 offsets reach
    at most ``MAX_LIST_VALUES`` values, so more values than that give a
    ChunkedArray of several list arrays (whole rows each), so that every
    table and shard bfpack writes for one input has the same schema.
    """
    typ = pa.large_list(value_field) if large else pa.list_(value_field)
    if large or offsets[-1] - offsets[0] <= MAX_LIST_VALUES:
        return _list_chunk(typ, offsets, values)
    chunks = []
    lo = 0
    rows = len(offsets) - 1
    while lo < rows:
        # The most rows from lo whose values fit (a row holds at most seq_len).
        hi = int(np.searchsorted(offsets, offsets[lo] + MAX_LIST_VALUES, side="right")) - 1
        hi = min(max(hi, lo + 1), rows)
        a, b = int(offsets[lo]), int(offsets[hi])
        chunks.append(_list_chunk(typ, offsets[lo : hi + 1] - a, values[a:b]))
        lo = hi
    return pa.chunked_array(chunks, type=typ)


def _list_chunk(typ: pa.DataType, offsets: np.ndarray, values: np.ndarray) -> pa.Array:
    offsets = offsets.astype(np.int64 if pa.types.is_large_list(typ) else np.int32)
    field = typ.value_field
    return pa.Array.from_buffers(
        typ,
        len(offsets) - 1,
        [None, pa.py_buffer(offsets)],
        children=[pa.Array.from_buffers(field.type, len(values), [None, pa.py_buffer(values)])],
    )


def row_lengths(col: pa.ChunkedArray) -> np.ndarray:
    """Elements in each row of the list column ``col`` (int64); null rows count 0."""
    n = np.zeros(len(col), dtype=np.int64)
    lo = 0
    for chunk in col.chunks:
        offsets = chunk.offsets.to_numpy()
        n[lo : lo + len(chunk)] = np.diff(offsets)
        if chunk.null_count:
            n[lo : lo + len(chunk)][chunk.is_null().to_numpy(zero_copy_only=False)] = 0
        lo += len(chunk)
    return n


def has_null_values(col: pa.ChunkedArray) -> bool:
    """Whether any list of ``col`` holds a null element."""
    return any(chunk.values.null_count and chunk.flatten().null_count for chunk in col.chunks)
