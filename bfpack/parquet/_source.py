"""Reading a dataset in bounded memory, and only as it was listed.

:class:`ParquetSource` lists the files of a dataset the way pyarrow does
(every file under the directory, recursively, in path order, skipping names
that start with ``_`` or ``.``; but it says which it skipped), checks that
every file holds the packed columns, and reads them batch by batch.

The files may be Parquet, Arrow IPC or JSON Lines (one format per source:
a mix is refused), or the source a ``datasets`` ``save_to_disk`` directory
(its files in the order its ``state.json`` lists); how each format is
inspected and read is its reader's (:mod:`bfpack.parquet._readers`). Parquet
files are read here:
``ParquetFile(pre_buffer=False, buffer_size=...)`` row group by row group,
so a column chunk is streamed page by page instead of being read whole.
Memory then follows the batch, not the file or its row groups; and a batch
is sized by tokens, from the lengths of the documents read so far and the
tokens left in the row group (:class:`_RowBudget`), so that long documents
after short ones do not come a thousand at a time.

Every file's identity (size, modification time, and a SHA-256: of its
footer for Parquet, of its first and last MiB for the other formats) is
taken when the source is opened and checked before each file is read and
after: a file that changes during a run fails it with one line naming the
file, instead of packing a mix of two versions, or an IndexError. Page
checksums, where the writer stored them (Spark and parquet-java do by
default), are verified on reading (pyarrow 15 and later).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._arrow import is_list_type
from .._validate import ATTENTION_MASK, check_same_columns
from ..stream import windows as stream_windows
from ..table import OutputSpec, aligned_lengths
from . import _fs
from ._arrow_input import ArrowReader, save_to_disk_files
from ._jsonl_input import JsonLinesReader
from ._readers import HEAD_BYTES, LABELS, InputReader, conform, detect, one_line
from .manifest import MANIFEST, read_manifest

#: Rows per batch at most, and at least (see :class:`_RowBudget`).
_MAX_BATCH_ROWS = 8192
_MIN_BATCH_ROWS = 1
#: Bytes read at a time from a column chunk.
_READ_BUFFER = 1 << 20
#: Skipped names listed in the warning at most.
_SHOWN = 5

_log = logging.getLogger(__name__)

#: Page CRCs are checked where pyarrow can (15 and later; 14 ignores them).
_VERIFY_CHECKSUMS: dict[str, Any] = (
    {"page_checksum_verification": True} if int(pa.__version__.split(".")[0]) >= 15 else {}
)


class SourceChangedError(ValueError):
    """A file of the source is no longer the one the run listed."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, as it was when the source was opened.

    ``name`` is its path relative to the source directory (``/``-separated),
    or its file name when the source is this one file; ``format`` its
    reader's name (``parquet``, ``arrow``, ``jsonl``). ``size``,
    ``mtime_ns`` and ``digest`` are its identity (see :meth:`check`): for
    Parquet, the SHA-256 of the footer's bytes (the file metadata, its
    length and the closing magic); for the others, of the size and the
    first and last MiB (:func:`bfpack.parquet._readers.ends_sha256`).
    """

    path: str
    name: str
    size: int
    rows: int
    schema: pa.Schema
    mtime_ns: int
    digest: str
    format: str = "parquet"
    #: Whether ``path`` is a URI of a store (read through :mod:`._fs`).
    remote: bool = False

    @property
    def reader(self) -> InputReader:
        """The reader of its format."""
        return READERS[self.format]

    def record(self) -> dict[str, Any]:
        """Its manifest entry: ``path`` (the relative name), ``size``, ``rows``,
        ``mtime_ns`` and ``footer_sha256`` (Parquet) or else ``format`` and
        ``ends_sha256``."""
        entry: dict[str, Any] = {
            "path": self.name,
            "size": self.size,
            "rows": self.rows,
            "mtime_ns": self.mtime_ns,
        }
        if self.format != "parquet":
            entry["format"] = self.format
        entry[self.reader.digest_key] = self.digest
        return entry

    def check(self, fh: BinaryIO | None = None) -> None:
        """Raise :class:`SourceChangedError` unless the file is still the one listed.

        ``fh``, an open handle of it, is checked instead of the path (what
        is read through it is what counts); without it, the path.
        """
        try:
            if fh is None:
                with self._open() as f:
                    now = _identity(f, self.reader)
            else:
                now = _identity(fh, self.reader)
        except OSError as exc:
            if self.remote and not isinstance(exc, FileNotFoundError):
                raise  # the store cannot be reached or read: not a change of the file
            self._changed(_gone(exc))
        size, mtime_ns, footer = now
        if size != self.size:
            self._changed(f"{size:,} bytes, {self.size:,} when the run listed it")
        if footer != self.digest:
            what = (
                "its footer (the file's metadata)"
                if self.format == "parquet"
                else "its first or last MiB"
            )
            self._changed(f"{what} is not the one the run listed")
        if mtime_ns != self.mtime_ns:
            self._changed("it was modified after the run listed it")

    def _changed(self, why: str) -> NoReturn:
        raise SourceChangedError(
            f"{self.path} changed during the run ({why}): bfpack reads only the files it "
            f"listed at the start, as they were; run again once they no longer change"
        ) from None

    def _open(self) -> Any:
        return _fs.open_uri(self.path) if self.remote else open(self.path, "rb")

    def open(self) -> BinaryIO:
        """The file opened for reading, checked to be the one listed."""
        try:
            fh = self._open()
        except OSError as exc:
            if self.remote and not isinstance(exc, FileNotFoundError):
                raise  # the store cannot be reached or read: not a change of the file
            self._changed(_gone(exc))
        try:
            self.check(fh)
        except BaseException:
            fh.close()
            raise
        return fh


@dataclass(frozen=True)
class ParquetSource:
    """The files of a dataset (Parquet, Arrow IPC or JSON Lines), listed and checked once.

    Attributes
    ----------
    path : str
        The source as given (a file or a directory).
    files : tuple of SourceFile
        The files read, in order.
    skipped : tuple of str
        What the ``_``/``.`` convention left out: files, and directories
        (with a trailing ``/``) that were not entered.
    """

    path: str
    files: tuple[SourceFile, ...]
    skipped: tuple[str, ...]

    @classmethod
    def open(cls, src: str | os.PathLike, *, dst: str | None = None) -> ParquetSource:
        """List and open the files of ``src``; warn about skipped ones.

        Raises FileNotFoundError for a missing path and ValueError for a
        directory without input files, a file of no format read (Parquet
        and Arrow IPC are told by their first bytes, JSON Lines by the
        name: ``.jsonl`` or ``.ndjson``, optionally ``.gz`` or ``.zst``), a
        directory that mixes formats, a ``save_to_disk`` directory whose
        ``state.json`` lists a missing file, a bfpack output (its rows are
        packed sequences, not documents), or,
        given the destination ``dst`` of a run, a file that resolves into
        it or its staged directories (a symbolic link inside ``src``).
        """
        path = _fs.local_path(os.fspath(src))
        remote = _fs.is_uri(path)
        if remote:
            names, skipped, paths = _list_store(path)
        else:
            names, skipped, paths = _list_local(path, dst)
        if skipped:
            warnings.warn(_skipped_message(path, skipped), UserWarning, stacklevel=3)
            _log.debug("skipped under %s: %s", path, ", ".join(skipped))
        if not names:
            raise ValueError(
                f"{path} holds no Parquet, Arrow IPC or JSON Lines files"
                + (f" ({_skipped_message(path, skipped)})" if skipped else "")
            )
        files = _open_files(path, names, paths, remote=remote)
        source = cls(path=path, files=files, skipped=tuple(skipped))
        _log.info(
            "%s: %s %s file(s), %s rows",
            path,
            f"{len(files):,}",
            LABELS[files[0].format],
            f"{source.rows:,}",
        )
        return source

    @property
    def rows(self) -> int:
        """Rows (documents) of all the files, from their footers."""
        return sum(f.rows for f in self.files)

    def spec(
        self,
        *,
        columns: str | Sequence[str] | None = None,
        **options: Any,
    ) -> OutputSpec:
        """The output spec, its columns checked in every file (``options``:
        the others of :meth:`bfpack.OutputSpec.for_schema`).

        By default the packed columns are the list columns of the files,
        which must be the same in every file: a file without a list column
        that others have is an error naming it (packing the columns the
        first file happens to have would drop the others' without a word).
        """
        if columns is None:
            # Every file must have them; the first file's then stand for all,
            # and OutputSpec picks them (attention_mask left out, with a warning).
            self._check_common_list_columns()
        for f in self.files:
            _check_unique(f, columns)
        spec = OutputSpec.for_schema(self.files[0].schema, columns=columns, **options)
        for f in self.files[1:]:
            check_same_columns(f.schema, spec.schema, f.path)
        return spec

    def _check_common_list_columns(self) -> None:
        """ValueError unless every file has the same list columns (those that
        would be packed by default: ``attention_mask`` never is)."""
        per_file = [
            [x.name for x in f.schema if is_list_type(x.type) and x.name != ATTENTION_MASK]
            for f in self.files
        ]
        union = list(dict.fromkeys(n for names in per_file for n in names))
        for name in union:
            has = next(f for f, names in zip(self.files, per_file) if name in names)
            for f, names in zip(self.files, per_file):
                if name not in names:
                    common = [n for n in union if all(n in x for x in per_file)]
                    found = (
                        f"a column of type {f.schema.field(name).type}"
                        if name in f.schema.names
                        else "no such column"
                    )
                    raise ValueError(
                        f"list column {name!r} of {has.path} is missing from {f.path} "
                        f"({found}): every file must hold the packed columns; pass "
                        f"columns={common} to pack the list columns all files have"
                    )

    def batches(self, spec: OutputSpec, *, batch_tokens: int) -> Iterator[pa.RecordBatch]:
        """Non-empty record batches of the packed columns, file after file, typed as ``spec``.

        A batch holds about ``batch_tokens`` tokens (:class:`_RowBudget`
        sizes each from the documents read so far), within 1 and 8192 rows.
        Each file is checked to be the one listed (:meth:`SourceFile.check`)
        before it is read and after; a file that changed, or cannot be
        read (a damaged page, a page checksum that does not match), is a
        ValueError naming it.
        """
        names = spec.schema.names  # the packed columns, then the carried ones
        for f in self.files:
            with f.open() as fh:
                try:
                    yield from f.reader.read(f, fh, names, spec.schema, batch_tokens)
                except SourceChangedError:
                    raise
                except ValueError:
                    # A line that changed under the reader is a change, not bad input.
                    f.check(fh)
                    f.check()
                    raise
                except (pa.ArrowException, OSError) as exc:
                    raise _unreadable(f, fh, exc) from None
            f.check()  # replaced (renamed over) while it was read

    def check_unchanged(self) -> None:
        """Raise :class:`SourceChangedError` if a file is no longer the one listed."""
        for f in self.files:
            f.check()

    def windows(
        self, spec: OutputSpec, window_tokens: int
    ) -> Generator[tuple[pa.Table, bool], None, None]:
        """Yield ``(table, last)``: the batches regrouped into windows of whole
        documents, each just reaching ``window_tokens`` tokens
        (:func:`bfpack.stream.windows`, which any other stream of tables uses too)."""
        return stream_windows(self.batches(spec, batch_tokens=window_tokens), spec, window_tokens)

    def lengths(
        self, spec: OutputSpec, *, progress: Callable[[dict[str, int]], Any] | None = None
    ) -> np.ndarray:
        """Tokens per document (int64); the packed columns must agree row by row.

        pyarrow cannot read a list column's offsets without its values, so
        the columns are decoded batch by batch and only the lengths kept:
        memory holds one batch (about 1M tokens) and 8 bytes per document.
        ``progress``, if given, is called before the first batch and after
        every batch with the running totals ``documents`` and ``tokens``,
        and ``total_documents`` (:attr:`rows`).
        """
        out = [np.zeros(0, dtype=np.int64)]
        totals = dict(documents=0, tokens=0, total_documents=self.rows)
        if progress is not None:
            progress(dict(totals))
        for batch in self.batches(spec, batch_tokens=1 << 20):
            out.append(
                aligned_lengths(pa.Table.from_batches([batch]), spec.columns, totals["documents"])
            )
            totals["documents"] += batch.num_rows
            totals["tokens"] += int(out[-1].sum())
            if progress is not None:
                progress(dict(totals))
        self.check_unchanged()  # the lengths are of the files listed, all of them
        return np.concatenate(out)


def _discover(root: str) -> tuple[list[str], list[str]]:
    """Relative names of the files under ``root`` and of the skipped entries.

    Like pyarrow's dataset discovery: recursive, symbolic links followed,
    every path component starting with ``_`` or ``.`` skipped, files in
    path order.
    """
    files: list[str] = []
    skipped: list[str] = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for d in list(dirs):
            if d.startswith(("_", ".")):
                skipped.append(prefix + d + "/")
                dirs.remove(d)
        for n in names:
            (skipped if n.startswith(("_", ".")) else files).append(prefix + n)
    return sorted(files), sorted(skipped)


def _list_local(path: str, dst: str | None) -> tuple[list[str], list[str], list[str]]:
    """The input files of the local source ``path`` (names, skipped, paths);
    refuses a bfpack output and, given ``dst``, files that resolve into it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        listed = save_to_disk_files(path)
        names, skipped = (listed, []) if listed is not None else _discover(path)
        paths = [os.path.join(path, *n.split("/")) for n in names]
        outputs = [
            os.path.join(path, *n.split("/")[:-1])
            for n in skipped
            if n.rsplit("/", 1)[-1] == MANIFEST
        ]
        if listed is not None and os.path.isfile(os.path.join(path, MANIFEST)):
            outputs.append(path)  # a bfpack output in the save_to_disk layout
    else:
        names, skipped, paths = [os.path.basename(path)], [], [path]
        outputs = [path] if _is_shard(path) else []
    if dst is not None:
        _check_outside(paths, dst)
    if outputs:
        _refuse_output(outputs[0])
    return names, skipped, paths


def _list_store(path: str) -> tuple[list[str], list[str], list[str]]:
    """The input objects of the source ``path`` on a store (names, skipped,
    paths), listed as a directory's files are; refuses a bfpack output."""
    kind = _fs.kind_of(path)
    names: list[str] = []
    skipped: list[str] = []
    if kind == "missing":
        raise FileNotFoundError(f"{path}: no such object or prefix")
    if kind == "file":
        return [path.rstrip("/").rsplit("/", 1)[-1]], [], [path]
    for rel, _ in _fs.list_files(path):
        parts = rel.split("/")
        hidden = next((k for k, p in enumerate(parts) if p.startswith(("_", "."))), None)
        if hidden is None:
            names.append(rel)
        elif hidden == len(parts) - 1:
            skipped.append(rel)
        else:
            skipped.append("/".join(parts[: hidden + 1]) + "/")
    if MANIFEST in skipped:
        raise ValueError(
            f"{path} is a bfpack output (it holds {MANIFEST}): its rows are packed "
            f"sequences, not documents; give the source it was packed from instead"
        )
    return names, sorted(set(skipped)), [_fs.join(path, n) for n in names]


def _skipped_message(path: str, skipped: Sequence[str]) -> str:
    shown = ", ".join(skipped[:_SHOWN])
    more = f" and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    return (
        f"{path}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} whose "
        f"names start with '_' or '.' (the Parquet dataset convention): {shown}{more}"
    )


def _open_files(
    path: str, names: Sequence[str], paths: Sequence[str], *, remote: bool
) -> tuple[SourceFile, ...]:
    """The files ``paths`` (named ``names``) of the source ``path``, each opened once:
    its format told from its first bytes and, while the source is of one, inspected.

    The errors are those of telling every file's format first (a file of
    none), then of a mix of formats, then of the first file that cannot be
    read: a file is not opened twice (on a store, each open is requests).
    """
    formats: list[str] = []
    files: list[SourceFile] = []
    unreadable: Exception | None = None  # raised once every file's format is known
    for p, n in zip(paths, names):
        try:
            opened: Any = _fs.open_uri(p) if remote else open(p, "rb")
        except OSError as exc:
            raise _cannot_read(p, exc, remote=remote) from None
        with opened as fh:
            formats.append(_format_of(fh, p, remote=remote))
            if unreadable is None and formats[-1] == formats[0]:
                try:
                    files.append(_open_file(fh, p, n, formats[-1], remote=remote))
                except (ValueError, OSError) as exc:
                    unreadable = exc
    _check_one_format(path, names, formats)
    if unreadable is not None:
        raise unreadable
    return tuple(files)


def _cannot_read(path: str, exc: OSError, *, remote: bool) -> OSError | ValueError:
    """The error for ``exc``, raised opening ``path`` or reading its first bytes."""
    if remote and not isinstance(exc, pa.ArrowException):
        return exc  # the store's error (access denied, unreachable), already one line
    return ValueError(f"cannot read {path}: {exc.strerror or one_line(exc)}")


def _format_of(fh: BinaryIO, path: str, *, remote: bool = False) -> str:
    """The format of the open file ``fh`` of ``path``
    (:func:`bfpack.parquet._readers.detect`); ValueError for a file of none."""
    try:
        head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise _cannot_read(path, exc, remote=remote) from None
    fmt = detect(head, os.path.basename(path))
    if fmt is not None:
        return fmt
    what = "empty (0 bytes)" if not head else "neither Arrow IPC nor named as JSON Lines"
    raise ValueError(
        f"{path} is not a Parquet file ({what}): bfpack reads Parquet and Arrow IPC files "
        f"(told by their first bytes) and JSON Lines named *.jsonl or *.ndjson (optionally "
        f".gz or .zst); move other files out of the source"
    )


def _check_one_format(path: str, names: Sequence[str], formats: Sequence[str]) -> None:
    """ValueError if the files of the source ``path`` are of several formats."""
    found = dict.fromkeys(formats)
    if len(found) < 2:
        return
    parts = []
    for fmt in found:
        mine = [n for n, f in zip(names, formats) if f == fmt]
        more = f", ... ({len(mine)} files)" if len(mine) > 2 else ""
        parts.append(f"{LABELS[fmt]} ({', '.join(mine[:2])}{more})")
    raise ValueError(
        f"{path} mixes input formats: {'; '.join(parts)}; a source must be of one format: "
        f"pack each format's files as a source of its own, or convert them to one format"
    )


def _open_file(fh: BinaryIO, path: str, name: str, fmt: str, *, remote: bool = False) -> SourceFile:
    """The file ``path`` (named ``name``), of the format ``fmt``, inspected through ``fh``."""
    reader = READERS[fmt]
    try:
        rows, schema = reader.inspect(fh, path)
        size, mtime_ns, digest = _identity(fh, reader)
    except (pa.ArrowException, OSError) as exc:
        if remote and isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            raise  # the store's error (access denied, unreachable), already one line
        raise ValueError(f"{path} is not a {LABELS[fmt]} file ({one_line(exc)})") from None
    return SourceFile(
        path=path,
        name=name,
        size=size,
        rows=rows,
        schema=schema,
        mtime_ns=mtime_ns,
        digest=digest,
        format=fmt,
        remote=remote,
    )


def _identity(fh: BinaryIO, reader: InputReader) -> tuple[int, int, str]:
    """``(size, mtime_ns, digest)`` of the open file ``fh``, ``digest`` by its ``reader``."""
    size, mtime_ns = _fs.file_stat(fh)
    return size, mtime_ns, reader.digest(fh, size)


def _footer_sha256(fh: BinaryIO, size: int) -> str:
    """SHA-256 of the Parquet file's footer.

    The footer is the file's last ``8 + n`` bytes: its metadata (``n``
    bytes, as the 4-byte length before the closing magic says), the length
    and the magic; a rewrite that changes any row group, page offset or
    statistic changes it.
    """
    fh.seek(max(size - 8, 0))
    tail = fh.read(8)
    n = int.from_bytes(tail[:4], "little") if len(tail) == 8 else 0
    start = max(size - 8 - n, 0)
    fh.seek(start)
    footer = fh.read(size - start)
    return hashlib.sha256(footer).hexdigest()


def _is_shard(path: str) -> bool:
    """Whether the file ``path`` is a shard its folder's bfpack manifest lists."""
    try:
        shards = read_manifest(os.path.dirname(path) or ".")["shards"]
    except (OSError, ValueError):
        return False
    name = os.path.basename(path)
    return any(isinstance(s, dict) and s.get("file") == name for s in shards)


def _gone(exc: OSError) -> str:
    """Why a listed file cannot be checked, for :meth:`SourceFile._changed`."""
    if isinstance(exc, FileNotFoundError):
        return "it was removed"
    return f"it cannot be read: {exc.strerror or one_line(exc)}"


def _refuse_output(where: str) -> NoReturn:
    """ValueError: ``where`` is a bfpack output or one of its shards, not documents."""
    folder = where if os.path.isdir(where) else os.path.dirname(where) or "."
    try:
        packed_from = read_manifest(folder).get("source")
    except (OSError, ValueError):
        packed_from = None
    origin = (
        f" ({packed_from})" if isinstance(packed_from, str) and packed_from.isprintable() else ""
    )
    what = "is a bfpack output" if where == folder else f"is a shard of the bfpack output {folder}"
    raise ValueError(
        f"{where} {what} (it holds {MANIFEST}): its rows are packed sequences, not "
        f"documents; give the source it was packed from{origin} instead (the packing's "
        f"figures are the manifest's stats; check the output with: bfpack verify {folder})"
    )


def _check_outside(paths: Sequence[str], dst: str) -> None:
    """ValueError if a file of ``paths`` resolves into ``dst`` or the names
    beside it that belong to it (``.NAME.tmp-*``, ``.NAME.old-*``)."""
    parent, base = os.path.split(os.path.realpath(dst))
    for path in paths:
        real = os.path.realpath(path)
        first = os.path.relpath(real, parent).split(os.sep)[0]
        if first == base or first.startswith(f".{base}."):
            where = "the destination" if first == base else "a directory bfpack writes beside"
            raise ValueError(
                f"{path} resolves to {real}, inside {where} {dst}: the run would read "
                f"its own output; remove the link from the source or choose another "
                f"destination"
            )


def _check_unique(f: SourceFile, columns: Any) -> None:
    """ValueError when a packed column's name appears twice in the file."""
    if columns is None:  # the default: its list columns
        names: Any = [x.name for x in f.schema if is_list_type(x.type)]
    else:
        names = [columns] if isinstance(columns, str) else columns
    if not isinstance(names, (list, tuple)):
        return  # as_columns says what is wrong with it
    for name in dict.fromkeys(n for n in names if isinstance(n, str)):
        count = f.schema.names.count(name)
        if count > 1:
            raise ValueError(
                f"{f.path} has {count} columns named {name!r}; columns are read by "
                f"name, so rename them first"
            )


class _ParquetReader:
    """Parquet files, read as the module says."""

    name = "parquet"
    digest_key = "footer_sha256"

    def inspect(self, fh: BinaryIO, path: str) -> tuple[int, pa.Schema]:
        meta = pq.read_metadata(fh)
        return meta.num_rows, meta.schema.to_arrow_schema()

    def digest(self, fh: BinaryIO, size: int) -> str:
        return _footer_sha256(fh, size)

    def read(
        self, f: Any, fh: BinaryIO, names: list[str], schema: pa.Schema, batch_tokens: int
    ) -> Iterator[pa.RecordBatch]:
        return _read_file(f, fh, names, schema, batch_tokens)


#: The reader of each format.
READERS: dict[str, InputReader] = {
    "parquet": _ParquetReader(),
    "arrow": ArrowReader(),
    "jsonl": JsonLinesReader(),
}


def _read_file(
    f: SourceFile, fh: BinaryIO, names: list[str], schema: pa.Schema, batch_tokens: int
) -> Iterator[pa.RecordBatch]:
    """The batches of the columns ``names`` of the open file ``fh`` (of ``f``)."""
    try:
        pf = pq.ParquetFile(fh, pre_buffer=False, buffer_size=_READ_BUFFER, **_VERIFY_CHECKSUMS)
        budget = _RowBudget(pf.metadata, names[0], batch_tokens)
        _log.debug("reading %s: %s rows", f.path, f"{f.rows:,}")
        reader = pf.iter_batches(batch_size=budget.rows, columns=names)
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable(f, fh, exc) from None
    first = names[0]
    while True:
        try:
            batch = next(reader, None)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(f, fh, exc) from None
        if batch is None:
            break
        budget.update(batch.column(batch.schema.get_field_index(first)))
        # The reader takes the new size from its next batch on.
        pf.reader.set_batch_size(budget.rows)
        if batch.num_rows:
            yield conform(batch, schema)


def _unreadable(f: SourceFile, fh: BinaryIO, exc: BaseException) -> ValueError:
    """The error for ``exc``, raised reading ``f``: changed, or else damaged."""
    f.check(fh)  # truncated or rewritten in place: say so, not "damaged"
    f.check()
    return ValueError(
        f"cannot read {f.path}: {one_line(exc).rstrip('.')} (the file may be damaged)"
    )


class _RowBudget:
    """Rows of the next batch, for about ``batch_tokens`` tokens of ``column``.

    The Parquet reader decodes a batch's rows whole, so the rows must be
    chosen before their lengths are known. They follow the tokens per row
    of the rest of the row group (its metadata counts its tokens; those
    read are subtracted) or of the last batch, whichever is more, and,
    unless the rows they reach hold no more than the budget anyway, at
    most double the last batch's (the first is one row). So when long
    documents follow many short ones, the rest of the row group's average
    rises as the short ones are read, and the long ones come a few at a
    time, where the file's average would bring a thousand at once; when
    they come first, the first rows show it.
    """

    def __init__(self, meta: pq.FileMetaData, column: str, batch_tokens: int) -> None:
        rows, values = [], []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            rows.append(group.num_rows)
            values.append(_chunk_values(group, column))
        self._batch_tokens = batch_tokens
        self._ends = np.cumsum(np.array(rows, dtype=np.int64))
        self._value_ends = np.cumsum(np.array(values, dtype=np.int64))
        self._rows_read = 0
        self._values_read = 0
        self._last = 0.0  # values per row of the last batch
        self._most = 1  # rows of the next batch at most
        self.rows = self._next()

    def update(self, col: pa.Array) -> None:
        """Count the batch just read (its column ``column``) and size the next."""
        if len(col):
            lengths = np.diff(col.offsets.to_numpy())
            # As Parquet counts a list column's values: one per token, and
            # one per empty or null list.
            values = int(lengths.sum()) + int(np.count_nonzero(lengths == 0))
            self._rows_read += len(col)
            self._values_read += values
            self._last = values / len(col)
        self._most = 2 * self.rows
        self.rows = self._next()

    def _next(self) -> int:
        per_row = max(self._last, 1.0)
        rows = min(self._batch_tokens / per_row, _MAX_BATCH_ROWS)
        # Every row group the batch would reach counts: the rest of this
        # one, and the next ones whole.
        g = int(np.searchsorted(self._ends, self._rows_read, side="right"))
        start, values_before, reach = self._rows_read, self._values_read, 0
        while g < self._ends.shape[0] and start < self._rows_read + rows:
            values_left = int(self._value_ends[g]) - values_before
            reach += values_left
            per_row = max(per_row, values_left / (int(self._ends[g]) - start))
            rows = min(rows, self._batch_tokens / per_row)
            start, values_before = int(self._ends[g]), int(self._value_ends[g])
            g += 1
        if reach > self._batch_tokens:  # the rows could hold more: feel the way
            rows = min(rows, self._most)
        return int(max(rows, _MIN_BATCH_ROWS))


def _chunk_values(group: pq.RowGroupMetaData, column: str) -> int:
    """Values (tokens, plus one per empty list) of the list column ``column`` in ``group``."""
    for c in range(group.num_columns):
        chunk = group.column(c)
        path = chunk.path_in_schema
        # The leaf of a list column: "name.list.element" (or "name.array"
        # as older writers name it); a "." in the name itself is kept.
        if path.startswith(column + ".") and path[len(column) + 1 :].count(".") <= 1:
            return int(chunk.num_values)
    return 0
