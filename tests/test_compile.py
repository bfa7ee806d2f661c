"""The compile policy of ``bfpack._jit``: few and known compiled variants,
and packing in forked and spawned workers with a cold and a warm cache."""

import json
import os
import re
import subprocess
import sys

import pytest

WORKLOAD = os.path.join(os.path.dirname(__file__), "compile_workload.py")
JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
needs_jit = pytest.mark.skipif(JIT_DISABLED, reason="nothing is compiled with NUMBA_DISABLE_JIT")

#: Compiled variants each kernel may have after every public path has run
#: on inputs of every kind. Scratch indices come as int32 or int64 (the
#: kernels that take them have two variants); tokens as unsigned integers
#: of 1, 2, 4 or 8 bytes (four variants of the gather); everything else one.
VARIANTS = {
    "anyfit.max_new_sequences": 1,
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
    "tree.tree_build": 1,
    "tree.tree_leftmost_at_least": 2,
    "tree.tree_set": 2,
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


def _cache_files(cache):
    """The folder of numba's cache files for the bfpack kernels under ``cache``."""
    for folder, _, files in os.walk(cache):
        if any(f.endswith(".nbi") for f in files):
            return folder
    raise AssertionError(f"no numba cache index under {cache}")
