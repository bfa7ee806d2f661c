"""``bfpack stats SRC``: compare the packing methods on a dataset."""

from ._args import column_arg, read_lengths, source_arg

NAME = "stats"
HELP = "compare concat, bfd and ffd on a dataset (Parquet, Arrow IPC, JSON Lines)"
DESCRIPTION = (
    "Read the document lengths of SRC and compare the packing methods at each --seq-len: "
    "sequences, fill, documents cut, and the fewest cuts possible."
)


def add_arguments(parser):
    from ._comparison import FORMATS

    source_arg(parser)
    parser.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        required=True,
        metavar="L",
        help="context lengths to compare, one or more (required)",
    )
    column_arg(parser, "whose lengths are counted")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: for reading; json: one object with every figure; csv: one row per "
        "seq_len and method, under a header (default: %(default)s)",
    )


def run(args):
    from ._comparison import write_comparison

    lengths = read_lengths(args, args.src, "stats")
    write_comparison(lengths, args.seq_len, args.format, source=args.src)
    return 0
