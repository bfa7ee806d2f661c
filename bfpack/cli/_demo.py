"""``bfpack demo``: the whole job on the Python standard library, no download."""

import os
import sys
import time

import numba.core.event as numba_event
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis import compare
from ..corpus import stdlib_table
from ..parquet import pack_parquet
from ..parquet.manifest import MANIFEST
from ..stream import TableStreamPacker
from ..table import OutputSpec, document_lengths
from ._comparison import print_comparison

#: Where ``bfpack demo`` writes without ``--out``: a folder of the current directory.
DEMO_OUT = "bfpack-demo"


def _warm_kernels(seq_len):
    """Call every kernel the demo uses, on tiny data: compiles them, or loads them."""
    tiny = pa.table({"input_ids": pa.array([[1, 2, 3], [4]], type=pa.list_(pa.uint16()))})
    compare(document_lengths(tiny, ["input_ids"]), seq_len)
    spec = OutputSpec.for_schema(tiny.schema, columns="input_ids", position_ids=True)
    packer = TableStreamPacker(seq_len, spec, seed=0)
    packer.step(tiny)
    packer.finish()


class _CompileNotice(numba_event.Listener):
    """Says once, on stderr, that kernels are compiling.

    numba signals "numba:compile" only when a kernel is missing from its
    on-disk cache, just before compiling it: so the notice shows on a first
    run (or after an upgrade), never when the kernels load from the cache.
    """

    def __init__(self, err):
        self.err = err
        self.started = None

    def on_start(self, event):
        # Only bfpack's kernels are announced, not whatever numba compiles for itself.
        module = getattr(event.data["dispatcher"].py_func, "__module__", "") or ""
        if self.started is None and module.startswith("bfpack."):
            self.started = time.perf_counter()
            print(
                "Compiling bfpack's kernels: first run only, numba caches them (~5-20 s)...",
                end="",
                file=self.err,
                flush=True,
            )

    def on_end(self, event):
        pass

    def done(self):
        if self.started is not None:
            print(f" done in {time.perf_counter() - self.started:.1f} s.\n", file=self.err)


def _warm_up_announced(seq_len, err=sys.stderr):
    """:func:`_warm_kernels`, saying so when kernels compile."""
    notice = _CompileNotice(err)
    with numba_event.install_listener("numba:compile", notice):
        _warm_kernels(seq_len)
    notice.done()


def _shown(path):
    """``path`` as the user can type it: relative when inside the current directory."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def _size_mb(path):
    total = sum(
        os.path.getsize(os.path.join(folder, f))
        for folder, _, files in os.walk(path)
        for f in files
    )
    return total / 1e6


def run_demo(seq_lens, out=None):
    """``bfpack demo``: compare the methods on the built-in corpus at every
    length of ``seq_lens``, then pack it at the first into ``out``
    (default: :data:`DEMO_OUT`)."""
    t0 = time.perf_counter()
    out = os.path.abspath(out or DEMO_OUT)
    dst = os.path.join(out, "packed")
    if os.path.exists(dst) and not os.path.exists(os.path.join(dst, MANIFEST)):
        raise FileExistsError(
            f"{_shown(dst)} exists and is not a bfpack output; the demo would replace "
            f"it: pass --out with another directory"
        )
    _warm_up_announced(seq_lens[0])
    corpus = stdlib_table()
    lengths = document_lengths(corpus, ["input_ids"])
    print(
        f"Corpus: the {corpus.num_rows:,} .py files of this Python's standard library,\n"
        f"one document per file, split into {int(lengths.sum()):,} GPT-2-style tokens "
        f"(words,\nnumbers, punctuation, whitespace; ids by hashing, nothing to download).\n"
    )
    print_comparison(lengths, seq_lens)

    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "stdlib.parquet")
    partial = os.path.join(out, ".stdlib.parquet.partial")
    pq.write_table(corpus, partial)
    os.replace(partial, src)
    manifest = pack_parquet(
        src, dst, seq_lens[0], columns=["input_ids"], position_ids=True, seed=0, overwrite=True
    )
    print(
        f"\nPacked with bfd at seq_len {seq_lens[0]:,}: "
        f"{manifest['stats']['sequences']:,} rows (input_ids, seq_lengths,\n"
        f"position_ids). Wrote {_size_mb(out):.0f} MB to {_shown(out)}{os.sep}:\n"
        f"  stdlib.parquet  the corpus, one row per file\n"
        f"  packed{os.sep}         the packed rows, ready to train on\n"
        f"Remove it with: rm -r {_shown(out)}   [{time.perf_counter() - t0:.1f} s]"
    )
    return 0
