"""The compile policy: how every kernel is compiled, cached and called.

Kernels are compiled lazily. Importing :mod:`bfpack` compiles nothing; a
kernel is compiled on its first call, for the argument types of that call.
Each distinct combination of argument types is a separate compiled variant
(and a separate entry in the on-disk cache), so the public wrappers
normalise what they pass and the variants stay few and known:

- integer inputs (lengths, offsets, piece arrays) are C-contiguous int64,
  and always read-only (:func:`readonly`): numba types a read-only array
  apart from a writable one, so without this a user's writable array and a
  zero-copy Arrow buffer would compile twice;
- per-piece scratch arrays are int32, or int64 from 2**31 pieces on (two
  variants of the kernels that take them);
- token buffers are passed as unsigned integers of their width
  (:func:`token_view`): moving tokens never looks at their values, so a
  float32 column and an int32 column share the ``uint32`` variant, and
  there are four variants of the gather kernel in all.

``tests/test_compile.py`` runs every public path on inputs of every kind and
checks that no kernel gained a variant beyond these.

Caching. ``cache=True`` stores compiled machine code in numba's cache
directory (``__pycache__`` beside the sources, or ``NUMBA_CACHE_DIR``), so
later processes load it instead of compiling (about 0.1 s against several
seconds). numba writes each cache file under a temporary name and renames
it into place, so processes that start cold together each compile and the
last rename wins: concurrent writers never leave a torn file on a local
file system (on a network file system, rename must be atomic there too).
This is the hazard of numba issue 4807 (parallel workers and one cache);
``tests/test_compile.py`` packs in forked and spawned worker processes,
with a cold and a warm cache, and checks their results.

Forking. No kernel uses ``parallel=True``, so numba starts no thread pool
that a ``fork`` could break; a forked child (a PyTorch DataLoader worker,
say) reuses the kernels its parent compiled, and a spawned child loads them
from the cache.

Kernels release the GIL (``nogil=True``): a shard can be encoded by pyarrow
in one thread while the next window is packed in another.
"""

from typing import cast

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)

# Small helpers called from hot loops are inlined into their callers at the
# numba IR level: a call that passes arrays costs reference-count updates.
jit_inline = numba.njit(cache=True, nogil=True, inline="always")

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view of ``arr`` (no copy), the one mutability kernels see."""
    view = arr.view()
    view.flags.writeable = False
    return view


def token_view(arr: np.ndarray) -> np.ndarray:
    """``arr`` reinterpreted as unsigned integers of the same width (no copy)."""
    return arr.view(_UNSIGNED[arr.dtype.itemsize])


def token_bits(value: int, dtype: np.dtype) -> np.generic:
    """``value`` stored as ``dtype``, as the unsigned integer of its bits."""
    bits = np.array(value, dtype=dtype).view(_UNSIGNED[dtype.itemsize])
    return cast(np.generic, bits[()])
