"""Packing Parquet datasets to Parquet, streamed in bounded memory.

This module only moves data: it reads a dataset in windows of whole
documents, feeds them to a :class:`~bfpack.stream.TableStreamPacker`,
writes what comes out as shards, and writes the manifest last into a
staged directory that replaces ``dst`` when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._memory import release_free_memory
from ._staging import staged_directory
from ._validate import (
    as_bool,
    as_callable,
    as_int,
    as_long_docs,
    as_method,
    as_optional_int,
    as_seed,
    as_seq_len,
    check_same_columns,
)
from ._version import __version__
from .manifest import MANIFEST, write_manifest
from .stream import DEFAULT_MAX_OPEN, TableStreamPacker
from .table import OutputSpec, document_lengths

__all__ = ["DEFAULT_WINDOW_TOKENS", "MANIFEST", "open_dataset", "pack_parquet"]

DEFAULT_WINDOW_TOKENS = 1 << 26
#: Documents per batch read from a file.
_BATCH_ROWS = 8192


def open_dataset(src: str | os.PathLike) -> ds.Dataset:
    """A pyarrow dataset over a Parquet file or a directory of them.

    Raises FileNotFoundError for a missing path and ValueError for data
    that is not Parquet.
    """
    src = os.fspath(src)
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such file or directory")
    try:
        dataset = ds.dataset(src, format="parquet", exclude_invalid_files=False)
        dataset.schema  # noqa: B018 -- opening the footer is the check
        for fragment in dataset.get_fragments():
            fragment.physical_schema  # noqa: B018
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(
            f"{src} is not a Parquet file or a directory of Parquet files "
            f"({str(exc).splitlines()[0]})"
        ) from None
    return dataset


def dataset_spec(
    dataset: ds.Dataset,
    *,
    columns: str | Sequence[str] | None = None,
    pad_value: float | Mapping[str, float] | None = None,
    position_ids: bool = False,
) -> OutputSpec:
    """The output spec for ``dataset``, its columns checked in every file.

    The dataset's schema comes from its first file; a later file missing a
    packed column would read as null lists (documents lost without a word),
    and one holding something else would fail deep inside the read.
    """
    spec = OutputSpec.for_schema(
        dataset.schema, columns=columns, pad_value=pad_value, position_ids=position_ids
    )
    for fragment in dataset.get_fragments():
        check_same_columns(fragment.physical_schema, spec.schema, fragment.path)
    return spec


def _batches(dataset: ds.Dataset, names: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of ``names``, one file at a time, in path order.

    A scan of the whole dataset reads ahead across files, so its memory
    grows with the number of files; file by file with a short read-ahead it
    stays flat.
    """
    for fragment in dataset.get_fragments():
        yield from fragment.to_batches(
            schema=dataset.schema, columns=list(names), batch_size=_BATCH_ROWS, batch_readahead=2
        )


def _windows(
    dataset: ds.Dataset, spec: OutputSpec, window_tokens: int
) -> Iterator[tuple[pa.Table, bool]]:
    """Yield ``(table, last)``: tables of whole documents, each just reaching
    ``window_tokens`` tokens (the last one may hold fewer), and whether it
    is the last.

    One batch is read ahead, so the last window is known as such without
    holding two windows in memory.
    """
    schema = spec.schema
    batches = (b for b in _batches(dataset, spec.columns) if b.num_rows)
    parts: list[pa.RecordBatch] = []
    tokens = 0
    yielded = False
    batch = next(batches, None)
    while batch is not None:
        n = document_lengths(pa.Table.from_batches([batch]), spec.columns[:1])
        # Rows up to the document that reaches the window, inclusive.
        upto = int(np.searchsorted(np.cumsum(n), window_tokens - tokens)) + 1
        if upto > batch.num_rows:
            parts.append(batch)
            tokens += int(n.sum())
            batch = next(batches, None)
            continue
        parts.append(batch.slice(0, upto))
        batch = batch.slice(upto) if upto < batch.num_rows else next(batches, None)
        yield pa.Table.from_batches(parts, schema=schema), batch is None
        yielded = True
        parts, tokens = [], 0
    if parts or not yielded:
        yield pa.Table.from_batches(parts, schema=schema), True


class _ShardWriter:
    """Writes ``part-00000.parquet``, ... into ``folder`` in a second thread.

    At most one shard is in flight: :meth:`write` waits for the previous
    one, so memory holds one shard being encoded while the next window is
    packed (pyarrow releases the GIL while it encodes).
    """

    def __init__(self, folder: str, seq_len: int) -> None:
        self.folder = folder
        self.shards: list[dict[str, Any]] = []
        self._row_group = max(16, (1 << 22) // seq_len)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._in_flight: Future | None = None

    def write(self, table: pa.Table) -> None:
        name = f"part-{len(self.shards):05d}.parquet"
        self.shards.append({"file": name, "rows": table.num_rows})
        self._wait()
        self._in_flight = self._pool.submit(
            pq.write_table, table, os.path.join(self.folder, name), row_group_size=self._row_group
        )

    def _wait(self) -> None:
        if self._in_flight is not None:
            self._in_flight.result()
            self._in_flight = None

    def close(self) -> None:
        """Wait for the last shard; raise what writing it raised."""
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)


def pack_parquet(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    seq_len: int,
    *,
    columns: str | Sequence[str] | None = None,
    method: str = "bfd",
    long_docs: str = "split",
    pad_value: float | Mapping[str, float] | None = None,
    position_ids: bool = False,
    seed: int | None = None,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    overwrite: bool = False,
    max_open: int | None = None,
    progress: Callable[[dict[str, int]], Any] | None = None,
) -> dict[str, Any]:
    """Pack a Parquet dataset into a directory of packed Parquet shards.

    Documents are read in windows of about ``window_tokens`` tokens. With
    a method that streams (``"bfd"``), each window is packed together with
    the sequences still open from earlier windows, and the ``max_open``
    sequences with the most free space are carried on, so memory stays
    bounded while the packing stays within a few sequences of one global
    BFD. Other methods (``"ffd"``, ``"concat"``) pack each window on its own.

    Parameters
    ----------
    src : path
        A Parquet file or a directory of Parquet files, one row per document.
    dst : path
        Output directory; it must not exist unless ``overwrite``. It gets
        shards ``part-00000.parquet``, ... (one per window, each row a packed
        sequence, as :func:`bfpack.pack_table` makes them) and, last, the
        manifest ``.bfpack.json`` (input, options, version, stats).
    seq_len, columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.pack_table`; ``seed`` shuffles rows within each
        shard (shard ``k`` with ``seed + k``).
    window_tokens : int
        Tokens read per window (memory scales with it).
    overwrite : bool
        Replace an existing ``dst``.
    max_open : int, optional
        Sequences carried between windows (BFD). Their tokens stay in memory,
        up to ``max_open * seq_len`` per column, so the default keeps them
        to a quarter of a window: ``min(4096, window_tokens // (4 *
        seq_len))``, at least 16.
    progress : callable, optional
        Called after every window with a dict of running totals
        (``documents``, ``tokens``, ``sequences``, ``windows``).

    Returns
    -------
    dict
        The manifest.

    Notes
    -----
    Everything is written into a temporary directory beside ``dst`` and
    renamed into place only when complete, manifest included: an
    interrupted run never leaves a ``dst`` that looks finished.
    """
    seq_len = as_seq_len(seq_len)
    method = as_method(method).name
    long_docs = as_long_docs(long_docs)
    window_tokens = as_int(window_tokens, "window_tokens", lo=1, unit="tokens")
    max_open = as_optional_int(max_open, "max_open", lo=0)
    seed = as_seed(seed)
    overwrite = as_bool(overwrite, "overwrite")
    progress = as_callable(progress, "progress")
    dst = os.path.abspath(os.fspath(dst))
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"{dst} already exists; choose another destination or overwrite it")
    dataset = open_dataset(src)
    spec = dataset_spec(dataset, columns=columns, pad_value=pad_value, position_ids=position_ids)
    if max_open is None:
        max_open = min(DEFAULT_MAX_OPEN, max(16, window_tokens // (4 * seq_len)))
    packer = TableStreamPacker(
        seq_len, spec, method=method, long_docs=long_docs, max_open=max_open, seed=seed
    )
    with staged_directory(dst) as folder:
        shards = _write_shards(dataset, packer, folder, window_tokens, progress)
        manifest = {
            "bfpack_version": __version__,
            "source": os.path.abspath(os.fspath(src)),
            "options": {
                "seq_len": seq_len,
                "columns": list(spec.columns),
                "method": method,
                "long_docs": long_docs,
                "pad_value": _manifest_pad(pad_value, spec),
                "position_ids": spec.position_ids,
                "seed": seed,
                "window_tokens": window_tokens,
                "max_open": max_open,
            },
            "shards": shards,
            "stats": packer.stats().to_dict(),
        }
        write_manifest(folder, manifest)
    return manifest


def _write_shards(
    dataset: ds.Dataset,
    packer: TableStreamPacker,
    folder: str,
    window_tokens: int,
    progress: Callable | None,
) -> list[dict[str, Any]]:
    """Pack window after window and write one shard per window that has rows."""
    writer = _ShardWriter(folder, packer.seq_len)
    totals = dict(documents=0, tokens=0, sequences=0, windows=0)
    try:
        for table, last in _windows(dataset, packer.spec, window_tokens):
            out = packer.step(table, last=last)
            if out.num_rows or (last and not writer.shards):
                # An empty dataset still gets one shard, for its schema.
                writer.write(out)
            stats = packer.stats()
            totals["documents"] = stats.documents
            totals["tokens"] = stats.tokens
            totals["sequences"] += out.num_rows
            totals["windows"] += 1
            release_free_memory()
            if progress is not None:
                progress(dict(totals))
    finally:
        writer.close()
    return writer.shards


def _manifest_pad(pad_value: Any, spec: OutputSpec) -> float | dict[str, float] | None:
    """``pad_value`` as given (one number or one per packed column), as plain numbers."""
    if spec.pad_values is None:
        return None
    if isinstance(pad_value, Mapping):
        return dict(zip(spec.columns, spec.pad_values))
    return spec.pad_values[0]
