"""Draw the README's figures: ``python tools/make_figures.py``.

Writes ``docs/truncations.png``: truncations per document against document
length (the paper's Figure 4), concat against bfd, on web-like lengths at
2048 and 8192 tokens and on the standard-library code corpus (GPT-2-style tokens) at 2048.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import bfpack
from bfpack.corpus import stdlib_lengths, web_like_lengths
from bfpack.plot import plot_truncations

OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "truncations.png")


def main():
    web = web_like_lengths(1_000_000)
    code = stdlib_lengths()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, (name, lengths, seq_len) in zip(
        axes,
        [
            ("web-like, 1M docs", web, 2048),
            ("web-like, 1M docs", web, 8192),
            ("stdlib .py, GPT-2-style tokens", code, 2048),
        ],
    ):
        profile = bfpack.truncation_profile(lengths, seq_len)
        plot_truncations(profile, ax=ax, title=f"{name}, seq_len {seq_len}")
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
