"""Writing an output directory that readers see whole or not at all.

One run's output goes through :class:`StagedOutput`:

1. :func:`check_paths` refuses a destination equal to, inside or containing
   the source (symbolic links resolved): the run would read its own output,
   or an overwrite would delete the input.
2. The lock ``.<name>.lock`` beside the destination is taken
   (``fcntl.flock``, never waiting) and held until the end, so a second run
   to the same destination fails at once instead of racing the first. The
   lock file is the run's journal: a small JSON object (``pid``, ``run``
   id, the names of its ``staged`` and set-``aside`` directories), written
   in place and flushed before each of those directories is made.
3. Holding it, what a dead run left is cleared up, from the journal it
   left in the lock file, and only what bfpack marked: the staged
   directory carries the marker file ``.bfpack.marker`` (pid, run id)
   until the swap, and just before the swap the journal records the
   device and inode of both directories of the swap (the old output is
   never written to, so the destination holds exactly the old output or
   the new one, even after SIGKILL). A directory is removed or put back
   only if the dead run's journal names it and it carries that run's
   marker or is the directory the journal recorded. A set-aside old
   output is put back when the destination is missing (a swap cut short
   between its two renames). A user's ``.out.tmp-mine`` or
   ``.out.old-backup`` is never touched.
4. The destination is checked (:func:`check_destination`), before any
   work: absent, or, with ``overwrite``, empty or an earlier bfpack output
   holding nothing its manifest does not list, on its parent's file
   system, and replaceable by this user.
5. The output is written into ``.<name>.tmp-<pid>-<random>`` beside the
   destination, created like ``mkdir`` (the umask applies), and
   :meth:`StagedOutput.commit` swaps it in: it fsyncs the staged directory
   (writers fsync their files), exchanges it with the old output in one
   ``renameat2(RENAME_EXCHANGE)`` on Linux, so the destination always holds
   the old output or the new one, fsyncs the parent and removes the old
   output. Where renameat2 is missing, the old output is renamed aside
   first; if the process dies between the two renames, step 3 of the next
   run restores it. SIGINT and SIGTERM are held back from the swap to the
   old output's removal, so an interrupt lands before it (nothing changed)
   or after it (the new output complete, nothing left beside it).
6. On any exception before the commit, the staged directory is removed
   (signals held back too).

Names beside a destination whose own name is too long to take a suffix
(more than the file system's limit less 32 bytes) are made of its first
bytes and a hash of the whole name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from .._interrupt import held
from .manifest import MANIFEST, manifest_path, new_run_id, own_files, read_manifest

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

#: The marker file of a directory bfpack staged: ``{"pid", "run"}``.
MARKER = ".bfpack.marker"
#: Names inside an output that are bfpack's own, though no manifest lists
#: them: the manifest and the marker.
OWN_NAMES = frozenset({MANIFEST, MARKER})
#: Foreign names an error lists before "and N more".
_SHOWN = 5
#: Bytes the longest suffix of a name beside the destination takes
#: (".", ".tmp-", a pid, "-", 8 hex digits), rounded up.
_SUFFIX = 32
#: Journals of dead runs kept, each inside the next, until recovery is done.
_DEPTH = 8

_log = logging.getLogger(__name__)


class DestinationBusyError(OSError):
    """Another process holds the destination's lock."""


class DestinationExistsError(FileExistsError):
    """The destination exists and ``overwrite`` was not given.

    ``str()`` names the Python argument (``overwrite=True``);
    :attr:`cli_message` names the command line's option (``--overwrite``).
    """

    def __init__(self, dst: str) -> None:
        text = (
            "{dst} already exists; choose another destination, or pass {option} to replace "
            "an earlier bfpack output"
        )
        super().__init__(text.format(dst=dst, option="overwrite=True"))
        self.cli_message = text.format(dst=dst, option="--overwrite")


def as_path(value: Any, name: str) -> str:
    """``value`` (str, bytes or os.PathLike) as a str path; TypeError or
    ValueError (empty) otherwise. Bytes are decoded as ``os.fsdecode`` does,
    so a name that is not UTF-8 is kept byte for byte."""
    try:
        path = os.fsdecode(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a path (str, bytes or os.PathLike), got {type(value).__name__}"
        ) from None
    if not path:
        raise ValueError(f"{name} is an empty path; give a file or directory name")
    return path


def check_paths(src: str, dst: str) -> None:
    """ValueError when ``dst`` is ``src``, inside it, or contains it.

    Both are resolved first (symbolic links, ``..``), so another spelling
    of the same directory is caught too.
    """
    s, d = os.path.realpath(src), os.path.realpath(dst)
    if s == d:
        why = "is the source"
    elif os.path.commonpath([s, d]) == s:
        why = f"is inside the source {src}"
    elif os.path.commonpath([s, d]) == d:
        why = f"contains the source {src}"
    else:
        return
    raise ValueError(
        f"the destination {dst} {why}: the output would be read back as input, "
        f"or replacing it would delete the input; choose a destination outside the source"
    )


def is_bfpack_output(path: str) -> bool:
    """Whether ``path`` is a directory holding a bfpack manifest."""
    return manifest_path(path) is not None


def check_destination(dst: str, overwrite: bool) -> None:
    """Raise unless ``dst`` may be written; call it before any work.

    ``dst`` may be absent; with ``overwrite`` it may also be an empty
    directory, or an earlier bfpack output holding nothing its manifest
    does not list (bfpack's own hidden files, :data:`OWN_NAMES`, aside).
    Anything else is never replaced: FileExistsError (the foreign files
    named), or PermissionError / OSError when the swap could not be done
    (a mount point or another file system than the parent's, another
    user's directory, files that could not be removed).
    """
    parent = os.path.dirname(dst)
    limit = _name_max(parent)
    if len(os.fsencode(os.path.basename(dst))) > limit:
        raise OSError(
            errno.ENAMETOOLONG,
            f"the name of {dst} is longer than the {limit} bytes its file system allows",
        )
    if not os.path.lexists(dst):
        return
    if not overwrite:
        raise DestinationExistsError(dst)
    if os.path.islink(dst) or not os.path.isdir(dst):
        raise FileExistsError(
            f"{dst} exists and is not a directory; overwrite replaces only an earlier "
            f"bfpack output or an empty directory: remove it yourself if it should go"
        )
    _check_replaceable(dst)
    names = sorted(os.listdir(dst))
    others = [n for n in names if n not in OWN_NAMES]
    if not is_bfpack_output(dst):
        if others:
            raise FileExistsError(
                f"{dst} exists and is not a bfpack output (it holds no {MANIFEST}) nor "
                f"empty; overwrite replaces only those: remove it yourself or choose another "
                f"destination"
            )
        return
    foreign = _foreign(dst, others)
    if foreign:
        shown = ", ".join(foreign[:_SHOWN])
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise FileExistsError(
            f"{dst} holds files its manifest does not list: {shown}{more}; overwrite "
            f"replaces only a bfpack output with nothing else in it: move them out, or "
            f"choose another destination"
        )


def _foreign(dst: str, names: list[str]) -> list[str]:
    """Of ``names`` in the output ``dst``, those its manifest does not list as shards
    nor as files of its format (``state.json`` and ``dataset_info.json`` of an
    Arrow output; directories shown with a trailing ``/``)."""
    if not names:
        return []
    try:
        manifest = read_manifest(dst)
        shards, own = manifest["shards"], own_files(manifest)
    except (OSError, ValueError) as exc:
        raise FileExistsError(
            f"{dst} holds a manifest that cannot be read ({exc}), so its files cannot be "
            f"told from others; overwrite refuses it: remove it yourself or choose another "
            f"destination"
        ) from None
    listed = {s["file"] if isinstance(s, dict) else s for s in shards} | set(own)
    foreign = []
    for name in names:
        path = os.path.join(dst, name)
        if name in listed and stat.S_ISREG(os.lstat(path).st_mode):
            continue
        foreign.append(f"{name}/" if os.path.isdir(path) else name)
    return foreign


def _check_replaceable(dst: str) -> None:
    """OSError unless the swap can replace the existing directory ``dst``
    and then remove the old one, as this user."""
    parent = os.path.dirname(dst)
    st, pst = os.stat(dst), os.stat(parent)
    if os.path.ismount(dst) or st.st_dev != pst.st_dev:
        raise OSError(
            errno.EBUSY,
            f"{dst} is a mount point (or on another file system than {parent}): the output "
            f"is swapped in by renaming a directory beside it, which cannot replace it; "
            f"write to a directory inside it instead, e.g. {os.path.join(dst, 'packed')}",
        )
    euid = os.geteuid()
    if euid != 0 and st.st_uid != euid:
        sticky = (
            " (and the sticky bit of its parent forbids renaming it)"
            if (pst.st_mode & stat.S_ISVTX and pst.st_uid != euid)
            else ""
        )
        raise PermissionError(
            errno.EPERM,
            f"{dst} belongs to another user (uid {st.st_uid}){sticky}: bfpack replaces only "
            f"a directory of yours, whose files it can remove; choose another destination",
        )
    if not os.access(dst, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"{dst} is not writable, so the old output's files could not be removed after "
            f"the swap; make it writable (chmod u+w) or choose another destination",
        )


def _check_parent(dst: str) -> None:
    """PermissionError unless files can be created beside ``dst``."""
    parent = os.path.dirname(dst)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"cannot write beside {dst}: {parent} is not writable, and the output is "
            f"written into a directory there, then renamed; choose another destination",
        )


@functools.lru_cache(maxsize=64)
def _name_max_of(path: str) -> int:
    try:
        return int(os.pathconf(path, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _name_max(parent: str) -> int:
    """The longest file name (bytes) in ``parent``, or its closest existing ancestor."""
    path = parent or "."
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return _name_max_of(path)


def _stem(parent: str, base: str) -> str:
    """``base``, or for a name too long to take a suffix, its first bytes and a hash."""
    raw = os.fsencode(base)
    room = _name_max(parent) - _SUFFIX
    if len(raw) <= room:
        return base
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return os.fsdecode(raw[: room - len(digest) - 1]) + "-" + digest


def _named(exc: OSError, path: str) -> OSError:
    """``exc`` naming ``path`` (ENOSPC and EIO from a write name no file)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, f"{exc.strerror or exc}: writing {path}")


class _Names:
    """The names beside ``dst`` that belong to it: lock, staged and set-aside directories."""

    def __init__(self, dst: str) -> None:
        self.dst = dst
        self.parent, self.base = os.path.split(dst)
        self.stem = _stem(self.parent, self.base)
        self.lock = os.path.join(self.parent, f".{self.stem}.lock")
        # The names bfpack gives its directories, for the warning about the
        # unmarked ones (not its own, or left by an earlier version).
        self._pattern = re.compile(rf"\.{re.escape(self.stem)}\.(?:tmp|old)-\d+-[0-9a-f]{{8}}")

    def new(self, kind: str) -> str:
        """A fresh name; the pid is informative (the journal decides), the
        random part keeps names unique."""
        return f".{self.stem}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"

    def path(self, name: Any) -> str | None:
        """The path of a name read from a journal, if it is one of ours (a
        damaged journal must not name anything else)."""
        if not isinstance(name, str) or os.sep in name or not self._pattern.fullmatch(name):
            return None
        return os.path.join(self.parent, name)

    def unmarked(self) -> list[str]:
        """Directories named like ours that recovery left alone."""
        return [n for n in sorted(os.listdir(self.parent)) if self._pattern.fullmatch(n)]


def _mark(folder: str, run: str) -> None:
    """Write the marker into ``folder``, flushed to disk."""
    path = os.path.join(folder, MARKER)
    try:
        with open(path, "w") as f:
            json.dump({"pid": os.getpid(), "run": run}, f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise _named(exc, path) from None


def _marker(folder: str) -> str | None:
    """The run id in the marker of the directory ``folder``: None if it has
    none, "" if it cannot be read (a write cut short)."""
    path = os.path.join(folder, MARKER)
    if os.path.islink(folder) or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return ""
    run = marker.get("run") if isinstance(marker, dict) else None
    return run if isinstance(run, str) else ""


def _marked(folder: str, run: Any) -> bool:
    """Whether the directory ``folder`` carries the marker of ``run``."""
    return isinstance(run, str) and bool(run) and _marker(folder) == run


def _identity(path: str) -> list[int] | None:
    """``[st_dev, st_ino]`` of the directory ``path`` (not followed), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino] if stat.S_ISDIR(st.st_mode) else None


def _only_a_marker(folder: str) -> bool:
    """Whether ``folder`` is a directory holding nothing but a marker, if that
    (one made by a run killed before it had written its marker whole)."""
    try:
        return not os.path.islink(folder) and set(os.listdir(folder)) <= {MARKER}
    except OSError:
        return False


def _remove(folder: str) -> None:
    """Remove a directory bfpack marked, its marker last: a removal cut
    short (SIGKILL) leaves it marked, for the next run to finish."""
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    for name in names:
        if name != MARKER:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    shutil.rmtree(folder, ignore_errors=True)


def _unmark(folder: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, MARKER))


class DestinationLock:
    """An exclusive ``flock`` on ``.<name>.lock`` beside a destination,
    whose content is the holder's journal.

    The journal is a JSON object: ``pid``, ``run`` (the run id), ``staged``
    and ``aside`` (names of the directories the run made beside the
    destination, or null), and ``previous``, the journal a dead holder
    left, kept until :func:`recover` has cleared what it names. The lock
    file is removed on release. A process that dies holds no lock (the
    kernel drops it), so a lock file left by a killed run is taken over by
    the next, which reads its journal first (:attr:`previous`).
    """

    def __init__(self, dst: str) -> None:
        self.path = _Names(dst).lock
        self.dst = dst
        self.journal: dict[str, Any] = {}
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self, run: str | None = None) -> None:
        """Take the lock now, or raise :class:`DestinationBusyError`."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise _named(exc, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_journal(fd).get("pid")
                os.close(fd)
                raise DestinationBusyError(
                    f"{self.dst} is being written by another bfpack run"
                    f"{f' (pid {owner})' if owner else ''}; wait for it to finish or "
                    f"choose another destination"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # The previous owner may have removed the file between our
            # open and our flock: then we locked a file nobody else sees.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_journal(fd) or None
        self._fd = fd
        self.journal = {}
        try:
            self.write(pid=os.getpid(), run=run, staged=None, aside=None, previous=previous)
        except BaseException:
            self._fd = None
            if previous is None:  # ours alone: a full disk leaves no empty lock file
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(fd)
            raise
        self.previous = previous

    def write(self, **changes: Any) -> None:
        """Update the journal in place, flushed to disk."""
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        self.journal.update(changes)
        data = json.dumps(self.journal).encode()
        try:
            # Written over the old text, then cut: a reader (or a crash)
            # sees the old journal or the new one, perhaps followed by the
            # old one's tail, which _read_journal ignores.
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
            os.fsync(self._fd)
        except OSError as exc:
            raise _named(exc, self.path) from None

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order: see :meth:`acquire`).

        The lock file stays while a directory its journal names is still
        there (its removal failed), so that the next run clears it up.
        """
        if self._fd is None:
            return
        names = _Names(self.dst)
        left = [names.path(self.journal.get(k)) for k in ("staged", "aside")]
        if not any(p is not None and os.path.lexists(p) for p in left):
            with contextlib.suppress(OSError):  # gone, or not ours to remove (a sticky parent)
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _read_journal(fd: int) -> dict[str, Any]:
    """The journal in the lock file ``fd`` ({} if none); a bare pid is bfpack 0.2's."""
    try:
        text = os.pread(fd, 1 << 16, 0).decode()
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        journal, _ = json.JSONDecoder().raw_decode(text.strip())
    except ValueError:
        return {"pid": int(text)} if text.strip().isdigit() else {}
    return journal if isinstance(journal, dict) else {}


def _chain(journal: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    """A journal and the dead runs' journals it keeps, newest first."""
    for _ in range(_DEPTH):
        if not isinstance(journal, Mapping):
            return
        yield journal
        journal = journal.get("previous")


def recover(dst: str, journal: Mapping[str, Any] | None) -> None:
    """Clear up what dead runs left beside ``dst``; call it holding the lock.

    ``journal`` is what the dead holder left in the lock file
    (:attr:`DestinationLock.previous`). Only a directory it names is
    touched, and only if it carries the run's marker, holds nothing but a
    marker (perhaps cut short: made just before the run died), or, for the
    two directories of a swap under way, is the very directory (device and
    inode) the journal recorded: a set-aside old output is put back when
    ``dst`` is missing (a swap cut short between its two renames) and
    removed otherwise; a staged directory is removed.
    """
    names = _Names(dst)
    for entry in _chain(journal):
        run = entry.get("run")
        # The directories of the swap, known by identity (see StagedOutput.commit).
        swapped = [i for i in (entry.get("old"), entry.get("staged_id")) if i is not None]
        aside = names.path(entry.get("aside"))
        if aside is not None and (_marked(aside, run) or _identity(aside) in swapped):
            if not os.path.lexists(dst):
                os.rename(aside, dst)
                _unmark(dst)
                fsync_dir(names.parent)
                _log.info("%s: put back the previous output, set aside by a run that died", dst)
            else:
                _log.debug("removing %s, set aside by a run that died", aside)
                _remove(aside)
        staged = names.path(entry.get("staged"))
        if staged is not None and (
            _marked(staged, run) or _only_a_marker(staged) or _identity(staged) in swapped
        ):
            _log.debug("removing %s, left by a run that died", staged)
            _remove(staged)
    if os.path.isdir(names.parent):
        left = names.unmarked()
        if left:
            _log.warning(
                "left alone beside %s, as bfpack did not mark them (an earlier version's "
                "leftovers, or not bfpack's): %s; remove them yourself if they are not yours",
                dst,
                ", ".join(left),
            )


def fsync_dir(path: str) -> None:
    """Flush a directory's entries (new and renamed names) to stable storage."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2`` (Linux, glibc 2.28+), or None."""
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def rename2(src: str, dst: str, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the system or file system lacks it."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), src, None, dst)


class StagedOutput:
    """A directory staged beside ``dst``, locked, and swapped in when complete.

    Parameters
    ----------
    dst : str
        The destination (an absolute, resolved path).
    overwrite : bool
        Whether an existing ``dst`` may be replaced (see
        :func:`check_destination`).
    run_id : str, optional
        The run's id, written in the journal and the markers (a new one by
        default): :attr:`run_id`.

    Use it as a context manager: on entry the destination is checked, the
    lock is taken, what dead runs left is cleared up and ``dst`` is checked
    again; :attr:`folder` is then the staged directory, holding only the
    marker. Write every file there (fsynced), then call :meth:`commit`. On
    exit the staged directory is removed unless it was committed, and the
    lock is released.
    """

    def __init__(self, dst: str, *, overwrite: bool, run_id: str | None = None) -> None:
        self.dst = dst
        self.overwrite = overwrite
        self.run_id = run_id or new_run_id()
        self.committed = False
        self._names = _Names(dst)
        self._lock = DestinationLock(dst)
        self._folder: str | None = None

    @property
    def folder(self) -> str:
        """The staged directory."""
        if self._folder is None:
            raise RuntimeError("the staged directory exists only inside the with block")
        return self._folder

    def __enter__(self) -> StagedOutput:
        os.makedirs(self._names.parent, exist_ok=True)
        _check_parent(self.dst)
        # Held, so that an interrupt lands before the lock file exists or
        # after its journal is written, and before the staged directory
        # exists or once it is known (and then removed below).
        with held():
            self._lock.acquire(self.run_id)
        try:
            recover(self.dst, self._lock.previous)
            self._lock.write(previous=None)
            check_destination(self.dst, self.overwrite)
            with held():
                self._folder = self._make_dir()
        except BaseException:
            with held(defaults=True):
                if self._folder is not None:
                    _remove(self._folder)
                    self._folder = None
                self._lock.release()
            raise
        return self

    def _make_dir(self) -> str:
        while True:
            name = self._names.new("tmp")
            path = os.path.join(self._names.parent, name)
            self._lock.write(staged=name)  # before it exists: see recover()
            try:
                os.mkdir(path, 0o777)  # the umask applies, as for mkdir(1)
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue
            except OSError as exc:
                raise _named(exc, path) from None
            try:
                _mark(path, self.run_id)
            except BaseException:
                os.rmdir(path)
                raise
            return path

    def commit(self) -> None:
        """Swap the staged directory in as ``dst``, durably, and remove the old output."""
        folder = self.folder
        check_destination(self.dst, self.overwrite)  # nothing appeared meanwhile
        with held(defaults=True):
            # From here the journal knows both directories by identity: the
            # marker leaves the staged directory (the new output must not
            # hold it), and the old output is never written to, so that DST
            # holds exactly the old output or the new one even if the run is
            # killed; recover() clears up after a kill from these identities.
            self._lock.write(staged_id=_identity(folder), old=_identity(self.dst))
            _unmark(folder)
            fsync_dir(folder)
            replaced = self._swap(folder)
            self.committed = True
            fsync_dir(self._names.parent)
            _log.debug("%s: swapped in%s", self.dst, "" if replaced is None else ", replacing it")
            if replaced is not None:
                _remove(replaced)

    def _swap(self, folder: str) -> str | None:
        """Put ``folder`` at ``dst``; return where the old output went, if any."""
        dst = self.dst
        if not os.path.lexists(dst):
            if not rename2(folder, dst, _RENAME_NOREPLACE):
                os.rename(folder, dst)
            return None
        if rename2(folder, dst, _RENAME_EXCHANGE):
            return folder  # which now holds the old output
        name = self._names.new("old")
        self._lock.write(aside=name)
        aside = os.path.join(self._names.parent, name)
        os.rename(dst, aside)
        try:
            os.rename(folder, dst)  # dying before this leaves the old output aside: see recover()
        except BaseException:
            os.rename(aside, dst)
            raise
        return aside

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        folder = self._folder
        with held(defaults=True):
            try:
                if not self.committed and folder is not None:
                    _remove(folder)
            finally:
                self._folder = None
                self._lock.release()
        if (
            isinstance(exc, OSError)
            and exc.errno in (errno.ENOSPC, errno.EDQUOT)
            and exc.filename is None
            and folder is not None
        ):
            # A full disk met by a writer that did not say which file.
            raise _named(exc, f"the output in {folder}") from exc
