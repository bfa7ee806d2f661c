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

A run that fails or is interrupted stops its tasks and waits for them
before the staged output is removed (:func:`_stop_tasks`): Dask cannot
stop a running task, so each task checks before every window and shard
that its run goes on (:func:`_check_live`: no stop file, the staged
directory there, the destination's lock held), which also stops the tasks
of a driver that died on a cluster that outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ._optional import requires
from ._validate import as_callable, as_int
from .analysis import sequences_of_lengths
from .options import DEFAULT_WINDOW_TOKENS, PackOptions
from .packing import DocumentCounts, PackingStats
from .parquet import _fs
from .parquet._pack import commit_run
from .parquet._remote import (
    RemoteOutput,
    ask_tasks_to_stop,
    open_output,
    task_live,
    task_upload,
)
from .parquet._shards import shard_writer
from .parquet._source import ParquetSource
from .parquet._staging import DestinationLock
from .stream import windows
from .table import OutputSpec

__all__ = ["ClusterError", "DEFAULT_FILES_PER_TASK", "pack_parquet", "sequences_of_lengths"]

#: Input files per task by default.
DEFAULT_FILES_PER_TASK = 1

#: A task's shards are shuffled with ``seed + (task + 1) * _SEED_STRIDE + k``
#: (the last shards with ``seed + k``), so no two shards share a seed.
_SEED_STRIDE = 1 << 32

_log = logging.getLogger(__name__)


#: The file that tells the tasks of a failed run to stop.
_STOP = ".bfpack-stop"

#: Seconds the driver of a failed or interrupted run waits for its tasks to
#: stop (each stops before its next window or shard) before it removes the
#: staged output anyway.
_STOP_TIMEOUT = 120


class ClusterError(OSError):
    """The Dask cluster failed the run: workers that kept dying
    (``KilledWorker``), a cluster that would not start, a lost scheduler.

    An OSError, like other failures of the environment, so the command
    line reports it in one line with exit status 2.
    """


class _Stopped(RuntimeError):
    """A task stopped because its run failed, was interrupted, or lost its driver."""


def _check_live(folder: str, lock: str) -> None:
    """Raise :class:`_Stopped` unless the run of the staged ``folder`` goes on.

    A task calls this before every window and every shard it writes, so it
    stops writing once the driver has given up: the driver asked it to (the
    stop file), removed the staged directory, or died (nobody holds the
    destination's lock, ``lock``, any more). A task may run on a cluster
    that outlives the driver, so it cannot count on being cancelled.
    """
    if os.path.exists(os.path.join(folder, _STOP)):
        raise _Stopped("stopped: the run failed or was interrupted")
    if not os.path.isdir(folder):
        raise _Stopped(f"stopped: the staged output {folder} was removed or cannot be seen")
    if not _is_locked(lock):
        raise _Stopped(f"stopped: the run's lock {lock} is no longer held")


def _check_live_remote(run_uri: str, lock_uri: str) -> None:
    """:func:`_check_live` for a run writing to a store (see :func:`task_live`)."""
    why = task_live(run_uri, lock_uri)
    if why is not None:
        raise _Stopped(why)


def _is_locked(path: str) -> bool:
    """Whether a process holds the ``flock`` of ``path``; True when it cannot be told."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:  # not ours to open: the staged directory still decides
        return True
    try:
        # The driver holds it exclusive: a shared lock is refused while it lives.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held; anything else: cannot tell
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def cluster_errors(what: str, *, every: bool = False) -> Iterator[None]:
    """Raise what Dask raises in the block (a worker that kept dying, a
    cluster or scheduler lost) as :class:`ClusterError` saying ``what``
    failed; the errors of the tasks themselves pass as they are. With
    ``every``, every error is the cluster's (starting one: a nanny that
    fails to start raises a plain RuntimeError)."""
    try:
        yield
    except (_Stopped, ClusterError):
        raise
    except (Exception, asyncio.CancelledError) as exc:
        if not (every or _from_dask(exc)):
            raise
        try:
            detail = str(exc).strip().partition("\n")[0]
        except Exception:  # Dask's own __str__ may fail on what it holds
            detail = ""
        raise ClusterError(
            f"{what}: {type(exc).__name__}{f': {detail}' if detail else ''}"
        ) from exc


def _from_dask(exc: BaseException) -> bool:
    """Whether ``exc`` comes from Dask (or its event loop), not from bfpack's code."""
    if isinstance(exc, (asyncio.CancelledError, TimeoutError)):
        return True
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("distributed", "dask", "tornado", "asyncio")


def _stop_tasks(client: Any, futures: list[Any], folder: str) -> None:
    """Stop the tasks of a run that failed or was interrupted, and wait for them.

    Dask cannot stop a task that is running (a cancelled one runs on, its
    result dropped), so the tasks are asked to: each stops before its next
    window or shard. Only once they have all ended may the staged
    directory be removed, or one would write into it after.
    """
    distributed = _distributed()
    if _fs.is_uri(folder):
        ask_tasks_to_stop(folder)
    else:
        with contextlib.suppress(OSError):
            open(os.path.join(folder, _STOP), "w").close()
    try:
        with client.as_current():
            distributed.wait(futures, timeout=_STOP_TIMEOUT)
    except Exception as exc:  # a timeout, a lost cluster: the tasks check the directory
        _log.warning(
            "the tasks of the failed run did not all end (%s); they stop at their next "
            "shard, as the staged output is removed",
            type(exc).__name__,
        )
    finally:
        with contextlib.suppress(Exception):  # a client already closed or lost
            client.cancel(futures)


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
    provenance: bool = False,
    carry: str | Sequence[str] | None = None,
    separator: float | Mapping[str, float] | None = None,
    progress: Callable[[dict[str, int]], Any] | None = None,
    format: str = "parquet",
) -> dict[str, Any]:
    """Pack a Parquet dataset into packed Parquet shards on a Dask cluster.

    Parameters
    ----------
    src, dst, seq_len
        As in :func:`bfpack.parquet.pack_parquet`. The staged output is
        written beside ``dst`` by the workers: ``src`` and ``dst`` must be
        on a file system every worker sees at the same path, or URIs of an
        object store (each task then uploads its shards under the run's
        prefix; the driver commits the manifest).
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
    window_tokens, rows_per_shard, overwrite, max_open, format
        As in :func:`bfpack.parquet.pack_parquet`; ``rows_per_shard``
        applies within each task.
    provenance, carry, separator
        As in :func:`bfpack.parquet.pack_parquet`: ``doc_index`` numbers the
        documents of all the files in order, whatever task packs them, so
        it does not depend on the tasks or workers.
        applies within each task. With ``format="arrow"`` the driver names
        the shards ``data-00000-of-0000N.arrow``, ... in task order once all
        are written.
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
        or an input file that cannot be read (one line naming it).
    ClusterError
        The cluster failed the run: a task whose workers kept dying
        (``KilledWorker``), a lost scheduler, or a worker that cannot see
        the staged output (an OSError).

    Notes
    -----
    A worker that dies is replaced and its tasks run again by the
    scheduler (up to ``distributed.scheduler.allowed-failures`` times).
    On any error, and on KeyboardInterrupt, the tasks are stopped (each
    before its next window or shard) and waited for, then the staged
    output is removed: nothing is left beside ``dst``, which keeps what
    it held, and no task writes after this returns.

    Packing in tasks costs a little quality: each task completes the
    sequences it cannot improve on and hands back only the roomiest; on
    20M web-like documents in 16 files the result has 0.0013% more
    sequences than one global BFD at 2048 tokens, 0.003% at 8192 (see the
    README's "At scale").
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
    files_per_task = as_int(files_per_task, "files_per_task", lo=1)
    client = _client(client)
    src, dst, output, local_dst = open_output(src, dst, o.format, o.overwrite)
    with output as out:
        source = ParquetSource.open(src, dst=local_dst)
        spec = source.spec(**o.spec_options())
        groups = _groups(source, files_per_task)
        firsts = [0, *itertools.accumulate(g.rows for g in groups)]  # provenance
        run_id = out.run_id  # the run the lock's journal and the markers name
        _log.info(
            "packing %s documents in %s task(s) of %s file(s) on %s",
            f"{source.rows:,}",
            len(groups),
            files_per_task,
            client,
        )
        # On a store, the tasks upload their shards under the run's prefix
        # themselves: workers share no disk with the driver.
        lock = out.lock_uri if isinstance(out, RemoteOutput) else DestinationLock(out.dst).path
        target = out.run_uri if isinstance(out, RemoteOutput) else out.folder
        futures: list[Any] = []
        try:
            with cluster_errors("the Dask cluster failed the run"):
                for task, group in enumerate(groups):
                    futures.append(
                        client.submit(
                            _pack_group,
                            group,
                            target,
                            lock,
                            task,
                            o,
                            spec,
                            first_document=firsts[task],
                            run_id=run_id,
                            key=f"bfpack-{run_id}-{task}",
                        )
                    )
                results = _gather(client, futures, source.rows, progress)
        except BaseException:
            # An error, or an interrupt: no task may write after the staged
            # output is removed (on leaving the with block).
            _stop_tasks(client, futures, target)
            raise
        last = o.packer(spec, seed=o.seed, pieces=True)
        writer = shard_writer(o, out.folder, prefix="part-last", run_id=run_id)
        try:
            pieces = (r.open_pieces for r in results)
            for table, final in windows(pieces, spec, o.window_tokens, pieces=True):
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
        _remove_temporary_files(out.folder)
        manifest = commit_run(
            out,
            src,
            source,
            [s for r in results for s in r.shards] + last_shards,
            fmt=o.format,
            options={**o.as_dict(spec), "files_per_task": files_per_task},
            stats=stats.to_dict(),
            provenance=spec.provenance,
        )
    _log.info("wrote %s shard(s) and the manifest to %s", len(manifest["shards"]), dst)
    return manifest


def _distributed() -> Any:
    """The ``distributed`` module, or ImportError naming the extra to install."""
    with requires("dask", needed_by="bfpack.dask"):
        import distributed
    return distributed


def _client(client: Any) -> Any:
    """The client to run on: ``client``, or the current one."""
    distributed = _distributed()
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
    distributed = _distributed()
    results: dict[Any, _TaskResult] = {}
    totals = dict(documents=0, tokens=0, sequences=0, windows=0, total_documents=total)
    for future in distributed.as_completed(futures):
        result = future.result()  # a task's error, raised here as it was raised there
        if isinstance(result, str):  # the task found its run given up, which it is not
            raise ClusterError(
                f"a task {result}; the staged output and the lock beside the destination "
                f"must be on a file system every worker sees at the same path"
            )
        results[future.key] = result
        totals["documents"] += result.counts.documents
        totals["tokens"] += result.counts.tokens
        totals["sequences"] += result.sequences
        totals["windows"] += 1
        if progress is not None:
            progress(dict(totals))
    return [results[f.key] for f in futures]


def _pack_group(
    group: ParquetSource,
    folder: str,
    lock: str,
    task: int,
    o: PackOptions,
    spec: OutputSpec,
    *,
    first_document: int = 0,
    run_id: str,
    run_uri: str | None = None,
) -> _TaskResult | str:
    """One task: pack the files of ``group``, keeping the open sequences open.

    It reads, packs and writes in turn, in its own thread: Dask counts a
    task as one core, and runs as many tasks at once as a worker has threads.
    Before every window and every shard it checks that its run goes on
    (:func:`_check_live`); otherwise it stops and returns why, a string
    (not an error, which each worker would log at length). Its first
    document is ``first_document`` of the whole source (provenance).
    """
    if _fs.is_uri(folder):  # a run prefix on a store: shards staged here, then uploaded
        with tempfile.TemporaryDirectory(prefix="bfpack-task-") as local:
            result = _pack_group(
                group,
                local,
                lock,
                task,
                o,
                spec,
                first_document=first_document,
                run_id=run_id,
                run_uri=folder,
            )
            if isinstance(result, _TaskResult):
                task_upload(local, [s["file"] for s in result.shards], folder)
            return result
    seed = None if o.seed is None else o.seed + (task + 1) * _SEED_STRIDE
    packer = o.packer(spec, seed=seed, first_document=first_document)
    live = (
        functools.partial(_check_live, folder, lock)
        if run_uri is None
        else functools.partial(_check_live_remote, run_uri, lock)
    )
    writer = shard_writer(
        o, folder, prefix=f"part-{task:05d}", in_flight=0, before_shard=live, run_id=run_id
    )
    try:
        try:
            for table, _ in group.windows(spec, o.window_tokens):
                live()
                rows = packer.step(table)
                if rows.num_rows:
                    writer.write(rows)
        finally:
            shards = writer.close()
    except _Stopped as stopped:
        return str(stopped)
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
