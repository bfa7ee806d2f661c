"""Inputs beyond Parquet: Arrow IPC files and streams, ``save_to_disk``
directories and JSON Lines pack to the same shards as the same documents in
Parquet; each bad input is one line."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack.cli import main
from bfpack.parquet import pack_parquet

SEQ_LEN = 16
WINDOW = 300  # tokens: several windows, so that files and windows do not line up


@pytest.fixture(scope="module")
def docs():
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 40, size=240)
    return [rng.integers(0, 50_000, size=n).tolist() for n in lengths]


def table_of(docs):
    labels = [[-t for t in d] for d in docs]
    return pa.table(
        {
            "input_ids": pa.array(docs, pa.list_(pa.int64())),
            "labels": pa.array(labels, pa.list_(pa.int64())),
            "text": [f"doc {i}" for i in range(len(docs))],
        }
    )


def thirds(table):
    n = table.num_rows
    return [table.slice(0, n // 3), table.slice(n // 3, n // 3), table.slice(2 * (n // 3))]


def write_stream(path, table, batch_rows=50):
    with ipc.new_stream(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=batch_rows)


def write_jsonl(path, table, opener=open):
    with opener(path, "wt") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")


def write_save_to_disk(folder, table):
    """The layout ``datasets.Dataset.save_to_disk`` writes: stream shards,
    listed by state.json (here not in name order, to show that its order counts)."""
    folder.mkdir()
    names = ["data-00001-of-00003.arrow", "data-00000-of-00003.arrow", "data-00002-of-00003.arrow"]
    for name, part in zip(names, thirds(table)):
        write_stream(folder / name, part)
    (folder / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": n} for n in names]})
    )
    (folder / "dataset_info.json").write_text("{}")


@pytest.fixture(scope="module")
def sources(docs, tmp_path_factory):
    """The same documents as Parquet, save_to_disk, Arrow files, Arrow streams and JSON Lines."""
    root = tmp_path_factory.mktemp("formats")
    table = table_of(docs)
    parts = thirds(table)
    out = {}
    for fmt in ("parquet", "feather", "arrow", "jsonl", "jsonl.gz", "jsonl.zst"):
        folder = root / fmt.replace(".", "_")
        folder.mkdir()
        for k, part in enumerate(parts):
            path = folder / f"part-{k}.{fmt}"
            if fmt == "parquet":
                pq.write_table(part, path)
            elif fmt == "feather":
                feather.write_feather(part, path, chunksize=50)  # IPC file format, lz4
            elif fmt == "arrow":
                write_stream(path, part)
            elif fmt == "jsonl":
                write_jsonl(path, part)
            elif fmt == "jsonl.gz":
                write_jsonl(path, part, gzip.open)
            else:
                with pa.CompressedOutputStream(str(path), "zstd") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in part.to_pylist()).encode())
        out[fmt] = folder
    # Listed in state.json as data-00001, data-00000, data-00002: read in name order,
    # the first two thirds would swap.
    write_save_to_disk(root / "save_to_disk", table)
    out["save_to_disk"] = root / "save_to_disk"
    return out


@pytest.fixture(scope="module")
def packed(sources, tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    options = dict(window_tokens=WINDOW, columns=["input_ids", "labels"])
    return {
        fmt: (pack_parquet(src, root / fmt, SEQ_LEN, **options), root / fmt)
        for fmt, src in sources.items()
    }


@pytest.mark.parametrize(
    "fmt", ["feather", "arrow", "jsonl", "jsonl.gz", "jsonl.zst", "save_to_disk"]
)
def test_every_format_packs_the_bytes_parquet_packs(packed, fmt):
    ref, ref_dir = packed["parquet"]
    m, folder = packed[fmt]
    assert m["shards"] == ref["shards"]  # names, rows, bytes and SHA-256 of every shard
    assert pq.read_table(folder).equals(pq.read_table(ref_dir))
    different = {k for k in m if m[k] != ref[k]}
    assert different == {"run_id", "source", "inputs"}
    assert all(i["format"] == ("jsonl" if "jsonl" in fmt else "arrow") for i in m["inputs"])
    assert all(
        set(i) == {"path", "size", "rows", "mtime_ns", "format", "ends_sha256"} for i in m["inputs"]
    )
    assert [i["rows"] for i in m["inputs"]] == [i["rows"] for i in ref["inputs"]]


def test_save_to_disk_files_come_in_the_order_state_json_lists(packed):
    m, _ = packed["save_to_disk"]
    assert [i["path"] for i in m["inputs"]] == [
        "data-00001-of-00003.arrow",
        "data-00000-of-00003.arrow",
        "data-00002-of-00003.arrow",
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
def test_verify_replays_the_source_and_finds_a_changed_file(sources, packed, fmt, tmp_path):
    m, folder = packed[fmt]
    src = tmp_path / "src"
    src.mkdir()
    for name in os.listdir(sources[fmt]):
        (src / name).write_bytes((sources[fmt] / name).read_bytes())
    assert bfpack.verify(folder, source=src).ok
    # Same size, same rows, one token changed: a different file.
    path = src / "part-2.jsonl" if fmt == "jsonl" else src / "part-2.arrow"
    if fmt == "jsonl":
        text = path.read_text()
        i = text.index("[") + 1
        path.write_text(text[:i] + ("9" if text[i] != "9" else "8") + text[i + 1 :])
    else:
        table = ipc.open_stream(path.read_bytes()).read_all()  # not mapped: rewritten next
        ids = table.column("input_ids").to_pylist()
        first = next(k for k, d in enumerate(ids) if d)
        ids[first][0] += 1
        table = table.set_column(0, "input_ids", pa.array(ids, table.schema.field(0).type))
        write_stream(path, table)
    result = bfpack.verify(folder, source=src)
    assert not result.ok
    assert any("part-2" in p and "ends_sha256" in p for p in result.problems), result.problems


def test_stats_reads_json_lines(sources, monkeypatch, capsys):
    assert main(["stats", str(sources["jsonl.gz"]), "--seq-len", "16", "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["documents"] == 240


# -- bad inputs: one line, exit status 2 ----------------------------------------------


def cli_error(argv, capsys):
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def pack_error(src, tmp_path, capsys, *extra):
    return cli_error(
        ["pack", src, tmp_path / "out", "--seq-len", SEQ_LEN, "--quiet", *extra], capsys
    )


def test_a_source_of_mixed_formats_is_refused(sources, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.parquet").write_bytes((sources["parquet"] / "part-0.parquet").read_bytes())
    (src / "b.jsonl").write_bytes((sources["jsonl"] / "part-1.jsonl").read_bytes())
    line = pack_error(src, tmp_path, capsys)
    assert "mixes input formats: Parquet (a.parquet); JSON Lines (b.jsonl)" in line
    assert "of its own" in line


def test_a_file_of_no_known_format_is_refused(sources, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_bytes((sources["jsonl"] / "part-1.jsonl").read_bytes())
    (src / "notes.txt").write_text("hello\n")
    line = pack_error(src, tmp_path, capsys)
    assert "notes.txt is not a Parquet file" in line and "*.jsonl" in line


@pytest.mark.parametrize(
    "lines, column, message",
    [
        (['{"input_ids": [1, 2]}', '{"ids": [3]}'], "input_ids", "line 2: no key 'input_ids'"),
        (
            ['{"input_ids": [1]}', "", '{"input_ids": 7}'],
            "input_ids",
            "line 3: 'input_ids' is a JSON number (7), not a list",
        ),
        (['{"input_ids": [1, 2.5]}'], "input_ids", "line 1: 'input_ids'[1] is 2.5, not an integer"),
        (['{"input_ids": [1, [2]]}'], "input_ids", "line 1: 'input_ids'[1] is [2], not an integer"),
        (
            ['{"input_ids": [1, true]}'],
            "input_ids",
            "line 1: 'input_ids'[1] is True, not an integer",
        ),
        (['{"input_ids": [1]}', '{"input_ids": [2]'], "input_ids", "line 2: not valid JSON"),
        (
            ['{"input_ids": [1]}', '{"input_ids": null}'],
            "input_ids",
            "line 2: 'input_ids' is a JSON null",
        ),
        (["[1, 2]"], None, "line 1: a JSON array, not an object"),
        ([""], None, "is empty: a JSON Lines file holds one document per line"),
    ],
)
def test_bad_json_lines_name_file_and_line(lines, column, message, tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    extra = ["--column", column] if column else []
    line = pack_error(path, tmp_path, capsys, *extra)
    assert f"docs.jsonl{'' if 'empty' in message else ','} {message}" in line


def test_a_truncated_arrow_file_is_refused(sources, tmp_path, capsys):
    for name, cut in (("part-0.arrow", 100), ("part-0.feather", 100)):
        data = (sources[name.split(".")[1]] / name).read_bytes()
        path = tmp_path / name
        path.write_bytes(data[:-cut])
        line = pack_error(path, tmp_path, capsys)
        assert f"{name} is not a readable Arrow IPC file" in line
    # Cut between two batches: a stream that reads, but without its end.
    data = (sources["arrow"] / "part-0.arrow").read_bytes()
    path = tmp_path / "cut.arrow"
    path.write_bytes(data[:-8])
    assert "no end-of-stream marker" in pack_error(path, tmp_path, capsys)


def test_a_save_to_disk_directory_missing_a_listed_file_is_refused(sources, tmp_path, capsys):
    src = tmp_path / "ds"
    write_save_to_disk(src, table_of([[1, 2], [3]] * 3))
    os.remove(src / "data-00002-of-00003.arrow")
    line = pack_error(src, tmp_path, capsys)
    assert "state.json lists data-00002-of-00003.arrow, which is missing" in line


def test_a_dataset_dict_asks_for_one_split(tmp_path, capsys):
    src = tmp_path / "dd"
    src.mkdir()
    (src / "dataset_dict.json").write_text('{"splits": ["train"]}')
    write_save_to_disk(src / "train", table_of([[1, 2]] * 3))
    line = pack_error(src, tmp_path, capsys)
    assert "DatasetDict (splits: train)" in line and os.path.join(str(src), "train") in line


# -- memory -----------------------------------------------------------------------


def peak_rss_reading(path):
    """Peak RSS (bytes) of a new process that reads the lengths of ``path``."""
    code = textwrap.dedent(
        f"""
        import resource
        from bfpack.parquet._source import ParquetSource
        source = ParquetSource.open({str(path)!r})
        # Blocks of 1 MiB (8 bytes of text per token asked for).
        batches = source.batches(source.spec(), batch_tokens=1 << 17)
        print(sum(len(b.column(0).flatten()) for b in batches))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tokens, peak = map(int, out.stdout.split())
    return tokens, peak


def test_json_lines_are_read_in_bounded_memory(tmp_path):
    # Files of 8 and 32 MB, read in blocks of 1 MiB: the larger one's peak
    # RSS is the smaller one's (allocator noise aside), where holding the
    # text or its tokens would add 24 MB or more. Two processes, not one
    # against its start: the libraries' pages and pools count from the first block.
    rng = np.random.default_rng(0)
    ids = rng.integers(10_000, 99_999, 2000)
    line = ('{"input_ids": [' + ", ".join(map(str, ids)) + "]}\n").encode()
    peaks, sizes = [], []
    for mb in (8, 32):
        path = tmp_path / f"{mb}.jsonl"
        count = (mb << 20) // len(line)
        path.write_bytes(line * count)
        tokens, peak = peak_rss_reading(path)
        assert tokens == count * 2000
        peaks.append(peak)
        sizes.append(path.stat().st_size)
        path.unlink()
    grown = peaks[1] - peaks[0]
    assert grown < (sizes[1] - sizes[0]) / 4, f"peak RSS {peaks[0]:,} then {peaks[1]:,} bytes"


@pytest.mark.integration
def test_a_real_save_to_disk_directory_packs_as_parquet(docs, packed, tmp_path):
    from integrations import need

    datasets = need("datasets")
    table = table_of(docs)
    ds = datasets.Dataset(table)  # the same columns and types
    ds.save_to_disk(str(tmp_path / "ds"), num_shards=3)
    m = pack_parquet(
        tmp_path / "ds",
        tmp_path / "o",
        SEQ_LEN,
        window_tokens=WINDOW,
        columns=["input_ids", "labels"],
    )
    assert m["shards"] == packed["parquet"][0]["shards"]
    assert [i["path"] for i in m["inputs"]] == [f"data-0000{k}-of-00003.arrow" for k in range(3)]


def test_json_lines_longer_than_a_block_and_blank_lines(monkeypatch, tmp_path):
    from bfpack.parquet import _jsonl_input
    from bfpack.parquet._source import ParquetSource

    # Blocks of 64 bytes: most lines are longer, some far longer.
    monkeypatch.setattr(_jsonl_input, "MIN_BLOCK", 64)
    monkeypatch.setattr(_jsonl_input, "MAX_BLOCK", 64)
    docs = [list(range(n)) for n in (0, 3, 50, 1, 400, 7)]
    text = "\n".join(json.dumps({"input_ids": d}) for d in docs)
    path = tmp_path / "a.jsonl"
    path.write_text("\n \n" + text.replace("\n", "\n\r\n", 1) + "\n\n")
    source = ParquetSource.open(path)
    assert source.rows == len(docs)
    got = [
        d for b in source.batches(source.spec(), batch_tokens=5) for d in b.column(0).to_pylist()
    ]
    assert got == docs
    path.write_text(text + '\n{"input_ids": [1, 2.5]}')
    with pytest.raises(ValueError, match=r"a.jsonl, line 7: 'input_ids'\[1\] is 2.5"):
        source = ParquetSource.open(path)
        list(source.batches(source.spec(), batch_tokens=5))


@pytest.mark.parametrize("fmt", ["arrow", "feather", "jsonl"])
def test_an_input_cut_short_in_place_during_the_run_fails_naming_it(sources, fmt, tmp_path):
    # Arrow inputs were memory-mapped: a file cut short in place under the
    # reader ended the process with SIGBUS instead of an error naming it.
    src = tmp_path / "src"
    shutil.copytree(sources[fmt], src)
    victim = src / f"part-0.{fmt}"  # being read at the first window's end
    calls = []

    def cut_short(totals):
        calls.append(totals)
        if len(calls) == 1:
            with open(victim, "r+b") as f:  # in place: same inode, fewer bytes
                f.truncate(victim.stat().st_size // 2)

    with pytest.raises(ValueError, match=rf"part-0\.{fmt}") as info:
        pack_parquet(src, tmp_path / "o", SEQ_LEN, window_tokens=WINDOW, progress=cut_short)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()


def test_opening_a_compressed_arrow_file_does_not_decompress_it(tmp_path):
    # Its rows come from the batches' headers: a damaged compressed body is
    # found when the file is read (as a damaged Parquet page is), naming it.
    from bfpack.parquet._source import ParquetSource

    if not hasattr(ipc.RecordBatchFileReader, "count_rows"):
        pytest.skip(f"pyarrow {pa.__version__} counts an Arrow file's rows only by reading them")
    table = pa.table({"input_ids": pa.array([[1, 2, 3]] * 100, pa.list_(pa.int64()))})
    path = tmp_path / "docs.arrow"
    options = ipc.IpcWriteOptions(compression="zstd")
    with ipc.new_file(str(path), table.schema, options=options) as w:
        w.write_table(table, max_chunksize=50)
    data = bytearray(path.read_bytes())
    frame = data.rfind(b"\x28\xb5\x2f\xfd")  # the last zstd frame: a batch's values
    data[frame : frame + 8] = b"\x00" * 8
    path.write_bytes(bytes(data))
    source = ParquetSource.open(path)
    assert source.rows == 100
    with pytest.raises(ValueError, match=r"docs\.arrow") as info:
        list(source.batches(source.spec(), batch_tokens=1000))
    assert "\n" not in str(info.value)
