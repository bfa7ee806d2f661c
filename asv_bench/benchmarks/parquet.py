"""``bfpack.parquet.pack_parquet``: time next to a plain pyarrow rewrite, and
peak memory as the dataset grows.

The datasets are written once per asv run by ``setup_cache`` into asv's
temporary cache directory (removed by asv when the last benchmark using it
is done): shards of ~25M int32 tokens (:func:`.common.write_parquet_shards`:
lognormal documents, random token ids, row groups of 4,096 documents,
snappy), ``x1`` = one shard and ``x4`` = four (100M tokens, the size of the
``pack_table`` benchmark). In smoke mode a shard holds ~100k tokens.

- Time: ``pack_parquet(x4, dst, 2048)`` with the default ``window_tokens``
  against :func:`.baselines.pyarrow_rewrite` of the same dataset (read with
  ``pyarrow.dataset``, written with ``ParquetWriter`` and the writer
  settings of bfpack's shards: the floor). Target (issue 11): twice the
  tokens/s of bfpack before its pipelined writer, whose ratio here was
  about 1.2-1.4x a rewrite with pyarrow's default settings.
- Memory: peak RSS (``VmHWM``) of a fresh ``python -c`` process running
  ``pack_parquet`` with ``window_tokens`` = 8M, on ``x1`` and ``x4``.
  Target: about the same peak for both (memory bounded by the window, not
  the dataset).
- Memory against the file layout (:class:`ParquetLayoutPeakRSS`): 200M
  int32 tokens as 64 files, as one file of 106 row groups and as one file of
  one row group; peak RSS of a fresh process running ``pack_parquet``
  (seq_len 2048, 1M-token windows) and ``bfpack stats``. Target: under 0.6
  GB for every layout (issue 8; it was 0.40, 1.62 and 2.90 GB for pack).
- Output format (:class:`PackFormat`, issue 20): ``pack_parquet(x4, dst,
  2048, format=...)`` with Parquet shards (zstd, the default) and with
  uncompressed Arrow IPC shards (``format="arrow"``), side by side on the
  same input: the time of each, the tokens per core-second of each (input
  tokens over the process's CPU seconds, every thread counted), and the
  ratio of their tokens/s (``track_arrow_speedup``, medians of interleaved
  runs). Target: arrow at least twice the tokens/s of Parquet.
"""

import os
import shutil
import statistics
import time

import pyarrow.parquet as pq

from bfpack.parquet import pack_parquet

from .baselines import pyarrow_rewrite
from .common import (
    Benchmark,
    fresh_process_status,
    make_token_table,
    median_seconds_pair,
    num_tokens,
    write_parquet_shards,
)

SEQ_LEN = 2048
#: Tokens per shard (before the smoke cap of :func:`.common.num_tokens`).
SHARD_TOKENS = 25_000_000
#: ``window_tokens`` of the peak-memory runs (scaled with the shard in smoke mode).
PEAK_WINDOW_TOKENS = 8_000_000
#: Dataset sizes in shards: ``x1`` and ``x4``.
SCALES = (1, 4)
#: The dataset the time benchmarks use.
TIME_SCALE = 4

#: Tokens of the file-layout datasets (before the smoke cap), and their layouts.
LAYOUT_TOKENS = 200_000_000
LAYOUTS = ("64 files", "106 row groups", "1 row group")
#: ``window_tokens`` of the file-layout runs (scaled with the data in smoke mode).
LAYOUT_WINDOW_TOKENS = 1 << 20

#: What the fresh process runs (``sys.argv[1:]``: src, dst, seq_len, window_tokens).
PACK_PARQUET_CHILD = """
import sys
from bfpack.parquet import pack_parquet
src, dst, seq_len, window = sys.argv[1:]
pack_parquet(src, dst, int(seq_len), window_tokens=int(window), overwrite=True)
"""


#: ``bfpack stats`` in a fresh process (``sys.argv[1:]``: src, seq_len).
STATS_CHILD = """
import sys
from bfpack.cli import main
src, seq_len = sys.argv[1:]
assert main(["stats", src, "--seq-len", seq_len]) == 0
"""


def shard_tokens():
    """Tokens per shard: :data:`SHARD_TOKENS`, capped in smoke mode."""
    return num_tokens(SHARD_TOKENS)


def peak_window_tokens():
    """``window_tokens`` of the peak runs: 8M, or the same fraction of a smoke shard."""
    return max(1, shard_tokens() * PEAK_WINDOW_TOKENS // SHARD_TOKENS)


def write_datasets(root):
    """Write ``root/x1``, ``root/x4`` and the warm-up dataset ``root/tiny``.

    ``x1`` holds the first shard of ``x4`` (a hard link where possible).
    """
    shards = write_parquet_shards(os.path.join(root, "x4"), 4, shard_tokens())
    x1 = os.path.join(root, "x1")
    os.makedirs(x1, exist_ok=True)
    first = os.path.join(x1, os.path.basename(shards[0]["path"]))
    try:
        os.link(shards[0]["path"], first)
    except OSError:
        shutil.copyfile(shards[0]["path"], first)
    # Two small shards, small row groups: several windows, carried sequences.
    write_parquet_shards(os.path.join(root, "tiny"), 2, 20_000, row_group_docs=8)


def dataset_path(root, scale):
    return os.path.join(root, f"x{scale}")


def warm_pack_parquet(root, dst):
    """Compile (or load from numba's cache) every kernel ``pack_parquet`` calls.

    Several windows with sequences carried between them, so the streaming
    path is compiled too; the kernels land in numba's on-disk cache, where
    a fresh child process finds them.
    """
    pack_parquet(os.path.join(root, "tiny"), dst, SEQ_LEN, window_tokens=5_000, overwrite=True)
    shutil.rmtree(dst, ignore_errors=True)


def pack_parquet_peak(src, dst, window_tokens, seq_len=SEQ_LEN):
    """``VmHWM`` and ``VmRSS`` (KiB) at the end of a fresh process that packs ``src``."""
    try:
        return fresh_process_status(PACK_PARQUET_CHILD, src, dst, seq_len, window_tokens)
    finally:
        shutil.rmtree(dst, ignore_errors=True)


class ParquetDatasets(Benchmark):
    """Base class: the datasets, written once per asv run (``setup_cache``)."""

    def setup_cache(self):
        # asv runs this in a temporary directory, which becomes the working
        # directory of the benchmarks and is removed after them.
        root = os.path.abspath("bfpack-parquet")
        write_datasets(root)
        return root

    def _outputs(self, root):
        tag = f"{type(self).__name__}-{os.getpid()}"
        return (
            os.path.join(root, f"out-{tag}"),
            os.path.join(root, f"rewrite-{tag}"),
            os.path.join(root, f"warm-{tag}"),
        )

    def teardown(self, root, *params):
        for path in self._outputs(root):
            shutil.rmtree(path, ignore_errors=True)


class PackParquet(ParquetDatasets):
    """``pack_parquet`` of 100M tokens (4 shards) at 2048 and a pyarrow rewrite."""

    # A call takes seconds: few samples.
    repeat = (2, 5, 30.0)
    warmup_time = 0.1
    timeout = 600.0

    def setup(self, root):
        self.src = dataset_path(root, TIME_SCALE)
        self.dst, self.rewrite_dst, warm_dst = self._outputs(root)
        warm_pack_parquet(root, warm_dst)

    def _pack(self):
        pack_parquet(self.src, self.dst, SEQ_LEN, overwrite=True)

    def _rewrite(self):
        pyarrow_rewrite(self.src, self.rewrite_dst)

    def time_pack_parquet(self, root):
        self._pack()

    def time_pyarrow_rewrite(self, root):
        self._rewrite()

    def track_time_ratio(self, root):
        packed, rewrite = median_seconds_pair(self._pack, self._rewrite, runs=3)
        return packed / rewrite

    track_time_ratio.unit = "x pyarrow rewrite"


class PackParquetPeakRSS(ParquetDatasets):
    """Peak RSS of a fresh process running ``pack_parquet`` with 8M-token
    windows, on 1 and 4 shards: flat if memory is bounded by the window."""

    params = [list(SCALES)]
    param_names = ["shards"]
    timeout = 600.0

    def setup(self, root, shards):
        self.src = dataset_path(root, shards)
        self.dst, _, warm_dst = self._outputs(root)
        # Compiles into numba's on-disk cache, which the child loads.
        warm_pack_parquet(root, warm_dst)

    def track_peak_rss_mb(self, root, shards):
        status = pack_parquet_peak(self.src, self.dst, peak_window_tokens())
        return status["VmHWM"] * 1024 / 1e6

    track_peak_rss_mb.unit = "MB"


def write_layouts(root):
    """The same tokens as ``root/files64/``, ``root/rg106.parquet`` and ``root/rg1.parquet``."""
    os.makedirs(os.path.join(root, "files64"), exist_ok=True)
    table = make_token_table(num_tokens(LAYOUT_TOKENS))
    n = table.num_rows
    pq.write_table(table, os.path.join(root, "rg106.parquet"), row_group_size=-(-n // 106))
    pq.write_table(table, os.path.join(root, "rg1.parquet"), row_group_size=n)
    per = -(-n // 64)
    for k in range(64):
        path = os.path.join(root, "files64", f"part-{k:05d}.parquet")
        pq.write_table(table.slice(k * per, per), path)
    pq.write_table(table.slice(0, 200), os.path.join(root, "tiny.parquet"))


class ParquetLayoutPeakRSS(Benchmark):
    """Peak RSS of fresh processes on 200M tokens laid out three ways:
    memory follows the window, not the files or their row groups."""

    params = [list(LAYOUTS)]
    param_names = ["layout"]
    timeout = 1200.0

    def setup_cache(self):
        root = os.path.abspath("bfpack-layouts")
        write_layouts(root)
        return root

    def setup(self, root, layout):
        self.src = os.path.join(
            root,
            {
                "64 files": "files64",
                "106 row groups": "rg106.parquet",
                "1 row group": "rg1.parquet",
            }[layout],
        )
        self.dst = os.path.join(root, f"out-{os.getpid()}")
        self.window = max(1, num_tokens(LAYOUT_TOKENS) * LAYOUT_WINDOW_TOKENS // LAYOUT_TOKENS)
        # Compile (or load) the kernels into numba's on-disk cache for the children.
        pack_parquet(
            os.path.join(root, "tiny.parquet"),
            self.dst,
            SEQ_LEN,
            window_tokens=5_000,
            overwrite=True,
        )
        shutil.rmtree(self.dst, ignore_errors=True)

    def track_pack_peak_rss_mb(self, root, layout):
        status = pack_parquet_peak(self.src, self.dst, self.window)
        return status["VmHWM"] * 1024 / 1e6

    track_pack_peak_rss_mb.unit = "MB"

    def track_stats_peak_rss_mb(self, root, layout):
        status = fresh_process_status(STATS_CHILD, self.src, SEQ_LEN)
        return status["VmHWM"] * 1024 / 1e6

    track_stats_peak_rss_mb.unit = "MB"


#: The output formats compared by :class:`PackFormat`.
FORMATS = ("parquet", "arrow")


class _FormatRuns(ParquetDatasets):
    """Base class: ``pack_parquet`` of 100M tokens (4 shards) at 2048 in a format."""

    repeat = (2, 5, 30.0)
    warmup_time = 0.1
    timeout = 900.0

    def setup(self, root, *params):
        self.src = dataset_path(root, TIME_SCALE)
        self.dst, _, warm_dst = self._outputs(root)
        warm_pack_parquet(root, warm_dst)

    def _pack(self, fmt):
        return pack_parquet(self.src, self.dst, SEQ_LEN, overwrite=True, format=fmt)


class PackFormat(_FormatRuns):
    """The same packing into Parquet and into Arrow shards: time and tokens
    per core-second."""

    params = [list(FORMATS)]
    param_names = ["format"]

    def time_pack(self, root, fmt):
        self._pack(fmt)

    def track_tokens_per_core_second(self, root, fmt):
        # CPU seconds of the whole process (the packing thread and the
        # shard writers'): what a core-hour budget pays. Median of three.
        self._pack(fmt)
        rates = []
        for _ in range(3):
            cpu = time.process_time()
            tokens = self._pack(fmt)["stats"]["tokens"]
            rates.append(tokens / (time.process_time() - cpu))
        return statistics.median(rates)

    track_tokens_per_core_second.unit = "tokens per core-second"


class PackFormatSpeedup(_FormatRuns):
    """Arrow's tokens/s over Parquet's on the same input, the two packings
    timed in turn (interleaved, so that both share the machine's load)."""

    def track_arrow_speedup(self, root):
        arrow, parquet = median_seconds_pair(
            lambda: self._pack("arrow"), lambda: self._pack("parquet"), runs=3
        )
        return parquet / arrow

    track_arrow_speedup.unit = "x Parquet tokens/s"
