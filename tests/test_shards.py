"""Shards as every writer writes them (issue 11): ``rows_per_shard``, the
writer settings and temporary names."""

import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bfpack.cli import main
from bfpack.parquet import _shards, pack_parquet
from bfpack.parquet._shards import ShardWriter

from tokens import check_packed, token_table


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "src"
    folder.mkdir()
    parts = [rng.integers(1, 90, 300) for _ in range(3)]
    first = 0
    for k, lengths in enumerate(parts):
        pq.write_table(token_table(lengths, first_doc=first), folder / f"part-{k}.parquet")
        first += len(lengths)
    return folder, np.concatenate(parts)


def rows_of(dst, manifest):
    return pa.concat_tables(pq.read_table(dst / s["file"]) for s in manifest["shards"])


@pytest.mark.parametrize("rows_per_shard", [1, 7, 50, 10**6])
def test_rows_per_shard_cuts_the_same_rows(src, tmp_path, rows_per_shard):
    src, lengths = src
    ref = pack_parquet(src, tmp_path / "ref", 64, window_tokens=2_000)
    m = pack_parquet(src, tmp_path / "o", 64, window_tokens=2_000, rows_per_shard=rows_per_shard)
    assert rows_of(tmp_path / "o", m).equals(rows_of(tmp_path / "ref", ref))
    rows = [s["rows"] for s in m["shards"]]
    assert all(r == rows_per_shard for r in rows[:-1]) and 0 < rows[-1] <= rows_per_shard
    assert sum(rows) == ref["stats"]["sequences"]
    assert [s["file"] for s in m["shards"]] == [f"part-{k:05d}.parquet" for k in range(len(rows))]
    assert m["options"]["rows_per_shard"] == rows_per_shard
    assert sorted(os.listdir(tmp_path / "o")) == sorted(
        [".bfpack.json", *(s["file"] for s in m["shards"])]
    )
    check_packed(rows_of(tmp_path / "o", m), lengths, 64, rows="any")


def test_rows_per_shard_on_an_empty_dataset(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    pq.write_table(token_table([]), folder / "empty.parquet")
    m = pack_parquet(folder, tmp_path / "o", 64, rows_per_shard=5)
    assert [s["rows"] for s in m["shards"]] == [0]  # one shard, for the schema


@pytest.mark.parametrize(
    "value, error, text",
    [
        (0, ValueError, "rows_per_shard"),
        (-3, ValueError, "rows_per_shard"),
        (2.5, TypeError, "rows_per_shard"),
        ("9", TypeError, "rows_per_shard"),
    ],
)
def test_rows_per_shard_bad_values(src, tmp_path, value, error, text):
    src, _ = src
    with pytest.raises(error, match=text):
        pack_parquet(src, tmp_path / "o", 64, rows_per_shard=value)
    assert not os.path.exists(tmp_path / "o")


def test_rows_per_shard_accepts_numpy_integers(src, tmp_path):
    src, _ = src
    m = pack_parquet(src, tmp_path / "o", 64, rows_per_shard=np.int64(40))
    assert m["shards"][0]["rows"] == 40


def test_cli_rows_per_shard(src, tmp_path, capsys):
    src, _ = src
    assert (
        main(
            [
                "pack",
                str(src),
                str(tmp_path / "o"),
                "--seq-len",
                "64",
                "--rows-per-shard",
                "30",
                "-q",
            ]
        )
        == 0
    )
    shards = sorted(f for f in os.listdir(tmp_path / "o") if f.endswith(".parquet"))
    assert [pq.read_metadata(tmp_path / "o" / f).num_rows for f in shards[:-1]] == [30] * (
        len(shards) - 1
    )
    assert (
        main(["pack", str(src), str(tmp_path / "p"), "--seq-len", "64", "--rows-per-shard", "0"])
        == 2
    )
    assert "rows_per_shard" in capsys.readouterr().err


def test_shards_use_the_writer_settings(src, tmp_path):
    src, _ = src
    m = pack_parquet(src, tmp_path / "o", 64)
    meta = pq.read_metadata(tmp_path / "o" / m["shards"][0]["file"])
    column = meta.row_group(0).column(0)
    assert column.compression == _shards.WRITE_OPTIONS["compression"].upper()
    assert not column.is_stats_set
    assert "PLAIN_DICTIONARY" not in column.encodings and "RLE_DICTIONARY" not in column.encodings


def test_a_failed_shard_leaves_no_temporary_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    writer = ShardWriter(str(tmp_path), row_group_size=16)
    monkeypatch.setattr(os, "replace", fail)
    writer.write(token_table([3, 4]))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert os.listdir(tmp_path) == []


def test_shards_keep_their_order_with_two_in_flight(tmp_path):
    writer = ShardWriter(str(tmp_path), row_group_size=16, prefix="p-00003", first=4)
    tables = [token_table([k + 1] * (k + 1), first_doc=100 * k) for k in range(6)]
    for t in tables:
        writer.write(t)
    records = writer.close()
    assert [r["file"] for r in records] == [f"p-00003-{k:05d}.parquet" for k in range(4, 10)]
    for r, t in zip(records, tables):
        assert pq.read_table(tmp_path / r["file"]).equals(t)
        assert r["rows"] == t.num_rows == len(t)


def test_in_flight_zero_writes_in_the_calling_thread(tmp_path, monkeypatch):
    threads = []
    real = pq.write_table
    monkeypatch.setattr(
        pq, "write_table", lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k)
    )
    writer = ShardWriter(str(tmp_path), row_group_size=16, in_flight=0, rows_per_shard=2)
    writer.write(token_table([1, 2, 3]))
    assert os.listdir(tmp_path) == ["part-00000.parquet"]  # written already
    records = writer.close()
    assert [r["rows"] for r in records] == [2, 1]
    assert threads == [threading.get_ident()] * 2
