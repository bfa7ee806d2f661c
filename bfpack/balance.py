"""Balanced data-parallel steps: packed rows dealt so that no rank waits long.

Packing makes every row ``seq_len`` tokens, but rows do not cost the same
to train: attention inside a row costs about the sum of the squares of its
pieces' lengths. In data-parallel training every step waits for the
slowest rank, so a step that hands one rank a row holding one 32k-token
document and the others rows of short documents runs at the pace of that
one rank.

The cost model
--------------
The cost of a row, in units of one token through the dense layers, is::

    cost = tokens + attention_weight * sum(l ** 2 for l in pieces)

A transformer's forward pass costs about ``2 * N`` FLOPs per token for its
``N`` non-embedding parameters, and ``2 * d * layers * l ** 2`` for causal
attention over a piece of ``l`` tokens (hidden size ``d``), hence
``attention_weight = d * layers / N`` (:func:`attention_weight`). Any other
per-row cost (measured step times, a kernel whose cost is not ``l ** 2``)
can be passed instead, as an array.

The plan
--------
:func:`balanced_order` deals one epoch's rows: a random permutation (the
same one for every rank: it depends on the seed and epoch only) is cut
into windows of ``window`` global steps; inside a window the rows are
sorted by cost and each ``num_replicas * batch_size`` consecutive rows
make one step, their ranks' costs nearly equal (with ``batch_size > 1`` the
rows are dealt in snake order, which evens the sums). The steps of a
window are then shuffled and each step's ranks rotated at random, so the
order stays random at any scale above the window.

Data order
----------
A row leaves the random permutation only within its window: the *shift*
of a row is ``|s - s0|``, its step ``s`` in the plan against its step
``s0`` in the random permutation it was drawn from (the step
``DistributedSampler``-like dealing would give it). Its mean over the rows
(:attr:`BalancedPlan.mean_shift`) is below ``window``, and about
``window / 3`` (the mean distance between two uniform positions of a
window), whatever the number of rows.

What the simulation leaves out
------------------------------
:func:`simulate` measures the sum over steps of the slowest rank's cost
over the mean rank's cost, in this cost model. It leaves out the time of
communication (gradient all-reduce, which every rank waits for alike), the
optimizer step, data loading, and kernels whose cost is not ``sum(l ** 2)``
(sliding-window attention, linear attention, memory-bound kernels at short
pieces); measured step times can be passed as costs instead.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import numpy as np
import pyarrow as pa

from ._jit import call, readonly
from ._kernels.balance import deal_windows, shuffle_rows, window_keys
from ._validate import (
    as_attention_weight,
    as_bool,
    as_costs,
    as_int,
    as_lengths,
    check_nonnegative,
)
from .table import SEQ_LENGTHS

#: Rows of a window at most: a row's place in its window takes the low bits
#: of its sort key, the cost's float64 bits the rest (22 bits of mantissa left).
_MAX_WINDOW_ROWS = 1 << 30

#: The shuffle's buckets hold about 2**16 rows (512 kB of int64: they stay in
#: cache), and there are at most 4096 of them (streams written at once).
_BUCKET_BITS = 16
_MAX_BUCKETS = 4096

__all__ = [
    "DEFAULT_ATTENTION_WEIGHT",
    "BalanceReport",
    "BalancedPlan",
    "attention_weight",
    "balanced_order",
    "random_order",
    "row_costs",
    "simulate",
    "slowest_over_mean",
]


def attention_weight(
    config: Any = None,
    *,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_parameters: int | None = None,
) -> float:
    """The weight of ``sum(l ** 2)`` against tokens in a row's cost.

    ``hidden_size * num_layers / num_parameters``: causal attention over a
    piece of ``l`` tokens costs about ``2 * hidden_size * num_layers * l ** 2``
    FLOPs in a forward pass, and a token through the dense layers about
    ``2 * num_parameters``.

    Parameters
    ----------
    config : object, optional
        A transformers config (``model.config``) or any object with
        ``hidden_size`` and ``num_hidden_layers``; the keywords below
        override what it gives.
    hidden_size, num_layers : int, optional
        The model's width and depth.
    num_parameters : int, optional
        Non-embedding parameters (``model.num_parameters(exclude_embeddings=
        True)``); default ``12 * hidden_size ** 2 * num_layers``, a standard
        transformer block (attention 4 d², MLP 8 d²).

    Returns
    -------
    float

    Examples
    --------
    >>> round(1 / attention_weight(hidden_size=4096, num_layers=32))  # 7B
    49152
    """
    if config is not None:
        for attr in ("hidden_size", "num_hidden_layers"):
            if not hasattr(config, attr):
                raise TypeError(
                    f"config has no {attr}; pass a transformers config (model.config) "
                    f"or hidden_size= and num_layers="
                )
        hidden_size = config.hidden_size if hidden_size is None else hidden_size
        num_layers = config.num_hidden_layers if num_layers is None else num_layers
    if hidden_size is None or num_layers is None:
        raise TypeError("attention_weight needs hidden_size= and num_layers= (or config=)")
    d = as_int(hidden_size, "hidden_size", lo=1)
    layers = as_int(num_layers, "num_layers", lo=1)
    if num_parameters is None:
        params = 12 * d * d * layers
    else:
        params = as_int(num_parameters, "num_parameters", lo=1)
    return d * layers / params


#: The default ``attention_weight``: a 7B Llama-like model (hidden size
#: 4096, 32 layers), ``1 / 49152``.
DEFAULT_ATTENTION_WEIGHT = attention_weight(hidden_size=4096, num_layers=32)


def row_costs(
    seq_lengths: Any, *, attention_weight: float = DEFAULT_ATTENTION_WEIGHT
) -> np.ndarray:
    """The cost of each packed row: ``tokens + attention_weight * sum(l ** 2)``.

    Parameters
    ----------
    seq_lengths : pyarrow list array, table, Packing or list of rows
        The pieces' lengths of every row: a pyarrow ``ListArray`` /
        ``ChunkedArray`` (a packed table's ``seq_lengths`` column), a
        pyarrow table holding that column, a :class:`bfpack.Packing`
        (``piece_len`` by ``seq_offsets``), or a list of 1-D integer
        sequences, one per row.
    attention_weight : float
        Cost of ``l ** 2`` in tokens (:func:`attention_weight`); 0 counts
        tokens only.

    Returns
    -------
    numpy.ndarray
        float64, one cost per row, read-only.

    Examples
    --------
    >>> row_costs([[4], [2, 2]], attention_weight=0.5)
    array([12.,  8.])
    """
    weight = as_attention_weight(attention_weight)
    offsets, lengths = _rows_of(seq_lengths)
    tokens = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    squares = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=tokens[1:])
    np.cumsum(lengths * lengths, out=squares[1:])
    # Exact integer sums per row, then one rounding: the same on every machine.
    costs = np.diff(tokens[offsets]).astype(np.float64)
    costs += weight * np.diff(squares[offsets]).astype(np.float64)
    return readonly(costs)


def _rows_of(seq_lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, lengths)``: the pieces of row ``i`` are ``lengths[offsets[i]:offsets[i+1]]``."""
    if hasattr(seq_lengths, "seq_offsets") and hasattr(seq_lengths, "piece_len"):  # a Packing
        return (
            np.asarray(seq_lengths.seq_offsets, dtype=np.int64),
            np.asarray(seq_lengths.piece_len, dtype=np.int64),
        )
    if isinstance(seq_lengths, pa.Table):
        if SEQ_LENGTHS not in seq_lengths.column_names:
            raise ValueError(
                f"the table has no {SEQ_LENGTHS!r} column (columns: "
                f"{seq_lengths.column_names}); pass a packed table, as pack_table returns"
            )
        seq_lengths = seq_lengths.column(SEQ_LENGTHS)
    if isinstance(seq_lengths, pa.ChunkedArray):
        seq_lengths = (
            seq_lengths.combine_chunks() if seq_lengths.num_chunks != 1 else seq_lengths.chunk(0)
        )
    if isinstance(seq_lengths, (pa.ListArray, pa.LargeListArray)):
        if seq_lengths.null_count:
            raise ValueError(f"{SEQ_LENGTHS} has {seq_lengths.null_count} null rows")
        offsets = seq_lengths.offsets.to_numpy().astype(np.int64)
        # .values ignores a slice of the array: cut the lengths to its rows.
        lengths = as_lengths(seq_lengths.values, name=SEQ_LENGTHS)[offsets[0] : offsets[-1]]
        offsets -= offsets[0]
        check_nonnegative(lengths, SEQ_LENGTHS)
        return offsets, lengths
    if isinstance(seq_lengths, (list, tuple)):
        rows = [as_lengths(r, name=f"{SEQ_LENGTHS}[{i}]") for i, r in enumerate(seq_lengths)]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([r.shape[0] for r in rows], out=offsets[1:])
        lengths = np.concatenate(rows) if rows else np.empty(0, np.int64)
        check_nonnegative(lengths, SEQ_LENGTHS)
        return offsets, lengths
    raise TypeError(
        f"seq_lengths must be a pyarrow list array or table, a Packing or a list of rows "
        f"of piece lengths, got {type(seq_lengths).__name__}; for costs you already have, "
        f"pass them to balanced_order directly"
    )


class BalancedPlan(NamedTuple):
    """One epoch's rows dealt to the ranks, step by step.

    Attributes
    ----------
    order : ndarray of int64, shape (num_steps, num_replicas, batch_size)
        ``order[s, r]`` are the rows rank ``r`` trains on at step ``s``.
    rank_costs : ndarray of float64, shape (num_steps, num_replicas)
        The cost of each rank's rows at each step.
    mean_shift : float
        The mean over the dealt rows of ``|s - s0|``, in steps: how far a
        row moved from its step ``s0`` in the random permutation it was
        drawn from (0 for :func:`random_order`).
    """

    order: np.ndarray
    rank_costs: np.ndarray
    mean_shift: float


def _shuffled(cost_bits: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random permutation of the rows (:func:`.shuffle_rows`) and their costs' bits."""
    num_rows = int(cost_bits.shape[0])
    buckets = min(max(num_rows >> _BUCKET_BITS, 1), _MAX_BUCKETS)
    bucket = rng.integers(0, buckets, num_rows, dtype=np.uint16)
    uniform = rng.random(num_rows)
    result = call(shuffle_rows, readonly(bucket), readonly(uniform), buckets, cost_bits)
    return cast(tuple[np.ndarray, np.ndarray], result)


def _permutation(
    costs: np.ndarray, step_rows: int, *, shuffle: bool, drop_last: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's row order before dealing, whole steps only (cut or padded),
    and the rows' costs in that order."""
    num_rows = costs.shape[0]
    if shuffle:
        perm, dealt = _shuffled(costs.view(np.int64), rng)
        dealt = dealt.view(np.float64)
    else:
        perm, dealt = np.arange(num_rows, dtype=np.int64), costs
    if drop_last:
        keep = num_rows - num_rows % step_rows
        return perm[:keep], dealt[:keep]
    pad = -num_rows % step_rows
    if pad and num_rows:
        # As DistributedSampler: the first rows again, as often as needed.
        perm = np.concatenate([perm, np.resize(perm, pad)])
        dealt = np.concatenate([dealt, np.resize(dealt, pad)])
    return perm, dealt


def _check_plan_args(
    num_replicas: Any, batch_size: Any, window: Any, seed: Any, epoch: Any
) -> tuple[int, int, int, int, int]:
    return (
        as_int(num_replicas, "num_replicas", lo=1),
        as_int(batch_size, "batch_size", lo=1),
        as_int(window, "window", lo=1, unit="steps"),
        as_int(seed, "seed", lo=0),
        as_int(epoch, "epoch", lo=0),
    )


def balanced_order(
    costs: Any,
    *,
    num_replicas: int,
    batch_size: int = 1,
    window: int = 16,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
) -> BalancedPlan:
    """Deal an epoch's rows to ``num_replicas`` ranks so that every step is even.

    Parameters
    ----------
    costs : array_like
        One cost per row, ``>= 0`` (:func:`row_costs`, or measured times).
    num_replicas : int
        Data-parallel ranks.
    batch_size : int
        Rows per rank per step; the sum of a rank's rows is balanced.
    window : int
        Steps per window: rows move only inside their window (see
        :attr:`BalancedPlan.mean_shift`). 1 balances nothing between steps.
    seed, epoch : int
        The plan depends on these alone (and on ``costs``): every rank
        computes the same one, with no communication.
    shuffle : bool
        False: no randomness at all; windows of consecutive rows, their
        steps from cheapest to dearest, ranks not rotated.
    drop_last : bool
        True: the rows after the last whole step (``num_replicas *
        batch_size`` rows) are left out. False: the first rows of the
        permutation are dealt again to fill the last step, as
        ``DistributedSampler`` does.

    Returns
    -------
    BalancedPlan
        ``order`` (steps, ranks, batch) of row indices, ``rank_costs``
        (steps, ranks) and ``mean_shift``.

    Notes
    -----
    Inside each window the rows are sorted by cost (a stable sort: ties go
    by position, so the plan is the same on every machine) and each run
    of ``num_replicas * batch_size`` rows is one step; for ``batch_size =
    1`` this minimises the sum of the steps' slowest costs over the
    window. Cost: one permutation (in cache-sized buckets) and one sort of
    ``window * num_replicas * batch_size`` rows per window: about 0.7 s
    per 10M rows on a shared 2-core machine, 1.6 times numpy's
    ``permutation`` of as many.

    Examples
    --------
    >>> plan = balanced_order([1, 9, 2, 8], num_replicas=2, window=2)
    >>> plan.order.shape
    (2, 2, 1)
    >>> sorted(plan.rank_costs.max(axis=1).tolist())
    [2.0, 9.0]
    """
    values = as_costs(costs)
    replicas, batch, window, seed, epoch = _check_plan_args(
        num_replicas, batch_size, window, seed, epoch
    )
    shuffle = as_bool(shuffle, "shuffle")
    drop_last = as_bool(drop_last, "drop_last")
    step_rows = replicas * batch
    window_rows = window * step_rows
    if window_rows > _MAX_WINDOW_ROWS:
        raise ValueError(
            f"window * num_replicas * batch_size must be at most {_MAX_WINDOW_ROWS} rows, "
            f"got {window_rows}; take a smaller window"
        )
    rng = np.random.default_rng([seed, epoch])
    perm, dealt = _permutation(values, step_rows, shuffle=shuffle, drop_last=drop_last, rng=rng)
    num_steps = perm.shape[0] // step_rows
    full, last = divmod(num_steps, window)
    if shuffle:
        step_perm = rng.permuted(np.tile(np.arange(window, dtype=np.int64), (full, 1)), axis=1)
        step_perm = np.concatenate([step_perm.ravel(), rng.permutation(last)])
        rotation = rng.integers(0, replicas, num_steps, dtype=np.int64)
    else:
        step_perm = np.tile(np.arange(window, dtype=np.int64), full + 1)[:num_steps]
        rotation = np.zeros(num_steps, dtype=np.int64)
    perm = readonly(np.ascontiguousarray(perm, dtype=np.int64))
    bits = (window_rows - 1).bit_length()
    dealt = readonly(np.ascontiguousarray(dealt))
    keys = call(window_keys, dealt.view(np.int64), window_rows, bits)
    # Keys are distinct: numpy's sort (SIMD where the CPU has it) orders them
    # the same way as any other sort, so every rank gets the same plan.
    cut = full * window_rows
    keys[:cut].reshape(full, window_rows).sort(axis=1)
    keys[cut:].sort()
    order, rank_costs, shift = call(
        deal_windows,
        readonly(keys),
        perm,
        dealt,
        window,
        replicas,
        batch,
        readonly(np.ascontiguousarray(step_perm, dtype=np.int64)),
        readonly(rotation),
    )
    return BalancedPlan(
        order=readonly(order.reshape(num_steps, replicas, batch)),
        rank_costs=readonly(rank_costs.reshape(num_steps, replicas)),
        mean_shift=shift / perm.shape[0] if perm.shape[0] else 0.0,
    )


def random_order(
    costs: Any,
    *,
    num_replicas: int,
    batch_size: int = 1,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> BalancedPlan:
    """The rows dealt at random, as ``DistributedSampler`` deals them: the baseline.

    Rank ``r`` takes every ``num_replicas``-th row of the permutation that
    :func:`balanced_order` starts from (same seed and epoch), starting at
    ``r``, ``batch_size`` of them per step. Parameters as
    :func:`balanced_order`; ``mean_shift`` is 0.
    """
    values = as_costs(costs)
    replicas, batch, _, seed, epoch = _check_plan_args(num_replicas, batch_size, 1, seed, epoch)
    drop_last = as_bool(drop_last, "drop_last")
    rng = np.random.default_rng([seed, epoch])
    perm, dealt = _permutation(values, replicas * batch, shuffle=True, drop_last=drop_last, rng=rng)
    order = perm.reshape(-1, batch, replicas).transpose(0, 2, 1)
    return BalancedPlan(
        order=readonly(np.ascontiguousarray(order)),
        rank_costs=readonly(dealt.reshape(-1, batch, replicas).sum(axis=1)),
        mean_shift=0.0,
    )


def slowest_over_mean(rank_costs: Any) -> float:
    """Sum over steps of the slowest rank's cost over the sum of the mean rank's.

    1.0 is perfect balance; 1.4 means the ranks wait 40% longer than the
    work they do on average. ``rank_costs`` is (steps, ranks), as
    :attr:`BalancedPlan.rank_costs`; NaN without steps or cost.
    """
    costs = np.asarray(rank_costs, dtype=np.float64)
    if costs.ndim != 2:
        raise ValueError(f"rank_costs must be 2-D (steps, ranks), got shape {costs.shape}")
    mean = float(costs.mean(axis=1).sum()) if costs.size else 0.0
    return float(costs.max(axis=1).sum()) / mean if mean > 0 else math.nan


class BalanceReport(NamedTuple):
    """What :func:`simulate` finds for one epoch.

    Attributes
    ----------
    rows, steps : int
        Rows in the dataset; global steps of the epoch.
    cost_quantiles : dict
        Row costs at quantiles 0, 0.5, 0.9, 0.99 and 1 (keys ``"min"``,
        ``"p50"``, ``"p90"``, ``"p99"``, ``"max"``), and ``"mean"``.
    random, balanced : float
        Slowest over mean (:func:`slowest_over_mean`) of random dealing and
        of :func:`balanced_order`.
    mean_shift : float
        :attr:`BalancedPlan.mean_shift` of the balanced plan, in steps.
    """

    rows: int
    steps: int
    cost_quantiles: dict[str, float]
    random: float
    balanced: float
    mean_shift: float


def simulate(
    costs: Any,
    *,
    num_replicas: int,
    batch_size: int = 1,
    window: int = 16,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> BalanceReport:
    """Random dealing against balanced dealing of one epoch, in the cost model.

    Parameters as :func:`balanced_order`. See the module's notes for what
    the simulation leaves out.

    Examples
    --------
    >>> costs = row_costs([[1] * 8, [8], [4, 4], [2] * 4] * 8, attention_weight=1.0)
    >>> report = simulate(costs, num_replicas=4, window=4)
    >>> report.balanced < report.random
    True
    """
    values = as_costs(costs)
    kwargs: dict[str, Any] = dict(
        num_replicas=num_replicas,
        batch_size=batch_size,
        seed=seed,
        epoch=epoch,
        drop_last=drop_last,
    )
    balanced = balanced_order(values, window=window, **kwargs)
    random = random_order(values, **kwargs)
    if values.shape[0]:
        q = np.quantile(values, [0.0, 0.5, 0.9, 0.99, 1.0])
        names = ("min", "p50", "p90", "p99", "max")
        quantiles = {k: float(v) for k, v in zip(names, q)}
        quantiles["mean"] = float(values.mean())
    else:
        quantiles = {}
    return BalanceReport(
        rows=int(values.shape[0]),
        steps=int(balanced.order.shape[0]),
        cost_quantiles=quantiles,
        random=slowest_over_mean(random.rank_costs),
        balanced=slowest_over_mean(balanced.rank_costs),
        mean_shift=balanced.mean_shift,
    )
