"""Packing on a Dask cluster (issue 11): the same bytes whatever the number
of workers, every token once, a worker killed mid-run, a damaged file, the
command line, and every bad option."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from integrations import need

pytestmark = pytest.mark.integration
distributed = need("distributed")
cloudpickle = need("cloudpickle")
dask = need("dask")

import bfpack  # noqa: E402
from bfpack import dask as bdask  # noqa: E402
from bfpack.parquet import pack_parquet as single_process  # noqa: E402
from bfpack.parquet.manifest import MANIFEST  # noqa: E402

from outputs import contents  # noqa: E402
from tokens import check_packed, token_table  # noqa: E402

SEQ_LEN = 128
OPTIONS = dict(window_tokens=4_000, seed=5)
# Sent to the workers by value, so the killing task below runs there.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def scratch(tmp_path_factory):
    """Dask's scratch space under pytest's temporary directory."""
    folder = tmp_path_factory.mktemp("dask-scratch")
    with dask.config.set({"temporary-directory": str(folder)}):
        yield folder


@pytest.fixture(scope="module")
def cluster(scratch):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Six files of documents up to 3x SEQ_LEN, and their lengths."""
    root = tmp_path_factory.mktemp("dask-src") / "src"
    root.mkdir()
    rng = np.random.default_rng(7)
    parts = [rng.integers(0, 3 * SEQ_LEN, int(rng.integers(150, 400))) for _ in range(6)]
    first = 0
    for k, lengths in enumerate(parts):
        pq.write_table(token_table(lengths, first_doc=first), root / f"part-{k}.parquet")
        first += len(lengths)
    return root, parts


def packed_rows(dst, manifest):
    return pa.concat_tables(pq.read_table(dst / s["file"]) for s in manifest["shards"])


def test_every_token_once_and_the_stats_of_the_lengths(client, source, tmp_path):
    src, parts = source
    m = bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, client=client, **OPTIONS)
    check_packed(packed_rows(tmp_path / "o", m), np.concatenate(parts), SEQ_LEN, rows="any")
    # The lengths-level model makes the same decisions as the tasks.
    model = bdask.sequences_of_lengths(parts, SEQ_LEN, window_tokens=OPTIONS["window_tokens"])
    assert m["stats"] == model.to_dict()
    assert m["stats"]["sequences"] == sum(s["rows"] for s in m["shards"])
    names = [s["file"] for s in m["shards"]]
    assert names == sorted(names) and names[-1].startswith("part-last-")
    assert {n.split("-")[1] for n in names} == {f"{k:05d}" for k in range(6)} | {"last"}
    assert m["options"]["files_per_task"] == 1
    assert bfpack.verify(tmp_path / "o", source=src).ok
    # Close to one global BFD even with windows this small (at scale, see
    # the asv benchmark DaskQuality): the tasks hand their roomiest sequences on.
    best = bfpack.pack(np.concatenate(parts), SEQ_LEN).stats().sequences
    assert best <= m["stats"]["sequences"] <= best * 1.02


def test_same_bytes_for_one_two_and_four_workers(client, source, tmp_path):
    src, _ = source
    runs = {}
    for workers in (1, 2, 4):
        with (
            distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=":0"
            ) as c,
            distributed.Client(c) as cl,
        ):
            bdask.pack_parquet(src, tmp_path / f"w{workers}", SEQ_LEN, client=cl, **OPTIONS)
        runs[workers] = contents(tmp_path / f"w{workers}")
    bdask.pack_parquet(src, tmp_path / "p2", SEQ_LEN, client=client, **OPTIONS)
    assert runs[1] == runs[2] == runs[4] == contents(tmp_path / "p2")


@pytest.mark.parametrize("files_per_task", [2, 4, 100])
def test_files_per_task(client, source, tmp_path, files_per_task):
    src, parts = source
    m = bdask.pack_parquet(
        src, tmp_path / "o", SEQ_LEN, client=client, files_per_task=files_per_task, **OPTIONS
    )
    tasks = {s["file"].split("-")[1] for s in m["shards"]} - {"last"}
    assert len(tasks) <= -(-6 // files_per_task)
    groups = [np.concatenate(parts[i : i + files_per_task]) for i in range(0, 6, files_per_task)]
    model = bdask.sequences_of_lengths(groups, SEQ_LEN, window_tokens=OPTIONS["window_tokens"])
    assert m["stats"] == model.to_dict()
    check_packed(packed_rows(tmp_path / "o", m), np.concatenate(parts), SEQ_LEN, rows="any")


def test_rows_per_shard_and_options_pass_through(client, source, tmp_path):
    src, parts = source
    m = bdask.pack_parquet(
        src,
        tmp_path / "o",
        SEQ_LEN,
        client=client,
        columns="input_ids",
        pad_value=-1,
        position_ids=True,
        rows_per_shard=10,
        **OPTIONS,
    )
    table = packed_rows(tmp_path / "o", m)
    assert table.column_names == ["input_ids", "seq_lengths", "position_ids"]
    assert {len(x) for x in table.column("input_ids").to_pylist()} == {SEQ_LEN}
    assert all(s["rows"] <= 10 for s in m["shards"])
    check_packed(
        table,
        np.concatenate(parts),
        SEQ_LEN,
        columns=("input_ids",),
        pad=-1,
        position_ids=True,
        rows="any",
    )


_real_pack_group = bdask._pack_group


def _pack_group_then_die_once(group, folder, task, o, spec):
    """The task, whose first run of task 2 kills its worker after writing its shards."""
    result = _real_pack_group(group, folder, task, o, spec)
    marker = os.path.join(os.path.dirname(folder), "killed-once")
    if task == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        # A half-written shard, as a worker killed while writing leaves one.
        open(os.path.join(folder, ".part-00002-00000.parquet.tmp-dead"), "wb").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return result


def test_a_killed_worker_is_replaced_and_the_output_complete(client, source, tmp_path, monkeypatch):
    src, _ = source
    ref = single_dir = tmp_path / "ref"
    bdask.pack_parquet(src, ref, SEQ_LEN, client=client, **OPTIONS)
    monkeypatch.setattr(bdask, "_pack_group", _pack_group_then_die_once)
    bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, client=client, **OPTIONS)
    assert os.path.exists(tmp_path / "killed-once")  # the worker did die
    assert contents(tmp_path / "o") == contents(single_dir)
    assert bfpack.verify(tmp_path / "o", source=src).ok


def damaged_copy(src, tmp_path):
    """``src`` with file 3's second row group scrambled (its footer intact)."""
    out = tmp_path / "damaged-src"
    out.mkdir()
    for name in sorted(os.listdir(src)):
        table = pq.read_table(src / name)
        pq.write_table(table, out / name, row_group_size=50)
    path = out / "part-3.parquet"
    data = bytearray(path.read_bytes())
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
    for i in range(
        chunk.data_page_offset + 8, chunk.data_page_offset + chunk.total_compressed_size - 8, 5
    ):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return out


def test_a_damaged_file_fails_the_run_cleanly(client, source, tmp_path):
    src, _ = source
    bad = damaged_copy(src, tmp_path)
    with pytest.raises(ValueError, match=r"^cannot read .*part-3\.parquet: .*may be damaged\)$"):
        bdask.pack_parquet(bad, tmp_path / "o", SEQ_LEN, client=client, **OPTIONS)
    assert not (tmp_path / "o").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".o.")] in ([], [".o.lock"])
    # An earlier output is kept as it was.
    bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, client=client, **OPTIONS)
    before = contents(tmp_path / "o")
    with pytest.raises(ValueError, match="part-3.parquet"):
        bdask.pack_parquet(bad, tmp_path / "o", SEQ_LEN, client=client, overwrite=True)
    assert contents(tmp_path / "o") == before


def test_the_default_client_is_the_current_one(client, source, tmp_path):
    src, _ = source
    m = bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, **OPTIONS)
    assert m["stats"]["documents"] == sum(
        pq.read_metadata(src / f).num_rows for f in os.listdir(src)
    )


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        (dict(client="tcp://x"), TypeError, "client must be a distributed.Client"),
        (dict(files_per_task=0), ValueError, "files_per_task"),
        (dict(files_per_task=1.5), TypeError, "files_per_task"),
        (dict(window_tokens=0), ValueError, "window_tokens"),
        (dict(method="best"), ValueError, "method"),
        (dict(rows_per_shard=0), ValueError, "rows_per_shard"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(overwrite="yes"), TypeError, "overwrite"),
    ],
)
def test_bad_options(client, source, tmp_path, kwargs, error, text):
    src, _ = source
    kwargs = {"client": client, **kwargs}
    with pytest.raises(error, match=text):
        bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, **kwargs)
    assert not (tmp_path / "o").exists()


def test_no_client_at_all(source, tmp_path):
    src, _ = source
    code = (
        "import sys; from bfpack.dask import pack_parquet\n"
        "try:\n    pack_parquet(sys.argv[1], sys.argv[2], 64)\n"
        "except ValueError as e:\n    print(e)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path / "o")], capture_output=True, text=True
    )
    assert r.stdout.startswith("no Dask client: pass client="), r.stderr
    assert not (tmp_path / "o").exists()


def test_dst_inside_src_is_refused(client, source, tmp_path):
    src, _ = source
    with pytest.raises(ValueError, match="inside the source"):
        bdask.pack_parquet(src, src / "out", SEQ_LEN, client=client)


@pytest.fixture
def cli(scratch):
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(scratch)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "bfpack", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
        )

    return run


def test_cli_workers_and_scheduler(cluster, cli, source, tmp_path):
    src, _ = source
    args = ("--seq-len", SEQ_LEN, "--window-tokens", OPTIONS["window_tokens"], "--seed", 5)
    r = cli("pack", src, tmp_path / "w", *args, "--workers", 2)
    assert r.returncode == 0, r.stderr
    r = cli("pack", src, tmp_path / "s", *args, "--scheduler", cluster.scheduler_address)
    assert r.returncode == 0, r.stderr
    assert contents(tmp_path / "w") == contents(tmp_path / "s")
    assert cli("verify", tmp_path / "w", "--source", src).returncode == 0
    single_process(src, tmp_path / "one", SEQ_LEN, **OPTIONS)
    one = json.loads((tmp_path / "one" / MANIFEST).read_text())["stats"]
    dask_stats = json.loads((tmp_path / "w" / MANIFEST).read_text())["stats"]
    assert dask_stats["documents"] == one["documents"] and dask_stats["tokens"] == one["tokens"]


@pytest.mark.parametrize(
    "extra, text",
    [
        (("--workers", 2, "--scheduler", "tcp://127.0.0.1:1"), "not allowed with"),
        (("--workers", 0), "--workers must be at least 1"),
    ],
)
def test_cli_bad_cluster_options(cli, source, tmp_path, extra, text):
    src, _ = source
    r = cli("pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, *extra)
    assert r.returncode == 2 and text in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()
