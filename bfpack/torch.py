"""PyTorch: training batches of packed rows, and a dataset over packed shards.

``pip install 'bfpack[torch]'``. Imported only when used (``import bfpack``
does not import torch). This module reads packed rows; it never packs.

- :class:`PackedCollator` turns a list of packed rows into the dict of
  tensors a causal language model takes, with attention and targets kept
  inside each piece: the padding-free layout (one flattened sequence,
  positions restarting at every piece, flash-attention's ``cu_seq_lens``)
  or the padded layout (``[B, seq_len]``, with a block-diagonal causal mask
  on request).
- :class:`PackedDataset` is a map-style dataset over a packed directory
  (``bfpack pack`` / :func:`bfpack.pack_parquet` output), memory-mapped.
"""

from __future__ import annotations

import json
import operator
import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from . import _batch
from ._sampler import BalancedSampler
from ._validate import (
    as_bool,
    as_choice,
    as_floating_dtype,
    as_int,
    as_optional_int,
    as_optional_path,
    as_path,
    is_list_type,
)
from .parquet.manifest import MANIFEST
from .table import SEQ_LENGTHS

__all__ = ["IGNORE_INDEX", "LAYOUTS", "BalancedSampler", "PackedCollator", "PackedDataset"]

#: The label of tokens that carry no target (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = _batch.IGNORE_INDEX
#: The batch layouts of :class:`PackedCollator`.
LAYOUTS = ("padding_free", "padded")


class PackedCollator:
    """A ``collate_fn`` for packed rows: attention and targets stay inside each piece.

    Parameters
    ----------
    layout : {"padding_free", "padded"}
        ``"padding_free"``: the rows of a batch flattened into one sequence
        of ``T`` tokens, as transformers' padding-free training and
        flash-attention's varlen kernels take it. ``"padded"``: one row per
        packed row, padded to ``seq_len``.
    seq_len : int, optional
        Padded layout: the row length (default: the longest row of each
        batch). A row with more tokens is an error.
    pad_token_id : int
        Padded layout: the token of padding slots.
    attention_mask : bool
        Padded layout: add ``attention_mask``, the 4-D block-diagonal causal
        mask ``[B, 1, seq_len, seq_len]`` that SDPA and eager attention take
        (additive: 0 where a token may attend, the dtype's minimum where
        not; a padding slot attends to itself only). It costs
        ``B * seq_len**2`` values: for long rows prefer ``position_ids``
        alone, or flex attention with ``document_ids``.
    mask_dtype : torch.dtype, optional
        The mask's dtype: the model's (default ``torch.float32``).
    document_ids : bool
        Add ``document_ids``: the piece of each token (padding-free: numbered
        across the batch; padded: within each row, -1 for padding), as
        FlexAttention's document masking takes it. Models do not take this
        key, so it is left out unless asked.

    Notes
    -----
    Every row is a mapping with ``input_ids`` and ``seq_lengths`` (lists,
    numpy arrays or tensors), as :func:`bfpack.hf.pack_dataset`,
    :class:`PackedDataset` and :func:`bfpack.pack_table` give them, and
    optionally ``labels`` aligned with ``input_ids`` (default: the
    ``input_ids``); any other key (``position_ids``, a packed
    ``attention_mask``) is ignored: everything follows from ``seq_lengths``.
    Slots after a row's pieces (``pad_value`` padding) are dropped.

    The padding-free batch holds ``input_ids``, ``labels`` and
    ``position_ids`` of shape ``[1, T]`` (int64), ``cu_seq_lens_q`` and
    ``cu_seq_lens_k`` (int32, from 0) and ``max_length_q``,
    ``max_length_k`` (int), and no ``attention_mask``. The padded batch
    holds ``input_ids``, ``labels`` and ``position_ids`` of shape
    ``[B, seq_len]``. In both, positions restart at 0 at every piece and
    the first token of every piece (and padding) is labelled
    ``IGNORE_INDEX`` (-100): a causal LM's shifted loss never asks a
    document to predict the next one.

    With transformers, pass the batch as it is, ``model(**batch)``, and with
    ``use_cache=False`` when the batch has no 4-D mask: SDPA and eager
    attention then build the block-diagonal mask from the restarting
    ``position_ids``, which they do only without an attention mask and
    without a cache (flash-attention reads ``cu_seq_lens_q/k``).

    Examples
    --------
    >>> loader = torch.utils.data.DataLoader(                   # doctest: +SKIP
    ...     packed, batch_size=8, shuffle=True, collate_fn=PackedCollator())
    >>> for batch in loader:                                     # doctest: +SKIP
    ...     loss = model(**batch, use_cache=False).loss
    """

    def __init__(
        self,
        layout: str = "padding_free",
        *,
        seq_len: int | None = None,
        pad_token_id: int = 0,
        attention_mask: bool = False,
        mask_dtype: torch.dtype | None = None,
        document_ids: bool = False,
    ) -> None:
        self.layout = as_choice(layout, "layout", LAYOUTS)
        self.seq_len = as_optional_int(seq_len, "seq_len", lo=1, unit="tokens")
        self.pad_token_id = as_int(pad_token_id, "pad_token_id")
        self.attention_mask = as_bool(attention_mask, "attention_mask")
        self.document_ids = as_bool(document_ids, "document_ids")
        if mask_dtype is not None and not self.attention_mask:
            raise ValueError("mask_dtype applies with attention_mask=True")
        self.mask_dtype = (
            torch.float32
            if mask_dtype is None
            else as_floating_dtype(mask_dtype, "mask_dtype", torch.dtype)
        )
        if self.layout == "padding_free":
            if self.attention_mask:
                raise ValueError(
                    "a padding-free batch has no attention mask: given one, transformers "
                    "ignores the restarting position_ids and lets every token attend "
                    "across pieces; use layout='padded' for the 4-D mask"
                )
            if self.seq_len is not None:
                raise ValueError(
                    "seq_len applies to layout='padded'; a padding-free batch is as "
                    "long as its tokens"
                )

    def __call__(self, rows: Sequence[Any]) -> dict[str, Any]:
        """The batch of the packed rows ``rows`` (see the class notes)."""
        gathered = _batch.gather_rows(rows)
        if self.layout == "padding_free":
            flat = _batch.padding_free(gathered)
            out: dict[str, Any] = {
                key: torch.from_numpy(flat[key]) for key in ("input_ids", "labels", "position_ids")
            }
            cu = torch.from_numpy(flat["cu_seqlens"])
            out.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu)
            out.update(max_length_q=flat["max_seqlen"], max_length_k=flat["max_seqlen"])
            if self.document_ids:
                out["document_ids"] = torch.from_numpy(flat["document_ids"])
            return out
        grid = _batch.padded(gathered, self.seq_len, self.pad_token_id)
        out = {key: torch.from_numpy(grid[key]) for key in ("input_ids", "labels", "position_ids")}
        if self.attention_mask:
            out["attention_mask"] = self._mask(gathered, grid["input_ids"].shape[1])
        if self.document_ids:
            out["document_ids"] = torch.from_numpy(grid["document_ids"])
        return out

    def _mask(self, rows: _batch.Rows, length: int) -> torch.Tensor:
        """The additive block-diagonal causal mask ``[B, 1, length, length]``."""
        low = torch.finfo(self.mask_dtype).min
        mask = torch.full((rows.row_tokens.shape[0], 1, length, length), low, dtype=self.mask_dtype)
        # A piece of n tokens is the top-left n x n corner of one causal block.
        causal = torch.full((length, length), low, dtype=self.mask_dtype).triu_(1)
        for b, start, n in zip(*(x.tolist() for x in _batch.piece_blocks(rows))):
            mask[b, 0, start : start + n, start : start + n] = causal[:n, :n]
        for b, used in enumerate(rows.row_tokens.tolist()):
            pads = torch.arange(used, length)
            mask[b, 0, pads, pads] = 0  # a padding slot attends to itself: no empty row
        return mask

    def __repr__(self) -> str:
        options = [f"layout={self.layout!r}"]
        if self.layout == "padded":
            options += [f"seq_len={self.seq_len}", f"pad_token_id={self.pad_token_id}"]
            if self.attention_mask:
                options.append(f"attention_mask=True, mask_dtype={self.mask_dtype}")
        if self.document_ids:
            options.append("document_ids=True")
        return f"PackedCollator({', '.join(options)})"


# ---------------------------------------------------------------------------
# A map-style dataset over packed shards.

#: Where :class:`PackedDataset` keeps its Arrow copies by default, inside the
#: packed directory (hidden, so Parquet readers of the directory skip it).
CACHE_DIR = ".arrow-cache"
#: Schema metadata key of an Arrow copy: the size and mtime of its shard.
_SOURCE_KEY = b"bfpack.source"
#: Rows per record batch of an Arrow copy.
_BATCH_ROWS = 1024


class PackedDataset(Dataset):
    """A map-style dataset over a packed directory, memory-mapped.

    Parameters
    ----------
    path : path
        A directory of packed Parquet shards, as ``bfpack pack`` writes it
        (shards in the order of its manifest ``.bfpack.json``; without one,
        every ``*.parquet`` file in name order).
    columns : list of str, optional
        The columns each row holds (default: all). ``seq_lengths`` is always
        kept: :class:`PackedCollator` needs it.
    cache_dir : path, optional
        Where the Arrow copies of the shards go (default:
        ``path/.arrow-cache``, which readers of ``path`` as a Parquet dataset
        skip).

    Notes
    -----
    Parquet is compressed and cannot be read a row at a time, so each shard
    is copied once into an uncompressed Arrow file, which is then mapped
    into memory: a row is a zero-copy numpy view of the mapped file, found
    by a binary search over the record batches, and the process's memory
    does not grow with the dataset (the operating system pages the file in
    and out). A copy is made again only when its shard changes (size or
    modification time); copies are written under a temporary name and
    renamed, so processes that open the dataset at once (ranks, workers)
    never read a torn one.

    Rows are dicts of read-only numpy arrays, one per column. The dataset
    pickles without its data (a DataLoader worker or another rank maps the
    files again), holds no iteration state, and so works with any sampler:
    ``DistributedSampler``, or a sampler that resumes from a step.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.path = os.path.abspath(as_path(path, "path"))
        if not os.path.isdir(self.path):
            raise NotADirectoryError(
                f"{self.path} is not a directory; PackedDataset reads the output "
                f"directory of bfpack pack (or pack_parquet)"
            )
        cache = as_optional_path(cache_dir, "cache_dir")
        self.cache_dir = os.path.abspath(cache or os.path.join(self.path, CACHE_DIR))
        self.files = [_arrow_copy(shard, self.cache_dir) for shard in _shards(self.path)]
        schema, batch_rows = _layout(self.files)
        self.columns = _packed_columns(schema, columns, self.path)
        self._starts = np.concatenate([[0], np.cumsum(batch_rows)]).astype(np.int64)
        self._batches: list[dict[str, tuple[np.ndarray, np.ndarray]]] | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {index} is out of range for a dataset of {n} rows")
        if self._batches is None:
            self._batches = _map_batches(self.files, self.columns)
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = i - int(self._starts[b])
        return {
            name: values[offsets[j] : offsets[j + 1]]
            for name, (offsets, values) in self._batches[b].items()
        }

    def __getstate__(self) -> dict[str, Any]:
        # The mapped views stay behind; the next process maps the files anew.
        return {**self.__dict__, "_batches": None}

    def __repr__(self) -> str:
        return (
            f"PackedDataset({self.path!r}, rows={len(self)}, columns={list(self.columns)}, "
            f"shards={len(self.files)})"
        )


def _shards(path: str) -> list[str]:
    """The Parquet shards of a packed directory, in order."""
    manifest = os.path.join(path, MANIFEST)
    if os.path.exists(manifest):
        with open(manifest) as f:
            names = [s["file"] for s in json.load(f)["shards"]]
    else:
        names = sorted(n for n in os.listdir(path) if n.endswith(".parquet"))
    if not names:
        raise ValueError(f"{path} holds no Parquet shard; pass a directory that bfpack pack wrote")
    return [os.path.join(path, n) for n in names]


def _source_stamp(shard: str) -> bytes:
    st = os.stat(shard)
    return json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns}).encode()


def _arrow_copy(shard: str, cache_dir: str) -> str:
    """The Arrow file copy of ``shard`` in ``cache_dir``, made if missing or stale."""
    stamp = _source_stamp(shard)
    target = os.path.join(cache_dir, os.path.splitext(os.path.basename(shard))[0] + ".arrow")
    if _stamp_of(target) == stamp:
        return target
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the Arrow cache {cache_dir} ({exc.strerror}); pass a "
            f"writable cache_dir="
        ) from None
    tmp = f"{target}.tmp-{uuid.uuid4().hex}"
    try:
        parquet = pq.ParquetFile(shard)
        schema = parquet.schema_arrow.with_metadata({_SOURCE_KEY: stamp})
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
                writer.write_batch(batch)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def _stamp_of(path: str) -> bytes | None:
    """The source stamp an Arrow copy records; None if missing or unreadable."""
    try:
        with pa.memory_map(path) as source:
            metadata = pa.ipc.open_file(source).schema.metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    return metadata.get(_SOURCE_KEY)


def _layout(files: list[str]) -> tuple[pa.Schema, list[int]]:
    """The schema of the first file and the rows of every record batch of all."""
    schema = None
    rows = []
    for path in files:
        with pa.memory_map(path) as source:
            reader = pa.ipc.open_file(source)
            if schema is None:
                schema = reader.schema
            elif not reader.schema.equals(schema):
                raise ValueError(
                    f"{path} holds columns {reader.schema.names} of other types than the "
                    f"first shard; the shards of one packed directory share a schema"
                )
            rows += [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert schema is not None
    return schema, rows


def _packed_columns(schema: pa.Schema, columns: Any, path: str) -> tuple[str, ...]:
    if SEQ_LENGTHS not in schema.names:
        raise ValueError(
            f"{path} holds no {SEQ_LENGTHS!r} column (columns: {schema.names}); its rows "
            f"are not packed by bfpack"
        )
    if columns is None:
        names = list(schema.names)
    elif isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise TypeError(f"columns must be a list of column names, got {columns!r}")
    else:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"columns {missing} are not in {path} (its columns: {schema.names})")
        names = list(dict.fromkeys([*columns, SEQ_LENGTHS]))
    for name in names:
        if not is_list_type(schema.field(name).type):
            raise TypeError(
                f"column {name!r} of {path} is {schema.field(name).type}, not a list; "
                f"a packed directory holds list columns only"
            )
    return tuple(names)


def _map_batches(
    files: list[str], columns: Sequence[str]
) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per record batch of every file, ``(offsets, values)`` numpy views of each
    list column, over the memory-mapped files."""
    batches = []
    for path in files:
        reader = pa.ipc.open_file(pa.memory_map(path))
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            views = {}
            for name in columns:
                arr = batch.column(name)
                views[name] = (arr.offsets.to_numpy(), arr.values.to_numpy(zero_copy_only=True))
            batches.append(views)
    return batches
