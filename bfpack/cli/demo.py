"""``bfpack demo``: the whole job on the Python standard library."""

NAME = "demo"
HELP = "the whole job on the Python standard library (no download)"
DESCRIPTION = (
    "Tokenize the Python standard library's sources into a Parquet corpus, compare the "
    "packing methods on it, pack it and verify the output; nothing is downloaded."
)


def add_arguments(parser):
    parser.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        default=[2048, 8192, 32768],
        metavar="L",
        help="context lengths to compare; the first one packs (default: 2048 8192 32768)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the corpus (stdlib.parquet) and the packed rows (packed/), "
        "created if needed; both are replaced on a rerun (default: ./bfpack-demo)",
    )


def run(args):
    from ._demo import run_demo

    return run_demo(args.seq_len, args.out)
