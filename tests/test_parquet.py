"""Packed Parquet output: :func:`bfpack.parquet.pack_parquet` and ``bfpack
pack`` (run as ``python -m bfpack`` in a subprocess) write every document
whole, in windows and shards, as the in-memory packers would."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.corpus import web_like_lengths
from bfpack.parquet import MANIFEST, pack_parquet

from tokens import COLUMNS, check_packed, token_table

SEQ_LEN = 512
# Shard boundaries of the medium dataset (one shard is empty).
CUTS = [0, 1500, 1500, 2600, 4000]


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def medium_lengths():
    lengths = np.minimum(web_like_lengths(4000, seed=5) // 4, 20_000)
    lengths[::53] = 0
    return lengths


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """A directory of token shards with small row groups (so that small
    ``window_tokens`` give many windows); returns ``(src, lengths)``."""
    src = tmp_path_factory.mktemp("medium") / "src"
    src.mkdir()
    lengths = medium_lengths()
    nulls = (lengths == 0) & (np.arange(len(lengths)) % 2 == 0)
    for k, (a, b) in enumerate(zip(CUTS, CUTS[1:])):
        t = token_table(lengths[a:b], nulls=nulls[a:b], first_doc=a)
        pq.write_table(t, src / f"part-{k}.parquet", row_group_size=250)
    return src, lengths


def read_output(dst):
    """The packed table, shards in manifest order, and the manifest."""
    with open(os.path.join(dst, MANIFEST)) as f:
        manifest = json.load(f)
    tables = [pq.read_table(os.path.join(dst, s["file"])) for s in manifest["shards"]]
    for s, t in zip(manifest["shards"], tables):
        assert t.num_rows == s["rows"]
    return pa.concat_tables(tables), manifest


def check_layout(dst, manifest):
    """DST holds exactly the listed shards and the manifest; no temporary
    directory is left beside it."""
    names = sorted(os.listdir(dst))
    shards = [s["file"] for s in manifest["shards"]]
    assert names == sorted(shards + [MANIFEST])
    assert shards == [f"part-{i:05d}.parquet" for i in range(len(shards))]
    parent, base = os.path.split(os.path.abspath(dst))
    assert glob.glob(os.path.join(parent, f".{base}.tmp-*")) == []
    assert glob.glob(os.path.join(parent, f".{base}.old-*")) == []


def input_table(src, columns):
    return ds.dataset(src, format="parquet").to_table(columns=columns)


def same(a, b):
    return a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))


def same_run(a, b):
    """Manifests of two runs with the same input and options: equal but for the run id."""
    assert a["run_id"] != b["run_id"]
    return {**a, "run_id": None} == {**b, "run_id": None}


# --------------------------------------------------------------------------
# pack_parquet
# --------------------------------------------------------------------------


def test_round_trip_bfd_many_windows(medium, tmp_path):
    src, lengths = medium
    dst = tmp_path / "out"
    pad = {"input_ids": -1, "labels": -100, "mask": 0}
    progress = []
    manifest = pack_parquet(
        src,
        dst,
        SEQ_LEN,
        pad_value=pad,
        position_ids=True,
        window_tokens=50_000,
        progress=progress.append,
    )
    out, on_disk = read_output(dst)
    assert on_disk == json.loads(json.dumps(manifest))
    check_layout(dst, on_disk)
    check_packed(
        out,
        lengths,
        SEQ_LEN,
        pad=pad,
        position_ids=True,
        value_types={"input_ids": pa.int64(), "labels": pa.int64(), "mask": pa.uint32()},
    )
    # Several windows, so carried sequences were exercised.
    assert len(manifest["shards"]) >= 10
    assert progress[-1] == {
        "documents": len(lengths),
        "tokens": int(lengths.sum()),
        "sequences": out.num_rows,
        "windows": len(progress),
        "total_documents": len(lengths),
    }
    assert [p["windows"] for p in progress] == list(range(1, len(progress) + 1))
    # Each window (but the last) holds whole documents up to the first one
    # that reaches window_tokens.
    tokens = window_tokens_of(progress)
    assert np.all(tokens[:-1] >= 50_000)
    assert np.all(tokens[:-1] < 50_000 + lengths.max())

    assert manifest["bfpack_version"] == bfpack.__version__
    assert manifest["source"] == os.path.abspath(src)
    assert manifest["options"] == {
        "seq_len": SEQ_LEN,
        "columns": list(COLUMNS),
        "method": "bfd",
        "long_docs": "split",
        "pad_value": pad,
        "position_ids": True,
        "seed": None,
        "window_tokens": 50_000,
        "rows_per_shard": None,
        # Default: carried tokens at most a quarter of a window.
        "max_open": 50_000 // (4 * SEQ_LEN),
        "provenance": False,
        "carry": [],
        "separator": None,
        "format": "parquet",
    }
    s = manifest["stats"]
    ref = bfpack.pack(lengths, SEQ_LEN).stats()
    for key in (
        "method",
        "long_docs",
        "seq_len",
        "documents",
        "empty_documents",
        "tokens",
        "tokens_packed",
        "lower_bound",
        "documents_truncated",
        "truncation_cuts",
        "tokens_dropped",
    ):
        assert s[key] == getattr(ref, key), key
    assert s["sequences"] == out.num_rows == sum(x["rows"] for x in manifest["shards"])
    assert s["excess_sequences"] == s["sequences"] - s["lower_bound"]
    assert s["padding_tokens"] == s["sequences"] * SEQ_LEN - s["tokens_packed"]
    assert s["fill"] == pytest.approx(s["tokens_packed"] / (s["sequences"] * SEQ_LEN))
    # Within the streaming tolerance of one global BFD: 0.01% is under one
    # sequence here, so allow two; and no worse than windows packed alone.
    assert ref.sequences <= s["sequences"] <= ref.sequences + 2
    alone = pack_parquet(src, tmp_path / "alone", SEQ_LEN, window_tokens=50_000, max_open=0)
    assert s["sequences"] <= alone["stats"]["sequences"]
    assert alone["stats"]["sequences"] == read_output(tmp_path / "alone")[0].num_rows


@pytest.mark.parametrize("method", ["bfd", "ffd", "concat"])
def test_one_window_equals_pack_table(medium, tmp_path, method):
    src, lengths = medium
    kw = dict(
        method=method, pad_value=7, position_ids=True, seed=11, columns=["labels", "input_ids"]
    )
    manifest = pack_parquet(src, tmp_path / "o", SEQ_LEN, **kw)
    out, _ = read_output(tmp_path / "o")
    assert len(manifest["shards"]) == 1
    want = bfpack.pack_table(input_table(src, ["labels", "input_ids"]), SEQ_LEN, **kw)
    assert same(out, want)
    plan = bfpack.pack(lengths, SEQ_LEN, method=method)
    assert manifest["stats"] == plan.stats().to_dict()


@pytest.mark.parametrize(
    "method,long_docs",
    [("ffd", "split"), ("ffd", "truncate"), ("concat", "split"), ("bfd", "truncate")],
)
def test_windows_other_paths(medium, tmp_path, method, long_docs):
    src, lengths = medium
    manifest = pack_parquet(
        src,
        tmp_path / "o",
        SEQ_LEN,
        method=method,
        long_docs=long_docs,
        window_tokens=80_000,
        columns=["input_ids", "mask"],
        position_ids=True,
    )
    out, _ = read_output(tmp_path / "o")
    check_layout(tmp_path / "o", manifest)
    assert len(manifest["shards"]) >= 5
    mode = "concat" if method == "concat" else long_docs
    check_packed(
        out, lengths, SEQ_LEN, columns=["input_ids", "mask"], long_docs=mode, position_ids=True
    )
    s = manifest["stats"]
    ref = bfpack.pack(lengths, SEQ_LEN, method=method, long_docs=long_docs).stats()
    for key in (
        "documents",
        "empty_documents",
        "tokens",
        "tokens_packed",
        "tokens_dropped",
        "lower_bound",
    ):
        assert s[key] == getattr(ref, key), key
    assert (s["method"], s["long_docs"], s["seq_len"]) == (method, long_docs, SEQ_LEN)
    assert s["sequences"] == out.num_rows >= ref.sequences
    assert s["padding_tokens"] == s["sequences"] * SEQ_LEN - s["tokens_packed"]
    if method != "concat":
        assert s["documents_truncated"] == ref.documents_truncated
        assert s["truncation_cuts"] == ref.truncation_cuts
    else:
        # Each window is concatenated on its own: every row is full except
        # the last row of each window.
        fill = np.array([sum(r) for r in out["seq_lengths"].to_pylist()])
        assert np.sum(fill < SEQ_LEN) <= len(manifest["shards"])


def test_seed_shuffles_within_shards(medium, tmp_path):
    src, lengths = medium
    runs = {}
    for name, seed in [("a", 5), ("b", 5), ("c", None), ("d", 6)]:
        pack_parquet(
            src, tmp_path / name, SEQ_LEN, seed=seed, window_tokens=200_000, columns="input_ids"
        )
        runs[name] = read_output(tmp_path / name)
    (a, ma), (b, mb), (c, mc), (d, _) = runs["a"], runs["b"], runs["c"], runs["d"]
    assert same(a, b) and same_run(ma, mb)
    assert not same(a, c) and not same(a, d)
    assert ma["options"]["seed"] == 5
    assert [s["rows"] for s in ma["shards"]] == [s["rows"] for s in mc["shards"]]
    lo = 0
    for s in ma["shards"]:
        rows = slice(lo, lo + s["rows"])
        assert sorted(map(str, a.slice(rows.start, s["rows"]).to_pylist())) == sorted(
            map(str, c.slice(rows.start, s["rows"]).to_pylist())
        )
        lo += s["rows"]
    check_packed(a, lengths, SEQ_LEN, columns=["input_ids"])


def test_single_file_source_and_empty_dataset(tmp_path):
    lengths = np.array([5, 0, 9, 3])
    pq.write_table(token_table(lengths), tmp_path / "one.parquet")
    pack_parquet(tmp_path / "one.parquet", tmp_path / "o", 8, pad_value=0)
    out, manifest = read_output(tmp_path / "o")
    check_packed(out, lengths, 8, pad=0)
    pq.write_table(token_table([]), tmp_path / "empty.parquet")
    manifest = pack_parquet(tmp_path / "empty.parquet", tmp_path / "e", 8)
    out, _ = read_output(tmp_path / "e")
    assert out.num_rows == 0 and manifest["stats"]["sequences"] == 0
    assert out.column_names == list(COLUMNS) + ["seq_lengths"]
    check_layout(tmp_path / "e", manifest)


def test_existing_destination(medium, tmp_path):
    src, lengths = medium
    dst = tmp_path / "o"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        pack_parquet(src, dst, SEQ_LEN)
    # overwrite replaces only an earlier bfpack output or an empty directory.
    with pytest.raises(FileExistsError, match="is not a bfpack output"):
        pack_parquet(src, dst, SEQ_LEN, overwrite=True)
    assert os.listdir(dst) == ["keep.txt"]
    (dst / "keep.txt").unlink()
    first = pack_parquet(src, dst, SEQ_LEN, overwrite=True, columns="labels")
    check_layout(dst, first)
    manifest = pack_parquet(src, dst, SEQ_LEN, overwrite=True, columns="input_ids")
    check_layout(dst, manifest)
    check_packed(read_output(dst)[0], lengths, SEQ_LEN, columns=["input_ids"])


def _assert_nothing_at(dst):
    dst = os.path.abspath(dst)
    assert not os.path.exists(dst)
    parent, base = os.path.split(dst)
    assert glob.glob(os.path.join(parent, f".{base}.tmp-*")) == []


def test_errors_leave_nothing(medium, tmp_path):
    src, _ = medium
    (tmp_path / "notes.txt").write_text("not parquet at all")
    bad = tmp_path / "bad"
    bad.mkdir()
    # Shard 1 has a row whose labels disagree with its input_ids.
    pq.write_table(token_table([3, 4]), bad / "part-0.parquet")
    t = token_table([1, 2, 3], first_doc=2)
    labels = pa.array([[1], [2, 3], [4]], pa.list_(pa.int64()))
    t = t.set_column(t.column_names.index("labels"), "labels", labels)
    pq.write_table(t, bad / "part-1.parquet")
    cases = [
        (tmp_path / "missing", {}, FileNotFoundError, "no such file"),
        (tmp_path / "notes.txt", {}, ValueError, "not a Parquet file"),
        (src, dict(columns="nope"), ValueError, "'nope' is not in the table"),
        (src, dict(columns="doc_id"), TypeError, "not a list"),
        (src, dict(pad_value=-1), ValueError, "does not fit column 'mask'"),
        (src, dict(pad_value={"input_ids": 0}), ValueError, "no value"),
        (src, dict(seed="x"), TypeError, "seed"),
        (src, dict(method="best"), ValueError, "method"),
        (src, dict(window_tokens=0), ValueError, "window_tokens"),
        (src, dict(max_open=-1), ValueError, "max_open"),
        # The row counts from the start of the dataset, across shards.
        (bad, {}, ValueError, "row 4: column 'labels' has 1 tokens but 'input_ids' has 3"),
        # ... also when the bad row is in a later window.
        (
            bad,
            dict(window_tokens=1),
            ValueError,
            "row 4: column 'labels' has 1 tokens but 'input_ids' has 3",
        ),
        (bad, dict(window_tokens=1, method="ffd"), ValueError, "row 4: column 'labels'"),
    ]
    for i, (s, kw, exc, match) in enumerate(cases):
        dst = tmp_path / f"dst{i}"
        with pytest.raises(exc, match=match):
            pack_parquet(s, dst, kw.pop("seq_len", SEQ_LEN), **kw)
        _assert_nothing_at(dst)
    with pytest.raises(ValueError, match="seq_len"):
        pack_parquet(src, tmp_path / "z", 0)
    _assert_nothing_at(tmp_path / "z")


def mixed_shards(tmp, kind):
    """Two shards; the second has ``input_ids`` as a plain int column
    ("not-list") or lacks it ("missing", its lists are in another column)."""
    d = tmp / f"mixed-{kind}"
    d.mkdir()
    pq.write_table(token_table([3, 2], columns=["input_ids"]), d / "part-0.parquet")
    if kind == "not-list":
        other = pa.table({"doc_id": [2], "input_ids": pa.array([7])})
    else:
        other = pa.table({"doc_id": [2], "input_ids_v2": pa.array([[7, 8, 9]])})
    pq.write_table(other, d / "part-1.parquet")
    return d


def test_shard_with_a_non_list_column(tmp_path):
    src = mixed_shards(tmp_path, "not-list")
    with pytest.raises((TypeError, ValueError), match="input_ids"):
        pack_parquet(src, tmp_path / "o", 8)
    _assert_nothing_at(tmp_path / "o")


def test_shard_without_the_column(tmp_path):
    src = mixed_shards(tmp_path, "missing")
    with pytest.raises(ValueError, match="input_ids"):
        pack_parquet(src, tmp_path / "o", 8, columns="input_ids")
    _assert_nothing_at(tmp_path / "o")


def test_numpy_integer_options(tmp_path):
    # numpy integers are accepted and stored in the manifest as plain ints
    # (json.dump refuses numpy integers, at the very end of the work).
    lengths = [5, 3, 9, 1]
    pq.write_table(token_table(lengths), tmp_path / "a.parquet")
    m = pack_parquet(
        tmp_path / "a.parquet", tmp_path / "o", np.int32(8), seed=np.int64(1), pad_value=np.int64(0)
    )
    assert m["options"]["seed"] == 1 and m["options"]["pad_value"] == 0
    assert m["options"]["seq_len"] == 8
    out, on_disk = read_output(tmp_path / "o")
    assert on_disk["options"] == m["options"]
    check_packed(out, lengths, 8, pad=0)
    pack_parquet(tmp_path / "a.parquet", tmp_path / "p", 8, seed=1, pad_value=0)
    assert same(out, read_output(tmp_path / "p")[0])
    m = pack_parquet(
        tmp_path / "a.parquet",
        tmp_path / "q",
        8,
        pad_value={
            "input_ids": np.uint8(1),
            "labels": np.int16(-1),
            "mask": 0,
            "unpacked": np.int64(5),
        },
    )
    assert read_output(tmp_path / "q")[1]["options"]["pad_value"] == {
        "input_ids": 1,
        "labels": -1,
        "mask": 0,
    }


def window_tokens_of(progress):
    """Tokens read by each window, from the progress callback's totals."""
    return np.diff([0] + [p["tokens"] for p in progress])


def test_windows_hold_about_window_tokens(tmp_path):
    # A window holds about window_tokens tokens, not whole 8192-row batches
    # (which would be 819,200 tokens here, with 100-token documents).
    pq.write_table(token_table(np.full(20_000, 100), columns=["input_ids"]), tmp_path / "a.parquet")
    progress = []
    pack_parquet(
        tmp_path / "a.parquet",
        tmp_path / "o",
        1024,
        window_tokens=100_000,
        progress=progress.append,
    )
    tokens = window_tokens_of(progress)
    # Whole documents, each window just reaching window_tokens.
    assert np.all(tokens[:-1] == 100_000)
    assert tokens.sum() == 2_000_000
    check_packed(read_output(tmp_path / "o")[0], np.full(20_000, 100), 1024, columns=["input_ids"])


# --------------------------------------------------------------------------
# Command line
#
# Every run of ``python -m bfpack`` costs a fresh interpreter and its
# imports, so the runs whose inputs are known up front start in background
# threads as soon as this module's first test starts, and the tests below
# wait for their results; the tests in the foreground meanwhile use the
# other core.
# --------------------------------------------------------------------------


def bfpack_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "bfpack", *map(str, args)], capture_output=True, text=True, **kw
    )


def start_cli(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "bfpack", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


PACK_ARGS = [
    "--seq-len",
    SEQ_LEN,
    "--column",
    "input_ids",
    "--column",
    "labels",
    "--pad-value",
    0,
    "--position-ids",
    "--seed",
    3,
    "--window-tokens",
    100_000,
]

ERRORS = {
    # name: (args, text expected in the error line); {dst} is fresh per case
    "missing src": (["pack", "{tmp}/missing", "{dst}", "--seq-len", 8], "no such file"),
    "not parquet": (["pack", "{tmp}/notes.txt", "{dst}", "--seq-len", 8], "not a Parquet"),
    "missing column": (
        ["pack", "{ok}", "{dst}", "--seq-len", 8, "--column", "nope"],
        "'nope' is not in the table",
    ),
    "non-list column": (
        ["pack", "{ok}", "{dst}", "--seq-len", 8, "--column", "doc_id"],
        "'doc_id' has type int64, not a list",
    ),
    "no list column": (["pack", "{flat}", "{dst}", "--seq-len", 8], "no list column"),
    "string lists": (["pack", "{strings}", "{dst}", "--seq-len", 8], "holds string values"),
    "mismatched": (
        ["pack", "{mismatch}", "{dst}", "--seq-len", 8],
        "row 2: column 'labels' has 1 tokens but 'input_ids' has 3",
    ),
    "null tokens": (["pack", "{nulls}", "{dst}", "--seq-len", 8], "null tokens"),
    "seq-len 0": (["pack", "{ok}", "{dst}", "--seq-len", 0], "seq_len"),
    "seq-len negative": (["pack", "{ok}", "{dst}", "--seq-len", -4], "got -4"),
    "window-tokens 0": (
        ["pack", "{ok}", "{dst}", "--seq-len", 8, "--window-tokens", 0],
        "window_tokens",
    ),
    "pad out of range": (
        ["pack", "{u16}", "{dst}", "--seq-len", 8, "--pad-value", -1],
        "pad_value -1 does not fit column 'input_ids' of type uint16",
    ),
    "negative seed": (["pack", "{ok}", "{dst}", "--seq-len", 8, "--seed", -1], "seed must be >= 0"),
    "dst exists": (["pack", "{ok}", "{tmp}/existing", "--seq-len", 8], "already exists"),
    "stats seq-len 0": (["stats", "{ok}", "--seq-len", 0], "seq_len"),
}


def _error_inputs(tmp):
    (tmp / "notes.txt").write_text("not parquet at all")
    pq.write_table(token_table([3, 0, 5]), tmp / "ok.parquet")
    pq.write_table(pa.table({"n": [1, 2]}), tmp / "flat.parquet")
    pq.write_table(pa.table({"s": pa.array([["a"], ["b"]])}), tmp / "strings.parquet")
    t = token_table([1, 2, 3, 4])
    t = t.set_column(
        t.column_names.index("labels"),
        "labels",
        pa.array([[1], [2, 3], [4], [5, 6, 7, 8]], pa.list_(pa.int64())),
    )
    pq.write_table(t, tmp / "mismatch.parquet")
    pq.write_table(pa.table({"input_ids": pa.array([[1, 2], [3, None]])}), tmp / "nulls.parquet")
    pq.write_table(
        pa.table({"input_ids": pa.array([[1, 2]], pa.list_(pa.uint16()))}), tmp / "u16.parquet"
    )
    (tmp / "existing").mkdir()
    (tmp / "existing" / "keep.txt").write_text("mine")
    return {
        "tmp": tmp,
        "ok": tmp / "ok.parquet",
        "flat": tmp / "flat.parquet",
        "strings": tmp / "strings.parquet",
        "mismatch": tmp / "mismatch.parquet",
        "nulls": tmp / "nulls.parquet",
        "u16": tmp / "u16.parquet",
    }


def _overwrite_job(tmp):
    """A refused run into an existing DST, refused again with --overwrite
    (not a bfpack output), then --overwrite over an earlier output."""
    lengths = [5, 3, 9]
    pq.write_table(token_table(lengths), tmp / "a.parquet")
    dst = tmp / "o"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    refused = [
        bfpack_cli("pack", tmp / "a.parquet", dst, "--seq-len", 8, *extra)
        for extra in ([], ["--overwrite"])
    ]
    after_refusal = sorted(os.listdir(dst))
    (dst / "keep.txt").unlink()
    first = bfpack_cli("pack", tmp / "a.parquet", dst, "--seq-len", 4, "--overwrite")
    replaced = bfpack_cli("pack", tmp / "a.parquet", dst, "--seq-len", 8, "--overwrite")
    return refused, after_refusal, (first, replaced), dst, lengths


def _warm_numba(tmp):
    """Compile, into numba's on-disk cache, the kernels the CLI runs need.

    Numba compiles on first call and caches per signature: token dtype,
    and whether the plan arrays are read-only (``pack``, so ffd and concat)
    or not (the stream, bfd). Compiling them once here, before the
    background runs start, spares every subprocess its own compilation.
    """
    for typ, methods in [
        (pa.int64(), ["bfd"]),
        (pa.uint32(), ["bfd", "ffd", "concat"]),
        (pa.uint16(), ["bfd"]),
        (pa.uint8(), ["bfd"]),
    ]:
        arr = pa.array([[1, 2, 3], [4], [5, 6]], pa.list_(typ))
        path = tmp / f"warm-{typ}.parquet"
        pq.write_table(pa.table({"x": arr}), path)
        for method in methods:
            pack_parquet(
                path,
                tmp / f"warm-{typ}-{method}",
                4,
                method=method,
                pad_value=0,
                position_ids=True,
                seed=1,
                window_tokens=2,
            )


@pytest.fixture(scope="module", autouse=True)
def cli(medium, tmp_path_factory):
    """Background CLI runs: name -> Future of their result."""
    src, _ = medium
    tmp = tmp_path_factory.mktemp("cli")
    jobs = {"tmp": tmp}
    # The error runs compile nothing: they start at once.
    early = ThreadPoolExecutor(max_workers=1)
    errors = tmp / "errors"
    errors.mkdir()
    subs = _error_inputs(errors)
    for i, (name, (args, _)) in enumerate(ERRORS.items()):
        dst = errors / f"dst{i}"
        argv = [str(a).format(dst=dst, **subs) for a in args]
        jobs["error", name] = early.submit(lambda a=argv, d=dst: (bfpack_cli(*a), d))

    mixed = {
        kind: (mixed_shards(errors, kind), errors / f"mixed-{kind}-out")
        for kind in ("not-list", "missing")
    }
    d, dst = mixed["not-list"]
    jobs["mixed", "not-list", "pack"] = early.submit(
        lambda: (bfpack_cli("pack", d, dst, "--seq-len", 8), dst)
    )
    jobs["mixed", "not-list", "stats"] = early.submit(
        lambda: (bfpack_cli("stats", d, "--seq-len", 8), None)
    )

    (tmp / "warm").mkdir()
    _warm_numba(tmp / "warm")
    pool = ThreadPoolExecutor(max_workers=1)
    # This one packs (wrongly): it compiles, so it waits for the cache too.
    d2, dst2 = mixed["missing"]
    jobs["mixed", "missing", "pack"] = pool.submit(
        lambda: (bfpack_cli("pack", d2, dst2, "--seq-len", 8), dst2)
    )

    def run(name, *args):
        jobs[name] = pool.submit(bfpack_cli, *args)

    run("pack", "pack", src, tmp / "pack", *PACK_ARGS)
    run("pack quiet", "pack", src, tmp / "quiet", *PACK_ARGS, "--quiet")
    for m in ("ffd", "concat"):
        run(
            m,
            "pack",
            src,
            tmp / m,
            "--seq-len",
            SEQ_LEN,
            "--method",
            m,
            "--long-docs",
            "truncate",
            "--column",
            "mask",
            "--quiet",
        )
    (tmp / "over").mkdir()
    jobs["overwrite"] = pool.submit(_overwrite_job, tmp / "over")
    run("stats", "stats", src, "--seq-len", 256, 1024)
    run("stats labels", "stats", src, "--seq-len", 256, "--column", "labels")
    yield jobs
    early.shutdown(wait=True)
    pool.shutdown(wait=True)


# --------------------------------------------------------------------------
# Interrupted runs and determinism
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_src(tmp_path_factory):
    """About 17M uint16 tokens (68 MB of Parquet, as int32) in 4 shards
    with 1000-row row groups."""
    src = tmp_path_factory.mktemp("big") / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        lengths = web_like_lengths(4500, seed=k)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = rng.integers(0, 65535, int(offsets[-1]), dtype=np.uint16)
        ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        pq.write_table(
            pa.table({"input_ids": ids}),
            src / f"shard-{k}.parquet",
            compression="none",
            use_dictionary=False,
            row_group_size=1000,
        )
    return src


def test_interrupted_run_leaves_no_destination(big_src, tmp_path):
    args = ["--seq-len", 2048, "--window-tokens", 500_000, "--seed", 1, "--position-ids", "--quiet"]
    # (The ``cli`` fixture has compiled the kernels for uint16 tokens, so
    # the run below spends its time packing.)
    dst = tmp_path / "out"
    p = start_cli("pack", big_src, dst, *args)
    deadline = time.monotonic() + 60
    tmp_dirs = []
    try:
        while time.monotonic() < deadline:
            tmp_dirs = glob.glob(str(tmp_path / ".out.tmp-*"))
            if tmp_dirs and glob.glob(os.path.join(tmp_dirs[0], "part-*.parquet")):
                break
            assert p.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        else:
            pytest.fail("no temporary directory with a shard appeared")
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.communicate()
    assert p.returncode == -signal.SIGKILL
    assert not os.path.exists(dst)
    assert not os.path.exists(dst / MANIFEST)
    assert os.path.isdir(tmp_dirs[0])
    assert not os.path.exists(os.path.join(tmp_dirs[0], MANIFEST))

    # Two complete runs with the same arguments (one into the destination
    # the killed run left alone): byte-identical shards and manifests.
    runs = [start_cli("pack", big_src, tmp_path / d, *args) for d in ("out", "again")]
    for r in runs:
        _, err = r.communicate(timeout=120)
        assert r.returncode == 0, err
    a, b = tmp_path / "out", tmp_path / "again"
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and len(names) > 3
    for name in names:
        if name != MANIFEST:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma = json.loads((a / MANIFEST).read_text())
    assert same_run(ma, json.loads((b / MANIFEST).read_text()))
    # The killed run's temporary directory went with the next run to its destination.
    assert not os.path.exists(tmp_dirs[0])
    out, _ = read_output(a)
    assert out.column_names == ["input_ids", "seq_lengths", "position_ids"]
    assert out.schema.field("input_ids").type.value_type == pa.uint16()
    lens = out["seq_lengths"].combine_chunks().flatten().to_numpy()
    src_tokens = ds.dataset(big_src).to_table()["input_ids"].combine_chunks()
    assert lens.sum() == ma["stats"]["tokens"] == len(src_tokens.flatten())
    assert ma["stats"]["documents"] == len(src_tokens)


# --------------------------------------------------------------------------
# Command line: the background runs' results
# --------------------------------------------------------------------------


def test_cli_pack(medium, cli):
    _, lengths = medium
    r = cli["pack"].result()
    dst = cli["tmp"] / "pack"
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out, manifest = read_output(dst)
    check_layout(dst, manifest)
    check_packed(out, lengths, SEQ_LEN, columns=["input_ids", "labels"], pad=0, position_ids=True)
    s = manifest["stats"]
    assert manifest["options"] == {
        "seq_len": SEQ_LEN,
        "columns": ["input_ids", "labels"],
        "method": "bfd",
        "long_docs": "split",
        "pad_value": 0,
        "position_ids": True,
        "seed": 3,
        "window_tokens": 100_000,
        "rows_per_shard": None,
        "max_open": 100_000 // (4 * SEQ_LEN),
        "provenance": False,
        "carry": [],
        "separator": None,
        "format": "parquet",
    }
    assert f"{s['documents']:,} documents" in r.stdout
    assert f"-> {s['sequences']:,} sequences of {SEQ_LEN}" in r.stdout
    assert f"{len(manifest['shards'])} shard(s)" in r.stdout
    # --quiet: nothing on stdout; the very same files.
    q = cli["pack quiet"].result()
    assert q.returncode == 0 and q.stdout == ""
    quiet = cli["tmp"] / "quiet"
    assert sorted(os.listdir(dst)) == sorted(os.listdir(quiet))
    for name in os.listdir(dst):
        if name != MANIFEST:
            assert (dst / name).read_bytes() == (quiet / name).read_bytes()
    assert same_run(manifest, read_output(quiet)[1])


@pytest.mark.parametrize("method", ["ffd", "concat"])
def test_cli_pack_methods(medium, cli, method):
    _, lengths = medium
    r = cli[method].result()
    assert r.returncode == 0, r.stderr
    out, manifest = read_output(cli["tmp"] / method)
    assert manifest["options"]["method"] == method
    assert manifest["options"]["long_docs"] == "truncate"
    assert out.column_names == ["mask", "seq_lengths"]
    assert out.schema.field("mask").type.value_type == pa.uint32()
    mode = "concat" if method == "concat" else "truncate"
    check_packed(out, lengths, SEQ_LEN, columns=["mask"], long_docs=mode)


def test_cli_stats(medium, cli):
    _, lengths = medium
    r = cli["stats"].result()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"src: {len(lengths):,} documents, {lengths.sum():,} tokens"
    assert lines[2].split()[:3] == ["seq_len", "method", "sequences"]
    rows = [line.split() for line in lines[4:10]]
    assert [(x[0], x[1]) for x in rows] == [
        (f"{L:,}", m) for L in (256, 1024) for m in ("concat", "bfd", "ffd")
    ]
    for x in rows:
        L = int(x[0].replace(",", ""))
        s = bfpack.pack(lengths, L, method=x[1]).stats()
        assert x[2] == f"{s.sequences:,}"
    assert max(map(len, lines)) <= 80
    r = cli["stats labels"].result()
    assert (
        r.returncode == 0
        and r.stdout.splitlines()[4].split()[2]
        == f"{bfpack.pack(lengths, 256, method='concat').num_sequences:,}"
    )


@pytest.mark.parametrize("name", list(ERRORS))
def test_cli_errors(cli, name):
    r, dst = cli["error", name].result()
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("bfpack: error:")
    assert ERRORS[name][1] in lines[0]
    _assert_nothing_at(dst)
    if name == "dst exists":
        assert os.listdir(cli["tmp"] / "errors" / "existing") == ["keep.txt"]


def _assert_one_line_error(r, dst=None, text=""):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("bfpack: error:") and text in r.stderr
    if dst is not None:
        _assert_nothing_at(dst)


@pytest.mark.parametrize("command", ["pack", "stats"])
def test_cli_shard_with_a_non_list_column(cli, command):
    _assert_one_line_error(*cli["mixed", "not-list", command].result(), text="input_ids")


def test_cli_shard_without_the_column(cli):
    _assert_one_line_error(*cli["mixed", "missing", "pack"].result(), text="input_ids")


def test_cli_overwrite(cli):
    refused, after_refusal, replaced, dst, lengths = cli["overwrite"].result()
    for r, text in zip(refused, ["already exists", "is not a bfpack output"]):
        assert r.returncode != 0
        assert r.stderr.startswith("bfpack: error:") and text in r.stderr
    assert after_refusal == ["keep.txt"]
    for r in replaced:
        assert r.returncode == 0, r.stderr
    out, manifest = read_output(dst)
    check_layout(dst, manifest)
    check_packed(out, lengths, 8)


@pytest.mark.parametrize(
    "bad,text",
    [
        (["--seq-len", "abc"], "argument --seq-len: invalid int value: 'abc'"),
        (["--seq-len", "8", "--method", "best"], "argument --method: invalid choice: 'best'"),
        ([], "the following arguments are required: --seq-len"),
    ],
)
def test_cli_usage_errors_are_one_line(tmp_path, bad, text):
    # A usage error is one line, without argparse's usage block.
    pq.write_table(token_table([3]), tmp_path / "a.parquet")
    r = bfpack_cli("pack", tmp_path / "a.parquet", tmp_path / "o", *bad)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    _assert_nothing_at(tmp_path / "o")
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("bfpack: error:") and text in r.stderr


@pytest.mark.skipif(
    int(pa.__version__.split(".")[0]) < 15, reason="Parquet files hold float16 from pyarrow 15 on"
)
def test_cli_float16_column(tmp_path):
    x = pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), np.array([1, 2], np.float16))
    t = pa.table({"x": x})
    pq.write_table(t, tmp_path / "h.parquet")
    r = bfpack_cli("pack", tmp_path / "h.parquet", tmp_path / "o", "--seq-len", 4)
    # float16 tokens pack (as 2-byte bits), with no traceback from numba.
    assert r.returncode == 0, r.stderr
    assert read_output(tmp_path / "o")[0]["x"].to_pylist() == [[1.0, 2.0]]


@pytest.mark.parametrize(
    "window_tokens,seq_len,expected",
    [
        (2**30, 8, 4096),  # capped
        (100, 512, 16),  # floor
        (1 << 20, 1024, 256),  # a quarter of a window's sequences
    ],
)
def test_default_max_open(tmp_path, window_tokens, seq_len, expected):
    pq.write_table(token_table([5, 3]), tmp_path / "a.parquet")
    m = pack_parquet(tmp_path / "a.parquet", tmp_path / "o", seq_len, window_tokens=window_tokens)
    assert m["options"]["max_open"] == expected
