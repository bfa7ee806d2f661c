"""A packed output directory loads as it is with the usual readers.

``bfpack pack`` writes ``part-00000.parquet, ...`` and a hidden manifest
``.bfpack.json``; every reader below skips hidden files, so ``DST`` itself is
the dataset. Each test runs where its reader is installed.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.parquet import MANIFEST

from integrations import need
from tokens import token_table

pytestmark = pytest.mark.integration

SEQ_LEN = 128


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A packed directory of several shards; returns ``(dst, expected table)``."""
    root = tmp_path_factory.mktemp("load")
    lengths = np.random.default_rng(0).integers(0, 3 * SEQ_LEN, 300)
    pq.write_table(token_table(lengths, columns=("input_ids", "labels")), root / "src.parquet")
    dst = root / "packed"
    manifest = bfpack.pack_parquet(
        root / "src.parquet", dst, SEQ_LEN, position_ids=True, seed=0, window_tokens=10_000
    )
    assert len(manifest["shards"]) > 2 and os.path.exists(dst / MANIFEST)
    expected = pa.concat_tables(pq.read_table(dst / s["file"]) for s in manifest["shards"])
    return dst, expected


def test_pyarrow_dataset(packed):
    import pyarrow.dataset as ds

    dst, expected = packed
    assert ds.dataset(dst).to_table().equals(expected)
    assert pq.read_table(dst).equals(expected)


def test_pandas(packed):
    pd = need("pandas")
    dst, expected = packed
    frame = pd.read_parquet(dst)
    assert list(frame.columns) == expected.column_names
    assert [list(x) for x in frame["input_ids"]] == expected.column("input_ids").to_pylist()


def test_duckdb(packed):
    duckdb = need("duckdb")
    dst, expected = packed
    rows = duckdb.sql(
        f"SELECT input_ids, seq_lengths FROM read_parquet('{dst}/*.parquet', filename = true) "
        f"ORDER BY filename, file_row_number"
    ).fetchall()
    assert [list(r[0]) for r in rows] == expected.column("input_ids").to_pylist()
    assert [list(r[1]) for r in rows] == expected.column("seq_lengths").to_pylist()


def test_datasets_load_dataset(packed, tmp_path):
    datasets = need("datasets")
    dst, expected = packed
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(dst), split="train", cache_dir=str(tmp_path)
    )
    assert loaded.column_names == expected.column_names
    assert loaded.data.table.equals(expected)
