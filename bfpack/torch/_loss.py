"""The loss of packed batches: the global target count, and per-piece weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._batch import IGNORE_INDEX
from .._optional import requires
from .._validate import as_choice

with requires("torch", needed_by="bfpack.torch"):
    import torch
    import torch.distributed as dist

#: What :func:`global_num_items` can add up: the target count, or the weights.
_COUNT_KEYS = ("num_items_in_batch", "loss_weights")


def global_num_items(
    batches: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    key: str = "num_items_in_batch",
    group: Any = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The loss divisor of one optimizer step: summed over micro-batches and ranks.

    With gradient accumulation, or data parallelism, each micro-batch's loss
    must be its *summed* token loss divided by the number of targets of the
    whole step (every micro-batch of every rank), not by its own: then the
    gradients add up to the gradient of the mean loss over all the step's
    tokens, whatever the number of targets of each micro-batch.

    Parameters
    ----------
    batches : mapping or sequence of mappings
        The micro-batches of one optimizer step on this rank
        (:class:`PackedCollator` output), or one batch.
    key : {"num_items_in_batch", "loss_weights"}
        ``"num_items_in_batch"``: add up each batch's ``num_items_in_batch``
        (or, without it, count its ``labels[..., 1:]`` that are not
        ``IGNORE_INDEX``, as the HF ``Trainer`` does). ``"loss_weights"``:
        add up each batch's ``loss_weights`` (``PackedCollator(
        loss_weights="piece")``), the divisor of
        :func:`weighted_causal_lm_loss`: the number of pieces with a target.
    group : torch.distributed.ProcessGroup, optional
        The ranks to add up over (default: the whole world). Ignored unless
        ``torch.distributed`` is initialised.
    device : torch.device or str, optional
        Where the result lives, and so where the all-reduce runs (default:
        the current CUDA device under the NCCL backend, else the CPU).

    Returns
    -------
    torch.Tensor
        0-dim: int64 for the count, float64 for the weights; the same on
        every rank (a collective call: every rank of ``group`` must make it).

    Notes
    -----
    The loss of a micro-batch is then ``model(**{**batch,
    "num_items_in_batch": n}).loss`` (transformers' causal LMs sum the
    token losses and divide by it) or ``weighted_causal_lm_loss(logits,
    labels, weights, n)``. ``DistributedDataParallel`` *averages* the
    gradients over the ranks: multiply each rank's loss by the world size
    (as the HF ``Trainer`` does with ``average_tokens_across_devices``), so
    that the averaged gradient is that of the loss over all ranks' tokens.
    If no label counts anywhere the result is 0 and the losses are NaN:
    skip such a step.

    Examples
    --------
    >>> micro = [next(batches) for _ in range(accumulation)]  # doctest: +SKIP
    >>> n = global_num_items(micro)  # doctest: +SKIP
    >>> for batch in micro:  # doctest: +SKIP
    ...     loss = model(**{**batch, "num_items_in_batch": n}).loss
    ...     (loss * world_size).backward()
    >>> optimizer.step()  # doctest: +SKIP
    """
    key = as_choice(key, "key", _COUNT_KEYS)
    if isinstance(batches, Mapping):
        batches = [batches]
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Sequence):
        raise TypeError(
            f"batches must be a batch (a dict) or a list of batches, got {type(batches).__name__}"
        )
    if not batches:
        raise ValueError("batches is empty: pass the micro-batches of one optimizer step")
    total: int | float = 0 if key == "num_items_in_batch" else 0.0
    for i, batch in enumerate(batches):
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch {i} is a {type(batch).__name__}, not a dict of tensors")
        total += _local_items(batch, i, key)
    distributed = dist.is_available() and dist.is_initialized()
    if device is None:
        nccl = distributed and dist.get_backend(group) == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    dtype = torch.int64 if key == "num_items_in_batch" else torch.float64
    out = torch.tensor(total, dtype=dtype, device=device)
    if distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


def _local_items(batch: Mapping[str, Any], index: int, key: str) -> int | float:
    """What batch number ``index`` adds to :func:`global_num_items` under ``key``."""
    if key == "loss_weights":
        if "loss_weights" not in batch:
            raise ValueError(
                f"batch {index} has no 'loss_weights'; build the batches with "
                f"PackedCollator(loss_weights='piece')"
            )
        return float(torch.as_tensor(batch["loss_weights"]).double().sum())
    if "num_items_in_batch" in batch:
        return int(batch["num_items_in_batch"])
    if "labels" in batch:
        labels = torch.as_tensor(batch["labels"])
        return int((labels[..., 1:] != IGNORE_INDEX).sum())
    raise ValueError(
        f"batch {index} has neither 'num_items_in_batch' nor 'labels'; pass the "
        f"batches PackedCollator returns"
    )


def weighted_causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    num_items_in_batch: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """A causal LM's next-token loss with a weight per token.

    ``sum(w[t] * CE(logits[t - 1], labels[t])) / num_items_in_batch``, over
    the labels ``t`` that are not ``IGNORE_INDEX``, shifted as transformers'
    causal LM loss (the logits at ``t - 1`` predict the label at ``t``),
    computed in float32.

    Parameters
    ----------
    logits : torch.Tensor
        ``[..., L, V]``, e.g. ``model(**batch).logits``.
    labels : torch.Tensor
        ``[..., L]``, the batch's ``labels``.
    weights : torch.Tensor
        ``[..., L]``, the weight of each label, e.g. the batch's
        ``loss_weights`` (``PackedCollator(loss_weights="piece")``).
    num_items_in_batch : torch.Tensor or float, optional
        The divisor (default: the sum of the weights of the labels that
        count). For gradient accumulation or several ranks, pass
        ``global_num_items(micro_batches, key="loss_weights")``.

    Returns
    -------
    torch.Tensor
        The 0-dim loss. With ``PackedCollator(loss_weights="piece")`` and the
        default divisor: the mean over the batch's pieces (those with a
        target) of each piece's mean token loss.

    Examples
    --------
    >>> weights = batch.pop("loss_weights")  # doctest: +SKIP
    >>> logits = model(**batch).logits  # doctest: +SKIP
    >>> loss = weighted_causal_lm_loss(logits, batch["labels"], weights)  # doctest: +SKIP
    """
    for name, value in (("logits", logits), ("labels", labels), ("weights", weights)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if logits.dim() < 2 or logits.shape[:-1] != labels.shape or weights.shape != labels.shape:
        raise ValueError(
            f"logits must be [..., L, V] and labels and weights [..., L]; got logits "
            f"{tuple(logits.shape)}, labels {tuple(labels.shape)}, weights "
            f"{tuple(weights.shape)}"
        )
    if not weights.is_floating_point():
        raise TypeError(f"weights must be floating point, got {weights.dtype}")
    targets = labels[..., 1:].reshape(-1).to(logits.device)
    per_token = torch.nn.functional.cross_entropy(
        logits[..., :-1, :].reshape(-1, logits.shape[-1]).float(),
        targets,
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    counted = targets != IGNORE_INDEX
    w = weights[..., 1:].reshape(-1).to(per_token.device, torch.float32)
    total = (per_token * w * counted).sum()
    divisor = w[counted].sum() if num_items_in_batch is None else num_items_in_batch
    if isinstance(divisor, torch.Tensor):
        divisor = divisor.to(total.device)
    return total / divisor
