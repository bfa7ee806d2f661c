"""Draw the balanced-steps figure: ``python tools/balance_figure.py``.

Writes ``docs/balance.png``: the slowest rank over the mean rank (summed
over an epoch's steps) by window size, rows dealt at random against
balanced (``bfpack.balance``), for 2M web-like documents packed with BFD at
8k, 32k and 128k tokens, 64 ranks, batch 1, a 7B model's cost model. The
same figures as ``asv_bench/benchmarks/balance.py`` (``BalanceByWindow``
at 32k), with the suite's seed.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import bfpack
from bfpack.balance import attention_weight, balanced_order, random_order, row_costs
from bfpack.balance import slowest_over_mean as ratio
from bfpack.corpus import web_like_lengths

OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "balance.png")
#: The asv suite's seed (asv_bench/benchmarks/common.py).
SEED = 20240415
WINDOWS = (1, 2, 4, 8, 16, 32, 64)
RANKS = 64


def main():
    lengths = web_like_lengths(2_000_000, seed=SEED)
    weight = attention_weight(hidden_size=4096, num_layers=32)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for seq_len, color in ((8192, "tab:blue"), (32768, "tab:orange"), (131072, "tab:green")):
        costs = row_costs(bfpack.pack(lengths, seq_len), attention_weight=weight)
        balanced = [
            ratio(balanced_order(costs, num_replicas=RANKS, window=w).rank_costs) for w in WINDOWS
        ]
        random = ratio(random_order(costs, num_replicas=RANKS).rank_costs)
        label = f"{seq_len // 1024}k"
        ax.plot(WINDOWS, balanced, "o-", color=color, label=f"{label}, balanced")
        ax.axhline(random, color=color, linestyle="--", label=f"{label}, random ({random:.2f})")
    ax.axvline(16, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(WINDOWS, [str(w) for w in WINDOWS])
    ax.set_xlabel("window (global steps)")
    ax.set_ylabel("slowest rank / mean rank")
    ax.set_title(f"2M web-like documents, {RANKS} ranks, batch 1, 7B cost model")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
