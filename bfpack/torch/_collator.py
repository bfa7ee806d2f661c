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
        provenance: bool = False,
    ) -> None:
        self.layout = as_choice(layout, "layout", LAYOUTS)
        self.seq_len = as_optional_int(seq_len, "seq_len", lo=1, unit="tokens")
        # Every token goes into an int64 tensor: a wider id would fail at the first batch.
        self.pad_token_id = as_int(pad_token_id, "pad_token_id", lo=-(2**63), hi=2**63 - 1)
        self.attention_mask = as_bool(attention_mask, "attention_mask")
        self.document_ids = as_bool(document_ids, "document_ids")
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
            return out | extra
        grid = _batch.padded(gathered, self.seq_len, self.pad_token_id)
        out = {key: torch.from_numpy(grid[key]) for key in ("input_ids", "labels", "position_ids")}
        if self.attention_mask:
            out["attention_mask"] = self._mask(gathered, grid["input_ids"].shape[1])
        if self.document_ids:
            out["document_ids"] = torch.from_numpy(grid["document_ids"])
        return out | extra

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
        if self.provenance:
            options.append("provenance=True")
        return f"PackedCollator({', '.join(options)})"
