#!/usr/bin/env python
"""Print the bfpack benchmark table (Markdown), measured in one process.

Times ``bfpack.pack`` (bfd, ffd, concat), lightbinpack's ``obfd`` (C++
best-fit decreasing) and the counting-sort floor on the same lognormal
lengths, and the peak memory of each call beyond what was already resident.
Data and baselines come from ``asv_bench/benchmarks`` (``common`` and
``baselines``), so this table and the asv suite measure the same thing.

Usage::

    python tools/bench_table.py            # N = 1e6 and 1e7
    python tools/bench_table.py --quick    # N = 1e6 only

Run it on an idle machine: it reports medians, but a busy neighbour still
shifts them.
"""

import argparse
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "asv_bench"))

import numba  # noqa: E402
import numpy as np  # noqa: E402

import bfpack  # noqa: E402
from benchmarks import baselines, common  # noqa: E402

FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000,)
SEQ_LEN = 2048
LONG_SEQ_LEN = 8192


# ---------------------------------------------------------------------------
# Measuring

def median_seconds(func, *, min_runs=3, max_runs=7, budget=15.0, gc_off=True):
    """Median wall time of ``func()`` after one untimed warm-up call.

    Runs at least ``min_runs`` and at most ``max_runs`` times, stopping once
    ``budget`` seconds have been spent timing. Like ``timeit`` (and asv), the
    garbage collector is off during each call unless ``gc_off`` is False; the
    result is dropped inside the timed region, as asv does.
    """
    func()
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (
            len(times) < min_runs or time.perf_counter() - start < budget):
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            t0 = time.perf_counter()
            func()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return statistics.median(times), len(times)


class Row:
    def __init__(self, method, n, seq_len, seconds, runs, peak, sequences=None,
                 excess=None, obfd_ref=True):
        self.method, self.n, self.seq_len = method, n, seq_len
        self.seconds, self.runs, self.peak = seconds, runs, peak
        self.sequences, self.excess = sequences, excess
        # Whether "obfd / this" applies (same problem size, seq_len 2048).
        self.obfd_ref = obfd_ref


def measure_pack(lengths, seq_len, method, long_docs="split"):
    bfpack.pack(common.tiny_lengths(seq_len), seq_len, method=method,
                long_docs=long_docs)          # JIT warm-up (same signature)

    def call():
        return bfpack.pack(lengths, seq_len, method=method, long_docs=long_docs)

    seconds, runs = median_seconds(call)
    plan, peak = common.peak_bytes(call) if PEAK else (call(), None)
    stats = plan.stats()
    label = f"bfpack {method}" + (" (truncate)" if long_docs == "truncate" else "")
    return Row(label, lengths.shape[0], seq_len, seconds, runs, peak,
               stats.sequences, stats.excess_sequences)


def measure_counting_sort(lengths, seq_len):
    baselines.warm_counting_sort()

    def call():
        return baselines.counting_sort_order(lengths, seq_len)

    seconds, runs = median_seconds(call)
    peak = common.peak_bytes(call)[1] if PEAK else None
    return Row("counting sort (floor)", lengths.shape[0], seq_len, seconds,
               runs, peak)


def measure_obfd(lengths, seq_len):
    items = baselines.obfd_input(lengths, seq_len)
    total = sum(items)

    def call():
        return baselines.obfd(items, seq_len)

    rows = []
    for gc_off in (True, False):
        seconds, runs = median_seconds(call, min_runs=3, max_runs=5,
                                       budget=20.0, gc_off=gc_off)
        label = "lightbinpack obfd" + ("" if gc_off else " (gc on)")
        rows.append(Row(label, lengths.shape[0], seq_len, seconds, runs, None,
                        obfd_ref=gc_off))
    bins, peak = common.peak_bytes(call) if PEAK else (call(), None)
    for row in rows:
        row.sequences = len(bins)
        row.excess = baselines.excess_over_lower_bound(len(bins), total, seq_len)
    rows[0].peak = peak
    del bins, items
    gc.collect()
    return rows


# ---------------------------------------------------------------------------
# Reporting

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_describe():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no", "--", "bfpack"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty bfpack/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header():
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lbp = baselines.lightbinpack_version() or "not installed"
    return (
        f"Machine: {cpu_model()}, {cores} cores ({usable} usable), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, lightbinpack {lbp}, "
        f"bfpack {bfpack.__version__} (git {git_describe()}); "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"load average at start {load:.2f}.")


def fmt_seconds(s):
    return f"{s:.4f}" if s < 0.1 else f"{s:.3f}" if s < 10 else f"{s:.1f}"


def table(rows):
    floor = {(r.n, r.seq_len): r.seconds for r in rows
             if r.method.startswith("counting sort")}
    obfd = {(r.n, r.seq_len): r.seconds for r in rows
            if r.method == "lightbinpack obfd"}
    out = ["| method | N | seq_len | median s (runs) | × counting sort | "
           "obfd time ÷ this | sequences | excess over lower bound | "
           "peak bytes/doc beyond input |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        key = (r.n, r.seq_len)
        ratio_floor = f"{r.seconds / floor[key]:.1f}" if key in floor else "–"
        if key in obfd and r.obfd_ref and not r.method.startswith("counting"):
            ratio_obfd = f"{obfd[key] / r.seconds:.1f}"
        else:
            ratio_obfd = "–"
        seqs = f"{r.sequences:,}" if r.sequences is not None else "–"
        excess = f"{r.excess:,}" if r.excess is not None else "–"
        peak = f"{r.peak / r.n:.1f}" if r.peak is not None else "–"
        out.append(f"| {r.method} | {r.n:,} | {r.seq_len} | "
                   f"{fmt_seconds(r.seconds)} ({r.runs}) | {ratio_floor} | "
                   f"{ratio_obfd} | {seqs} | {excess} | {peak} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 1e6 only (default: 1e6 and 1e7)")
    args = parser.parse_args(argv)

    global PEAK
    PEAK = common.peak_probe_available()
    common.MAX_DOCS = None  # full sizes even if BFPACK_BENCH_SMOKE is set
    sizes = QUICK_SIZES if args.quick else FULL_SIZES

    head = header()
    rows = []
    for n in sizes:
        print(f"measuring N = {n:,} ...", file=sys.stderr, flush=True)
        lengths = common.lengths(n)
        rows.append(measure_counting_sort(lengths, SEQ_LEN))
        rows.append(measure_pack(lengths, SEQ_LEN, "bfd"))
        rows.append(measure_pack(lengths, SEQ_LEN, "bfd", long_docs="truncate"))
        rows.append(measure_pack(lengths, SEQ_LEN, "ffd"))
        rows.append(measure_pack(lengths, SEQ_LEN, "concat"))
        if baselines.HAVE_LIGHTBINPACK:
            rows.extend(measure_obfd(lengths, SEQ_LEN))
        rows.append(measure_counting_sort(lengths, LONG_SEQ_LEN))
        rows.append(measure_pack(lengths, LONG_SEQ_LEN, "bfd"))
        common.clear_cache()

    print(head)
    print()
    print(table(rows))
    print()
    print(
        f"Lengths: `lognormal({common.LOG_MEAN:g}, {common.LOG_SIGMA:g}) + 1` as "
        f"int64, seed {common.SEED} (read-only array). Times: median wall "
        "seconds of the runs shown, after one untimed warm-up call, garbage "
        "collector off as in `timeit`/asv, except the `(gc on)` row. "
        "`bfpack` splits long documents unless marked `(truncate)`; "
        "lightbinpack cannot split, so it gets the lengths capped at seq_len "
        "as a Python list (built outside the timing), the same pieces as "
        "`bfpack bfd (truncate)`. `obfd time ÷ this` uses the gc-off obfd time. "
        "Excess: sequences over ceil(tokens packed / seq_len). Peak: VmHWM "
        "after one call minus VmRSS before it (high-water mark reset via "
        "/proc/self/clear_refs), per document"
        + ("." if PEAK else "; not available on this machine."))
    print(f"Command: `python tools/bench_table.py{' --quick' if args.quick else ''}`")


PEAK = False

if __name__ == "__main__":
    main()
