"""numba kernels over flat numpy arrays.

Kernels trust their inputs: the public functions in :mod:`bfpack` validate
and convert data before calling them.
"""
