"""A column named ``attention_mask`` is never packed by default.

Text tokenized by a Hugging Face tokenizer carries an all-ones
``attention_mask`` per document; packed along, it tells a model that every
token of a packed row may attend to every other document of the row. Every
path that picks columns by default (``pack_table``, ``OutputSpec``, the
stream packers, ``pack_parquet``, ``bfpack pack``) leaves it out with one
warning, and packs it only when named.
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack import _warnings
from bfpack.parquet import MANIFEST

from tokens import check_packed, token_table

SEQ_LEN = 64
LENGTHS = np.array([10, 70, 3, 0, 64, 25, 40, 1, 33])
MESSAGE = "column 'attention_mask' is not packed"


def tokenizer_table(lengths=LENGTHS):
    """``input_ids`` and ``labels`` traceable to their documents, and the
    tokenizer's all-ones ``attention_mask`` (int8, as tokenizers give it)."""
    table = token_table(lengths, columns=("input_ids", "labels"), doc_id=False)
    offsets = table.column("input_ids").chunk(0).offsets
    ones = np.ones(int(np.sum(lengths)), dtype=np.int8)
    return table.append_column("attention_mask", pa.ListArray.from_arrays(offsets, ones))


def caught(func, *args, **kwargs):
    """``func(*args, **kwargs)`` and the warnings it raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = func(*args, **kwargs)
    return out, seen


def assert_one_warning(seen):
    assert [str(w.message).split(":")[0] for w in seen] == [MESSAGE]
    [w] = seen
    assert w.category is UserWarning
    message = str(w.message)
    assert "\n" not in message
    assert "attend across the documents" in message and "columns=" in message
    # Attributed to the caller, not to bfpack's internals.
    assert os.path.basename(w.filename) == os.path.basename(__file__)


def test_pack_table_leaves_it_out_with_one_warning():
    table = tokenizer_table()
    packed, seen = caught(bfpack.pack_table, table, SEQ_LEN, position_ids=True, seed=1)
    assert_one_warning(seen)
    assert packed.column_names == ["input_ids", "labels", "seq_lengths", "position_ids"]
    check_packed(packed, LENGTHS, SEQ_LEN, columns=("input_ids", "labels"), position_ids=True)
    # The same bytes as naming the other columns, which warns about nothing.
    named, quiet = caught(
        bfpack.pack_table,
        table,
        SEQ_LEN,
        columns=["input_ids", "labels"],
        position_ids=True,
        seed=1,
    )
    assert quiet == []
    assert packed.equals(named)


def test_naming_it_packs_it():
    table = tokenizer_table()
    packed, seen = caught(
        bfpack.pack_table, table, SEQ_LEN, columns=["input_ids", "attention_mask"]
    )
    assert seen == []
    assert packed.column_names == ["input_ids", "attention_mask", "seq_lengths"]
    assert packed.schema.field("attention_mask").type == pa.list_(pa.int8())
    assert pc_all_ones(packed.column("attention_mask"))
    assert packed.column("attention_mask").to_pylist() == [
        [1] * len(r) for r in packed.column("input_ids").to_pylist()
    ]


def pc_all_ones(col):
    return bool(np.all(col.combine_chunks().flatten().to_numpy() == 1))


def test_only_an_attention_mask_is_an_error_that_says_so():
    table = tokenizer_table().select(["attention_mask"])
    with pytest.raises(ValueError, match="no list column to pack.*'attention_mask'"):
        bfpack.pack_table(table, SEQ_LEN)


def test_output_spec_is_the_one_place():
    schema = tokenizer_table().schema
    spec, seen = caught(bfpack.OutputSpec.for_schema, schema)
    assert_one_warning(seen)
    assert spec.columns == ("input_ids", "labels")
    spec, seen = caught(bfpack.OutputSpec.for_schema, schema, columns="attention_mask")
    assert seen == [] and spec.columns == ("attention_mask",)


def test_stream_packer_of_a_default_spec_never_carries_it():
    table = tokenizer_table()
    spec, seen = caught(bfpack.OutputSpec.for_schema, table.schema)
    assert len(seen) == 1
    packer = bfpack.TableStreamPacker(SEQ_LEN, spec, max_open=2)
    parts, seen = caught(
        lambda: [packer.step(table.slice(0, 4)), packer.step(table.slice(4)), packer.finish()]
    )
    assert seen == []  # the spec decided, once
    out = pa.concat_tables(parts)
    assert out.column_names == ["input_ids", "labels", "seq_lengths"]
    check_packed(out, LENGTHS, SEQ_LEN, columns=("input_ids", "labels"))


def test_analysis_counts_lengths_without_warning():
    table, seen = caught(bfpack.compare, tokenizer_table(), SEQ_LEN)
    assert seen == []
    assert table.num_rows == len(bfpack.METHODS)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "tokenized.parquet"
    pq.write_table(tokenizer_table(), path)
    return path


def test_pack_parquet_leaves_it_out(src, tmp_path):
    dst = tmp_path / "packed"
    manifest, seen = caught(bfpack.pack_parquet, src, dst, SEQ_LEN, window_tokens=50)
    assert_one_warning(seen)
    packed = pq.read_table(dst)
    assert packed.column_names == ["input_ids", "labels", "seq_lengths"]
    check_packed(packed, LENGTHS, SEQ_LEN, columns=("input_ids", "labels"))
    with open(dst / MANIFEST) as f:
        assert json.load(f) == manifest
    assert "attention_mask" not in json.dumps(manifest["options"])

    named = tmp_path / "named"
    _, seen = caught(
        bfpack.pack_parquet, src, named, SEQ_LEN, columns=["input_ids", "attention_mask"]
    )
    assert seen == []
    assert pq.read_table(named).column_names == ["input_ids", "attention_mask", "seq_lengths"]


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bfpack", *map(str, args)], capture_output=True, text=True
    )


def test_cli_prints_one_line(src, tmp_path):
    out = cli("pack", src, tmp_path / "a", "--seq-len", SEQ_LEN, "--quiet")
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bfpack: warning: {MESSAGE}"), out.stderr
    assert pq.read_table(tmp_path / "a").column_names == ["input_ids", "labels", "seq_lengths"]

    args = ["--column", "input_ids", "--column", "attention_mask", "--quiet"]
    out = cli("pack", src, tmp_path / "b", "--seq-len", SEQ_LEN, *args)
    assert out.returncode == 0 and out.stderr == ""
    assert pq.read_table(tmp_path / "b").column_names == [
        "input_ids",
        "attention_mask",
        "seq_lengths",
    ]


def test_a_script_sees_it_once():
    code = (
        "import pyarrow as pa, bfpack\n"
        "t = pa.table({'input_ids': [[1, 2], [3]], 'attention_mask': [[1, 1], [1]]})\n"
        "for _ in range(3):\n"
        "    bfpack.pack_table(t, 4)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.count(MESSAGE) == 1, out.stderr


def test_a_datasets_object_points_at_pack_dataset():
    # What a datasets.Dataset looks like to the check (the real one: test_hf.py).
    fake = type("Dataset", (), {"__module__": "datasets.arrow_dataset"})()
    with pytest.raises(TypeError, match=r"bfpack\.hf\.pack_dataset"):
        bfpack.pack_table(fake, SEQ_LEN)


def pack_default(table):
    return bfpack.pack_table(table, SEQ_LEN)


def test_warning_filters_are_obeyed():
    table = tokenizer_table()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):  # raised every time, never recorded as shown
            with pytest.raises(UserWarning, match=MESSAGE):
                pack_default(table)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pack_default(table)
        pack_default(table)
    assert len(seen) == 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore")
        pack_default(table)
    assert seen == []


def test_once_per_place_even_when_filters_change_in_between():
    # numba (compiling) and pandas (converting) reset Python's registry of
    # warnings already shown; bfpack's record of its own does not forget.
    table = tokenizer_table()
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        _warnings._SHOWN.clear()
        for _ in range(3):
            pack_default(table)
            warnings.filterwarnings("ignore", message="unrelated")  # a registry reset
    assert len(seen) == 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once")
        _warnings._SHOWN.clear()
        pack_default(table)
        bfpack.OutputSpec.for_schema(table.schema)  # another place, the same message
    assert len(seen) == 1
