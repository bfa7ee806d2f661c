"""Smoke test of the asv suite in ``asv_bench/benchmarks``.

Runs ``setup``, the benchmark and ``teardown`` once for every benchmark and
every parameter combination, on at most 1,000 documents and 100,000 tokens
(``common.MAX_DOCS``), so a benchmark that no longer runs fails here
instead of silently dropping out of an asv run. A ``timeraw_`` benchmark's
code is run the way asv runs it, in a fresh interpreter
(``common.run_timeraw_code``), with the class's ``smoke_env`` added to the
environment (``FirstCallColdCache`` sets ``NUMBA_DISABLE_JIT=1``: compiling
is what it times, ~10 s; ``FirstCallWarmCache``'s ``setup`` compiles the
same calls in a child process anyway). A class with
``setup_cache`` gets it run as asv does: once (per test here), in a
temporary working directory, its result passed first to ``setup``, the
benchmark and ``teardown``. Also checks the shared baselines (counting sort
floor, the peers, copy floor, pyarrow rewrite) and data that the
benchmarks and ``tools/bench_table.py`` are compared against; the
pure-Python BFD peer must give exactly the bins of ``tests/naive.py``.
"""

import importlib
import inspect
import itertools
import math
import os
import pkgutil
import sys
from pathlib import Path

import numpy as np
import pytest

ASV_BENCH = Path(__file__).resolve().parents[1] / "asv_bench"
os.environ.setdefault("BFPACK_BENCH_SMOKE", "1")
if str(ASV_BENCH) not in sys.path:
    sys.path.insert(0, str(ASV_BENCH))

import benchmarks  # noqa: E402
from benchmarks import baselines, common  # noqa: E402
from naive import naive_bfd  # noqa: E402

SMOKE_DOCS = 1_000
PREFIXES = ("time_", "peakmem_", "track_", "mem_", "timeraw_")


def _modules():
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))
    return [importlib.import_module(f"benchmarks.{name}") for name in names]


def _cases():
    """(id, module, class or None, method name) for every benchmark."""
    cases = []
    for mod in _modules():
        short = mod.__name__.rpartition(".")[2]
        for name, obj in vars(mod).items():
            if name.startswith("_"):  # asv skips these too (base classes)
                continue
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                for attr in dir(obj):
                    if attr.startswith(PREFIXES) and callable(getattr(obj, attr)):
                        cases.append((f"{short}.{name}.{attr}", mod, obj, attr))
            elif (
                inspect.isfunction(obj)
                and name.startswith(PREFIXES)
                and obj.__module__ == mod.__name__
            ):
                cases.append((f"{short}.{name}", mod, None, name))
    return cases


CASES = _cases()


@pytest.fixture(autouse=True)
def smoke_sizes(monkeypatch):
    monkeypatch.setattr(common, "MAX_DOCS", SMOKE_DOCS)


def test_suite_is_found():
    kinds = {case[3].partition("_")[0] for case in CASES}
    assert {"time", "peakmem", "track"} <= kinds
    assert len(CASES) >= 8
    names = {case[0] for case in CASES}
    assert {
        "table.PackTable.time_pack_table",
        "parquet.PackParquet.time_pack_parquet",
        "parquet.PackParquetPeakRSS.track_peak_rss_mb",
        "peers.LightBinPackFFD.time_ffd",
        "peers.BinpackingConstantVolume.track_excess_sequences",
        "peers.PythonBFD.time_python_bfd",
        "compile_time.Import.timeraw_import_bfpack",
        "compile_time.FirstCallColdCache.timeraw_pack_table",
        "compile_time.FirstCallWarmCache.timeraw_pack",
        "analysis.TruncationProfile.time_truncation_profile",
        "analysis.Compare.time_compare",
    } <= names


def _param_grid(owner):
    params = getattr(owner, "params", [])
    names = getattr(owner, "param_names", [])
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):
        params = [params]
    if names:
        assert len(names) == len(params), "param_names does not match params"
    return list(itertools.product(*params))


def _setup_cache(cls, mod, attr, workdir, monkeypatch):
    """Run the benchmark's ``setup_cache`` in ``workdir``, as asv does: ``()`` or ``(result,)``."""
    owner = cls if cls is not None else getattr(mod, attr)
    setup_cache = getattr(owner, "setup_cache", None)
    if setup_cache is None:
        return ()
    monkeypatch.chdir(workdir)
    cache = setup_cache(cls()) if cls is not None else setup_cache()
    return () if cache is None else (cache,)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs(case, tmp_path, monkeypatch):
    _, mod, cls, attr = case
    owner = cls if cls is not None else getattr(mod, attr)
    cache = _setup_cache(cls, mod, attr, tmp_path, monkeypatch)
    ran = 0
    skipped = []
    for params in _param_grid(owner):
        combo = cache + tuple(params)
        if cls is not None:
            bench = cls()
            func = getattr(bench, attr)
            setups = [getattr(bench, "setup", None)]
            teardowns = [getattr(bench, "teardown", None)]
        else:
            func = getattr(mod, attr)
            setups = [getattr(func, "setup", None), getattr(mod, "setup", None)]
            teardowns = [getattr(func, "teardown", None), getattr(mod, "teardown", None)]
        try:
            for setup in filter(None, setups):
                setup(*combo)
        except NotImplementedError as exc:  # asv's way to skip
            skipped.append(f"{params}: {exc}")
            continue
        try:
            result = func(*combo)
        finally:
            for teardown in filter(None, teardowns):
                teardown(*combo)
        ran += 1
        if attr.startswith("track_"):
            assert isinstance(result, (int, float, np.integer, np.floating))
            assert math.isfinite(result)
            assert getattr(func, "unit", None), f"{attr} has no .unit"
        elif attr.startswith("timeraw_"):
            if isinstance(result, tuple):  # (stmt, setup)
                assert len(result) == 2
            assert all(
                isinstance(code, str)
                for code in (result if isinstance(result, tuple) else (result,))
            )
            seconds = common.run_timeraw_code(
                result, env=getattr(owner, "smoke_env", None), timeout=120
            )
            assert seconds >= 0
        elif attr.startswith("mem_"):
            assert result is not None
    if not ran:
        pytest.skip("; ".join(skipped))


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
    assert baselines.peer_sizes("obfd", common.SIZES) == list(common.SIZES)
    assert baselines.peer_sizes("binpacking", common.SIZES) == [100_000]
    assert baselines.peer_sizes("python_bfd", common.SIZES) == [100_000, 1_000_000]


def test_run_timeraw_code_times_stmt_only():
    # As in asv: setup runs first and untimed, in a fresh process.
    seconds = common.run_timeraw_code(("assert x == 1", "import time\nx = 1\ntime.sleep(0.5)"))
    assert 0 <= seconds < 0.4
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        common.run_timeraw_code("1 / 0")


def test_peak_probe():
    if not common.peak_probe_available():
        pytest.skip("/proc/self/clear_refs is not writable here")
    _, extra = common.peak_bytes(lambda: np.ones(8 << 20, dtype=np.uint8))
    assert extra >= 7 << 20


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
