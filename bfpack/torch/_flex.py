"""FlexAttention: the document mask of a packed batch, from its ``document_ids``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._optional import requires
from .._validate import as_int

with requires("torch", needed_by="bfpack.torch"):
    import torch


def document_mask_mod(document_ids: torch.Tensor) -> Callable[..., torch.Tensor]:
    """FlexAttention's ``mask_mod`` for packed rows: causal, and inside each piece.

    Parameters
    ----------
    document_ids : torch.Tensor
        The piece of every token, shape ``[B, T]`` (integers), as
        ``PackedCollator(document_ids=True)`` gives it; a negative id marks
        padding, which attends to itself only (as in the collator's 4-D mask).

    Returns
    -------
    callable
        ``mask_mod(b, h, q_idx, kv_idx)``: True where query ``q_idx`` of row
        ``b`` may attend to key ``kv_idx``.
    """
    ids = _as_document_ids(document_ids)

    def mask_mod(
        b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        q_doc = ids[b, q_idx]
        same = (q_doc == ids[b, kv_idx]) & (q_doc >= 0)
        return (q_idx >= kv_idx) & (same | (q_idx == kv_idx))

    return mask_mod


def document_block_mask(
    document_ids: torch.Tensor, *, block_size: int = 128, device: Any = None
) -> Any:
    """FlexAttention's ``BlockMask`` for packed rows: causal, and inside each piece.

    Parameters
    ----------
    document_ids : torch.Tensor
        The piece of every token, shape ``[B, T]``, as
        ``PackedCollator(document_ids=True)`` gives it (padding-free: ``[1,
        T]``, pieces numbered across the batch; padded: numbered within each
        row, -1 for padding, which attends to itself only).
    block_size : int
        FlexAttention's block size (its default, 128).
    device : torch.device or str, optional
        Where to build the mask (default: ``document_ids``' device).

    Returns
    -------
    torch.nn.attention.flex_attention.BlockMask
        For ``flex_attention(q, k, v, block_mask=...)``, with ``B`` rows and
        one mask for every head.

    Examples
    --------
    >>> batch = PackedCollator(document_ids=True)(rows)           # doctest: +SKIP
    >>> mask = document_block_mask(batch.pop("document_ids"))     # doctest: +SKIP
    """
    from torch.nn.attention.flex_attention import create_block_mask

    ids = _as_document_ids(document_ids)
    block = as_int(block_size, "block_size", lo=1, unit="tokens")
    rows, length = ids.shape
    return create_block_mask(
        document_mask_mod(ids),
        B=rows,
        H=None,
        Q_LEN=length,
        KV_LEN=length,
        device=ids.device if device is None else device,
        BLOCK_SIZE=block,
    )


def _as_document_ids(document_ids: Any) -> torch.Tensor:
    if not isinstance(document_ids, torch.Tensor):
        raise TypeError(
            f"document_ids must be a tensor of shape [B, T], got {type(document_ids).__name__}; "
            f"PackedCollator(document_ids=True) gives it"
        )
    if document_ids.ndim != 2 or document_ids.dtype.is_floating_point or document_ids.is_complex():
        raise ValueError(
            f"document_ids must be an integer tensor of shape [B, T], got "
            f"{document_ids.dtype} of shape {tuple(document_ids.shape)}"
        )
    return document_ids
