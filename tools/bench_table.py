#!/usr/bin/env python
"""Print the bfpack benchmark tables (Markdown), measured in one process.

``pack``: times ``bfpack.pack`` (bfd, ffd, concat), lightbinpack's ``obfd``
(C++ best-fit decreasing) and the counting-sort floor on the same lognormal
lengths, and the peak memory of each call beyond what was already resident.

``peers``: each peer of ``baselines.PEERS`` (lightbinpack ``obfd`` and
``ffd``, ``binpacking.to_constant_volume``, a pure-Python segment-tree BFD
as in TRL) and ``bfpack.pack(..., long_docs="truncate")`` on the same
pieces (the lengths capped at seq_len), at 100k, 1M and 10M documents
where the peer manages that size; time ratios peer ÷ bfpack.
``binpacking`` runs at 100k only and takes ~4 minutes.

``compile``: ``import bfpack`` and the first ``pack`` / ``pack_table``
call with an empty and with a filled numba cache, each in a fresh
interpreter (the code of the asv ``timeraw_`` benchmarks).

``table``: ``bfpack.pack_table`` of 100M int32 tokens against a numpy copy
of the same token buffer (the memcpy floor), time and peak memory.

``parquet``: ``bfpack.parquet.pack_parquet`` of a 4-shard Parquet dataset
(100M tokens) against reading and rewriting it with pyarrow alone, and the
peak RSS of ``pack_parquet`` in a fresh process on 1 and 4 shards with
8M-token windows (the only part that starts subprocesses).

Data and baselines come from ``asv_bench/benchmarks`` (``common``,
``baselines``, ``compile_time``, ``table``, ``parquet``), so these tables
and the asv suite measure the same thing.

Usage::

    python tools/bench_table.py                  # everything; N = 1e6 and 1e7
    python tools/bench_table.py --quick          # pack at N = 1e6 only, peers up to 1e6
    python tools/bench_table.py --only peers --only compile
    python tools/bench_table.py --only table --only parquet

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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "asv_bench"))

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from benchmarks import baselines, common  # noqa: E402
from benchmarks import compile_time as compile_bench  # noqa: E402
from benchmarks import parquet as parquet_bench  # noqa: E402
from benchmarks import table as table_bench  # noqa: E402

import bfpack  # noqa: E402
from bfpack.parquet import pack_parquet  # noqa: E402

FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000,)
PEER_SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_PEER_SIZES = (100_000, 1_000_000)
#: A peer whose first call takes longer than this is timed by that call alone.
SLOW_CALL_SECONDS = 30.0
SEQ_LEN = 2048
LONG_SEQ_LEN = 8192


# ---------------------------------------------------------------------------
# Measuring

# One untimed call, then the median of 3-7 timed calls with the garbage
# collector off (shared with the asv track_ benchmarks).
median_seconds = common.median_seconds


class Row:
    def __init__(
        self, method, n, seq_len, seconds, runs, peak, sequences=None, excess=None, obfd_ref=True
    ):
        self.method, self.n, self.seq_len = method, n, seq_len
        self.seconds, self.runs, self.peak = seconds, runs, peak
        self.sequences, self.excess = sequences, excess
        # Whether "obfd / this" applies (same problem size, seq_len 2048).
        self.obfd_ref = obfd_ref


def measure_pack(lengths, seq_len, method, long_docs="split"):
    bfpack.pack(
        common.tiny_lengths(seq_len), seq_len, method=method, long_docs=long_docs
    )  # JIT warm-up (same signature)

    def call():
        return bfpack.pack(lengths, seq_len, method=method, long_docs=long_docs)

    seconds, runs = median_seconds(call)
    plan, peak = common.peak_bytes(call) if PEAK else (call(), None)
    stats = plan.stats()
    label = f"bfpack {method}" + (" (truncate)" if long_docs == "truncate" else "")
    return Row(
        label,
        lengths.shape[0],
        seq_len,
        seconds,
        runs,
        peak,
        stats.sequences,
        stats.excess_sequences,
    )


def measure_counting_sort(lengths, seq_len):
    baselines.warm_counting_sort()

    def call():
        return baselines.counting_sort_order(lengths, seq_len)

    seconds, runs = median_seconds(call)
    peak = common.peak_bytes(call)[1] if PEAK else None
    return Row("counting sort (floor)", lengths.shape[0], seq_len, seconds, runs, peak)


def measure_obfd(lengths, seq_len):
    items = baselines.capped_items(lengths, seq_len)
    total = sum(items)

    def call():
        return baselines.obfd(items, seq_len)

    rows = []
    for gc_off in (True, False):
        seconds, runs = median_seconds(call, min_runs=3, max_runs=5, budget=20.0, gc_off=gc_off)
        label = "lightbinpack obfd" + ("" if gc_off else " (gc on)")
        rows.append(Row(label, lengths.shape[0], seq_len, seconds, runs, None, obfd_ref=gc_off))
    bins, peak = common.peak_bytes(call) if PEAK else (call(), None)
    for row in rows:
        row.sequences = len(bins)
        row.excess = baselines.excess_over_lower_bound(len(bins), total, seq_len)
    rows[0].peak = peak
    del bins, items
    gc.collect()
    return rows


class PeerRow:
    """One peer (or bfpack) on the capped lengths of one size."""

    def __init__(
        self,
        label,
        language,
        n,
        seq_len,
        seconds,
        runs,
        gc_on_seconds,
        sequences,
        excess,
        bfpack_seconds=None,
    ):
        self.label, self.language, self.n, self.seq_len = label, language, n, seq_len
        self.seconds, self.runs, self.gc_on_seconds = seconds, runs, gc_on_seconds
        self.sequences, self.excess = sequences, excess
        self.bfpack_seconds = bfpack_seconds


def _timed_call(func):
    """``(seconds, result)`` of one call, garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        result = func()
        return time.perf_counter() - t0, result
    finally:
        gc.enable()


def measure_peers(lengths, seq_len):
    """bfpack (truncate) and every installed peer that manages this size."""
    n = lengths.shape[0]
    ref = measure_pack(lengths, seq_len, "bfd", long_docs="truncate")
    rows = [
        PeerRow(
            '`bfpack.pack(..., long_docs="truncate")`',
            "numba",
            n,
            seq_len,
            ref.seconds,
            ref.runs,
            None,
            ref.sequences,
            ref.excess,
        )
    ]
    items = baselines.capped_items(lengths, seq_len)
    total = sum(items)
    for key, peer in baselines.PEERS.items():
        if not peer.available or (peer.max_docs is not None and n > peer.max_docs):
            continue
        print(f"  {peer.label} ...", file=sys.stderr, flush=True)

        def call(peer=peer):
            return peer.pack(items, seq_len)

        first, bins = _timed_call(call)
        num_bins = len(bins)
        del bins
        gc.collect()
        if first > SLOW_CALL_SECONDS:  # binpacking: minutes; that call only
            seconds, runs, gc_on = first, 1, None
        else:
            seconds, runs = median_seconds(call, min_runs=3, max_runs=5, budget=20.0)
            gc_on, _ = median_seconds(call, min_runs=1, max_runs=3, budget=10.0, gc_off=False)
        rows.append(
            PeerRow(
                peer.label,
                peer.language,
                n,
                seq_len,
                seconds,
                runs,
                gc_on,
                num_bins,
                baselines.excess_over_lower_bound(num_bins, total, seq_len),
                bfpack_seconds=ref.seconds,
            )
        )
    return rows


def measure_compile(runs=3):
    """Medians of ``runs`` fresh interpreters running each ``timeraw_`` code."""
    imports = compile_bench.Import()
    cold = compile_bench.FirstCallColdCache()
    warm = compile_bench.FirstCallWarmCache()
    warm.setup()
    cases = [
        ("`import bfpack`", imports.timeraw_import_bfpack),
        (
            "`import numba, numpy, pyarrow` (dependencies alone)",
            imports.timeraw_import_dependencies,
        ),
        ("first `pack`, empty numba cache (compile)", cold.timeraw_pack),
        ("first `pack`, filled numba cache (load)", warm.timeraw_pack),
        ("first `pack_table`, empty numba cache (compile)", cold.timeraw_pack_table),
        ("first `pack_table`, filled numba cache (load)", warm.timeraw_pack_table),
    ]
    rows = []
    for label, code in cases:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        times = [common.run_timeraw_code(code()) for _ in range(runs)]
        rows.append((label, statistics.median(times), min(times), max(times), runs))
    return rows


class TokenRow:
    """One call that moves tokens: time, what it is compared with, memory."""

    def __init__(
        self, call, data, seconds, runs, ref=None, ref_seconds=None, peak=None, in_out_bytes=None
    ):
        self.call, self.data = call, data
        self.seconds, self.runs = seconds, runs
        self.ref, self.ref_seconds = ref, ref_seconds
        self.peak, self.in_out_bytes = peak, in_out_bytes


def measure_table(runs=7):
    """``pack_table`` of 100M tokens and the copy floor, interleaved."""
    table = common.token_table(common.TABLE_TOKENS)
    values = common.values_view(table)
    table_bench.warm_pack_table()
    seq_len = table_bench.SEQ_LEN

    def pack():
        return bfpack.pack_table(table, seq_len)

    def copy():
        return baselines.copy_floor(values)

    packed, floor = common.median_seconds_pair(pack, copy, runs=runs)
    out = pack()
    in_out = table.nbytes + out.nbytes
    del out
    peaks = {}
    if PEAK:
        for name, func in (("copy", copy), ("pack", pack)):
            peaks[name] = common.peak_bytes(func)[1]
            gc.collect()
    data = f"{values.shape[0]:,} tokens, {table.num_rows:,} docs"
    rows = [
        TokenRow(
            "numpy copy of the token buffer (floor)",
            data,
            floor,
            runs,
            peak=peaks.get("copy"),
            in_out_bytes=2 * values.nbytes,
        ),
        TokenRow(
            f"`bfpack.pack_table(table, {seq_len})`",
            data,
            packed,
            runs,
            ref="copy",
            ref_seconds=floor,
            peak=peaks.get("pack"),
            in_out_bytes=in_out,
        ),
    ]
    common.clear_cache()
    return rows


def measure_parquet(root, datasets, runs=5):
    """``pack_parquet`` of the 4-shard dataset and the pyarrow rewrite, interleaved."""
    src = parquet_bench.dataset_path(root, parquet_bench.TIME_SCALE)
    dst, rewrite_dst = os.path.join(root, "packed"), os.path.join(root, "rewritten")
    parquet_bench.warm_pack_parquet(root, os.path.join(root, "warm"))
    seq_len = parquet_bench.SEQ_LEN

    def pack():
        pack_parquet(src, dst, seq_len, overwrite=True)

    def rewrite():
        baselines.pyarrow_rewrite(src, rewrite_dst)

    packed, base = common.median_seconds_pair(pack, rewrite, runs=runs)
    shards = datasets[parquet_bench.TIME_SCALE]
    data = (
        f"{len(shards)} shards, {sum(x['tokens'] for x in shards):,} tokens, "
        f"{sum(x['documents'] for x in shards):,} docs"
    )
    return [
        TokenRow("pyarrow: dataset batches → `ParquetWriter`", data, base, runs),
        TokenRow(
            f"`pack_parquet(src, dst, {seq_len})`",
            data,
            packed,
            runs,
            ref="pyarrow rewrite",
            ref_seconds=base,
        ),
    ]


def measure_parquet_peaks(root, datasets):
    """Peak RSS of fresh processes: imports only, then ``pack_parquet`` per scale."""
    window = parquet_bench.peak_window_tokens()
    base = common.fresh_process_status(parquet_bench.IMPORT_CHILD)["VmHWM"]
    rows = []
    for scale in parquet_bench.SCALES:
        status = parquet_bench.pack_parquet_peak(
            parquet_bench.dataset_path(root, scale), os.path.join(root, f"peak-x{scale}"), window
        )
        shards = datasets[scale]
        rows.append((scale, sum(x["tokens"] for x in shards), window, status["VmHWM"], base))
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
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "bfpack",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
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
    bp = baselines.binpacking_version() or "not installed"
    return (
        f"Machine: {cpu_model()}, {cores} cores ({usable} usable), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, lightbinpack {lbp}, binpacking {bp}, "
        f"bfpack {bfpack.__version__} (git {git_describe()}); "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"load average at start {load:.2f}."
    )


def fmt_seconds(s):
    return f"{s:.4f}" if s < 0.1 else f"{s:.3f}" if s < 10 else f"{s:.1f}"


def table(rows):
    floor = {(r.n, r.seq_len): r.seconds for r in rows if r.method.startswith("counting sort")}
    obfd = {(r.n, r.seq_len): r.seconds for r in rows if r.method == "lightbinpack obfd"}
    out = [
        "| method | N | seq_len | median s (runs) | × counting sort | "
        "obfd time ÷ this | sequences | excess over lower bound | "
        "peak bytes/doc beyond input |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
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
        out.append(
            f"| {r.method} | {r.n:,} | {r.seq_len} | "
            f"{fmt_seconds(r.seconds)} ({r.runs}) | {ratio_floor} | "
            f"{ratio_obfd} | {seqs} | {excess} | {peak} |"
        )
    return "\n".join(out)


def peer_table(rows):
    out = [
        "| packer | implementation | N | seq_len | median s (runs) | "
        "median s, gc on | × bfpack time | sequences | "
        "excess over lower bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gc_on = fmt_seconds(r.gc_on_seconds) if r.gc_on_seconds else "–"
        if r.bfpack_seconds:
            x = r.seconds / r.bfpack_seconds
            ratio = f"{x:.1f}" if x < 100 else f"{x:,.0f}"
        else:
            ratio = "1"
        out.append(
            f"| {r.label} | {r.language} | {r.n:,} | {r.seq_len} | "
            f"{fmt_seconds(r.seconds)} ({r.runs}) | {gc_on} | {ratio} | "
            f"{r.sequences:,} | {r.excess:,} |"
        )
    return "\n".join(out)


def compile_table(rows):
    out = ["| fresh interpreter | median s (min–max, runs) |", "|---|---:|"]
    for label, med, lo, hi, runs in rows:
        out.append(f"| {label} | {med:.2f} ({lo:.2f}–{hi:.2f}, {runs}) |")
    return "\n".join(out)


def mb(nbytes):
    return f"{nbytes / 1e6:,.0f}"


def token_table(rows):
    out = [
        "| call | data | median s (runs) | × reference | "
        "peak MB beyond resident | peak ÷ (input + output) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.seconds / r.ref_seconds:.2f} × {r.ref}" if r.ref_seconds else "–"
        peak = mb(r.peak) if r.peak is not None else "–"
        rel = f"{r.peak / r.in_out_bytes:.2f}" if r.peak is not None and r.in_out_bytes else "–"
        out.append(
            f"| {r.call} | {r.data} | {fmt_seconds(r.seconds)} ({r.runs}) "
            f"| {ratio} | {peak} | {rel} |"
        )
    return "\n".join(out)


def peak_rss_table(rows):
    out = [
        "| dataset | tokens | window_tokens | peak RSS MB (VmHWM) | "
        "beyond a fresh `import bfpack.parquet` MB | × 1-shard peak |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    first = rows[0][3]
    for scale, tokens, window, hwm_kib, base_kib in rows:
        out.append(
            f"| {scale} shard{'s' if scale > 1 else ''} | {tokens:,} | "
            f"{window:,} | {mb(hwm_kib * 1024)} | "
            f"{mb((hwm_kib - base_kib) * 1024)} | {hwm_kib / first:.2f} |"
        )
    return "\n".join(out)


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


PARTS = ("pack", "peers", "compile", "table", "parquet")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="pack at N = 1e6 only (default: 1e6 and 1e7), "
        "peers at 1e5 and 1e6 (default: also 1e7)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="measure only this part (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    parts = args.only or list(PARTS)

    global PEAK
    PEAK = common.peak_probe_available()
    common.MAX_DOCS = None  # full sizes even if BFPACK_BENCH_SMOKE is set
    sizes = QUICK_SIZES if args.quick else FULL_SIZES

    head = header()
    print(head)
    if "pack" in parts:
        pack_part(sizes)
    if "peers" in parts:
        peers_part(QUICK_PEER_SIZES if args.quick else PEER_SIZES)
    if "compile" in parts:
        compile_part()
    if "table" in parts or "parquet" in parts:
        token_part(parts)
    command = "python tools/bench_table.py" + (" --quick" if args.quick else "")
    if args.only:
        command += "".join(f" --only {p}" for p in args.only)
    print(f"Command: `{command}`; load average at end {load_average():.2f}.")


def pack_part(sizes):
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
        + ("." if PEAK else "; not available on this machine.")
    )
    print()


def peers_part(sizes):
    rows = []
    for n in sizes:
        print(f"measuring the peers at N = {n:,} ...", file=sys.stderr, flush=True)
        rows.extend(measure_peers(common.lengths(n), SEQ_LEN))
        common.clear_cache()
    print(peer_table(rows))
    print()
    print(
        "Peers: the same lognormal lengths as above, capped at seq_len (none "
        "of the peers splits long documents) and given as a Python list built "
        "outside the timing; `bfpack` packs exactly these pieces "
        '(`long_docs="truncate"`) from the int64 array. `× bfpack time`: '
        "the peer's median over bfpack's, same N. Times: median wall seconds "
        "after one untimed call, garbage collector off as in asv; `gc on` as "
        "users run them. A peer whose first call takes over "
        f"{SLOW_CALL_SECONDS:.0f} s is timed by that one call (`(1)`). "
        "`binpacking.to_constant_volume` (worst-fit decreasing, O(N × bins)) "
        "runs at 100k documents only, the pure-Python BFD up to 1M. The "
        "pure-Python BFD is a re-implementation of TRL's `pack_dataset("
        'strategy="bfd")` packer over all documents at once (TRL packs each '
        "1,000-row batch separately). Excess: sequences over "
        "ceil(tokens / seq_len)."
    )
    print()


def compile_part():
    print("measuring start-up in fresh interpreters ...", file=sys.stderr, flush=True)
    rows = measure_compile()
    print(compile_table(rows))
    print()
    print(
        "Start-up: each row is a new `python` process running the code of the "
        "asv `compile_time` benchmarks (`timeraw_`): imports and the tiny "
        "input (10 documents) are built first and untimed; the time is one "
        "`bfpack.pack(lengths, 2048)` or `bfpack.pack_table(table, 2048)` "
        "call. Empty cache: `NUMBA_CACHE_DIR` set to a fresh directory, so "
        "every kernel the call needs is compiled; filled cache: a directory "
        "that an earlier process filled, so they are loaded."
    )
    print()


def token_part(parts):
    rows, peaks = [], []
    if "table" in parts:
        print("measuring pack_table ...", file=sys.stderr, flush=True)
        rows.extend(measure_table())
    if "parquet" in parts:
        with tempfile.TemporaryDirectory(prefix="bfpack-bench-") as root:
            print("writing the Parquet datasets ...", file=sys.stderr, flush=True)
            datasets = parquet_bench.write_datasets(root)
            print("measuring pack_parquet ...", file=sys.stderr, flush=True)
            rows.extend(measure_parquet(root, datasets))
            print("measuring peak RSS in fresh processes ...", file=sys.stderr, flush=True)
            peaks = measure_parquet_peaks(root, datasets)
    print(token_table(rows))
    print()
    print(
        "Moving tokens: one `input_ids` column, list<int32>, documents of "
        f"`lognormal({common.LOG_MEAN:g}, {common.LOG_SIGMA:g}) + 1` tokens, "
        f"token ids uniform in [0, {common.VOCAB:,}). Times: medians of "
        "interleaved runs (call, reference, call, ...) after one untimed call "
        "of each, garbage collector off. Peak: VmHWM after one call minus "
        "VmRSS before it, divided by the bytes of the input table plus the "
        "output table (for the copy: the buffer twice). Parquet: shards of "
        f"~{parquet_bench.SHARD_TOKENS:,} tokens, row groups of 4,096 documents, "
        "snappy, in the page cache; `pack_parquet` with the default "
        "`window_tokens` and `overwrite=True`; the pyarrow rewrite streams "
        "`pyarrow.dataset` batches into one `pq.ParquetWriter` (default "
        f"compression), also replacing its output. pyarrow {pa.__version__}."
    )
    if peaks:
        print()
        print(peak_rss_table(peaks))
        print()
        print(
            "Peak RSS: `VmHWM` that a fresh `python -c` process running "
            "`pack_parquet(src, dst, 2048, window_tokens=...)` reads from its "
            "own /proc/self/status at the end (`ru_maxrss` of children would "
            "report this parent's peak); the baseline is a fresh process that "
            "only imports `bfpack.parquet`. Compiled kernels come from numba's "
            "on-disk cache."
        )
    print()


PEAK = False

if __name__ == "__main__":
    main()
