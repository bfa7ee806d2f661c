"""Peak RSS of ``bfpack pack`` and ``bfpack stats`` on length-skewed input (issue 17, 13).

The file: 200,000 documents of 10 tokens, then 2,000 of 100,000 tokens
(202M int32 tokens, one row group), packed with 1M-token windows. Each
command runs in a fresh process; its peak is that process's ``ru_maxrss``
(``resource.getrusage(RUSAGE_CHILDREN)`` after it ends, so one child each).

Usage::

    python tools/peak_memory_skew.py [--tree DIR ...] [--work DIR]

Each ``--tree`` is a bfpack checkout to measure (put on ``PYTHONPATH``);
by default, the one this script is in. The numba cache is warmed by one
small run per tree first, so compilation is not counted.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, subprocess, sys
status = subprocess.run([sys.executable, "-m", "bfpack", *sys.argv[1:]]).returncode
print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def write_skewed(path):
    """200,000 documents of 10 tokens, then 2,000 of 100,000 (int32), in one row group."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    lengths = np.concatenate([np.full(200_000, 10), np.full(2_000, 100_000)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.random.default_rng(0).integers(0, 50_000, int(offsets[-1]), dtype=np.int32)
    table = pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)})
    pq.write_table(table, path, row_group_size=table.num_rows)


def peak(tree, cwd, *args):
    """Exit status and peak RSS (bytes) of ``bfpack *args`` run from ``tree``.

    It runs in ``cwd``: ``python -m`` puts the working directory first on
    the path, so run from a checkout it would import that one.
    """
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    status, rss = out.stdout.split()[-2:]
    return int(status), int(rss)


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="a bfpack checkout (default: this one)")
    parser.add_argument("--work", help="directory for the input and outputs (default: a temp)")
    args = parser.parse_args()
    trees = [os.path.abspath(t) for t in args.tree or [here]]
    work = args.work or tempfile.mkdtemp(prefix="bfpack-skew-")
    src = os.path.join(work, "skewed.parquet")
    if not os.path.exists(src):
        write_skewed(src)
    small = os.path.join(work, "small.parquet")
    if not os.path.exists(small):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.table({"input_ids": pa.array([[1, 2, 3]] * 10, pa.list_(pa.int32()))}), small
        )
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    print(f"input: {src} ({os.path.getsize(src) / 1e6:.0f} MB)")
    for tree in trees:
        dst = os.path.join(work, "out")
        pack = ["--seq-len", 2048, "--window-tokens", 1_000_000, "--overwrite", "--quiet"]
        peak(tree, work, "pack", small, dst, *pack)  # compile, into the numba cache
        status, rss = peak(tree, work, "pack", src, dst, *pack)
        print(f"{tree}: pack  exit {status}, peak RSS {rss / 1e9:.2f} GB")
        status, rss = peak(tree, work, "stats", src, "--seq-len", 2048, "--quiet")
        print(f"{tree}: stats exit {status}, peak RSS {rss / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
