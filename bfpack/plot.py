"""Plots of packings (needs matplotlib: ``pip install "bfpack[plot]"``).

Importing :mod:`bfpack` never imports matplotlib; this module does, when
one of its functions is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._optional import requires

if TYPE_CHECKING:
    import pyarrow as pa

    from .packing import Packing


def _pyplot() -> Any:
    with requires("plot", needed_by="bfpack.plot"):
        import matplotlib.pyplot as plt
    return plt


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def plot_truncations(profile: pa.Table, *, ax: Any = None, title: str | None = None) -> Any:
    """Truncations per document against document length (the paper's Fig. 4).

    Parameters
    ----------
    profile : pyarrow.Table
        The output of :func:`bfpack.truncation_profile`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax, (6.4, 4.0))
    cols = profile.to_pydict()
    methods = list(dict.fromkeys(cols["method"]))
    method = np.array(cols["method"])
    lo = np.array(cols["length_lo"], dtype=float)
    hi = np.array(cols["length_hi"], dtype=float)
    mid = np.sqrt(lo * np.maximum(hi - 1, lo))
    for m in methods:
        sel = method == m
        ax.plot(
            mid[sel], np.array(cols["cuts_per_document"])[sel], marker="o", markersize=3, label=m
        )
    first = method == methods[0] if methods else np.zeros(0, bool)
    ax.plot(
        mid[first],
        np.array(cols["min_cuts_per_document"])[first],
        "k--",
        linewidth=1,
        label="fewest possible",
    )
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)
    # Autoscaling pads below the smallest value (0 cuts) into negative cuts.
    # Above the largest, some room (the axis is logarithmic there), and never
    # less than the axes already show (axes shared with an earlier plot).
    top = 1.5 * max([1.0, *cols["cuts_per_document"], *cols["min_cuts_per_document"]])
    ax.set_ylim(0, max(top, ax.get_ylim()[1]))
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("truncations per document")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_fill(
    packings: Packing | Mapping[str, Packing],
    *,
    bins: int = 50,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Histogram of sequence fill (tokens / seq_len) for one or more packings.

    Each fill bin holds one bar per packing, side by side, so no packing's
    bar hides another's (most sequences of every method sit in the last bin).

    Parameters
    ----------
    packings : Packing, or dict of label -> Packing
    bins : int
        Number of equal fill bins over ``[0, 1]``.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax, (6.4, 4.0))
    plans = packings if isinstance(packings, Mapping) else {packings.method: packings}
    edges = np.linspace(0, 1, bins + 1)
    width = (edges[1] - edges[0]) / max(len(plans), 1)
    for i, (label, plan) in enumerate(plans.items()):
        counts, _ = np.histogram(plan.seq_fill / plan.seq_len, bins=edges)
        shown = counts > 0  # an empty bar has no height on a log axis
        ax.bar(
            edges[:-1][shown] + i * width,
            counts[shown],
            width=width,
            align="edge",
            log=True,
            label=label,
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel("sequence fill (tokens / seq_len)")
    ax.set_ylabel("sequences")
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    return fig
