"""The compile policy of ``bfpack._jit``: few and known compiled variants,
and packing in forked and spawned workers with a cold and a warm cache."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from bfpack import _jit

WORKLOAD = os.path.join(os.path.dirname(__file__), "compile_workload.py")
JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
needs_jit = pytest.mark.skipif(JIT_DISABLED, reason="nothing is compiled with NUMBA_DISABLE_JIT")

#: Compiled variants each kernel may have after every public path has run
#: on inputs of every kind. Scratch indices come as int32 or int64 (the
#: kernels that take them have two variants); tokens as unsigned integers
#: of 1, 2, 4 or 8 bytes (four variants of the gather); everything else one.
VARIANTS = {
    "anyfit.max_new_sequences": 1,
    "balance.deal_windows": 1,
    "balance.shuffle_rows": 1,
    "balance.window_keys": 1,
    "bfd.best_fit": 2,
    "concat.concatenate": 1,
    "ffd.first_fit": 2,
    "gather.gather_piece_lengths": 1,
    "gather.gather_tokens": 4,
    "gather.position_ids": 1,
    "gather.row_offsets": 1,
    "layout._piece_starts": 1,
    "layout.lay_out": 2,
    "layout.merge_open": 1,
    "layout.take_sequences": 1,
    "pieces.count_pieces": 1,
    "pieces.sort_pieces": 2,
    "tree.tree_leftmost_at_least": 1,
    "tree.tree_set": 1,
    "tree.tree_width": 1,
}


def run_child(*args, cache_dir=None):
    """Run the workload; ``cache_dir`` None: the cache of this test session."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run(
        [sys.executable, WORKLOAD, *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_jit
def test_variants_are_few_and_known():
    signatures = run_child("variants")
    assert set(signatures) == set(VARIANTS), "a kernel was added or removed: update VARIANTS"
    extra = {name: sigs for name, sigs in signatures.items() if len(sigs) > VARIANTS[name]}
    assert not extra, f"kernels compiled for more argument types than the policy allows: {extra}"
    # Kernels that only read their arrays see them read-only, whatever the
    # caller passed (writable arrays, Arrow buffers, lists).
    for name in (
        "pieces.count_pieces",
        "concat.concatenate",
        "layout.take_sequences",
        "gather.gather_piece_lengths",
    ):
        for sig in signatures[name]:
            arrays = re.findall(r"Array\([^)]*\)", sig)
            assert arrays and all("'C', True" in a for a in arrays), (name, sig)


@needs_jit
@pytest.mark.slow
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_pack_alike_with_a_cold_and_a_warm_cache(tmp_path, start):
    cache = tmp_path / "shared-cache"
    # Cold: two workers compile at once and both write the same cache files.
    cold = run_child("workers", start, "cold", cache_dir=cache)
    assert cold["same"], cold
    assert any(name.endswith(".nbi") for name in os.listdir(_cache_files(cache)))
    # Warm: the parent packs first (and the cache is filled).
    warm = run_child("workers", start, "warm", cache_dir=cache)
    assert warm["same"], warm
    if start == "spawn":
        # A spawned worker loads every kernel from the cache: nothing compiles.
        assert warm["misses"] == [0, 0] and min(warm["hits"]) > 0, warm


#: A child that packs token data (a column of two chunks, pack_table and
#: pack_parquet) and prints, as JSON, every function numba compiled meanwhile.
_WARM_CHILD = """
import json, os, sys, tempfile
import numba.core.event as event
import pyarrow as pa, pyarrow.parquet as pq
import bfpack

compiled = []

class Seen(event.Listener):
    def on_start(self, e):
        f = e.data["dispatcher"].py_func
        compiled.append(f"{f.__module__}.{f.__qualname__}")

    def on_end(self, e):
        pass

ids = pa.chunked_array([pa.array([[1, 2, 3], [4]]), pa.array([[5, 6, 7, 8, 9]])])
table = pa.table({"input_ids": ids})
with event.install_listener("numba:compile", Seen()), tempfile.TemporaryDirectory() as tmp:
    bfpack.pack_table(table, 4, position_ids=True, pad_value=0, seed=1)
    pq.write_table(table, os.path.join(tmp, "a.parquet"))
    bfpack.pack_parquet(os.path.join(tmp, "a.parquet"), os.path.join(tmp, "o"), 4)
print(json.dumps(compiled))
"""


@needs_jit
@pytest.mark.slow
def test_a_warm_cache_leaves_nothing_to_compile(tmp_path):
    # Kernels take no numba.typed.List arguments: numba compiles their helpers
    # in every process (it never caches them), about 0.9 s of every process
    # that packs token data, however warm the cache.
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [
        subprocess.run([sys.executable, "-c", _WARM_CHILD], capture_output=True, text=True, env=env)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    cold, warm = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert "bfpack._kernels.gather.gather_tokens" in cold  # the listener sees compiles
    assert warm == []


def _cache_files(cache):
    """The folder of numba's cache files for the bfpack kernels under ``cache``."""
    for folder, _, files in os.walk(cache):
        if any(f.endswith(".nbi") for f in files):
            return folder
    raise AssertionError(f"no numba cache index under {cache}")


# ---------------------------------------------------------------------------
# Packing where the cache cannot be written: a copy of the package
# that no process can cache into, HOME not writable, NUMBA_CACHE_DIR unset.

READONLY_WORKLOAD = os.path.join(os.path.dirname(__file__), "readonly_workload.py")
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _package_copy(root):
    """A copy of the bfpack sources (no caches) under ``root``."""
    shutil.copytree(
        os.path.join(PACKAGE, "bfpack"),
        root / "bfpack",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root


def _run_workload(mode, package_root, workdir, prefix=()):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME") and not k.startswith("COVERAGE")
    }
    # A file: no process, root included, can create ~/.cache under it.
    env.update(HOME=os.devnull, PYTHONPATH=str(package_root), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [*prefix, sys.executable, READONLY_WORKLOAD, mode, str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(workdir),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["bfpack"] == str(package_root / "bfpack"), summary
    return summary


@needs_jit
@pytest.mark.slow
def test_import_and_pack_without_a_writable_cache_warn_once(tmp_path):
    root = _package_copy(tmp_path / "site")
    # A file where numba would put the cache beside the sources: not even
    # root can write a cache there.
    for folder in ("bfpack", "bfpack/_kernels"):
        (root / folder / "__pycache__").write_text("")
    work = tmp_path / "work"
    work.mkdir()
    summary = _run_workload("uncached", root, work)
    # The CLI, a second process that compiles again, runs in .ci/run's
    # read-only-install leg.
    assert len(summary["warnings"]) == 1, summary


def _readonly_prefix():
    """How to run a process for which a ``chmod a-w`` directory is read-only:
    directly, or as root in a new user namespace (without CAP_DAC_OVERRIDE
    over the host's files); None if neither works."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--user", "true"], capture_output=True).returncode == 0:
        return (unshare, "--user")
    return None


@needs_jit
@pytest.mark.slow
def test_a_prebuilt_readonly_cache_is_loaded(tmp_path):
    prefix = _readonly_prefix()
    if prefix is None:
        pytest.skip("running as root without user namespaces: no directory is read-only")
    root = _package_copy(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    # Built at install time, in the package's __pycache__ ...
    _run_workload("build", root, work)
    kernels = root / "bfpack" / "_kernels" / "__pycache__"
    assert any(name.endswith(".nbi") for name in os.listdir(kernels))
    # ... then read-only for whoever runs it.
    subprocess.run(["chmod", "-R", "a-w", str(root)], check=True)
    try:
        summary = _run_workload("prebuilt", root, work, prefix)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=True)
    assert summary["hits"] > 0 and summary["misses"] == 0, summary


# The cache policy's parts, in this process (with or without the JIT).


@pytest.fixture
def kernel_file(tmp_path, monkeypatch):
    """A function in a module of its own, with no writable cache location:
    its ``__pycache__`` is a file, HOME is a file, NUMBA_CACHE_DIR unset."""
    import importlib.util

    import numba

    (tmp_path / "kern.py").write_text("def twice(x):\n    return 2 * x\n")
    (tmp_path / "__pycache__").write_text("")
    spec = importlib.util.spec_from_file_location("kern", tmp_path / "kern.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("HOME", os.devnull)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(_jit, "_warned", False)
    return module.twice


def _cache_warnings(record):
    return [w for w in record if "bfpack compiles its kernels in memory" in str(w.message)]


def test_no_cache_location_warns_once_per_process(kernel_file):
    cache = _jit._cache_for(kernel_file)
    assert isinstance(cache, _jit._NoCache)
    with pytest.warns(UserWarning) as record:
        cache.save_overload(None, None)
        cache.save_overload(None, None)
        _jit._cache_for(kernel_file).save_overload(None, None)
    [warning] = _cache_warnings(record)
    assert "'twice'" in str(warning.message) and "NUMBA_CACHE_DIR" in str(warning.message)


def test_a_prebuilt_cache_is_found_by_its_index(kernel_file):
    folder = os.path.dirname(kernel_file.__code__.co_filename)
    os.remove(os.path.join(folder, "__pycache__"))
    os.mkdir(os.path.join(folder, "__pycache__"))
    locate = _jit._PrebuiltCacheLocator.from_function
    assert locate(kernel_file, kernel_file.__code__.co_filename) is None
    version = f"{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}"
    index = os.path.join(folder, "__pycache__", f"kern.twice-1.py{version}.nbi")
    open(index, "w").close()
    locator = locate(kernel_file, kernel_file.__code__.co_filename)
    assert locator.get_cache_path() == os.path.join(folder, "__pycache__")
    # Tried after the writable places, before the user-wide directory.
    names = [cls.__name__.lstrip("_") for cls in _jit._CacheImpl._locator_classes]
    at = names.index("PrebuiltCacheLocator")
    assert names[:at] == ["UserProvidedCacheLocator", "InTreeCacheLocator"], names
    assert names[at + 1] == "UserWideCacheLocator", names


def test_a_cache_that_fails_to_read_or_write_warns_and_goes_on(kernel_file, monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    cache = _jit._cache_for(kernel_file)
    assert isinstance(cache, _jit._FunctionCache)

    def fail(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_jit.caching.FunctionCache, "save_overload", fail)
    monkeypatch.setattr(_jit.caching.FunctionCache, "load_overload", fail)
    with pytest.warns(UserWarning) as record:
        assert cache.load_overload(None, None) is None
        cache.save_overload(None, None)
    [warning] = _cache_warnings(record)
    assert "cannot be read" in str(warning.message) and str(tmp_path) in str(warning.message)


# A damaged cache entry (a file cut short by a full disk or a killed
# compile, or overwritten) is a missing one: compiled again, said once.

#: A child that packs a little and prints the number of sequences.
_PACK_CHILD = """
import numpy as np
import bfpack
print(bfpack.pack(np.array([3, 4, 5, 100, 60]), 128).stats().sequences)
"""


def _damage(path, how):
    if how == "truncated":
        os.truncate(path, os.path.getsize(path) // 2)
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.write_bytes(b"")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A numba cache holding the kernels of ``_PACK_CHILD``."""
    cache = tmp_path_factory.mktemp("warm-cache")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    run = subprocess.run(
        [sys.executable, "-c", _PACK_CHILD], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return cache


@needs_jit
@pytest.mark.parametrize(
    "suffix, how",
    [(".nbi", "truncated"), (".nbc", "truncated"), (".nbc", "garbage"), (".nbi", "empty")],
)
def test_a_damaged_cache_entry_is_compiled_again_and_said_once(warm_cache, tmp_path, suffix, how):
    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    folder = _cache_files(cache)
    damaged = [
        p for p in sorted(pathlib.Path(folder).iterdir()) if p.name.startswith("bfd.best_fit")
    ]
    for path in damaged:
        if path.name.endswith(suffix):
            _damage(path, how)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    runs = [
        subprocess.run([sys.executable, "-c", _PACK_CHILD], capture_output=True, text=True, env=env)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.split() == ["2"]
    [warning] = [line for line in runs[0].stderr.splitlines() if "UserWarning" in line]
    assert f"numba's cache in {folder} held a damaged entry (bfd.best_fit" in warning
    # The entry was written again: the next process loads it, and says nothing.
    assert "Warning" not in runs[1].stderr, runs[1].stderr
    assert all(p.stat().st_size > 0 for p in damaged if p.exists())


def test_a_damaged_index_or_data_file_is_removed_and_said_once(kernel_file, monkeypatch, tmp_path):
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_jit, "_warned_damaged", False)
    files = _jit._cache_for(kernel_file)._cache_file
    os.makedirs(files._cache_path, exist_ok=True)
    index = pathlib.Path(files._index_path)
    data = pathlib.Path(files._data_path("kern.twice-1.py.1.nbc"))
    for path in (index, data):
        path.write_bytes(b"\x80\x05garbage")
    with pytest.warns(UserWarning) as record:
        assert files._load_index() == {}
        assert files._load_data(data.name) is None
    assert not index.exists() and not data.exists()
    [warning] = [w for w in record if "damaged entry" in str(w.message)]
    assert str(warning.message).startswith(f"numba's cache in {files._cache_path} held")
    assert index.name in str(warning.message)
    # A file that cannot be read at all is the caller's to report.
    data.mkdir()
    with pytest.raises(OSError):
        files._load_data(data.name)
