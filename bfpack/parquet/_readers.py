"""The seam between a source and its files' formats: one reader per format.

:class:`~bfpack.parquet._source.ParquetSource` lists a source's files,
checks their identity and regroups their batches into windows; how a file
of one format is inspected and read is its :class:`InputReader`'s:

- ``parquet`` (:mod:`bfpack.parquet._source`), found by its magic bytes;
- ``arrow`` (:mod:`bfpack.parquet._arrow_input`): Arrow IPC files and
  streams (``.arrow``, ``.feather``, the shards of a ``datasets``
  ``save_to_disk`` directory), found by their magic bytes;
- ``jsonl`` (:mod:`bfpack.parquet._jsonl_input`): JSON Lines, found by
  their name (``.jsonl``, ``.ndjson``, optionally ``.gz`` or ``.zst``).

A reader works on an open binary handle (what the source checked is what
is read), so that opening files through another file system changes the
source, not the readers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

import numpy as np
import pyarrow as pa

from .._arrow import is_list_type

#: Rows per batch at most.
MAX_BATCH_ROWS = 8192
#: Bytes hashed at each end of a file for its ``ends_sha256``.
ENDS_BYTES = 1 << 20
#: Bytes read to tell a file's format.
HEAD_BYTES = 8

#: What each format is called in messages.
LABELS = {"parquet": "Parquet", "arrow": "Arrow IPC", "jsonl": "JSON Lines"}

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_COMPRESSED = {".gz": "gzip", ".zst": "zstd"}


class InputFile(Protocol):
    """What a reader knows of a file of the source (a ``SourceFile``)."""

    @property
    def path(self) -> str: ...

    @property
    def rows(self) -> int: ...


class InputReader(Protocol):
    """How the files of one format are inspected and read.

    ``name`` is the format's name in the manifest; ``digest_key`` the
    manifest key of :meth:`digest`.
    """

    name: str
    digest_key: str

    def inspect(self, fh: BinaryIO, path: str) -> tuple[int, pa.Schema]:
        """``(rows, schema)`` of the open file; ValueError if it cannot be read."""
        ...

    def digest(self, fh: BinaryIO, size: int) -> str:
        """The content part of the file's identity (hex), from the open file."""
        ...

    def read(
        self, f: InputFile, fh: BinaryIO, names: list[str], schema: pa.Schema, batch_tokens: int
    ) -> Iterator[pa.RecordBatch]:
        """Batches of the columns ``names`` (about ``batch_tokens`` tokens each),
        typed as ``schema``; ValueError naming the file for what cannot be read."""
        ...


def detect(head: bytes, name: str) -> str | None:
    """The format of a file from its first bytes and its name, or None.

    Parquet and Arrow by their magic bytes (whatever the name); JSON Lines
    by the name, as JSON has no magic.
    """
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1" or head[:4] == b"\xff\xff\xff\xff":
        return "arrow"
    if jsonl_compression(name) is not False:
        return "jsonl"
    return None


def jsonl_compression(name: str) -> str | None | bool:
    """The codec of a JSON Lines file by its name (None: plain), False if it is not one."""
    lower = name.lower()
    for suffix, codec in _COMPRESSED.items():
        if lower.endswith(suffix):
            lower, compression = lower[: -len(suffix)], codec
            break
    else:
        compression = None
    return compression if lower.endswith(_JSONL_SUFFIXES) else False


def ends_sha256(fh: BinaryIO, size: int) -> str:
    """SHA-256 of the file's size and of its first and last MiB (all of it if smaller).

    With the size and the modification time, the identity of a file whose
    every byte is not hashed: a rewrite shows in its length, its time, its
    header or its end (an Arrow file's footer, a stream's last batches).
    """
    h = hashlib.sha256(size.to_bytes(8, "little"))
    fh.seek(0)
    h.update(fh.read(min(size, ENDS_BYTES)))
    if size > ENDS_BYTES:
        fh.seek(max(size - ENDS_BYTES, ENDS_BYTES))
        h.update(fh.read(ENDS_BYTES))
    return h.hexdigest()


def token_slices(batch: pa.RecordBatch, column: str, batch_tokens: int) -> Iterator[pa.RecordBatch]:
    """``batch`` cut (without copying) into runs of rows of about ``batch_tokens``
    tokens of the list column ``column``, each within 1 and 8192 rows."""
    n = batch.num_rows
    if n == 0:
        return
    arr = batch.column(batch.schema.get_field_index(column))
    offsets = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)
    start = 0
    while start < n:
        # The first row whose end passes the budget closes the run.
        end = int(np.searchsorted(offsets, offsets[start] + batch_tokens, side="left"))
        end = min(max(end, start + 1), start + MAX_BATCH_ROWS, n)
        yield batch.slice(start, end - start)
        start = end


def as_parquet_reads(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its list columns' value fields named ``element``, as
    Parquet's reader names them: the packed output's schema, and so its
    bytes, do not depend on the input's format."""
    fields = []
    for field in schema:
        t = field.type
        if is_list_type(t):
            make = pa.list_ if pa.types.is_list(t) else pa.large_list
            value = t.value_field
            t = make(pa.field("element", value.type, nullable=value.nullable))
        fields.append(pa.field(field.name, t, nullable=field.nullable))
    return pa.schema(fields)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch``'s columns of ``schema``, in its order and types (list or large_list)."""
    arrays = []
    for field in schema:
        arr = batch.column(batch.schema.get_field_index(field.name))
        arrays.append(arr if arr.type == field.type else arr.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without control characters."""
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else "?" for c in text) or type(exc).__name__


def shown(value: Any, limit: int = 40) -> str:
    """A JSON value for a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
