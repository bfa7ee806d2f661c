"""Writing packed tables as Parquet shards.

Every path that writes packed output (the single process of
:func:`bfpack.parquet.pack_parquet` and the tasks of
:func:`bfpack.dask.pack_parquet`) writes through :class:`ShardWriter`, so
the shards have the same layout and writer settings everywhere.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_path
from .manifest import shard_record

if TYPE_CHECKING:
    from ..options import PackOptions

__all__ = ["ShardWriter", "WRITE_OPTIONS"]

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


class ShardWriter:
    """Writes packed tables as shards ``<prefix>-00000.parquet``, ... into ``folder``.

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
    ) -> None:
        self.folder = folder
        self.before_shard = before_shard
        self.row_group_size = row_group_size
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
        path = os.path.join(self.folder, f"{self.prefix}-{self._next:05d}.parquet")
        self._next += 1
        if self._pool is None:
            self.records.append(self._write(table, path))
            return
        self._wait(self.in_flight - 1)
        self._in_flight.append(self._pool.submit(self._write, table, path))

    def _write(self, table: pa.Table, path: str) -> dict[str, Any]:
        # Encoded in memory (a shard is about one window, compressed), so
        # its checksum comes from the bytes written, with no second read.
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, row_group_size=self.row_group_size, **WRITE_OPTIONS)
        data = sink.getvalue()
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
) -> ShardWriter:
    """A shard writer of the options ``o``, into ``folder``; ``before_shard``
    is called before each shard is written (a Dask task checks there that its
    run goes on)."""
    return ShardWriter(
        folder,
        row_group_size=row_group_rows(o.seq_len),
        prefix=prefix,
        rows_per_shard=o.rows_per_shard,
        in_flight=in_flight,
        before_shard=before_shard,
    )


def row_group_rows(seq_len: int) -> int:
    """Rows per row group of the shards: about 4M tokens, at least 16 rows."""
    return max(16, (1 << 22) // seq_len)
