"""numba kernels over flat numpy arrays, one module per role.

- :mod:`.pieces`: cutting documents into pieces, counted and sorted by length;
- :mod:`.tree`: the max segment tree the any-fit packers search;
- :mod:`.anyfit`: what every any-fit packer shares (the sequence bound);
- :mod:`.bfd`, :mod:`.ffd`, :mod:`.concat`: one packing method each;
- :mod:`.layout`: the CSR layout of a packing, merging and selecting sequences;
- :mod:`.gather`: copying packed tokens out of Arrow buffers.

Kernels trust their inputs: the public functions in :mod:`bfpack` validate
and convert data before calling them (see :mod:`bfpack._jit` for the types
they pass), and kernels report a bad value by index instead of raising.
Results with more than one array are named tuples (:mod:`.results`).
"""
