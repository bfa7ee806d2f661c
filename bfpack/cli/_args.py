"""Arguments and helpers that several commands share."""


def source_arg(parser):
    parser.add_argument(
        "src",
        metavar="SRC",
        help="a Parquet, Arrow IPC (.arrow, .feather) or JSON Lines (.jsonl, .jsonl.gz, "
        ".jsonl.zst: one document per line, its tokens a list under the --column key) file, "
        "a directory of files of one of these formats (read recursively in path order; "
        "names starting with '_' or '.' are skipped, as pyarrow does), or a datasets "
        "save_to_disk directory (read in the order of its state.json); or the URI of one "
        "on an object store (s3://, gs://, hf://, ...; credentials from the environment)",
    )


def column_arg(parser, what):
    parser.add_argument(
        "--column",
        action="append",
        metavar="NAME",
        help=f"list column {what}; repeat for several, which must hold lists of the same "
        "length row by row (default: every list column but attention_mask)",
    )


def guarded(args, show):
    """The progress callback: a safe point for interrupts, then the bar."""

    def progress(totals):
        args.guard.check()
        show(totals)

    return progress


def docs_view(label):
    """The progress view of reading a source: documents read of all, and tokens."""

    def view(totals):
        tokens = f"{short(totals['tokens'])} tokens"
        return label, " docs", totals["documents"], totals["total_documents"], tokens

    return view


def read_lengths(args, src, label):
    """Every document's length in ``src`` (of ``--column``), under a bar ``label``."""
    from ..parquet._source import ParquetSource

    source = ParquetSource.open(src)
    spec = source.spec(columns=args.column)
    with args.console.progress(docs_view(label)) as show:
        return source.lengths(spec, progress=guarded(args, show))


def short(count):
    """A count in three digits or so: 950, 12.3k, 412M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)
