"""The one place that decides how kernels are compiled.

Every kernel module imports ``jit`` from here, so compilation options are
consistent and importing :mod:`bfpack` compiles nothing: numba compiles a
kernel on its first call and, with ``cache=True``, stores the machine code
on disk so the next process loads it instead of compiling again.
"""

import numba

jit = numba.njit(cache=True, nogil=True)

# Small helpers called from hot loops are inlined into their callers at the
# numba IR level: a call that passes arrays costs reference-count updates.
jit_inline = numba.njit(cache=True, nogil=True, inline="always")
