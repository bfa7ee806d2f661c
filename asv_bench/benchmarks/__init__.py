"""asv benchmarks for bfpack (see ../asv.conf.json and ../README.md).

``common`` holds the shared data, settings and memory probes, ``baselines``
what bfpack is measured against (the counting-sort floor, the peers, the
copy floor, the pyarrow rewrite); the other modules hold the benchmarks.
``tools/performance_tables.py`` turns the results of one run into the
documentation's performance page, and ``tests/test_benchmarks.py`` runs the
suite through asv on tiny inputs.
"""
