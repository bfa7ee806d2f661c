"""Child processes of ``test_compile.py`` (run as ``python compile_workload.py MODE``).

``variants``: run every public path on inputs of every kind, then print the
compiled variants of every kernel as JSON.

``workers START CACHE``: pack the same data in two worker processes started
with ``START`` ("fork" or "spawn"); CACHE "cold" means the parent compiles
nothing first, "warm" that it packs once before starting them. Prints, as
JSON, whether every worker's result equals the parent's, and the workers'
numba cache hits and misses.

``NUMBA_CACHE_DIR`` is set by the caller.
"""

import hashlib
import json
import multiprocessing
import os
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import bfpack
import bfpack.methods
from bfpack import _kernels, balance


def dispatchers():
    """Every numba dispatcher of the kernel modules, by ``module.name``."""
    import importlib
    import pkgutil

    found = {}
    for info in pkgutil.iter_modules(_kernels.__path__):
        module = importlib.import_module(f"bfpack._kernels.{info.name}")
        for name, obj in vars(module).items():
            if hasattr(obj, "signatures") and hasattr(obj, "py_func"):
                if obj.py_func.__module__ == module.__name__:
                    found[f"{info.name}.{name}"] = obj
    return found


def token_tables():
    """Tables of every token type, list and large_list, sliced and chunked."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 40, 60)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    types = [
        pa.int8(),
        pa.uint8(),
        pa.int16(),
        pa.float16(),
        pa.int32(),
        pa.uint32(),
        pa.float32(),
        pa.int64(),
        pa.uint64(),
        pa.float64(),
    ]
    columns = {}
    for t in types:
        ints = rng.integers(0, 100, offsets[-1])
        # float16 from numpy: pyarrow before 15 cannot cast to it.
        values = pa.array(ints.astype(np.float16)) if t == pa.float16() else pa.array(ints).cast(t)
        columns[str(t)] = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
        columns[f"large {t}"] = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    table = pa.table(columns)
    return [table, table.slice(7, 40), pa.concat_tables([table.slice(0, 10), table.slice(10)])]


def run_variants():
    lengths = np.random.default_rng(1).integers(0, 5000, 3000)
    frozen = lengths.copy()
    frozen.flags.writeable = False
    inputs = [
        lengths,
        frozen,
        lengths.tolist(),
        lengths.astype(np.int32),
        pa.array(lengths),
        pa.chunked_array([lengths[:100], lengths[100:]]),
        lengths.astype(np.float64),
    ]
    for method in bfpack.METHODS:
        for long_docs in ("split", "truncate"):
            for data in inputs:
                plan = bfpack.pack(data, 1024, method=method, long_docs=long_docs)
            plan.take([0, 0])
            packer = bfpack.StreamPacker(1024, method=method, long_docs=long_docs, max_open=5)
            for lo in range(0, 3000, 700):
                packer.step(lengths[lo : lo + 700], last=lo + 700 >= 3000)
    # The int64 scratch path, from 2**31 pieces on.
    bfpack.methods._INT32_INDEX_LIMIT = 0
    for method in bfpack.METHODS:
        bfpack.pack(lengths, 1024, method=method)
    bfpack.methods._INT32_INDEX_LIMIT = 2**31
    for table in token_tables():
        for kwargs in ({}, {"pad_value": 3, "position_ids": True, "seed": 1}):
            bfpack.pack_table(table, 16, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        # Parquet has float16 from pyarrow 15 on; the other types suffice here.
        table = token_tables()[0]
        table = table.select([n for n in table.column_names if "halffloat" not in n])
        pq.write_table(table, os.path.join(tmp, "src.parquet"), row_group_size=7)
        for method in bfpack.METHODS:
            bfpack.pack_parquet(
                os.path.join(tmp, "src.parquet"),
                os.path.join(tmp, "out"),
                16,
                method=method,
                window_tokens=200,
                overwrite=True,
                position_ids=True,
                pad_value=0,
            )
    bfpack.truncation_profile(lengths, 512)
    bfpack.compare(lengths, 512)
    for costs in (lengths, frozen, lengths.tolist(), lengths.astype(np.float32)):
        for batch_size in (1, 3):
            balance.balanced_order(costs, num_replicas=4, batch_size=batch_size, window=3)
    balance.simulate(lengths, num_replicas=4)
    print(
        json.dumps({name: [str(sig) for sig in d.signatures] for name, d in dispatchers().items()})
    )


def work(_):
    """Pack lengths and a token table; return a digest of the results and
    this process's cache hits and misses."""
    lengths = np.random.default_rng(2).integers(0, 5000, 20_000)
    plan = bfpack.pack(lengths, 2048)
    table = token_tables()[2].select(["int32"])
    packed = bfpack.pack_table(table, 16, position_ids=True)
    digest = hashlib.sha256(plan.piece_doc.tobytes() + plan.seq_offsets.tobytes())
    for column in packed.columns:
        digest.update(str(column.to_pylist()).encode())
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers().values())
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers().values())
    return digest.hexdigest(), hits, misses


def run_workers(start, cache):
    parent = work(None) if cache == "warm" else None
    context = multiprocessing.get_context(start)
    with context.Pool(2) as pool:
        results = pool.map(work, range(2))
    expected = parent[0] if parent else work(None)[0]
    print(
        json.dumps(
            {
                "same": all(r[0] == expected for r in results),
                "hits": [r[1] for r in results],
                "misses": [r[2] for r in results],
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "variants":
        run_variants()
    else:
        run_workers(sys.argv[2], sys.argv[3])
