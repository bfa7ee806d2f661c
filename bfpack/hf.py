"""Hugging Face ``datasets``: pack a Dataset, a DatasetDict or an IterableDataset.

``pip install 'bfpack[hf]'``. Imported only when used (``import bfpack``
does not import ``datasets``).

- A :class:`datasets.Dataset` is packed globally, in one pass over its
  Arrow data (no copy of the input), in its *logical* row order: after
  ``select``, ``shuffle`` or ``filter`` the dataset's indices mapping picks
  the documents. The packed rows are written to an Arrow file and returned
  as a memory-mapped :class:`datasets.Dataset`, so they are never held
  twice in memory.
- A :class:`datasets.IterableDataset` is packed on the fly, window by
  window, by the :class:`~bfpack.stream.TableStreamPacker` that
  :func:`bfpack.pack_parquet` uses, each input shard on its own: shard
  ``k`` of the output is what ``pack_parquet`` writes for the documents of
  input shard ``k``. DataLoader workers and ranks (``split_dataset_by_node``)
  receive whole shards, so each packs only the shards it reads. The
  packed rows are Arrow tables, so ``with_format("numpy")`` or ``"torch"``
  converts Arrow batches. Rows that are Python objects (a generator, a
  ``map``) are converted batch by batch with the dataset's types, so empty
  documents anywhere are fine.
- A ``DatasetDict`` / ``IterableDatasetDict`` is packed split by split.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from ._arrow import is_list_type
from ._atomic import atomic_path
from ._optional import requires
from ._validate import as_optional_path, as_seq_len
from ._version import __version__
from .options import DEFAULT_WINDOW_TOKENS, PackOptions
from .stream import windows
from .table import OutputSpec, TablePlan, assemble, plan_table

with requires("hf", needed_by="bfpack.hf"):
    import datasets
    from datasets.iterable_dataset import ArrowExamplesIterable

__all__ = ["pack_dataset"]

#: Tokens per record batch of a packed Arrow file (bounds memory while writing).
_BATCH_TOKENS = 1 << 22
#: Documents per Arrow batch read from an IterableDataset: the first window
#: waits for a whole batch (8192 web-like documents of Python lists took 2 s
#: to arrive, 1024 took 0.35 s, for the same throughput).
_READ_ROWS = 1024

#: Sequences of ``seq_len`` per window of a stream by default: the first rows
#: come after ``256 * seq_len`` tokens (0.5M at 2048) instead of
#: ``DEFAULT_WINDOW_TOKENS``, for 0.06% to 0.1% more sequences than one
#: global BFD on web-like lengths (0.002% with 2**24 tokens); see
#: docs/guides/streaming.md for the measurement.
_STREAM_WINDOW_SEQUENCES = 256

D = TypeVar("D")


def pack_dataset(
    dataset: D,
    seq_len: int,
    *,
    columns: str | Sequence[str] | None = None,
    method: str = "bfd",
    long_docs: str = "split",
    pad_value: float | Mapping[str, float] | None = None,
    position_ids: bool = False,
    seed: int | None = None,
    window_tokens: int | None = None,
    max_open: int | None = None,
    cache_file_name: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    provenance: bool = False,
    carry: str | Sequence[str] | None = None,
    separator: float | Mapping[str, float] | None = None,
) -> D:
    """Pack the token lists of a Hugging Face dataset into rows of at most ``seq_len``.

    Parameters
    ----------
    dataset : datasets.Dataset, IterableDataset, DatasetDict or IterableDatasetDict
        One row per document, with list columns of tokens (``input_ids``
        and anything aligned with it).
    seq_len, columns, method, long_docs, pad_value, position_ids, seed
        As in :func:`bfpack.pack_table`. By default every list column but
        ``attention_mask`` is packed. For an IterableDataset ``seed``
        shuffles the rows of each window's output (window ``k`` with
        ``seed + k``), as :func:`bfpack.pack_parquet` does for its shards.
    window_tokens, max_open : int, optional
        IterableDataset only: tokens per window and sequences carried
        between windows (default: as :func:`bfpack.pack_parquet`). The
        default window of a stream is ``256 * seq_len`` tokens, at most
        ``2**24`` (:func:`bfpack.pack_parquet`'s): the first row comes after
        0.5M tokens at ``seq_len=2048``, for 0.06% to 0.1% more sequences
        than one global BFD on web-like lengths (0.002% with ``2**24``).
    cache_file_name : path or dict of paths, optional
        Dataset only: the Arrow file the packed rows are written to (a dict
        of them, by split, for a DatasetDict). Default: a file named after
        the input's fingerprint and the options, beside the input's cache
        files, or in a temporary directory that ``datasets`` removes at exit
        when the input lives in memory.
    provenance, carry, separator
        As in :func:`bfpack.pack_table`. ``doc_index`` is the document's
        row in the dataset as given (after ``select``, ``shuffle`` or
        ``filter``: ``dataset[doc_index]`` is the document), or its
        position in the stream of an IterableDataset.

    Returns
    -------
    The same kind of object as ``dataset``
        One row per packed sequence, with the packed columns, ``seq_lengths``
        (list<int32>: the pieces of the row) and ``position_ids`` if asked.
        A Dataset comes back memory-mapped from its Arrow file, in no
        format (call ``with_format`` again if needed); an IterableDataset
        comes back lazy: nothing is read until it is iterated. It has the
        input's ``num_shards``, each input shard packed on its own, in
        order; a DataLoader worker or a rank that receives shards
        ``k, ...`` reads and packs only those, so the rows of all workers
        and ranks hold every token once, and the same rows for the same
        input shards whatever the number of workers or ranks. An input
        already split by node (``split_dataset_by_node`` before packing) is
        packed as one shard: split after packing instead.

    Raises
    ------
    TypeError
        ``dataset`` is not a ``datasets`` dataset, or an option has the
        wrong type (see :func:`bfpack.pack_table`).
    ValueError
        An option does not apply to this kind of dataset, or has a wrong
        value (see :func:`bfpack.pack_table`).

    Examples
    --------
    >>> ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5], [6]]})
    >>> packed = pack_dataset(ds.shuffle(seed=0), seq_len=4)  # doctest: +SKIP
    >>> packed.column_names                                   # doctest: +SKIP
    ['input_ids', 'seq_lengths']
    """
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        names = _split_cache_files(cache_file_name, list(dataset))
        return type(dataset)(
            {
                split: pack_dataset(
                    part,
                    seq_len,
                    columns=columns,
                    method=method,
                    long_docs=long_docs,
                    pad_value=pad_value,
                    position_ids=position_ids,
                    seed=seed,
                    window_tokens=window_tokens,
                    max_open=max_open,
                    cache_file_name=names[split],
                    provenance=provenance,
                    carry=carry,
                    separator=separator,
                )
                for split, part in dataset.items()
            }
        )
    if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(
            f"dataset must be a datasets.Dataset, IterableDataset, DatasetDict or "
            f"IterableDatasetDict, got {type(dataset).__name__}; for a pyarrow Table "
            f"use bfpack.pack_table"
        )
    iterable = isinstance(dataset, datasets.IterableDataset)
    if iterable and cache_file_name is not None:
        raise ValueError(
            "cache_file_name applies to a Dataset; an IterableDataset is packed "
            "lazily, as it is iterated, and writes no file"
        )
    if not iterable and (window_tokens is not None or max_open is not None):
        raise ValueError(
            "window_tokens and max_open apply to an IterableDataset; a Dataset is "
            "packed globally, in one window"
        )
    if isinstance(cache_file_name, Mapping):
        raise TypeError(
            "cache_file_name must be one path for a Dataset (a dict of them by "
            "split is for a DatasetDict)"
        )
    o = PackOptions(
        seq_len,
        method=method,
        long_docs=long_docs,
        columns=columns,
        pad_value=pad_value,
        position_ids=position_ids,
        seed=seed,
        window_tokens=_stream_window(seq_len) if window_tokens is None else window_tokens,
        max_open=max_open,
        provenance=provenance,
        carry=carry,
        separator=separator,
    )
    if iterable:
        return _pack_iterable(dataset, o)
    path = as_optional_path(cache_file_name, "cache_file_name")
    return _pack_map_style(dataset, o, path)


def _stream_window(seq_len: Any) -> int:
    """The default window of a stream: ``_STREAM_WINDOW_SEQUENCES`` sequences,
    at most ``DEFAULT_WINDOW_TOKENS`` (a wrong ``seq_len`` is left for
    :class:`PackOptions` to refuse)."""
    try:
        return min(DEFAULT_WINDOW_TOKENS, _STREAM_WINDOW_SEQUENCES * as_seq_len(seq_len))
    except (TypeError, ValueError):
        return DEFAULT_WINDOW_TOKENS


def _split_cache_files(names: Any, splits: list[str]) -> dict[str, str | None]:
    """The cache file of each split: ``names`` is None or a dict by split."""
    if names is None:
        return dict.fromkeys(splits)
    if not isinstance(names, Mapping):
        raise TypeError(
            "cache_file_name of a DatasetDict must be a dict of paths by split, e.g. "
            "{'train': 'train.arrow'}"
        )
    unknown = sorted(set(names) - set(splits))
    if unknown:
        raise ValueError(f"cache_file_name names splits {unknown} that are not in {splits}")
    return {s: as_optional_path(names.get(s), f"cache_file_name[{s!r}]") for s in splits}


# ---------------------------------------------------------------------------
# Dataset: one global packing, written to a memory-mapped Arrow file.


def _pack_map_style(
    dataset: datasets.Dataset, o: PackOptions, path: str | None
) -> datasets.Dataset:
    table = dataset.data.table  # the storage, in storage order (no copy)
    mapping = dataset._indices  # logical row i is storage row mapping[i]; None: the identity
    indices = None if mapping is None else mapping.column(0)
    options = dict(method=o.method, long_docs=o.long_docs, seed=o.seed, **o.spec_options())
    planned = plan_table(table, o.seq_len, indices=indices, **options)
    if path is None:
        path = _default_cache_file(dataset, planned, options)
    _write_arrow(path, table, planned)
    return datasets.Dataset.from_file(path, split=dataset.split)


def _default_cache_file(
    dataset: datasets.Dataset, planned: TablePlan, options: dict[str, Any]
) -> str:
    """A file named after the input's fingerprint and the options (``plan_table``'s).

    Beside the input's own cache files (where ``datasets`` keeps what it
    derives from them), else in the temporary directory ``datasets`` removes
    at exit. Packing the same input the same way again replaces the file
    (a Dataset already mapping it keeps the old one until it is dropped).
    """
    fingerprint = getattr(dataset, "_fingerprint", None) or uuid.uuid4().hex
    options = dict(options)
    for name in ("provenance", "carry", "separator"):  # the key of earlier versions when unset
        if options[name] is None or options[name] is False:
            del options[name]
    key = repr((fingerprint, planned.plan.seq_len, sorted(options.items()), __version__))
    name = f"bfpack-packed-{hashlib.sha256(key.encode()).hexdigest()[:16]}.arrow"
    files = dataset.cache_files
    folder = os.path.dirname(files[0]["filename"]) if files else ""
    if not folder or not os.access(folder, os.W_OK):
        from datasets.fingerprint import get_temporary_cache_files_directory

        folder = get_temporary_cache_files_directory()
    return os.path.join(folder, name)


def _write_arrow(path: str, table: pa.Table, planned: TablePlan) -> None:
    """Write the packed rows to an Arrow stream file, a few thousand rows at a
    time, under a temporary name renamed into place when complete."""
    spec, plan, rows = planned.spec, planned.plan, planned.rows
    block = max(1, _BATCH_TOKENS // plan.seq_len)
    with atomic_path(path) as tmp, pa.OSFile(tmp, "wb") as sink:
        writer = None
        for lo in range(0, max(rows.shape[0], 1), block):
            out = assemble(table, plan, spec, rows[lo : lo + block], sources=planned.sources)
            if writer is None:
                writer = pa.ipc.new_stream(sink, out.schema)
            writer.write_table(out)
        assert writer is not None
        writer.close()


# ---------------------------------------------------------------------------
# IterableDataset: windows through the stream packer, as the Parquet path.


def _pack_iterable(dataset: datasets.IterableDataset, o: PackOptions) -> datasets.IterableDataset:
    schema = _schema_of(dataset)
    spec = o.spec(schema)
    # Every option is checked now, not at the first iteration; the empty
    # output gives the packed rows' features.
    empty = o.packer(spec, seed=o.seed).finish()
    num_shards = _input_shards(dataset)
    # One packed shard per input shard, each packed on its own: ``datasets``
    # hands whole shards to DataLoader workers and to ranks
    # (split_dataset_by_node), so each packs only the input shards it reads.
    # Arrow tables, not Python rows, so that formatting (numpy, torch) works
    # on Arrow batches.
    tables = ArrowExamplesIterable(
        _packed_tables,
        kwargs=dict(
            shard=list(range(num_shards)),
            num_shards=num_shards,
            source=dataset,
            options=o,
            spec=spec,
        ),
    )
    features = datasets.Features.from_arrow_schema(empty.schema)
    return datasets.IterableDataset(
        tables, info=datasets.DatasetInfo(features=features), split=dataset.split
    )


def _input_shards(dataset: datasets.IterableDataset) -> int:
    """The shards the input is packed in: its own, or one (the whole stream,
    as this rank sees it) when it was already split by node."""
    if getattr(dataset, "_distributed", None) is not None:
        return 1
    return max(1, int(dataset.num_shards))


def _schema_of(dataset: datasets.IterableDataset) -> pa.Schema:
    """The Arrow schema of an IterableDataset's rows: from its features, or
    from its first batch when they are unknown (e.g. after ``map``)."""
    if dataset.features is not None:
        return dataset.features.arrow_schema
    first = next(_batches(dataset, list(dataset.column_names or []) or None, None), None)
    unknown = [] if first is None else [f.name for f in first.schema if _holds_nulls_only(f.type)]
    if first is None or unknown:
        what = "no rows" if first is None else f"only empty lists in column(s) {unknown} at first"
        raise ValueError(
            f"the IterableDataset has no features and {what}, so its token types are "
            f"unknown; give it features first (e.g. .cast(features))"
        )
    return first.schema


def _batches(
    dataset: datasets.IterableDataset, columns: list[str] | None, schema: pa.Schema | None
) -> Iterator[pa.Table]:
    """The rows of ``dataset`` as Arrow tables of ``columns`` typed by ``schema``
    (inferred from each batch when None), ``_READ_ROWS`` at a time.

    A dataset backed by Arrow data is read as Arrow. One whose rows are
    Python objects (a generator, a ``map``) is read as Python lists, each
    batch converted with the known types: ``datasets`` itself would convert
    them row by row and fail to join an empty list (``list<null>``) with the
    rows around it.
    """
    if columns is not None:
        dataset = dataset.select_columns(columns)
    if getattr(getattr(dataset, "_ex_iterable", None), "iter_arrow", None) is not None:
        for table in dataset.with_format("arrow").iter(_READ_ROWS):
            yield table if schema is None or table.schema.equals(schema) else table.cast(schema)
        return
    for batch in dataset.with_format(None).iter(_READ_ROWS):
        yield pa.Table.from_pydict(batch, schema=schema)


def _holds_nulls_only(t: pa.DataType) -> bool:
    """A list type whose values have no type yet (inferred from empty lists)."""
    return is_list_type(t) and pa.types.is_null(t.value_type)


def _packed_tables(
    shard: list[int],
    num_shards: int,
    source: datasets.IterableDataset,
    options: PackOptions,
    spec: OutputSpec,
) -> Iterator[tuple[str, pa.Table]]:
    """The packed rows of input shards ``shard`` (of ``num_shards``), each
    shard packed on its own, window by window, as Arrow tables."""
    for k in shard:
        part = source if num_shards == 1 else source.shard(num_shards, k, contiguous=True)
        stream = options.packer(spec, seed=options.seed)
        tables = _batches(part, spec.schema.names, spec.schema)
        for w, (window, last) in enumerate(windows(tables, spec, options.window_tokens)):
            out = stream.step(window, last=last)
            if out.num_rows:
                yield f"{k}_{w}", out
