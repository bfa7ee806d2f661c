"""Packing Parquet datasets to Parquet, streamed in bounded memory.

This module only moves data: it reads a dataset in windows of whole
documents (:class:`~bfpack._source.ParquetSource`), feeds them to a
:class:`~bfpack.stream.TableStreamPacker`, writes what comes out as shards
(:class:`ShardWriter`) and the manifest last (:mod:`bfpack.manifest`), in a
staged directory that a locked, atomic swap puts in place
(:class:`~bfpack._staging.StagedOutput`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._memory import release_free_memory
from ._shards import IN_FLIGHT, ShardWriter
from ._source import ParquetSource
from ._staging import StagedOutput, as_path, check_paths
from ._validate import (
    as_bool,
    as_callable,
    as_int,
    as_long_docs,
    as_method,
    as_optional_int,
    as_seed,
    as_seq_len,
)
from .manifest import MANIFEST, build_manifest, write_manifest
from .stream import TableStreamPacker, default_max_open
from .table import OutputSpec

__all__ = ["DEFAULT_WINDOW_TOKENS", "MANIFEST", "ShardWriter", "pack_parquet"]

#: Tokens per window: small enough that reading, packing and writing overlap
#: well (and memory stays low), large enough to pack within a sequence or two
#: of one global BFD.
DEFAULT_WINDOW_TOKENS = 1 << 24

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    """The checked options of one Parquet-to-Parquet run (every path that
    writes packed shards: :func:`pack_parquet` and :func:`bfpack.dask.pack_parquet`)."""

    seq_len: int
    method: str
    long_docs: str
    pad_value: Any
    seed: int | None
    window_tokens: int
    rows_per_shard: int | None
    overwrite: bool
    max_open: int

    @classmethod
    def check(cls, seq_len: Any, *, max_open: Any, progress: Any, **options: Any) -> Options:
        """Every option checked (TypeError, ValueError); ``max_open`` defaulted."""
        seq_len = as_seq_len(seq_len)
        window_tokens = as_int(options["window_tokens"], "window_tokens", lo=1, unit="tokens")
        max_open = as_optional_int(max_open, "max_open", lo=0)
        as_callable(progress, "progress")
        return cls(
            seq_len=seq_len,
            method=as_method(options["method"]).name,
            long_docs=as_long_docs(options["long_docs"]),
            pad_value=options["pad_value"],
            seed=as_seed(options["seed"]),
            window_tokens=window_tokens,
            rows_per_shard=as_optional_int(options["rows_per_shard"], "rows_per_shard", lo=1),
            overwrite=as_bool(options["overwrite"], "overwrite"),
            max_open=default_max_open(seq_len, window_tokens) if max_open is None else max_open,
        )

    def packer(
        self, spec: OutputSpec, *, seed: int | None, max_open: int | None = None
    ) -> TableStreamPacker:
        """A stream packer of these options."""
        return TableStreamPacker(
            self.seq_len,
            spec,
            method=self.method,
            long_docs=self.long_docs,
            max_open=self.max_open if max_open is None else max_open,
            seed=seed,
        )

    def writer(
        self, folder: str, prefix: str = "part", *, in_flight: int = IN_FLIGHT
    ) -> ShardWriter:
        """A shard writer of these options."""
        return ShardWriter(
            folder,
            row_group_size=row_group_rows(self.seq_len),
            prefix=prefix,
            rows_per_shard=self.rows_per_shard,
            in_flight=in_flight,
        )

    def record(self, spec: OutputSpec) -> dict[str, Any]:
        """The ``options`` of the manifest."""
        return {
            "seq_len": self.seq_len,
            "columns": list(spec.columns),
            "method": self.method,
            "long_docs": self.long_docs,
            "pad_value": _manifest_pad(self.pad_value, spec),
            "position_ids": spec.position_ids,
            "seed": self.seed,
            "window_tokens": self.window_tokens,
            "rows_per_shard": self.rows_per_shard,
            "max_open": self.max_open,
        }


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
    rows_per_shard: int | None = None,
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
    src : str, bytes or os.PathLike
        A Parquet file or a directory of Parquet files, one row per document.
    dst : str, bytes or os.PathLike
        Output directory, outside ``src`` (neither equal to it, inside it,
        nor containing it). It gets shards ``part-00000.parquet``, ... (one
        per window with rows unless ``rows_per_shard`` is given; each row a
        packed sequence, as
        :func:`bfpack.pack_table` makes them) and, last, the manifest
        ``.bfpack.json`` (run id, inputs, options, shards with their sizes
        and SHA-256, stats; see :mod:`bfpack.manifest`). Every shard has
        the same schema: the input's list types are kept (a window of more
        than 2**31 - 1 tokens gives columns of several list chunks, never
        ``large_list``).
    seq_len, columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.pack_table`; ``seed`` shuffles rows within each
        shard (shard ``k`` with ``seed + k``).
    window_tokens : int
        Tokens read per window (memory scales with it: about one window is
        held, plus the shards being encoded).
    rows_per_shard : int, optional
        Rows (packed sequences) of every shard but the last; by default one
        shard per window.
    overwrite : bool
        Replace an existing ``dst``, if it is an empty directory or an
        earlier bfpack output (a directory holding a manifest) holding
        nothing its manifest does not list; anything else is refused, naming
        the files that are not the output's. ``dst`` must also be on its
        parent's file system (not a mount point) and, unless running as
        root, belong to the user.
    max_open : int, optional
        Sequences carried between windows (BFD). Their tokens stay in memory,
        up to ``max_open * seq_len`` per column, so the default keeps them
        to a quarter of a window: ``min(4096, window_tokens // (4 *
        seq_len))``, at least 16.
    progress : callable, optional
        Called after every window with a dict of running totals
        (``documents``, ``tokens``, ``sequences``, ``windows``) and
        ``total_documents``, the rows of all the input files (from their
        footers), for a progress bar.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    FileNotFoundError
        ``src`` does not exist.
    FileExistsError
        ``dst`` exists and may not be replaced (see ``overwrite``).
    PermissionError
        ``dst`` or its parent could not be written or replaced (checked
        before any work).
    bfpack._staging.DestinationBusyError
        Another run is writing ``dst`` (an OSError).
    TypeError, ValueError
        Bad options, ``dst`` overlapping ``src``, or input that cannot be
        packed (the message names the file, column or row).

    Notes
    -----
    Files of ``src`` whose names start with ``_`` or ``.`` are skipped, as
    pyarrow does; a warning names them and the manifest lists them.
    Packing and writing overlap: up to two shards are encoded in threads
    of their own while the next window is read and packed (pyarrow and the
    kernels release the GIL). Memory holds about one window (plus the
    carried sequences and the shards being written):
    files are read batch by batch, a column chunk streamed page by page.

    The output is written into a temporary directory beside ``dst`` and
    swapped in only when complete, manifest included, with the files and
    directories flushed to disk first; the swap is atomic on Linux
    (``renameat2``), so ``dst`` holds the old output or the new one at
    every moment. A lock file beside ``dst`` is held for the whole run.
    The lock file records which directories the run makes beside ``dst``,
    and each carries a marker file of the run: what an interrupted or
    killed run leaves there is removed (or, an old output set aside, put
    back) by the next run to ``dst``, and nothing else beside ``dst`` is
    ever removed.
    """
    o = Options.check(
        seq_len,
        method=method,
        long_docs=long_docs,
        pad_value=pad_value,
        seed=seed,
        window_tokens=window_tokens,
        rows_per_shard=rows_per_shard,
        overwrite=overwrite,
        max_open=max_open,
        progress=progress,
    )
    src, dst = as_path(src, "src"), as_path(dst, "dst")
    check_paths(src, dst)
    with StagedOutput(os.path.realpath(dst), overwrite=o.overwrite) as out:
        source = ParquetSource.open(src)
        spec = source.spec(columns=columns, pad_value=pad_value, position_ids=position_ids)
        _log.info(
            "packing %s documents with %s at seq_len %s, in windows of %s tokens "
            "(%s open sequences carried at most)",
            *_n(source.rows),
            o.method,
            *_n(o.seq_len, o.window_tokens, o.max_open),
        )
        packer = o.packer(spec, seed=o.seed)
        writer = o.writer(out.folder)
        try:
            _pack_windows(source, packer, writer, window_tokens=o.window_tokens, progress=progress)
        finally:
            shards = writer.close()
        manifest = build_manifest(
            run_id=out.run_id,
            source=os.path.abspath(src),
            inputs=[f.record() for f in source.files],
            skipped=source.skipped,
            options=o.record(spec),
            shards=shards,
            stats=packer.stats().to_dict(),
        )
        write_manifest(out.folder, manifest)
        out.commit()
    _log.info("wrote %s shard(s) and the manifest to %s", len(shards), dst)
    return manifest


def _pack_windows(
    source: ParquetSource,
    packer: TableStreamPacker,
    writer: ShardWriter,
    *,
    window_tokens: int,
    progress: Callable | None,
) -> None:
    """Pack window after window and write one shard per window that has rows."""
    totals = dict(documents=0, tokens=0, sequences=0, windows=0, total_documents=source.rows)
    # Closed at once on an error or an interrupt, so the read in flight
    # ends here, not while the interpreter shuts down.
    with contextlib.closing(source.windows(packer.spec, window_tokens)) as stream:
        for table, last in stream:
            out = packer.step(table, last=last)
            del table
            if out.num_rows or (last and not writer.count):
                # An empty dataset still gets one shard, for its schema.
                writer.write(out)
            stats = packer.stats()
            totals["documents"] = stats.documents
            totals["tokens"] = stats.tokens
            totals["sequences"] += out.num_rows
            totals["windows"] += 1
            _log.debug(
                "window %s: %s documents read in all, %s rows written, %s sequences open",
                *_n(totals["windows"], stats.documents, out.num_rows, packer.num_open),
            )
            del out
            release_free_memory()
            if progress is not None:
                progress(dict(totals))


def row_group_rows(seq_len: int) -> int:
    """Rows per row group of the shards: about 4M tokens, at least 16 rows."""
    return max(16, (1 << 22) // seq_len)


def _n(*numbers: int) -> tuple[str, ...]:
    """Numbers as log messages show them: with thousands separators."""
    return tuple(f"{x:,}" for x in numbers)


def _manifest_pad(pad_value: Any, spec: OutputSpec) -> float | dict[str, float] | None:
    """``pad_value`` as given (one number or one per packed column), as plain numbers."""
    if spec.pad_values is None:
        return None
    if isinstance(pad_value, Mapping):
        return dict(zip(spec.columns, spec.pad_values))
    return spec.pad_values[0]
