"""The parser built from the command registry, and :func:`main`.

This module imports nothing heavy at the top: :func:`main` installs the
SIGINT/SIGTERM handlers first, then loads numpy, pyarrow and numba.
"""

import argparse
import contextlib
import importlib
import os
import signal
import sys
import warnings

from .._interrupt import Interrupted, InterruptGuard
from .._version import __version__
from ..parquet.manifest import run_id_of
from ._console import Console

#: The commands, in the order ``bfpack --help`` lists them: each is a module
#: of this package with ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)``
#: and ``run(args)`` returning the exit status.
COMMANDS = ("pack", "stats", "verify", "balance", "demo")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes give one line on stderr, like every other error."""

    def error(self, message):
        self.exit(2, f"bfpack: error: {message} (see '{self.prog} --help')\n")


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


def build_parser():
    """The ``bfpack`` parser: one subcommand per module of :data:`COMMANDS`."""
    main_parser = _Parser(
        prog="bfpack",
        description="Best-fit packing of tokenized documents "
        "into training sequences, without truncating them.",
        epilog="-v and -q go before or after the command. Exit status: 0 done, 1 verify "
        "found a mismatch, 2 error, 3 verify found DST changing, 130/143 interrupted by "
        "SIGINT/SIGTERM.",
    )
    main_parser.add_argument("--version", action="version", version=__version__)
    _output_options(main_parser)
    subparsers = main_parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        command = importlib.import_module(f".{name}", __package__)
        sub = subparsers.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(sub)
        _output_options(sub, "_here")
        sub.set_defaults(run=command.run)
    return main_parser


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
        self.before = _run_id(dst)

    def text(self):
        if self.dst is None:
            return ""
        after = _run_id(self.dst)
        if after is not None and after != self.before:
            return f"; the new output at {self.dst} is complete"
        if "://" not in self.dst and not os.path.lexists(self.dst):
            return f"; nothing was written to {self.dst}"
        return f"; {self.dst} is as it was before the run"


def _run_id(dst):
    """The run id of the output at ``dst`` (a path or a store's URI), or None."""
    if "://" not in str(dst):
        return run_id_of(dst)
    from ..parquet._remote import run_id_at  # pyarrow's file systems, only for a URI

    return run_id_at(dst)


def _run(argv, guard, note):
    parser = build_parser()
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
        except (ValueError, TypeError, OSError, ImportError) as exc:
            # ImportError: a missing extra, its message naming the install command.
            # The Python API's wording names overwrite=True; here it is --overwrite.
            console.error(getattr(exc, "cli_message", exc))
            return 2


def main(argv=None):
    """Run the command line; returns the exit status.

    SIGINT and SIGTERM, from the moment this is called (as the program:
    from the moment :mod:`bfpack.cli` is imported; before numpy, pyarrow
    and numba are imported), clean up what the run wrote and end it with
    one line on stderr and status 130 or 143; an interrupted run never
    exits 0, and says whether its destination holds the new output.

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
    from ._early import GUARD

    # Called with argv (from Python), the previous handlers are restored
    # at the end; as the program, they stay until it exits.
    program = argv is None
    guard = GUARD if program and GUARD is not None else InterruptGuard(restore=not program)
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
