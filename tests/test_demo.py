"""``bfpack demo``: what a newcomer sees first, checked line by line."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.cli import main
from bfpack.corpus import stdlib_lengths, stdlib_table

JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")
NOTICE = "Compiling bfpack's kernels"


def demo(cwd, cache, *args):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "bfpack", "demo", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A first run (empty compile cache, default output), then a second one
    (the same cache) into the same place with another seq_len."""
    cwd = tmp_path_factory.mktemp("demo")
    cache = tmp_path_factory.mktemp("numba-cache")
    first = demo(cwd, cache, "--seq-len", 2048, 8192)
    with open(cwd / "bfpack-demo" / "packed" / ".bfpack.json") as f:
        first_manifest = json.load(f)
    second = demo(cwd, cache, "--seq-len", 1024)
    return cwd, first, first_manifest, second


def table_rows(stdout):
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("seq_len"))
    assert lines[header].split() == [
        "seq_len",
        "method",
        "sequences",
        "vs",
        "concat",
        "fill",
        "docs",
        "cut",
        "fewest",
        "possible",
    ]
    rows = []
    for line in lines[header + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.mark.slow
def test_first_run_fits_one_screen_and_says_it_compiles(runs):
    _, r, _, _ = runs
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert len(lines) <= 30
    if JIT:
        # Said once, before anything else, and finished.
        assert r.stderr.count(NOTICE) == 1 and r.stderr.startswith(NOTICE)
        assert " done in " in r.stderr


@pytest.mark.slow
def test_the_table_is_the_packings_and_shows_the_fewest_cuts(runs):
    _, r, _, _ = runs
    lengths = stdlib_lengths()
    nonempty = np.count_nonzero(lengths)
    rows = table_rows(r.stdout)
    assert [(x[0], x[1]) for x in rows] == [
        (f"{L:,}", m) for L in (2048, 8192) for m in ("concat", "bfd", "ffd")
    ]
    for seq_len, method, sequences, vs, fill, cut, fewest in rows:
        L = int(seq_len.replace(",", ""))
        s = bfpack.pack(lengths, L, method=method).stats()
        concat = bfpack.pack(lengths, L, method="concat").stats()
        assert sequences == f"{s.sequences:,}"
        added = 100 * (s.sequences / concat.sequences - 1)
        assert vs == ("-" if method == "concat" else f"{added:+.3f}%")
        assert fill == f"{100 * s.fill:.3f}%"
        assert cut == f"{100 * s.documents_truncated / nonempty:.2f}%"
        assert fewest == f"{100 * np.count_nonzero(lengths > L) / nonempty:.2f}%"
        if method != "concat":
            # The point of the demo: best-fit packing cuts only what it must.
            assert cut == fewest
            assert s.truncation_cuts == int((-(-lengths[lengths > 0] // L) - 1).sum())
        else:
            assert float(cut[:-1]) > float(fewest[:-1])
    assert "bfd, ffd: the fewest possible cuts at every seq_len" in r.stdout
    assert f"of the {nonempty:,}\nnon-empty ones" in r.stdout
    assert f"split into {lengths.sum():,} GPT-2-style tokens" in r.stdout


@pytest.mark.slow
def test_default_output_is_said_and_reads_back(runs):
    cwd, r, manifest, _ = runs
    out = cwd / "bfpack-demo"
    assert sorted(os.listdir(out)) == ["packed", "stdlib.parquet"]
    assert "Wrote " in r.stdout and " MB to bfpack-demo/:" in r.stdout
    assert "Remove it with: rm -r bfpack-demo" in r.stdout
    assert f"{manifest['stats']['sequences']:,} rows" in r.stdout
    assert manifest["options"]["seq_len"] == 2048
    # The corpus written beside the packed rows is the built-in one.
    corpus = pq.read_table(out / "stdlib.parquet")
    assert corpus.equals(stdlib_table())


@pytest.mark.slow
def test_second_run_is_quiet_and_replaces_the_output(runs):
    cwd, _, first, r = runs
    assert r.returncode == 0, r.stderr
    assert NOTICE not in r.stderr  # the kernels came from the cache
    out = cwd / "bfpack-demo"
    assert [x[0] for x in table_rows(r.stdout)] == ["1,024"] * 3
    with open(out / "packed" / ".bfpack.json") as f:
        manifest = json.load(f)
    assert manifest["options"]["seq_len"] == 1024
    assert manifest["stats"]["sequences"] > first["stats"]["sequences"]
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no partial files left
    packed = pq.read_table(out / "packed")
    assert packed.column_names == ["input_ids", "seq_lengths", "position_ids"]
    lens = packed["seq_lengths"].combine_chunks()
    assert np.diff(packed["input_ids"].combine_chunks().offsets.to_numpy()).max() <= 1024
    # Every row's tokens are its pieces; positions restart at each piece.
    pieces = lens.flatten().to_numpy()
    pos = packed["position_ids"].combine_chunks().flatten().to_numpy()
    starts = np.cumsum(pieces) - pieces
    assert np.array_equal(pos, np.arange(pieces.sum()) - np.repeat(starts, pieces))
    # The same tokens as the corpus, moved and never changed.
    corpus = pq.read_table(out / "stdlib.parquet")["input_ids"].combine_chunks().flatten()
    tokens = packed["input_ids"].combine_chunks().flatten()
    assert np.array_equal(
        np.bincount(corpus.to_numpy(), minlength=1 << 16),
        np.bincount(tokens.to_numpy(), minlength=1 << 16),
    )


def test_out_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "a/b", "--seq-len", "4096"]) == 0
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["packed", "stdlib.parquet"]
    assert "MB to a/b/:" in capsys.readouterr().out


def test_out_holding_something_else_is_refused(tmp_path, capsys):
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a bfpack output" in err and "--out" in err
    assert os.listdir(tmp_path) == ["packed"]
    assert os.listdir(tmp_path / "packed") == ["mine.txt"]


def test_help_documents_every_option(capsys):
    assert main(["demo", "--help"]) == 0  # main returns the status of --help too
    text = capsys.readouterr().out
    assert "default: ./bfpack-demo" in text and "the first one packs" in text
