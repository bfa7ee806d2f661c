"""The balanced sampler: :func:`bfpack.balance.balanced_order`, rank by rank.

Exported as :class:`bfpack.torch.BalancedSampler`. It imports torch only to
subclass its ``Sampler`` (and, when ``num_replicas`` or ``rank`` is not
given, to ask ``torch.distributed``); without torch it is a plain iterable
that any loop can use.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ._validate import as_bool, as_costs, as_int
from .balance import DEFAULT_ATTENTION_WEIGHT, balanced_order, row_costs
from .table import SEQ_LENGTHS

if TYPE_CHECKING:
    _Base = object
else:
    try:
        from torch.utils.data import Sampler as _Base
    except ImportError:  # numpy-only loops
        _Base = object

#: What :meth:`BalancedSampler.state_dict` holds, besides the epoch and position,
#: that must match on resume for the plan to be the same.
_PLAN_KEYS = ("num_rows", "num_replicas", "batch_size", "window", "seed", "shuffle", "drop_last")


class BalancedSampler(_Base):
    """Rows of a packed dataset dealt so that every data-parallel step is even.

    A ``DistributedSampler``-like sampler: each rank iterates over its own
    row indices, ``batch_size`` per step, and at every global step the
    ranks' rows cost about the same (:func:`bfpack.balance.balanced_order`),
    so no rank waits long for the slowest. Every rank computes the same plan
    from the seed, the epoch and the rows' costs, with no communication.

    Parameters
    ----------
    data : dataset, table or array
        A :class:`bfpack.torch.PackedDataset`; a ``datasets.Dataset`` with a
        ``seq_lengths`` column (:func:`bfpack.hf.pack_dataset`); a packed
        pyarrow table; a :class:`bfpack.Packing`; or a 1-D numpy array of
        per-row costs. Other map-style datasets whose rows hold
        ``seq_lengths`` are read row by row (slow for large ones).
    num_replicas, rank : int, optional
        Data-parallel ranks and this one (default: from ``torch.distributed``,
        which must then be initialised).
    batch_size : int
        Rows per rank per step: give the DataLoader the same ``batch_size``.
        The sum of a rank's rows is balanced.
    shuffle : bool
        False: no randomness (windows of consecutive rows, in cost order).
    seed : int
        The same on every rank.
    drop_last : bool
        True: leave out the rows after the last whole global step
        (``num_replicas * batch_size`` rows). False: deal the first rows of
        the epoch again to fill it, as ``DistributedSampler`` does.
    window : int
        Global steps per window: a row moves only inside its window of the
        epoch's random permutation.
    attention_weight : float
        The cost of ``sum(l ** 2)`` in tokens
        (:func:`bfpack.balance.attention_weight`); default a 7B model's.
    costs : array_like, optional
        Per-row costs to balance instead of the cost model (measured times,
        say); one per row of ``data``, which may then be None.

    Notes
    -----
    Iterating yields this rank's rows for the epoch set by
    :meth:`set_epoch`, from where :meth:`load_state_dict` left off.
    :meth:`state_dict` records the rows yielded so far; a DataLoader fetches
    ahead of the training loop (``prefetch_factor`` batches per worker), so
    to save exactly what was trained pass ``consumed`` (this rank's rows
    trained on this epoch, ``steps * batch_size``).

    Examples
    --------
    >>> sampler = BalancedSampler(dataset, batch_size=2)        # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=2, sampler=sampler,
    ...                     collate_fn=PackedCollator())         # doctest: +SKIP
    >>> for epoch in range(epochs):                              # doctest: +SKIP
    ...     sampler.set_epoch(epoch)
    ...     for batch in loader:
    ...         ...
    """

    def __init__(
        self,
        data: Any = None,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        window: int = 16,
        attention_weight: float = DEFAULT_ATTENTION_WEIGHT,
        costs: Any = None,
    ) -> None:
        if costs is not None:
            values = as_costs(costs)
            if data is not None and len(data) != values.shape[0]:
                raise ValueError(
                    f"costs has {values.shape[0]} values for a dataset of {len(data)} rows; "
                    f"pass one cost per row"
                )
        elif data is None:
            raise TypeError("BalancedSampler needs a packed dataset or costs=")
        else:
            values = _costs_of(data, attention_weight)
        self.costs = values
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.batch_size = as_int(batch_size, "batch_size", lo=1)
        self.window = as_int(window, "window", lo=1, unit="steps")
        self.seed = as_int(seed, "seed", lo=0)
        self.shuffle = as_bool(shuffle, "shuffle")
        self.drop_last = as_bool(drop_last, "drop_last")
        self.epoch = 0
        self._start = 0  # where the next iteration begins (load_state_dict)
        self._position = 0  # rows yielded by the current iteration
        self._plan: tuple[int, np.ndarray] | None = None

    def _rows(self) -> np.ndarray:
        """This rank's rows for the current epoch (the plan is kept for the epoch)."""
        if self._plan is None or self._plan[0] != self.epoch:
            plan = balanced_order(
                self.costs,
                num_replicas=self.num_replicas,
                batch_size=self.batch_size,
                window=self.window,
                seed=self.seed,
                epoch=self.epoch,
                shuffle=self.shuffle,
                drop_last=self.drop_last,
            )
            self._plan = (self.epoch, np.ascontiguousarray(plan.order[:, self.rank].ravel()))
        return self._plan[1]

    def __iter__(self) -> Iterator[int]:
        rows = self._rows()
        start, self._start = self._start, 0
        self._position = start
        for row in rows[start:].tolist():
            self._position += 1
            yield row

    def __len__(self) -> int:
        """Rows the next iteration yields: the epoch's, less those already done."""
        return self._epoch_rows() - self._start

    def _epoch_rows(self) -> int:
        """This rank's rows in a whole epoch (the same for every rank and epoch)."""
        step_rows = self.num_replicas * self.batch_size
        n = self.costs.shape[0]
        steps = n // step_rows if self.drop_last else -(-n // step_rows)
        return steps * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration deal epoch ``epoch`` (call it on every rank).

        After :meth:`load_state_dict`, setting the epoch it saved keeps the
        position it saved.
        """
        epoch = as_int(epoch, "epoch", lo=0)
        if epoch != self.epoch:
            self._start = 0
        self.epoch = epoch

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to continue this epoch exactly.

        Parameters
        ----------
        consumed : int, optional
            This rank's rows trained on in this epoch (default: the rows the
            current iteration has yielded, which a prefetching DataLoader
            has taken ahead of training).
        """
        position = self._position if consumed is None else consumed
        position = as_int(position, "consumed", lo=0, hi=self._epoch_rows())
        return {"epoch": self.epoch, "position": position, **self._settings()}

    def _settings(self) -> dict[str, Any]:
        return {
            "num_rows": int(self.costs.shape[0]),
            "num_replicas": self.num_replicas,
            "batch_size": self.batch_size,
            "window": self.window,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the next iteration resumes where it was.

        The sampler must be built as the saved one was (rows, ranks, batch
        size, window, seed, shuffle, drop_last): the plan would differ
        otherwise, and ValueError says which setting does.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        missing = [k for k in ("epoch", "position", *_PLAN_KEYS) if k not in state]
        if missing:
            raise ValueError(f"state lacks {missing}; pass what state_dict() returned")
        mine = self._settings()
        for key in _PLAN_KEYS:
            if state[key] != mine[key]:
                raise ValueError(
                    f"the state was saved with {key}={state[key]!r}, this sampler has "
                    f"{key}={mine[key]!r}; build the sampler as it was to resume exactly"
                )
        self.epoch = as_int(state["epoch"], "epoch", lo=0)
        self._start = as_int(state["position"], "position", lo=0, hi=self._epoch_rows())
        self._position = self._start


def _world(num_replicas: Any, rank: Any) -> tuple[int, int]:
    """``(num_replicas, rank)``, from ``torch.distributed`` where not given."""
    if num_replicas is None or rank is None:
        try:
            import torch.distributed as dist
        except ImportError:
            dist = None  # type: ignore[assignment]
        if dist is None or not dist.is_available() or not dist.is_initialized():
            raise ValueError(
                "num_replicas and rank are needed: pass them, or call "
                "torch.distributed.init_process_group() before making the sampler"
            )
        num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        rank = dist.get_rank() if rank is None else rank
    replicas = as_int(num_replicas, "num_replicas", lo=1)
    return replicas, as_int(rank, "rank", lo=0, hi=replicas - 1)


def _costs_of(data: Any, attention_weight: float) -> np.ndarray:
    """Per-row costs of a packed dataset, read from its ``seq_lengths``."""
    if isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype != object:
        return as_costs(data)
    return row_costs(_seq_lengths_of(data), attention_weight=attention_weight)


def _seq_lengths_of(data: Any) -> Any:
    """The ``seq_lengths`` of every row of ``data``, as cheaply as it offers them."""
    if callable(getattr(data, "column", None)) and hasattr(data, "run_id"):
        # A PackedDataset: the column of its memory-mapped files.
        return data.column(SEQ_LENGTHS)
    if hasattr(data, "with_format") and hasattr(data, "column_names"):  # datasets.Dataset
        if SEQ_LENGTHS not in data.column_names:
            raise ValueError(
                f"the dataset has no {SEQ_LENGTHS!r} column (columns: {data.column_names}); "
                f"pack it with bfpack.hf.pack_dataset, or pass costs="
            )
        return data.with_format("arrow")[SEQ_LENGTHS]
    rows_of_dicts = isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping)
    if isinstance(data, (pa.Table, list, tuple)) and not rows_of_dicts:
        return data
    if hasattr(data, "seq_offsets"):  # a Packing
        return data
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        try:
            return [np.asarray(data[i][SEQ_LENGTHS]) for i in range(len(data))]
        except (KeyError, TypeError, IndexError) as exc:
            raise TypeError(
                f"the rows of {type(data).__name__} hold no {SEQ_LENGTHS!r} ({exc!r}); "
                f"pass a packed dataset or costs="
            ) from None
    raise TypeError(
        f"BalancedSampler takes a packed dataset, table or per-row costs, got {type(data).__name__}"
    )
