"""asv benchmarks for bfpack (see ../asv.conf.json).

``common`` holds the shared data and settings, ``baselines`` the counting
sort floor and the lightbinpack wrapper that ``tools/bench_table.py`` uses
too; ``pack`` and ``peers`` hold the benchmarks.
"""
