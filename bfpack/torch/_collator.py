"""The collator: packed rows to the dict of tensors a causal language model takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _batch
from .._optional import requires
from .._validate import as_bool, as_choice, as_floating_dtype, as_int, as_optional_int

with requires("torch", needed_by="bfpack.torch"):
    import torch

#: The label of tokens that carry no target (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = _batch.IGNORE_INDEX
#: The batch layouts of :class:`PackedCollator`.
LAYOUTS = ("padding_free", "padded")
#: The units :class:`PackedCollator`'s ``loss_weights`` can weight equally.
LOSS_WEIGHTS = ("piece",)


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
        Padded layout: the token of padding slots (an int64).
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
    num_items_in_batch : bool
        Add ``num_items_in_batch``: the number of labels that count (not
        ``IGNORE_INDEX``, after the piece starts and padding are masked),
        a 0-dim int64 tensor, as transformers' causal LM losses take it
        (they then divide the summed token loss by it). Under the HF
        ``Trainer`` its own count over the accumulated micro-batches and
        devices replaces it. Turn it off for a model whose ``forward``
        takes no ``**kwargs``.
    loss_weights : {None, "piece"}
        ``"piece"``: add ``loss_weights``, a float32 tensor shaped like
        ``labels``: ``1 / n`` at each label that counts, ``n`` the labels
        that count in its piece, 0 elsewhere, so that every piece weighs
        the same in :func:`weighted_causal_lm_loss`. The unit is the piece:
        a document that fits in a row is one piece; a document split across
        rows gives one piece per row. transformers models silently ignore
        this key: pop it before ``model(**batch)`` and compute the loss
        with :func:`weighted_causal_lm_loss`.
    disable_cache : bool
        Add ``use_cache=False`` (default): with a cache, transformers'
        SDPA and eager attention ignore the restarting ``position_ids`` and
        let documents attend to each other, in ``eval()`` and in ``train()``
        alike, so ``model(**batch)`` turns it off. ``False`` leaves the key
        out, for a model whose forward takes no ``use_cache``.
    provenance : bool
        Add ``doc_index`` and ``doc_offset`` (int64, shape ``[P]``): the
        rows' provenance columns (packed with ``provenance=True``), one value
        per piece of the batch, row after row (the pieces of
        ``cu_seq_lens_q``, or of ``document_ids``). Models do not take
        these keys: pop them before ``model(**batch)``.

    Notes
    -----
    Every row is a mapping with ``input_ids`` and ``seq_lengths`` (lists,
    numpy arrays or tensors), as :func:`bfpack.hf.pack_dataset`,
    :class:`PackedDataset` and :func:`bfpack.pack_table` give them, and
    optionally ``labels`` aligned with ``input_ids`` (default: the
    ``input_ids``); any other key (``position_ids``, a packed
    ``attention_mask``) is ignored: everything follows from ``seq_lengths``.
    Slots after a row's pieces (``pad_value`` padding) are dropped. Tokens
    and labels become int64: a uint64 id of ``2**63`` or more is an error,
    never wrapped to a negative id.

    The padding-free batch holds ``input_ids``, ``labels`` and
    ``position_ids`` of shape ``[1, T]`` (int64), ``cu_seq_lens_q`` and
    ``cu_seq_lens_k`` (int32, from 0) and ``max_length_q``,
    ``max_length_k`` (int), and no ``attention_mask``. The padded batch
    holds ``input_ids``, ``labels`` and ``position_ids`` of shape
    ``[B, seq_len]``. In both, positions restart at 0 at every piece and
    the first token of every piece (and padding) is labelled
    ``IGNORE_INDEX`` (-100): a causal LM's shifted loss never asks a
    document to predict the next one. Both hold ``num_items_in_batch``
    (unless turned off), the number of those labels that are not -100.

    Both also hold ``use_cache=False`` (see ``disable_cache``).

    With transformers, pass the batch as it is, ``model(**batch)``: SDPA and
    eager attention then build the block-diagonal mask from the restarting
    ``position_ids``, which they do only without an attention mask and
    without a cache (flash-attention reads ``cu_seq_lens_q/k``).
    :func:`check_isolation` proves it for your model.

    Examples
    --------
    >>> loader = torch.utils.data.DataLoader(                   # doctest: +SKIP
    ...     packed, batch_size=8, shuffle=True, collate_fn=PackedCollator())
    >>> for batch in loader:                                     # doctest: +SKIP
    ...     loss = model(**batch).loss
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
        num_items_in_batch: bool = True,
        loss_weights: str | None = None,
        disable_cache: bool = True,
        provenance: bool = False,
    ) -> None:
        self.layout = as_choice(layout, "layout", LAYOUTS)
        self.seq_len = as_optional_int(seq_len, "seq_len", lo=1, unit="tokens")
        # Every token goes into an int64 tensor: a wider id would fail at the first batch.
        self.pad_token_id = as_int(pad_token_id, "pad_token_id", lo=-(2**63), hi=2**63 - 1)
        self.attention_mask = as_bool(attention_mask, "attention_mask")
        self.document_ids = as_bool(document_ids, "document_ids")
        self.num_items_in_batch = as_bool(num_items_in_batch, "num_items_in_batch")
        self.loss_weights = (
            None if loss_weights is None else as_choice(loss_weights, "loss_weights", LOSS_WEIGHTS)
        )
        self.disable_cache = as_bool(disable_cache, "disable_cache")
        self.provenance = as_bool(provenance, "provenance")
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
        keys = ("doc_index", "doc_offset") if self.provenance else ()
        extra = {key: torch.from_numpy(_batch.piece_values(rows, key)) for key in keys}
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
            out.update(extra)
            self._add_loss_keys(out, gathered, None)
            return self._model_options(out)
        grid = _batch.padded(gathered, self.seq_len, self.pad_token_id)
        out = {key: torch.from_numpy(grid[key]) for key in ("input_ids", "labels", "position_ids")}
        if self.attention_mask:
            out["attention_mask"] = self._mask(gathered, grid["input_ids"].shape[1])
        if self.document_ids:
            out["document_ids"] = torch.from_numpy(grid["document_ids"])
        out.update(extra)
        self._add_loss_keys(out, gathered, grid["input_ids"].shape[1])
        return self._model_options(out)

    def _model_options(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.disable_cache:
            batch["use_cache"] = False
        return batch

    def _add_loss_keys(self, out: dict[str, Any], rows: _batch.Rows, length: int | None) -> None:
        """``num_items_in_batch`` and ``loss_weights``, as asked (``length``: the
        padded layout's row length, None for padding-free)."""
        if self.num_items_in_batch:
            count = _batch.num_targets(out["labels"].numpy())
            out["num_items_in_batch"] = torch.tensor(count, dtype=torch.int64)
        if self.loss_weights is not None:
            weights = _batch.piece_weights(_batch.piece_labels(rows), rows.seq_lengths)
            grid = weights[None] if length is None else _batch.padded_like(rows, weights, length, 0)
            out["loss_weights"] = torch.from_numpy(grid)

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
        if not self.num_items_in_batch:
            options.append("num_items_in_batch=False")
        if self.loss_weights is not None:
            options.append(f"loss_weights={self.loss_weights!r}")
        if not self.disable_cache:
            options.append("disable_cache=False")
        if self.provenance:
            options.append("provenance=True")
        return f"PackedCollator({', '.join(options)})"
