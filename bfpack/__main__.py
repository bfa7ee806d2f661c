"""Command line: ``bfpack`` (or ``python -m bfpack``).

``bfpack pack SRC DST``: pack a Parquet dataset; ``bfpack stats SRC``:
compare concat, bfd and ffd on it; ``bfpack verify DST``: check an output
against its manifest (and its source); ``bfpack demo``: the whole job on the
Python standard library.

Run as the program (``python -m bfpack``, or the ``bfpack`` script), this
module records SIGINT and SIGTERM from its first line, before argparse and
logging load, and :func:`main` reports them; numpy, pyarrow and numba load
later still, inside the command.
"""

import os
import sys

from ._interrupt import Interrupted, InterruptGuard

#: The program's guard, installed before anything else loads (None when the
#: module is imported by a Python program, which calls main(argv)).
_EARLY = None
_ARGV0 = (getattr(sys, "argv", None) or [""])[0]  # none in an embedded interpreter
if __name__ == "__main__" or os.path.basename(_ARGV0) == "bfpack":  # the console script too
    _EARLY = InterruptGuard(restore=False).__enter__()
    _EARLY.quiet()  # only recorded until main() is ready to report it

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import signal  # noqa: E402
import warnings  # noqa: E402

from ._console import Console  # noqa: E402
from ._version import __version__  # noqa: E402
from .manifest import run_id_of  # noqa: E402


def _guarded(args, show):
    """The progress callback: a safe point for interrupts, then the bar."""

    def progress(totals):
        args.guard.check()
        show(totals)

    return progress


def _short(count):
    """A count in three digits or so: 950, 12.3k, 412M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


def _pack_view(totals):
    postfix = f"{_short(totals['tokens'])} tokens"
    return "pack", " docs", totals["documents"], totals["total_documents"], postfix


def _stats_view(totals):
    postfix = f"{_short(totals['tokens'])} tokens"
    return "stats", " docs", totals["documents"], totals["total_documents"], postfix


def _verify_view(totals):
    postfix = f"{_short(totals['tokens'])} tokens"
    if totals["stage"] == "output":
        return "verify output", " rows", totals["rows"], totals["total_rows"], postfix
    return "verify source", " docs", totals["documents"], totals["total_documents"], postfix


def _pad_value(given):
    """``--pad-value`` as ``pack_parquet`` takes it: one number, or one per column."""
    if not given:
        return None
    columns = [column for column, _ in given if column is not None]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"--pad-value: column {twice[0]!r} is given twice")
    if len(columns) == len(given):
        return dict(given)
    if len(given) == 1:
        return given[0][1]
    raise ValueError(
        "--pad-value: give one VALUE for every packed column, or COLUMN=VALUE for each of them"
    )


@contextlib.contextmanager
def _dask_client(args):
    """A Dask client for ``--workers``/``--scheduler``, closed afterwards; else None."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise ValueError(
            "--workers and --scheduler need Dask: pip install 'bfpack[dask]'"
        ) from None
    if args.scheduler is not None:
        with distributed.Client(args.scheduler) as client:
            yield client
        return
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    with (
        distributed.LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _cmd_pack(args):
    args.note.watch(args.dst)
    start = ("pack", " docs", "reading the first window")
    with args.console.progress(_pack_view, start) as show, _dask_client(args) as client:
        if client is None:
            from .parquet import pack_parquet
        else:  # the same options, on the cluster
            from . import dask

            pack_parquet = functools.partial(dask.pack_parquet, client=client)
        manifest = pack_parquet(
            args.src,
            args.dst,
            args.seq_len,
            columns=args.column,
            method=args.method,
            long_docs=args.long_docs,
            pad_value=_pad_value(args.pad_value),
            position_ids=args.position_ids,
            seed=args.seed,
            window_tokens=args.window_tokens,
            rows_per_shard=args.rows_per_shard,
            overwrite=args.overwrite,
            progress=_guarded(args, show),
        )
    s = manifest["stats"]
    if args.verbosity >= 0:
        print(
            f"{s['documents']:,} documents, {s['tokens']:,} tokens -> "
            f"{s['sequences']:,} sequences of {s['seq_len']:,} "
            f"(lower bound {s['lower_bound']:,}, fill {100 * s['fill']:.3f}%, "
            f"{s['documents_truncated']:,} documents truncated) in "
            f"{len(manifest['shards'])} shard(s) at {args.dst}"
        )
    return 0


def _cmd_stats(args):
    from ._comparison import write_comparison
    from ._source import ParquetSource

    source = ParquetSource.open(args.src)
    spec = source.spec(columns=args.column)
    with args.console.progress(_stats_view) as show:
        lengths = source.lengths(spec, progress=_guarded(args, show))
    write_comparison(lengths, args.seq_len, args.format, source=args.src)
    return 0


def _cmd_verify(args):
    from .verification import verify

    with args.console.progress(_verify_view) as show:
        result = verify(args.dst, source=args.source, progress=_guarded(args, show))
    if args.verbosity >= 0 or not result.ok:
        print(result.report())
    return 0 if result.ok else 1


def _cmd_demo(args):
    from ._demo import run_demo

    return run_demo(args.seq_len, args.out)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr, like every other error."""

    def error(self, message):
        self.exit(2, f"bfpack: error: {message} (see '{self.prog} --help')\n")


def _number(text):
    """A pad value: an integer, or else a float."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _pad_arg(text):
    """``VALUE`` or ``COLUMN=VALUE``, as ``(column or None, number)``."""
    column, sep, value = text.rpartition("=")
    if not sep:
        return None, _number(text)
    if not column:
        raise argparse.ArgumentTypeError(f"{text!r} names no column before '='")
    return column, _number(value)


def _output_options(parser, suffix=""):
    """``-v``/``-q``; ``suffix`` keeps a subcommand's apart from the main parser's."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbose" + suffix,
        help="log what is read and written on stderr; -vv: every file, window and shard, "
        "timed (default: warnings and errors only)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest="quiet" + suffix,
        help="no progress bar and no log lines; pack prints no summary, verify only what "
        "is wrong; warnings and errors still show (default: a progress bar when stderr is "
        "a terminal)",
    )


def _source_arg(parser):
    parser.add_argument(
        "src",
        metavar="SRC",
        help="a Parquet file, or a directory of them (read recursively in path order; "
        "names starting with '_' or '.' are skipped, as pyarrow does)",
    )


def _column_arg(parser, what):
    parser.add_argument(
        "--column",
        action="append",
        metavar="NAME",
        help=f"list column {what}; repeat for several, which must hold lists of the same "
        "length row by row (default: every list column but attention_mask)",
    )


def _parser():
    from ._comparison import FORMATS
    from ._validate import LONG_DOCS
    from .methods import METHODS
    from .parquet import DEFAULT_WINDOW_TOKENS

    parser = _Parser(
        prog="bfpack",
        description="Best-fit packing of tokenized documents "
        "into training sequences, without truncating them.",
        epilog="-v and -q go before or after the command. Exit status: 0 done, 1 verify "
        "found a mismatch, 2 error, 130/143 interrupted by SIGINT/SIGTERM.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    _output_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser(
        "pack",
        help="pack a Parquet dataset into packed Parquet shards",
        description="Pack the documents of SRC (one row each) into rows of at most --seq-len "
        "tokens, written as Parquet shards with a manifest into DST, atomically.",
    )
    _source_arg(p)
    p.add_argument(
        "dst",
        metavar="DST",
        help="output directory: must not exist, unless --overwrite; "
        "must not be SRC, inside it or around it",
    )
    p.add_argument("--seq-len", type=int, required=True, help="tokens per packed row (required)")
    _column_arg(p, "to pack")
    p.add_argument(
        "--method",
        default="bfd",
        choices=list(METHODS),
        help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())
        + " (default: %(default)s)",
    )
    p.add_argument(
        "--long-docs",
        default="split",
        choices=LONG_DOCS,
        help="documents longer than --seq-len: split into --seq-len chunks plus "
        "the remainder, or truncate to their first --seq-len tokens (default: %(default)s)",
    )
    p.add_argument(
        "--pad-value",
        action="append",
        type=_pad_arg,
        metavar="[COLUMN=]VALUE",
        help="pad every row to --seq-len with VALUE: an integer, or a float for a "
        "floating-point column; COLUMN=VALUE, repeated, gives each packed column its own "
        "(default: no padding, rows as long as their pieces)",
    )
    p.add_argument(
        "--position-ids",
        action="store_true",
        help="add a position_ids column, restarting at 0 at every piece (default: none)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="shuffle the rows of shard k with seed + k (default: no shuffle; rows "
        "come longest first)",
    )
    p.add_argument(
        "--window-tokens",
        type=int,
        default=DEFAULT_WINDOW_TOKENS,
        metavar="N",
        help="tokens read and packed at a time; memory follows it "
        f"(default: {DEFAULT_WINDOW_TOKENS:,})",
    )
    p.add_argument(
        "--rows-per-shard",
        type=int,
        metavar="N",
        help="packed sequences per output shard, the last shard holding the rest "
        "(default: one shard per window)",
    )
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="pack on a local Dask cluster of N worker processes, one thread each, "
        "started for the run (needs bfpack[dask]; default: this process alone)",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="pack on the Dask cluster whose scheduler is at ADDRESS, e.g. "
        "tcp://host:8786; SRC and DST must be at the same paths on every worker "
        "(default: this process alone)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST if it is an earlier bfpack output or an empty directory "
        "(default: refuse an existing DST)",
    )
    _output_options(p, "_here")
    p.set_defaults(run=_cmd_pack)

    s = commands.add_parser(
        "stats",
        help="compare concat, bfd and ffd on a Parquet dataset",
        description="Read the document lengths of SRC and compare the packing methods at "
        "each --seq-len: sequences, fill, documents cut, and the fewest cuts possible.",
    )
    _source_arg(s)
    s.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        required=True,
        metavar="L",
        help="context lengths to compare, one or more (required)",
    )
    _column_arg(s, "whose lengths are counted")
    s.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: for reading; json: one object with every figure; csv: one row per "
        "seq_len and method, under a header (default: %(default)s)",
    )
    _output_options(s, "_here")
    s.set_defaults(run=_cmd_stats)

    v = commands.add_parser(
        "verify",
        help="check a packed output against its manifest (exit 0: ok, 1: mismatch, 2: error)",
        description="Check the shards of DST against its manifest and, with --source, that "
        "they hold every piece of every source document exactly once. Exit status: 0 ok, "
        "1 mismatch, 2 error.",
    )
    v.add_argument("dst", metavar="DST", help="output directory of bfpack pack")
    v.add_argument(
        "--source",
        metavar="SRC",
        help="also check that the output holds every token of this source exactly once "
        "(default: check the output against its manifest only)",
    )
    _output_options(v, "_here")
    v.set_defaults(run=_cmd_verify)

    d = commands.add_parser(
        "demo", help="the whole job on the Python standard library (no download)"
    )
    d.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        default=[2048, 8192, 32768],
        metavar="L",
        help="context lengths to compare; the first one packs (default: 2048 8192 32768)",
    )
    d.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the corpus (stdlib.parquet) and the packed rows (packed/), "
        "created if needed; both are replaced on a rerun (default: ./bfpack-demo)",
    )
    d.set_defaults(run=_cmd_demo)
    return parser


def _verbosity(parser, args):
    """-1 (quiet), 0, 1 (-v), 2 (-vv): the options before and after the command."""
    verbose = args.verbose + getattr(args, "verbose_here", 0)
    quiet = args.quiet or getattr(args, "quiet_here", False)
    if verbose and quiet:
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    return -1 if quiet else verbose


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


def _run(argv, guard, note):
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        verbosity = _verbosity(parser, args)
    except SystemExit as exc:  # a usage error (one line said it), --help, --version
        return exc.code or 0
    if args.command is None:
        parser.print_help()
        return 2
    args.verbosity = verbosity
    args.guard, args.note = guard, note
    args.console = console = Console(verbosity=args.verbosity)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        console.warning(message)

    with warnings.catch_warnings(), console.logging():
        warnings.showwarning = show_warning
        try:
            return args.run(args)
        except BrokenPipeError:
            # The reader of stdout left (``bfpack stats --format csv | head``): end
            # quietly, as a process that SIGPIPE ends, and write nothing more there.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        except (ValueError, TypeError, OSError) as exc:
            # The Python API's wording names overwrite=True; here it is --overwrite.
            console.error(getattr(exc, "cli_message", exc))
            return 2


def main(argv=None):
    """Run the command line; returns the exit status.

    SIGINT and SIGTERM, from the moment this is called (as the program:
    from the first line of this module; before numpy, pyarrow and numba are
    imported), clean up what the run wrote and end it with one line on
    stderr and status 130 or 143; an interrupted run never exits 0, and
    says whether its destination holds the new output.

    As the program (``argv`` None) it does not return: once its output is
    flushed it ends the process with :func:`os._exit`. The interpreter's
    teardown would take 0.1 s to seconds (garbage collection of numba's
    objects) after Python has put back the system's signal handlers, so a
    signal then would kill the process silently, and Ctrl-C would seem to
    do nothing.
    Warnings are one line each (``bfpack: warning: ...``), and so are
    the ``bfpack`` log records that ``-v`` shows; on a terminal a progress
    bar (tqdm) shows how far ``pack``, ``stats`` and ``verify`` are.
    """
    # Called with argv (from Python), the previous handlers are restored
    # at the end; as the program, they stay until it exits.
    program = argv is None
    guard = _EARLY if program and _EARLY is not None else InterruptGuard(restore=not program)
    note = _Note()
    status = 2
    try:
        with guard:
            guard.check()  # a signal that came while the program loaded
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
    if guard.exit_status is not None:
        name = "SIGINT" if guard.exit_status == 130 else "SIGTERM"
        start = "\n" if sys.stderr.isatty() else ""
        print(f"{start}bfpack: interrupted by {name}{note.text()}", file=sys.stderr)
        status = guard.exit_status
    if program:
        _end(status)
    return status


def _end(status):
    """Flush stdout and stderr and end the process now, with ``status``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader that left: nothing more to say
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
