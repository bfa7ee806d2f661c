"""``bfpack.dask.pack_parquet``: quality of packing in tasks, and scaling per core.

- Quality (:class:`DaskQuality`): 20M web-like document lengths cut into 16
  files' worth, packed as the tasks and the driver pack them
  (:func:`bfpack.dask.sequences_of_lengths`, which a test proves equal to a
  real run), against one global BFD. Target (issue 11): at most 0.01% more
  sequences.
- Scaling (:class:`DaskScaling`): 200M int32 tokens in 16 Parquet files
  (:func:`.common.write_parquet_shards`, written once per asv run), packed at
  2048 on a ``LocalCluster`` of 1 or 2 worker processes, each of one thread:
  Dask's ``threads_per_worker=1``, and in every worker Arrow's CPU and I/O
  pools and numba at one thread (``OMP_NUM_THREADS``, ``ARROW_IO_THREADS``,
  ``NUMBA_NUM_THREADS``). Target: 2 workers at least 1.6x faster than 1
  (``track_speedup``). Beside them, the single process
  (:func:`bfpack.parquet.pack_parquet`, pipelined over both cores).
"""

import os
import shutil

import bfpack
from bfpack.dask import pack_parquet as dask_pack_parquet
from bfpack.dask import sequences_of_lengths
from bfpack.parquet import pack_parquet

from .common import (
    Benchmark,
    lengths,
    median_seconds_pair,
    num_tokens,
    tiny_lengths,
    write_parquet_shards,
)

SEQ_LEN = 2048
#: Files of the corpus, each one task.
FILES = 16
#: Tokens of the scaling dataset (before the smoke cap of :func:`.common.num_tokens`).
SCALING_TOKENS = 200_000_000
#: What makes a worker one core.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "ARROW_IO_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


class DaskQuality(Benchmark):
    """Sequences added by packing 16 files' worth in tasks, over one global BFD."""

    params = [[20_000_000], [2048, 8192]]
    param_names = ["n_docs", "seq_len"]
    timeout = 900

    def setup(self, n_docs, seq_len):
        self.lengths = lengths(n_docs)
        bfpack.pack(tiny_lengths(seq_len), seq_len)
        n = self.lengths.shape[0]
        self.groups = [self.lengths[k * n // FILES : (k + 1) * n // FILES] for k in range(FILES)]

    def track_excess_over_global_percent(self, n_docs, seq_len):
        best = bfpack.pack(self.lengths, seq_len).num_sequences
        tasks = sequences_of_lengths(self.groups, seq_len).sequences
        return 100 * (tasks / best - 1)

    track_excess_over_global_percent.unit = "% sequences over global BFD"


def _cluster(workers, root):
    try:
        import dask
        import distributed
    except ImportError:  # bfpack[dask] not installed: skip
        raise NotImplementedError("needs dask.distributed") from None
    # Dask's scratch space with the data, which asv removes after the run.
    dask.config.set({"temporary-directory": os.path.join(root, "dask-scratch")})

    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env=ONE_THREAD,
    )
    return cluster, distributed.Client(cluster)


class DaskScaling(Benchmark):
    """200M tokens in 16 files on 1 and 2 one-thread workers, and one process."""

    params = [[1, 2]]
    param_names = ["workers"]
    repeat = (2, 3, 60.0)
    number = 1
    warmup_time = 0
    timeout = 1200

    def setup_cache(self):
        root = os.path.abspath("bfpack-dask")
        shard = num_tokens(SCALING_TOKENS) // FILES
        write_parquet_shards(os.path.join(root, "src"), FILES, shard)
        write_parquet_shards(os.path.join(root, "tiny"), 2, 20_000, row_group_docs=8)
        return root

    def setup(self, root, workers):
        self.src = os.path.join(root, "src")
        self.dst = os.path.join(root, f"out-{os.getpid()}")
        self.cluster, self.client = _cluster(workers, root)
        # Load the kernels in every worker (and in this process) before timing.
        tiny = os.path.join(root, "tiny")
        self._run(tiny, self.client, window_tokens=5_000)
        pack_parquet(tiny, self.dst, SEQ_LEN, window_tokens=5_000, overwrite=True)

    def teardown(self, root, workers):
        self.client.close()
        self.cluster.close()
        shutil.rmtree(self.dst, ignore_errors=True)

    def _run(self, src, client, **options):
        dask_pack_parquet(src, self.dst, SEQ_LEN, client=client, overwrite=True, **options)

    def time_dask(self, root, workers):
        self._run(self.src, self.client)

    def time_single_process(self, root, workers):
        pack_parquet(self.src, self.dst, SEQ_LEN, overwrite=True)

    def track_speedup(self, root, workers):
        """Time on one worker over time on ``workers`` (1 for one worker)."""
        if workers == 1:
            return 1.0
        one, one_client = _cluster(1, root)
        try:
            self._run(os.path.join(root, "tiny"), one_client, window_tokens=5_000)
            alone, together = median_seconds_pair(
                lambda: self._run(self.src, one_client),
                lambda: self._run(self.src, self.client),
                runs=3,
            )
        finally:
            one_client.close()
            one.close()
        return alone / together

    track_speedup.unit = "x one worker"
