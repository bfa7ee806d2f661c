"""``bfpack verify DST``: check a packed output against its manifest and source."""

import os
import sys

from ._args import guarded, short

NAME = "verify"
HELP = (
    "check a packed output against its manifest (exit 0: ok, 1: mismatch, 2: error, "
    "3: kept changing)"
)
DESCRIPTION = (
    "Check the shards of DST against its manifest and, with --source, that they hold every "
    "piece of every source document exactly once. An output replaced by another run while "
    "it is checked is checked again (3 times at most). Exit status: 0 ok, 1 mismatch, "
    "2 error, 3 DST kept changing (another run rewrote it)."
)


def add_arguments(parser):
    parser.add_argument("dst", metavar="DST", help="output directory of bfpack pack, or its URI")
    parser.add_argument(
        "--source",
        metavar="SRC",
        help="also check that the output holds every token of this source exactly once "
        "(default: check the output against its manifest only)",
    )


def _view(totals):
    postfix = f"{short(totals['tokens'])} tokens"
    if totals["stage"] == "output":
        return "verify output", " rows", totals["rows"], totals["total_rows"], postfix
    return "verify source", " docs", totals["documents"], totals["total_documents"], postfix


def run(args):
    from ..parquet import DestinationBusyError, verify

    try:
        with args.console.progress(_view) as show:
            result = verify(args.dst, source=args.source, progress=guarded(args, show))
    except DestinationBusyError as exc:  # rewritten while checked: not known to be damaged
        args.console.error(exc)
        return 3
    if args.verbosity >= 0 or not result.ok:
        _print_path_text(result.report())
    return 0 if result.ok else 1


def _print_path_text(text):
    """Print ``text``, whose paths may hold bytes that are not UTF-8 (as
    surrogates): those bytes go out as they are, as ``ls`` shows them."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        print(text.encode("utf-8", "backslashreplace").decode("utf-8"))
        return
    sys.stdout.flush()
    buffer.write(os.fsencode(text) + b"\n")
    buffer.flush()
