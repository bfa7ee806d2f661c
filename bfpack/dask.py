"""Packing a Parquet dataset on a Dask cluster (extra ``bfpack[dask]``).

The work is cut by the input alone, never by the number of workers:

1. The files of the source, in order, form groups of ``files_per_task``
   consecutive files; each group is one task.
2. A task packs its group as the single process does
   (:class:`~bfpack.stream.TableStreamPacker` over windows), writes the
   sequences it completes as shards ``part-<task>-<k>.parquet`` of the
   staged output (each under a temporary name, renamed when complete, so a
   retried task rewrites the same names and never leaves duplicates), and
   returns its shard records, its counts and its still-open pieces.
3. The driver packs the open pieces of every task together, in task order,
   into the last shards ``part-last-<k>.parquet``, then writes the manifest
   and swaps the output in, as :func:`bfpack.parquet.pack_parquet` does
   (lock, atomic swap, manifest last, ``bfpack verify``).

So the output is byte-identical whatever the number of workers, and a
worker that dies mid-task costs only that task, which Dask runs again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ._validate import as_int, as_lengths
from .packing import DocumentCounts, PackingStats
from .parquet._pack import DEFAULT_WINDOW_TOKENS, Options
from .parquet._source import ParquetSource
from .parquet._staging import StagedOutput, check_paths
from .parquet.manifest import build_manifest, new_run_id, write_manifest
from .stream import StreamPacker, windows
from .table import OutputSpec

__all__ = ["DEFAULT_FILES_PER_TASK", "pack_parquet", "sequences_of_lengths"]

#: Input files per task by default.
DEFAULT_FILES_PER_TASK = 1

#: A task's shards are shuffled with ``seed + (task + 1) * _SEED_STRIDE + k``
#: (the last shards with ``seed + k``), so no two shards share a seed.
_SEED_STRIDE = 1 << 32

_log = logging.getLogger(__name__)


#: The file that tells the tasks of a failed run to stop.
_STOP = ".bfpack-stop"


class _Stopped(RuntimeError):
    """A task stopped because another task of its run failed."""


def _wait_all(futures: list[Any]) -> None:
    """Wait until every future has finished, with a result or an error."""
    import distributed

    distributed.wait(futures)


@dataclass(frozen=True)
class _TaskResult:
    """What a task sends back: small, whatever the size of its files."""

    shards: list[dict[str, Any]]
    counts: DocumentCounts
    sequences: int
    open_pieces: pa.Table


def pack_parquet(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    seq_len: int,
    *,
    client: Any = None,
    files_per_task: int = DEFAULT_FILES_PER_TASK,
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
    """Pack a Parquet dataset into packed Parquet shards on a Dask cluster.

    Parameters
    ----------
    src, dst, seq_len
        As in :func:`bfpack.parquet.pack_parquet`. The staged output is
        written beside ``dst`` by the workers: ``src`` and ``dst`` must be
        on a file system every worker sees at the same path.
    client : distributed.Client, optional
        The cluster to run on; by default the current client
        (``distributed.get_client()``), and an error if there is none.
    files_per_task : int
        Consecutive input files packed by one task. More files per task
        means fewer open sequences handed back to the driver (at most
        ``max_open`` per task, a quarter of a window of tokens) and so less
        memory there; fewer means more tasks to spread.
    columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.parquet.pack_parquet`. ``seed`` shuffles the
        rows of every shard with a seed of its own, fixed by ``seed``, the
        task and the shard.
    window_tokens, rows_per_shard, overwrite, max_open
        As in :func:`bfpack.parquet.pack_parquet`; ``rows_per_shard``
        applies within each task.
    progress : callable, optional
        Called after every task with running totals (``documents``,
        ``tokens``, ``sequences``, ``windows``: tasks done) and
        ``total_documents``.

    Returns
    -------
    dict
        The manifest (as :func:`bfpack.parquet.pack_parquet` writes it, its
        ``options`` with ``files_per_task``; shards of the tasks in task
        order, then the last shards).

    Raises
    ------
    ImportError
        ``distributed`` is not installed.
    TypeError, ValueError
        Bad options (as :func:`bfpack.parquet.pack_parquet`), no client,
        or an input file that cannot be read (one line naming it; the
        other tasks stop at their next window, and ``dst`` keeps what it
        held).

    Notes
    -----
    A worker that dies is replaced and its tasks run again by the
    scheduler (up to ``distributed.scheduler.allowed-failures`` times).
    Packing in tasks costs a little quality: each task completes the
    sequences it cannot improve on and hands back only the roomiest; on
    20M web-like documents in 16 files the result has 0.0013% more
    sequences than one global BFD at 2048 tokens, 0.003% at 8192 (see the
    README's "At scale").
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
    files_per_task = as_int(files_per_task, "files_per_task", lo=1)
    client = _client(client)
    check_paths(os.fspath(src), os.fspath(dst))
    with StagedOutput(os.path.realpath(dst), overwrite=o.overwrite) as out:
        source = ParquetSource.open(src)
        spec = source.spec(columns=columns, pad_value=pad_value, position_ids=position_ids)
        groups = _groups(source, files_per_task)
        run_id = new_run_id()
        _log.info(
            "packing %s documents in %s task(s) of %s file(s) on %s",
            f"{source.rows:,}",
            len(groups),
            files_per_task,
            client,
        )
        futures = [
            client.submit(
                _pack_group, group, out.folder, task, o, spec, key=f"bfpack-{run_id}-{task}"
            )
            for task, group in enumerate(groups)
        ]
        try:
            results = _gather(client, futures, source.rows, progress)
        except Exception:
            # Stop the other tasks at their next window and let them end
            # before the staged output is removed, so none writes into it after.
            open(os.path.join(out.folder, _STOP), "w").close()
            _wait_all(futures)
            raise
        except BaseException:
            client.cancel(futures)
            raise
        last = o.packer(spec, seed=o.seed)
        writer = o.writer(out.folder, prefix="part-last")
        try:
            pieces = (r.open_pieces for r in results)
            for table, final in windows(pieces, spec, o.window_tokens):
                rows = last.step(table, last=final)
                if rows.num_rows:
                    writer.write(rows)
        finally:
            last_shards = writer.close()
        counts = sum((r.counts for r in results), DocumentCounts())
        stats = PackingStats.of(
            method=o.method,
            long_docs=o.long_docs,
            seq_len=o.seq_len,
            counts=counts,
            sequences=sum(r.sequences for r in results) + last.stats().sequences,
        )
        shards = [s for r in results for s in r.shards] + last_shards
        manifest = build_manifest(
            run_id=run_id,
            source=os.path.abspath(os.fspath(src)),
            inputs=[f.record() for f in source.files],
            skipped=source.skipped,
            options={**o.record(spec), "files_per_task": files_per_task},
            shards=shards,
            stats=stats.to_dict(),
        )
        _remove_temporary_files(out.folder)
        write_manifest(out.folder, manifest)
        out.commit()
    _log.info("wrote %s shard(s) and the manifest to %s", len(shards), os.fspath(dst))
    return manifest


def _client(client: Any) -> Any:
    """The client to run on: ``client``, or the current one."""
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "bfpack.dask needs dask.distributed: pip install 'bfpack[dask]'"
        ) from None
    if client is None:
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError(
                "no Dask client: pass client=distributed.Client(...), or start one "
                "first (the command line's --workers N starts a local cluster)"
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client


def _groups(source: ParquetSource, files_per_task: int) -> list[ParquetSource]:
    """The files of ``source`` in groups of ``files_per_task``, in order."""
    files = source.files
    return [
        ParquetSource(path=source.path, files=files[i : i + files_per_task], skipped=())
        for i in range(0, len(files), files_per_task)
    ]


def _gather(
    client: Any, futures: list[Any], total: int, progress: Callable | None
) -> list[_TaskResult]:
    """The results of ``futures`` in task order; the first failure raised at once."""
    import distributed

    results: dict[Any, _TaskResult] = {}
    totals = dict(documents=0, tokens=0, sequences=0, windows=0, total_documents=total)
    for future in distributed.as_completed(futures):
        result = future.result()  # a task's error, raised here as it was raised there
        results[future.key] = result
        totals["documents"] += result.counts.documents
        totals["tokens"] += result.counts.tokens
        totals["sequences"] += result.sequences
        totals["windows"] += 1
        if progress is not None:
            progress(dict(totals))
    return [results[f.key] for f in futures]


def _pack_group(
    group: ParquetSource, folder: str, task: int, o: Options, spec: OutputSpec
) -> _TaskResult:
    """One task: pack the files of ``group``, keeping the open sequences open.

    It reads, packs and writes in turn, in its own thread: Dask counts a
    task as one core, and runs as many tasks at once as a worker has threads.
    """
    seed = None if o.seed is None else o.seed + (task + 1) * _SEED_STRIDE
    packer = o.packer(spec, seed=seed)
    writer = o.writer(folder, prefix=f"part-{task:05d}", in_flight=0)
    stop = os.path.join(folder, _STOP)
    try:
        for table, _ in group.windows(spec, o.window_tokens):
            if os.path.exists(stop):
                raise _Stopped("stopped: another task of the run failed")
            rows = packer.step(table)
            if rows.num_rows:
                writer.write(rows)
    finally:
        shards = writer.close()
    stats = packer.stats()
    return _TaskResult(
        shards=shards,
        counts=packer.counts,
        sequences=stats.sequences,
        open_pieces=packer.open_pieces,
    )


def _remove_temporary_files(folder: str) -> None:
    """Remove what tasks on workers that died left (shards are renamed when complete)."""
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp-" in name:
            os.unlink(os.path.join(folder, name))


def sequences_of_lengths(
    groups: Sequence[Any],
    seq_len: int,
    *,
    method: str = "bfd",
    long_docs: str = "split",
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    max_open: int | None = None,
) -> PackingStats:
    """The statistics :func:`pack_parquet` reaches, from document lengths alone.

    Each element of ``groups`` holds the lengths of one task's documents;
    they are packed as the tasks and the driver pack them (the same windows,
    the same open sequences handed on), without reading or writing tokens,
    so the quality of packing in tasks can be measured at any scale.
    """
    o = Options.check(
        seq_len,
        method=method,
        long_docs=long_docs,
        pad_value=None,
        seed=None,
        window_tokens=window_tokens,
        rows_per_shard=None,
        overwrite=False,
        max_open=max_open,
        progress=None,
    )
    counts = DocumentCounts()
    sequences = 0
    leftovers = []
    for lengths in groups:
        packer = StreamPacker(
            o.seq_len, method=o.method, long_docs=o.long_docs, max_open=o.max_open
        )
        for window in _length_windows(as_lengths(lengths), o.window_tokens):
            packer.step(window)
        counts = counts + packer.counts
        sequences += packer.stats().sequences
        leftovers.append(packer.open_lengths)
    last = StreamPacker(o.seq_len, method=o.method, long_docs=o.long_docs, max_open=o.max_open)
    pieces = np.concatenate(leftovers)
    windows_ = _length_windows(pieces, o.window_tokens) or [pieces]
    for k, window in enumerate(windows_):
        last.step(window, last=k == len(windows_) - 1)
    return PackingStats.of(
        method=o.method,
        long_docs=o.long_docs,
        seq_len=o.seq_len,
        counts=counts,
        sequences=sequences + last.stats().sequences,
    )


def _length_windows(lengths: np.ndarray, window_tokens: int) -> list[np.ndarray]:
    """``lengths`` cut as :func:`bfpack.stream.windows` cuts tables: each
    window ends with the document that reaches ``window_tokens`` tokens."""
    out = []
    start = 0
    ends = np.cumsum(lengths)
    while start < lengths.shape[0]:
        before = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, before + window_tokens)) + 1
        out.append(lengths[start:stop])
        start = stop
    return out
