"""Command line: ``bfpack`` (or ``python -m bfpack``).

``bfpack pack SRC DST``: pack a Parquet dataset; ``bfpack stats SRC``:
compare concat, bfd and ffd on it; ``bfpack demo``: the whole job on the
Python standard library.
"""

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

from ._validate import LONG_DOCS
from ._version import __version__
from .analysis import compare
from .corpus import stdlib_table
from .methods import METHODS
from .parquet import DEFAULT_WINDOW_TOKENS, dataset_spec, open_dataset, pack_parquet
from .table import document_lengths


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


def _compare_rows(label, lengths, seq_lens):
    """Table rows of :func:`bfpack.compare` for each context length."""
    docs = f"{lengths.shape[0]:,}"
    tokens = f"{int(lengths.sum()):,}"
    nonempty = max(int(np.count_nonzero(lengths)), 1)
    rows = []
    for seq_len in seq_lens:
        c = compare(lengths, seq_len).to_pydict()
        for i, method in enumerate(c["method"]):
            rows.append(
                (
                    label,
                    f"{seq_len:,}",
                    method,
                    docs,
                    tokens,
                    f"{c['sequences'][i]:,}",
                    f"{100 * c['vs_first'][i]:+.4f}%",
                    f"{100 * c['fill'][i]:.3f}%",
                    f"{100 * c['documents_truncated'][i] / nonempty:.2f}%",
                    f"{c['truncation_cuts'][i] / nonempty:.3f}",
                )
            )
    return rows


_HEADER = (
    "corpus",
    "seq_len",
    "method",
    "documents",
    "tokens",
    "sequences",
    "vs concat",
    "fill",
    "docs truncated",
    "cuts/doc",
)
_LEGEND = (
    "vs concat: sequences added over concatenation. docs truncated: "
    "documents not kept whole in one sequence;\ncuts/doc: cuts made "
    "inside documents, per document. bfd and ffd cut only documents "
    "longer than seq_len."
)


def _print_table(header, rows, out=sys.stdout):
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["-" * w for w in widths], *rows):
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))
            ),
            file=out,
        )


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
    _print_table(
        _HEADER, _compare_rows(os.path.basename(os.path.normpath(args.src)), lengths, args.seq_len)
    )
    print("\n" + _LEGEND)
    return 0


def _cmd_demo(args):
    t0 = time.perf_counter()
    corpus = stdlib_table()
    lengths = document_lengths(corpus, ["input_ids"])
    print(
        f"Corpus: the {corpus.num_rows:,} .py files of this Python's "
        f"standard library, one document per file, tokenized as UTF-8 "
        f"bytes.\n"
    )
    _print_table(_HEADER, _compare_rows("stdlib", lengths, args.seq_len))
    print("\n" + _LEGEND)

    out = args.out or tempfile.mkdtemp(prefix="bfpack-demo-")
    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "stdlib.parquet")
    import pyarrow.parquet as pq

    pq.write_table(corpus, src)
    dst = os.path.join(out, "packed")
    manifest = pack_parquet(
        src, dst, args.seq_len[0], columns=["input_ids"], position_ids=True, seed=0, overwrite=True
    )
    print(
        f"\nPacked with bfd at seq_len {args.seq_len[0]}: "
        f"{manifest['stats']['sequences']:,} rows (input_ids, seq_lengths, "
        f"position_ids) in {dst}  [{time.perf_counter() - t0:.1f} s]"
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
    d.add_argument("--seq-len", type=int, nargs="+", default=[2048, 8192, 32768])
    d.add_argument("--out", help="where to write (default: a new temporary directory)")
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
