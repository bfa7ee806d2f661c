#!/usr/bin/env python
"""Print the documentation's performance page from one asv run.

Reads what ``asv run`` wrote under ``asv_bench/results/<machine>/``: the
results file of one commit and ``machine.json``. It runs no benchmark:
every time is asv's median, every ratio is one of those medians over
another. What is measured, and on which data, is defined once, in
``asv_bench/benchmarks``; each table names the benchmarks it reads. Cells
whose benchmark is missing from the run (or was skipped) read "–".

Usage (see ``asv_bench/README.md``)::

    cd asv_bench
    asv machine --yes
    asv run --python=same --set-commit-hash $(git rev-parse HEAD)
    python ../tools/performance_tables.py                  # print the page
    python ../tools/performance_tables.py --out ../docs/performance.md
    python ../tools/performance_tables.py results/<machine> --commit 1a2b3c4d

The package versions printed are those of the interpreter running this
script, which is the benchmarked one when asv ran with ``--python=same``.
"""

import argparse
import ast
import datetime
import itertools
import json
import math
import os
import platform
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "asv_bench" / "results"

#: Peer columns of the peers table: label, ``time_`` benchmark (its
#: ``track_excess_sequences`` sits next to it).
PEERS = (
    ("lightbinpack `obfd` (C++)", "peers.LightBinPackOBFD.time_obfd"),
    ("lightbinpack `ffd` (C++)", "peers.LightBinPackFFD.time_ffd"),
    ("pure-Python segment-tree BFD (as TRL)", "peers.PythonBFD.time_python_bfd"),
    ("`binpacking.to_constant_volume`", "peers.BinpackingConstantVolume.time_to_constant_volume"),
)
#: Rows of the start-up table: label, ``timeraw_`` benchmark of ``compile_time``.
STARTUP = (
    ("`import bfpack`", "Import.timeraw_import_bfpack"),
    (
        "`import numba, numpy, pyarrow` (its dependencies alone)",
        "Import.timeraw_import_dependencies",
    ),
    ("first `pack`, empty numba cache (compiling)", "FirstCallColdCache.timeraw_pack"),
    ("first `pack`, kernels in numba's cache (loading)", "FirstCallWarmCache.timeraw_pack"),
    ("first `pack_table`, empty numba cache", "FirstCallColdCache.timeraw_pack_table"),
    ("first `pack_table`, kernels in numba's cache", "FirstCallWarmCache.timeraw_pack_table"),
)


class Run:
    """One asv results file: ``run(name, *params)`` is a result, or ``None``."""

    def __init__(self, data):
        self.data = data
        self.values = {}  # (name, *params) -> value, in asv's parameter order
        columns = data["result_columns"]
        for name, row in data["results"].items():
            row = dict(zip(columns, row))
            grid = [[ast.literal_eval(p) for p in values] for values in row.get("params") or []]
            for combo, value in zip(itertools.product(*grid), row["result"] or []):
                self.values[(name, *combo)] = value

    def __call__(self, name, *params):
        value = self.values.get((name, *params))
        # None: failed; NaN: skipped (a missing peer, no peak probe).
        return None if value is None or math.isnan(value) else value

    def combos(self, name):
        """The parameter combinations of benchmark ``name``, in asv's order."""
        return [key[1:] for key in self.values if key[0] == name]


def load(path, commit=None):
    """``(machine dict, Run)``: the newest run (or that of ``commit``) under ``path``."""
    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        machines = [p.parent for p in sorted(path.glob("**/machine.json"))]
        if len(machines) != 1:
            sys.exit(f"{path}: expected one machine directory, found {machines or 'none'}")
        files = [p for p in machines[0].glob("*.json") if p.name != "machine.json"]
    runs = [json.loads(p.read_text()) for p in files]
    runs = [r for r in runs if r["commit_hash"].startswith(commit or "")]
    if not runs:
        sys.exit(f"{path}: no results" + (f" for commit {commit}" if commit else ""))
    run = max(runs, key=_started)
    return json.loads((files[0].parent / "machine.json").read_text()), Run(run)


def _started(data):
    column = data["result_columns"].index("started_at")
    return max(
        (row[column] or 0 for row in data["results"].values() if len(row) > column), default=0
    )


def fmt_time(seconds):
    if seconds is None:
        return "–"
    unit, scale = next(
        u for u in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)) if seconds >= u[1] or u[0] == "µs"
    )
    return f"{seconds / scale:.3g} {unit}"


def fmt_ratio(x):
    if x is None:
        return "–"
    if x < 100:
        return f"{x:.2g}"
    return f"{round(x, 1 - int(math.log10(x))):,.0f}"  # two significant digits


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_n(n):
    exponent = round(math.log10(n))
    return f"1e{exponent}" if n == 10**exponent else f"{n:,}"


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def header(machine, run):
    data = run.data
    ram = machine.get("ram", "")
    ram = f"{int(ram) / 2**30:.0f} GiB RAM" if str(ram).isdigit() else "RAM unknown"
    started = datetime.datetime.fromtimestamp(_started(data) / 1000, datetime.timezone.utc)
    versions = ", ".join(
        f"{p} {_version(p)}" for p in ("numpy", "numba", "pyarrow", "lightbinpack", "binpacking")
    )
    python = data.get("python", "")
    same = os.path.realpath(python) == os.path.realpath(sys.executable)
    return [
        f"Machine: {machine.get('cpu', '?')}, {machine.get('num_cpu', '?')} CPUs, {ram}, "
        f"{machine.get('os', '?')} (asv machine `{machine.get('machine')}`).",
        f"bfpack commit {data['commit_hash'][:8]}, run {started:%Y-%m-%d} with asv.",
        f"Python {platform.python_version()}, {versions}"
        + ("." if same else f" (this interpreter's; asv ran `{python}`)."),
        "Times are asv's medians; ratios are ratios of those medians.",
    ]


def pack_table(run):
    name = "pack.Pack.time_pack"
    n = max((c[0] for c in run.combos(name)), default=None)
    if n is None:
        return []
    truncate = "peers.PackTruncate.time_pack_truncate"
    rows = [(m, m, L, "split", name, (n, L, m)) for nn, L, m in run.combos(name) if nn == n]
    rows += [
        ('bfd, `long_docs="truncate"`', "bfd", L, "truncate", truncate, (n, L))
        for nn, L in run.combos(truncate)
        if nn == n
    ]
    out = [
        f"**`bfpack.pack`, {n:,} documents** (asv `pack.Pack`, `pack.PackQuality`, "
        "`pack.PackMemory`, `peers.CountingSortFloor`, `peers.PackTruncate`):",
        "",
        "| method | seq_len | time | × counting sort of the same lengths (the floor) "
        "| sequences over `ceil(tokens/L)` | peak memory beyond the input |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, method, seq_len, long_docs, time_name, params in rows:
        seconds = run(time_name, *params)
        floor = run("peers.CountingSortFloor.time_counting_sort", n, seq_len)
        quality = "pack.PackQuality" if long_docs == "split" else "peers.PackTruncate"
        excess = run(f"{quality}.track_excess_sequences", *params)
        sequences = run(f"{quality}.track_sequences", *params)
        per_doc = run("pack.PackMemory.track_bytes_per_document", n, seq_len, method, long_docs)
        out.append(
            f"| {label} | {seq_len} | {fmt_time(seconds)} | {fmt_ratio(ratio(seconds, floor))} "
            f"| {'–' if excess is None else f'{excess:,.0f}'}"
            f"{'' if sequences is None else f' of {sequences:,.0f}'} "
            f"| {'–' if per_doc is None else f'{per_doc:.0f} bytes/doc'} |"
        )
    return out


def peers_table(run):
    ref = "peers.PackTruncate.time_pack_truncate"
    sizes = [n for n, seq_len in run.combos(ref) if seq_len == 2048]
    if not sizes:
        return []
    out = [
        "**Peers, same lengths, same pieces** (lightbinpack and `binpacking` cannot split "
        "long documents, so every peer gets the lengths capped at `seq_len` and bfpack runs "
        'with `long_docs="truncate"`; seq_len 2048; asv `peers`, garbage collector off as '
        "asv times):",
        "",
        "| N | bfpack | " + " | ".join(label for label, _ in PEERS) + " |",
        "|---:|---:|" + "---:|" * len(PEERS),
    ]
    differ = []
    for n in sizes:
        ours = run(ref, n, 2048)
        cells = []
        excess = {"bfpack": run("peers.PackTruncate.track_excess_sequences", n, 2048)}
        for label, name in PEERS:
            seconds = run(name, n, 2048)
            cells.append(
                "–"
                if seconds is None
                else f"{fmt_time(seconds)} ({fmt_ratio(ratio(seconds, ours))}×)"
            )
            excess[label] = run(name.rpartition(".")[0] + ".track_excess_sequences", n, 2048)
        out.append(f"| {fmt_n(n)} | {fmt_time(ours)} | " + " | ".join(cells) + " |")
        found = {k: v for k, v in excess.items() if v is not None}
        if len(set(found.values())) > 1:
            differ.append(f"{fmt_n(n)}: " + ", ".join(f"{k} {v:,.0f}" for k, v in found.items()))
    out.append("")
    if differ:
        out.append("Sequences over `ceil(tokens/L)` differ: " + "; ".join(differ) + ".")
    else:
        out.append("All of them reach the same number of sequences.")
    gc_name = "peers.LightBinPackOBFD.track_seconds_gc_on"
    gc_on = [(n, run(gc_name, n, 2048)) for n in sizes if run(gc_name, n, 2048) is not None]
    if gc_on:
        n, seconds = gc_on[-1]
        out[-1] += (
            f" With the garbage collector on, as scripts run it, `obfd` takes "
            f"{fmt_time(seconds)} at {fmt_n(n)} ({fmt_ratio(ratio(seconds, run(ref, n, 2048)))}× "
            "bfpack)."
        )
    return out


def token_table(run):
    table = run("table.PackTable.time_pack_table")
    parquet = run("parquet.PackParquet.time_pack_parquet")
    if table is None and parquet is None:
        return []
    memory = run("table.PackTable.track_memory_ratio")
    out = [
        "**Token data** (asv `table.PackTable`, `parquet.PackParquet`, "
        "`parquet.PackParquetPeakRSS`):",
        "",
        "| call | time | reference |",
        "|---|---:|---|",
        f"| `pack_table` | {fmt_time(table)} | "
        f"{fmt_ratio(ratio(table, run('table.PackTable.time_copy_floor')))}× a numpy copy of "
        f"the token buffer ({fmt_ratio(run('table.PackTable.track_time_ratio'))}× interleaved); "
        f"peak {'–' if memory is None else f'{memory:.2f}'}× (input + output) |",
        f"| `pack_parquet` | {fmt_time(parquet)} | "
        f"{fmt_ratio(ratio(parquet, run('parquet.PackParquet.time_pyarrow_rewrite')))}× reading "
        "and rewriting the same data with pyarrow alone "
        f"({fmt_ratio(run('parquet.PackParquet.track_time_ratio'))}× interleaved) |",
    ]
    peaks = [
        (s[0], run("parquet.PackParquetPeakRSS.track_peak_rss_mb", *s))
        for s in run.combos("parquet.PackParquetPeakRSS.track_peak_rss_mb")
    ]
    peaks = [(shards, mb) for shards, mb in peaks if mb is not None]
    if peaks:
        first = peaks[0][1]
        out += [
            "",
            "Peak RSS of `pack_parquet` in a fresh process: "
            + ", ".join(
                f"{mb:,.0f} MB on {shards} shard{'s' * (shards > 1)} ({mb / first:.2f}×)"
                for shards, mb in peaks
            )
            + ".",
        ]
    return out


def startup_table(run):
    rows = [(label, run(f"compile_time.{name}")) for label, name in STARTUP]
    if all(seconds is None for _, seconds in rows):
        return []
    out = ["**Start-up** (fresh interpreters, asv `compile_time`):", "", "| | time |", "|---|---:|"]
    out += [f"| {label} | {fmt_time(seconds)} |" for label, seconds in rows]
    return out


#: The page's opening, before the tables.
INTRO = """\
# Performance

Printed by `tools/performance_tables.py` from one asv run of the suite in
`asv_bench/` (see its README). Lengths are `lognormal(6, 1.3) + 1` tokens
(web-like: median ~400, 10.6% longer than 2048). Times are asv's medians,
after a warm-up, compilation excluded; ratios are ratios of medians of the
same run. Reproduce with asv (it benchmarks the installed package), then
print this page:

```bash
pip install -e ".[test,bench]"
cd asv_bench && asv machine --yes
asv run --python=same --show-stderr --set-commit-hash $(git rev-parse HEAD) \\
    --bench '^(pack\\.|peers\\.|table\\.PackTable\\.|parquet\\.PackParquet|compile_time\\.)'
python ../tools/performance_tables.py --out ../docs/performance.md
```
"""

#: The page's closing notes, after the tables.
NOTES = """\
The paper's optimized Python BFD took 106 s for 10M documents at 2048.
TRL's `pack_dataset(strategy="bfd_split")` also splits long documents, into
the same pieces as bfpack's `long_docs="split"`, which only adds chunks
before the packing timed here. The pure-Python column is TRL's
segment-tree algorithm, not TRL itself. For memory by file layout, see
[Streaming and memory](guides/streaming.md); for the Parquet writer's
settings, [Token data](guides/token-data.md).
"""


def page(machine, run):
    """The performance page, Markdown, from one run."""
    parts = [INTRO, "\n".join(header(machine, run))]
    for table in (pack_table, peers_table, token_table, startup_table):
        lines = table(run)
        if lines:
            parts.append("\n".join(lines))
        else:
            print(f"({table.__name__}: no results in this run)", file=sys.stderr)
    parts.append(NOTES)
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def write(path, text):
    """Write ``text`` to ``path`` under a temporary name, then rename it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".performance-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "results", nargs="?", default=RESULTS, help="results/<machine> or one results file"
    )
    parser.add_argument("--commit", help="commit hash (prefix) of the run; default: the newest")
    parser.add_argument(
        "--out", help="write the page to this file (docs/performance.md) instead of printing it"
    )
    args = parser.parse_args(argv)
    machine, run = load(args.results, args.commit)
    text = page(machine, run)
    if args.out:
        write(args.out, text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
