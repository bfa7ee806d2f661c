"""``bfpack verify DST``: check a packed output against its manifest and source."""

from ._args import guarded, short

NAME = "verify"
HELP = "check a packed output against its manifest (exit 0: ok, 1: mismatch, 2: error)"
DESCRIPTION = (
    "Check the shards of DST against its manifest and, with --source, that they hold every "
    "piece of every source document exactly once. Exit status: 0 ok, 1 mismatch, 2 error."
)


def add_arguments(parser):
    parser.add_argument("dst", metavar="DST", help="output directory of bfpack pack")
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
    from ..parquet import verify

    with args.console.progress(_view) as show:
        result = verify(args.dst, source=args.source, progress=guarded(args, show))
    if args.verbosity >= 0 or not result.ok:
        print(result.report())
    return 0 if result.ok else 1
