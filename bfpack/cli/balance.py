"""``bfpack balance DST``: how evenly a packed output's rows load data-parallel ranks."""

import json
import os

from ._args import column_arg, read_lengths, short

NAME = "balance"
HELP = "expected slowest-over-mean rank of a packed output, dealt at random or balanced"
DESCRIPTION = (
    "Read the seq_lengths of the packed output DST and report the spread of its rows' costs "
    "(tokens + attention_weight * sum of squared piece lengths) and the expected slowest rank "
    "over the mean rank, summed over the steps of an epoch, when rows are dealt at random "
    "(DistributedSampler) and when they are balanced (bfpack.torch.BalancedSampler). With "
    "--seq-len, DST is a source dataset instead, packed in memory (bfd) at each length. A "
    "simulation in that cost model: communication and kernels whose cost is not a sum of "
    "squares are left out."
)

FORMATS = ("table", "json")


def add_arguments(parser):
    parser.add_argument(
        "dst",
        metavar="DST",
        help="output directory of bfpack pack (with --seq-len: a source Parquet file or directory)",
    )
    parser.add_argument(
        "--ranks",
        type=int,
        nargs="+",
        required=True,
        metavar="R",
        help="data-parallel ranks, one or more (required)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=[1],
        metavar="B",
        help="rows per rank per step, one or more (default: 1)",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--attention-weight",
        type=float,
        metavar="W",
        help="cost of a squared piece length, in tokens (default: from --hidden-size and --layers)",
    )
    model.add_argument(
        "--hidden-size",
        type=int,
        metavar="D",
        help="the model's hidden size (default: 4096, with --layers 32: a 7B model)",
    )
    parser.add_argument("--layers", type=int, metavar="N", help="the model's layers (default: 32)")
    parser.add_argument(
        "--window",
        type=int,
        default=16,
        metavar="STEPS",
        help="global steps per balancing window (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--seq-len",
        type=int,
        nargs="+",
        metavar="L",
        help="treat DST as a source dataset and pack its documents at each L in memory "
        "(default: DST is the output of bfpack pack)",
    )
    column_arg(parser, "whose lengths are counted (with --seq-len)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: for reading; json: one object with every figure (default: %(default)s)",
    )


def _weight(args):
    from ..balance import attention_weight

    if args.attention_weight is not None:
        if args.layers is not None:
            raise ValueError("--layers goes with --hidden-size, not with --attention-weight")
        return args.attention_weight, "given"
    hidden = 4096 if args.hidden_size is None else args.hidden_size
    layers = 32 if args.layers is None else args.layers
    return attention_weight(hidden_size=hidden, num_layers=layers), f"d {hidden}, {layers} layers"


def _packed_seq_lengths(dst):
    """The ``seq_lengths`` column of every shard of a packed output, in order
    (Parquet or Arrow shards, as its manifest records)."""
    import pyarrow as pa

    from ..parquet._shards import read_shard, read_shard_schema
    from ..parquet.manifest import manifest_path, output_format, read_manifest
    from ..table import SEQ_LENGTHS

    if not os.path.isdir(dst):
        raise NotADirectoryError(
            f"{dst} is not a directory; pass the output directory of bfpack pack, or a source "
            f"with --seq-len"
        )
    fmt = "parquet"
    if manifest_path(dst) is not None:
        manifest = read_manifest(dst)
        names, fmt = [s["file"] for s in manifest["shards"]], output_format(manifest)
    else:
        names = sorted(n for n in os.listdir(dst) if n.endswith(".parquet"))
    if not names:
        raise ValueError(f"{dst} holds no Parquet shard; pass a directory that bfpack pack wrote")
    chunks = []
    for name in names:
        path = os.path.join(dst, name)
        if SEQ_LENGTHS not in read_shard_schema(path, fmt).names:
            raise ValueError(
                f"{path} has no {SEQ_LENGTHS} column: not packed output; to pack a source in "
                f"memory, add --seq-len"
            )
        chunks.extend(read_shard(path, fmt, [SEQ_LENGTHS]).column(SEQ_LENGTHS).chunks)
    return pa.chunked_array(chunks)


def _inputs(args, weight):
    """``(label, row costs)`` per packing to report."""
    from .. import pack
    from ..balance import row_costs

    if not args.seq_len:
        return [("packed", row_costs(_packed_seq_lengths(args.dst), attention_weight=weight))]
    lengths = read_lengths(args, args.dst, "balance")
    return [(L, row_costs(pack(lengths, L), attention_weight=weight)) for L in args.seq_len]


def run(args):
    from ..balance import simulate
    from ._comparison import print_table

    weight, model = _weight(args)
    records = []
    for label, costs in _inputs(args, weight):
        for ranks in args.ranks:
            for batch in args.batch_size:
                report = simulate(
                    costs, num_replicas=ranks, batch_size=batch, window=args.window, seed=args.seed
                )
                records.append((label, ranks, batch, report))
    if args.format == "json":
        out = {
            "source": args.dst,
            "attention_weight": weight,
            "window": args.window,
            "results": [
                {"seq_len": label, "ranks": r, "batch_size": b, **report._asdict()}
                for label, r, b, report in records
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.dst}: attention_weight {weight:.3g} ({model}), window {args.window} steps\n")
    seen = set()
    for label, _, _, report in records:
        if label in seen:
            continue
        seen.add(label)
        q = report.cost_quantiles
        where = "" if label == "packed" else f" at seq_len {label}"
        if not q:
            print(f"{report.rows} rows{where}")
            continue
        spread = f" (max/median {q['max'] / q['p50']:.2f})" if q["p50"] else ""
        print(
            f"{report.rows:,} rows{where}; cost per row in tokens: min {short(q['min'])}, "
            f"median {short(q['p50'])}, p99 {short(q['p99'])}, max {short(q['max'])}{spread}"
        )
    print()
    header = ["seq_len", "ranks", "batch", "steps", "random", "balanced", "mean shift"]
    rows = [
        [label, r, b, f"{rep.steps:,}", f"{rep.random:.3f}", f"{rep.balanced:.3f}",
         f"{rep.mean_shift:.1f} steps"]
        for label, r, b, rep in records
    ]  # fmt: skip
    print_table(header, rows, text_columns=(0,))
    print(
        "\nrandom, balanced: the slowest rank's cost over the mean rank's, summed over the "
        "epoch's steps (1.000 is perfect); mean shift: how far rows move from a random order."
    )
    return 0
