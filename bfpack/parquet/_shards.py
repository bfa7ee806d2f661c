"""Writing packed tables as shards, in the output's format.

Every path that writes packed output (the single process of
:func:`bfpack.parquet.pack_parquet` and the tasks of
:func:`bfpack.dask.pack_parquet`) writes through :class:`ShardWriter`, so
the shards have the same layout and writer settings everywhere.

The format is one seam: :class:`ParquetShards` and :class:`ArrowShards`
encode a shard's bytes and finish a run's shards (Arrow: named and described
as ``datasets.Dataset.save_to_disk`` names and describes them);
:func:`read_shard` reads one back. Everything else (threads, temporary
names, checksums, the manifest, staging) is the same for both.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_path
from .manifest import DATASETS_FILES, RUN_KEY, shard_record

if TYPE_CHECKING:
    from ..options import PackOptions

__all__ = [
    "ArrowShards",
    "ParquetShards",
    "ShardWriter",
    "WRITE_OPTIONS",
    "finish_shards",
    "read_shard",
    "read_shard_schema",
    "shard_format",
]

#: Shards encoded at once, each in its own thread (encoding is most of the
#: cost of a run: with two, writing keeps up with reading and packing).
IN_FLIGHT = 2

#: Settings of ``pyarrow.parquet.write_table`` for every shard.
WRITE_OPTIONS: dict[str, Any] = {
    "use_dictionary": False,
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": False,
}

_log = logging.getLogger(__name__)


class ParquetShards:
    """Shards ``*.parquet``: zstd level 1, no dictionary, no statistics
    (:data:`WRITE_OPTIONS`), row groups of ``row_group_size`` rows."""

    name = "parquet"
    suffix = ".parquet"

    def __init__(self, row_group_size: int, run_id: str | None = None) -> None:
        self.row_group_size = row_group_size

    def encode(self, table: pa.Table) -> pa.Buffer:
        """The bytes of the shard holding ``table``."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, row_group_size=self.row_group_size, **WRITE_OPTIONS)
        return sink.getvalue()


class ArrowShards:
    """Shards ``*.arrow``: uncompressed Arrow IPC streams, as ``datasets`` writes them.

    Uncompressed, so that a reader maps the file and uses its buffers in
    place (``datasets.load_from_disk``, :class:`bfpack.torch.PackedDataset`);
    record batches of ``row_group_size`` rows. The schema's metadata holds
    the run id (``bfpack.run_id``: a reader pinned to a run tells its shards
    from another run's of the same name) and the ``datasets`` features
    (``huggingface``), as ``datasets``' own writer records them.
    """

    name = "arrow"
    suffix = ".arrow"

    def __init__(self, row_group_size: int, run_id: str | None = None) -> None:
        self.row_group_size = row_group_size
        self.run_id = run_id

    def encode(self, table: pa.Table) -> pa.Buffer:
        """The bytes of the shard holding ``table``."""
        metadata = dict(table.schema.metadata or {})
        metadata[RUN_KEY] = (self.run_id or "").encode()
        info = {"info": {"features": datasets_features(table.schema)}}
        metadata[b"huggingface"] = json.dumps(info).encode()
        schema = table.schema.with_metadata(metadata)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table.replace_schema_metadata(metadata), self.row_group_size)
        return sink.getvalue()


def shard_format(
    name: str, row_group_size: int, run_id: str | None = None
) -> ParquetShards | ArrowShards:
    """The encoder of the format ``name`` (``"parquet"`` or ``"arrow"``)."""
    formats: dict[str, type[ParquetShards | ArrowShards]] = {
        "parquet": ParquetShards,
        "arrow": ArrowShards,
    }
    return formats[name](row_group_size, run_id)


def finish_shards(
    fmt: str, folder: str, shards: list[dict[str, Any]], *, run_id: str
) -> list[dict[str, Any]]:
    """Finish the shards of a run in ``folder``, in order; their records as the
    manifest lists them.

    Parquet shards stay as they are. Arrow shards are renamed
    ``data-00000-of-0000N.arrow``, ... (their bytes, and so their checksums,
    unchanged) and described by ``state.json`` and ``dataset_info.json``
    (:func:`datasets_files`), written as ``datasets.Dataset.save_to_disk``
    writes them, so that ``datasets.load_from_disk`` opens the output.
    """
    if fmt != "arrow":
        return shards
    finished = []
    for k, record in enumerate(shards):
        name = f"data-{k:05d}-of-{len(shards):05d}.arrow"
        os.rename(os.path.join(folder, record["file"]), os.path.join(folder, name))
        finished.append({**record, "file": name})
    with pa.memory_map(os.path.join(folder, finished[0]["file"])) as f:
        schema = pa.ipc.open_stream(f).schema
    for name, content in datasets_files(schema, [r["file"] for r in finished], run_id).items():
        with atomic_path(os.path.join(folder, name)) as temporary, open(temporary, "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
    return finished


def datasets_files(schema: pa.Schema, files: list[str], fingerprint: str) -> dict[str, str]:
    """The text of ``dataset_info.json`` and ``state.json`` of a ``save_to_disk``
    directory of the shards ``files`` of ``schema``: the fields and the JSON
    layout that ``datasets.Dataset.save_to_disk`` writes (datasets 4 and later)."""
    info = {
        "citation": "",
        "description": "",
        "features": datasets_features(schema),
        "homepage": "",
        "license": "",
    }
    state: dict[str, Any] = {
        "_data_files": [{"filename": name} for name in files],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    info_name, state_name = DATASETS_FILES
    return {
        info_name: json.dumps(info, indent=2),
        state_name: json.dumps(state, indent=2, sort_keys=True),
    }


#: ``datasets``' names of Arrow types whose name it spells otherwise.
_DTYPES = {"float": "float32", "double": "float64", "halffloat": "float16"}


def datasets_features(schema: pa.Schema) -> dict[str, Any]:
    """The ``datasets`` features of ``schema`` (list columns of numbers), as a
    dict: what ``datasets.Features.from_arrow_schema(schema).to_dict()`` gives."""

    def feature(t: pa.DataType) -> dict[str, Any]:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            kind = "List" if pa.types.is_list(t) else "LargeList"
            return {"feature": feature(t.value_type), "_type": kind}
        return {"dtype": _DTYPES.get(str(t), str(t)), "_type": "Value"}

    return {f.name: feature(f.type) for f in schema}


def read_shard(path: str, fmt: str, columns: list[str] | None = None) -> pa.Table:
    """The rows of the shard ``path`` of an output of format ``fmt`` (its
    ``columns``, by default all); an Arrow shard is memory-mapped, not copied."""
    if fmt == "arrow":
        with pa.memory_map(path) as f:
            table = pa.ipc.open_stream(f).read_all()
        return table if columns is None else table.select(columns)
    return pq.read_table(path, columns=columns)


def read_shard_schema(path: str, fmt: str) -> pa.Schema:
    """The schema of the shard ``path`` of an output of format ``fmt``."""
    if fmt == "arrow":
        with pa.memory_map(path) as f:
            return pa.ipc.open_stream(f).schema
    return pq.read_schema(path)


class ShardWriter:
    """Writes packed tables as shards ``<prefix>-00000.parquet``, ... into ``folder``
    (``.arrow`` with ``format="arrow"``).

    Shards are encoded in threads of their own, at most ``in_flight`` at
    once: :meth:`write` waits while that many are in flight, so memory
    holds those shards being encoded while the next window is packed
    (pyarrow releases the GIL while it encodes). A shard is written under a temporary name and
    renamed when complete, so a reader (or a retried task writing the same
    shard again) never sees part of one; it is flushed to disk and
    checksummed as soon as it is written (:func:`bfpack.parquet.manifest.shard_record`).

    Parameters
    ----------
    folder : str
        Where the shards go.
    row_group_size : int
        Rows per Parquet row group.
    prefix : str
        Start of the shard names.
    first : int
        Number of the first shard.
    rows_per_shard : int, optional
        Rows of every shard but the last (which may hold fewer). By default
        each :meth:`write` makes one shard of the rows it is given.
    in_flight : int
        Shards encoded at once in threads of their own; 0 writes each in
        the calling thread (a Dask task, which Dask counts as one core).
    before_shard : callable, optional
        Called with no argument in the calling thread before each shard is
        started; what it raises stops the writing (a Dask task checks
        there that its run goes on).
    format : {"parquet", "arrow"}
        The shards' format (:class:`ParquetShards`, :class:`ArrowShards`).
    run_id : str, optional
        The run, recorded in Arrow shards.
    """

    def __init__(
        self,
        folder: str,
        *,
        row_group_size: int,
        prefix: str = "part",
        first: int = 0,
        rows_per_shard: int | None = None,
        in_flight: int = IN_FLIGHT,
        before_shard: Callable[[], Any] | None = None,
        format: str = "parquet",
        run_id: str | None = None,
    ) -> None:
        self.folder = folder
        self.encoder = shard_format(format, row_group_size, run_id)
        self.before_shard = before_shard
        self.prefix = prefix
        self.rows_per_shard = rows_per_shard
        self.records: list[dict[str, Any]] = []
        self._next = first
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.in_flight = in_flight
        self._pool = (
            ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="bfpack-write")
            if in_flight
            else None
        )
        self._in_flight: deque[Future] = deque()

    @property
    def count(self) -> int:
        """Shards written, in flight or pending."""
        return len(self.records) + len(self._in_flight) + bool(self._pending)

    def write(self, table: pa.Table) -> None:
        """Write the rows of ``table``: as the next shard, or, with
        ``rows_per_shard``, into shards of that many rows."""
        if self.rows_per_shard is None:
            self._start(table)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rows_per_shard:
            rows = pa.concat_tables(self._pending)
            self._start(rows.slice(0, self.rows_per_shard))
            rest = rows.slice(self.rows_per_shard)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def _start(self, table: pa.Table) -> None:
        if self.before_shard is not None:
            self.before_shard()
        path = os.path.join(self.folder, f"{self.prefix}-{self._next:05d}{self.encoder.suffix}")
        self._next += 1
        if self._pool is None:
            self.records.append(self._write(table, path))
            return
        self._wait(self.in_flight - 1)
        self._in_flight.append(self._pool.submit(self._write, table, path))

    def _write(self, table: pa.Table, path: str) -> dict[str, Any]:
        # Encoded in memory (a shard is about one window), so its checksum
        # comes from the bytes written, with no second read.
        data = self.encoder.encode(table)
        name = os.path.basename(path)
        try:
            with atomic_path(path) as temporary, open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.filename is None and exc.errno is not None:
                # A full disk names no file: say which.
                raise OSError(exc.errno, f"{exc.strerror}: writing {path}") from None
            raise
        record = shard_record(name, table.num_rows, data)
        _log.debug(
            "wrote %s: %s rows, %s bytes",
            name,
            *(f"{n:,}" for n in (table.num_rows, record["bytes"])),
        )
        return record

    def _wait(self, most: int = 0) -> None:
        """Wait until at most ``most`` shards are in flight."""
        while len(self._in_flight) > most:
            self.records.append(self._in_flight.popleft().result())

    def close(self) -> list[dict[str, Any]]:
        """Write what is pending, wait for the last shard (raising what
        writing it raised); the records, in order."""
        try:
            if self._pending:
                rows = pa.concat_tables(self._pending)
                self._pending, self._pending_rows = [], 0
                self._start(rows)
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return self.records


def shard_writer(
    o: PackOptions,
    folder: str,
    prefix: str = "part",
    *,
    in_flight: int = IN_FLIGHT,
    before_shard: Callable[[], Any] | None = None,
    run_id: str | None = None,
) -> ShardWriter:
    """A shard writer of the options ``o`` (their ``format``) for the run
    ``run_id``, into ``folder``; ``before_shard`` is called before each shard
    is written (a Dask task checks there that its run goes on)."""
    return ShardWriter(
        folder,
        row_group_size=row_group_rows(o.seq_len),
        prefix=prefix,
        rows_per_shard=o.rows_per_shard,
        in_flight=in_flight,
        before_shard=before_shard,
        format=o.format,
        run_id=run_id,
    )


def row_group_rows(seq_len: int) -> int:
    """Rows per row group of the shards: about 4M tokens, at least 16 rows."""
    return max(16, (1 << 22) // seq_len)
