"""The life of an output directory (``bfpack.parquet._staging``): path checks, the
lock, recovery after dead runs, the atomic swap, durability, permissions."""

import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bfpack.parquet import _staging
from bfpack.parquet._staging import (
    MARKER,
    DestinationBusyError,
    DestinationExistsError,
    DestinationLock,
    StagedOutput,
    as_path,
    check_destination,
    check_paths,
    recover,
)
from bfpack.parquet.manifest import MANIFEST


def make_output(path, text="old"):
    """A directory that looks like a finished bfpack output."""
    os.makedirs(path)
    (path / MANIFEST).write_text(json.dumps({"shards": [{"file": "part-00000.parquet"}]}))
    (path / "part-00000.parquet").write_text(text)


def die_holding_the_lock(dst, lock):
    """What SIGKILL leaves: the lock file (the journal) stays, the kernel drops the lock."""
    os.close(lock._fd)
    lock._fd = None


def beside(dst):
    """Names beside ``dst`` that belong to it (lock, staged, set aside)."""
    return sorted(n for n in os.listdir(dst.parent) if n.startswith(f".{dst.name}."))


def write(out, text="new"):
    """Fill the staged directory as a finished run would."""
    manifest = json.dumps({"shards": [{"file": "part-00000.parquet"}]})
    for name, content in (("part-00000.parquet", text), (MANIFEST, manifest)):
        with open(os.path.join(out.folder, name), "w") as f:
            f.write(content)


# --------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize(
    "src,dst,why",
    [
        ("data", "data", "is the source"),
        ("data", "data/out", "is inside the source"),
        ("data/sub/x.parquet", "data", "contains the source"),
        ("data", ".", "contains the source"),
        ("data", "data/../data/./", "is the source"),
        ("link", "data/out", "is inside the source"),  # link -> data
        ("data", "link/out", "is inside the source"),
    ],
)
def test_destination_overlapping_the_source_is_refused(tmp_path, monkeypatch, src, dst, why):
    monkeypatch.chdir(tmp_path)
    os.makedirs("data/sub")
    os.symlink(tmp_path / "data", "link")
    with pytest.raises(ValueError, match=why):
        check_paths(src, dst)


@pytest.mark.parametrize("src,dst", [("data", "data2"), ("data2", "data"), ("a/data", "b/data")])
def test_destination_beside_the_source_is_fine(tmp_path, monkeypatch, src, dst):
    monkeypatch.chdir(tmp_path)
    check_paths(src, dst)  # a common prefix of names is not containment


def test_what_overwrite_replaces(tmp_path):
    check_destination(str(tmp_path / "absent"), overwrite=False)
    (tmp_path / "empty").mkdir()
    check_destination(str(tmp_path / "empty"), overwrite=True)
    make_output(tmp_path / "out")
    check_destination(str(tmp_path / "out"), overwrite=True)
    other = tmp_path / "other"  # a manifest by another name is no manifest
    other.mkdir()
    (other / "_bfpack.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not a bfpack output"):
        check_destination(str(other), overwrite=True)
    with pytest.raises(FileExistsError, match="already exists"):
        check_destination(str(tmp_path / "out"), overwrite=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=r"not a bfpack output \(it holds no \.bfpack\.json"):
        check_destination(str(tmp_path / "mine"), overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is not a directory"):
        check_destination(str(tmp_path / "file"), overwrite=True)


# --------------------------------------------------------------------------
# The lock


def test_lock_is_exclusive_and_names_its_owner(tmp_path):
    dst = str(tmp_path / "out")
    first = DestinationLock(dst)
    first.acquire()
    with open(first.path) as f:
        assert json.load(f)["pid"] == os.getpid()
    # Another process cannot take it, and hears who holds it.
    code = textwrap.dedent(
        f"""
        from bfpack.parquet._staging import DestinationLock, DestinationBusyError
        try:
            DestinationLock({dst!r}).acquire()
        except DestinationBusyError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"{dst} is being written by another bfpack run (pid {os.getpid()})" in out.stdout
    # Nor can this process through a second open file.
    with pytest.raises(DestinationBusyError, match="wait for it to finish"):
        DestinationLock(dst).acquire()
    first.release()
    assert not os.path.exists(first.path)
    second = DestinationLock(dst)
    second.acquire()
    second.release()
    second.release()  # idempotent


def test_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    dst = str(tmp_path / "out")
    code = (
        f"from bfpack.parquet._staging import DestinationLock; DestinationLock({dst!r}).acquire()\n"
    )
    code += "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -signal.SIGKILL
    lock = DestinationLock(dst)
    assert os.path.exists(lock.path)  # the dead run's file, unlocked by the kernel
    lock.acquire()
    lock.release()
    assert not os.path.exists(lock.path)


def test_lock_file_replaced_between_open_and_flock(tmp_path, monkeypatch):
    # The previous owner unlinks the file after we opened it: we must not
    # keep a lock on a file nobody else sees.
    dst = str(tmp_path / "out")
    lock = DestinationLock(dst)
    real_flock = _staging.fcntl.flock
    calls = []

    def flock(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(lock.path)
        return real_flock(fd, op)

    monkeypatch.setattr(_staging.fcntl, "flock", flock)
    lock.acquire()
    assert len(calls) == 2
    assert os.path.samestat(os.fstat(lock._fd), os.stat(lock.path))
    lock.release()


def test_staged_output_holds_the_lock(tmp_path):
    dst = tmp_path / "out"
    with StagedOutput(str(dst), overwrite=False):
        with pytest.raises(DestinationBusyError):
            with StagedOutput(str(dst), overwrite=False):
                pass  # pragma: no cover
    assert beside(dst) == []


# --------------------------------------------------------------------------
# Swap, recovery, durability


@pytest.mark.parametrize("exchange", [True, False])
@pytest.mark.parametrize("earlier", [True, False])
def test_commit_replaces_an_earlier_output(tmp_path, monkeypatch, exchange, earlier):
    if not exchange:
        monkeypatch.setattr(_staging, "_renameat2", lambda: None)
    dst = tmp_path / "out"
    if not earlier:
        with StagedOutput(str(dst), overwrite=False) as out:
            write(out, "old")
            out.commit()
    else:
        make_output(dst)
    with StagedOutput(str(dst), overwrite=True) as out:
        write(out)
        assert os.path.isdir(out.folder) and (dst / "part-00000.parquet").read_text() == "old"
        out.commit()
    assert (dst / "part-00000.parquet").read_text() == "new"
    assert beside(dst) == []


def test_exchange_is_used_where_available(tmp_path, monkeypatch):
    if _staging._renameat2() is None:
        pytest.skip("no renameat2 here")
    calls = []
    real = _staging.rename2

    def spy(src, dst, flags):
        calls.append(flags)
        return real(src, dst, flags)

    monkeypatch.setattr(_staging, "rename2", spy)
    dst = tmp_path / "out"
    make_output(dst)
    with StagedOutput(str(dst), overwrite=True) as out:
        write(out)
        out.commit()
    assert calls == [_staging._RENAME_EXCHANGE]


def test_rename2_reports_errors(tmp_path):
    if _staging._renameat2() is None:
        pytest.skip("no renameat2 here")
    # Flags the kernel does not know: unsupported, not an error.
    assert _staging.rename2(str(tmp_path / "a"), str(tmp_path / "b"), 1 << 20) is False
    with pytest.raises(FileNotFoundError):
        _staging.rename2(str(tmp_path / "a"), str(tmp_path / "b"), 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(FileExistsError):
        _staging.rename2(str(tmp_path / "a"), str(tmp_path / "b"), _staging._RENAME_NOREPLACE)


def test_commit_refuses_what_appeared_meanwhile(tmp_path):
    dst = tmp_path / "out"
    with pytest.raises(FileExistsError):
        with StagedOutput(str(dst), overwrite=False) as out:
            write(out)
            dst.mkdir()  # someone else's directory, created while we packed
            (dst / "theirs").write_text("x")
            out.commit()
    assert os.listdir(dst) == ["theirs"]
    assert beside(dst) == []


def test_swap_cut_short_is_restored_by_the_next_run(tmp_path, monkeypatch):
    # Without renameat2 the old output is renamed aside, then the new one
    # in; a process dying between the two renames leaves no destination.
    monkeypatch.setattr(_staging, "_renameat2", lambda: None)
    dst = tmp_path / "out"
    make_output(dst)
    real_rename = os.rename

    def die_on_second(src, target):
        real_rename(src, target)
        if ".old-" in target:
            raise SystemExit("killed")  # stands for SIGKILL: no cleanup below runs

    monkeypatch.setattr(_staging.os, "rename", die_on_second)
    out = StagedOutput(str(dst), overwrite=True).__enter__()
    write(out)
    with pytest.raises(SystemExit):
        out.commit()
    monkeypatch.setattr(_staging.os, "rename", real_rename)
    die_holding_the_lock(dst, out._lock)
    assert not dst.exists()
    assert [n.split("-")[0] for n in beside(dst)] == [".out.lock", ".out.old", ".out.tmp"]
    # The next run (to any end) puts the old output back and clears the rest.
    with pytest.raises(FileExistsError):
        with StagedOutput(str(dst), overwrite=False):
            pass  # pragma: no cover
    assert (dst / "part-00000.parquet").read_text() == "old"
    assert beside(dst) == []


def test_recover_leaves_unmarked_directories_alone(tmp_path, caplog):
    # A user's .out.tmp-mine/ and .out.old-backup are never removed, and a
    # user's .out.old-2023 is never moved into place as a missing DST: only
    # what a dead run's journal names and its marker confirms is touched.
    # Directories named as bfpack names its own, but unmarked, are left
    # too, with a warning.
    dst = tmp_path / "out"
    for name in (".out.old-2023", ".out.old-backup"):
        make_output(tmp_path / name, "users")
    for name in (".out.tmp-mine", ".out.tmp-4242-abcd1234", ".out.tmp-1.tmp-5-ab12"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("mine")
    before = sorted(os.listdir(tmp_path))
    with caplog.at_level(logging.WARNING, logger="bfpack"):
        with StagedOutput(str(dst), overwrite=False) as out:
            write(out)
            out.commit()
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "out"])
    assert (dst / "part-00000.parquet").read_text() == "new"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert ".out.tmp-4242-abcd1234" in warning and "mine" not in warning


def test_recover_never_puts_a_users_directory_in_place(tmp_path):
    # with DST missing, a user's .out.old-2023
    # holding a manifest became DST.
    dst = tmp_path / "out"
    make_output(tmp_path / ".out.old-2023", "users")
    make_output(tmp_path / ".out.old-77-abcdef12", "users")
    recover(str(dst), {"run": "r1", "aside": ".out.old-77-abcdef12", "staged": None})
    assert not dst.exists()
    assert (tmp_path / ".out.old-77-abcdef12" / "part-00000.parquet").read_text() == "users"
    # A journal naming something that is not one of its names touches nothing.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / MARKER).write_text(json.dumps({"run": "r1"}))
    recover(str(dst), {"run": "r1", "aside": "../elsewhere", "staged": "elsewhere"})
    assert (tmp_path / "elsewhere").is_dir() and not dst.exists()


def test_recover_puts_back_only_the_old_output_the_dead_run_recorded(tmp_path):
    dst = tmp_path / "out"
    aside = tmp_path / ".out.old-77-abcdef12"
    make_output(aside)
    other = tmp_path / "other"
    other.mkdir()
    recover(str(dst), {"run": "r1", "aside": aside.name, "old": _staging._identity(str(other))})
    assert not dst.exists()  # the journal recorded another directory
    recover(str(dst), {"run": "r2", "aside": aside.name, "old": _staging._identity(str(aside))})
    assert sorted(os.listdir(dst)) == [MANIFEST, "part-00000.parquet"]
    assert not aside.exists()


KILLED_MIDRUN = textwrap.dedent(
    """
    import os, signal, sys
    from bfpack.parquet._staging import StagedOutput
    out = StagedOutput(sys.argv[1], overwrite=True).__enter__()
    open(os.path.join(out.folder, "part-00000.parquet"), "w").write("partial")
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_what_a_killed_run_staged_is_removed_by_the_next_run(tmp_path):
    dst = tmp_path / "out"
    make_output(dst)
    p = subprocess.run([sys.executable, "-c", KILLED_MIDRUN, str(dst)])
    assert p.returncode == -signal.SIGKILL
    (staged,) = [n for n in beside(dst) if ".tmp-" in n]
    assert staged.startswith(".out.tmp-") and os.path.isfile(tmp_path / staged / MARKER)
    with StagedOutput(str(dst), overwrite=True) as out:
        assert beside(dst) == [".out.lock", os.path.basename(out.folder)]
        assert os.path.basename(out.folder).startswith(f".out.tmp-{os.getpid()}-")
        write(out)
        out.commit()
    assert beside(dst) == []
    assert sorted(os.listdir(dst)) == [MANIFEST, "part-00000.parquet"]


def test_failure_before_commit_leaves_nothing(tmp_path):
    dst = tmp_path / "out"
    make_output(dst)
    with pytest.raises(KeyboardInterrupt):
        with StagedOutput(str(dst), overwrite=True) as out:
            write(out)
            raise KeyboardInterrupt
    assert (dst / "part-00000.parquet").read_text() == "old"
    assert beside(dst) == []
    with pytest.raises(RuntimeError, match="only inside the with block"):
        out.folder  # noqa: B018


def test_interrupt_after_the_swap_keeps_the_new_output(tmp_path, monkeypatch):
    # A KeyboardInterrupt after the swap keeps the finished new output.
    dst = tmp_path / "out"
    make_output(dst)

    def interrupted(path, ignore_errors=False):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with StagedOutput(str(dst), overwrite=True) as out:
            write(out)
            monkeypatch.setattr(_staging.shutil, "rmtree", interrupted)
            out.commit()
    monkeypatch.undo()
    assert (dst / "part-00000.parquet").read_text() == "new"
    # The old output, left beside, goes with the next run: the lock file
    # keeps the journal naming it.
    assert [n.split("-")[0] for n in beside(dst)] == [".out.lock", ".out.tmp"]
    with StagedOutput(str(dst), overwrite=True):
        pass
    assert beside(dst) == []
    assert (dst / "part-00000.parquet").read_text() == "new"


def test_signals_are_held_during_the_swap(tmp_path, monkeypatch):
    dst = tmp_path / "out"
    seen = []

    def handler(signum, frame):
        seen.append(("handler", os.path.exists(dst / MANIFEST)))
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    real_swap = StagedOutput._swap

    def swap_then_signal(self, folder):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-swap
        seen.append("swapping")
        return real_swap(self, folder)

    monkeypatch.setattr(StagedOutput, "_swap", swap_then_signal)
    try:
        with pytest.raises(KeyboardInterrupt):
            with StagedOutput(str(dst), overwrite=False) as out:
                write(out)
                out.commit()
    finally:
        signal.signal(signal.SIGTERM, old)
    # The handler ran once the swap was complete, and the output stayed.
    assert seen == ["swapping", ("handler", True)]
    assert (dst / "part-00000.parquet").read_text() == "new"


def test_fsync_everything_before_the_swap(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(_staging, "fsync_dir", lambda p: synced.append(("dir", p)))
    real_swap = StagedOutput._swap

    def swap(self, folder):
        synced.append(("swap", folder))
        return real_swap(self, folder)

    monkeypatch.setattr(StagedOutput, "_swap", swap)
    dst = tmp_path / "out"
    with StagedOutput(str(dst), overwrite=False) as out:
        write(out)
        out.commit()
    folder = out._names.parent
    assert synced[0][0] == "dir" and synced[1][0] == "swap" and synced[0][1] == synced[1][1]
    assert synced[2:] == [("dir", folder)]


def test_fsync_dir_tolerates_file_systems_that_cannot(tmp_path, monkeypatch):
    import errno

    def refuse(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(_staging.os, "fsync", refuse)
    _staging.fsync_dir(str(tmp_path))
    monkeypatch.setattr(
        _staging.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error"))
    )
    with pytest.raises(OSError, match="I/O error"):
        _staging.fsync_dir(str(tmp_path))


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_destination_honours_the_umask(tmp_path, umask):
    # The destination gets the permissions of the umask, not mkdtemp's 0700.
    dst = tmp_path / "out"
    old = os.umask(umask)
    try:
        with StagedOutput(str(dst), overwrite=False) as out:
            write(out)
            out.commit()
    finally:
        os.umask(old)
    assert os.stat(dst).st_mode & 0o777 == 0o777 & ~umask


def test_lock_owner_unknown(tmp_path):
    # A lock file whose content is not a pid (another tool's, or mid-write).
    dst = str(tmp_path / "out")
    path = DestinationLock(dst).path
    with open(path, "w") as f:
        f.write("not a pid")
        f.flush()
        _staging.fcntl.flock(f.fileno(), _staging.fcntl.LOCK_EX)
        with pytest.raises(DestinationBusyError) as info:
            DestinationLock(dst).acquire()
    assert "pid" not in str(info.value) and "another bfpack run;" in str(info.value)


def test_default_sigterm_during_the_swap_kills_after_it(tmp_path):
    # With no handler (the Python API, not the command line), SIGTERM kills
    # the process: held back during the swap, it lands once the new output
    # is in place.
    dst = tmp_path / "out"
    code = textwrap.dedent(
        f"""
        import os, signal
        from bfpack.parquet._staging import StagedOutput
        real = StagedOutput._swap
        def swap(self, folder):
            os.kill(os.getpid(), signal.SIGTERM)
            return real(self, folder)
        StagedOutput._swap = swap
        with StagedOutput({str(dst)!r}, overwrite=False) as out:
            open(os.path.join(out.folder, {MANIFEST!r}), "w").close()
            out.commit()
            print("survived")
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == -signal.SIGTERM and p.stdout == ""
    assert os.listdir(dst) == [MANIFEST]


def test_commit_from_another_thread(tmp_path):
    import threading

    dst = tmp_path / "out"
    errors = []

    def run():
        try:
            with StagedOutput(str(dst), overwrite=False) as out:
                write(out)
                out.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors == [] and (dst / "part-00000.parquet").read_text() == "new"


# --------------------------------------------------------------------------
# Overwrite and neighbours


def test_overwrite_refuses_files_the_manifest_does_not_list(tmp_path):
    # --overwrite deleted everything in a directory
    # holding a manifest, the user's notes and checkpoints included.
    dst = tmp_path / "out"
    make_output(dst)
    (dst / "NOTES.md").write_text("mine")
    (dst / "checkpoints").mkdir()
    (dst / "checkpoints" / "step1000.pt").write_text("weights")
    before = sorted(os.listdir(dst))
    with pytest.raises(FileExistsError, match=r"does not list: NOTES\.md, checkpoints/; "):
        with StagedOutput(str(dst), overwrite=True):
            pass  # pragma: no cover
    assert sorted(os.listdir(dst)) == before and beside(dst) == []
    # A manifest copied into a project: every file is foreign; a few are named.
    project = tmp_path / "project"
    project.mkdir()
    (project / MANIFEST).write_text(json.dumps({"shards": []}))
    for k in range(8):
        (project / f"src{k}.py").write_text("code")
    with pytest.raises(FileExistsError, match=r"src0\.py, .*src4\.py and 3 more; "):
        check_destination(str(project), overwrite=True)
    # A listed name that is a directory, not a shard, is foreign too.
    (dst / "NOTES.md").unlink()
    os.rename(dst / "part-00000.parquet", dst / "x")
    os.rename(dst / "checkpoints", dst / "part-00000.parquet")
    with pytest.raises(FileExistsError, match=r"x, part-00000\.parquet/|part-00000\.parquet/, x"):
        check_destination(str(dst), overwrite=True)
    # A manifest that cannot be read cannot vouch for the files beside it.
    (project / MANIFEST).write_text("{not json")
    with pytest.raises(FileExistsError, match="manifest that cannot be read"):
        check_destination(str(project), overwrite=True)


def test_overwrite_replaces_an_output_with_only_bfpacks_own_hidden_files(tmp_path):
    dst = tmp_path / "out"
    make_output(dst)
    (dst / MARKER).write_text("{}")  # left by a run killed mid-swap
    with StagedOutput(str(dst), overwrite=True) as out:
        write(out)
        out.commit()
    assert sorted(os.listdir(dst)) == [MANIFEST, "part-00000.parquet"]
    assert beside(dst) == []


def test_the_error_names_the_python_argument_or_the_command_line_option(tmp_path, capsys):
    # the message said "pass overwrite=True (--overwrite)".
    from bfpack.cli import main

    dst = tmp_path / "out"
    make_output(dst)
    with pytest.raises(DestinationExistsError) as info:
        check_destination(str(dst), overwrite=False)
    assert "pass overwrite=True to replace" in str(info.value) and "--" not in str(info.value)
    src = tmp_path / "src.parquet"
    src.write_text("not read: the destination is checked first")
    assert main(["pack", str(src), str(dst), "--seq-len", "8"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace" in err and "overwrite=True" not in err


def mounted_tmpfs(path, size="1m"):
    """Mount a tmpfs at ``path`` (root only); skip the test where that is not allowed."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0 or not os.path.exists("/bin/mount"):
        pytest.skip("mounting a file system needs root")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if run.returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    return path


@pytest.fixture
def mounts():
    done = []
    yield lambda path, size="1m": done.append(mounted_tmpfs(path, size)) or path
    for path in reversed(done):
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_overwrite_refuses_a_mount_point_before_any_work(tmp_path, mounts):
    # an empty mount point was accepted; the whole
    # run was written on the parent's file system, then the swap failed (EBUSY).
    dst = mounts(tmp_path / "mnt")
    with pytest.raises(OSError, match=r"is a mount point .* e\.g\. .*mnt/packed") as info:
        with StagedOutput(str(dst), overwrite=True):
            pass  # pragma: no cover
    assert info.value.errno == errno.EBUSY
    assert beside(dst) == [] and os.listdir(dst) == []


def test_overwrite_refuses_another_file_system_than_the_parents(tmp_path, monkeypatch):
    # The same check where no mount is possible: st_dev differs.
    dst = tmp_path / "out"
    dst.mkdir()
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(dst):
            return os.stat_result((*st[:2], st.st_dev + 1, *st[3:]))
        return st

    monkeypatch.setattr(_staging.os, "stat", stat)
    monkeypatch.setattr(_staging.os.path, "ismount", lambda p: False)
    with pytest.raises(OSError, match="is a mount point"):
        check_destination(str(dst), overwrite=True)


@pytest.mark.parametrize("sticky", [True, False])
def test_overwrite_refuses_another_users_directory(tmp_path, monkeypatch, sticky):
    # DST owned by another user failed only at
    # commit (a sticky parent), or, in a world-writable one, was swapped out
    # and its files could not be removed: that user's output hidden forever.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777 if sticky else 0o777)
    dst = shared / "out"
    make_output(dst)
    me = os.geteuid() or 4242  # root passes every check: be someone else
    monkeypatch.setattr(_staging.os, "geteuid", lambda: me)
    if os.stat(dst).st_uid == me:
        if os.geteuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        os.chown(dst, me + 2, -1)
    owner = os.stat(dst).st_uid
    with pytest.raises(PermissionError, match=f"belongs to another user \\(uid {owner}\\)") as info:
        with StagedOutput(str(dst), overwrite=True):
            pass  # pragma: no cover
    assert ("sticky bit" in str(info.value)) == sticky
    assert beside(dst) == [] and (dst / "part-00000.parquet").read_text() == "old"


def test_a_parent_that_is_not_writable_is_refused_before_any_work(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        _staging.os, "access", lambda p, m: False if p == str(parent) else real_access(p, m)
    )
    with pytest.raises(PermissionError, match=f"cannot write beside .*: {parent} is not writable"):
        with StagedOutput(str(parent / "out"), overwrite=False):
            pass  # pragma: no cover
    assert os.listdir(parent) == []


def test_overwrite_refuses_a_directory_whose_files_it_could_not_remove(tmp_path, monkeypatch):
    dst = tmp_path / "out"
    make_output(dst)
    real_access = os.access
    monkeypatch.setattr(
        _staging.os, "access", lambda p, m: False if p == str(dst) else real_access(p, m)
    )
    with pytest.raises(PermissionError, match=r"out is not writable.*chmod u\+w"):
        check_destination(str(dst), overwrite=True)


@pytest.mark.parametrize("length", [234, 250, 255])
def test_a_long_destination_name_is_written(tmp_path, length):
    # a legal name of 234+ characters failed on the
    # names beside it (.NAME.lock, .NAME.tmp-...), too long.
    dst = tmp_path / ("d" * (length - 1) + "x")
    twin = tmp_path / ("d" * (length - 1) + "y")
    with StagedOutput(str(dst), overwrite=False) as out:
        names = os.listdir(tmp_path)
        assert all(len(n) <= 255 for n in names)
        with StagedOutput(str(twin), overwrite=False) as other:  # its own lock and names
            write(other, "twin")
            other.commit()
        write(out)
        out.commit()
    assert (dst / "part-00000.parquet").read_text() == "new"
    assert (twin / "part-00000.parquet").read_text() == "twin"
    assert sorted(os.listdir(tmp_path)) == sorted([dst.name, twin.name])
    # A name the file system cannot hold is refused before any work.
    with pytest.raises(OSError, match="longer than the 255 bytes") as info:
        StagedOutput(str(tmp_path / ("d" * 256)), overwrite=False).__enter__()
    assert info.value.errno == errno.ENAMETOOLONG
    assert sorted(os.listdir(tmp_path)) == sorted([dst.name, twin.name])


def test_a_full_disk_names_the_lock_file_and_leaves_none(tmp_path, monkeypatch):
    # ENOSPC named no file and left an empty lock file.
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_staging.os, "pwrite", full)
    dst = tmp_path / "out"
    with pytest.raises(OSError, match=r"No space left on device: writing .*/\.out\.lock"):
        with StagedOutput(str(dst), overwrite=False):
            pass  # pragma: no cover
    assert os.listdir(tmp_path) == []


def test_a_full_disk_names_the_file_being_written(tmp_path, mounts):
    # The same on a real full file system, from the lock to the shards.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bfpack.parquet import pack_parquet

    src = tmp_path / "src.parquet"
    rows = [list(range(k, k + 1000)) for k in range(2000)]
    pq.write_table(pa.table({"input_ids": rows}), src, compression="none")
    disk = mounts(tmp_path / "disk", "256k")
    with pytest.raises(OSError, match=r"No space left on device: writing .*disk/\.out\.tmp-.*/"):
        pack_parquet(src, disk / "out", 64, seed=1)
    assert os.listdir(disk) == []
    with open(disk / "filler", "wb", buffering=0) as f:  # fill it up
        with contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 4096)
                f.flush()
    with pytest.raises(OSError, match=r"No space left on device: writing .*disk/\.out\.lock"):
        pack_parquet(src, disk / "out", 64)
    assert os.listdir(disk) == ["filler"]


def test_bytes_paths_are_accepted(tmp_path):
    # bytes paths gave a raw TypeError.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bfpack.parquet import pack_parquet

    src = tmp_path / "src.parquet"
    pq.write_table(pa.table({"input_ids": [[1, 2, 3], [4, 5]]}), src)
    manifest = pack_parquet(os.fsencode(src), os.fsencode(tmp_path / "out"), 8)
    assert manifest["source"] == str(src) and (tmp_path / "out" / MANIFEST).is_file()
    assert as_path(b"caf\xe9", "dst") == "caf\udce9"  # not UTF-8: kept
    with pytest.raises(
        TypeError, match=r"dst must be a path \(str, bytes or os.PathLike\), got int"
    ):
        pack_parquet(src, 7, 8)
    with pytest.raises(ValueError, match="src is an empty path"):
        pack_parquet("", tmp_path / "o", 8)


# --------------------------------------------------------------------------
# Signals


def test_the_old_output_is_removed_before_a_held_signal_lands(tmp_path, monkeypatch):
    # a signal just after the manifest was staged
    # landed after the swap but before the old output's removal: exit 130,
    # "the new output is complete", and .out.tmp-* left holding the old shards.
    dst = tmp_path / "out"
    make_output(dst)
    seen = []

    def handler(signum, frame):
        seen.append(beside(dst))
        raise KeyboardInterrupt

    real_swap = StagedOutput._swap

    def swap_then_signal(self, folder):
        os.kill(os.getpid(), signal.SIGINT)
        return real_swap(self, folder)

    monkeypatch.setattr(StagedOutput, "_swap", swap_then_signal)
    old = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with StagedOutput(str(dst), overwrite=True) as out:
                write(out)
                out.commit()
    finally:
        signal.signal(signal.SIGINT, old)
    assert seen == [[".out.lock"]]  # only the lock, released as the exception unwinds
    assert beside(dst) == [] and (dst / "part-00000.parquet").read_text() == "new"


def test_the_staged_directory_is_removed_whole_before_a_held_signal_lands(tmp_path, monkeypatch):
    # An interrupt while the staged directory is being removed (a first
    # interrupt unwinding, then a second signal) cut the removal short.
    dst = tmp_path / "out"
    real_rmtree = _staging.shutil.rmtree

    def rmtree(path, ignore_errors=False):
        os.kill(os.getpid(), signal.SIGTERM)
        real_rmtree(path, ignore_errors=ignore_errors)

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with StagedOutput(str(dst), overwrite=False) as out:
                write(out)
                monkeypatch.setattr(_staging.shutil, "rmtree", rmtree)
                raise ValueError("the run failed")
    finally:
        signal.signal(signal.SIGTERM, old)
    assert beside(dst) == [] and not dst.exists()


def test_a_run_killed_just_after_the_exchange_is_cleared_up_by_the_next(tmp_path, monkeypatch):
    # Killed between the exchange and the old output's removal: DST holds
    # exactly the new output (the old one was never written to, the marker
    # left the staged directory before the swap), the old output sits at the
    # staged name, unmarked; the next run knows it by the inode in the journal.
    if _staging._renameat2() is None:
        pytest.skip("no renameat2 here")
    dst = tmp_path / "out"
    make_output(dst)

    def killed(folder):
        raise SystemExit("killed")  # stands for SIGKILL: no cleanup below runs

    out = StagedOutput(str(dst), overwrite=True).__enter__()
    write(out)
    monkeypatch.setattr(_staging, "_remove", killed)
    with pytest.raises(SystemExit):
        out.commit()
    monkeypatch.undo()
    die_holding_the_lock(dst, out._lock)
    assert sorted(os.listdir(dst)) == [MANIFEST, "part-00000.parquet"]
    (staged,) = [n for n in beside(dst) if ".tmp-" in n]
    assert sorted(os.listdir(tmp_path / staged)) == [MANIFEST, "part-00000.parquet"]
    assert (tmp_path / staged / "part-00000.parquet").read_text() == "old"
    # A user's directory put at that name after the kill is not the one recorded.
    os.rename(tmp_path / staged, tmp_path / "elsewhere")
    (tmp_path / staged).mkdir()
    (tmp_path / staged / "mine.txt").write_text("x")
    with StagedOutput(str(dst), overwrite=True):
        assert (tmp_path / staged / "mine.txt").exists()
    os.rename(tmp_path / staged, tmp_path / "mine")
    os.rename(tmp_path / "elsewhere", tmp_path / staged)
    # The lock file (journal) was released by that run: recorded again, as killed.
    lock = DestinationLock(str(dst))
    lock.acquire("r9")
    lock.write(staged=staged, old=_staging._identity(str(tmp_path / staged)))
    die_holding_the_lock(dst, lock)
    with StagedOutput(str(dst), overwrite=True):
        assert not (tmp_path / staged).exists()
    assert (dst / "part-00000.parquet").read_text() == "new" and beside(dst) == []


@pytest.mark.parametrize("marker", [None, "", '{"pid": 1, "ru'])
def test_a_run_killed_before_its_marker_was_written_whole_leaves_nothing(tmp_path, marker):
    # Killed between making the staged directory and finishing its marker:
    # the journal names a directory that holds nothing but (part of) a marker.
    dst = tmp_path / "out"
    lock = DestinationLock(str(dst))
    lock.acquire("r1")
    lock.write(staged=".out.tmp-77-abcdef12")
    (tmp_path / ".out.tmp-77-abcdef12").mkdir()
    if marker is not None:
        (tmp_path / ".out.tmp-77-abcdef12" / MARKER).write_text(marker)
    die_holding_the_lock(dst, lock)
    with StagedOutput(str(dst), overwrite=False) as out:
        write(out)
        out.commit()
    assert beside(dst) == []
    # A directory holding anything else is left alone.
    lock = DestinationLock(str(dst))
    lock.acquire("r2")
    lock.write(staged=".out.tmp-78-abcdef12")
    (tmp_path / ".out.tmp-78-abcdef12").mkdir()
    (tmp_path / ".out.tmp-78-abcdef12" / "mine.txt").write_text("x")
    die_holding_the_lock(dst, lock)
    with StagedOutput(str(dst), overwrite=True):
        pass
    assert beside(dst) == [".out.tmp-78-abcdef12"]
