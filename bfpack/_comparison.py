"""The comparison table of ``bfpack stats`` and ``bfpack demo``: every
method at every context length, beside the fewest cuts possible."""

import sys

import numpy as np

from .analysis import compare
from .methods import METHODS


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


def print_comparison(lengths, seq_lens, out=sys.stdout):
    """The comparison table of ``lengths``, its legend, and who cuts the fewest."""
    results = {seq_len: compare(lengths, seq_len).to_pydict() for seq_len in seq_lens}
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


def print_table(header, rows, out=sys.stdout, text_columns=(1,)):
    """Columns padded to their widest cell: numbers to the right, ``text_columns`` left."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, ["-" * w for w in widths], *rows):
        cells = [
            str(c).ljust(w) if i in text_columns else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        ]
        print("  ".join(cells).rstrip(), file=out)
