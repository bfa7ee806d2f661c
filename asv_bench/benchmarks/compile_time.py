"""Start-up costs, each in a fresh interpreter (asv ``timeraw_`` benchmarks).

A ``timeraw_`` benchmark returns code, ``stmt`` or ``(stmt, setup)``; asv
runs ``setup`` and then times one run of ``stmt`` in a new ``python``
process (``asv_runner.benchmarks.timeraw``). So these times hold nothing of
the parent's warm state:

- :class:`Import`: ``import bfpack`` (which compiles nothing), next to
  importing its dependencies alone.
- :class:`FirstCallColdCache`: the first ``bfpack.pack`` / ``pack_table``
  call on a tiny input with an empty numba cache, i.e. compiling every
  kernel the call needs. The child points ``NUMBA_CACHE_DIR`` at a fresh
  temporary directory before numba is imported (removed when it exits).
- :class:`FirstCallWarmCache`: the same first calls when the kernels are
  in numba's on-disk cache, as for every run after the first:
  ``setup_cache`` fills a cache directory in a child process once per asv
  run, and the timed child loads the kernels from it.

Imports and building the input happen in ``setup`` (untimed), so the
first-call times are compilation (or cache loading) plus a call on ten
documents (microseconds).

In a smoke run (``BFPACK_BENCH_SMOKE``) the empty-cache children run with
``NUMBA_DISABLE_JIT=1``: compiling (~10 s for both) is what they time, and a
smoke run only checks that the code runs.
"""

import os
import subprocess
import sys

from .common import SMOKE, Benchmark, tiny_lengths

SEQ_LEN = 2048

#: ``stmt`` of the first-call benchmarks.
PACK_STMT = f"bfpack.pack(lengths, {SEQ_LEN})"
PACK_TABLE_STMT = f"bfpack.pack_table(table, {SEQ_LEN})"

_FRESH_CACHE = """
import atexit, os, shutil, tempfile
_cache = tempfile.mkdtemp(prefix="bfpack-numba-")
atexit.register(shutil.rmtree, _cache, True)
os.environ["NUMBA_CACHE_DIR"] = _cache
"""


def cache_code(cache_dir=None):
    """Child code that sets numba's cache directory before anything imports numba.

    ``cache_dir=None``: a fresh empty directory, removed when the child exits.
    """
    if cache_dir is None:
        return _FRESH_CACHE
    return f"import os\nos.environ['NUMBA_CACHE_DIR'] = {str(cache_dir)!r}\n"


def input_code():
    """Child code that imports bfpack and builds ``lengths`` and ``table``.

    The inputs of the warm-up calls of the other benchmarks
    (:func:`.common.tiny_lengths`, :func:`.common.tiny_token_table`: ten
    documents on both sides of ``seq_len``, read-only buffers), written
    out so that the child imports nothing from this suite.
    """
    lens = tiny_lengths(SEQ_LEN).tolist()
    return f"""
import numpy as np
import pyarrow as pa
import bfpack
lengths = np.array({lens!r}, dtype=np.int64)
lengths.flags.writeable = False
offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int32)
np.cumsum(lengths, out=offsets[1:])
values = np.arange(int(offsets[-1]), dtype=np.int32)
values.flags.writeable = False
table = pa.table({{"input_ids": pa.ListArray.from_arrays(pa.array(offsets),
                                                        pa.array(values))}})
"""


def first_call_code(stmt, cache_dir=None):
    """``(stmt, setup)`` timing ``stmt`` on the tiny inputs with this numba cache."""
    return stmt, cache_code(cache_dir) + input_code()


class Import(Benchmark):
    """``import bfpack`` in a fresh interpreter, and its dependencies alone."""

    warmup_time = 0.0

    def timeraw_import_bfpack(self):
        return "import bfpack"

    def timeraw_import_dependencies(self):
        return "import numba, numpy, pyarrow"


class FirstCallColdCache(Benchmark):
    """First call with an empty numba cache: compiling its kernels (seconds)."""

    repeat = (2, 5, 60.0)
    warmup_time = 0.0
    timeout = 600.0
    # asv_runner adds ``env`` to the timed child's environment; a smoke run
    # needs the code to run, not ~10 s of compiling.
    env = {"NUMBA_DISABLE_JIT": "1"} if SMOKE else {}

    def timeraw_pack(self):
        return first_call_code(PACK_STMT)

    def timeraw_pack_table(self):
        return first_call_code(PACK_TABLE_STMT)


class FirstCallWarmCache(Benchmark):
    """First call with the kernels in numba's on-disk cache: loading them."""

    warmup_time = 0.0
    timeout = 600.0

    def setup_cache(self):
        # Runs once for both benchmarks, in asv's temporary working
        # directory (removed after them); the child compiles, a few seconds.
        cache_dir = os.path.abspath("numba-cache")
        stmt, setup = first_call_code(f"{PACK_STMT}\n{PACK_TABLE_STMT}\n", cache_dir)
        subprocess.run([sys.executable, "-c", setup + stmt], check=True)
        return cache_dir

    def timeraw_pack(self, cache_dir):
        return first_call_code(PACK_STMT, cache_dir)

    def timeraw_pack_table(self, cache_dir):
        return first_call_code(PACK_TABLE_STMT, cache_dir)
