"""``bfpack pack SRC DST``: pack a dataset into packed Parquet shards."""

import argparse
import contextlib
import functools
from typing import Any

from ._args import column_arg, docs_view, guarded, source_arg

NAME = "pack"
HELP = "pack a dataset (Parquet, Arrow IPC, JSON Lines) into packed Parquet shards"
DESCRIPTION = (
    "Pack the documents of SRC (one row each) into rows of at most --seq-len tokens, "
    "written as Parquet shards with a manifest into DST, atomically."
)


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


def add_arguments(parser):
    from .._validate import LONG_DOCS
    from ..methods import METHODS
    from ..parquet import DEFAULT_WINDOW_TOKENS

    source_arg(parser)
    parser.add_argument(
        "dst",
        metavar="DST",
        help="output directory, or a URI on an object store (s3://, gs://, ...): must not "
        "exist, unless --overwrite; must not be SRC, inside it or around it",
    )
    parser.add_argument(
        "--seq-len", type=int, required=True, help="tokens per packed row (required)"
    )
    column_arg(parser, "to pack")
    parser.add_argument(
        "--method",
        default="bfd",
        choices=list(METHODS),
        help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())
        + " (default: %(default)s)",
    )
    parser.add_argument(
        "--long-docs",
        default="split",
        choices=LONG_DOCS,
        help="documents longer than --seq-len: split into --seq-len chunks plus "
        "the remainder, or truncate to their first --seq-len tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--pad-value",
        action="append",
        type=_pad_arg,
        metavar="[COLUMN=]VALUE",
        help="pad every row to --seq-len with VALUE: an integer, or a float for a "
        "floating-point column; COLUMN=VALUE, repeated, gives each packed column its own "
        "(default: no padding, rows as long as their pieces)",
    )
    parser.add_argument(
        "--position-ids",
        action="store_true",
        help="add a position_ids column, restarting at 0 at every piece (default: none)",
    )
    parser.add_argument(
        "--provenance",
        action="store_true",
        help="add doc_index and doc_offset columns, one value per piece: the piece's "
        "document, numbered in the order the files are read (the manifest's inputs give "
        "each file's first_document), and the offset of its first token there (default: none)",
    )
    parser.add_argument(
        "--carry",
        action="append",
        metavar="COLUMN",
        help="carry a per-document column (an id, a URL; not a list) as a list per row, "
        "one value per piece; repeat for more (default: none)",
    )
    parser.add_argument(
        "--separator",
        action="append",
        type=_pad_arg,
        metavar="[COLUMN=]VALUE",
        help="append VALUE (e.g. the tokenizer's EOS id) to every non-empty document before "
        "packing, counted in its length; COLUMN=VALUE, repeated, gives each packed column "
        "its own, e.g. labels=-100 (default: nothing appended)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="shuffle the rows of shard k with seed + k (default: no shuffle; rows "
        "come longest first)",
    )
    parser.add_argument(
        "--window-tokens",
        type=int,
        default=DEFAULT_WINDOW_TOKENS,
        metavar="N",
        help="tokens read and packed at a time; memory follows it "
        f"(default: {DEFAULT_WINDOW_TOKENS:,})",
    )
    parser.add_argument(
        "--rows-per-shard",
        type=int,
        metavar="N",
        help="packed sequences per output shard, the last shard holding the rest "
        "(default: one shard per window)",
    )
    parser.add_argument(
        "--format",
        default="parquet",
        choices=["parquet", "arrow"],
        help="the shards' format: parquet (zstd, compact, for storage and interchange) or "
        "arrow (uncompressed Arrow IPC in the layout of datasets' save_to_disk: "
        "datasets.load_from_disk and PackedDataset map it with no copy; faster to write, "
        "larger) (default: %(default)s)",
    )
    cluster = parser.add_mutually_exclusive_group()
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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST if it is an earlier bfpack output or an empty directory "
        "(default: refuse an existing DST)",
    )


def _pad_value(given, flag="--pad-value"):
    """``--pad-value`` (or ``--separator``) as ``pack_parquet`` takes it: one
    number, or one per column."""
    if not given:
        return None
    columns = [column for column, _ in given if column is not None]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"{flag}: column {twice[0]!r} is given twice")
    if len(columns) == len(given):
        return dict(given)
    if len(given) == 1:
        return given[0][1]
    raise ValueError(
        f"{flag}: give one VALUE for every packed column, or COLUMN=VALUE for each of them"
    )


#: Run by each worker process of ``--workers`` (a Dask preload): Ctrl-C in a
#: terminal signals the whole process group, and only the driver must act
#: on it (stop the tasks, wait for them, clean up); a worker that took it
#: would die with a traceback, its tasks left to be run again.
_WORKER_PRELOAD = """
import signal
import threading


def dask_setup(worker):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
"""


@contextlib.contextmanager
def _dask_client(args):
    """A Dask client for ``--workers``/``--scheduler``, closed afterwards; else None."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from .._optional import requires

    with requires("dask", needed_by="bfpack pack --workers and --scheduler"):
        import distributed
    from ..dask import cluster_errors

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    with contextlib.ExitStack() as stack:
        # Whatever fails here is the cluster's: one line, exit 2 (ClusterError).
        if args.scheduler is not None:
            with cluster_errors(f"cannot use the Dask scheduler at {args.scheduler}", every=True):
                client = stack.enter_context(distributed.Client(args.scheduler))
        else:
            with cluster_errors(
                f"the local Dask cluster of {args.workers} worker(s) failed to start", every=True
            ):
                cluster = stack.enter_context(
                    distributed.LocalCluster(
                        n_workers=args.workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=":0",
                        preload=[_WORKER_PRELOAD],
                    )
                )
                client = stack.enter_context(distributed.Client(cluster))
        yield client


def run(args):
    args.note.watch(args.dst)
    start = ("pack", " docs", "reading the first window")
    with args.console.progress(docs_view("pack"), start) as show, _dask_client(args) as client:
        if client is None:
            from ..parquet import pack_parquet
        else:  # the same options, on the cluster
            from .. import dask

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
            provenance=args.provenance,
            carry=args.carry,
            separator=_pad_value(args.separator, "--separator"),
            seed=args.seed,
            window_tokens=args.window_tokens,
            rows_per_shard=args.rows_per_shard,
            overwrite=args.overwrite,
            progress=guarded(args, show),
            format=args.format,
        )
    s = manifest["stats"]
    if args.verbosity >= 0:
        print(
            f"{s['documents']:,} documents, {s['tokens']:,} tokens -> "
            f"{s['sequences']:,} sequences of {s['seq_len']:,} "
            f"(lower bound {s['lower_bound']:,}, fill {100 * s['fill']:.3f}%, "
            f"{_cut_documents(s)}) in "
            f"{len(manifest['shards'])} shard(s) at {args.dst}"
        )
    return 0


def _cut_documents(stats: dict[str, Any]) -> str:
    """The documents not kept whole, in the words of what happened to their
    tokens: split across sequences (every token kept), or truncated (the
    tokens past ``seq_len`` dropped, ``--long-docs truncate``)."""
    cut = stats["documents_truncated"]  # the manifest's key for documents not whole
    dropped = stats.get("tokens_dropped", 0)
    if dropped:
        return f"{cut:,} documents truncated, {dropped:,} tokens dropped"
    return f"{cut:,} documents split across sequences, no token dropped"
