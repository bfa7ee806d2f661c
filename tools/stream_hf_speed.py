"""A lazily packed IterableDataset (``bfpack.hf.pack_dataset``): time to
the first row with the default window, and tokens/s unformatted, with
``with_format("numpy")`` and ``"torch"``.

- first row: 21M tokens of web-like lengths in 8 Arrow-backed shards,
  ``seq_len=2048``, default options;
- formats: 6.6M tokens (lognormal(6, 1.2) lengths) in 4 shards,
  ``seq_len=2048``, ``window_tokens=2**20``; and a packed ``Dataset``
  indexed row by row, as a shuffling DataLoader reads it.

Usage (run it on two checkouts to compare them side by side)::

    PYTHONPATH=. python tools/stream_hf_speed.py
"""

import time

import datasets
import numpy as np
import pyarrow as pa

import bfpack
from bfpack.corpus import web_like_lengths
from bfpack.hf import pack_dataset


def first_row():
    lengths = web_like_lengths(22_000, seed=5)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.arange(offsets[-1], dtype=np.int32) % 50_000)
    ds = datasets.Dataset(pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)}))
    list(pack_dataset(ds.select(range(200)).to_iterable_dataset(), 2048))  # compile
    packed = pack_dataset(ds.to_iterable_dataset(num_shards=8), 2048)
    t = time.perf_counter()
    rows = iter(packed)
    next(rows)
    first = time.perf_counter() - t
    n = 1 + sum(1 for _ in rows)
    print(
        f"{int(lengths.sum()):,} tokens: first row after {first:.2f} s, "
        f"all {n:,} rows after {time.perf_counter() - t:.2f} s"
    )


def formats():
    lengths = np.clip(np.random.default_rng(0).lognormal(6.0, 1.2, 8000).astype(int), 1, 20000)
    tokens = int(lengths.sum())
    ds = datasets.Dataset.from_dict({"input_ids": [list(range(n)) for n in lengths]})
    packed = pack_dataset(ds.to_iterable_dataset(num_shards=4), 2048, window_tokens=1 << 20)
    next(iter(packed))  # compile

    def run(name, rows):
        t = time.perf_counter()
        n = sum(len(row["input_ids"]) for row in rows)
        dt = time.perf_counter() - t
        assert n == tokens, (n, tokens)
        print(f"{name:28s} {tokens:,} tokens in {dt:.2f} s: {tokens / dt / 1e6:.2f}M tokens/s")

    for name in ["unformatted", "numpy", "torch"]:
        run(
            f"IterableDataset {name}", packed if name == "unformatted" else packed.with_format(name)
        )
    mapped = pack_dataset(ds, 2048)
    for name in ["unformatted", "numpy"]:
        f = mapped if name == "unformatted" else mapped.with_format(name)
        run(f"Dataset[i] {name}", (f[i] for i in range(len(f))))


if __name__ == "__main__":
    datasets.disable_progress_bars()
    print(bfpack.__file__)
    first_row()
    formats()
