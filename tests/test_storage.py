"""Object storage: pack, verify, read back and recover on a local S3 server.

The server is moto's, in this process, on 127.0.0.1 only (tests/s3server.py);
each test works in a bucket of its own. The commit protocol is checked by
what a reader can see: the committed manifest and what it lists.
"""

import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations import need

pytestmark = pytest.mark.integration
need("moto")
need("boto3")
need("flask")

import bfpack.parquet  # noqa: E402
from bfpack.cli import main  # noqa: E402
from bfpack.parquet import (  # noqa: E402
    DestinationBusyError,
    _remote,
    pack_parquet,
    verify,
)
from bfpack.parquet._source import SourceChangedError  # noqa: E402
from bfpack.parquet._staging import DestinationExistsError  # noqa: E402

from s3server import aws_environment, s3_server  # noqa: E402

SEQ_LEN = 64
WINDOW = 3000


@pytest.fixture(scope="module")
def s3():
    with s3_server() as (endpoint, client):
        yield client


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three local Parquet files of documents, and the local run's output."""
    root = tmp_path_factory.mktemp("storage")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        docs = [rng.integers(0, 500, int(rng.integers(1, 3 * SEQ_LEN))).tolist() for _ in range(60)]
        pq.write_table(pa.table({"input_ids": docs}), src / f"part-{k}.parquet")
    pack_parquet(src, root / "local", SEQ_LEN, window_tokens=WINDOW)
    return src, root / "local"


@pytest.fixture
def bucket(s3, corpus):
    """A fresh bucket holding the corpus under ``src/``."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    for f in sorted(os.listdir(corpus[0])):
        s3.upload_file(str(corpus[0] / f), name, f"src/{f}")
    return name


def keys(s3, bucket, prefix=""):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(
        o["Key"] for p in pages for o in p.get("Contents", []) if not o["Key"].endswith("/")
    )


def committed(s3, bucket, dst="dst"):
    """The committed manifest at ``s3://bucket/dst``, or None."""
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{dst}/.bfpack.json")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def shard_bytes(s3, bucket, manifest, dst="dst"):
    return [
        s3.get_object(Bucket=bucket, Key=f"{dst}/{manifest['prefix']}{s['file']}")["Body"].read()
        for s in manifest["shards"]
    ]


def local_bytes(folder):
    m = bfpack.parquet.read_manifest(folder)
    return [(folder / s["file"]).read_bytes() for s in m["shards"]]


def run_cli(argv, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_pack_s3_to_s3_is_the_local_output_and_verifies(s3, bucket, corpus):
    m = pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/dst", SEQ_LEN, window_tokens=WINDOW)
    assert committed(s3, bucket) == m
    assert m["prefix"] == f".bfpack-runs/{m['run_id']}/"
    assert m["source"] == f"s3://{bucket}/src"
    # Byte for byte the local run's shards; the lock is gone; nothing else was written.
    assert shard_bytes(s3, bucket, m) == local_bytes(corpus[1])
    assert keys(s3, bucket, "dst/") == sorted(
        ["dst/.bfpack.json"] + [f"dst/{m['prefix']}{s['file']}" for s in m["shards"]]
    )
    result = verify(f"s3://{bucket}/dst", source=f"s3://{bucket}/src")
    assert result.ok, result.report()
    assert result.shards == len(m["shards"])


def test_local_to_s3_and_back_and_file_uris(s3, bucket, corpus, tmp_path):
    src, local = corpus
    m = pack_parquet(src, f"s3://{bucket}/out", SEQ_LEN, window_tokens=WINDOW)
    assert shard_bytes(s3, bucket, m, "out") == local_bytes(local)
    assert m["source"] == str(src)
    # file:// is the local path, and its code path.
    pack_parquet(f"file://{src}", f"file://{tmp_path}/o", SEQ_LEN, window_tokens=WINDOW)
    assert local_bytes(tmp_path / "o") == local_bytes(local)
    assert verify(f"file://{tmp_path}/o", source=f"file://{src}").ok


def test_cli_pack_verify_stats_on_s3(s3, bucket, monkeypatch):
    status, out, err = run_cli(
        ["pack", f"s3://{bucket}/src", f"s3://{bucket}/dst", "--seq-len", SEQ_LEN, "-q"],
        monkeypatch,
    )
    assert (status, err) == (0, "")
    status, out, _ = run_cli(
        ["verify", f"s3://{bucket}/dst", "--source", f"s3://{bucket}/src"], monkeypatch
    )
    assert status == 0 and f"s3://{bucket}/dst: OK" in out
    status, out, _ = run_cli(
        ["stats", f"s3://{bucket}/src", "--seq-len", SEQ_LEN, "--format", "json"], monkeypatch
    )
    assert status == 0 and json.loads(out)
    # A damaged shard on the store is a mismatch (exit 1).
    m = committed(s3, bucket)
    key = f"dst/{m['prefix']}{m['shards'][0]['file']}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"PAR1 not a shard")
    status, out, _ = run_cli(["verify", f"s3://{bucket}/dst"], monkeypatch)
    assert status == 1 and "MISMATCH" in out


def test_overwrite_on_s3(s3, bucket):
    dst = f"s3://{bucket}/dst"
    first = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW)
    with pytest.raises(DestinationExistsError, match="overwrite=True"):
        pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN)
    second = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW, overwrite=True)
    # The old run's objects went once the new manifest was in place.
    assert committed(s3, bucket) == second
    assert not keys(s3, bucket, f"dst/{first['prefix']}")
    assert shard_bytes(s3, bucket, second) == shard_bytes(s3, bucket, second)
    # An object no manifest lists is never replaced.
    s3.put_object(Bucket=bucket, Key="dst/notes.txt", Body=b"mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, overwrite=True)
    assert committed(s3, bucket) == second
    s3.put_object(Bucket=bucket, Key="other/notes.txt", Body=b"mine")
    with pytest.raises(FileExistsError, match="not a bfpack output"):
        pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/other", SEQ_LEN, overwrite=True)
    with pytest.raises(ValueError, match="overlaps the source"):
        pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/src/out", SEQ_LEN)
    with pytest.raises(ValueError, match="is a bfpack output"):
        pack_parquet(dst, f"s3://{bucket}/again", SEQ_LEN)


def test_a_local_output_copied_to_a_store(s3, bucket, corpus):
    """Copied as it is (``aws s3 sync``): no prefix, shards beside the manifest.
    It verifies, and an overwrite replaces it, its shards removed."""
    for f in os.listdir(corpus[1]):
        s3.upload_file(str(corpus[1] / f), bucket, f"synced/{f}")
    assert verify(f"s3://{bucket}/synced", source=f"s3://{bucket}/src").ok
    m = pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/synced", SEQ_LEN, overwrite=True)
    assert keys(s3, bucket, "synced/") == sorted(
        ["synced/.bfpack.json"] + [f"synced/{m['prefix']}{s['file']}" for s in m["shards"]]
    )


def test_a_fresh_lock_refuses_a_stale_one_is_taken_over(s3, bucket, monkeypatch):
    dst = f"s3://{bucket}/dst"
    lock = {"run": "f" * 32, "host": "elsewhere", "pid": 1, "heartbeat": time.time()}
    s3.put_object(Bucket=bucket, Key="dst/.bfpack.lock", Body=json.dumps(lock).encode())
    # A dead run's shards under its prefix, never committed.
    s3.put_object(Bucket=bucket, Key=f"dst/.bfpack-runs/{'f' * 32}/part-00000.parquet", Body=b"x")
    with pytest.raises(DestinationBusyError, match="another bfpack run"):
        pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN)
    assert committed(s3, bucket) is None
    monkeypatch.setattr(_remote, "STALE_SECONDS", 0.0)
    m = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW)
    assert keys(s3, bucket, "dst/.bfpack-runs/") == [
        f"dst/{m['prefix']}{s['file']}" for s in m["shards"]
    ]
    assert "dst/.bfpack.lock" not in keys(s3, bucket, "dst/")


def test_a_run_lists_the_destination_once_before_it_writes(s3, bucket, monkeypatch):
    """The old output's and dead runs' shards may be many: one listing of
    DST serves both the check of what it holds and the clean-up."""
    dst = f"s3://{bucket}/dst"
    old = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW)
    dead = f"dst/.bfpack-runs/{'d' * 32}/part-00000.parquet"
    s3.put_object(Bucket=bucket, Key=dead, Body=b"x")
    listed = []
    real = _remote.Store.listing

    def listing(self, name=""):
        listed.append(name)
        return real(self, name)

    monkeypatch.setattr(_remote.Store, "listing", listing)
    new = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW, overwrite=True)
    # DST itself once; then the dead run, to remove it, this run's prefix, to
    # check the uploads, and the old run, to remove it after the commit.
    runs = [f".bfpack-runs/{'d' * 32}", new["prefix"].rstrip("/"), old["prefix"].rstrip("/")]
    assert listed == ["", *runs]
    assert keys(s3, bucket, "dst/") == sorted(
        ["dst/.bfpack.json"] + [f"dst/{new['prefix']}{s['file']}" for s in new["shards"]]
    )


def test_the_lock_beats_and_a_run_that_lost_it_commits_nothing(s3, bucket, monkeypatch):
    monkeypatch.setattr(_remote, "HEARTBEAT_SECONDS", 0.05)
    beats = []

    def watch(totals):
        body = s3.get_object(Bucket=bucket, Key="dst/.bfpack.lock")["Body"].read()
        beats.append(json.loads(body)["heartbeat"])
        time.sleep(0.2)

    pack_parquet(
        f"s3://{bucket}/src", f"s3://{bucket}/dst", SEQ_LEN, window_tokens=WINDOW, progress=watch
    )
    assert len(beats) > 1 and beats[-1] > beats[0]

    def steal(totals):
        lock = {"run": "e" * 32, "host": "elsewhere", "pid": 1, "heartbeat": time.time()}
        s3.put_object(Bucket=bucket, Key="dst2/.bfpack.lock", Body=json.dumps(lock).encode())

    with pytest.raises(DestinationBusyError, match="lost its lock"):
        pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/dst2", SEQ_LEN, progress=steal)
    assert keys(s3, bucket, "dst2/") == ["dst2/.bfpack.lock"]  # the other run's, left alone


def test_a_manifest_committed_meanwhile_wins(s3, bucket, corpus):
    """The conditional put: a run whose destination was committed by another
    writer during the run fails, and leaves that writer's output alone."""
    dst = f"s3://{bucket}/dst"
    with pytest.raises(DestinationBusyError, match="committed by another writer"):
        with _remote.RemoteOutput(dst, overwrite=False) as out:
            for f in os.listdir(corpus[1]):
                (open(os.path.join(out.folder, f), "wb")).write((corpus[1] / f).read_bytes())
            s3.put_object(Bucket=bucket, Key="dst/.bfpack.json", Body=b'{"shards": []}')
            out.commit()
    assert committed(s3, bucket) == {"shards": []}
    assert keys(s3, bucket, "dst/") == ["dst/.bfpack.json"]


def test_packed_dataset_reads_an_output_on_s3(s3, bucket, corpus, tmp_path):
    need("torch")
    from bfpack.torch import PackedDataset

    pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/dst", SEQ_LEN, window_tokens=WINDOW)
    remote = PackedDataset(f"s3://{bucket}/dst", cache_dir=tmp_path / "cache")
    local = PackedDataset(corpus[1], cache_dir=tmp_path / "cache2")
    assert len(remote) == len(local)
    for i in (0, len(local) // 2, len(local) - 1):
        assert all(np.array_equal(remote[i][c], local[i][c]) for c in local.columns)
    # The cache lives outside the output: nothing was written to the bucket.
    assert all(k.startswith(("src/", "dst/")) for k in keys(s3, bucket))


# -- bad input: one line, nothing lost --------------------------------------------


def test_a_bucket_that_does_not_exist(s3, bucket, monkeypatch):
    with pytest.raises(FileNotFoundError, match="bucket .* does not exist"):
        pack_parquet("s3://no-such-bucket-x/src", f"s3://{bucket}/dst", SEQ_LEN)
    with pytest.raises(FileNotFoundError, match="bucket .* does not exist"):
        pack_parquet(f"s3://{bucket}/src", "s3://no-such-bucket-x/dst", SEQ_LEN)
    status, _, err = run_cli(
        ["pack", f"s3://{bucket}/src", "s3://no-such-bucket-x/dst", "--seq-len", SEQ_LEN],
        monkeypatch,
    )
    assert status == 2 and err.count("\n") == 1 and "does not exist" in err
    assert keys(s3, bucket, "dst/") == []


def test_writing_to_s3_without_boto3_is_one_line_naming_the_extra(s3, bucket, monkeypatch):
    # it was an ImportError traceback on the command line
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs boto3: pip install 'bfpack\[s3\]'"):
        pack_parquet(f"s3://{bucket}/src", f"s3://{bucket}/dst", SEQ_LEN)
    status, _, err = run_cli(
        ["pack", f"s3://{bucket}/src", f"s3://{bucket}/dst", "--seq-len", SEQ_LEN], monkeypatch
    )
    assert status == 2 and err.count("\n") == 1 and "pip install 'bfpack[s3]'" in err
    assert keys(s3, bucket, "dst/") == []


def test_no_permission(tmp_path, corpus):
    """Access denied, simulated by a file system that refuses (moto checks no IAM
    policy unless every request is signed by a user it knows)."""
    fsspec = need("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class Denied(MemoryFileSystem):
        protocol = "denied"

        def _open(self, path, mode="rb", **kwargs):
            raise PermissionError(13, "Access Denied", path)

        def ls(self, path, detail=True, **kwargs):
            raise PermissionError(13, "Access Denied", path)

        def info(self, path, **kwargs):
            raise PermissionError(13, "Access Denied", path)

    fsspec.register_implementation("denied", Denied, clobber=True)
    with pytest.raises(PermissionError, match="access denied"):
        pack_parquet("denied://corpus/src", tmp_path / "o", SEQ_LEN)
    assert not (tmp_path / "o").exists()


def test_an_object_that_changes_during_the_run(s3, bucket, corpus):
    dst = f"s3://{bucket}/dst"
    old = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW)

    def change(totals):
        if totals["windows"] == 1:
            s3.put_object(Bucket=bucket, Key="src/part-2.parquet", Body=b"rewritten")

    with pytest.raises(SourceChangedError, match=r"s3://.*part-2\.parquet changed during the run"):
        pack_parquet(
            f"s3://{bucket}/src",
            dst,
            SEQ_LEN,
            window_tokens=WINDOW,
            overwrite=True,
            progress=change,
        )
    assert committed(s3, bucket) == old
    assert verify(dst).ok
    assert keys(s3, bucket, "dst/") == sorted(
        ["dst/.bfpack.json"] + [f"dst/{old['prefix']}{s['file']}" for s in old["shards"]]
    )


def test_connection_refused_mid_run(corpus, monkeypatch):
    """The server stops during a run: one line; once it is back, the old
    output is there, whole, and the next run cleans up."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in aws_environment(f"http://127.0.0.1:{port}").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # boto3: fail at once, not after retries
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import boto3

    s3 = boto3.client("s3")
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    for f in sorted(os.listdir(corpus[0])):
        s3.upload_file(str(corpus[0] / f), name, f"src/{f}")
    dst = f"s3://{name}/dst"
    old = pack_parquet(f"s3://{name}/src", dst, SEQ_LEN, window_tokens=WINDOW)
    stopped = []

    def stop(totals):
        if not stopped:
            server.stop()
            stopped.append(True)

    try:
        with pytest.raises(ConnectionError, match=f"s3://{name}/.*cannot be reached"):
            pack_parquet(
                f"s3://{name}/src",
                dst,
                SEQ_LEN,
                window_tokens=WINDOW,
                overwrite=True,
                progress=stop,
            )
    finally:
        # moto's state lives in this process: the same server, started again.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    try:
        assert committed(s3, name) == old and verify(dst).ok
        # The dead run's lock goes stale (here at once); the next run takes it over.
        monkeypatch.setattr(_remote, "STALE_SECONDS", 0.0)
        new = pack_parquet(f"s3://{name}/src", dst, SEQ_LEN, window_tokens=WINDOW, overwrite=True)
        assert keys(s3, name, "dst/") == sorted(
            ["dst/.bfpack.json"] + [f"dst/{new['prefix']}{s['file']}" for s in new["shards"]]
        )
    finally:
        server.stop()


def test_memory_uris(corpus):
    """fsspec's memory file system (no conditional puts): pack, verify, overwrite."""
    fsspec = need("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/t-{uuid.uuid4().hex[:8]}"
    for f in sorted(os.listdir(corpus[0])):
        fs.pipe(f"{root}/src/{f}", (corpus[0] / f).read_bytes())
    m = pack_parquet(f"memory://{root}/src", f"memory://{root}/dst", SEQ_LEN, window_tokens=WINDOW)
    got = [fs.cat(f"{root}/dst/{m['prefix']}{s['file']}") for s in m["shards"]]
    assert got == local_bytes(corpus[1])
    assert verify(f"memory://{root}/dst", source=f"memory://{root}/src").ok
    pack_parquet(f"memory://{root}/src", f"memory://{root}/dst", SEQ_LEN, overwrite=True)
    assert not fs.exists(f"{root}/dst/{m['prefix']}")


@pytest.mark.parametrize("fmt", ["jsonl", "arrow"])
def test_other_input_formats_on_a_store_pack_as_the_local_parquet(corpus, fmt):
    """JSON Lines and Arrow IPC sources read through the store's files."""
    fsspec = need("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/t-{uuid.uuid4().hex[:8]}"
    for f in sorted(os.listdir(corpus[0])):
        table = pq.read_table(corpus[0] / f)
        name = f"{root}/src/{f.replace('.parquet', '.' + fmt)}"
        if fmt == "jsonl":
            lines = "".join(json.dumps(r) + "\n" for r in table.to_pylist())
            fs.pipe(name, lines.encode())
        else:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table, max_chunksize=17)
            fs.pipe(name, sink.getvalue().to_pybytes())
    m = pack_parquet(f"memory://{root}/src", f"memory://{root}/dst", SEQ_LEN, window_tokens=WINDOW)
    got = [fs.cat(f"{root}/dst/{m['prefix']}{s['file']}") for s in m["shards"]]
    assert got == local_bytes(corpus[1])
    assert verify(f"memory://{root}/dst", source=f"memory://{root}/src").ok


def test_an_arrow_output_to_a_store_is_refused_before_any_work(corpus):
    with pytest.raises(ValueError, match="format='arrow'.*object store.*Parquet"):
        pack_parquet(corpus[0], "memory:///nowhere/dst", SEQ_LEN, format="arrow")


# -- Dask --------------------------------------------------------------------------


def test_dask_reads_and_writes_s3(s3, bucket, tmp_path):
    need("distributed")
    import dask
    import distributed

    from bfpack import dask as bdask

    with (
        dask.config.set({"temporary-directory": str(tmp_path / "scratch")}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        local = bdask.pack_parquet(
            f"s3://{bucket}/src", tmp_path / "local", SEQ_LEN, window_tokens=WINDOW, client=client
        )
        m = bdask.pack_parquet(
            f"s3://{bucket}/src", f"s3://{bucket}/dst", SEQ_LEN, window_tokens=WINDOW, client=client
        )
    assert [s["file"] for s in m["shards"]] == [s["file"] for s in local["shards"]]
    assert shard_bytes(s3, bucket, m) == local_bytes(tmp_path / "local")
    assert verify(f"s3://{bucket}/dst", source=f"s3://{bucket}/src").ok


# -- killed runs -------------------------------------------------------------------


@pytest.mark.slow
def test_killed_runs_leave_the_old_output_or_the_new(s3, bucket, corpus, tmp_path, monkeypatch):
    """SIGKILL a `bfpack pack` at random moments: the committed manifest is
    always a whole output (the old one or the new), and the next run cleans up."""
    dst = f"s3://{bucket}/dst"
    pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp_path)}
    # Small windows: many shards, so that a kill lands while they are uploaded.
    argv = [sys.executable, "-m", "bfpack", "pack", f"s3://{bucket}/src", dst]
    argv += ["--seq-len", str(SEQ_LEN), "--window-tokens", "200", "--overwrite", "-q"]
    rng = random.Random(20)
    seen = []
    for _ in range(5):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.5, 7.0))
        proc.kill()
        proc.wait()
        seen.append(
            (proc.returncode, committed(s3, bucket)["run_id"], len(keys(s3, bucket, "dst/")))
        )
        result = verify(dst, source=f"s3://{bucket}/src")
        assert result.ok, result.report()
    # A scratch directory of a run that died on this host (the last one's pid).
    (tmp_path / f"bfpack-scratch-{proc.pid}-x").mkdir(exist_ok=True)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    final = pack_parquet(f"s3://{bucket}/src", dst, SEQ_LEN, window_tokens=WINDOW, overwrite=True)
    assert not os.listdir(tmp_path)  # the killed runs' local scratch, removed
    assert keys(s3, bucket, "dst/") == sorted(
        ["dst/.bfpack.json"] + [f"dst/{final['prefix']}{s['file']}" for s in final["shards"]]
    ), seen
