"""Writing an output to an object store, where rename is not atomic.

Object stores (S3, GCS, the Hugging Face Hub) have no directory swap and
no ``flock``, so :class:`RemoteOutput` commits by the manifest instead of
by a rename. In ``DST`` (a prefix) a run writes:

- ``DST/.bfpack.lock``: the lock object, ``{"run", "host", "pid",
  "heartbeat"}``, created with a conditional put (S3 ``If-None-Match: *``)
  and rewritten every :data:`HEARTBEAT_SECONDS` (``If-Match`` its own
  ETag) while the run lives. A lock whose heartbeat is older than
  :data:`STALE_SECONDS`, or whose process is gone (same host, pid not
  running), is stale: the next run takes it over (``If-Match`` the stale
  lock's ETag, so two runs cannot both take it).
- ``DST/.bfpack-runs/<run id>/part-00000.parquet``, ...: the shards, under
  a prefix of the run. Nothing reads them until a manifest lists them.
- ``DST/.bfpack.json``, last: the manifest, the commit point. Its
  ``prefix`` is ``.bfpack-runs/<run id>/``: readers and ``verify`` read
  the shards it lists under that prefix, and nothing else. It is written
  with a conditional put: ``If-None-Match: *`` when ``DST`` had no
  manifest when the run started, ``If-Match`` the ETag of the manifest
  the run replaces otherwise, so a run whose destination was committed by
  someone else meanwhile fails instead of overwriting it.

Then the old output's objects (the previous manifest's prefix) are
removed, and the lock. A run that dies leaves its lock (stale once its
heartbeat stops) and its run prefix, which no manifest lists; the next
run to ``DST`` removes every run prefix that the manifest does not list,
holding the lock.

Conditional puts are used where the store has them: S3 (through boto3,
which must be installed to write ``s3://``). On other stores the puts are
checked first and then made, which is not atomic: two runs writing the
same destination at once are not safe there (the lock still stops the
second run in all but a narrow race). See docs/explanations/guarantees.md.

Shards are written into a local scratch directory (``TMPDIR``), each
uploaded under the run prefix as soon as it is complete (and its local
copy removed): the output is byte for byte the one a local run writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import pyarrow.fs as pafs

from .._optional import requires
from . import _fs
from ._staging import (
    DestinationBusyError,
    DestinationExistsError,
    StagedOutput,
    as_path,
    check_paths,
)
from .manifest import MANIFEST, new_run_id, run_id_of

#: The lock object inside a destination on a store.
LOCK = ".bfpack.lock"
#: The prefix under which each run writes its shards.
RUNS = ".bfpack-runs"
#: Seconds between two heartbeats of a run's lock.
HEARTBEAT_SECONDS = 30.0
#: Seconds after its last heartbeat when a lock is taken to be a dead run's.
STALE_SECONDS = 300.0
#: Names an error lists before "and N more".
_SHOWN = 5

_log = logging.getLogger(__name__)


class PreconditionFailed(Exception):
    """A conditional put found the object not as expected."""


#: ``expect`` of :meth:`Store.put`: the object must not exist.
ABSENT = "<absent>"


class Store:
    """A prefix of a store, with the few operations the commit protocol needs.

    ``get``/``put``/``delete`` of small objects (the manifest, the lock)
    go through boto3 on S3, for its conditional puts, and through the
    pyarrow file system elsewhere (checked, then put: not atomic).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = _fs.resolve(self.uri)
        self.scheme = self.uri.split("://", 1)[0].lower()
        self._s3: Any = None
        if self.scheme in ("s3", "s3a"):
            # boto3 for the conditional puts that make the commit safe.
            with requires("s3", needed_by=f"writing {self.uri}"):
                import boto3
            self._s3 = boto3.client("s3")
            self._bucket, _, self._key = self.root.partition("/")

    @property
    def atomic(self) -> bool:
        """Whether conditional puts are atomic on this store."""
        return self._s3 is not None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def where(self, name: str) -> str:
        return _fs.join(self.uri, name)

    def _s3_key(self, name: str) -> str:
        return f"{self._key}/{name}" if self._key else name

    def get(self, name: str) -> tuple[bytes, str] | None:
        """``(bytes, etag)`` of the object ``name``, or None if there is none."""
        if self._s3 is not None:
            try:
                r = self._s3.get_object(Bucket=self._bucket, Key=self._s3_key(name))
                return r["Body"].read(), r["ETag"]
            except Exception as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise _fs.storage_error(exc, self.where(name)) from None
        try:
            info = self.fs.get_file_info(self.path(name))
            if info.type != pafs.FileType.File:
                return None
            with self.fs.open_input_stream(self.path(name)) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _fs.storage_error(exc, self.where(name)) from None
        return data, hashlib.sha256(data).hexdigest()

    def put(self, name: str, data: bytes, *, expect: str | None = None) -> str:
        """Write ``data`` as ``name``; return its ETag.

        ``expect`` is :data:`ABSENT` (the object must not exist), an ETag
        (the object must be that one) or None (unconditional); a put whose
        condition fails raises :class:`PreconditionFailed`.
        """
        if self._s3 is not None:
            extra: dict[str, str] = {}
            if expect == ABSENT:
                extra["IfNoneMatch"] = "*"
            elif expect is not None:
                extra["IfMatch"] = expect
            try:
                r = self._s3.put_object(
                    Bucket=self._bucket, Key=self._s3_key(name), Body=data, **extra
                )
            except Exception as exc:
                if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                    raise PreconditionFailed(name) from None
                raise _fs.storage_error(exc, self.where(name)) from None
            return str(r["ETag"])
        if expect is not None:
            now = self.get(name)
            if (now is None) != (expect == ABSENT) or (now is not None and now[1] != expect):
                raise PreconditionFailed(name)
        try:
            with self.fs.open_output_stream(self.path(name)) as f:
                f.write(data)
        except OSError as exc:
            raise _fs.storage_error(exc, self.where(name)) from None
        return hashlib.sha256(data).hexdigest()

    def upload(self, local: str, name: str) -> None:
        """Copy the local file ``local`` to ``name``."""
        _fs.upload(local, self.where(name))

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            try:
                self.fs.delete_file(self.path(name))
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    raise _fs.storage_error(exc, self.where(name)) from None

    def delete_tree(self, name: str) -> None:
        """Remove every object under ``name/``."""
        for rel, _ in self.listing(name):
            self.delete(f"{name}/{rel}")
        with contextlib.suppress(OSError):
            self.fs.delete_dir(self.path(name))

    def listing(self, name: str = "") -> list[tuple[str, int]]:
        """``(relative name, size)`` of the objects under ``name``, in name order.

        FileNotFoundError when the bucket does not exist.
        """
        return _fs.files_under(self.fs, self.path(name), self.where(name))


def _code(exc: BaseException) -> str | None:
    """The error code of a botocore ClientError, if it is one."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


class StoreLock:
    """The lock object ``DST/.bfpack.lock`` of a run, kept fresh by a heartbeat thread."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.etag: str | None = None
        #: The run id of a dead run whose lock this one took over.
        self.taken_over: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _body(self) -> bytes:
        return json.dumps(
            {
                "run": self.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "heartbeat": time.time(),
            }
        ).encode()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DestinationBusyError`."""
        try:
            self.etag = self.store.put(LOCK, self._body(), expect=ABSENT)
        except PreconditionFailed:
            self._take_over()
        self._thread = threading.Thread(target=self._beat, name="bfpack-lock", daemon=True)
        self._thread.start()

    def _take_over(self) -> None:
        now = self.store.get(LOCK)
        if now is None:  # released meanwhile
            self.etag = self.store.put(LOCK, self._body(), expect=ABSENT)
            return
        data, etag = now
        holder = _parse(data)
        if not _is_stale(holder):
            raise DestinationBusyError(
                f"{self.store.uri} is being written by another bfpack run (run "
                f"{holder.get('run')}, pid {holder.get('pid')} on {holder.get('host')}, "
                f"lock {self.store.where(LOCK)}); wait for it to finish or choose another "
                f"destination (a lock left by a dead run goes stale {STALE_SECONDS:.0f} s "
                f"after its last heartbeat)"
            )
        try:
            self.etag = self.store.put(LOCK, self._body(), expect=etag)
        except PreconditionFailed:
            raise DestinationBusyError(
                f"{self.store.uri}: another bfpack run took the stale lock first; wait for "
                f"it to finish or choose another destination"
            ) from None
        run = holder.get("run")
        self.taken_over = run if isinstance(run, str) else None
        _log.info("%s: took over the stale lock of run %s", self.store.uri, run)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._mutex:
                if self.etag is None:
                    return
                try:
                    self.etag = self.store.put(LOCK, self._body(), expect=self.etag)
                except PreconditionFailed:
                    self.lost = True
                    return
                except OSError as exc:  # tried again at the next beat
                    _log.debug("%s: heartbeat failed: %s", self.store.uri, exc)

    def check(self) -> None:
        """Raise unless the lock is still this run's."""
        with self._mutex:
            now = self.store.get(LOCK)
            if self.lost or now is None or now[1] != self.etag:
                self.lost = True
                raise DestinationBusyError(
                    f"{self.store.uri}: this run lost its lock (it stalled for more than "
                    f"{STALE_SECONDS:.0f} s and another run took the lock over); nothing was "
                    f"committed"
                )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._mutex:
            if self.etag is None or self.lost:
                return
            with contextlib.suppress(OSError):
                now = self.store.get(LOCK)
                if now is not None and now[1] == self.etag:
                    self.store.delete(LOCK)
            self.etag = None


def _parse(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _is_stale(holder: Mapping[str, Any]) -> bool:
    """Whether the lock ``holder`` is a dead run's."""
    beat = holder.get("heartbeat")
    if not isinstance(beat, (int, float)) or time.time() - beat > STALE_SECONDS:
        return True
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True  # its process is gone
        except OSError:
            return False
    return False


def run_prefix(run_id: str) -> str:
    """The prefix of a run's shards, relative to the destination."""
    return f"{RUNS}/{run_id}/"


class RemoteOutput:
    """An output on a store: locked, staged under a run prefix, committed by its manifest.

    The same interface as :class:`bfpack.parquet._staging.StagedOutput`:
    use it as a context manager, write the shards and the manifest into
    :attr:`folder` (a local scratch directory), then call :meth:`commit`.

    Parameters
    ----------
    dst : str
        The destination URI.
    overwrite : bool
        Whether an existing output may be replaced.
    run_id : str, optional
        The run's id (a new one by default).
    """

    def __init__(self, dst: str, *, overwrite: bool, run_id: str | None = None) -> None:
        self.dst = dst.rstrip("/")
        self.overwrite = overwrite
        self.run_id = run_id or new_run_id()
        self.prefix = run_prefix(self.run_id)
        self.committed = False
        self._store: Store | None = None
        self._lock: StoreLock | None = None
        self._folder: str | None = None
        self._old: tuple[bytes, str] | None = None
        self._uploader: _Uploader | None = None

    @property
    def lock_uri(self) -> str:
        """The lock object's URI."""
        return _fs.join(self.dst, LOCK)

    @property
    def run_uri(self) -> str:
        """The URI of the run prefix (where Dask tasks upload their shards)."""
        return _fs.join(self.dst, self.prefix.rstrip("/"))

    @property
    def folder(self) -> str:
        """The local scratch directory."""
        if self._folder is None:
            raise RuntimeError("the scratch directory exists only inside the with block")
        return self._folder

    def __enter__(self) -> RemoteOutput:
        store = self._store = Store(self.dst)
        _fs.check_bucket(self.dst)  # fails here, before anything, if there is none
        self._lock = StoreLock(store, self.run_id)
        self._lock.acquire()
        try:
            self._old = store.get(MANIFEST)
            old = _parse(self._old[0]) if self._old is not None else None
            objects = [n for n, _ in store.listing()]  # once: the runs' shards may be many
            self._check_destination(old, objects)
            self._clean_dead_runs(old, objects)
            _remove_dead_scratch()
            self._folder = tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-")
            self._uploader = _Uploader(store, self._folder, self.prefix)
            self._uploader.start()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _check_destination(self, old: Mapping[str, Any] | None, objects: list[str]) -> None:
        """Raise unless ``dst`` may be written (as for a local destination);
        ``objects`` names every object under ``dst``."""
        names = [n for n in objects if n != LOCK and not _in_runs(n)]
        others = [n for n in names if n != MANIFEST]
        if not names:
            return
        if not self.overwrite:
            raise DestinationExistsError(self.dst)
        if old is None:
            raise FileExistsError(
                f"{self.dst} exists and is not a bfpack output (it holds no {MANIFEST}) nor "
                f"empty; overwrite replaces only those: remove it yourself or choose another "
                f"destination"
            )
        listed = set() if old.get("prefix") else set(_shard_names(old))
        foreign = [n for n in others if n not in listed]
        if foreign:
            more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
            raise FileExistsError(
                f"{self.dst} holds objects its manifest does not list: "
                f"{', '.join(foreign[:_SHOWN])}{more}; overwrite replaces only a bfpack "
                f"output: remove them yourself or choose another destination"
            )

    def _clean_dead_runs(self, old: Mapping[str, Any] | None, objects: list[str]) -> None:
        """Remove the run prefixes no manifest lists: runs that died
        (``objects`` names every object under ``dst``).

        Holding the lock, every other run is dead, or frozen for longer than
        :data:`STALE_SECONDS` (its lock was taken over): such a run finds its
        lock gone, or its shards missing, before it would commit.
        """
        assert self._store is not None
        keep = old.get("prefix") if old is not None else None
        runs = sorted({n.split("/", 2)[1] for n in objects if n.startswith(f"{RUNS}/")})
        for run in runs:
            if run_prefix(run) != keep and run != self.run_id:
                _log.info("%s: removing the shards of run %s, which died", self.dst, run)
                self._store.delete_tree(f"{RUNS}/{run}")

    def commit(self) -> None:
        """Upload the shards under the run prefix, then put the manifest (the commit)."""
        assert self._store is not None and self._lock is not None
        store, folder = self._store, self.folder
        self._stop_uploads()
        with open(os.path.join(folder, MANIFEST), "rb") as f:
            manifest_bytes = f.read()
        manifest = _parse(manifest_bytes)
        for name in _shard_names(manifest):
            local = os.path.join(folder, name)
            if os.path.exists(local):  # else uploaded already, or by a Dask task
                store.upload(local, self.prefix + name)
        present = dict(store.listing(self.prefix.rstrip("/")))
        for s in manifest.get("shards", []):
            if present.get(s["file"]) != s["bytes"]:
                raise OSError(
                    f"{store.where(self.prefix + s['file'])}: uploaded, but the store holds "
                    f"{present.get(s['file'])} bytes of its {s['bytes']}; nothing was committed"
                )
        self._lock.check()
        expect = ABSENT if self._old is None else self._old[1]
        try:
            store.put(MANIFEST, manifest_bytes, expect=expect)
        except PreconditionFailed:
            raise DestinationBusyError(
                f"{self.dst} was committed by another writer during this run; this run's "
                f"output was discarded (run it again to replace that one)"
            ) from None
        self.committed = True
        _log.debug("%s: committed run %s", self.dst, self.run_id)
        old = _parse(self._old[0]) if self._old is not None else None
        if old is not None:
            with contextlib.suppress(OSError):  # the next run removes what is left
                prefix = old.get("prefix")
                if isinstance(prefix, str) and prefix.startswith(f"{RUNS}/"):
                    store.delete_tree(prefix.rstrip("/"))
                else:
                    for name in _shard_names(old):
                        store.delete(name)

    def _stop_uploads(self) -> None:
        """Wait for the uploads in flight; raise what the uploader met."""
        uploader, self._uploader = self._uploader, None
        if uploader is not None:
            uploader.stop()
            if uploader.error is not None:
                raise uploader.error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with contextlib.suppress(Exception):  # the run's own error is the one to raise
                self._stop_uploads()
            if not self.committed and self._store is not None:
                with contextlib.suppress(OSError):
                    self._store.delete_tree(self.prefix.rstrip("/"))
        finally:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
            if self._lock is not None:
                self._lock.release()


class _Uploader(threading.Thread):
    """Uploads each shard of the scratch directory under the run prefix as soon as
    it is complete (writers rename a shard into place whole), then removes the
    local copy: the scratch directory holds only the shards not yet uploaded."""

    def __init__(self, store: Store, folder: str, prefix: str) -> None:
        super().__init__(name="bfpack-upload", daemon=True)
        self.store, self.folder, self.prefix = store, folder, prefix
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while True:
            stopping = self._done.wait(_UPLOAD_POLL)
            try:
                self._sweep()
            except BaseException as exc:  # raised by the run at its commit
                self.error = exc
                return
            if stopping:
                return

    def _sweep(self) -> None:
        for name in sorted(os.listdir(self.folder)):
            if name.startswith("."):  # the manifest, or a shard still being written
                continue
            local = os.path.join(self.folder, name)
            self.store.upload(local, self.prefix + name)
            os.unlink(local)

    def stop(self) -> None:
        """Upload what is complete, and end."""
        self._done.set()
        self.join()


#: Seconds between two looks for complete shards to upload.
_UPLOAD_POLL = 0.2

#: The start of a local scratch directory's name, then the pid of its run.
_SCRATCH = "bfpack-scratch-"


def _remove_dead_scratch() -> None:
    """Remove the local scratch directories of runs on this host that died (SIGKILL)."""
    root = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            pid = name[len(_SCRATCH) :].split("-", 1)[0]
            if not name.startswith(_SCRATCH) or not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except OSError:
                pass


def _in_runs(name: str) -> bool:
    return name == RUNS or name.startswith(f"{RUNS}/")


def _shard_names(manifest: Mapping[str, Any]) -> list[str]:
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        return []
    return [
        s["file"]
        for s in shards
        if isinstance(s, dict) and isinstance(s.get("file"), str) and "/" not in s["file"]
    ]


def open_output(
    src: Any, dst: Any, output_format: str, overwrite: bool
) -> tuple[str, str, StagedOutput | RemoteOutput, str | None]:
    """``src`` and ``dst`` checked (paths or URIs), the output that writes
    ``dst``, and the local directory a source's links must not reach into.

    A local ``dst`` is a staged directory swapped in atomically; one on a
    store is a run prefix committed by its manifest (:class:`RemoteOutput`).
    Nothing is created until the output is entered.
    """
    src = _fs.local_path(as_path(src, "src"))
    dst = _fs.local_path(as_path(dst, "dst"))
    if _fs.is_uri(dst) or _fs.is_uri(src):
        check_uris(src, dst, output_format)
    else:
        check_paths(src, dst)
    if _fs.is_uri(dst):
        return src, dst, RemoteOutput(dst, overwrite=overwrite), None
    local = os.path.realpath(dst)
    return src, dst, StagedOutput(local, overwrite=overwrite), local


def check_uris(src: str, dst: str, output_format: str = "parquet") -> None:
    """ValueError when ``dst`` is ``src``, inside it, or contains it (URIs
    compared as text), or when an Arrow output would go to a store."""
    if output_format == "arrow" and _fs.is_uri(dst):
        # Its shards are named data-K-of-N only once all are written, and
        # loaders map it from a local disk: on a store it would be neither.
        raise ValueError(
            f"format='arrow' (--format arrow) writes a local directory that "
            f"datasets.load_from_disk maps in place; {dst} is on an object store: write "
            f"Parquet there (the default), or the Arrow output to a local disk"
        )
    s, d = src.rstrip("/") + "/", dst.rstrip("/") + "/"
    if s.startswith(d) or d.startswith(s):
        raise ValueError(
            f"the destination {dst} overlaps the source {src}: the output would be read "
            f"back as input, or replacing it would delete the input; choose a destination "
            f"outside the source"
        )


# -- reading an output on a store -----------------------------------------------


def read_remote_manifest(dst: str) -> tuple[dict[str, Any], str]:
    """The committed manifest of the output ``dst`` on a store, and its ETag.

    FileNotFoundError when there is none, ValueError when it is not a manifest.
    """
    where = _fs.join(dst, MANIFEST)
    found = Store(dst).get(MANIFEST) if _fs.is_uri(dst) else None
    if found is None:
        raise FileNotFoundError(f"{dst} is not a bfpack output: it holds no {MANIFEST}")
    data, etag = found
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where} is not valid JSON ({exc}); the output is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ValueError(f"{where} is not a bfpack manifest (no list of shards)")
    return manifest, etag


def run_id_at(dst: str) -> str | None:
    """The run id of the output at ``dst`` (a path or a URI); None if none can be read."""
    if not _fs.is_uri(dst):
        return run_id_of(_fs.local_path(dst))
    try:
        run_id = read_remote_manifest(dst)[0].get("run_id")
    except (OSError, ValueError):
        return None
    return run_id if isinstance(run_id, str) else None


def shard_uri(dst: str, manifest: Mapping[str, Any], name: str) -> str:
    """Where the shard ``name`` of ``manifest`` (committed at ``dst``) is."""
    return _fs.join(dst, prefix_of(manifest, dst) + name)


def prefix_of(manifest: Mapping[str, Any], dst: str) -> str:
    """The manifest's ``prefix`` (``""`` when it has none); ValueError if it is not a run's."""
    prefix = manifest.get("prefix", "")
    if prefix == "":
        return ""
    run = manifest.get("run_id")
    if not isinstance(run, str) or prefix != run_prefix(run):
        raise ValueError(
            f"the manifest of {dst} has a prefix of {prefix!r}, not {RUNS}/<its run id>/; "
            f"the output is damaged"
        )
    return str(prefix)


class RemoteSnapshot:
    """One committed output on a store, pinned by its manifest, for :func:`bfpack.verify`.

    Every shard is read from the run prefix the manifest names, so an
    overwrite committed meanwhile (which writes another prefix) cannot mix
    two runs; :meth:`replaced` says whether the manifest changed.
    """

    def __init__(self, dst: str) -> None:
        self.dst = dst.rstrip("/")
        self.manifest, self._etag = read_remote_manifest(self.dst)
        self.manifest_path = _fs.join(self.dst, MANIFEST)
        run_id = self.manifest.get("run_id")
        self.run_id = run_id if isinstance(run_id, str) else None
        self.prefix = prefix_of(self.manifest, self.dst)
        self._store = Store(self.dst)

    def __enter__(self) -> RemoteSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def exists(self, name: str) -> bool:
        """Whether ``name`` is among :meth:`names`."""
        return name in self.names()

    def names(self) -> list[str]:
        """The shards under the run prefix, and what else is at the top of ``dst``."""
        names: list[str] = []
        for n, _ in self._store.listing():
            if n.startswith(self.prefix) and self.prefix:
                names.append(n[len(self.prefix) :])
            elif n not in (MANIFEST, LOCK) and not _in_runs(n):
                names.append(n)
        return names

    def open(self, name: str) -> io.BytesIO:
        """The shard ``name``, read whole (a shard is about one window, compressed)."""
        return io.BytesIO(_fs.read_bytes(_fs.join(self.dst, self.prefix + name)))

    def replaced(self) -> bool:
        """Whether another manifest has been committed since."""
        try:
            return read_remote_manifest(self.dst)[1] != self._etag
        except (OSError, ValueError):
            return True


# -- the tasks of a Dask run, on workers that share no disk -----------------------

#: The object that tells the tasks of a failed run to stop.
STOP = ".bfpack-stop"


def task_live(run_uri: str, lock_uri: str) -> str | None:
    """Why a task of the run at ``run_uri`` must stop, or None if it goes on.

    It stops once the driver asked it to (the stop object under the run
    prefix), or the lock object is gone or another run's (the driver
    released it, or died and its lock was taken over).
    """
    run = run_uri.rstrip("/").rsplit("/", 1)[-1]
    if _fs.exists(_fs.join(run_uri, STOP)):
        return "stopped: the run failed or was interrupted"
    try:
        holder = _parse(_fs.read_bytes(lock_uri))
    except FileNotFoundError:
        holder = {}
    if holder.get("run") != run:
        return f"stopped: the run's lock {lock_uri} is no longer held"
    return None


def ask_tasks_to_stop(run_uri: str) -> None:
    """Put the stop object of the run at ``run_uri`` (see :func:`task_live`)."""
    with contextlib.suppress(OSError):
        _fs.write_bytes(_fs.join(run_uri, STOP), b"")


def task_upload(folder: str, names: list[str], run_uri: str) -> None:
    """Upload the shards ``names`` a task wrote into its local ``folder`` to the run prefix."""
    for name in names:
        _fs.upload(os.path.join(folder, name), _fs.join(run_uri, name))
