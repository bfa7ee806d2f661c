"""``format="arrow"``: Arrow IPC shards in the layout of ``datasets.save_to_disk``,
with the manifest, ``verify``, the lock and the swap of Parquet outputs."""

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.cli import main
from bfpack.parquet import MANIFEST, pack_parquet, verify
from bfpack.parquet._shards import datasets_features, read_shard
from bfpack.parquet.manifest import FORMATS, RUN_KEY

from tokens import token_table

SEQ_LEN = 64
OPTIONS = dict(window_tokens=3_000, position_ids=True, seed=2)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One source packed in both formats: ``(src, parquet dst, arrow dst, manifests)``."""
    root = tmp_path_factory.mktemp("arrow-output")
    lengths = np.random.default_rng(5).integers(1, 150, 300)
    (root / "src").mkdir()
    table = token_table(lengths, columns=("input_ids", "labels"))
    pq.write_table(table.slice(0, 200), root / "src" / "a.parquet")
    pq.write_table(table.slice(200), root / "src" / "b.parquet")
    manifests = {
        fmt: pack_parquet(root / "src", root / fmt, SEQ_LEN, format=fmt, **OPTIONS)
        for fmt in ("parquet", "arrow")
    }
    return root / "src", root / "parquet", root / "arrow", manifests


def rows(dst, manifest):
    fmt = manifest["options"]["format"]
    return pa.concat_tables(read_shard(str(dst / s["file"]), fmt) for s in manifest["shards"])


def test_the_same_rows_as_parquet_in_the_datasets_layout(outputs):
    src, pq_dst, dst, m = outputs
    assert m["arrow"]["options"]["format"] == "arrow"
    assert m["parquet"]["options"]["format"] == "parquet"
    n = len(m["arrow"]["shards"])
    assert n > 2
    names = [f"data-{k:05d}-of-{n:05d}.arrow" for k in range(n)]
    assert [s["file"] for s in m["arrow"]["shards"]] == names
    assert sorted(os.listdir(dst)) == sorted([MANIFEST, *names, "dataset_info.json", "state.json"])
    assert rows(dst, m["arrow"]).equals(rows(pq_dst, m["parquet"]))
    assert m["arrow"]["stats"] == m["parquet"]["stats"]
    # Uncompressed Arrow IPC streams (what datasets writes and maps), each
    # stamped with the run that wrote it.
    for name in names:
        with pa.memory_map(str(dst / name)) as f:
            reader = pa.ipc.open_stream(f)
            assert reader.schema.metadata[RUN_KEY] == m["arrow"]["run_id"].encode()
            for batch in reader:
                assert all(b is None or b.size for b in batch.column(0).buffers())
    state = json.loads((dst / "state.json").read_text())
    assert [f["filename"] for f in state["_data_files"]] == names
    assert state["_fingerprint"] == m["arrow"]["run_id"]
    info = json.loads((dst / "dataset_info.json").read_text())
    assert info["features"]["input_ids"] == {
        "feature": {"dtype": "int64", "_type": "Value"},
        "_type": "List",
    }


def test_verify_checks_an_arrow_output_and_its_source(outputs):
    src, _, dst, _ = outputs
    result = verify(dst, src)
    assert result.ok, result.report()
    assert result.rows == sum(s["rows"] for s in json.loads((dst / MANIFEST).read_text())["shards"])
    assert "state.json and dataset_info.json describe the shards" in result.report()
    assert "packed again with 'bfd'" in result.report()


def damaged_copy(dst, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dst, copy)
    return copy


def test_verify_finds_a_damaged_arrow_shard(outputs, tmp_path):
    _, _, dst, m = outputs
    copy = damaged_copy(dst, tmp_path)
    shard = copy / m["arrow"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = verify(copy)
    assert not result.ok
    assert any("SHA-256 differs" in p for p in result.problems), result.problems


def test_verify_finds_datasets_files_that_lie(outputs, tmp_path):
    _, _, dst, m = outputs
    copy = damaged_copy(dst, tmp_path)
    state = json.loads((copy / "state.json").read_text())
    state["_data_files"].reverse()
    (copy / "state.json").write_text(json.dumps(state))
    (copy / "dataset_info.json").unlink()
    problems = verify(copy).problems
    assert any("state.json does not describe the shards" in p for p in problems), problems
    assert any("dataset_info.json is missing" in p for p in problems), problems


def test_verify_finds_a_shard_of_another_run(outputs, tmp_path):
    # Bytes and checksum of a shard rewritten by hand with another run's id:
    # the manifest's checksums updated too, but the run id stays in the file.
    _, _, dst, m = outputs
    copy = damaged_copy(dst, tmp_path)
    name = m["arrow"]["shards"][0]["file"]
    with pa.memory_map(str(copy / name)) as f:
        table = pa.ipc.open_stream(f).read_all()
    table = table.replace_schema_metadata({**table.schema.metadata, RUN_KEY: b"0" * 32})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    data = sink.getvalue().to_pybytes()
    (copy / name).write_bytes(data)
    manifest = json.loads((copy / MANIFEST).read_text())
    import hashlib

    manifest["shards"][0].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (copy / MANIFEST).write_text(json.dumps(manifest))
    problems = verify(copy).problems
    assert problems == (
        f"{name}: written by run {'0' * 32}, not by the manifest's run {manifest['run_id']}",
    )


def test_overwrite_treats_the_datasets_files_as_the_outputs_own(outputs, tmp_path):
    src, _, dst, _ = outputs
    copy = damaged_copy(dst, tmp_path)
    # An Arrow output is replaced, by either format; its JSON files go with it.
    pack_parquet(src, copy, SEQ_LEN, overwrite=True, **OPTIONS)
    assert not (copy / "state.json").exists() and verify(copy).ok
    # In a Parquet output they are foreign: overwrite refuses.
    (copy / "state.json").write_text("{}")
    with pytest.raises(FileExistsError, match="state.json"):
        pack_parquet(src, copy, SEQ_LEN, overwrite=True, format="arrow", **OPTIONS)
    (copy / "state.json").unlink()
    pack_parquet(src, copy, SEQ_LEN, overwrite=True, format="arrow", **OPTIONS)
    assert verify(copy).ok


def test_the_command_line_and_balance(outputs, tmp_path, capsys):
    src, pq_dst, dst, m = outputs
    out = tmp_path / "cli"
    argv = ["pack", str(src), str(out), "--seq-len", str(SEQ_LEN), "--format", "arrow"]
    assert main([*argv, "--window-tokens", "3000", "--position-ids", "--seed", "2"]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["options"]["format"] == "arrow"
    assert rows(out, manifest).equals(rows(dst, m["arrow"]))
    assert main(["verify", str(out), "--source", str(src)]) == 0
    capsys.readouterr()
    # bfpack balance reads the packed rows of either format alike.
    assert main(["balance", str(out), "--ranks", "2"]) == 0
    arrow_report = capsys.readouterr().out
    assert main(["balance", str(pq_dst), "--ranks", "2"]) == 0
    assert capsys.readouterr().out == arrow_report.replace(str(out), str(pq_dst))
    assert main(["pack", str(src), str(tmp_path / "x"), "--seq-len", "8", "--format", "csv"]) == 2
    assert "--format" in capsys.readouterr().err


def test_an_empty_source_gives_one_empty_shard(tmp_path):
    pq.write_table(token_table(np.zeros(0, dtype=np.int64)), tmp_path / "empty.parquet")
    m = pack_parquet(tmp_path / "empty.parquet", tmp_path / "o", SEQ_LEN, format="arrow")
    assert [s["file"] for s in m["shards"]] == ["data-00000-of-00001.arrow"]
    assert rows(tmp_path / "o", m).num_rows == 0
    assert verify(tmp_path / "o").ok


def test_the_format_list_is_the_options():
    assert FORMATS == bfpack.options.OUTPUT_FORMATS


def test_features_of_other_types():
    schema = pa.schema(
        [(t, pa.list_(getattr(pa, t)())) for t in ("int8", "uint16", "float16", "float32")]
        + [("f64", pa.list_(pa.float64())), ("big", pa.large_list(pa.int32()))]
    )
    got = datasets_features(schema)
    assert got["float16"]["feature"]["dtype"] == "float16"
    assert got["float32"]["feature"]["dtype"] == "float32"
    assert got["f64"]["feature"]["dtype"] == "float64"
    assert got["uint16"]["feature"]["dtype"] == "uint16"
    assert got["big"]["_type"] == "LargeList"
