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
  (``bfpack pack`` / :func:`bfpack.pack_parquet` output), memory-mapped
  from Arrow copies kept outside the directory, and pinned to the run it
  opened.
- :func:`global_num_items` and :func:`weighted_causal_lm_loss`: the loss of
  packed batches divided by the targets of the whole optimizer step (every
  micro-batch, every rank), optionally with every piece weighted equally.
- :func:`check_isolation` runs every piece of a packed batch alone through
  your model and compares the logits: the proof, before a long run, that
  the model, its config and the collator keep the documents apart.
- :func:`document_block_mask` is FlexAttention's ``BlockMask`` of a packed
  batch, from its ``document_ids``.
"""

from .._sampler import BalancedSampler
from ._collator import IGNORE_INDEX, LAYOUTS, LOSS_WEIGHTS, PackedCollator
from ._dataset import CACHE_ENV, PackedDataset, cache_root
from ._flex import document_block_mask, document_mask_mod
from ._isolation import IsolationError, IsolationReport, Piece, check_isolation
from ._loss import global_num_items, weighted_causal_lm_loss

__all__ = [
    "CACHE_ENV",
    "IGNORE_INDEX",
    "LAYOUTS",
    "LOSS_WEIGHTS",
    "BalancedSampler",
    "IsolationError",
    "IsolationReport",
    "PackedCollator",
    "PackedDataset",
    "Piece",
    "cache_root",
    "global_num_items",
    "weighted_causal_lm_loss",
    "check_isolation",
    "document_block_mask",
    "document_mask_mod",
]
