"""Import and pack where numba's cache cannot be written.

Run as ``python readonly_workload.py MODE WORKDIR [--cli]`` by
``tests/test_compile.py``, on a copy of the package whose cache locations
cannot be written, and with ``--cli`` by the read-only-install leg of
``.ci/run`` (a non-editable install in a read-only ``site-packages``, run
by another user whose home is not writable, ``NUMBA_CACHE_DIR`` unset).
``--cli`` also runs ``bfpack pack`` on a small Parquet file written into
WORKDIR (a second process, which compiles again). MODE:

- ``uncached``: no cache anywhere; packing works and this process (and the
  CLI's) warns exactly once;
- ``build``: run the same calls with a writable cache (to build one in the
  package's ``__pycache__``);
- ``prebuilt``: every kernel loads from the cache built by ``build``,
  read-only: no warning and nothing compiled.

Checks fail with an AssertionError; on success the last line of stdout is a
JSON summary.
"""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WARNING = "bfpack compiles its kernels in memory"


def cli_pack(workdir):
    """``bfpack pack`` on a small Parquet file; its stderr."""
    tokens = np.arange(1, 301, dtype=np.int32)
    ids = pa.ListArray.from_arrays(pa.array([0, 17, 17, 40, 130, 300], pa.int32()), tokens)
    src = os.path.join(workdir, "src.parquet")
    dst = os.path.join(workdir, "packed")
    pq.write_table(pa.table({"input_ids": ids}), src)
    proc = subprocess.run(
        [sys.executable, "-m", "bfpack", "pack", src, dst, "--seq-len", "64", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = pq.read_table(dst, columns=["input_ids"])
    packed = np.sort(out.column("input_ids").combine_chunks().flatten().to_numpy())
    assert np.array_equal(packed, tokens), "the CLI lost or duplicated tokens"
    return proc.stderr


def kernel_stats():
    """Cache hits and misses summed over every kernel."""
    from bfpack import _kernels

    hits = misses = 0
    for info in pkgutil.iter_modules(_kernels.__path__):
        module = importlib.import_module(f"bfpack._kernels.{info.name}")
        for obj in vars(module).values():
            if hasattr(obj, "stats") and getattr(obj, "py_func", None) is not None:
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    return hits, misses


def main(mode, workdir, cli):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import bfpack

        lengths = np.random.default_rng(0).integers(0, 5000, 2000)
        plan = bfpack.pack(lengths, 2048)
        assert int(plan.piece_len.sum()) == int(lengths.sum())
        assert plan.seq_fill.max() <= 2048
        ids = pa.array([[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10]], pa.list_(pa.int32()))
        table = bfpack.pack_table(pa.table({"input_ids": ids}), 4, pad_value=0, position_ids=True)
        assert sorted(v for row in table.column("input_ids").to_pylist() for v in row if v) == list(
            range(1, 11)
        )
    ours = [str(w.message) for w in caught if WARNING in str(w.message)]
    hits, misses = kernel_stats()
    cli_stderr = cli_pack(workdir) if cli else ""
    cli_warnings = cli_stderr.count(WARNING)
    if mode == "uncached":
        assert len(ours) == 1, f"expected one warning, got {len(ours)}: {ours}"
        assert cli_warnings == (1 if cli else 0), (
            f"the CLI warned {cli_warnings} times:\n{cli_stderr}"
        )
        assert hits == 0, hits
    elif mode == "prebuilt":
        assert not ours and not cli_warnings, (ours, cli_stderr)
        assert hits > 0 and misses == 0, f"{misses} kernels compiled, {hits} loaded"
    print(
        json.dumps(
            {
                "bfpack": os.path.dirname(bfpack.__file__),
                "warnings": ours,
                "cli_warnings": cli_warnings,
                "hits": hits,
                "misses": misses,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--cli" in sys.argv[3:])
