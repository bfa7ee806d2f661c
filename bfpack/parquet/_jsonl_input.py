"""JSON Lines inputs: one document per line, its tokens a list of integers under a key.

A file is read in blocks of whole lines (about 8 bytes of text per token
of the batch asked for, within 1 and 64 MiB; a longer line makes its block
longer), each parsed by pyarrow's JSON reader with the packed columns'
types given (lists of int64): memory follows the block, not the file.
Keys that are not packed are ignored. Blank lines are skipped.

Compressed files (``.jsonl.gz``, ``.jsonl.zst``) are decompressed as a
stream. Opening a file reads it once to count its lines (the source's
document count, which progress, Dask's tasks and ``verify`` need) and to
take the keys of its first line; the list-valued ones are its columns.

pyarrow says that a block failed, not where; on any failure, or a null
(a line without the key), the block's lines are parsed again one by one
with :mod:`json` to name the first bad one: file, line, key and value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from ._readers import (
    InputFile,
    conform,
    ends_sha256,
    jsonl_compression,
    one_line,
    shown,
    token_slices,
)

#: Bytes of a block: 8 per token asked for, within these bounds.
MIN_BLOCK = 1 << 20
MAX_BLOCK = 64 << 20
#: The type of the token lists (named as Parquet's reader names them, so
#: that the output's bytes are those of the same documents in Parquet).
TOKENS = pa.list_(pa.field("element", pa.int64()))

_MAYBE_BLANK = re.compile(rb"\n[ \t\r]*\n")
_INT64 = np.iinfo(np.int64)


class JsonLinesReader:
    """JSON Lines files, plain or compressed (see the module)."""

    name = "jsonl"
    digest_key = "ends_sha256"

    def inspect(self, fh: BinaryIO, path: str) -> tuple[int, pa.Schema]:
        rows, first, first_line = 0, None, 0
        try:
            for line, block in _blocks(fh, path, MIN_BLOCK):
                if first is None:
                    first, first_line = _first_line(block, line)
                rows += _count_lines(block)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(
                f"{path} is not a readable JSON Lines file ({one_line(exc)})"
            ) from None
        if first is None:
            raise ValueError(
                f"{path} is empty: a JSON Lines file holds one document per line, e.g. "
                f'{{"input_ids": [1, 2, 3]}}'
            )
        try:
            record = json.loads(first)
        except ValueError as exc:
            raise ValueError(f"{path}, line {first_line}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}, line {first_line}: a JSON {_json_type(record)}, not an object; "
                f"every line must be an object holding its tokens under a key, e.g. "
                f'{{"input_ids": [...]}}'
            )
        return rows, pa.schema([pa.field(k, _arrow_type(v)) for k, v in record.items()])

    def digest(self, fh: BinaryIO, size: int) -> str:
        return ends_sha256(fh, size)

    def read(
        self, f: InputFile, fh: BinaryIO, names: list[str], schema: pa.Schema, batch_tokens: int
    ) -> Iterator[pa.RecordBatch]:
        parse = pj.ParseOptions(
            explicit_schema=pa.schema([pa.field(n, TOKENS) for n in names]),
            unexpected_field_behavior="ignore",
        )
        block_bytes = min(max(8 * batch_tokens, MIN_BLOCK), MAX_BLOCK)
        for line, block in _blocks(fh, f.path, block_bytes):
            options = pj.ReadOptions(use_threads=False, block_size=len(block) + 1)
            try:
                table = pj.read_json(
                    pa.BufferReader(block), read_options=options, parse_options=parse
                )
            except pa.ArrowException as exc:
                raise _bad_block(f.path, block, line, names, exc) from None
            if any(table.column(n).null_count for n in names):
                raise _bad_block(f.path, block, line, names, None)
            for batch in table.combine_chunks().to_batches():
                for part in token_slices(batch, names[0], batch_tokens):
                    yield conform(part, schema)


def _blocks(fh: BinaryIO, path: str, block_bytes: int) -> Iterator[tuple[int, memoryview]]:
    """``(number of its first line, block)``: the file's text in blocks of whole lines.

    The blocks are views of one buffer, refilled in place (a block is valid
    until the next is asked for): the memory of reading is the buffer's,
    which grows only for a line longer than it.
    """
    fh.seek(0)
    codec = jsonl_compression(path)
    stream: Any = (
        pa.CompressedInputStream(pa.PythonFile(_Borrowed(fh), mode="r"), codec) if codec else fh
    )
    buf = bytearray(block_bytes)
    held, line = 0, 1  # bytes of a line begun in the last block, moved to the front
    while True:
        if held == len(buf):  # a line longer than the buffer: a new one, twice as long
            buf = buf + bytearray(len(buf))
        got = stream.readinto(memoryview(buf)[held:])
        end = held + got
        if not got:
            break
        cut = buf.rfind(b"\n", held, end)
        if cut < 0:
            held = end
            continue
        block = memoryview(buf)[: cut + 1]
        yield line, block
        line += buf.count(b"\n", 0, cut + 1)
        held = end - cut - 1
        buf[:held] = buf[cut + 1 : end]
    if bytes(buf[:held]).strip():
        yield line, memoryview(buf)[:held]


class _Borrowed:
    """``fh`` for reading, which closing leaves open (its owner closes it)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def readinto(self, b: Any) -> int:
        return self._fh.readinto(b)  # type: ignore[attr-defined]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _count_lines(block: memoryview) -> int:
    """Lines of ``block`` that are not blank (pyarrow's rows)."""
    n = block.nbytes
    if n and block[0] not in b" \t\r\n" and _MAYBE_BLANK.search(block) is None:
        # A block is the start of its buffer: counted there, without a copy.
        return int(block.obj.count(b"\n", 0, n)) + (block[-1] != ord("\n"))  # type: ignore[attr-defined]
    return sum(1 for text in bytes(block).split(b"\n") if text.strip())


def _first_line(block: memoryview, line: int) -> tuple[bytes | None, int]:
    """The first line of ``block`` that is not blank, and its number."""
    for k, text in enumerate(bytes(block).split(b"\n")):
        if text.strip():
            return text, line + k
    return None, 0


def _arrow_type(value: Any) -> pa.DataType:
    """The column type a first line's value stands for: lists are token lists."""
    if isinstance(value, list):
        return TOKENS
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _bad_block(
    path: str, view: memoryview, line: int, names: list[str], exc: BaseException | None
) -> ValueError:
    """The error for a block pyarrow could not read (``exc``) or that has nulls:
    the first bad line, found by parsing the block's lines one by one."""
    block = bytes(view)
    for k, text in enumerate(block.split(b"\n")):
        if text.strip():
            why = _bad_line(text, names)
            if why is not None:
                return ValueError(f"{path}, line {line + k}: {why}")
    last = line + block.count(b"\n")
    return ValueError(
        f"cannot read {path}, lines {line:,} to {last:,}: "
        f"{one_line(exc) if exc is not None else 'a null token list'}"
    )


def _bad_line(text: bytes, names: list[str]) -> str | None:
    """What is wrong with one line, or None."""
    try:
        record = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(record, dict):
        return f"a JSON {_json_type(record)}, not an object holding the tokens under a key"
    for name in names:
        if name not in record:
            keys = ", ".join(map(repr, list(record)[:5])) or "none"
            return (
                f"no key {name!r} (its keys: {keys}); every line must hold the tokens of "
                f"each packed column under its key"
            )
        tokens = record[name]
        if not isinstance(tokens, list):
            return (
                f"{name!r} is a JSON {_json_type(tokens)} ({shown(tokens)}), not a list of "
                f"token ids"
            )
        for j, token in enumerate(tokens):
            if isinstance(token, bool) or not isinstance(token, int):
                return f"{name!r}[{j}] is {shown(token)}, not an integer token id"
            if not _INT64.min <= token <= _INT64.max:
                return f"{name!r}[{j}] = {token} is out of the range of int64"
    return None
