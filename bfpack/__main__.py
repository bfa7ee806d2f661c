"""Command line: ``bfpack`` (or ``python -m bfpack``).

``bfpack pack SRC DST``: pack a Parquet dataset; ``bfpack stats SRC``:
compare concat, bfd and ffd on it; ``bfpack verify DST``: check an output
against its manifest (and its source); ``bfpack demo``: the whole job on the
Python standard library.

This module imports nothing heavy at the top: :func:`main` installs the
SIGINT/SIGTERM handlers first, then loads numpy, pyarrow and numba.
"""

import argparse
import os
import signal
import sys
import time
import warnings

from ._interrupt import Interrupted, InterruptGuard
from ._version import __version__
from .manifest import run_id_of


class ProgressBar:
    """One self-rewriting line on stderr: documents, tokens, sequences, rate."""

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
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


def _progress(args):
    """The progress callback: a safe point for interrupts, and the bar on a terminal."""
    bar = ProgressBar() if sys.stderr.isatty() and not args.quiet else None

    def progress(totals):
        args.guard.check()
        if bar is not None:
            bar(totals)

    return progress, bar


def _cmd_pack(args):
    from .parquet import pack_parquet

    progress, bar = _progress(args)
    args.note.watch(args.dst)
    manifest = pack_parquet(
        args.src,
        args.dst,
        args.seq_len,
        columns=args.column,
        method=args.method,
        long_docs=args.long_docs,
        pad_value=args.pad_value,
        position_ids=args.position_ids,
        seed=args.seed,
        window_tokens=args.window_tokens,
        overwrite=args.overwrite,
        progress=progress,
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
    from ._comparison import print_comparison
    from ._source import ParquetSource

    source = ParquetSource.open(args.src)
    lengths = source.lengths(source.spec(columns=args.column))
    name = os.path.basename(os.path.normpath(args.src))
    print(f"{name}: {len(lengths):,} documents, {int(lengths.sum()):,} tokens\n")
    print_comparison(lengths, args.seq_len)
    return 0


def _cmd_verify(args):
    from .verification import verify

    result = verify(args.dst, source=args.source)
    print(result.report())
    return 0 if result.ok else 1


def _cmd_demo(args):
    from ._demo import run_demo

    return run_demo(args.seq_len, args.out)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr, like every other error."""

    def error(self, message):
        self.exit(2, f"bfpack: error: {message} (see '{self.prog} --help')\n")


def _parser():
    from ._validate import LONG_DOCS
    from .methods import METHODS
    from .parquet import DEFAULT_WINDOW_TOKENS

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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST if it is an earlier bfpack output or an empty directory",
    )
    p.add_argument("--quiet", action="store_true", help="no progress, no summary")
    p.set_defaults(run=_cmd_pack)

    s = commands.add_parser("stats", help="compare concat, bfd and ffd on a Parquet dataset")
    s.add_argument("src", metavar="SRC", help="Parquet file or directory")
    s.add_argument("--seq-len", type=int, nargs="+", required=True)
    s.add_argument("--column", action="append")
    s.set_defaults(run=_cmd_stats)

    v = commands.add_parser(
        "verify",
        help="check a packed output against its manifest (exit 0: ok, 1: mismatch, 2: error)",
    )
    v.add_argument("dst", metavar="DST", help="output directory of bfpack pack")
    v.add_argument(
        "--source",
        metavar="SRC",
        help="also check that the output holds every token of this source exactly once",
    )
    v.set_defaults(run=_cmd_verify)

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
        help="directory for the corpus (stdlib.parquet) and the packed rows (packed/), "
        "created if needed; both are replaced on a rerun (default: ./bfpack-demo)",
    )
    d.set_defaults(run=_cmd_demo)
    return parser


class _Note:
    """What an interrupted run says about its destination."""

    def __init__(self):
        self.dst = None
        self.before = None

    def watch(self, dst):
        self.dst = dst
        self.before = run_id_of(dst)

    def text(self):
        if self.dst is None:
            return ""
        after = run_id_of(self.dst)
        if after is not None and after != self.before:
            return f"; the new output at {self.dst} is complete"
        if not os.path.lexists(self.dst):
            return f"; nothing was written to {self.dst}"
        return f"; {self.dst} is as it was before the run"


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"bfpack: warning: {message}", file=sys.stderr)


def _run(argv, guard, note):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.guard, args.note = guard, note
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except (ValueError, TypeError, OSError) as exc:
            print(f"bfpack: error: {exc}", file=sys.stderr)
            return 2


def main(argv=None):
    """Run the command line; returns the exit status.

    SIGINT and SIGTERM, from the moment this is called (before numpy,
    pyarrow and numba are imported), clean up what the run wrote and end it
    with one line on stderr and status 130 or 143; an interrupted run never
    exits 0, and says whether its destination holds the new output.
    Warnings are one line each (``bfpack: warning: ...``).
    """
    # Called with argv (from Python), the previous handlers are restored
    # at the end; as the program, they stay until it exits.
    guard = InterruptGuard(restore=argv is not None)
    note = _Note()
    status = 2
    try:
        with guard:
            status = _run(argv, guard, note)
            guard.check()  # a signal whose exception something swallowed
            guard.quiet()
    except Interrupted:
        pass
    except KeyboardInterrupt:  # raised with no signal of ours (another thread's main)
        guard.signum = guard.signum or signal.SIGINT
    except BaseException:
        # What an interrupted import or library turned the signal into
        # (numpy's import raises ImportError when interrupted).
        if guard.signum is None:
            raise
    if guard.exit_status is None:
        return status
    name = "SIGINT" if guard.exit_status == 130 else "SIGTERM"
    start = "\n" if sys.stderr.isatty() else ""
    print(f"{start}bfpack: interrupted by {name}{note.text()}", file=sys.stderr)
    return guard.exit_status


if __name__ == "__main__":
    sys.exit(main())
