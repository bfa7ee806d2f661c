"""The validation layer: every public integer argument takes Python and numpy
integers, refuses other types with TypeError and bad values with ValueError,
and says what to pass."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack import OutputSpec, StreamPacker, TableStreamPacker
from bfpack.cli import main

from tokens import token_table

TABLE = token_table([3, 9, 0, 5])


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "a.parquet"
    pq.write_table(TABLE, path)
    return path


def calls(src, tmp_path):
    """``name -> f(value)`` for every public integer argument."""
    spec = OutputSpec.for_schema(TABLE.schema)
    return {
        "pack seq_len": lambda v: bfpack.pack([3, 4], v),
        "pack_table seq_len": lambda v: bfpack.pack_table(TABLE, v),
        "pack_table seed": lambda v: bfpack.pack_table(TABLE, 8, seed=v),
        "pack_table pad_value": lambda v: bfpack.pack_table(TABLE, 8, pad_value=v),
        "pack_parquet seq_len": lambda v: bfpack.pack_parquet(
            src, tmp_path / "o", v, overwrite=True
        ),
        "pack_parquet window_tokens": lambda v: bfpack.pack_parquet(
            src, tmp_path / "o", 8, window_tokens=v, overwrite=True
        ),
        "pack_parquet max_open": lambda v: bfpack.pack_parquet(
            src, tmp_path / "o", 8, max_open=v, overwrite=True
        ),
        "pack_parquet seed": lambda v: bfpack.pack_parquet(
            src, tmp_path / "o", 8, seed=v, overwrite=True
        ),
        "StreamPacker seq_len": lambda v: StreamPacker(v),
        "StreamPacker max_open": lambda v: StreamPacker(8, max_open=v),
        "TableStreamPacker seq_len": lambda v: TableStreamPacker(v, spec),
        "TableStreamPacker seed": lambda v: TableStreamPacker(8, spec, seed=v),
        "truncation_profile bins": lambda v: bfpack.truncation_profile([3, 40], 8, bins=v),
        "compare seq_len": lambda v: bfpack.compare([3, 40], v),
    }


NAMES = list(calls(None, None))


@pytest.mark.parametrize("name", NAMES)
def test_numpy_integers_are_integers(name, src, tmp_path):
    call = calls(src, tmp_path)[name]
    for value in (np.int64(8), np.int32(8), np.uint16(8), 8):
        call(value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [8.0, "8", True, np.True_, [8]], ids=repr)
def test_other_types_are_type_errors(name, value, src, tmp_path):
    if name == "truncation_profile bins" and isinstance(value, list):
        value = 8.5  # bins also takes a list: bin edges
    with pytest.raises(TypeError, match="must be an integer"):
        calls(src, tmp_path)[name](value)


@pytest.mark.parametrize("name", NAMES)
def test_bad_values_are_value_errors(name, src, tmp_path):
    with pytest.raises(ValueError, match="must be|does not fit"):
        calls(src, tmp_path)[name](-(2**70))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(position_ids=1), TypeError, "position_ids must be True or False, got 1"),
        (dict(columns=5), TypeError, "columns must be a column name or a list of names, got 5"),
        (dict(columns=["input_ids", 5]), TypeError, r"columns must be names \(str\), got 5"),
        (dict(columns=[]), ValueError, "columns is empty"),
    ],
)
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        bfpack.pack_table(TABLE, 8, **kwargs)


def test_bad_parquet_options(src, tmp_path):
    with pytest.raises(TypeError, match="progress must be callable or None, got 3"):
        bfpack.pack_parquet(src, tmp_path / "o", 8, progress=3)
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        bfpack.pack_parquet(src, tmp_path / "o", 8, overwrite="yes")
    assert not (tmp_path / "o").exists()


def test_bad_rows():
    plan = bfpack.pack([3, 4], 8)
    with pytest.raises(ValueError, match=r"rows must be 1-D, got an array of shape \(1, 1\)"):
        plan.take([[0]])
    with pytest.raises(ValueError, match="outside"):
        bfpack.assemble(
            TABLE, bfpack.pack([3, 9, 0, 5], 8), OutputSpec.for_schema(TABLE.schema), rows=[-1]
        )


def test_analysis_methods_and_bins():
    assert bfpack.compare([3, 40], 8, methods="bfd")["method"].to_pylist() == ["bfd"]
    with pytest.raises(ValueError, match="bins must be >= 1, got 0"):
        bfpack.truncation_profile([3, 40], 8, bins=np.int8(0))


def test_output_spec():
    spec = OutputSpec.for_schema(
        TABLE.schema,
        columns=["labels", "input_ids"],
        pad_value={"labels": -100, "input_ids": 0},
        position_ids=True,
    )
    assert spec.columns == ("labels", "input_ids")
    assert spec.pad_values == (-100, 0)
    assert spec.output_columns == ("labels", "input_ids", "seq_lengths", "position_ids")
    out = bfpack.pack_table(
        TABLE,
        8,
        columns=["labels", "input_ids"],
        pad_value={"labels": -100, "input_ids": 0},
        position_ids=True,
    )
    assert tuple(out.column_names) == spec.output_columns
    assert spec.schema == pa.schema([TABLE.schema.field("labels"), TABLE.schema.field("input_ids")])
    bare = spec.without_extras()
    assert (bare.pad_values, bare.position_ids, bare.columns) == (None, False, spec.columns)


# --------------------------------------------------------------------------
# The command line's own paths
# --------------------------------------------------------------------------


def test_main_without_a_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: bfpack" in capsys.readouterr().out


def test_main_reports_an_interrupt(monkeypatch, capsys, src, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bfpack.parquet.pack_parquet", interrupted)
    assert main(["pack", str(src), str(tmp_path / "o"), "--seq-len", "8"]) == 130
    assert "interrupted by SIGINT; nothing was written" in capsys.readouterr().err


def test_main_reports_errors_in_one_line(capsys, tmp_path):
    assert main(["stats", str(tmp_path / "missing"), "--seq-len", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bfpack: error:") and "no such file" in err
    assert len(err.splitlines()) == 1
