"""``bfpack demo``: the whole job on the Python standard library, no download."""

import os
import shlex
import sys
import time

import numba.core.event as numba_event
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_path
from ..analysis import compare
from ..corpus import stdlib_table
from ..parquet import pack_parquet
from ..parquet.manifest import read_manifest
from ..stream import TableStreamPacker
from ..table import OutputSpec, aligned_lengths
from ._comparison import print_comparison

#: Where ``bfpack demo`` writes without ``--out``: a folder of the current directory.
DEMO_OUT = "bfpack-demo"

#: The demo's two entries in its folder: the corpus and the packed output.
CORPUS = "stdlib.parquet"
PACKED = "packed"

#: The key of the corpus's Parquet metadata that marks it as the demo's.
_MARK = b"bfpack.demo"


def _warm_kernels(seq_len):
    """Call every kernel the demo uses, on tiny data: compiles them, or loads them."""
    tiny = pa.table({"input_ids": pa.array([[1, 2, 3], [4]], type=pa.list_(pa.uint16()))})
    compare(aligned_lengths(tiny, ["input_ids"]), seq_len)
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


def _size_mb(paths):
    """Megabytes of the files at or under ``paths``."""
    total = 0
    for path in paths:
        if os.path.isfile(path):
            total += os.path.getsize(path)
        for folder, _, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total / 1e6


def _is_demo_corpus(path):
    """Whether ``path`` is a corpus the demo wrote (its Parquet metadata says so)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):  # not Parquet (ArrowInvalid is a ValueError)
        return False
    return _MARK in metadata


def _is_demo_output(path):
    """Whether ``path`` is a packed output of the demo (packed from a ``stdlib.parquet``)."""
    try:
        source = read_manifest(path).get("source")
    except (OSError, ValueError):
        return False
    return isinstance(source, str) and os.path.basename(source) == CORPUS


def _check_out(out):
    """FileExistsError unless the demo's two entries in ``out`` are absent or its own."""
    src, dst = os.path.join(out, CORPUS), os.path.join(out, PACKED)
    if os.path.lexists(dst) and not _is_demo_output(dst):
        raise FileExistsError(
            f"{_shown(dst)} exists and is not a bfpack output of the demo; the demo would "
            f"replace it: pass --out with another directory"
        )
    if os.path.lexists(src) and not _is_demo_corpus(src):
        raise FileExistsError(
            f"{_shown(src)} exists and was not written by the demo; the demo would "
            f"replace it: pass --out with another directory"
        )


def _removal(out, before):
    """How to remove what the demo wrote, and nothing of the user's.

    The whole of ``out`` only if it holds nothing else, was created by the
    demo (it did not exist, or held only the demo's entries, ``before``),
    and is not the current directory or one of its parents.
    """
    ours = {CORPUS, PACKED}
    whole = (
        (before is None or (before and set(before) <= ours))
        and set(os.listdir(out)) <= ours
        and os.path.commonpath([os.getcwd(), out]) != out
    )
    if whole:
        return f"Remove it with: rm -r {shlex.quote(_shown(out))}"
    paths = " ".join(shlex.quote(_shown(os.path.join(out, name))) for name in sorted(ours))
    return f"Remove them with: rm -r {paths}"


def run_demo(seq_lens, out=None):
    """``bfpack demo``: compare the methods on the built-in corpus at every
    length of ``seq_lens``, then pack it at the first into ``out``
    (default: :data:`DEMO_OUT`).

    The demo writes two entries into ``out``, ``stdlib.parquet`` and
    ``packed/``, and replaces them on a rerun only if an earlier demo wrote
    them; the size it reports and the removal command it prints cover
    those two alone, so ``--out`` may be a folder holding other files.
    """
    t0 = time.perf_counter()
    out = os.path.abspath(out or DEMO_OUT)
    _check_out(out)
    before = os.listdir(out) if os.path.isdir(out) else None
    _warm_up_announced(seq_lens[0])
    corpus = stdlib_table()
    lengths = aligned_lengths(corpus, ["input_ids"])
    print(
        f"Corpus: the {corpus.num_rows:,} .py files of this Python's standard library,\n"
        f"one document per file, split into {int(lengths.sum()):,} GPT-2-style tokens "
        f"(words,\nnumbers, punctuation, whitespace; ids by hashing, nothing to download).\n"
    )
    print_comparison(lengths, seq_lens)

    os.makedirs(out, exist_ok=True)
    src, dst = os.path.join(out, CORPUS), os.path.join(out, PACKED)
    with atomic_path(src) as partial:
        pq.write_table(corpus.replace_schema_metadata({_MARK: b"1"}), partial)
    manifest = pack_parquet(
        src, dst, seq_lens[0], columns=["input_ids"], position_ids=True, seed=0, overwrite=True
    )
    print(
        f"\nPacked with bfd at seq_len {seq_lens[0]:,}: "
        f"{manifest['stats']['sequences']:,} rows (input_ids, seq_lengths,\n"
        f"position_ids). Wrote {_size_mb([src, dst]):.0f} MB to {_shown(out)}{os.sep}:\n"
        f"  {CORPUS}  the corpus, one row per file\n"
        f"  {PACKED}{os.sep}         the packed rows, ready to train on\n"
        f"{_removal(out, before)}   [{time.perf_counter() - t0:.1f} s]"
    )
    return 0
