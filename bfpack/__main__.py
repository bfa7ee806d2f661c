"""Command line: ``python -m bfpack`` (or ``bfpack``)."""

import argparse
import sys

from . import __version__
from .corpus import stdlib_lengths, web_like_lengths
from .packing import pack

_COLUMNS = ("corpus", "seq_len", "method", "docs", "tokens", "sequences",
            "vs concat", "fill", "docs cut", "cuts/doc")


def _demo(args):
    corpora = [("stdlib .py (bytes)", stdlib_lengths()),
               ("web-like lognormal", web_like_lengths(args.web_docs))]
    rows = []
    for name, lengths in corpora:
        for seq_len in args.seq_len:
            base = None
            for method in ("concat", "bfd", "ffd"):
                stats = pack(lengths, seq_len, method=method).stats()
                base = base or stats.sequences
                nonempty = max(stats.documents - stats.empty_documents, 1)
                rows.append((
                    name, f"{seq_len:,}", method, f"{stats.documents:,}",
                    f"{stats.tokens:,}", f"{stats.sequences:,}",
                    f"{100 * (stats.sequences / base - 1):+.4f}%",
                    f"{100 * stats.fill:.3f}%",
                    f"{100 * stats.documents_truncated / nonempty:.2f}%",
                    f"{stats.truncation_cuts / nonempty:.3f}"))
    _print_table(_COLUMNS, rows)
    print("\nvs concat: extra sequences over concatenation. docs cut: share of "
          "documents not kept whole in one sequence.\nbfd/ffd split only "
          "documents longer than seq_len; concat cuts wherever the stream "
          "crosses a boundary.")
    return 0


def _print_table(header, rows):
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["-" * w for w in widths], *rows):
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))


def _parser():
    parser = argparse.ArgumentParser(
        prog="bfpack", description="Best-fit packing of documents into "
        "training sequences, without truncating them.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo", help="pack built-in corpora with concat, bfd and ffd and "
        "compare (the default)")
    demo.add_argument("--seq-len", type=int, nargs="+", default=[2048, 8192],
                      help="context lengths to compare (default: 2048 8192)")
    demo.add_argument("--web-docs", type=int, default=1_000_000,
                      help="documents in the synthetic web-like corpus")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(argv or [])])
    try:
        return args.run(args)
    except (ValueError, TypeError) as exc:
        print(f"bfpack: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
