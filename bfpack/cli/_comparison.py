"""The comparison of ``bfpack stats`` and ``bfpack demo``: every method at
every context length, beside the fewest cuts possible; as a table for
people, or as JSON or CSV for scripts (``bfpack stats --format``)."""

import csv
import json
import os
import sys

import numpy as np

from ..analysis import compare
from ..methods import METHODS


def _percent(count, total):
    return f"{100 * count / max(total, 1):.2f}%"


def _compare_rows(results, nonempty):
    """Table rows of :func:`bfpack.compare` results, one dict per context length."""
    rows = []
    for seq_len, c in results.items():
        for i, method in enumerate(c["method"]):
            rows.append(
                (
                    f"{seq_len:,}",
                    method,
                    f"{c['sequences'][i]:,}",
                    f"{100 * c['vs_first'][i]:+.3f}%" if i else "-",
                    f"{100 * c['fill'][i]:.3f}%",
                    _percent(c["documents_truncated"][i], nonempty),
                    _percent(c["min_documents_truncated"][i], nonempty),
                )
            )
    return rows


def _fewest_everywhere(results):
    """Methods that make the fewest possible cuts at every context length."""
    fewest = set(METHODS)
    for c in results.values():
        fewest &= {
            m
            for m, docs, cuts, min_docs, min_cuts in zip(
                c["method"],
                c["documents_truncated"],
                c["truncation_cuts"],
                c["min_documents_truncated"],
                c["min_truncation_cuts"],
            )
            if docs == min_docs and cuts == min_cuts
        }
    return [m for m in METHODS if m in fewest]


_HEADER = ("seq_len", "method", "sequences", "vs concat", "fill", "docs cut", "fewest possible")


def _legend(nonempty):
    return (
        "vs concat: sequences added over concatenation (what packing costs).\n"
        "fill: tokens / (sequences x seq_len).\n"
        f"docs cut: documents not kept whole in one sequence, of the {nonempty:,}\n"
        "non-empty ones; fewest possible: those longer than seq_len, which any\n"
        "method must cut."
    )


#: What ``bfpack stats --format`` offers.
FORMATS = ("table", "json", "csv")


def _compare_all(lengths, seq_lens):
    """:func:`bfpack.compare` at every context length, as columns of Python values."""
    return {seq_len: compare(lengths, seq_len).to_pydict() for seq_len in seq_lens}


def comparison_records(results):
    """One dict per context length and method: ``seq_len``, ``method``, every
    column of :func:`bfpack.compare`, and ``fewest_possible`` (whether the
    method cuts no more documents, and no more often, than any packing must)."""
    records = []
    for seq_len, c in results.items():
        for i in range(len(c["method"])):
            record = {"seq_len": seq_len, **{name: c[name][i] for name in c}}
            record["fewest_possible"] = (
                record["documents_truncated"] == record["min_documents_truncated"]
                and record["truncation_cuts"] == record["min_truncation_cuts"]
            )
            records.append(record)
    return records


def write_comparison(lengths, seq_lens, fmt="table", *, source, out=None):
    """The comparison of ``lengths`` (read from ``source``) in format ``fmt``.

    ``table``: a line on the source, then :func:`print_comparison`. ``json``:
    one object, ``source``, ``documents``, ``nonempty_documents``,
    ``tokens``, ``results`` (:func:`comparison_records`) and
    ``fewest_everywhere`` (the methods with the fewest possible cuts at every
    length). ``csv``: the records, one row each, under a header (booleans as
    ``true``/``false``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = sys.stdout if out is None else out
    documents, tokens = int(lengths.shape[0]), int(lengths.sum())
    if fmt == "table":
        name = os.path.basename(os.path.normpath(source))
        print(f"{name}: {documents:,} documents, {tokens:,} tokens\n", file=out)
        print_comparison(lengths, seq_lens, out)
        return
    results = _compare_all(lengths, seq_lens)
    records = comparison_records(results)
    if fmt == "json":
        summary = {
            "source": str(source),
            "documents": documents,
            "nonempty_documents": int(np.count_nonzero(lengths)),
            "tokens": tokens,
            "results": records,
            "fewest_everywhere": _fewest_everywhere(results),
        }
        json.dump(summary, out, indent=2)
        out.write("\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(records[0]))  # seq_lens is never empty: one record at least
    for record in records:
        writer.writerow(str(v).lower() if isinstance(v, bool) else v for v in record.values())


def print_comparison(lengths, seq_lens, out=None):
    """The comparison table of ``lengths``, its legend, and who cuts the fewest."""
    out = sys.stdout if out is None else out
    results = _compare_all(lengths, seq_lens)
    nonempty = int(np.count_nonzero(lengths))
    print_table(_HEADER, _compare_rows(results, nonempty), out)
    print("\n" + _legend(nonempty), file=out)
    fewest = _fewest_everywhere(results)
    if fewest:
        print(
            f"{', '.join(fewest)}: the fewest possible cuts at every seq_len (each document\n"
            f"longer than seq_len cut ceil(length / seq_len) - 1 times, no other).",
            file=out,
        )


def print_table(header, rows, out=None, text_columns=(1,)):
    """Columns padded to their widest cell: numbers to the right, ``text_columns`` left."""
    out = sys.stdout if out is None else out
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["-" * w for w in widths], *rows):
        cells = [
            str(c).ljust(w) if i in text_columns else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        ]
        print("  ".join(cells).rstrip(), file=out)
