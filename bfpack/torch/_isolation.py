"""The isolation check: does a model see each piece of a packed batch alone?

A packed batch is right for a model only if every piece's logits are the
ones the piece gets run on its own. Whether they are depends on the model's
attention implementation, its cache, the batch's keys and the collator, so
the check runs the model itself: the batch exactly as a training step
passes it (``model(**batch)``), then every piece alone, and compares.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._optional import requires
from .._validate import as_bool, as_optional_int

with requires("torch", needed_by="bfpack.torch"):
    import torch

#: Default tolerance on logits of float32 (and wider) models; 16-bit logits get 16x.
TOLERANCE = 1e-4
_HALF_TOLERANCE = 16 * TOLERANCE


class Piece(NamedTuple):
    """Where a piece sits in a batch."""

    row: int  # the batch row
    piece: int  # the piece's number within its row, from 0
    start: int  # its first slot in the row
    length: int  # its tokens


class IsolationError(AssertionError):
    """A packed batch lets a piece see another one (raised by
    :meth:`IsolationReport.raise_if_leaking` and ``check_isolation(strict=True)``)."""


class IsolationReport(NamedTuple):
    """What :func:`check_isolation` found.

    Attributes
    ----------
    errors : numpy.ndarray
        float64, one per checked piece: the largest absolute difference
        between the piece's logits in the packed batch and alone (``inf``
        where either is not finite).
    rows, pieces, starts, lengths : numpy.ndarray
        int64, one per checked piece: its batch row, its number within the
        row, its first slot in the row and its tokens.
    num_pieces : int
        The pieces the batch holds (more than were checked when capped).
    tolerance : float
        The largest error a piece may have and count as isolated.
    """

    errors: np.ndarray
    rows: np.ndarray
    pieces: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    num_pieces: int
    tolerance: float

    @property
    def max_abs_error(self) -> float:
        """The largest error over the checked pieces (0.0 for none)."""
        return float(self.errors.max()) if self.errors.shape[0] else 0.0

    @property
    def ok(self) -> bool:
        """Whether every checked piece is within the tolerance."""
        return bool(self.max_abs_error <= self.tolerance)

    @property
    def leaking(self) -> np.ndarray:
        """The positions (into ``errors``) of the pieces over the tolerance."""
        return np.flatnonzero(~(self.errors <= self.tolerance))

    @property
    def worst(self) -> Piece | None:
        """The piece with the largest error, or None when no piece was checked."""
        if not self.errors.shape[0]:
            return None
        i = int(np.argmax(np.where(np.isnan(self.errors), np.inf, self.errors)))
        return Piece(
            int(self.rows[i]), int(self.pieces[i]), int(self.starts[i]), int(self.lengths[i])
        )

    def raise_if_leaking(self) -> IsolationReport:
        """Raise :class:`IsolationError` naming the worst piece and the likely fixes.

        Returns the report itself when every checked piece is isolated.
        """
        if self.ok:
            return self
        worst = self.worst
        assert worst is not None  # not ok implies a checked piece
        raise IsolationError(
            f"{self.leaking.shape[0]} of {self.errors.shape[0]} checked pieces see other "
            f"documents: the worst, piece {worst.piece} of batch row {worst.row} (slots "
            f"{worst.start} to {worst.start + worst.length - 1}), differs from its logits "
            f"alone by {self.max_abs_error:.3g} (tolerance {self.tolerance:g}). Likely "
            f"fixes: pass use_cache=False (PackedCollator's batches carry it); give no "
            f"2-D attention_mask (an all-ones or tokenizer mask brings back attention "
            f"across documents): PackedCollator() gives none, PackedCollator('padded', "
            f"attention_mask=True) the 4-D one; build the batch with bfpack.torch."
            f"PackedCollator, not DataCollatorWithFlattening or "
            f"DataCollatorForLanguageModeling, which read a packed row as one document"
        )

    def __repr__(self) -> str:
        return (
            f"IsolationReport(ok={self.ok}, max_abs_error={self.max_abs_error:.3g}, "
            f"worst={self.worst}, checked={self.errors.shape[0]} of {self.num_pieces} "
            f"pieces, tolerance={self.tolerance:g})"
        )


def check_isolation(
    model: Any,
    batch: Mapping[str, Any],
    *,
    seq_lengths: Sequence[Any] | None = None,
    tolerance: float | None = None,
    max_pieces: int | None = 64,
    train: bool = False,
    strict: bool = False,
) -> IsolationReport:
    """Run every piece of a packed batch alone and compare its logits with the batch's.

    The first thing to run before training on packed rows: it proves that
    your model, its attention implementation and config, and your collator
    keep the packed documents apart. The batch goes through the model
    exactly as a training step passes it, ``model(**batch)``, so a mistake
    in the batch (an attention mask, a cache, a wrong collator) shows.

    Parameters
    ----------
    model : torch.nn.Module
        A causal language model whose output has ``logits`` (a transformers
        model) or is the logits tensor ``[B, T, V]`` or a tuple starting
        with it. Its modes (train or eval, module by module) are restored.
    batch : mapping
        The batch as your training step gives it to the model, with
        ``input_ids`` of shape ``[B, T]`` (a :class:`PackedCollator` batch,
        or another collator's).
    seq_lengths : sequence, optional
        The truth about the pieces: the packed rows the batch was made of
        (mappings with ``seq_lengths``) or their ``seq_lengths``, one per
        batch row; for a batch of one row that flattens several packed rows
        (padding-free), the packed rows in order. Pass them to catch a
        collator that loses the pieces (one that reads a packed row as one
        document). Default: the pieces as the batch carries them, from
        ``cu_seq_lens_q`` (padding-free), else from ``position_ids``
        restarting at 0 (trailing slots at position 0 that repeat the row's
        last token are taken for padding and skipped).
    tolerance : float, optional
        The largest absolute logit difference of an isolated piece. Default
        ``1e-4`` for float32 logits (a piece that sees another document
        differs by about 1, a correct batch by about 1e-6), ``1.6e-3`` for
        16-bit logits; raise it for low-precision kernels.
    max_pieces : int or None
        Check at most this many pieces, spread evenly over the batch (each
        costs one forward pass); ``None`` checks every piece.
    train : bool
        Run the batch's forward in ``train()`` mode, as a training step does
        (the pieces alone run in ``eval()`` mode). A model with dropout then
        differs by its dropout: give it a config with dropout 0 for the check.
    strict : bool
        Raise :class:`IsolationError` naming the worst piece and the likely
        fixes when a piece leaks (see :meth:`IsolationReport.raise_if_leaking`).

    Returns
    -------
    IsolationReport
        ``ok``, ``max_abs_error``, ``worst`` and the error of every checked piece.

    Examples
    --------
    >>> batch = PackedCollator()(rows)                             # doctest: +SKIP
    >>> check_isolation(model, batch).raise_if_leaking()           # doctest: +SKIP
    IsolationReport(ok=True, max_abs_error=7.15e-07, ...)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a causal language model), got {type(model).__name__}"
        )
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"batch must be a mapping of the model's inputs (what PackedCollator returns), "
            f"got {type(batch).__name__}"
        )
    ids = batch.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise ValueError(
            "batch must hold input_ids, a tensor of shape [B, T]; build it with "
            "bfpack.torch.PackedCollator()(rows)"
        )
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
            raise TypeError(f"tolerance must be a number, got {type(tolerance).__name__}")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance}")
    cap = as_optional_int(max_pieces, "max_pieces", lo=1, unit="pieces")
    train = as_bool(train, "train")
    strict = as_bool(strict, "strict")
    pieces = _pieces(batch, ids, seq_lengths)
    num_pieces = len(pieces)
    if cap is not None and num_pieces > cap:
        keep = np.unique(np.linspace(0, num_pieces - 1, cap).round().astype(np.int64))
        pieces = [pieces[i] for i in keep.tolist()]

    # A model whose forward takes no use_cache has no cache to turn off.
    solo_options = {"use_cache": False} if _takes(model, "use_cache") else {}
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad():
            model.train(train)
            packed = _logits(model(**batch))
            model.eval()
            errors = np.empty(len(pieces), dtype=np.float64)
            for k, piece in enumerate(pieces):
                alone = ids[piece.row, piece.start : piece.start + piece.length][None]
                solo = _logits(model(input_ids=alone, **solo_options))[0]
                got = packed[piece.row, piece.start : piece.start + piece.length]
                diff = (got.double() - solo.double()).abs().max()
                errors[k] = float(diff) if torch.isfinite(diff) else np.inf
    finally:
        for module, training in modes:  # as it was, a frozen submodule included
            module.training = training
    if tolerance is None:
        tolerance = _HALF_TOLERANCE if packed.element_size() < 4 else TOLERANCE
    report = IsolationReport(
        errors=errors,
        rows=np.array([p.row for p in pieces], dtype=np.int64),
        pieces=np.array([p.piece for p in pieces], dtype=np.int64),
        starts=np.array([p.start for p in pieces], dtype=np.int64),
        lengths=np.array([p.length for p in pieces], dtype=np.int64),
        num_pieces=num_pieces,
        tolerance=float(tolerance),
    )
    return report.raise_if_leaking() if strict else report


def _takes(model: torch.nn.Module, name: str) -> bool:
    """Whether the model's forward takes the keyword argument ``name``."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # no signature to read: assume a transformers model
        return True
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _logits(out: Any) -> torch.Tensor:
    """The logits ``[B, T, V]`` of a model's output."""
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise TypeError(
            "the model's output must have logits of shape [B, T, V] (a transformers "
            f"causal LM's output, or the tensor itself), got {type(out).__name__}"
        )
    return logits


def _pieces(
    batch: Mapping[str, Any], ids: torch.Tensor, seq_lengths: Sequence[Any] | None
) -> list[Piece]:
    """Every piece of the batch, row by row."""
    rows, width = ids.shape
    if seq_lengths is not None:
        lengths = _given_lengths(seq_lengths, rows)
    elif batch.get("cu_seq_lens_q") is not None:
        if rows != 1:
            raise ValueError(
                f"a batch with cu_seq_lens_q is padding-free, one row of T tokens; "
                f"input_ids has {rows} rows"
            )
        cu = torch.as_tensor(batch["cu_seq_lens_q"]).reshape(-1).tolist()
        lengths = [np.diff(np.array(cu, dtype=np.int64))]
    elif batch.get("position_ids") is not None:
        lengths = _from_positions(torch.as_tensor(batch["position_ids"]), ids)
    else:
        raise ValueError(
            "the batch has neither position_ids nor cu_seq_lens_q, so a model sees each "
            "of its rows as one document: pass seq_lengths= (the packed rows the batch "
            "was made of) to measure it, and build the batch with "
            "bfpack.torch.PackedCollator"
        )
    out = []
    for row, row_lengths in enumerate(lengths):
        if int(row_lengths.sum()) > width:
            raise ValueError(
                f"batch row {row}: its pieces add up to {int(row_lengths.sum())} tokens, "
                f"but input_ids holds {width} per row"
            )
        starts = np.cumsum(row_lengths) - row_lengths
        for index, (start, n) in enumerate(zip(starts.tolist(), row_lengths.tolist())):
            out.append(Piece(row, index, start, n))
    return out


def _given_lengths(seq_lengths: Sequence[Any], rows: int) -> list[np.ndarray]:
    if isinstance(seq_lengths, (str, bytes, Mapping)) or not isinstance(seq_lengths, Sequence):
        raise TypeError(
            "seq_lengths must be a list of the packed rows (or of their seq_lengths), "
            f"got {type(seq_lengths).__name__}"
        )
    lengths = []
    for i, item in enumerate(seq_lengths):
        value = item["seq_lengths"] if isinstance(item, Mapping) else item
        arr = np.asarray(value.tolist() if isinstance(value, torch.Tensor) else value)
        if arr.ndim != 1 or (arr.shape[0] and (arr.dtype.kind not in "iu" or arr.min() < 1)):
            raise ValueError(
                f"seq_lengths[{i}] must be a 1-D list of piece lengths >= 1, got {value!r}"
            )
        lengths.append(arr.astype(np.int64))
    if len(lengths) == rows:
        return lengths
    if rows == 1 and lengths:  # padding-free: the packed rows flattened into one
        return [np.concatenate(lengths)]
    raise ValueError(
        f"seq_lengths has {len(lengths)} rows but the batch {rows}; give one per batch row "
        f"(or, for a padding-free batch of one row, the packed rows it flattens)"
    )


def _from_positions(positions: torch.Tensor, ids: torch.Tensor) -> list[np.ndarray]:
    """Pieces from positions restarting at 0, trailing padding dropped."""
    if positions.ndim == 1:
        positions = positions[None]
    if positions.shape[-1] != ids.shape[1]:
        raise ValueError(
            f"position_ids has {positions.shape[-1]} slots per row, input_ids {ids.shape[1]}"
        )
    positions = positions.expand(ids.shape[0], -1)
    out = []
    for pos, row_ids in zip(positions.tolist(), ids.tolist()):
        starts = [i for i, p in enumerate(pos) if p == 0]
        if not starts or starts[0] != 0:
            starts = [0, *starts]
        # Padding (PackedCollator's padded layout) is a run of position-0 slots
        # holding the pad token at the row's end; a single such slot may be a
        # one-token document, and is checked (a padding slot alone is harmless).
        end = len(pos)
        while len(starts) > 1 and starts[-1] == end - 1 and starts[-2] == end - 2:
            if row_ids[end - 2] != row_ids[-1]:
                break
            starts.pop()
            end -= 1
        if end < len(pos):
            starts.pop()  # the run's first slot, padding too
            end -= 1
        bounds = np.array([*starts, end], dtype=np.int64)
        out.append(np.diff(bounds))
    return out
