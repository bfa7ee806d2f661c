"""Reading a Parquet dataset in bounded memory.

:class:`ParquetSource` lists the files of a dataset the way pyarrow does
(every file under the directory, recursively, in path order, skipping names
that start with ``_`` or ``.``; but it says which it skipped), checks that
every file holds the packed columns, and reads them batch by batch:
``ParquetFile(pre_buffer=False, buffer_size=...)`` row group by row group,
so a column chunk is streamed page by page instead of being read whole.
Memory then follows the batch, not the file or its row groups.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._validate import ATTENTION_MASK, check_same_columns, is_list_type
from ..stream import windows as stream_windows
from ..table import OutputSpec, document_lengths

#: Rows per batch at most, and at least (see :func:`_batch_rows`).
_MAX_BATCH_ROWS = 8192
_MIN_BATCH_ROWS = 16
#: Bytes read at a time from a column chunk.
_READ_BUFFER = 1 << 20
#: Skipped names listed in the warning at most.
_SHOWN = 5

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file of a source.

    ``name`` is its path relative to the source directory (``/``-separated),
    or its file name when the source is this one file.
    """

    path: str
    name: str
    size: int
    rows: int
    schema: pa.Schema

    def record(self) -> dict[str, Any]:
        """Its manifest entry: ``path`` (the relative name), ``size``, ``rows``."""
        return {"path": self.name, "size": self.size, "rows": self.rows}


@dataclass(frozen=True)
class ParquetSource:
    """The Parquet files of a dataset, listed and checked once.

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
    def open(cls, src: str | os.PathLike) -> ParquetSource:
        """List and open the files of ``src``; warn about skipped ones.

        Raises FileNotFoundError for a missing path and ValueError for a
        directory without Parquet files or a file that is not Parquet.
        """
        path = os.fspath(src)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or directory")
        if os.path.isdir(path):
            names, skipped = _discover(path)
            paths = [os.path.join(path, *n.split("/")) for n in names]
        else:
            names, skipped, paths = [os.path.basename(path)], [], [path]
        if skipped:
            warnings.warn(_skipped_message(path, skipped), UserWarning, stacklevel=3)
            _log.debug("skipped under %s: %s", path, ", ".join(skipped))
        if not names:
            raise ValueError(
                f"{path} holds no Parquet files"
                + (f" ({_skipped_message(path, skipped)})" if skipped else "")
            )
        files = tuple(_open_file(p, n) for p, n in zip(paths, names))
        source = cls(path=path, files=files, skipped=tuple(skipped))
        _log.info("%s: %s Parquet file(s), %s rows", path, f"{len(files):,}", f"{source.rows:,}")
        return source

    @property
    def rows(self) -> int:
        """Rows (documents) of all the files, from their footers."""
        return sum(f.rows for f in self.files)

    def spec(
        self,
        *,
        columns: str | Sequence[str] | None = None,
        pad_value: float | Mapping[str, float] | None = None,
        position_ids: bool = False,
    ) -> OutputSpec:
        """The output spec, its columns checked in every file.

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
        spec = OutputSpec.for_schema(
            self.files[0].schema, columns=columns, pad_value=pad_value, position_ids=position_ids
        )
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

        A batch holds about ``batch_tokens`` tokens (from the files'
        metadata), within 16 and 8192 rows.
        """
        names = list(spec.columns)
        for f in self.files:
            with pq.ParquetFile(f.path, pre_buffer=False, buffer_size=_READ_BUFFER) as pf:
                rows = _batch_rows(pf.metadata, names[0], batch_tokens)
                _log.debug("reading %s: %s rows in batches of %s", f.path, f"{f.rows:,}", rows)
                reader = pf.iter_batches(batch_size=rows, columns=names)
                while True:
                    try:
                        batch = next(reader, None)
                    except (pa.ArrowException, OSError) as exc:
                        raise ValueError(
                            f"cannot read {f.path}: {_one_line(exc).rstrip('.')} "
                            f"(the file may be damaged)"
                        ) from None
                    if batch is None:
                        break
                    if batch.num_rows:
                        yield _conform(batch, spec.schema)

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
                document_lengths(pa.Table.from_batches([batch]), spec.columns, totals["documents"])
            )
            totals["documents"] += batch.num_rows
            totals["tokens"] += int(out[-1].sum())
            if progress is not None:
                progress(dict(totals))
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


def _skipped_message(path: str, skipped: Sequence[str]) -> str:
    shown = ", ".join(skipped[:_SHOWN])
    more = f" and {len(skipped) - _SHOWN} more" if len(skipped) > _SHOWN else ""
    return (
        f"{path}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} whose "
        f"names start with '_' or '.' (the Parquet dataset convention): {shown}{more}"
    )


def _open_file(path: str, name: str) -> SourceFile:
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path} is not a Parquet file ({_one_line(exc)})") from None
    return SourceFile(
        path=path, name=name, size=os.path.getsize(path), rows=meta.num_rows, schema=schema
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


def _batch_rows(meta: pq.FileMetaData, column: str, batch_tokens: int) -> int:
    """Rows per batch for about ``batch_tokens`` tokens of ``column``."""
    values = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema.split(".")[0] == column:
                values += chunk.num_values  # tokens, plus one per empty list
                break
    per_row = max(values / max(meta.num_rows, 1), 1.0)
    return int(min(max(batch_tokens / per_row, _MIN_BATCH_ROWS), _MAX_BATCH_ROWS))


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch``'s columns of ``schema``, in its order and types (list or large_list)."""
    arrays = []
    for field in schema:
        arr = batch.column(batch.schema.get_field_index(field.name))
        arrays.append(arr if arr.type == field.type else arr.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without control characters."""
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else "?" for c in text) or type(exc).__name__
