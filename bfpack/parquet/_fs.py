"""Paths and URIs: which file system holds a source or a destination.

A path is either local (a plain path, or a ``file://`` URI, which maps to
the local path and so to the local code path of every module) or a URI of
another file system: ``s3://`` and ``gs://`` (and the others
:meth:`pyarrow.fs.FileSystem.from_uri` knows) through pyarrow's own file
systems, and any scheme fsspec knows (``hf://``, ``memory://``, ...)
through ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``.

Credentials and endpoints are never bfpack options: the file systems take
them from the usual environment and configuration (``AWS_*`` variables,
``~/.aws``, ``AWS_ENDPOINT_URL``; ``GOOGLE_APPLICATION_CREDENTIALS``;
``HF_TOKEN``).

Errors of a store become one-line OSErrors of the usual kinds:
FileNotFoundError (no such bucket or object), PermissionError (access
denied), ConnectionError (the store cannot be reached), each naming the URI.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

#: A URI: a scheme, then "://".
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str) -> bool:
    """Whether ``path`` is a URI of a file system other than the local one."""
    return bool(_URI.match(path)) and not path.lower().startswith("file://")


def local_path(path: str) -> str:
    """``path`` with a ``file://`` URI turned into the local path it names."""
    if path.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(path)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(
                f"{path} names a file on the host {parsed.netloc!r}; file:// URIs name "
                f"local files only (file:///absolute/path)"
            )
        return urllib.parse.unquote(parsed.path) or "/"
    return path


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system holding ``uri`` and the path of ``uri`` on it (no trailing ``/``)."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        fs = _with_retries(fs)
    except pa.ArrowInvalid:
        fs, path = _fsspec(uri)
    except OSError as exc:
        raise storage_error(exc, uri) from None
    return fs, path.rstrip("/")


def _with_retries(fs: pafs.FileSystem) -> pafs.FileSystem:
    """``fs``, an S3 file system, with the retries ``AWS_MAX_ATTEMPTS`` asks for, if
    set (as boto3 and the AWS CLI read it; pyarrow's ``from_uri`` does not)."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
    if not isinstance(fs, pafs.S3FileSystem) or not attempts.isdigit():
        return fs
    strategy = pafs.AwsStandardS3RetryStrategy(max_attempts=max(int(attempts), 1))
    options: dict[str, Any] = {"retry_strategy": strategy, "region": fs.region}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_override"] = endpoint
    return pafs.S3FileSystem(**options)


def _fsspec(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        import fsspec
    except ImportError:
        raise ValueError(
            f"{uri}: pyarrow does not know the scheme {uri.split('://')[0]!r} and fsspec, "
            f"which might, is not installed (pip install fsspec)"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"{uri}: no file system for this URI ({_one_line(exc)})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(uri: str, *names: str) -> str:
    """``uri`` and ``names`` joined with ``/``."""
    return "/".join([uri.rstrip("/"), *names])


def parent(uri: str) -> str:
    """The URI of the folder holding ``uri``."""
    return uri.rstrip("/").rsplit("/", 1)[0]


def storage_error(exc: BaseException, uri: str) -> OSError:
    """``exc``, raised by a store while handling ``uri``, as one line of the usual kind."""
    text = _one_line(exc)
    low = text.lower()
    kind: type[OSError] = OSError
    why = text
    if "no_such_bucket" in low or "nosuchbucket" in low or "bucket does not exist" in low:
        kind, why = FileNotFoundError, "the bucket does not exist"
    elif isinstance(exc, FileNotFoundError) or "no_such_key" in low or "not found" in low:
        kind, why = FileNotFoundError, "no such object"
    elif (
        isinstance(exc, PermissionError)
        or "access_denied" in low
        or "accessdenied" in low
        or "forbidden" in low
        or "http status 403" in low
    ):
        kind, why = PermissionError, "access denied: check the credentials and their permissions"
    elif isinstance(exc, ConnectionError) or any(
        w in low
        for w in (
            "connection refused",
            "couldn't connect",
            "could not connect",
            "curl error",
            "network_connection",
            "timed out",
        )
    ):
        kind, why = ConnectionError, f"the store cannot be reached ({text})"
    return kind(f"{uri}: {why}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else "?" for c in text) or type(exc).__name__


class RemoteFile:
    """A file of a store opened for reading, with the identity it had when opened.

    ``size`` and ``mtime_ns`` come from the store's listing (an object's
    last-modified time); reads go through the store's input file. It is a
    binary file object, as the local code reads local files through.
    """

    def __init__(self, fs: pafs.FileSystem, path: str, uri: str) -> None:
        self.uri = uri
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"{uri}: no such object")
            self._f = fs.open_input_file(path)
        except OSError as exc:
            raise storage_error(exc, uri) from None
        self.mtime_ns = int(info.mtime_ns or 0)
        self.size = int(self._f.size())

    def read(self, n: int = -1) -> bytes:
        try:
            return bytes(self._f.read() if n is None or n < 0 else self._f.read(n))
        except OSError as exc:
            raise storage_error(exc, self.uri) from None

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._f.seek(offset, whence))

    def tell(self) -> int:
        return int(self._f.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return bool(self._f.closed)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> RemoteFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_uri(uri: str) -> RemoteFile:
    """The object at ``uri``, opened for reading."""
    fs, path = resolve(uri)
    return RemoteFile(fs, path, uri)


def file_stat(fh: Any) -> tuple[int, int]:
    """``(size, mtime_ns)`` of an open file: a local one or a :class:`RemoteFile`."""
    if isinstance(fh, RemoteFile):
        return fh.size, fh.mtime_ns
    st = os.fstat(fh.fileno())
    return st.st_size, st.st_mtime_ns


def read_bytes(uri: str) -> bytes:
    """The whole object at ``uri``."""
    with open_uri(uri) as f:
        return f.read()


def list_files(uri: str) -> list[tuple[str, int]]:
    """``(relative name, size)`` of every file under the folder ``uri``, in name order.

    FileNotFoundError (one line) when the bucket does not exist.
    """
    return files_under(*resolve(uri), uri)


def files_under(fs: pafs.FileSystem, path: str, uri: str) -> list[tuple[str, int]]:
    """:func:`list_files` of the folder ``path`` of ``fs`` (an opened ``uri``)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise storage_error(exc, uri) from None
    out = []
    for info in infos:
        if info.type == pafs.FileType.File:
            rel = info.path[len(path) :].lstrip("/")
            out.append((rel, int(info.size or 0)))
    return sorted(out)


def kind_of(uri: str) -> str:
    """``"file"``, ``"dir"`` or ``"missing"``: what ``uri`` names.

    A bucket that does not exist is a FileNotFoundError, not "missing".
    """
    fs, path = resolve(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return "file"
        if info.type == pafs.FileType.Directory:
            return "dir"
        # Object stores have no directories: a prefix with objects under it is one.
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise storage_error(exc, uri) from None
    if found:
        return "dir"
    check_bucket(uri)
    return "missing"


#: Schemes whose first path component is a bucket.
_BUCKETS = ("s3", "s3a", "gs", "gcs")


def check_bucket(uri: str) -> None:
    """FileNotFoundError (one line) when ``uri`` is in a bucket that does not exist."""
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in _BUCKETS:
        return
    fs, path = resolve(uri)
    bucket = path.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as exc:
        raise storage_error(exc, uri) from None
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: the bucket {bucket!r} does not exist")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` as the object ``uri`` (unconditionally)."""
    fs, path = resolve(uri)
    try:
        with fs.open_output_stream(path) as f:
            f.write(data)
    except OSError as exc:
        raise storage_error(exc, uri) from None


def upload(local: str, uri: str) -> None:
    """Copy the local file ``local`` to the object ``uri``."""
    fs, path = resolve(uri)
    try:
        with open(local, "rb") as src, fs.open_output_stream(path) as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)
    except OSError as exc:
        raise storage_error(exc, uri) from None


def exists(uri: str) -> bool:
    """Whether the object ``uri`` exists."""
    fs, path = resolve(uri)
    try:
        return bool(fs.get_file_info(path).type == pafs.FileType.File)
    except OSError as exc:
        raise storage_error(exc, uri) from None
