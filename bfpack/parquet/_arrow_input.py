"""Arrow IPC inputs: files, streams, and ``datasets`` ``save_to_disk`` directories.

An Arrow file is read through the handle the source checked, one record
batch at a time, and each batch is cut into runs of about the batch's
tokens, so memory holds a record batch and what is being packed, not the
file. It is read, not memory-mapped: a file cut short in place while it is
mapped would kill the process (SIGBUS) instead of failing with a line
naming the file, and a handle needs no file descriptor.

The IPC file format (``ARROW1`` magic: ``.arrow``, ``.feather`` v2) and
the stream format (``datasets`` writes its shards as streams) are told
apart by their first bytes. A stream must end with its end-of-stream
marker: one cut off between two batches would otherwise read as a shorter,
valid stream.

A ``save_to_disk`` directory (``state.json`` and ``dataset_info.json``)
is read in the order ``state.json``'s ``_data_files`` lists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.ipc as ipc

from ._readers import InputFile, as_parquet_reads, conform, ends_sha256, one_line, token_slices

#: The files that make a directory a ``datasets`` ``save_to_disk`` directory.
STATE, INFO, DICT = "state.json", "dataset_info.json", "dataset_dict.json"

_EOS = (b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x00\x00\x00\x00")


class ArrowReader:
    """Arrow IPC files and streams, read one record batch at a time (see the module)."""

    name = "arrow"
    digest_key = "ends_sha256"

    def inspect(self, fh: BinaryIO, path: str) -> tuple[int, pa.Schema]:
        try:
            m = _Opened(fh)
            if m.is_file:
                reader = ipc.open_file(m.source)
                return _file_rows(reader), as_parquet_reads(reader.schema)
            stream = ipc.open_stream(m.source)
            rows = sum(b.num_rows for b in stream)
            if not m.ends_stream():
                raise ValueError("the stream has no end-of-stream marker: it was cut off")
            return rows, as_parquet_reads(stream.schema)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable Arrow IPC file ({one_line(exc)})") from None

    def digest(self, fh: BinaryIO, size: int) -> str:
        return ends_sha256(fh, size)

    def read(
        self, f: InputFile, fh: BinaryIO, names: list[str], schema: pa.Schema, batch_tokens: int
    ) -> Iterator[pa.RecordBatch]:
        m = _Opened(fh)
        if m.is_file:
            reader = ipc.open_file(m.source)
            batches: Iterator[pa.RecordBatch] = (
                reader.get_batch(i) for i in range(reader.num_record_batches)
            )
        else:
            batches = iter(ipc.open_stream(m.source))
        for batch in batches:
            for part in token_slices(batch.select(names), names[0], batch_tokens):
                yield conform(part, schema)


def _file_rows(reader: ipc.RecordBatchFileReader) -> int:
    """The rows of an Arrow IPC file: from the batches' headers where pyarrow
    can (a compressed file is then not decompressed), else by reading them."""
    if hasattr(reader, "count_rows"):  # pyarrow >= 16
        return int(reader.count_rows())
    return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


class _Opened:
    """The open file ``fh`` as a pyarrow source, read through the handle.

    Not closed here: the handle is the source's (it checks the file's
    identity after reading), and closing the pyarrow wrapper would close it.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._size = fh.seek(0, os.SEEK_END)
        if self._size == 0:
            raise ValueError("the file is empty")
        fh.seek(0)
        self.is_file = fh.read(6) == b"ARROW1"
        fh.seek(0)
        self.source = pa.PythonFile(fh, mode="r")

    def ends_stream(self) -> bool:
        self._fh.seek(max(0, self._size - 8))
        tail = self._fh.read(8)
        return any(tail.endswith(eos) for eos in _EOS)


def save_to_disk_files(root: str) -> list[str] | None:
    """The data files of the ``save_to_disk`` directory ``root``, in order; None if it is not one.

    Raises ValueError for a ``DatasetDict`` (its splits are directories of
    their own), a ``state.json`` that lists no files, or a listed file that
    is missing.
    """
    if os.path.isfile(os.path.join(root, DICT)):
        splits = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, STATE)))
        example = os.path.join(root, splits[0]) if splits else os.path.join(root, "SPLIT")
        raise ValueError(
            f"{root} is a datasets DatasetDict (splits: {', '.join(splits) or 'none'}); "
            f"give the directory of one split, e.g. {example}"
        )
    state = os.path.join(root, STATE)
    if not (os.path.isfile(state) and os.path.isfile(os.path.join(root, INFO))):
        return None
    try:
        with open(state, "rb") as fh:
            files = [str(x["filename"]) for x in json.load(fh)["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{state} does not list the dataset's files ({one_line(exc)}): save the "
            f"dataset again with save_to_disk"
        ) from None
    if not files:
        raise ValueError(f"{state} lists no data files: save the dataset again with save_to_disk")
    for name in files:
        if not os.path.isfile(os.path.join(root, *name.split("/"))):
            raise ValueError(
                f"{root}: {STATE} lists {name}, which is missing: the directory is "
                f"incomplete; copy it again or save the dataset again with save_to_disk"
            )
    return files
