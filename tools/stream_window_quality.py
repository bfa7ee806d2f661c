"""Sequences that windows, and packing shards apart, add over one global BFD.

What the default window of a stream (``bfpack.hf.pack_dataset`` on an
IterableDataset: ``256 * seq_len`` tokens) and packing each input shard on
its own cost, at ``seq_len=2048``, on three length distributions (lengths
only, with :class:`bfpack.StreamPacker`; a minute or two on one core).

Usage::

    PYTHONPATH=. python tools/stream_window_quality.py
"""

import numpy as np

import bfpack
from bfpack.corpus import web_like_lengths
from bfpack.stream import StreamPacker, default_max_open, length_windows

L = 2048


def stream(lengths, window):
    """Sequences of ``lengths`` packed in windows of ``window`` tokens."""
    packer = StreamPacker(L, max_open=default_max_open(L, window))
    parts = length_windows(lengths, window)
    return sum(packer.step(w, last=i == len(parts) - 1).num_sequences for i, w in enumerate(parts))


def main():
    rng = np.random.default_rng
    dists = {
        "web_like lognormal(6,1.3)": web_like_lengths(200_000, seed=1),
        "lognormal(7,1.5) long docs": np.clip(
            rng(2).lognormal(7, 1.5, 40_000).astype(np.int64) + 1, 1, 200_000
        ),
        "zipf(1.8)*50": np.clip(rng(3).zipf(1.8, 200_000) * 50, 1, 500_000).astype(np.int64),
    }
    for name, lengths in dists.items():
        total = int(lengths.sum())
        g = bfpack.pack(lengths, L).num_sequences
        print(
            f"{name}: {len(lengths):,} docs, {total / 1e6:.1f}M tokens, global BFD {g:,} sequences"
        )
        for w in [1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 24]:
            n = stream(lengths, w)
            print(
                f"  window {w:>10,} ({w // L:>5} x seq_len, max_open "
                f"{default_max_open(L, w):>4}): {n:,} (+{n - g}, +{100 * (n - g) / g:.4f}%)"
            )
        for shards in (8, 64):
            for w in [1 << 19, 1 << 24]:
                n = sum(stream(part, w) for part in np.array_split(lengths, shards))
                print(
                    f"  {shards} shards packed apart, window {w:,}: {n:,} "
                    f"(+{n - g}, +{100 * (n - g) / g:.4f}%; {(n - g) / shards:.2f} per shard)"
                )


if __name__ == "__main__":
    main()
