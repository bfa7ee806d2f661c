"""Packing Parquet datasets to Parquet, streamed in bounded memory.

This module only moves data: it reads a dataset in windows of whole
documents (:class:`~bfpack.parquet._source.ParquetSource`), feeds them to a
:class:`~bfpack.stream.TableStreamPacker`, writes what comes out as shards
(:class:`ShardWriter`) and the manifest last (:mod:`bfpack.parquet.manifest`), in a
staged directory that a locked, atomic swap puts in place
(:class:`~bfpack.parquet._staging.StagedOutput`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._memory import release_free_memory
from .._validate import as_callable
from ..options import DEFAULT_WINDOW_TOKENS, PackOptions
from ..stream import TableStreamPacker
from . import _fs
from ._remote import RemoteOutput, open_output
from ._shards import ShardWriter, finish_shards, shard_writer
from ._source import ParquetSource
from ._staging import StagedOutput
from .manifest import build_manifest, input_records, write_manifest

__all__ = ["DEFAULT_WINDOW_TOKENS", "pack_parquet"]

_log = logging.getLogger(__name__)


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
    provenance: bool = False,
    carry: str | Sequence[str] | None = None,
    separator: float | Mapping[str, float] | None = None,
    progress: Callable[[dict[str, int]], Any] | None = None,
    format: str = "parquet",
) -> dict[str, Any]:
    """Pack a Parquet dataset into a directory of packed Parquet (or Arrow) shards.

    Documents are read in windows of about ``window_tokens`` tokens. With
    a method that streams (``"bfd"``), each window is packed together with
    the sequences still open from earlier windows, and the ``max_open``
    sequences with the most free space are carried on, so memory stays
    bounded while the packing stays within a few sequences of one global
    BFD. Other methods (``"ffd"``, ``"concat"``) pack each window on its own.

    Parameters
    ----------
    src : str, bytes or os.PathLike
        A Parquet file or a directory of Parquet files, one row per document;
        or the URI of one on an object store (``s3://``, ``gs://``, ``hf://``,
        any fsspec scheme; ``file://`` is the local path), read with the
        credentials of the environment (see the guide "Object storage").
    dst : str, bytes or os.PathLike
        Output directory, outside ``src`` (neither equal to it, inside it,
        nor containing it). It gets shards ``part-00000.parquet``, ... (one
        per window with rows unless ``rows_per_shard`` is given; each row a
        packed sequence, as
        :func:`bfpack.pack_table` makes them) and, last, the manifest
        ``.bfpack.json`` (run id, inputs, options, shards with their sizes
        and SHA-256, stats; see :mod:`bfpack.parquet.manifest`). Every shard has
        the same schema: the input's list types are kept (a window of more
        than 2**31 - 1 tokens gives columns of several list chunks, never
        ``large_list``). It may be a URI on an object store: the shards go
        under ``DST/.bfpack-runs/<run id>/`` and the manifest, written last
        with a conditional put, is the commit (see the guarantees page).
    seq_len, columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.pack_table`; ``seed`` shuffles rows within each
        shard (shard ``k`` with ``seed + k``).
    provenance, carry, separator
        As in :func:`bfpack.pack_table`. ``doc_index`` numbers the documents
        of all the input files in the order they are read (the manifest's
        ``inputs``, each with its ``first_document``: document ``i`` is row
        ``i - first_document`` of the last file whose ``first_document`` is
        at most ``i``).
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
    bfpack.parquet.DestinationBusyError
        Another run is writing ``dst`` (an OSError).
    TypeError, ValueError
        Bad options, ``dst`` overlapping ``src``, or input that cannot be
        packed (the message names the file, column or row).

    Notes
    -----
    Files of ``src`` whose names start with ``_`` or ``.`` are skipped, as
    pyarrow does; a warning names them and the manifest lists them. A
    symbolic link inside ``src`` that resolves into ``dst`` (or beside it,
    into bfpack's ``.NAME.*`` directories) is refused, and so is a source
    that is or holds a bfpack output (its rows are packed sequences).

    Every input file is read as it was listed: its size, modification time
    and the SHA-256 of its footer are taken when the run starts (and
    recorded in the manifest's ``inputs``), checked before and after the
    file is read and again before the commit; a file that changed fails
    the run with a ValueError naming it, and ``dst`` keeps what it held.
    Page checksums are verified where the files have them (pyarrow 15 and
    later), so a damaged page fails the run instead of being packed.
    Packing and writing overlap: up to two shards are encoded in threads
    of their own while the next window is read and packed (pyarrow and the
    kernels release the GIL). Memory holds about one window (plus the
    carried sequences and the shards being written):
    files are read batch by batch, a column chunk streamed page by page,
    and each batch sized by tokens, however the documents' lengths vary.

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
    o = PackOptions(
        seq_len,
        method=method,
        long_docs=long_docs,
        columns=columns,
        pad_value=pad_value,
        position_ids=position_ids,
        seed=seed,
        window_tokens=window_tokens,
        rows_per_shard=rows_per_shard,
        overwrite=overwrite,
        max_open=max_open,
        provenance=provenance,
        carry=carry,
        separator=separator,
        format=format,
    )
    as_callable(progress, "progress")
    src, dst, output, local_dst = open_output(src, dst, o.format, o.overwrite)
    with output as out:
        source = ParquetSource.open(src, dst=local_dst)
        spec = source.spec(**o.spec_options())
        _log.info(
            "packing %s documents with %s at seq_len %s, in windows of %s tokens "
            "(%s open sequences carried at most)",
            *_n(source.rows),
            o.method,
            *_n(o.seq_len, o.window_tokens, o.max_open),
        )
        packer = o.packer(spec, seed=o.seed)
        writer = shard_writer(o, out.folder, run_id=out.run_id)
        try:
            _pack_windows(source, packer, writer, window_tokens=o.window_tokens, progress=progress)
        finally:
            shards = writer.close()
        manifest = commit_run(
            out,
            src,
            source,
            shards,
            fmt=o.format,
            options=o.as_dict(spec),
            stats=packer.stats().to_dict(),
            provenance=spec.provenance,
        )
    _log.info("wrote %s shard(s) and the manifest to %s", len(manifest["shards"]), dst)
    return manifest


def commit_run(
    out: StagedOutput | RemoteOutput,
    src: str,
    source: ParquetSource,
    shards: list[dict[str, Any]],
    *,
    fmt: str,
    options: dict[str, Any],
    stats: dict[str, Any],
    provenance: bool,
) -> dict[str, Any]:
    """Finish the shards written into ``out.folder``, write the manifest and
    commit ``out``: how every run (one process, or Dask tasks) ends.

    Returns the manifest.
    """
    shards = finish_shards(fmt, out.folder, shards, run_id=out.run_id)
    manifest = build_manifest(
        run_id=out.run_id,
        source=src if _fs.is_uri(src) else os.path.abspath(src),
        inputs=input_records(source, provenance=provenance),
        skipped=source.skipped,
        options=options,
        shards=shards,
        stats=stats,
    )
    if isinstance(out, RemoteOutput):  # its shards are read from the run's prefix
        manifest["prefix"] = out.prefix
    source.check_unchanged()  # the manifest's inputs are the files as they are now
    write_manifest(out.folder, manifest)
    out.commit()
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


def _n(*numbers: int) -> tuple[str, ...]:
    """Numbers as log messages show them: with thousands separators."""
    return tuple(f"{x:,}" for x in numbers)
