"""Output you can trust: paths, columns, skipped files, permissions, schemas,
messages, the manifest, locking, memory and the command line's start-up,
each through the public API or the CLI."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bfpack
from bfpack import _arrow
from bfpack.cli import main
from bfpack.parquet import pack_parquet
from bfpack.parquet._staging import DestinationBusyError, DestinationLock
from bfpack.parquet.manifest import MANIFEST
from bfpack.table import OutputSpec

from tokens import check_packed, token_table


def write_shards(folder, parts, **kw):
    """Shards ``part-<k>.parquet`` of ``token_table`` over each list of lengths."""
    os.makedirs(folder, exist_ok=True)
    first = 0
    for k, lengths in enumerate(parts):
        pq.write_table(token_table(lengths, first_doc=first, **kw), folder / f"part-{k}.parquet")
        first += len(lengths)
    return folder


def snapshot(folder):
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))}


def one_line_error(r, text):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("bfpack: error:") and text in r.stderr, r.stderr


def bfpack_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "bfpack", *map(str, args)], capture_output=True, text=True, **kw
    )


# --------------------------------------------------------------------------
# DST overlapping SRC; what --overwrite replaces


def test_destination_inside_the_source_is_refused(tmp_path):
    # DST inside SRC is refused: every --overwrite rerun would read the
    # previous output back as input (2M -> 4M -> 6M tokens).
    src = write_shards(tmp_path / "par" / "src", [[5, 3], [9]])
    before = snapshot(src)
    os.symlink(src, tmp_path / "alias")
    for dst, why in [
        (src / "packed", "is inside the source"),
        (src, "is the source"),
        (tmp_path / "par", "contains the source"),  # --overwrite would delete the input
        (tmp_path / "alias" / "packed", "is inside the source"),
    ]:
        with pytest.raises(ValueError, match=why):
            pack_parquet(src, dst, 8, overwrite=True)
        assert snapshot(src) == before
    assert sorted(os.listdir(tmp_path)) == ["alias", "par"]


def test_cli_overwrite_never_deletes_the_source(tmp_path):
    # `bfpack pack par/src par --overwrite` is refused: replacing par would
    # delete the source inside it.
    src = write_shards(tmp_path / "par" / "src", [[5, 3], [9]])
    before = snapshot(src)
    r = bfpack_cli("pack", src, tmp_path / "par", "--seq-len", 8, "--overwrite")
    one_line_error(r, "contains the source")
    assert snapshot(src) == before


def test_overwrite_replaces_only_bfpack_outputs(tmp_path):
    src = write_shards(tmp_path / "src", [[5, 3]])
    dst = tmp_path / "home"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a bfpack output"):
        pack_parquet(src, dst, 8, overwrite=True)
    assert os.listdir(dst) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        pack_parquet(src, tmp_path / "file", 8, overwrite=True)
    (tmp_path / "empty").mkdir()
    pack_parquet(src, tmp_path / "empty", 8, overwrite=True)
    # A manifest by another name does not make a directory an output.
    other = tmp_path / "other"
    other.mkdir()
    (other / "_bfpack.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not a bfpack output"):
        pack_parquet(src, other, 8, overwrite=True)
    assert os.listdir(other) == ["_bfpack.json"]


# --------------------------------------------------------------------------
# The packed columns are the same in every file


def test_default_columns_must_be_in_every_file(tmp_path):
    # A default column missing from one file is an error naming it, never a
    # column dropped from every output shard with exit 0.
    first = write_shards(tmp_path / "first", [[5, 3]], columns=["input_ids"])
    pq.write_table(token_table([4], first_doc=2), first / "part-1.parquet")
    with pytest.raises(
        ValueError,
        match=r"list column 'labels' of .*part-1\.parquet is missing from .*part-0\.parquet "
        r"\(no such column\).*columns=\['input_ids'\]",
    ):
        pack_parquet(first, tmp_path / "o", 8)
    assert not (tmp_path / "o").exists()
    # Missing from a later file: the same error, naming that file.
    later = write_shards(tmp_path / "later", [[5, 3]])
    pq.write_table(token_table([4], columns=["input_ids", "mask"]), later / "part-1.parquet")
    with pytest.raises(ValueError, match=r"'labels' of .*part-0\.parquet is missing from .*part-1"):
        pack_parquet(later, tmp_path / "o", 8)
    # A column of another type is named as such.
    t = token_table([4], columns=["input_ids"]).append_column("labels", pa.array([7]))
    pq.write_table(t, later / "part-1.parquet")
    with pytest.raises(ValueError, match="a column of type int64"):
        pack_parquet(later, tmp_path / "o", 8)
    # Naming the common columns packs them.
    m = pack_parquet(first, tmp_path / "o", 8, columns=["input_ids"])
    assert m["options"]["columns"] == ["input_ids"]


# --------------------------------------------------------------------------
# Skipped files are reported


def test_skipped_files_are_reported_and_listed(tmp_path):
    # Files starting with _ or . are skipped with a warning and listed in
    # the manifest, never silently.
    src = write_shards(tmp_path / "src", [[5, 3], [9]])
    pq.write_table(token_table([7, 7]), src / "_part-2.parquet")
    (src / ".cache").mkdir()
    pq.write_table(token_table([7]), src / ".cache" / "x.parquet")
    (src / "sub").mkdir()
    pq.write_table(token_table([2], first_doc=3), src / "sub" / "part-3.parquet")
    pq.write_table(token_table([7]), src / "sub" / ".part-4.parquet")
    with pytest.warns(UserWarning, match=r"skipped 3 entries .*'_' or '\.'.*: \.cache/, "):
        m = pack_parquet(src, tmp_path / "o", 8)
    assert m["skipped"] == [".cache/", "_part-2.parquet", "sub/.part-4.parquet"]
    assert [i["path"] for i in m["inputs"]] == [
        "part-0.parquet",
        "part-1.parquet",
        "sub/part-3.parquet",
    ]
    assert m["stats"]["tokens"] == 5 + 3 + 9 + 2
    r = bfpack_cli("pack", src, tmp_path / "o2", "--seq-len", 8)
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("bfpack: warning:") and "skipped 3 entries" in line


def test_many_skipped_files_are_summarised(tmp_path):
    src = write_shards(tmp_path / "src", [[5]])
    for k in range(8):
        (src / f"_junk{k}").write_text("x")
    with pytest.warns(UserWarning, match=r"skipped 8 entries .*_junk4 and 3 more$"):
        pack_parquet(src, tmp_path / "o", 8)


# --------------------------------------------------------------------------
# Permissions


def test_destination_honours_the_umask(tmp_path):
    # DST gets the permissions of the umask, not mkdtemp's 0700.
    src = write_shards(tmp_path / "src", [[5, 3]])
    old = os.umask(0o022)
    try:
        pack_parquet(src, tmp_path / "o", 8)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "o").st_mode & 0o777 == 0o755
    for name in os.listdir(tmp_path / "o"):
        assert os.stat(tmp_path / "o" / name).st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------
# One schema for every shard


@pytest.mark.parametrize("large", [False, True])
def test_one_schema_whatever_the_window(tmp_path, monkeypatch, large):
    # A window over 2**31 tokens is written as list chunks, like every
    # other shard, never as large_list. The limit is lowered here so that
    # small windows pass it.
    monkeypatch.setattr(_arrow, "MAX_LIST_VALUES", 300)
    lengths = np.arange(1, 120) % 50
    src = write_shards(tmp_path / "src", [lengths[:60], lengths[60:]], large=large)
    m = pack_parquet(
        src, tmp_path / "o", 64, window_tokens=400, position_ids=True, pad_value=0, seed=1
    )
    schemas = {pq.read_schema(tmp_path / "o" / s["file"]) for s in m["shards"]}
    assert len(schemas) == 1 and len(m["shards"]) > 2
    (schema,) = schemas
    list_type = pa.large_list if large else pa.list_
    assert schema.field("input_ids").type == list_type(pa.int64())
    assert schema.field("seq_lengths").type == pa.list_(pa.int32())
    assert schema.field("position_ids").type == pa.list_(pa.int32())
    out = pa.concat_tables(pq.read_table(tmp_path / "o" / s["file"]) for s in m["shards"])
    check_packed(out, lengths, 64, pad=0, position_ids=True)


def test_pack_table_keeps_the_list_type_past_the_offset_limit(monkeypatch):
    monkeypatch.setattr(_arrow, "MAX_LIST_VALUES", 100)
    lengths = np.arange(1, 60)
    table = token_table(lengths)
    out = bfpack.pack_table(table, 32, position_ids=True)
    assert out.schema.field("input_ids").type == pa.list_(pa.int64())
    assert out["input_ids"].num_chunks > 1  # cut between rows, each chunk under the limit
    for chunk in out["input_ids"].chunks:
        assert chunk.offsets[-1].as_py() - chunk.offsets[0].as_py() <= 100
    check_packed(out, lengths, 32, position_ids=True)
    packer = bfpack.TableStreamPacker(32, OutputSpec.for_schema(table.schema))
    steps = [packer.step(table.slice(0, 30)), packer.step(table.slice(30), last=True)]
    check_packed(pa.concat_tables(steps), lengths, 32)


# --------------------------------------------------------------------------
# Messages that name the real problem


def test_empty_source_directory(tmp_path):
    # An empty directory is named as such, not as a table without list columns.
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match=r"src holds no Parquet, Arrow IPC or JSON Lines files$"):
        pack_parquet(tmp_path / "src", tmp_path / "o", 8)
    (tmp_path / "src" / "_SUCCESS").write_text("")
    with (
        pytest.raises(
            ValueError,
            match=r"holds no Parquet, Arrow IPC or JSON Lines files \(.*skipped 1 entry.*_SUCCESS",
        ),
        pytest.warns(UserWarning, match="_SUCCESS"),
    ):
        pack_parquet(tmp_path / "src", tmp_path / "o", 8)
    assert not (tmp_path / "o").exists()


def test_opening_a_source_opens_each_file_once(tmp_path, monkeypatch):
    # Its format is told and it is inspected through one handle: on a store,
    # every open is requests.
    from bfpack.parquet import _source

    src = write_shards(tmp_path / "src", [[5, 3], [9], [4]])
    opened = []

    def counting_open(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(_source, "open", counting_open, raising=False)
    assert _source.ParquetSource.open(src).rows == 4
    assert sorted(opened) == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]


def test_a_mix_of_formats_is_named_before_a_file_that_cannot_be_read(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.parquet").write_bytes(b"PAR1 not really")
    (src / "b.jsonl").write_text('{"input_ids": [1, 2]}\n')
    with pytest.raises(ValueError, match="mixes input formats"):
        pack_parquet(src, tmp_path / "o", 8)
    (src / "b.jsonl").unlink()
    with pytest.raises(ValueError, match=r"a\.parquet is not a Parquet file"):
        pack_parquet(src, tmp_path / "o", 8)


def damaged(path, tmp_path):
    """A copy of ``path`` with the pages of its second row group scrambled."""
    data = bytearray(path.read_bytes())
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = chunk.data_page_offset
    for i in range(start + 8, start + chunk.total_compressed_size - 8, 5):
        data[i] ^= 0x5A
    out = tmp_path / "damaged.parquet"
    out.write_bytes(bytes(data))
    return out


def test_damaged_page_is_one_line_naming_the_file(tmp_path):
    # A corrupt page is one line naming the file (pyarrow's message has a
    # newline and control characters).
    pq.write_table(token_table(np.full(400, 30)), tmp_path / "ok.parquet", row_group_size=100)
    bad = damaged(tmp_path / "ok.parquet", tmp_path)
    with pytest.raises(ValueError, match=r"cannot read .*damaged\.parquet: .*may be damaged\)$"):
        pack_parquet(bad, tmp_path / "o", 64)
    r = bfpack_cli("pack", bad, tmp_path / "o", "--seq-len", 64)
    one_line_error(r, "damaged.parquet")
    assert r.stderr.isprintable() or r.stderr[:-1].isprintable()
    assert not (tmp_path / "o").exists()


def test_duplicate_column_names_in_a_file(tmp_path):
    # Two columns of one name are a ValueError naming them, not a KeyError.
    ids = pa.array([[1, 2], [3]])
    t = pa.Table.from_arrays([ids, ids, pa.array([1, 2])], names=["a", "a", "n"])
    pq.write_table(t, tmp_path / "dup.parquet")
    for columns in (None, "a", ["a"]):
        with pytest.raises(ValueError, match=r"dup\.parquet has 2 columns named 'a'"):
            pack_parquet(tmp_path / "dup.parquet", tmp_path / "o", 8, columns=columns)
    r = bfpack_cli("stats", tmp_path / "dup.parquet", "--seq-len", 8)
    one_line_error(r, "has 2 columns named 'a'")


# --------------------------------------------------------------------------
# The manifest says what was read and written


def input_record(path, name, rows):
    """The manifest entry of an input: its size, rows, mtime and the SHA-256 of its
    footer (the last 8 + n bytes, n read from the 4 bytes before the closing magic)."""
    data = path.read_bytes()
    n = int.from_bytes(data[-8:-4], "little")
    return {
        "path": name,
        "size": len(data),
        "rows": rows,
        "mtime_ns": os.stat(path).st_mtime_ns,
        "footer_sha256": hashlib.sha256(data[-8 - n :]).hexdigest(),
    }


def test_manifest_records_the_run(tmp_path):
    src = write_shards(tmp_path / "src", [[5, 3, 40], [9, 0, 12]])
    m = pack_parquet(src, tmp_path / "o", 16, window_tokens=20)
    on_disk = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert on_disk == m
    assert list(m) == [
        "format",
        "bfpack_version",
        "run_id",
        "source",
        "inputs",
        "skipped",
        "options",
        "shards",
        "stats",
    ]
    assert m["format"] == 2 and re.fullmatch("[0-9a-f]{32}", m["run_id"])
    assert m["inputs"] == [
        input_record(src / n, n, 3) for n in ("part-0.parquet", "part-1.parquet")
    ]
    assert m["skipped"] == []
    assert len(m["shards"]) >= 2
    for s in m["shards"]:
        data = (tmp_path / "o" / s["file"]).read_bytes()
        assert s["bytes"] == len(data)
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["rows"] == pq.read_metadata(tmp_path / "o" / s["file"]).num_rows
    again = pack_parquet(src, tmp_path / "o", 16, window_tokens=20, overwrite=True)
    assert again["run_id"] != m["run_id"]
    assert again["shards"] == m["shards"]  # the same bytes
    one = pack_parquet(src / "part-1.parquet", tmp_path / "one", 16)
    assert one["inputs"] == [input_record(src / "part-1.parquet", "part-1.parquet", 3)]


def test_shards_and_manifest_are_flushed(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    monkeypatch.setattr(os, "fsync", fsync)
    src = write_shards(tmp_path / "src", [[5, 3, 40], [9, 0, 12]])
    m = pack_parquet(src, tmp_path / "o", 16, window_tokens=20)
    names = [os.path.basename(p) for p in synced]
    for s in m["shards"]:
        # Flushed under its temporary name, before the rename.
        assert any(n.startswith(f".{s['file']}.tmp-") for n in names)
    # The manifest, then the journal (naming the swap's directories), then
    # the staged directory (its marker removed), then their parent.
    assert names[-4:-2] == [MANIFEST, ".o.lock"]
    assert names[-2].startswith(".o.tmp-") and synced[-1] == str(tmp_path)


# --------------------------------------------------------------------------
# The lock and what dead runs left


def test_a_locked_destination_fails_at_once(tmp_path):
    src = write_shards(tmp_path / "src", [[5, 3]])
    lock = DestinationLock(str(tmp_path / "o"))
    lock.acquire()
    try:
        with pytest.raises(
            DestinationBusyError, match=rf"another bfpack run \(pid {os.getpid()}\)"
        ):
            pack_parquet(src, tmp_path / "o", 8)
        r = bfpack_cli("pack", src, tmp_path / "o", "--seq-len", 8)
        one_line_error(r, "is being written by another bfpack run")
    finally:
        lock.release()
    assert sorted(os.listdir(tmp_path)) == ["src"]
    pack_parquet(src, tmp_path / "o", 8)
    assert sorted(os.listdir(tmp_path)) == ["o", "src"]  # no lock file left


def test_leftovers_of_dead_runs_are_removed(tmp_path):
    # What a killed run leaves beside DST is removed by the next run: what
    # its journal (the lock file) names and its marker confirms; unmarked
    # directories are left alone (tests/test_staging.py).
    src = write_shards(tmp_path / "src", [[5, 3]])
    code = (
        "import os, signal, sys\n"
        "from bfpack.parquet._staging import StagedOutput\n"
        "out = StagedOutput(sys.argv[1], overwrite=False).__enter__()\n"
        "open(os.path.join(out.folder, 'part-00000.parquet'), 'w').write('partial')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "o")])
    assert len(os.listdir(tmp_path)) == 3  # src, the lock file, the staged directory
    pack_parquet(src, tmp_path / "o", 8)
    assert sorted(os.listdir(tmp_path)) == ["o", "src"]


# --------------------------------------------------------------------------
# Memory bounded by the window


PEAK_CHILD = textwrap.dedent(
    """
    import sys
    from bfpack.cli import main
    status = main(sys.argv[1:])
    with open("/proc/self/status") as f:
        peak = [int(line.split()[1]) for line in f if line.startswith("VmHWM")][0]
    print(status, peak * 1024)
    """
)


def fresh_peak(*args):
    """Exit status and peak RSS (bytes) of a fresh process running ``bfpack *args``."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
    )
    status, peak = out.stdout.split()[-2:]
    assert status == "0", out.stderr
    return int(peak)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM")
def test_memory_follows_the_window_not_the_row_group(tmp_path):
    # The reader does not pre-buffer far ahead: one file of one row group
    # would cost its whole size (2.9 GB for 200M tokens with 1M windows),
    # and `bfpack stats` reads lengths, not tokens. Here 20M int32 tokens (80 MB)
    # in one row group, 1M-token windows: the peak must stay near that of a
    # tiny file, far below the data.
    rng = np.random.default_rng(0)
    lengths = (rng.lognormal(6, 1.3, 22_000) + 1).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = rng.integers(0, 50_000, int(offsets[-1]), dtype=np.int32)
    table = pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=table.num_rows)
    pq.write_table(table.slice(0, 50), tmp_path / "tiny.parquet")
    del table, values
    assert pq.read_metadata(tmp_path / "big.parquet").num_row_groups == 1
    pack = ["pack", "--seq-len", 2048, "--window-tokens", 1 << 20, "--overwrite", "--quiet"]
    peaks = {}
    for name in ("tiny", "tiny", "big"):  # the first run may compile; the second is the base
        peaks[name, "pack"] = fresh_peak(
            pack[0], tmp_path / f"{name}.parquet", tmp_path / "o", *pack[1:]
        )
        peaks[name, "stats"] = fresh_peak("stats", tmp_path / f"{name}.parquet", "--seq-len", 2048)
    for command in ("pack", "stats"):
        extra = peaks["big", command] - peaks["tiny", command]
        assert extra < 130e6, (command, extra / 1e6)  # main: +290 MB and +370 MB


# --------------------------------------------------------------------------
# The command line's start-up


def test_import_loads_nothing_heavy():
    code = (
        "import sys, bfpack, bfpack.cli, bfpack.parquet\n"
        "print(sorted(m for m in ('numpy', 'pyarrow', 'numba') if m in sys.modules))\n"
        "bfpack.pack\n"
        "print(sorted(m for m in ('numpy', 'pyarrow', 'numba') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "['numba', 'numpy', 'pyarrow']"]


def test_public_names_load_on_use():
    assert set(bfpack.__all__) <= set(dir(bfpack))
    for name in bfpack.__all__:
        assert getattr(bfpack, name) is not None
    assert callable(bfpack.verify) and bfpack.verify.__module__ == "bfpack.parquet._verify"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        bfpack.nope  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute '_private'"):
        bfpack._private  # noqa: B018
    # Submodules, as attributes, as when the package imported them all.
    code = "import bfpack; print(bfpack.table.SEQ_LENGTHS, bfpack.parquet.manifest.MANIFEST)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["seq_lengths", MANIFEST]


def test_interrupt_after_the_output_is_complete(tmp_path, monkeypatch, capsys):
    # A KeyboardInterrupt after the output is complete keeps it, and the
    # CLI says that it was written.
    import bfpack.parquet

    src = write_shards(tmp_path / "src", [[5, 3]])
    real = bfpack.parquet.pack_parquet

    def then_sigterm(*args, **kw):
        manifest = real(*args, **kw)
        os.kill(os.getpid(), signal.SIGTERM)
        return manifest

    monkeypatch.setattr(bfpack.parquet, "pack_parquet", then_sigterm)
    old = signal.getsignal(signal.SIGTERM)
    status = main(["pack", str(src), str(tmp_path / "o"), "--seq-len", "8"])
    assert signal.getsignal(signal.SIGTERM) is old  # restored when called with argv
    assert status == 143
    err = capsys.readouterr().err
    assert (
        err == f"bfpack: interrupted by SIGTERM; the new output at {tmp_path / 'o'} is complete\n"
    )
    assert bfpack.verify(tmp_path / "o", source=src).ok


def test_a_swallowed_interrupt_never_exits_0(tmp_path, monkeypatch, capsys):
    # llvmlite can swallow the KeyboardInterrupt raised while numba loads
    # its cache; the run still ends as interrupted, never with exit 0.
    import bfpack.parquet

    src = write_shards(tmp_path / "src", [[5, 3], [4]])
    real = bfpack.parquet.pack_parquet

    def swallowing(*args, **kw):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what llvmlite's callback does
        return real(*args, **kw)

    monkeypatch.setattr(bfpack.parquet, "pack_parquet", swallowing)
    status = main(["pack", str(src), str(tmp_path / "o"), "--seq-len", "8", "--window-tokens", "4"])
    assert status == 130
    assert capsys.readouterr().err == (
        f"bfpack: interrupted by SIGINT; nothing was written to {tmp_path / 'o'}\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_progress_on_a_terminal(tmp_path, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    src = write_shards(tmp_path / "src", [[5, 3], [4, 9]])
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    status = main(["pack", str(src), str(tmp_path / "o"), "--seq-len", "8", "--window-tokens", "8"])
    assert status == 0
    # tqdm's bar, redrawn in place, ends complete (tests/test_cli.py has more).
    last = err.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("pack: 100%|") and "docs/s, 21 tokens]" in last
    assert main([]) == 2  # no command: the help


def test_a_directory_linking_to_itself(tmp_path):
    src = write_shards(tmp_path / "src", [[5, 3]])
    os.symlink(src, src / "loop")
    m = pack_parquet(src, tmp_path / "o", 8)
    assert [i["path"] for i in m["inputs"]] == ["part-0.parquet"]


def test_unraisable_exceptions_other_than_ours_are_reported(monkeypatch):
    from types import SimpleNamespace

    from bfpack._interrupt import Interrupted, InterruptGuard

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with InterruptGuard():
        sys.unraisablehook(SimpleNamespace(exc_value=ValueError("theirs")))
        sys.unraisablehook(SimpleNamespace(exc_value=Interrupted(signal.SIGINT)))
    assert [str(u.exc_value) for u in seen] == ["theirs"]
    assert sys.unraisablehook == seen.append  # restored


# --------------------------------------------------------------------------
# Issue 17, findings 3, 4, 5, 13 and two of 18: the source is read as it
# was listed, whole, undamaged, in batches sized by tokens


def tokens_file(path, lengths, **kw):
    """``input_ids`` (int32 lists of ``lengths``), plain, uncompressed: a flipped
    byte in a page changes one token and nothing else."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = (np.arange(int(offsets[-1])) % 30_000).astype(np.int32)
    table = pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)})
    pq.write_table(table, path, compression="none", use_dictionary=False, **kw)
    return path


def flip_token_byte(path):
    """Flip a byte among the token values of the first data page (near the end of
    the column chunk, past the page header and the levels)."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    at = chunk.data_page_offset + chunk.total_compressed_size - 10
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


PYARROW_15 = int(pa.__version__.split(".")[0]) >= 15


@pytest.mark.skipif(not PYARROW_15, reason="pyarrow 14 neither writes nor checks page CRCs")
def test_a_page_whose_checksum_fails_fails_pack_and_verify_naming_the_file(tmp_path):
    # the flipped token was packed, and `verify --source` passed.
    src = tmp_path / "src"
    src.mkdir()
    good = tokens_file(src / "a.parquet", [50] * 40, write_page_checksum=True)
    before = pack_parquet(src, tmp_path / "o", 64)
    flip_token_byte(good)
    assert (
        pq.read_table(good)["input_ids"].to_pylist()
        != pq.read_table(tokens_file(tmp_path / "ref.parquet", [50] * 40))["input_ids"].to_pylist()
    )  # the byte flipped a token: unchecked, it reads
    with pytest.raises(ValueError, match=r"cannot read .*a\.parquet: .*may be damaged\)$"):
        pack_parquet(src, tmp_path / "o", 64, overwrite=True)
    assert json.loads((tmp_path / "o" / MANIFEST).read_text()) == before  # DST as it was
    r = bfpack_cli("pack", src, tmp_path / "o2", "--seq-len", 64)
    one_line_error(r, "a.parquet")
    assert not (tmp_path / "o2").exists()
    r = bfpack_cli("verify", tmp_path / "o", "--source", src)
    assert r.returncode != 0 and "a.parquet" in r.stdout + r.stderr, (r.stdout, r.stderr)


def test_a_link_inside_the_source_into_the_destination_is_refused(tmp_path):
    # a link to DST inside SRC read the previous output back as input.
    src = write_shards(tmp_path / "src", [[5, 3, 7]])
    dst = tmp_path / "o"
    before = pack_parquet(src, dst, 8, columns="input_ids")
    held = snapshot(dst)
    os.symlink(dst, src / "linked")
    with pytest.raises(ValueError, match=r"linked/part-00000\.parquet resolves to .*inside the "):
        pack_parquet(src, dst, 8, columns="input_ids", overwrite=True)
    assert snapshot(dst) == held and before["inputs"][0]["path"] == "part-0.parquet"
    os.unlink(src / "linked")
    os.symlink(dst / "part-00000.parquet", src / "z.parquet")  # one file, linked
    r = bfpack_cli("pack", src, dst, "--seq-len", 8, "--column", "input_ids", "--overwrite")
    one_line_error(r, "z.parquet resolves to")
    assert snapshot(dst) == held
    # A link to the destination's parent reaches it too (and the source, which
    # discovery skips as a loop).
    os.unlink(src / "z.parquet")
    os.symlink(tmp_path, src / "up")
    with pytest.raises(ValueError, match=r"up/o/part-00000\.parquet resolves to"):
        pack_parquet(src, tmp_path / "o", 8, columns="input_ids", overwrite=True)
    # and into what bfpack writes beside DST
    os.unlink(src / "up")
    os.symlink(tmp_path / ".o.tmp-1-dead" / "f.parquet", src / "staged.parquet")
    with pytest.raises(ValueError, match=r"staged\.parquet resolves to .*a directory bfpack wri"):
        pack_parquet(src, tmp_path / "o", 8, columns="input_ids", overwrite=True)
    assert snapshot(dst) == held


def rewrite_when(path, new, at_call):
    """A progress callback that, at its ``at_call``-th call, truncates ``path`` to
    half (``new`` None), removes it (``"removed"``) or rewrites it as the table
    ``new`` or of the lengths ``new``."""
    calls = []

    def progress(totals):
        calls.append(totals)
        if len(calls) != at_call:
            return
        if new is None:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif new == "removed":
            path.unlink()
        else:
            pq.write_table(new if isinstance(new, pa.Table) else token_table(new), path)

    return progress


@pytest.mark.parametrize(
    "which, new, at_call",
    [
        ("part-1.parquet", [4] * 80, 1),  # not yet read: fewer rows
        ("part-0.parquet", [4] * 80, 3),  # already read, then rewritten before the commit
        ("part-1.parquet", pa.table({"other": [[1, 2]]}), 1),  # without the column
        ("part-1.parquet", None, 1),  # truncated
        ("part-1.parquet", "removed", 1),
    ],
    ids=["fewer-rows", "after-reading", "without-the-column", "truncated", "removed"],
)
def test_a_source_file_that_changes_during_the_run_fails_it_naming_the_file(
    tmp_path, which, new, at_call
):
    # the manifest kept the old size and rows and pack exited 0; a file
    # replaced by one without the column gave an IndexError, a truncated one
    # ArrowInvalid without its name.
    src = write_shards(tmp_path / "src", [[5] * 100, [6] * 100])
    dst = tmp_path / "o"
    pack_parquet(src, dst, 16)
    held = snapshot(dst)
    progress = rewrite_when(src / which, new, at_call)
    with pytest.raises(ValueError, match=rf"{which} changed during the run \(") as info:
        pack_parquet(src, dst, 16, window_tokens=200, overwrite=True, progress=progress)
    assert "\n" not in str(info.value)
    assert snapshot(dst) == held  # DST keeps what it held
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".o.")]


def test_the_manifest_records_the_inputs_as_they_were_read(tmp_path):
    # a run that ends records each input's size, mtime and footer,
    # the same as the files on disk at the commit.
    src = write_shards(tmp_path / "src", [[5, 3], [9]])
    m = pack_parquet(src, tmp_path / "o", 8)
    for entry in m["inputs"]:
        assert entry == input_record(src / entry["path"], entry["path"], entry["rows"])


def batch_tokens_of(path, batch_tokens):
    from bfpack.parquet._source import ParquetSource

    source = ParquetSource.open(path)
    batches = list(source.batches(source.spec(), batch_tokens=batch_tokens))
    return [int(pa.compute.list_value_length(b.column(0)).to_numpy().sum()) for b in batches]


@pytest.mark.parametrize("row_groups", [1, 3])
def test_batches_are_sized_by_tokens_not_by_the_files_average_row(tmp_path, row_groups):
    # rows per batch came from the file's average tokens per row,
    # so long documents after short ones came a thousand at a time (here 183
    # rows, all 20 long documents: 200,000 tokens for a budget of 20,000).
    lengths = [10] * 2000 + [10_000] * 20
    path = tokens_file(tmp_path / "skew.parquet", lengths, row_group_size=-(-2020 // row_groups))
    sizes = batch_tokens_of(path, 20_000)
    assert sum(sizes) == sum(lengths)
    assert max(sizes) <= 2 * 20_000, sizes
    # and the reverse order: long ones first, then short ones in few batches
    path = tokens_file(tmp_path / "rev.parquet", lengths[::-1])
    sizes = batch_tokens_of(path, 20_000)
    assert max(sizes) <= 2 * 20_000 and len(sizes) < 40, sizes


def test_batching_changes_no_shard_byte(tmp_path, monkeypatch):
    # The windows cut where the documents reach window_tokens, whatever the batches.
    from bfpack.parquet import _source

    src = tmp_path / "src"
    src.mkdir()
    tokens_file(src / "a.parquet", [10] * 600 + [3000] * 10 + [7] * 300, row_group_size=400)
    a = pack_parquet(src, tmp_path / "a", 512, window_tokens=5000, seed=1)
    monkeypatch.setattr(_source, "_MAX_BATCH_ROWS", 3)
    b = pack_parquet(src, tmp_path / "b", 512, window_tokens=5000, seed=1)
    assert a["shards"] == b["shards"]


def test_a_string_list_column_names_the_columns_to_pack(tmp_path):
    # Issue 17, 18: "cast the column first", where naming the token columns is the fix.
    t = token_table([3, 1]).append_column("words", pa.array([["a", "b", "c"], ["d"]]))
    pq.write_table(t, tmp_path / "w.parquet")
    fix = r"columns=\['input_ids', 'labels', 'mask'\] \(--column input_ids --column labels"
    with pytest.raises(TypeError, match=r"column 'words' holds string values.*" + fix):
        pack_parquet(tmp_path / "w.parquet", tmp_path / "o", 8)
    with pytest.raises(TypeError, match=fix):
        bfpack.pack_table(t, 8)
    r = bfpack_cli("stats", tmp_path / "w.parquet", "--seq-len", 8)
    one_line_error(r, "--column input_ids")
    with pytest.raises(TypeError, match=r"cast the column first"):  # named: no other fix
        pack_parquet(tmp_path / "w.parquet", tmp_path / "o", 8, columns=["words"])


@pytest.mark.parametrize("command", ["stats", "pack"])
def test_a_bfpack_output_as_source_is_refused_in_one_line(tmp_path, command):
    # Issue 17, 18: `bfpack stats packed/` said seq_lengths would clash.
    src = write_shards(tmp_path / "src", [[5, 3, 7]])
    pack_parquet(src, tmp_path / "packed", 8)
    for given in (tmp_path / "packed", tmp_path / "packed" / "part-00000.parquet"):
        args = [command, given] + ([tmp_path / "again"] if command == "pack" else [])
        r = bfpack_cli(*args, "--seq-len", 8)
        one_line_error(r, "(it holds .bfpack.json): its rows are packed sequences")
        assert f"packed from ({src})" in r.stderr and "bfpack verify" in r.stderr
    with pytest.raises(ValueError, match="is a bfpack output"):
        bfpack.document_lengths(tmp_path / "packed", column="input_ids")
