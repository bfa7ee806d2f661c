"""Packing Parquet datasets to Parquet, streamed in bounded memory."""

import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._version import __version__
from ._validate import LONG_DOCS, METHODS, as_choice, as_seq_len
from .packing import PackingStats, pack
from .stream import StreamPacker
from .table import (assemble, document_lengths, pad_values, packed_columns,
                    row_order)

MANIFEST = "_bfpack.json"
DEFAULT_WINDOW_TOKENS = 1 << 26


def open_dataset(src):
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
            f"({str(exc).splitlines()[0]})") from None
    return dataset


def dataset_columns(dataset, columns):
    """The columns to pack, checked in every file of ``dataset``.

    The dataset's schema comes from its first file; a later file missing a
    packed column would read as null lists (documents lost without a word),
    and one holding something else would fail deep inside the read.
    """
    names = packed_columns(dataset.schema, columns)
    for fragment in dataset.get_fragments():
        schema = fragment.physical_schema
        for name in names:
            if name not in schema.names:
                raise ValueError(
                    f"{fragment.path} has no column {name!r} (its columns: "
                    f"{schema.names}); every file must hold the packed columns")
            t = schema.field(name).type
            if not (pa.types.is_list(t) or pa.types.is_large_list(t)) \
                    or t.value_type != dataset.schema.field(name).type.value_type:
                raise TypeError(
                    f"{fragment.path}: column {name!r} is {t}, but "
                    f"{dataset.schema.field(name).type} in the first file; "
                    f"every file must hold the same token type")
    return names


def pack_parquet(src, dst, seq_len, *, columns=None, method="bfd",
                 long_docs="split", pad_value=None, position_ids=False,
                 seed=None, window_tokens=DEFAULT_WINDOW_TOKENS,
                 overwrite=False, max_open=None, progress=None):
    """Pack a Parquet dataset into a directory of packed Parquet shards.

    Documents are read in windows of about ``window_tokens`` tokens. With
    ``method="bfd"`` each window is packed together with the sequences
    still open from earlier windows, and the ``max_open`` sequences with the
    most free space are carried on, so memory stays bounded while the
    packing stays within a few sequences of one global BFD. ``"ffd"`` and
    ``"concat"`` pack each window on its own.

    Parameters
    ----------
    src : path
        A Parquet file or a directory of Parquet files, one row per document.
    dst : path
        Output directory; it must not exist unless ``overwrite``. It gets
        shards ``part-00000.parquet``, ... (one per window, each row a packed
        sequence, as :func:`bfpack.pack_table` makes them) and, last, the
        manifest ``_bfpack.json`` (input, options, version, stats).
    seq_len, columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.pack_table`; ``seed`` shuffles rows within each
        shard.
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
        Called after every window with a dict of running totals.

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
    method = as_choice(method, "method", METHODS)
    long_docs = as_choice(long_docs, "long_docs", LONG_DOCS)
    if isinstance(window_tokens, bool) or not isinstance(window_tokens, int) \
            or window_tokens < 1:
        raise ValueError(
            f"window_tokens must be a positive integer, got {window_tokens!r}")
    dst = os.path.abspath(os.fspath(dst))
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(
            f"{dst} already exists; choose another destination or overwrite it")
    dataset = open_dataset(src)
    names = dataset_columns(dataset, columns)
    pads = pad_values(dataset.schema, names, pad_value)
    if max_open is None:
        max_open = min(4096, max(16, window_tokens // (4 * seq_len)))
    row_order(0, seed)  # validates seed before any work
    seed = None if seed is None else int(seed)

    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.tmp-", dir=parent)
    try:
        stats, shards = _write_shards(
            dataset, tmp, names, seq_len, method, long_docs, pads,
            position_ids, seed, window_tokens, max_open, progress)
        manifest = {
            "bfpack_version": __version__,
            "source": os.path.abspath(os.fspath(src)),
            "options": {"seq_len": seq_len, "columns": names,
                        "method": method, "long_docs": long_docs,
                        "pad_value": _json_pad(pad_value, pads),
                        "position_ids": bool(position_ids),
                        "seed": seed, "window_tokens": window_tokens,
                        "max_open": max_open},
            "shards": shards,
            "stats": stats,
        }
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None; looked up on first use, not import."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def _release_free_memory():
    """Give the last window's freed buffers back to the system.

    Arrow's allocator keeps freed memory for reuse, and glibc keeps freed
    arrays below its (adaptive, up to 32 MB) mmap threshold on its heap;
    without this, resident memory creeps up window after window.
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _json_pad(pad_value, pads):
    """``pad_value`` as given (one int or per column), as plain ints."""
    if pads is None:
        return None
    return pads if isinstance(pad_value, dict) else next(iter(pads.values()))


def _replace_dir(tmp, dst):
    if not os.path.exists(dst):
        os.rename(tmp, dst)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old-",
                           dir=os.path.dirname(dst))
    os.rename(dst, os.path.join(old, "d"))
    os.rename(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


def _batches(dataset, names):
    """Record batches of ``names``, one file at a time, in path order.

    A scan of the whole dataset reads ahead across files, so its memory
    grows with the number of files; file by file with a short read-ahead it
    stays flat.
    """
    for fragment in dataset.get_fragments():
        yield from fragment.to_batches(schema=dataset.schema, columns=names,
                                       batch_size=8192, batch_readahead=2)


def _windows(dataset, names, window_tokens):
    """Yield ``(first_row, table, last)``: tables of whole documents, each
    just reaching ``window_tokens`` tokens (the last one may hold fewer),
    the row number of their first document, and whether more follow.

    One batch is read ahead, so the last window is known as such without
    holding two windows in memory.
    """
    schema = pa.schema([dataset.schema.field(n) for n in names])
    batches = (b for b in _batches(dataset, names) if b.num_rows)
    parts, tokens, first_row = [], 0, 0
    batch = next(batches, None)
    while batch is not None:
        n = document_lengths(pa.Table.from_batches([batch]), names[:1])
        # Rows up to the document that reaches the window, inclusive.
        upto = int(np.searchsorted(np.cumsum(n), window_tokens - tokens)) + 1
        if upto > batch.num_rows:
            parts.append(batch)
            tokens += int(n.sum())
            batch = next(batches, None)
            continue
        parts.append(batch.slice(0, upto))
        batch = batch.slice(upto) if upto < batch.num_rows else next(batches, None)
        table = pa.Table.from_batches(parts, schema=schema)
        yield first_row, table, batch is None
        first_row += table.num_rows
        parts, tokens = [], 0
    if parts or first_row == 0:
        yield first_row, pa.Table.from_batches(parts, schema=schema), True


def _write_shards(dataset, folder, names, seq_len, method, long_docs, pads,
                  position_ids, seed, window_tokens, max_open, progress):
    """Pack window after window and write one shard per window.

    Writing a shard (Parquet encoding and compression) runs in a second
    thread while the next window is read and packed; at most one shard is
    in flight, so memory holds one window and one shard.
    """
    packer = StreamPacker(seq_len, long_docs, max_open) if method == "bfd" else None
    totals = dict(documents=0, tokens=0, sequences=0, windows=0)
    window_stats = []
    shards = []
    carry = None
    row_group = max(16, (1 << 22) // seq_len)

    def pack_window(table, lengths, last):
        nonlocal carry
        shard_seed = None if seed is None else seed + len(shards)
        if packer is None:
            plan = pack(lengths, seq_len, method=method, long_docs=long_docs)
            window_stats.append(plan.stats().to_dict())
            rows = row_order(plan.num_sequences, shard_seed)
            return assemble(table, names, seq_len, plan.seq_offsets,
                            plan.piece_doc, plan.piece_start, plan.piece_len,
                            rows, pads, position_ids)
        w = packer.step(lengths, last=last)
        if carry is not None:
            table = pa.concat_tables([carry, table])
        rows = w.emit
        if seed is not None:
            rows = rows[row_order(rows.shape[0], shard_seed)]
        out = assemble(table, names, seq_len, w.seq_offsets, w.piece_doc,
                       w.piece_start, w.piece_len, rows, pads, position_ids)
        # The carried pieces become the first documents of the next window.
        k = w.carry_pieces
        carry = assemble(table, names, seq_len, np.arange(k.shape[0] + 1),
                         w.piece_doc[k], w.piece_start[k], w.piece_len[k],
                         np.arange(k.shape[0]), None, False).select(names)
        carry = carry.cast(table.schema)
        return out

    with ThreadPoolExecutor(max_workers=1) as writer:
        in_flight = None

        def write(out, force=False):
            nonlocal in_flight
            if not (out.num_rows or force):
                return
            name = f"part-{len(shards):05d}.parquet"
            shards.append({"file": name, "rows": out.num_rows})
            if in_flight is not None:
                in_flight.result()
            in_flight = writer.submit(pq.write_table, out,
                                      os.path.join(folder, name),
                                      row_group_size=row_group)

        for first_row, table, last in _windows(dataset, names, window_tokens):
            table = table.replace_schema_metadata(None)
            lengths = document_lengths(table, names, first_row)
            out = pack_window(table, lengths, last)
            write(out)
            totals["documents"] += len(lengths)
            totals["tokens"] += int(lengths.sum())
            totals["sequences"] += out.num_rows
            totals["windows"] += 1
            _release_free_memory()
            if progress is not None:
                progress(dict(totals))
        if not shards:
            write(out, force=True)  # an empty dataset still gets its schema
        if in_flight is not None:
            in_flight.result()
    if packer is not None:
        return packer.stats().to_dict(), shards
    return _sum_stats(window_stats, method, long_docs, seq_len), shards


def _sum_stats(window_stats, method, long_docs, seq_len):
    """Statistics of independently packed windows, added up."""
    keys = ("documents", "empty_documents", "tokens", "tokens_dropped",
            "sequences", "documents_truncated", "truncation_cuts")
    counts = {k: sum(w[k] for w in window_stats) for k in keys}
    return PackingStats.from_counts(method=method, long_docs=long_docs,
                                    seq_len=seq_len, **counts).to_dict()


class ProgressBar:
    """One self-rewriting line on stderr: documents, tokens, sequences, rate."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.start = time.perf_counter()

    def __call__(self, totals):
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(
            f"\r{totals['documents']:,} documents  {totals['tokens']:,} tokens"
            f"  {totals['sequences']:,} sequences  "
            f"{totals['tokens'] / elapsed / 1e6:,.1f} M tokens/s")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()
