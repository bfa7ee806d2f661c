"""``bfpack.verify`` and ``bfpack verify``: an output checked against its
manifest and its source; every kind of damage it must see, and what it
must let pass (rows moved between shards)."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.parquet import pack_parquet
from bfpack.parquet.manifest import MANIFEST

from tokens import token_table

SEQ_LEN = 64


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 200, 300)
    lengths[::17] = 0
    for k, (a, b) in enumerate([(0, 120), (120, 300)]):
        pq.write_table(
            token_table(lengths[a:b], first_doc=a), src / f"part-{k}.parquet", row_group_size=40
        )
    return src


def packed(src, dst, **kw):
    kw = {"window_tokens": 3000, "seed": 1, **kw}
    return pack_parquet(src, dst, SEQ_LEN, **kw)


def rewrite(dst, shard, change):
    """Replace a shard by ``change(table)``, and its manifest entry to match:
    damage that only the content checks can see."""
    manifest = json.loads((dst / MANIFEST).read_text())
    record = manifest["shards"][shard]
    path = dst / record["file"]
    table = change(pq.read_table(path))
    pq.write_table(table, path)
    data = path.read_bytes()
    record.update(rows=table.num_rows, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (dst / MANIFEST).write_text(json.dumps(manifest))


def set_column(table, name, values):
    """``table`` with the list column ``name`` holding ``values`` (same offsets)."""
    col = table[name].combine_chunks()
    new = type(col).from_arrays(col.offsets, pa.array(values, col.type.value_type))
    return table.set_column(table.column_names.index(name), name, new)


def flat(table, name):
    return table[name].combine_chunks().flatten().to_numpy().copy()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pad_value": {"input_ids": -1, "labels": 0, "mask": 7}, "position_ids": True},
        {"long_docs": "truncate", "columns": ["labels", "mask"]},
        {"method": "ffd", "position_ids": True},
        {"method": "concat", "pad_value": 0},
        {"window_tokens": 10**9},
    ],
)
def test_a_good_output_verifies(src, tmp_path, kw):
    m = packed(src, tmp_path / "o", **kw)
    plain = bfpack.verify(tmp_path / "o")
    full = bfpack.verify(tmp_path / "o", source=src)
    for r in (plain, full):
        assert r.ok and bool(r) and r.problems == ()
        assert r.shards == len(m["shards"])
        assert r.rows == m["stats"]["sequences"]
        assert r.tokens == m["stats"]["tokens_packed"]
    assert plain.source is None and full.source == str(src)
    # With the source: its files, its pieces, and the method's packing of it.
    assert len(full.checked) == len(plain.checked) + 3
    assert f"packed again with {m['options']['method']!r}" in full.report()
    assert full.report().startswith(f"{tmp_path / 'o'}: OK: {len(m['shards'])} shard(s)")
    if kw.get("method") == "concat":
        assert "pieces are not compared" in full.report()
    else:
        assert "every piece of every document, once" in full.report()


def test_rows_moved_between_shards_still_verify(src, tmp_path):
    # Order-independent: the same rows, redistributed, are the same output.
    dst = tmp_path / "o"
    packed(src, dst)
    manifest = json.loads((dst / MANIFEST).read_text())
    tables = [pq.read_table(dst / s["file"]) for s in manifest["shards"]]
    both = pa.concat_tables(tables[:2])
    order = np.random.default_rng(0).permutation(both.num_rows)
    both = both.take(order)
    k = tables[0].num_rows
    rewrite(dst, 0, lambda t: both.slice(0, k))
    rewrite(dst, 1, lambda t: both.slice(k))
    assert bfpack.verify(dst, source=src).ok


def damage_cases():
    """name -> (how to damage the output, text expected in a problem, found without source)."""

    def flip_byte(dst):
        path = dst / "part-00001.parquet"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))

    def change_token(dst):
        def change(t):
            v = flat(t, "input_ids")
            v[3] += 1
            return set_column(t, "input_ids", v)

        rewrite(dst, 0, change)

    def swap_tokens_in_a_piece(dst):
        # The same tokens, in another order: only the positions tell.
        def change(t):
            v = flat(t, "labels")
            v[[0, 1]] = v[[1, 0]]
            return set_column(t, "labels", v)

        rewrite(dst, 0, change)

    def duplicate_a_row(dst):
        # Same rows, same tokens per row: row 1 replaced by a copy of a row as long.
        def change(t):
            fill = [sum(r) for r in t["seq_lengths"].to_pylist()]
            twin = next(j for j in range(1, len(fill)) if fill[j] == fill[0])
            idx = np.arange(t.num_rows)
            idx[twin] = 0
            return t.take(idx)

        rewrite(dst, 0, change)

    def drop_a_row(dst):
        rewrite(dst, 0, lambda t: t.slice(1))

    def remove_shard(dst):
        os.remove(dst / "part-00001.parquet")

    def extra_shard(dst):
        (dst / "part-00099.parquet").write_bytes((dst / "part-00000.parquet").read_bytes())

    def wrong_rows(dst):
        manifest = json.loads((dst / MANIFEST).read_text())
        manifest["shards"][0]["rows"] += 1
        (dst / MANIFEST).write_text(json.dumps(manifest))

    def cut_a_piece(dst):
        # seq_lengths says [a, b] where the row is [a + b]: pieces are wrong.
        def change(t):
            rows = t["seq_lengths"].to_pylist()
            r = next(i for i, x in enumerate(rows) if x[0] > 1)
            rows[r] = [1, rows[r][0] - 1, *rows[r][1:]]
            return t.set_column(
                t.column_names.index("seq_lengths"),
                "seq_lengths",
                pa.array(rows, t["seq_lengths"].type),
            )

        rewrite(dst, 0, change)

    def overfull_row(dst):
        def change(t):
            rows = t["seq_lengths"].to_pylist()
            rows[0] = [*rows[0], SEQ_LEN]
            return t.set_column(
                t.column_names.index("seq_lengths"),
                "seq_lengths",
                pa.array(rows, t["seq_lengths"].type),
            )

        rewrite(dst, 0, change)

    def other_schema(dst):
        rewrite(
            dst, 1, lambda t: t.cast(t.schema.set(1, pa.field("labels", pa.large_list(pa.int64()))))
        )

    def empty_row(dst):
        def change(t):
            rows = {c: t[c].to_pylist() for c in t.column_names}
            for c in ("input_ids", "labels", "mask", "seq_lengths"):
                rows[c][0] = []
            return pa.table({c: pa.array(v, t[c].type) for c, v in rows.items()})

        rewrite(dst, 0, change)

    def misaligned(dst):
        def change(t):
            rows = t["mask"].to_pylist()
            rows[2] = rows[2][:-1]
            return t.set_column(
                t.column_names.index("mask"), "mask", pa.array(rows, t["mask"].type)
            )

        rewrite(dst, 0, change)

    def not_a_list(dst):
        rewrite(dst, 0, lambda t: t.set_column(1, "labels", pa.array(np.arange(t.num_rows))))

    def no_column(dst):
        rewrite(dst, 0, lambda t: t.drop(["mask"]))

    def garbage(dst):
        rewrite(dst, 0, lambda t: t)
        manifest = json.loads((dst / MANIFEST).read_text())
        path = dst / manifest["shards"][0]["file"]
        path.write_bytes(b"PAR1" + bytes(100) + b"PAR1")
        manifest["shards"][0].update(
            bytes=108, sha256=hashlib.sha256(path.read_bytes()).hexdigest()
        )
        (dst / MANIFEST).write_text(json.dumps(manifest))

    def listed_twice(dst):
        manifest = json.loads((dst / MANIFEST).read_text())
        manifest["shards"].append(manifest["shards"][0])
        (dst / MANIFEST).write_text(json.dumps(manifest))

    def zero_piece(dst):
        def change(t):
            rows = t["seq_lengths"].to_pylist()
            rows[0] = [0, *rows[0]]
            return t.set_column(
                t.column_names.index("seq_lengths"),
                "seq_lengths",
                pa.array(rows, t["seq_lengths"].type),
            )

        rewrite(dst, 0, change)

    def many_strays(dst):
        for k in range(60):
            (dst / f"stray-{k:02d}").write_text("x")

    return {
        "empty row": (empty_row, "row 0 holds no piece", True),
        "misaligned column": (misaligned, "row 2 of 'mask' holds", True),
        "not a list": (not_a_list, "column 'labels' is int64, not a list", True),
        "column missing": (no_column, "no column 'mask'", True),
        "unreadable shard": (garbage, "cannot be read", True),
        "listed twice": (listed_twice, "the manifest lists a shard twice", True),
        "a piece of 0 tokens": (zero_piece, "a piece of 0 tokens", True),
        "many strays": (many_strays, "... and more problems (only the first 50 are listed)", True),
        "flipped byte": (flip_byte, "SHA-256 differs", True),
        "changed token": (
            change_token,
            "column 'input_ids': the same number of tokens, but not",
            False,
        ),
        "tokens swapped in a piece": (swap_tokens_in_a_piece, "column 'labels'", False),
        "duplicated row": (duplicate_a_row, "not the same pieces", False),
        "dropped row": (drop_a_row, "the shards hold", True),
        "missing shard": (
            remove_shard,
            "part-00001.parquet is listed in the manifest but missing",
            True,
        ),
        "extra shard": (extra_shard, "part-00099.parquet is not in the manifest", True),
        "wrong row count": (wrong_rows, "rows, the manifest says", True),
        "a piece cut in two": (cut_a_piece, "pieces of 1 tokens", False),
        "overfull row": (overfull_row, "tokens > seq_len", True),
        "schema differs": (other_schema, "its schema differs from the first shard's", True),
    }


@pytest.mark.parametrize("name", list(damage_cases()))
def test_damage_is_found(src, tmp_path, name):
    damage, text, without_source = damage_cases()[name]
    dst = tmp_path / "o"
    packed(src, dst)
    assert bfpack.verify(dst, source=src).ok
    damage(dst)
    r = bfpack.verify(dst, source=src)
    assert not r.ok and not bool(r)
    assert any(text in p for p in r.problems), r.problems
    assert "MISMATCH" in r.report() and "problem: " in r.report()
    assert bfpack.verify(dst).ok is not without_source


def test_padding_and_positions_are_checked(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, pad_value=-1, position_ids=True, columns="input_ids")

    def bad_pad(t):
        fill = [sum(r) for r in t["seq_lengths"].to_pylist()]
        row = int(np.argmin(fill))
        assert fill[row] < SEQ_LEN
        v = flat(t, "input_ids")
        v[(row + 1) * SEQ_LEN - 1] = 5  # the row's last slot: padding
        return set_column(t, "input_ids", v)

    last = len(json.loads((dst / MANIFEST).read_text())["shards"]) - 1
    rewrite(dst, last, bad_pad)
    r = bfpack.verify(dst)
    assert any("padding other than -1" in p for p in r.problems), r.problems
    packed(src, dst, pad_value=-1, position_ids=True, columns="input_ids", overwrite=True)

    def bad_positions(t):
        v = flat(t, "position_ids")
        v[0] = 9
        return set_column(t, "position_ids", v)

    rewrite(dst, 0, bad_positions)
    r = bfpack.verify(dst)
    assert r.problems == ("part-00000.parquet: position_ids do not restart at 0 at every piece",), (
        r.problems
    )


def test_a_changed_source_is_found(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst)
    other = tmp_path / "src2"
    other.mkdir()
    for name in os.listdir(src):
        (other / name).write_bytes((src / name).read_bytes())
    pq.write_table(token_table([5, 6], first_doc=300), other / "part-2.parquet")
    r = bfpack.verify(dst, source=other)
    assert r.problems[0] == f"1 source file(s) in {other} but not packed: part-2.parquet"
    assert any("the source holds 302 documents" in p for p in r.problems)
    os.remove(other / "part-2.parquet")
    os.remove(other / "part-1.parquet")
    r = bfpack.verify(dst, source=other)
    assert f"1 source file(s) packed but not in {other}: part-1.parquet" in r.problems
    pq.write_table(token_table([5, 6]), other / "part-1.parquet")
    r = bfpack.verify(dst, source=other)
    assert any("part-1.parquet: " in p and "(changed since?)" in p for p in r.problems)


def test_errors(src, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a bfpack output: it holds no .bfpack.json"):
        bfpack.verify(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        bfpack.verify(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"shards": []}))
    with pytest.raises(ValueError, match="lacks the options"):
        bfpack.verify(tmp_path)
    (tmp_path / MANIFEST).write_text("[]")
    with pytest.raises(ValueError, match="not a bfpack manifest"):
        bfpack.verify(tmp_path)
    packed(src, tmp_path / "o", columns="mask")
    with pytest.raises(FileNotFoundError):
        bfpack.verify(tmp_path / "o", source=tmp_path / "missing")
    pq.write_table(token_table([3], columns=["input_ids"]), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="column 'mask' is not in the table"):
        bfpack.verify(tmp_path / "o", source=tmp_path / "other.parquet")


def test_a_manifest_without_checksums_or_inputs_is_a_problem(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst)
    manifest = json.loads((dst / MANIFEST).read_text())
    del manifest["inputs"]
    for s in manifest["shards"]:
        del s["bytes"], s["sha256"]
    (dst / MANIFEST).write_text(json.dumps(manifest))
    r = bfpack.verify(dst, source=src)
    assert not r.ok
    assert "the manifest lists no inputs: the source cannot be checked against it" in r.problems
    first = manifest["shards"][0]["file"]
    assert any(
        p.startswith("the manifest records no size or SHA-256") and first in p for p in r.problems
    )


def test_a_manifest_by_another_name_is_no_manifest(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst)
    os.rename(dst / MANIFEST, dst / "_bfpack.json")
    with pytest.raises(FileNotFoundError, match="holds no .bfpack.json"):
        bfpack.verify(dst)


def test_cli(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, position_ids=True)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "bfpack", "verify", *map(str, args)],
            capture_output=True,
            text=True,
        )

    ok = run(dst, "--source", src)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{dst}: OK:") and "every piece of every document" in ok.stdout
    (dst / "part-00000.parquet").write_bytes(b"PAR1 damaged")
    bad = run(dst)
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout and bad.stderr == ""
    assert "part-00000.parquet: 12 bytes, the manifest says" in bad.stdout
    missing = run(tmp_path / "nothing")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("bfpack: error:") and len(missing.stderr.splitlines()) == 1
    usage = run()
    assert usage.returncode == 2 and "required: DST" in usage.stderr


def test_position_ids_missing(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, position_ids=True)
    rewrite(dst, 0, lambda t: t.drop(["position_ids"]))
    r = bfpack.verify(dst)
    assert any("no column 'position_ids'" in p for p in r.problems), r.problems


def test_a_source_of_empty_documents(tmp_path):
    pq.write_table(token_table([0, 0, 0], nulls=[True, False, True]), tmp_path / "e.parquet")
    for method in ("bfd", "concat"):
        pack_parquet(tmp_path / "e.parquet", tmp_path / method, 8, method=method)
        r = bfpack.verify(tmp_path / method, source=tmp_path / "e.parquet")
        assert r.ok and r.rows == 0 and r.tokens == 0, r.problems


def test_many_source_files_missing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in range(5):
        pq.write_table(token_table([3, 4], first_doc=2 * k), src / f"p{k}.parquet")
    pack_parquet(src, tmp_path / "o", 8)
    r = bfpack.verify(tmp_path / "o", source=src / "p0.parquet")
    assert r.problems[0] == (
        f"4 source file(s) packed but not in {src / 'p0.parquet'}: p1.parquet, p2.parquet, "
        f"p3.parquet and 1 more"
    )


def edit_manifest(dst, change):
    manifest = json.loads((dst / MANIFEST).read_text())
    change(manifest)
    (dst / MANIFEST).write_text(json.dumps(manifest))


def _set(path, value):
    """A change of the manifest: ``path`` (keys and indices) set to ``value``."""

    def change(m):
        for key in path[:-1]:
            m = m[key]
        m[path[-1]] = value

    return change


DAMAGED_MANIFESTS = {
    "seq_len huge": (_set(["options", "seq_len"], 10**12), "options.seq_len is 1000000000000"),
    "seq_len negative": (_set(["options", "seq_len"], -5), "options.seq_len is -5"),
    "seq_len a string": (_set(["options", "seq_len"], "64"), "options.seq_len is '64'"),
    "shard outside dst": (
        _set(["shards", 0, "file"], "../src/part-0.parquet"),
        "shards[0].file is '../src/part-0.parquet', not the name of a file inside",
    ),
    "shard absolute": (_set(["shards", 0, "file"], "/etc/passwd"), "shards[0].file is '/etc/"),
    "shard rows negative": (_set(["shards", 1, "rows"], -1), "shards[1].rows is -1"),
    "shard sha256 not hex": (_set(["shards", 0, "sha256"], "xyz"), "shards[0].sha256 is 'xyz'"),
    "unknown method": (_set(["options", "method"], "magic"), "options.method is 'magic'"),
    "no columns": (_set(["options", "columns"], []), "options.columns is []"),
    "position_ids not a bool": (
        _set(["options", "position_ids"], "yes"),
        "options.position_ids is 'yes'",
    ),
    "pad_value a string": (_set(["options", "pad_value"], "0"), "options.pad_value is '0'"),
    "provenance not a bool": (_set(["options", "provenance"], 1), "options.provenance is 1"),
    "carry a packed column": (
        _set(["options", "carry"], ["input_ids"]),
        "options.carry is ['input_ids'], not a list of other column names",
    ),
    "separator a string": (_set(["options", "separator"], "2"), "options.separator is '2'"),
    "rows_per_shard zero": (_set(["options", "rows_per_shard"], 0), "options.rows_per_shard"),
    "stats count negative": (_set(["stats", "sequences"], -3), "stats.sequences is -3"),
    "stats fill a string": (_set(["stats", "fill"], "high"), "stats.fill is 'high'"),
    "format from the future": (_set(["format"], 99), "format 99 is newer"),
    "inputs size negative": (_set(["inputs", 0, "size"], -1), "inputs[0].size is -1"),
    "seq_len changed in options and stats": (
        lambda m: (_set(["options", "seq_len"], 128)(m), _set(["stats", "seq_len"], 128)(m)),
        "stats.lower_bound is",
    ),
    "method changed in options only": (
        _set(["options", "method"], "ffd"),
        "stats.method is 'bfd' where options.method is 'ffd'",
    ),
}


@pytest.mark.parametrize("name", list(DAMAGED_MANIFESTS))
def test_every_manifest_field_is_checked_before_it_is_used(src, tmp_path, name):
    change, text = DAMAGED_MANIFESTS[name]
    dst = tmp_path / "o"
    packed(src, dst)
    edit_manifest(dst, change)
    with pytest.raises(ValueError, match="is damaged: ") as caught:
        bfpack.verify(dst)
    assert text in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{dst / MANIFEST} is damaged: ")


def test_a_damaged_manifest_is_one_line_and_exit_2(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst)
    edit_manifest(dst, _set(["options", "seq_len"], 10**12))
    done = subprocess.run(
        [sys.executable, "-m", "bfpack", "verify", str(dst)], capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("bfpack: error: ") and len(done.stderr.splitlines()) == 1
    assert "options.seq_len is 1000000000000" in done.stderr


def test_no_shard_is_read_through_a_link(src, tmp_path):
    # A link in DST may lead anywhere: only files inside it are checked.
    dst = tmp_path / "o"
    packed(src, dst)
    shard = dst / "part-00000.parquet"
    outside = tmp_path / "elsewhere.parquet"
    os.rename(shard, outside)
    os.symlink(outside, shard)
    r = bfpack.verify(dst)
    assert r.problems == (
        "part-00000.parquet: a symbolic link, not a file that bfpack wrote; its "
        f"{pq.ParquetFile(outside).metadata.num_rows:,} rows (as the manifest records) could "
        "not be checked",
    ), r.problems


def test_shards_agree_with_the_recorded_options(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, position_ids=True)
    edit_manifest(dst, _set(["options", "position_ids"], False))
    r = bfpack.verify(dst)
    assert any(
        "a column 'position_ids' that the manifest's options do not record" in p for p in r.problems
    ), r.problems
    packed(src, dst, overwrite=True)
    edit_manifest(dst, _set(["options", "rows_per_shard"], 10))
    r = bfpack.verify(dst)
    assert any("more than the options' rows_per_shard (10)" in p for p in r.problems), r.problems


def test_the_recorded_method_reproduces_the_packing(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, method="ffd")

    def to_bfd(m):
        m["options"]["method"] = m["stats"]["method"] = "bfd"

    edit_manifest(dst, to_bfd)
    r = bfpack.verify(dst, source=src)
    assert len(r.problems) == 1 and "method 'bfd' packs the source" in r.problems[0], r.problems
    assert "(was the manifest's method or its options changed?)" in r.problems[0]


def test_a_concat_manifest_over_best_fit_rows_is_found_without_source(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst)

    def to_concat(m):
        m["options"]["method"] = m["stats"]["method"] = "concat"

    edit_manifest(dst, to_concat)
    r = bfpack.verify(dst)
    assert any("rows are not full, where method 'concat' fills" in p for p in r.problems), (
        r.problems
    )


def test_a_truncated_shard_is_said_unread_with_its_recorded_rows(src, tmp_path):
    dst = tmp_path / "o"
    m = packed(src, dst)
    shard = dst / m["shards"][0]["file"]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    r = bfpack.verify(dst)
    rows = m["shards"][0]["rows"]
    assert r.problems == (
        f"{shard.name}: {len(data) // 2:,} bytes, the manifest says {len(data):,} (truncated or "
        f"damaged); its {rows:,} rows (as the manifest records) could not be checked",
    ), r.problems
    assert "rows and tokens not added up: 1 shard(s) could not be read" in r.checked
    assert r.unread == 1 and "(not counting 1 shard(s) that could not be read)" in r.report()
    assert r.rows == m["stats"]["sequences"] - rows


def test_a_destination_named_in_bytes_that_are_not_utf8_verifies(src, tmp_path):
    dst = os.path.join(os.fsencode(tmp_path), b"out\xff")
    packed(src, os.fsdecode(dst))
    done = subprocess.run([sys.executable, "-m", "bfpack", "verify", dst], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(dst + b": OK:"), done.stdout
    assert bfpack.verify(os.fsdecode(dst)).ok


WRITER = """
import sys
from bfpack.parquet import pack_parquet
src, dst, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k in range(runs):
    # Another seed each time: the shards of two runs differ.
    pack_parquet(src, dst, 64, window_tokens=3000, seed=k, overwrite=True)
    print(k, flush=True)
"""


def verify_while_overwritten(src, dst, runs):
    """Verify ``dst`` in a loop while another process overwrites it ``runs``
    times; the verdicts, and how many verifications saw DST change."""
    packed(src, dst)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(src), str(dst), str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    verdicts, changing = [], 0
    try:
        while writer.poll() is None:
            try:
                verdicts.append(bfpack.verify(dst))
            except bfpack.parquet._staging.DestinationBusyError:
                changing += 1
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert len(out.split()) == runs
    return verdicts, changing


def test_verify_during_overwrite_never_reports_a_healthy_output_damaged(src, tmp_path):
    verdicts, changing = verify_while_overwritten(src, tmp_path / "o", 15)
    assert verdicts
    damaged = [r.problems for r in verdicts if not r.ok]
    assert damaged == []
    assert bfpack.verify(tmp_path / "o", source=src).ok


@pytest.mark.slow
def test_verify_during_many_overwrites_never_reports_a_healthy_output_damaged(src, tmp_path):
    verdicts, changing = verify_while_overwritten(src, tmp_path / "o", 40)
    assert [r.problems for r in verdicts if not r.ok] == []


def test_verify_says_when_the_output_kept_changing(src, tmp_path, monkeypatch):
    # Every check sees a damaged output that another run has replaced meanwhile.
    dst = tmp_path / "o"
    packed(src, dst)
    os.remove(dst / "part-00001.parquet")
    from bfpack.parquet import _verify

    monkeypatch.setattr(_verify._Snapshot, "replaced", lambda self: True)
    with pytest.raises(bfpack.parquet.DestinationBusyError, match="kept changing while it was"):
        bfpack.verify(dst)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bfpack.parquet._verify as v, bfpack.cli as m;"
            "v._Snapshot.replaced = lambda self: True; sys.exit(m.main(sys.argv[1:]))",
            "verify",
            str(dst),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3 and done.stdout == "", done
    assert done.stderr.startswith("bfpack: error: ") and "kept changing" in done.stderr


def test_a_best_fit_output_recorded_as_first_fit_is_found_without_source(src, tmp_path):
    # bfd carries open sequences to the next window: their rows go on with
    # shorter, then longer pieces, which ffd never writes.
    dst = tmp_path / "o"
    packed(src, dst, window_tokens=500)

    def to_ffd(m):
        m["options"]["method"] = m["stats"]["method"] = "ffd"

    assert bfpack.verify(dst).ok
    edit_manifest(dst, to_ffd)
    r = bfpack.verify(dst)
    assert len(r.problems) == 1, r.problems
    assert "rows hold a piece longer than the one before it, where method 'ffd'" in r.problems[0]


def _shift_first(name, by=1):
    """A change of the first row's first value of the list column ``name``."""

    def change(table):
        col = table[name].combine_chunks()
        values = col.values.to_numpy().copy()
        values[0] += by
        new = pa.ListArray.from_arrays(col.offsets, pa.array(values, col.type.value_type))
        return table.set_column(table.schema.get_field_index(name), name, new)

    return change


@pytest.mark.parametrize("column", ["doc_index", "doc_offset"])
def test_verify_source_catches_a_wrong_provenance_value(src, tmp_path, column):
    dst = tmp_path / "o"
    packed(src, dst, provenance=True, separator=7, columns=["input_ids", "labels"])
    assert bfpack.verify(dst, source=src).ok
    rewrite(dst, 1, _shift_first(column))
    assert bfpack.verify(dst).ok  # well formed: only the source tells
    found = bfpack.verify(dst, source=src)
    assert found.problems == (
        "provenance: the pieces' doc_index and doc_offset do not match the source (a "
        "piece's tokens are not its document's at that offset)",
    )


def test_verify_source_compares_documents_with_their_separators(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, separator={"input_ids": 7, "labels": -100, "mask": 1})
    assert bfpack.verify(dst, source=src).ok
    edit_manifest(dst, _set(["options", "separator"], {"input_ids": 7, "labels": -100, "mask": 2}))
    problems = bfpack.verify(dst, source=src).problems
    assert problems == (
        "column 'mask': the same number of tokens, but not the same pieces (tokens lost, "
        "duplicated, altered or moved)",
    )


def test_verify_checks_the_provenance_and_carried_columns_shape(src, tmp_path):
    dst = tmp_path / "o"
    packed(src, dst, provenance=True, carry="doc_id")

    def drop_last_piece_value(name):
        def change(table):
            col = table[name].combine_chunks()
            off = col.offsets.to_numpy().copy()
            off[1:] -= 1
            off[0] = 0
            new = pa.ListArray.from_arrays(pa.array(off), col.values.slice(1))
            return table.set_column(table.schema.get_field_index(name), name, new)

        return change

    rewrite(dst, 0, drop_last_piece_value("doc_id"))
    rewrite(
        dst,
        1,
        lambda t: t.set_column(
            t.schema.get_field_index("doc_offset"),
            "doc_offset",
            pa.array([[-1] * len(x) for x in t["seq_lengths"].to_pylist()], pa.list_(pa.int64())),
        ),
    )
    rewrite(dst, 2, lambda t: t.drop_columns(["doc_index"]))
    problems = bfpack.verify(dst).problems
    files = [s["file"] for s in json.loads((dst / MANIFEST).read_text())["shards"]]
    assert f"{files[0]}: column 'doc_id' does not hold one value per piece" in problems
    assert f"{files[1]}: a negative doc_index or doc_offset" in problems
    assert f"{files[2]}: no column 'doc_index'" in problems
