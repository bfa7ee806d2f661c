"""Packing on a Dask cluster: the same bytes whatever the number
of workers, every token once, a worker killed mid-run, a damaged file, the
command line, and every bad option."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import types

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
from bfpack.cli import main as cli_main  # noqa: E402
from bfpack.options import PackOptions  # noqa: E402
from bfpack.parquet import pack_parquet as single_process  # noqa: E402
from bfpack.parquet._source import ParquetSource  # noqa: E402
from bfpack.parquet._staging import DestinationLock  # noqa: E402
from bfpack.parquet.manifest import MANIFEST  # noqa: E402

from outputs import contents  # noqa: E402
from tokens import STRIDE, check_packed, rebuild, token_table  # noqa: E402

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


def test_provenance_round_trip_the_same_on_one_and_two_workers(client, source, tmp_path):
    src, parts = source
    opts = dict(
        OPTIONS, files_per_task=2, provenance=True, carry="doc_id", separator=7, columns="input_ids"
    )
    m = bdask.pack_parquet(src, tmp_path / "two", SEQ_LEN, client=client, **opts)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as c,
        distributed.Client(c) as one,
    ):
        bdask.pack_parquet(src, tmp_path / "one", SEQ_LEN, client=one, **opts)
    assert contents(tmp_path / "one") == contents(tmp_path / "two")
    out = packed_rows(tmp_path / "two", m)
    lengths = np.concatenate(parts)
    want = {d: [d * STRIDE + p for p in range(n)] + [7] for d, n in enumerate(lengths) if n}
    assert rebuild(out) == want  # the token of doc d, position p is d * STRIDE + p
    pairs = zip(out["doc_id"].to_pylist(), out["doc_index"].to_pylist())
    assert all(i == d for r in pairs for i, d in zip(*r))
    assert [i["first_document"] for i in m["inputs"]] == np.cumsum(
        [0, *map(len, parts[:-1])]
    ).tolist()
    assert bfpack.verify(tmp_path / "two", source=src).ok


def test_arrow_format_on_the_cluster(client, source, tmp_path):
    from bfpack.parquet._shards import read_shard

    src, _ = source
    m = {
        fmt: bdask.pack_parquet(src, tmp_path / fmt, SEQ_LEN, client=client, format=fmt, **OPTIONS)
        for fmt in ("parquet", "arrow")
    }
    n = len(m["arrow"]["shards"])
    assert [s["file"] for s in m["arrow"]["shards"]] == [
        f"data-{k:05d}-of-{n:05d}.arrow" for k in range(n)
    ]
    arrow = pa.concat_tables(
        read_shard(str(tmp_path / "arrow" / s["file"]), "arrow") for s in m["arrow"]["shards"]
    )
    assert arrow.equals(packed_rows(tmp_path / "parquet", m["parquet"]))
    assert bfpack.verify(tmp_path / "arrow", source=src).ok


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


def _pack_group_then_die_once(group, folder, lock, task, o, spec, **kwargs):
    """The task, whose first run of task 2 kills its worker after writing its shards."""
    result = _real_pack_group(group, folder, lock, task, o, spec, **kwargs)
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


# A run that fails or is interrupted: its tasks stop, the driver waits for
# them, and nothing is left beside DST; Dask's own failures are one line.


def leftovers(parent, name="o"):
    """What a run to ``parent/name`` left beside it (the lock file aside)."""
    return [n for n in os.listdir(parent) if n.startswith(f".{name}.") and n != f".{name}.lock"]


def _recorded_task(record, wait_for, then="0"):
    """``_pack_group``, recording when each task starts and ends in ``record``;
    every task but the first waits (up to 60 s) for the file ``wait_for``,
    then ``then`` seconds more (still running when a driver that does not
    wait for it has exited)."""

    def task(*args, **kwargs):
        import time

        k = next(a for a in args if isinstance(a, int))  # the task's number
        open(os.path.join(record, f"started-{k}"), "w").close()
        try:
            if k:
                for _ in range(600):
                    if os.path.exists(wait_for):
                        break
                    time.sleep(0.1)
                time.sleep(float(then))
            return _real_pack_group(*args, **kwargs)
        finally:
            open(os.path.join(record, f"ended-{k}"), "w").close()

    return task


def _started_and_ended(record):
    names = os.listdir(record)
    return (
        sorted(n.split("-")[1] for n in names if n.startswith("started-")),
        sorted(n.split("-")[1] for n in names if n.startswith("ended-")),
    )


def test_an_interrupt_stops_and_waits_for_every_task_and_leaves_nothing(
    source, tmp_path, monkeypatch
):
    src, _ = source
    record = tmp_path / "record"
    record.mkdir()
    go = tmp_path / "interrupted"
    monkeypatch.setattr(bdask, "_pack_group", _recorded_task(str(record), str(go)))

    def interrupt(totals):  # Ctrl-C as the first task completes
        go.touch()
        raise KeyboardInterrupt

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as c,
        distributed.Client(c) as cl,
    ):
        with pytest.raises(KeyboardInterrupt):
            bdask.pack_parquet(
                src, tmp_path / "o", SEQ_LEN, client=cl, progress=interrupt, **OPTIONS
            )
        # When the driver returns (the cluster still up), no task runs any
        # more: none can write after.
        started, ended = _started_and_ended(record)
        assert started == ended and len(started) >= 2, (started, ended)
        assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


def test_a_task_stops_once_its_run_is_given_up(source, tmp_path):
    src, _ = source
    o = PackOptions(SEQ_LEN, window_tokens=1_000)
    group = bdask._groups(ParquetSource.open(src), 1)[0]
    spec = group.spec(columns=None, pad_value=None, position_ids=False)
    folder = tmp_path / ".o.tmp-1-ab"
    lock = DestinationLock(str(tmp_path / "o"))

    def run():
        return bdask._pack_group(group, str(folder), lock.path, 0, o, spec, run_id="r")

    # The driver is gone: its lock file is there, but nobody holds it.
    folder.mkdir()
    open(lock.path, "w").close()
    assert run() == f"stopped: the run's lock {lock.path} is no longer held"
    assert os.listdir(folder) == []
    lock.acquire()
    try:
        assert run().shards  # the run goes on: the task writes
        for name in os.listdir(folder):
            os.unlink(folder / name)
        (folder / bdask._STOP).touch()  # the driver asked the tasks to stop
        assert run() == "stopped: the run failed or was interrupted"
        assert os.listdir(folder) == [bdask._STOP]
        (folder / bdask._STOP).unlink()
        folder.rmdir()  # the staged output was removed
        assert run() == f"stopped: the staged output {folder} was removed or cannot be seen"
        assert not folder.exists()
    finally:
        lock.release()


def _pack_group_elsewhere(group, folder, *args, **kwargs):
    """The task, on a worker that does not see the staged directory."""
    return _real_pack_group(group, folder + "-elsewhere", *args, **kwargs)


def test_a_worker_that_cannot_see_the_staged_output_fails_the_run(
    client, source, tmp_path, monkeypatch
):
    src, _ = source
    monkeypatch.setattr(bdask, "_pack_group", _pack_group_elsewhere)
    with pytest.raises(bdask.ClusterError, match=r"^a task stopped: the staged output .* every"):
        bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, client=client, **OPTIONS)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


def _kill_the_worker(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_that_keeps_dying_is_a_cluster_error(source, tmp_path, monkeypatch):
    src, _ = source
    monkeypatch.setattr(bdask, "_pack_group", _kill_the_worker)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as c,
        distributed.Client(c) as cl,
        pytest.raises(bdask.ClusterError, match=r"^the Dask cluster failed the run: KilledWorker"),
    ):
        bdask.pack_parquet(src, tmp_path / "o", SEQ_LEN, client=cl, **OPTIONS)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


#: The command line, with the task replaced: ``kill`` kills its worker;
#: ``record DIR GO`` is :func:`_recorded_task`. Then ``--`` and the arguments.
_CLI_CHILD = """
import os, signal, sys
import cloudpickle
import bfpack.dask
sys.path.insert(0, TESTS)
import test_dask

cloudpickle.register_pickle_by_value(test_dask)
args = sys.argv[1:]
at = args.index("--")
mode, rest, argv = args[0], args[1:at], args[at + 1:]
if mode == "kill":
    bfpack.dask._pack_group = test_dask._kill_the_worker
else:
    bfpack.dask._pack_group = test_dask._recorded_task(*rest)
from bfpack.cli import main
sys.argv[1:] = argv  # as the program: the command line's own signal handling
sys.exit(main())
""".replace("TESTS", repr(os.path.dirname(os.path.abspath(__file__))))


def cli_child(*args, env=None, **popen):
    command = [sys.executable, "-c", _CLI_CHILD, *map(str, args)]
    return subprocess.Popen(command, text=True, env=env, **popen)


def test_cli_a_worker_that_keeps_dying_is_one_line_and_exit_2(scratch, source, tmp_path):
    src, _ = source
    env = {
        **os.environ,
        "DASK_TEMPORARY_DIRECTORY": str(scratch),
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    }
    args = ("pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, "--workers", 1)
    p = cli_child("kill", "--", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2, err
    [line] = [x for x in err.splitlines() if x.startswith("bfpack: ")]
    assert line.startswith("bfpack: error: the Dask cluster failed the run: KilledWorker"), err
    assert "Traceback" not in err, err
    assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


def test_cli_a_cluster_that_fails_to_start_is_one_line_and_exit_2(
    source, tmp_path, monkeypatch, capsys
):
    src, _ = source

    def fail(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", fail)
    args = ["pack", str(src), str(tmp_path / "o"), "--seq-len", str(SEQ_LEN), "--workers", "2"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err == (
        "bfpack: error: the local Dask cluster of 2 worker(s) failed to start: "
        "RuntimeError: Nanny failed to start.\n"
    )
    assert os.listdir(tmp_path) in ([], [".o.lock"])


def _interrupted_cli_run(tmp_path, scratch, src, *options, interrupt, **popen):
    """``bfpack pack SRC tmp_path/o`` in a child whose tasks record when they
    start and end (all but the first waiting for ``tmp_path/go``), given
    ``options``; ``interrupt(p)`` once the first task has ended, then the
    others let go on. Returns the child's exit status, its stderr and the
    record directory."""
    import time

    record = tmp_path / "record"
    record.mkdir()
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(scratch)}
    args = ("pack", src, tmp_path / "o", "--seq-len", SEQ_LEN, "--window-tokens", 4_000)
    p = cli_child(
        "record",
        record,
        tmp_path / "go",  # the tasks wait for it: still running when SIGINT comes
        3,
        "--",
        *args,
        *options,
        env=env,
        stderr=subprocess.PIPE,
        **popen,
    )
    try:
        for _ in range(1200):  # until the first task has ended
            if (record / "ended-0").exists() or p.poll() is not None:
                break
            time.sleep(0.1)
        interrupt(p)
        (tmp_path / "go").touch()
        _, err = p.communicate(timeout=300)
    finally:
        p.kill()
    return p.returncode, err, record


def test_cli_sigint_with_a_scheduler_stops_every_task_before_it_exits(
    cluster, scratch, source, tmp_path
):
    src, _ = source
    returncode, err, record = _interrupted_cli_run(
        tmp_path,
        scratch,
        src,
        "--scheduler",
        cluster.scheduler_address,
        interrupt=lambda p: p.send_signal(signal.SIGINT),
    )
    assert returncode == 130, err
    assert err.splitlines()[-1].startswith("bfpack: interrupted by SIGINT; nothing was written")
    started, ended = _started_and_ended(record)
    assert started == ended and len(started) >= 2, (started, ended)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


def test_cli_ctrl_c_with_workers_stops_every_task_and_leaves_nothing(scratch, source, tmp_path):
    src, _ = source
    # In a session of its own, so that SIGINT reaches the whole process
    # group, workers included, as Ctrl-C in a terminal does.
    returncode, err, record = _interrupted_cli_run(
        tmp_path,
        scratch,
        src,
        "--workers",
        2,
        interrupt=lambda p: os.killpg(p.pid, signal.SIGINT),
        start_new_session=True,
    )
    assert returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.splitlines()[-1].startswith("bfpack: interrupted by SIGINT; nothing was written")
    started, ended = _started_and_ended(record)
    assert started == ended and len(started) >= 2, (started, ended)
    assert leftovers(tmp_path) == [] and not (tmp_path / "o").exists()


def test_the_lock_probe_counts_what_it_cannot_tell_as_held(tmp_path, monkeypatch):
    path = tmp_path / ".o.lock"
    assert not bdask._is_locked(str(path))  # no lock file: no run
    lock = DestinationLock(str(tmp_path / "o"))
    lock.acquire()
    try:
        assert bdask._is_locked(lock.path)
    finally:
        lock.release()
    path.touch()
    assert not bdask._is_locked(str(path))  # a file nobody holds: the run died

    def denied(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bdask.os, "open", denied)
    assert bdask._is_locked(str(path))  # the staged directory decides then


@pytest.mark.parametrize(
    "error, cluster",
    [
        (distributed.KilledWorker("k", types.SimpleNamespace(address="tcp://w"), 0), True),
        (distributed.KilledWorker("k", "no address", 0), True),
        (TimeoutError("no reply"), True),
        (asyncio.CancelledError(), True),
        (ValueError("cannot read f.parquet"), False),
        (pa.ArrowInvalid("bad page"), False),
    ],
)
def test_only_dasks_own_errors_are_cluster_errors(error, cluster):
    raised = pytest.raises(bdask.ClusterError) if cluster else pytest.raises(type(error))
    with raised as info, bdask.cluster_errors("the run"):
        raise error
    if cluster:
        assert str(info.value).startswith(f"the run: {type(error).__name__}")
        assert info.value.__cause__ is error


def test_tasks_that_do_not_end_in_time_are_cancelled_and_said(tmp_path, monkeypatch, caplog):
    cancelled = []

    class Client:
        def as_current(self):
            return contextlib.nullcontext()

        def cancel(self, futures):
            cancelled.extend(futures)
            raise RuntimeError("the client is closed")  # never hides the run's error

    def wait(futures, timeout):
        raise TimeoutError

    monkeypatch.setattr(distributed, "wait", wait)
    bdask._stop_tasks(Client(), ["f1", "f2"], str(tmp_path))
    assert (tmp_path / bdask._STOP).exists() and cancelled == ["f1", "f2"]
    assert "did not all end (TimeoutError)" in caplog.text


def test_a_json_lines_source_packs_as_its_parquet_twin(client, source, tmp_path):
    # The tasks open their files through the same source: JSON Lines give
    # the shards the same documents in Parquet (as int64) give.
    src, _ = source
    twin, jsonl = tmp_path / "twin", tmp_path / "jsonl"
    twin.mkdir()
    jsonl.mkdir()
    for path in sorted(src.iterdir()):
        table = pq.read_table(path)
        table = table.cast(
            pa.schema(
                pa.field(f.name, pa.list_(pa.int64())) if pa.types.is_list(f.type) else f
                for f in table.schema
            )
        )
        pq.write_table(table, twin / path.name)
        lines = "".join(json.dumps(row) + "\n" for row in table.to_pylist())
        (jsonl / path.name.replace(".parquet", ".jsonl")).write_text(lines)
    m = bdask.pack_parquet(jsonl, tmp_path / "j", SEQ_LEN, client=client, **OPTIONS)
    ref = bdask.pack_parquet(twin, tmp_path / "p", SEQ_LEN, client=client, **OPTIONS)
    assert m["shards"] == ref["shards"]
    assert {i["format"] for i in m["inputs"]} == {"jsonl"}
    assert bfpack.verify(tmp_path / "j", source=jsonl).ok
