"""The options of a packing run: checked once, typed, immutable, picklable."""

import dataclasses
import pickle

import numpy as np
import pyarrow as pa
import pytest

from bfpack.options import DEFAULT_WINDOW_TOKENS, PackOptions
from bfpack.parquet import pack_parquet
from bfpack.stream import default_max_open


def test_defaults_are_those_of_pack_parquet():
    o = PackOptions(2048)
    assert (o.method, o.long_docs, o.columns, o.pad_value) == ("bfd", "split", None, None)
    assert (o.position_ids, o.seed, o.rows_per_shard, o.overwrite) == (False, None, None, False)
    assert o.window_tokens == DEFAULT_WINDOW_TOKENS
    assert o.max_open == default_max_open(2048, DEFAULT_WINDOW_TOKENS)


def test_max_open_defaults_from_seq_len_and_window_tokens():
    assert PackOptions(64, window_tokens=1 << 20).max_open == (1 << 20) // (4 * 64)
    assert PackOptions(64, window_tokens=1 << 20, max_open=0).max_open == 0


def test_values_come_out_as_plain_python_values():
    o = PackOptions(
        np.int32(64), seed=np.int64(3), window_tokens=np.uint16(1000), overwrite=np.True_
    )
    assert [type(v) for v in (o.seq_len, o.seed, o.window_tokens, o.overwrite)] == [
        int,
        int,
        int,
        bool,
    ]


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(seq_len=0), ValueError, "seq_len"),
        (dict(seq_len=8.0), TypeError, "seq_len"),
        (dict(method="nope"), ValueError, "method"),
        (dict(long_docs="drop"), ValueError, "long_docs"),
        (dict(position_ids="yes"), TypeError, "position_ids"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(window_tokens=0), ValueError, "window_tokens"),
        (dict(rows_per_shard=0), ValueError, "rows_per_shard"),
        (dict(overwrite=1), TypeError, "overwrite"),
        (dict(max_open=-1), ValueError, "max_open"),
        (dict(format="feather"), ValueError, "format must be one of 'parquet', 'arrow'"),
    ],
)
def test_every_option_is_checked_in_the_constructor(kw, error, match):
    kw = {"seq_len": 8, **kw}
    with pytest.raises(error, match=match):
        PackOptions(kw.pop("seq_len"), **kw)


def test_options_are_immutable_and_keep_no_reference_to_the_callers_values():
    pad = {"input_ids": 0}
    columns = ["input_ids"]
    o = PackOptions(8, pad_value=pad, columns=columns)
    pad["input_ids"] = 5
    columns.append("labels")
    assert o.pad_value == {"input_ids": 0} and o.columns == ("input_ids",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seq_len = 16  # type: ignore[misc]


def test_options_survive_pickling_unchanged():
    o = PackOptions(8, method="ffd", pad_value={"input_ids": -1}, seed=4, max_open=3)
    assert pickle.loads(pickle.dumps(o)) == o


def test_as_dict_is_the_manifests_options():
    table = pa.table({"input_ids": pa.array([[1, 2]], pa.list_(pa.int32()))})
    o = PackOptions(8, pad_value=np.int16(7), window_tokens=100)
    spec = o.spec(table.schema)
    assert o.as_dict(spec) == {
        "seq_len": 8,
        "columns": ["input_ids"],
        "method": "bfd",
        "long_docs": "split",
        "pad_value": 7,
        "position_ids": False,
        "seed": None,
        "window_tokens": 100,
        "rows_per_shard": None,
        "max_open": 16,
        "provenance": False,
        "carry": [],
        "separator": None,
        "format": "parquet",
    }
    by_column = PackOptions(8, pad_value={"input_ids": 1})
    assert by_column.as_dict(by_column.spec(table.schema))["pad_value"] == {"input_ids": 1}


def test_pack_parquet_checks_every_option_before_touching_the_disk(tmp_path):
    # The source does not exist: a bad option is reported first, whichever it is.
    with pytest.raises(TypeError, match="position_ids"):
        pack_parquet(tmp_path / "missing", tmp_path / "out", 8, position_ids="yes")
    assert not (tmp_path / "out").exists()
