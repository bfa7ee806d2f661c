"""Writing an output directory that readers see whole or not at all.

One run's output goes through :class:`StagedOutput`:

1. :func:`check_paths` refuses a destination equal to, inside or containing
   the source (symbolic links resolved): the run would read its own output,
   or an overwrite would delete the input.
2. The lock ``.<name>.lock`` beside the destination is taken
   (``fcntl.flock``, never waiting; the file records the owner's pid) and
   held until the end, so a second run to the same destination fails at
   once instead of racing the first.
3. Holding it, what dead runs left is cleared up: an old output moved
   aside by a swap that was cut short between its two renames is put back,
   and every temporary directory of the destination is removed (only the
   lock holder writes them, so none is in use).
4. The destination is checked: absent, or, with ``overwrite``, an earlier
   bfpack output (a directory holding the manifest) or an empty directory.
5. The output is written into ``.<name>.tmp-<pid>-<random>`` beside the
   destination, created like ``mkdir`` (the umask applies), and
   :meth:`StagedOutput.commit` swaps it in: it fsyncs the staged directory
   (writers fsync their files), exchanges it with the old output in one
   ``renameat2(RENAME_EXCHANGE)`` on Linux, so the destination always holds
   the old output or the new one, and fsyncs the parent. Where renameat2
   is missing, the old output is renamed aside first; if the process dies
   between the two renames, step 3 of the next run restores it.
   SIGINT and SIGTERM are held back during the swap, so an interrupt lands
   before it (nothing changed) or after it (the new output complete).
6. On any exception before the commit, the staged directory is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from types import TracebackType

from .._interrupt import held
from .manifest import LEGACY_MANIFEST, MANIFEST

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

_log = logging.getLogger(__name__)


class DestinationBusyError(OSError):
    """Another process holds the destination's lock."""


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
    return any(os.path.isfile(os.path.join(path, m)) for m in (MANIFEST, LEGACY_MANIFEST))


def check_destination(dst: str, overwrite: bool) -> None:
    """Raise FileExistsError unless ``dst`` may be written.

    ``dst`` may be absent; with ``overwrite`` it may also be an earlier
    bfpack output or an empty directory. Anything else is never replaced.
    """
    if not os.path.lexists(dst):
        return
    if not overwrite:
        raise FileExistsError(
            f"{dst} already exists; choose another destination, or pass "
            f"overwrite=True (--overwrite) to replace an earlier bfpack output"
        )
    if not os.path.isdir(dst):
        raise FileExistsError(
            f"{dst} exists and is not a directory; overwrite replaces only an earlier "
            f"bfpack output or an empty directory: remove it yourself if it should go"
        )
    if not is_bfpack_output(dst) and os.listdir(dst):
        raise FileExistsError(
            f"{dst} exists and is not a bfpack output (it holds no {MANIFEST}) nor empty; "
            f"overwrite replaces only those: remove it yourself or choose another destination"
        )


class _Names:
    """The names beside ``dst`` that belong to it: lock, staged and set-aside directories."""

    def __init__(self, dst: str) -> None:
        self.parent, self.base = os.path.split(dst)
        self.lock = os.path.join(self.parent, f".{self.base}.lock")
        # The pid is informative (the lock decides); the random part keeps
        # names unique. Names of bfpack 0.1 (mkdtemp: 8 random characters,
        # no pid) match too. A destination whose name extends this one's
        # ("out.tmp-1" beside "out") cannot match: its names hold a ".".
        self._pattern = re.compile(rf"\.{re.escape(self.base)}\.(tmp|old)-(?:\d+-)?[a-z0-9_]+")

    def new(self, kind: str) -> str:
        token = secrets.token_hex(4)
        return os.path.join(self.parent, f".{self.base}.{kind}-{os.getpid()}-{token}")

    def leftovers(self) -> list[tuple[str, str]]:
        """``(kind, path)`` of the staged (``tmp``) and set-aside (``old``) directories."""
        found = []
        for name in sorted(os.listdir(self.parent)):
            match = self._pattern.fullmatch(name)
            if match:
                found.append((match.group(1), os.path.join(self.parent, name)))
        return found


class DestinationLock:
    """An exclusive ``flock`` on ``.<name>.lock`` beside a destination.

    The lock file holds the owner's pid; it is removed on release. A
    process that dies holds no lock (the kernel drops it), so a lock file
    left by a killed run is taken over by the next.
    """

    def __init__(self, dst: str) -> None:
        self.path = _Names(dst).lock
        self.dst = dst
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`DestinationBusyError`."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_pid(fd)
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
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order: see :meth:`acquire`)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def recover(dst: str) -> None:
    """Clear up what dead runs left beside ``dst``; call it holding the lock.

    A set-aside old output is moved back when ``dst`` is missing (a swap
    cut short between its two renames) and removed otherwise; staged
    directories are removed.
    """
    for kind, path in _Names(dst).leftovers():
        # bfpack 0.1 set the old output aside as old-*/d.
        old = os.path.join(path, "d") if os.path.isdir(os.path.join(path, "d")) else path
        if kind == "old" and not os.path.lexists(dst) and is_bfpack_output(old):
            os.rename(old, dst)
            fsync_dir(os.path.dirname(dst))
            _log.info("%s: put back the previous output, set aside by a run that died", dst)
        if os.path.lexists(path):
            _log.debug("removing %s, left by a run that died", path)
            shutil.rmtree(path, ignore_errors=True)


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
        Whether an earlier bfpack output or an empty directory at ``dst``
        may be replaced.

    Use it as a context manager: on entry the lock is taken, leftovers of
    dead runs are cleared and ``dst`` is checked; :attr:`folder` is then the
    empty staged directory. Write every file there (fsynced), then call
    :meth:`commit`. On exit the staged directory is removed unless it was
    committed, and the lock is released.
    """

    def __init__(self, dst: str, *, overwrite: bool) -> None:
        self.dst = dst
        self.overwrite = overwrite
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
        self._lock.acquire()
        try:
            recover(self.dst)
            check_destination(self.dst, self.overwrite)
            self._folder = self._make_dir()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _make_dir(self) -> str:
        while True:
            path = self._names.new("tmp")
            try:
                os.mkdir(path, 0o777)  # the umask applies, as for mkdir(1)
                return path
            except FileExistsError:  # pragma: no cover - 32 random bits collided
                continue

    def commit(self) -> None:
        """Swap the staged directory in as ``dst``, durably."""
        folder = self.folder
        fsync_dir(folder)
        check_destination(self.dst, self.overwrite)  # nothing appeared meanwhile
        with held(defaults=True):
            replaced = self._swap(folder)
            self.committed = True
            fsync_dir(self._names.parent)
        _log.debug("%s: swapped in%s", self.dst, "" if replaced is None else ", replacing it")
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)

    def _swap(self, folder: str) -> str | None:
        """Put ``folder`` at ``dst``; return where the old output went, if any."""
        dst = self.dst
        if not os.path.lexists(dst):
            if not rename2(folder, dst, _RENAME_NOREPLACE):
                os.rename(folder, dst)
            return None
        if rename2(folder, dst, _RENAME_EXCHANGE):
            return folder  # which now holds the old output
        aside = self._names.new("old")
        os.rename(dst, aside)
        os.rename(folder, dst)  # dying before this leaves the old output aside: see recover()
        return aside

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self.committed and self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
        finally:
            self._folder = None
            self._lock.release()
