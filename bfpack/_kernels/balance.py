"""Dealing packed rows to data-parallel ranks so that every step is even.

The rows of an epoch, in a random order, are cut into windows of
``window`` global steps. Inside a window the rows are sorted by cost and
each run of ``num_replicas * batch_size`` consecutive rows becomes one
step: the rows of a step cost about the same, so no rank waits long for the
slowest. With ``batch_size > 1`` a step's rows are dealt to the ranks in
snake order (0, 1, ..., R-1, R-1, ..., 0, 0, ...), which evens the sums.
The steps of a window are then put in a random order (``step_perm``) and
each step's ranks rotated by a random offset (``rotation``), so neither
the position in the window nor the rank follows the cost.

The sort itself is numpy's (vectorised over windows, several times faster
than a sort compiled here): :func:`window_keys` makes keys that are
distinct, so every correct sort orders them the same way, on every
machine.
"""

import numpy as np

from .._jit import jit


@jit
def window_keys(dealt_bits, window_rows, bits):
    """int64 sort keys of the costs of the rows in dealing order, window by window.

    ``dealt_bits`` are the costs' float64 bits viewed as int64 (which order
    non-negative floats as integers), in the order of the permutation. A
    key is those bits without their ``bits`` lowest, and the row's position
    in its window of ``window_rows`` rows (``< 2**bits``) in those bits:
    keys are distinct, and equal costs keep their order.
    """
    keys = np.empty(dealt_bits.shape[0], dtype=np.int64)
    low = (np.int64(1) << bits) - 1
    at = 0
    for i in range(dealt_bits.shape[0]):
        keys[i] = (dealt_bits[i] & ~low) | at
        at += 1
        if at == window_rows:
            at = 0
    return keys


@jit
def deal_windows(keys, perm, dealt, window, num_replicas, batch_size, step_perm, rotation):
    """Deal the rows of ``perm`` whose keys are sorted window by window.

    ``keys`` are :func:`window_keys` of ``perm``, sorted inside each window
    of ``window`` steps of ``R * B`` rows (position in the window in the
    low bits); ``dealt`` are the costs of the rows of ``perm``, in its
    order. ``step_perm[s]`` is where the ``g``-th cheapest step of the
    window starting at step ``s - g`` goes inside that window;
    ``rotation[s]`` (in ``[0, R)``) turns the ranks of output step ``s``.

    Returns ``(order, rank_costs, shift)``: ``order[(s * R + r) * B + b]``
    is the ``b``-th row of rank ``r`` at step ``s``, ``rank_costs[s * R +
    r]`` the cost of its rows, and ``shift`` the sum of ``|s - s0|`` over
    the rows, ``s0`` a row's step in ``perm``.
    """
    step_rows = num_replicas * batch_size
    num_steps = perm.shape[0] // step_rows
    window_rows = window * step_rows
    low = np.int64(1)
    while low < window_rows:
        low <<= 1
    low -= 1
    # A row's step in its window, looked up: a division per row costs more.
    step_of = np.empty(window_rows, dtype=np.int64)
    for at in range(window_rows):
        step_of[at] = at // step_rows
    order = np.empty(num_steps * step_rows, dtype=np.int64)
    rank_costs = np.zeros(num_steps * num_replicas, dtype=np.float64)
    shift = 0
    for first in range(0, num_steps, window):
        k = min(window, num_steps - first)
        lo = first * step_rows
        for g in range(k):
            step = first + step_perm[first + g]
            turn = rotation[step]
            b = 0
            r = 0
            for j in range(step_rows):
                # Snake order: forward on even passes over the ranks, back on odd.
                rank = r if b % 2 == 0 else num_replicas - 1 - r
                rank += turn
                if rank >= num_replicas:
                    rank -= num_replicas
                at = keys[lo + g * step_rows + j] & low
                order[(step * num_replicas + rank) * batch_size + b] = perm[lo + at]
                rank_costs[step * num_replicas + rank] += dealt[lo + at]
                shift += abs(step - first - step_of[at])
                r += 1
                if r == num_replicas:
                    r = 0
                    b += 1
    return order, rank_costs, shift


@jit
def shuffle_rows(bucket, uniform, num_buckets, values):
    """A uniformly random permutation of ``range(n)``, in two cache-friendly passes.

    Row ``i`` goes to bucket ``bucket[i]`` (uniform in ``[0, num_buckets)``,
    uint16); each bucket is then shuffled by Fisher-Yates, whose swap at
    position ``k`` takes ``uniform[k]`` (in ``[0, 1)``). Every permutation is
    equally likely (the buckets' contents and sizes are random, their orders
    uniform); a bucket of ~64k rows stays in cache, where one Fisher-Yates
    over 10M rows would miss it at almost every swap.

    Returns ``(perm, carried)``: ``carried`` is ``values[perm]`` (int64),
    moved along with the rows, which reads ``values`` in order instead of
    gathering it at random afterwards.
    """
    n = bucket.shape[0]
    starts = np.zeros(num_buckets + 1, dtype=np.int64)
    for i in range(n):
        starts[bucket[i] + 1] += 1
    for b in range(num_buckets):
        starts[b + 1] += starts[b]
    fill = starts[:num_buckets].copy()
    out = np.empty(n, dtype=np.int64)
    carried = np.empty(n, dtype=np.int64)
    for i in range(n):
        b = bucket[i]
        out[fill[b]] = i
        carried[fill[b]] = values[i]
        fill[b] += 1
    for b in range(num_buckets):
        lo = starts[b]
        for k in range(starts[b + 1] - 1, lo, -1):
            j = lo + np.int64(uniform[k] * (k - lo + 1))
            out[k], out[j] = out[j], out[k]
            carried[k], carried[j] = carried[j], carried[k]
    return out, carried
