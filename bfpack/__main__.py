"""Command line: ``bfpack`` (or ``python -m bfpack``).

``bfpack pack SRC DST``: pack a Parquet dataset; ``bfpack stats SRC``:
compare concat, bfd and ffd on it; ``bfpack demo``: the whole job on the
Python standard library.
"""

import argparse
import os
import sys
import time
import warnings

import numba.core.event as numba_event
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._validate import LONG_DOCS
from ._version import __version__
from .analysis import compare
from .corpus import stdlib_table
from .manifest import MANIFEST
from .methods import METHODS
from .parquet import DEFAULT_WINDOW_TOKENS, dataset_spec, open_dataset, pack_parquet
from .stream import TableStreamPacker
from .table import OutputSpec, document_lengths


class ProgressBar:
    """One self-rewriting line on stderr: documents, tokens, sequences, rate."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.start = time.perf_counter()

    def __call__(self, totals):
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.stream.write(
            f"\r{totals['documents']:,} documents  {totals['tokens']:,} tokens"
            f"  {totals['sequences']:,} sequences  "
            f"{totals['tokens'] / elapsed / 1e6:,.1f} M tokens/s"
        )
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def _percent(count, total):
    return f"{100 * count / max(total, 1):.2f}%"


def _compare_rows(results, nonempty):
    """Table rows of :func:`bfpack.compare` results, one dict per context length."""
    rows = []
    for seq_len, c in results.items():
        for i, method in enumerate(c["method"]):
            rows.append(
                (
                    f"{seq_len:,}",
                    method,
                    f"{c['sequences'][i]:,}",
                    f"{100 * c['vs_first'][i]:+.3f}%" if i else "-",
                    f"{100 * c['fill'][i]:.3f}%",
                    _percent(c["documents_truncated"][i], nonempty),
                    _percent(c["min_documents_truncated"][i], nonempty),
                )
            )
    return rows


def _fewest_everywhere(results):
    """Methods that make the fewest possible cuts at every context length."""
    fewest = set(METHODS)
    for c in results.values():
        fewest &= {
            m
            for m, docs, cuts, min_docs, min_cuts in zip(
                c["method"],
                c["documents_truncated"],
                c["truncation_cuts"],
                c["min_documents_truncated"],
                c["min_truncation_cuts"],
            )
            if docs == min_docs and cuts == min_cuts
        }
    return [m for m in METHODS if m in fewest]


_HEADER = ("seq_len", "method", "sequences", "vs concat", "fill", "docs cut", "fewest possible")


def _legend(nonempty):
    return (
        "vs concat: sequences added over concatenation (what packing costs).\n"
        "fill: tokens / (sequences x seq_len).\n"
        f"docs cut: documents not kept whole in one sequence, of the {nonempty:,}\n"
        "non-empty ones; fewest possible: those longer than seq_len, which any\n"
        "method must cut."
    )


def _print_comparison(lengths, seq_lens, out=sys.stdout):
    """The comparison table of ``lengths``, its legend, and who cuts the fewest."""
    results = {seq_len: compare(lengths, seq_len).to_pydict() for seq_len in seq_lens}
    nonempty = int(np.count_nonzero(lengths))
    _print_table(_HEADER, _compare_rows(results, nonempty), out)
    print("\n" + _legend(nonempty), file=out)
    fewest = _fewest_everywhere(results)
    if fewest:
        print(
            f"{', '.join(fewest)}: the fewest possible cuts at every seq_len (each document\n"
            f"longer than seq_len cut ceil(length / seq_len) - 1 times, no other).",
            file=out,
        )


def _print_table(header, rows, out=sys.stdout, text_columns=(1,)):
    """Columns padded to their widest cell: numbers to the right, ``text_columns`` left."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["-" * w for w in widths], *rows):
        cells = [
            str(c).ljust(w) if i in text_columns else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        ]
        print("  ".join(cells).rstrip(), file=out)


def _progress(args):
    return ProgressBar() if sys.stderr.isatty() and not args.quiet else None


def _cmd_pack(args):
    pad = args.pad_value
    bar = _progress(args)
    manifest = pack_parquet(
        args.src,
        args.dst,
        args.seq_len,
        columns=args.column,
        method=args.method,
        long_docs=args.long_docs,
        pad_value=pad,
        position_ids=args.position_ids,
        seed=args.seed,
        window_tokens=args.window_tokens,
        overwrite=args.overwrite,
        progress=bar,
    )
    if bar is not None:
        bar.close()
    s = manifest["stats"]
    if not args.quiet:
        print(
            f"{s['documents']:,} documents, {s['tokens']:,} tokens -> "
            f"{s['sequences']:,} sequences of {s['seq_len']:,} "
            f"(lower bound {s['lower_bound']:,}, fill {100 * s['fill']:.3f}%, "
            f"{s['documents_truncated']:,} documents truncated) in "
            f"{len(manifest['shards'])} shard(s) at {args.dst}"
        )
    return 0


def _cmd_stats(args):
    dataset = open_dataset(args.src)
    spec = dataset_spec(dataset, columns=args.column)
    table = dataset.to_table(columns=list(spec.columns))
    lengths = document_lengths(table, spec.columns)
    name = os.path.basename(os.path.normpath(args.src))
    print(f"{name}: {len(lengths):,} documents, {int(lengths.sum()):,} tokens\n")
    _print_comparison(lengths, args.seq_len)
    return 0


#: Where ``bfpack demo`` writes without ``--out``: a folder of the current directory.
DEMO_OUT = "bfpack-demo"


def _warm_kernels(seq_len):
    """Call every kernel the demo uses, on tiny data: compiles them, or loads them."""
    tiny = pa.table({"input_ids": pa.array([[1, 2, 3], [4]], type=pa.list_(pa.uint16()))})
    compare(document_lengths(tiny, ["input_ids"]), seq_len)
    spec = OutputSpec.for_schema(tiny.schema, columns="input_ids", position_ids=True)
    packer = TableStreamPacker(seq_len, spec, seed=0)
    packer.step(tiny)
    packer.finish()


class _CompileNotice(numba_event.Listener):
    """Says once, on stderr, that kernels are compiling.

    numba signals "numba:compile" only when a kernel is missing from its
    on-disk cache, just before compiling it: so the notice shows on a first
    run (or after an upgrade), never when the kernels load from the cache.
    """

    def __init__(self, err):
        self.err = err
        self.started = None

    def on_start(self, event):
        # numba's own helpers (typed lists) compile in every process: not ours to announce.
        module = getattr(event.data["dispatcher"].py_func, "__module__", "") or ""
        if self.started is None and module.startswith("bfpack."):
            self.started = time.perf_counter()
            print(
                "Compiling bfpack's kernels: first run only, numba caches them (~5-20 s)...",
                end="",
                file=self.err,
                flush=True,
            )

    def on_end(self, event):
        pass

    def done(self):
        if self.started is not None:
            print(f" done in {time.perf_counter() - self.started:.1f} s.\n", file=self.err)


def _warm_up_announced(seq_len, err=sys.stderr):
    """:func:`_warm_kernels`, saying so when kernels compile."""
    notice = _CompileNotice(err)
    with numba_event.install_listener("numba:compile", notice):
        _warm_kernels(seq_len)
    notice.done()


def _shown(path):
    """``path`` as the user can type it: relative when inside the current directory."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def _size_mb(path):
    total = sum(
        os.path.getsize(os.path.join(folder, f))
        for folder, _, files in os.walk(path)
        for f in files
    )
    return total / 1e6


def _cmd_demo(args):
    t0 = time.perf_counter()
    out = os.path.abspath(args.out or DEMO_OUT)
    dst = os.path.join(out, "packed")
    if os.path.exists(dst) and not os.path.exists(os.path.join(dst, MANIFEST)):
        raise FileExistsError(
            f"{_shown(dst)} exists and is not a bfpack output; the demo would replace "
            f"it: pass --out with another directory"
        )
    _warm_up_announced(args.seq_len[0])
    corpus = stdlib_table()
    lengths = document_lengths(corpus, ["input_ids"])
    print(
        f"Corpus: the {corpus.num_rows:,} .py files of this Python's standard library,\n"
        f"one document per file, split into {int(lengths.sum()):,} GPT-2-style tokens "
        f"(words,\nnumbers, punctuation, whitespace; ids by hashing, nothing to download).\n"
    )
    _print_comparison(lengths, args.seq_len)

    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "stdlib.parquet")
    partial = os.path.join(out, ".stdlib.parquet.partial")
    pq.write_table(corpus, partial)
    os.replace(partial, src)
    manifest = pack_parquet(
        src, dst, args.seq_len[0], columns=["input_ids"], position_ids=True, seed=0, overwrite=True
    )
    print(
        f"\nPacked with bfd at seq_len {args.seq_len[0]:,}: "
        f"{manifest['stats']['sequences']:,} rows (input_ids, seq_lengths,\n"
        f"position_ids). Wrote {_size_mb(out):.0f} MB to {_shown(out)}{os.sep}:\n"
        f"  stdlib.parquet  the corpus, one row per file\n"
        f"  packed{os.sep}         the packed rows, ready to train on\n"
        f"Remove it with: rm -r {_shown(out)}   [{time.perf_counter() - t0:.1f} s]"
    )
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr, like every other error."""

    def error(self, message):
        self.exit(2, f"bfpack: error: {message} (see '{self.prog} --help')\n")


def _parser():
    parser = _Parser(
        prog="bfpack",
        description="Best-fit packing of tokenized documents "
        "into training sequences, without truncating them.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("pack", help="pack a Parquet dataset into packed Parquet shards")
    p.add_argument("src", metavar="SRC", help="Parquet file or directory")
    p.add_argument("dst", metavar="DST", help="output directory (must not exist)")
    p.add_argument("--seq-len", type=int, required=True, help="context length")
    p.add_argument(
        "--column",
        action="append",
        help="list column to pack (repeat for several; default: every list column)",
    )
    p.add_argument(
        "--method",
        default="bfd",
        choices=list(METHODS),
        help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()) + " (default: bfd)",
    )
    p.add_argument(
        "--long-docs",
        default="split",
        choices=LONG_DOCS,
        help="documents longer than --seq-len: split into chunks plus "
        "the remainder, or truncate (default: split)",
    )
    p.add_argument("--pad-value", type=int, help="pad rows to seq_len with this")
    p.add_argument("--position-ids", action="store_true", help="add a position_ids column")
    p.add_argument("--seed", type=int, help="shuffle rows with this seed")
    p.add_argument(
        "--window-tokens",
        type=int,
        default=DEFAULT_WINDOW_TOKENS,
        help="tokens read per window (bounds memory)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace DST")
    p.add_argument("--quiet", action="store_true", help="no progress, no summary")
    p.set_defaults(run=_cmd_pack)

    s = commands.add_parser("stats", help="compare concat, bfd and ffd on a Parquet dataset")
    s.add_argument("src", metavar="SRC", help="Parquet file or directory")
    s.add_argument("--seq-len", type=int, nargs="+", required=True)
    s.add_argument("--column", action="append")
    s.set_defaults(run=_cmd_stats)

    d = commands.add_parser(
        "demo", help="the whole job on the Python standard library (no download)"
    )
    d.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        default=[2048, 8192, 32768],
        help="context lengths to compare; the first one packs (default: 2048 8192 32768)",
    )
    d.add_argument(
        "--out",
        help=f"directory for the corpus (stdlib.parquet) and the packed rows (packed/), "
        f"created if needed; both are replaced on a rerun (default: ./{DEMO_OUT})",
    )
    d.set_defaults(run=_cmd_demo)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr, like errors."""
    print(f"bfpack: warning: {message}", file=sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line
            return args.run(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"bfpack: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbfpack: interrupted; nothing was written to the destination", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
