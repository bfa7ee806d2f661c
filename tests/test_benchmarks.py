"""The asv suite in ``asv_bench``, run through asv itself, and what it measures against.

:func:`smoke_run` runs ``asv run --python=same --quick`` on the whole suite
once per test module, in smoke mode (``BFPACK_BENCH_SMOKE=1``: at most 1,000
documents and 100,000 tokens, and the empty-numba-cache ``timeraw_``
children with the JIT off, see ``compile_time.py``), so a benchmark that no
longer runs fails here instead of silently dropping out of an asv run. asv
gets a copy of ``asv_bench/asv.conf.json`` whose results, html and
environment directories, like its machine file (``~/.asv-machine.json``,
through ``HOME``), are in a temporary directory: nothing is written to the
repository. The outcome of every benchmark is read from the results file
asv writes (:func:`outcomes`). ``tools/performance_tables.py`` is checked on
those results, and on a copy with chosen values. The rest checks the
references the benchmarks measure against (counting-sort floor, peers,
copy floor, pyarrow rewrite) and the memory probes; the pure-Python BFD
peer must give exactly the bins of ``tests/naive.py``.
"""

import importlib.util
import json
import math
import mmap
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bfpack.parquet._shards import WRITE_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
ASV_BENCH = ROOT / "asv_bench"
if str(ASV_BENCH) not in sys.path:
    sys.path.insert(0, str(ASV_BENCH))

from benchmarks import baselines, common, peers, training  # noqa: E402
from integrations import need  # noqa: E402
from naive import naive_bfd  # noqa: E402

SMOKE_DOCS = 1_000


@pytest.fixture(autouse=True)
def smoke_sizes(monkeypatch):
    monkeypatch.setattr(common, "MAX_DOCS", SMOKE_DOCS)


# ---------------------------------------------------------------------------
# The suite, run by asv.


def run_asv(workdir, benchmark_dir=ASV_BENCH / "benchmarks", timeout=900):
    """``asv run --python=same --quick`` of ``benchmark_dir``, smoke mode, files in ``workdir``.

    Returns the finished process (stdout and stderr merged, as text) and the
    results directory.
    """
    from asv.util import load_json

    conf = load_json(str(ASV_BENCH / "asv.conf.json"), js_comments=True)
    # The suite's configuration, with every directory asv writes in workdir.
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(benchmark_dir),
        results_dir=str(workdir / "results"),
        html_dir=str(workdir / "html"),
        env_dir=str(workdir / "env"),
    )
    config = workdir / "asv.conf.json"
    config.write_text(json.dumps(conf))
    env = dict(os.environ, HOME=str(workdir), BFPACK_BENCH_SMOKE="1")
    # numba's user-wide cache (used when the package directory is not
    # writable) lives under ~/.cache; keep it where it was despite HOME.
    env.setdefault("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    asv = [sys.executable, "-m", "asv"]
    subprocess.run(
        [*asv, "machine", "--yes", "--config", str(config)],
        env=env,
        check=True,
        capture_output=True,
    )
    # forkserver: each benchmark process forks from one that imported the
    # suite, instead of importing bfpack, numba and pyarrow again (~3x faster).
    command = ["run", "--config", str(config), "--python=same", "--quick", "--show-stderr"]
    command += ["--set-commit-hash", "HEAD", "--launch-method", "forkserver"]
    proc = subprocess.run(
        [*asv, *command],
        env=env,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return proc, workdir / "results"


def results_file(results_dir):
    """The one results file asv wrote (``<machine>/<commit>-<env>.json``)."""
    [path] = [p for p in results_dir.glob("*/*.json") if p.name != "machine.json"]
    return path


def outcomes(results_dir):
    """``{benchmark: "ok" | "failed" | "skipped"}`` for every benchmark asv discovered.

    asv records a result per parameter combination: ``null`` when the
    benchmark raised (or none at all when it could not run), NaN when it was
    skipped (``NotImplementedError`` in ``setup``). One failed combination
    fails the benchmark; otherwise one skipped combination marks it skipped.
    """
    discovered = json.loads((results_dir / "benchmarks.json").read_text())
    run = json.loads(results_file(results_dir).read_text())
    column = run["result_columns"].index("result")
    out = {}
    for name in discovered:
        if name == "version":
            continue
        row = run["results"].get(name)
        values = row[column] if row else None
        if not values or any(v is None for v in values):
            out[name] = "failed"
        elif any(math.isnan(v) for v in values):
            out[name] = "skipped"
        else:
            out[name] = "ok"
    return out


def expected_skips(names):
    """The benchmarks that must be skipped here.

    A peer whose package is missing (lightbinpack and binpacking are not in
    the test extra), the in-process peak probes where ``VmHWM`` cannot be
    reset, the training benchmarks without torch and transformers, and the
    Dask cluster without dask.distributed.
    """
    skips = set()
    for name in names:
        module, cls, _ = name.split(".")
        key = getattr(getattr(peers, cls, None), "peer", None) if module == "peers" else None
        if key is not None and not baselines.PEERS[key].available:
            skips.add(name)
    if not common.peak_probe_available():
        skips |= {n for n in names if n.startswith("pack.PackMemory.")}
        skips.add("table.PackTable.track_memory_ratio")  # returns NaN there
    if training.torch is None:  # torch or transformers missing
        skips |= {n for n in names if n.startswith("training.")}
    if importlib.util.find_spec("distributed") is None:
        skips |= {n for n in names if n.startswith("cluster.DaskScaling.")}
    return skips


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The whole suite, once: ``(process, results directory)``."""
    need("asv")
    return run_asv(tmp_path_factory.mktemp("asv"))


@pytest.mark.slow
def test_every_benchmark_runs(smoke_run):
    proc, results_dir = smoke_run
    assert proc.returncode == 0, proc.stdout[-5000:]
    # asv prints "failed" after a failing benchmark's name.
    assert not [line for line in proc.stdout.splitlines() if line.endswith(" failed")]
    found = outcomes(results_dir)
    assert {
        "pack.Pack.time_pack",
        "pack.Pack.peakmem_pack",
        "pack.PackQuality.track_sequences",
        "pack.PackMemory.track_bytes_per_document",
        "table.PackTable.time_pack_table",
        "parquet.PackParquet.time_pack_parquet",
        "parquet.PackParquetPeakRSS.track_peak_rss_mb",
        "parquet.ParquetLayoutPeakRSS.track_pack_peak_rss_mb",
        "parquet.ParquetLayoutPeakRSS.track_stats_peak_rss_mb",
        "peers.CountingSortFloor.time_counting_sort",
        "peers.PackTruncate.track_excess_sequences",
        "peers.LightBinPackOBFD.track_seconds_gc_on",
        "peers.LightBinPackFFD.time_ffd",
        "peers.BinpackingConstantVolume.track_excess_sequences",
        "peers.PythonBFD.time_python_bfd",
        "compile_time.Import.timeraw_import_bfpack",
        "compile_time.FirstCallColdCache.timeraw_pack_table",
        "compile_time.FirstCallWarmCache.timeraw_pack",
        "analysis.TruncationProfile.time_truncation_profile",
        "analysis.Compare.time_compare",
        "stream.StreamQuality.track_excess_over_global_percent",
        "training.Collate.track_tokens_per_second",
        "balance.BalanceQuality.track_balanced",
        "training.TrainStep.time_train_step",
        "training.TrainStep.track_collate_percent_of_step",
        "cluster.DaskQuality.track_excess_over_global_percent",
        "cluster.DaskScaling.time_dask",
        "cluster.DaskScaling.time_single_process",
        "cluster.DaskScaling.track_speedup",
    } <= set(found)
    assert {n for n, outcome in found.items() if outcome == "failed"} == set()
    skipped = {n for n, outcome in found.items() if outcome == "skipped"}
    assert skipped == expected_skips(found)


@pytest.mark.slow
def test_track_benchmarks_have_units(smoke_run):
    discovered = json.loads((smoke_run[1] / "benchmarks.json").read_text())
    tracks = {n: b for n, b in discovered.items() if n != "version" and b["type"] == "track"}
    assert tracks
    # asv's default unit is "unit": a track_ without .unit.
    assert {n for n, b in tracks.items() if b["unit"] == "unit"} == set()


@pytest.mark.slow
def test_benchmarks_loop_over_the_registry(smoke_run):
    import bfpack

    discovered = json.loads((smoke_run[1] / "benchmarks.json").read_text())
    methods = discovered["pack.Pack.time_pack"]["params"][2]
    assert methods == [repr(m) for m in bfpack.METHODS]


CASES = """
class Cases:
    def time_ok(self):
        pass

    def time_raises(self):
        raise RuntimeError("a broken benchmark")


class Skipped:
    def setup(self):
        raise NotImplementedError("an optional peer is missing")

    def time_skipped(self):
        pass
"""


@pytest.mark.slow
def test_a_raising_benchmark_is_caught(tmp_path):
    need("asv")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "cases.py").write_text(CASES)
    proc, results_dir = run_asv(tmp_path, benchmark_dir=suite, timeout=300)
    assert outcomes(results_dir) == {
        "cases.Cases.time_ok": "ok",
        "cases.Cases.time_raises": "failed",
        "cases.Skipped.time_skipped": "skipped",
    }
    assert [line for line in proc.stdout.splitlines() if line.endswith(" failed")]
    assert "a broken benchmark" in proc.stdout


# ---------------------------------------------------------------------------
# tools/performance_tables.py


def performance_tables(path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "performance_tables.py"), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@pytest.mark.slow
def test_performance_tables_of_the_smoke_run(smoke_run):
    import bfpack

    out = performance_tables(smoke_run[1])
    machine = json.loads(next(smoke_run[1].glob("*/machine.json")).read_text())
    commit = json.loads(results_file(smoke_run[1]).read_text())["commit_hash"]
    assert f"asv machine `{machine['machine']}`" in out and machine["cpu"] in out
    assert f"bfpack commit {commit[:8]}" in out
    for package in ("numpy", "numba", "pyarrow", "lightbinpack"):
        assert f"{package} " in out
    for title in ("**`bfpack.pack`, 10,000,000 documents**", "**Peers", "**Token data**"):
        assert title in out
    assert "**Start-up**" in out
    lines = out.splitlines()
    for method in bfpack.METHODS:
        for seq_len in common.SEQ_LENS:
            assert any(line.startswith(f"| {method} | {seq_len} | ") for line in lines)
    for n in ("1e4", "1e5", "1e6", "1e7"):
        assert any(line.startswith(f"| {n} | ") for line in lines)
    if not expected_skips(outcomes(smoke_run[1])):
        # Every cell of the pack table is filled (the peers' has "–" where a
        # peer does not run).
        pack = out.partition("**`bfpack.pack`")[2].partition("\n\n**")[0]
        assert pack.count("| bfd") == 4 and "–" not in pack


def _set(run, name, combo, value):
    """Set the result of ``name`` at parameter values ``combo`` in asv results ``run``."""
    columns = run["result_columns"]
    row = run["results"][name]
    grid = [[]]
    for values in row[columns.index("params")]:
        grid = [g + [v] for g in grid for v in values]
    row[columns.index("result")][grid.index([repr(v) for v in combo])] = value


@pytest.mark.slow
def test_performance_tables_ratios(smoke_run, tmp_path):
    source = results_file(smoke_run[1])
    machine = tmp_path / source.parent.name
    machine.mkdir()
    shutil.copy(source.parent / "machine.json", machine)
    run = json.loads(source.read_text())
    n, L = 10_000_000, 2048
    _set(run, "pack.Pack.time_pack", (n, L, "bfd"), 0.312)
    _set(run, "peers.CountingSortFloor.time_counting_sort", (n, L), 0.08)
    _set(run, "pack.PackQuality.track_excess_sequences", (n, L, "bfd"), 34)
    _set(run, "pack.PackQuality.track_sequences", (n, L, "bfd"), 4_590_119)
    _set(run, "pack.PackMemory.track_bytes_per_document", (n, L, "bfd", "split"), 35.2)
    _set(run, "pack.PackMemory.track_bytes_per_document", (n, L, "bfd", "truncate"), math.nan)
    _set(run, "peers.PackTruncate.time_pack_truncate", (100_000, L), 0.0028)
    _set(run, "peers.LightBinPackOBFD.time_obfd", (100_000, L), 0.013)
    _set(run, "peers.BinpackingConstantVolume.time_to_constant_volume", (10_000, L), 2.1)
    _set(run, "peers.PackTruncate.time_pack_truncate", (10_000, L), 0.00003)
    _set(run, "peers.PackTruncate.time_pack_truncate", (n, L), 0.234)
    _set(run, "peers.LightBinPackOBFD.track_seconds_gc_on", (n, L), 4.5)
    _set(run, "table.PackTable.time_pack_table", (), 0.148)
    _set(run, "table.PackTable.time_copy_floor", (), 0.064)
    _set(run, "parquet.PackParquet.time_pack_parquet", (), 2.4)
    _set(run, "parquet.PackParquet.time_pyarrow_rewrite", (), 2.0)
    _set(run, "parquet.PackParquetPeakRSS.track_peak_rss_mb", (1,), 534.0)
    _set(run, "parquet.PackParquetPeakRSS.track_peak_rss_mb", (4,), 671.0)
    _set(run, "compile_time.Import.timeraw_import_bfpack", (), 0.31)
    _set(run, "compile_time.FirstCallColdCache.timeraw_pack", (), None)  # failed
    (machine / source.name).write_text(json.dumps(run))
    out = performance_tables(machine)
    assert "| bfd | 2048 | 312 ms | 3.9 | 34 of 4,590,119 | 35 bytes/doc |" in out
    truncate = next(line for line in out.splitlines() if line.startswith("| bfd, `long_docs"))
    assert truncate.endswith("| – |")  # skipped: no peak probe
    assert "| 1e5 | 2.8 ms | 13 ms (4.6×) |" in out
    assert "| 1e4 | 30 µs |" in out and "| 2.1 s (70,000×) |" in out
    assert "`obfd` takes 4.5 s at 1e7 (19× bfpack)" in out
    assert "| `pack_table` | 148 ms | 2.3× a numpy copy" in out
    assert "| `pack_parquet` | 2.4 s | 1.2× reading" in out
    assert "534 MB on 1 shard (1.00×), 671 MB on 4 shards (1.26×)" in out
    assert "| `import bfpack` | 310 ms |" in out
    assert "| first `pack`, empty numba cache (compiling) | – |" in out


# ---------------------------------------------------------------------------
# The shared data and references.


def test_lengths_are_shrunk_and_cached():
    a = common.lengths(10_000_000)
    assert a.shape == (SMOKE_DOCS,) and a.dtype == np.int64
    assert a.min() >= 1 and not a.flags.writeable
    assert common.lengths(10_000_000) is a
    np.testing.assert_array_equal(common.make_lengths(100), a[:100])


@pytest.mark.parametrize("seq_len", [1, 7, 2048])
def test_counting_sort_is_stable_longest_first(seq_len):
    lengths = common.make_lengths(5_000, seed=1)
    lengths[:10] = 0
    order = baselines.counting_sort_order(lengths, seq_len)
    assert order.dtype == np.int64
    expected = np.argsort(-np.minimum(lengths, seq_len), kind="stable")
    np.testing.assert_array_equal(order, expected)


@pytest.mark.parametrize("key", sorted(baselines.PEERS))
def test_peer_bins_are_a_valid_packing(key):
    peer = baselines.PEERS[key]
    if not peer.available:
        pytest.skip(f"{peer.package} is not installed")
    seq_len = 2048
    items = baselines.capped_items(common.make_lengths(3_000, seed=2), seq_len)
    assert max(items) <= seq_len
    bins = peer.pack(items, seq_len)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(items)))
    assert all(sum(items[i] for i in b) <= seq_len for b in bins)
    assert baselines.excess_over_lower_bound(len(bins), sum(items), seq_len) >= 0


@pytest.mark.parametrize("seq_len", [1, 2, 7, 100, 2048])
def test_python_bfd_is_the_naive_bfd(seq_len):
    # Same tie rule as bfpack: the very same bins, not just as many.
    for seed in range(3):
        lengths = common.make_lengths(800, seed=seed) % (3 * seq_len) + 1
        items = baselines.capped_items(lengths, seq_len)
        expected = [[doc for doc, _, _ in seq] for seq in naive_bfd(lengths, seq_len, "truncate")]
        assert baselines.python_bfd(items, seq_len) == expected
    assert baselines.python_bfd([], seq_len) == []
    with pytest.raises(ValueError):
        baselines.python_bfd([seq_len + 1], seq_len)


def test_peer_sizes():
    assert peers.PEER_SIZES == (10_000, *common.SIZES)
    assert baselines.peer_sizes("obfd", peers.PEER_SIZES) == list(peers.PEER_SIZES)
    # Quadratic: only where it finishes in seconds.
    assert baselines.peer_sizes("binpacking", peers.PEER_SIZES) == [10_000]
    assert baselines.peer_sizes("python_bfd", peers.PEER_SIZES) == [10_000, 100_000, 1_000_000]


def test_peak_probe():
    if not common.peak_probe_available():
        pytest.skip("/proc/self/clear_refs is not writable here")
    _, extra = common.peak_bytes(_touch_fresh_pages)
    assert extra >= 7 << 20


def _touch_fresh_pages(size=8 << 20):
    """Write to ``size`` bytes of a new anonymous mapping: resident memory
    that malloc cannot have reused from an earlier test's freed buffers."""
    with mmap.mmap(-1, size) as m:
        np.frombuffer(m, dtype=np.uint8)[:] = 1


def test_token_table_is_shrunk_cached_and_read_only():
    table = common.token_table(common.TABLE_TOKENS)
    values = common.values_view(table)
    assert common.num_tokens(common.TABLE_TOKENS) == SMOKE_DOCS * 100
    assert SMOKE_DOCS * 100 <= values.shape[0] < SMOKE_DOCS * 100 + 100_000
    assert values.dtype == np.int32 and not values.flags.writeable
    assert 0 <= values.min() and values.max() < common.VOCAB
    assert common.token_table(common.TABLE_TOKENS) is table
    lens = np.diff(table.column("input_ids").chunk(0).offsets.to_numpy())
    np.testing.assert_array_equal(lens, common.make_lengths(lens.shape[0]))


def test_copy_floor_copies():
    values = common.values_view(common.tiny_token_table(2048))
    out = baselines.copy_floor(values)
    assert out.flags.writeable and not np.shares_memory(out, values)
    np.testing.assert_array_equal(out, values)


def test_pyarrow_rewrite_keeps_the_rows(tmp_path):
    import pyarrow.dataset as ds

    shards = common.write_parquet_shards(tmp_path / "src", 2, 5_000, row_group_docs=3)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "stale").write_text("removed first, like pack_parquet(overwrite=True)")
    rows = baselines.pyarrow_rewrite(tmp_path / "src", dst)
    assert rows == sum(s["documents"] for s in shards)
    assert sorted(p.name for p in dst.iterdir()) == ["part-00000.parquet"]
    assert ds.dataset(dst).to_table().equals(ds.dataset(tmp_path / "src").to_table())
    # Written as bfpack writes its shards.
    column = pq.read_metadata(dst / "part-00000.parquet").row_group(0).column(0)
    assert column.compression == WRITE_OPTIONS["compression"].upper()
    assert not column.is_stats_set


def test_fresh_process_status_is_the_childs_own():
    # This process holds a 64 MB ballast (and numpy, numba, pyarrow); the
    # child reports its own peak, not this one (as ru_maxrss would).
    ballast = np.ones(64 << 20, dtype=np.uint8)
    small = common.fresh_process_status("x = 1\n")
    big = common.fresh_process_status("import sys\nb = bytearray(int(sys.argv[1]))\n", 48 << 20)
    assert small["VmHWM"] > 0 and small["VmRSS"] <= small["VmHWM"]
    assert small["VmHWM"] < 48 << 10  # KiB: a bare interpreter, not this process
    assert big["VmHWM"] - small["VmHWM"] > 40 << 10
    del ballast
