"""A map-style dataset over packed shards, memory-mapped and pinned to one run:
Arrow shards in place, Parquet shards through Arrow copies."""

from __future__ import annotations

import hashlib
import operator
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._arrow import is_list_type
from .._atomic import atomic_path
from .._optional import requires
from .._validate import as_optional_path, as_path
from ..parquet import _fs
from ..parquet._remote import read_remote_manifest, run_id_at, shard_uri
from ..parquet.manifest import (
    RUN_KEY,
    file_sha256,
    manifest_path,
    output_format,
    read_manifest,
    run_id_of,
)
from ..table import SEQ_LENGTHS

with requires("torch", needed_by="bfpack.torch"):
    from torch.utils.data import Dataset

#: The environment variable naming the root of :class:`PackedDataset`'s
#: Arrow copies, when no ``cache_dir=`` is given.
CACHE_ENV = "BFPACK_CACHE_DIR"
#: The entries of a directory that records no run id (Parquet shards without
#: a manifest): keyed by their shard's bytes alone.
_NO_RUN = "no-run-id"
#: Schema metadata keys of an Arrow copy: the run and the shard bytes it holds.
_RUN_KEY = b"bfpack.run_id"
_SHA_KEY = b"bfpack.sha256"
#: Rows per record batch of an Arrow copy.
_BATCH_ROWS = 1024


class _Shard(NamedTuple):
    """A shard of the run a dataset is pinned to."""

    path: str  # the shard file in the packed directory
    sha256: str  # of its bytes, as the manifest records them (or as read at opening)
    entry: str  # the Arrow file mapped: <cache root>/<run id>/<sha256>.arrow, or ``path``


class PackedDataset(Dataset):
    """A map-style dataset over a packed directory, memory-mapped, pinned to one run.

    Parameters
    ----------
    path : path
        A directory of packed shards, as ``bfpack pack`` writes it (shards
        in the order of its manifest ``.bfpack.json``; without one, every
        ``*.parquet`` file in name order), in either format
        (``--format parquet`` or ``arrow``). Or the URI of a Parquet output on
        an object store (``s3://...``): the shards its committed manifest
        lists are copied into the cache, nothing is written to the store.
    columns : list of str, optional
        The columns each row holds (default: all but carried columns of
        other values than numbers, such as ``--carry url``'s strings).
        ``seq_lengths`` is always kept: :class:`PackedCollator` needs it.
    cache_dir : path, optional
        The root of the Arrow copies of Parquet shards (an Arrow output
        needs none). Default: the environment
        variable ``BFPACK_CACHE_DIR`` (:data:`CACHE_ENV`), else
        ``$XDG_CACHE_HOME/bfpack``, else ``~/.cache/bfpack``. Nothing is
        ever written inside ``path``.

    Raises
    ------
    NotADirectoryError
        ``path`` is not a directory.
    ValueError
        ``path`` holds no shard, a damaged manifest, shards that are not
        packed rows or whose bytes differ from their manifest's SHA-256.
    OSError
        The cache root cannot be written.
    RuntimeError
        ``path`` was rewritten again and again while it was being opened.

    Notes
    -----
    The shards of an output of ``format="arrow"`` are mapped into memory
    where they are, with no copy and no cache: their SHA-256 is checked
    against the manifest once, when the dataset is opened, and every
    process that maps a shard checks that it was written by the run the
    dataset is pinned to (the run id in the shard's schema metadata).

    Parquet is compressed and cannot be read a row at a time, so each shard
    is copied once into an uncompressed Arrow file, which is then mapped
    into memory: a row is a zero-copy numpy view of the mapped file, found
    by a binary search over the record batches, and the process's memory
    does not grow with the dataset (the operating system pages the file in
    and out).

    The copy of a shard is ``<cache_dir>/<run id>/<sha256>.arrow``: the run
    id and the shard's SHA-256 recorded in the manifest (a directory
    without them is keyed by the SHA-256 of its shards as read). A copy is
    made from the bytes whose hash matches the manifest, under a temporary
    name renamed into place, and never changes: two outputs never share a
    copy, and processes that open the dataset at once (ranks, workers)
    never read a torn or foreign one. Remove the cache root, or a run's
    folder in it, to reclaim the space.

    The dataset is pinned to the run it opened (:attr:`run_id`): every
    process and every epoch reads exactly that run's rows, also after
    ``path`` is overwritten (by ``bfpack pack --overwrite``), as long as
    its copies exist. A worker that finds a copy gone makes it again while
    ``path`` still holds the run; once ``path`` holds another run, it raises
    RuntimeError naming both: open a new PackedDataset to read the new run.
    Rows of two runs are never mixed.

    Rows are dicts of read-only numpy arrays, one per column. The dataset
    pickles without its data (a DataLoader worker or another rank maps the
    files again), holds no iteration state, and so works with any sampler:
    ``DistributedSampler``, or a sampler that resumes from a step.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        given = _fs.local_path(as_path(path, "path"))
        # A store's output is read through its manifest, each shard copied
        # into the cache (outside it) as a local one is.
        self.path = given if _fs.is_uri(given) else os.path.abspath(given)
        if not _fs.is_uri(self.path) and not os.path.isdir(self.path):
            raise NotADirectoryError(
                f"{self.path} is not a directory; PackedDataset reads the output "
                f"directory of bfpack pack (or pack_parquet)"
            )
        self.cache_dir = cache_root(as_optional_path(cache_dir, "cache_dir"))
        self._batch_rows = _BATCH_ROWS  # a worker copies with the layout indexed here
        for attempt in range(_OPEN_ATTEMPTS):
            #: The run id of the output the dataset reads (None for a
            #: directory that records none).
            self.run_id, self.format, self._shards = _pin(self.path, self.cache_dir)
            try:
                layouts = [self._layout_of(shard) for shard in self._shards]
                break
            except _RunMoved:
                if attempt == _OPEN_ATTEMPTS - 1:
                    raise RuntimeError(
                        f"{self.path} was rewritten {_OPEN_ATTEMPTS} times while "
                        f"PackedDataset opened it; open it again once bfpack pack is done"
                    ) from None
        self.files = [shard.entry for shard in self._shards]
        schema = layouts[0][0]
        for shard, (other, _) in zip(self._shards, layouts):
            if not other.equals(schema):
                raise ValueError(
                    f"{shard.path} holds columns {other.names} of other types than the "
                    f"first shard; the shards of one packed directory share a schema"
                )
        self.columns = _packed_columns(schema, columns, self.path)
        self._schema = schema
        rows = [n for _, batch_rows in layouts for n in batch_rows]
        self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self._batches: list[dict[str, tuple[np.ndarray, np.ndarray]]] | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {index} is out of range for a dataset of {n} rows")
        if self._batches is None:
            self._batches = self._map_batches()
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        j = i - int(self._starts[b])
        return {
            name: values[offsets[j] : offsets[j + 1]]
            for name, (offsets, values) in self._batches[b].items()
        }

    def __getstate__(self) -> dict[str, Any]:
        # The mapped views stay behind; the next process maps the copies anew
        # (the same files: the state names the run and each copy).
        return {**self.__dict__, "_batches": None}

    def __repr__(self) -> str:
        return (
            f"PackedDataset({self.path!r}, rows={len(self)}, columns={list(self.columns)}, "
            f"shards={len(self.files)})"
        )

    def _reader(self, shard: _Shard) -> pa.ipc.RecordBatchFileReader:
        """The mapped copy of ``shard``, made first if missing (only from this run)."""
        reader = _open_copy(shard, self.run_id)
        if reader is not None:
            return reader
        if self.run_id is not None and _run_id(self.path) != self.run_id:
            raise _RunMoved
        try:
            _copy(shard, self.run_id, self._batch_rows)
        except FileNotFoundError:
            if self.run_id is not None and _run_id(self.path) != self.run_id:
                raise _RunMoved from None
            raise FileNotFoundError(
                f"{shard.path} is missing: the output is damaged; check it with: "
                f"bfpack verify {self.path}"
            ) from None
        except _ShardChanged as exc:
            if self.run_id is not None and _run_id(self.path) != self.run_id:
                raise _RunMoved from None
            raise ValueError(
                f"{shard.path} does not hold the bytes recorded for it (SHA-256 "
                f"{exc.args[0]}, not {shard.sha256}): the output is damaged or was "
                f"changed by hand; check it with: bfpack verify {self.path}"
            ) from None
        reader = _open_copy(shard, self.run_id)
        if reader is None:
            raise OSError(f"{shard.entry} cannot be read back after it was written")
        return reader

    def _record_batches(
        self, shard: _Shard, *, check: bool = False
    ) -> tuple[pa.Schema, list[pa.RecordBatch]]:
        """The schema and the record batches of ``shard``, mapped: the shard
        itself (Arrow; its bytes checked against the manifest's SHA-256 with
        ``check``) or its copy (Parquet)."""
        if self.format == "arrow":
            return _map_arrow(shard, self.run_id, self.path, check=check)
        reader = self._reader(shard)
        return reader.schema, [reader.get_batch(i) for i in range(reader.num_record_batches)]

    def _layout_of(self, shard: _Shard) -> tuple[pa.Schema, list[int]]:
        """The schema of ``shard``'s mapped file and the rows of its record batches."""
        schema, batches = self._record_batches(shard, check=True)
        return schema, [batch.num_rows for batch in batches]

    def column(self, name: str) -> pa.ChunkedArray:
        """Column ``name`` (one of :attr:`columns`) of every row, in row order.

        Views of the mapped files, as the rows are: no copy of the values.
        :class:`BalancedSampler` reads the rows' costs from
        ``column("seq_lengths")``.
        """
        if name not in self.columns:
            raise ValueError(f"{name!r} is not one of the dataset's columns {list(self.columns)}")
        batches = self._mapped_record_batches()
        chunks = [batch.column(name) for batch in batches]
        return pa.chunked_array(chunks, type=self._schema.field(name).type)

    def _map_batches(self) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Per record batch of every copy, ``(offsets, values)`` numpy views of
        each list column, over the memory-mapped copies."""
        batches = []
        for batch in self._mapped_record_batches():
            views = {}
            for name in self.columns:
                arr = batch.column(name)
                views[name] = (
                    arr.offsets.to_numpy(),
                    arr.values.to_numpy(zero_copy_only=True),
                )
            batches.append(views)
        return batches

    def _mapped_record_batches(self) -> list[pa.RecordBatch]:
        """The record batches of every shard's mapped file, checked to hold the
        rows the dataset was opened with."""
        batches = []
        for shard in self._shards:
            try:
                _, shard_batches = self._record_batches(shard)
            except _RunMoved:
                gone = (
                    f"its shard {shard.path} is another run's"
                    if self.format == "arrow"
                    else f"the Arrow copy {shard.entry} is gone"
                )
                raise RuntimeError(
                    f"this PackedDataset reads run {self.run_id} of {self.path}, but "
                    f"{gone} and {self.path} now holds "
                    f"{_describe_run(_run_id(self.path))}; open a new PackedDataset to "
                    f"read the new run (rows of two runs are never mixed)"
                ) from None
            batches.extend(shard_batches)
        rows = [batch.num_rows for batch in batches]
        if rows != np.diff(self._starts).tolist():
            where = (
                f"the shards of run {self.run_id} in {self.path}"
                if self.format == "arrow"
                else f"the Arrow copies in {self.cache_dir} of run {self.run_id} of {self.path}"
            )
            raise RuntimeError(
                f"{where} hold other rows than when the dataset was opened; "
                + (
                    f"the output is damaged: check it with bfpack verify {self.path}"
                    if self.format == "arrow"
                    else "remove that run's folder and open the dataset again"
                )
            )
        return batches


#: Openings of a directory that is rewritten meanwhile, before giving up.
_OPEN_ATTEMPTS = 3


class _RunMoved(Exception):
    """The packed directory now holds another run than the one pinned."""


class _ShardChanged(Exception):
    """A shard's bytes hash to another SHA-256 than the one recorded (``args[0]``)."""


def cache_root(cache_dir: str | None = None) -> str:
    """The root of :class:`PackedDataset`'s Arrow copies, as an absolute path.

    ``cache_dir`` if given, else the environment variable
    ``BFPACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/bfpack``, else
    ``~/.cache/bfpack``.
    """
    if cache_dir:
        return os.path.abspath(cache_dir)
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bfpack")


def _describe_run(run_id: str | None) -> str:
    return "no bfpack output" if run_id is None else f"run {run_id}"


_RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _pin(path: str, root: str) -> tuple[str | None, str, list[_Shard]]:
    """The run id of the packed directory ``path``, its format and its shards,
    each with its SHA-256 and the Arrow file to map: its copy under ``root``
    (Parquet), or itself (Arrow)."""
    run_id: str | None = None
    fmt = "parquet"
    remote = _fs.is_uri(path)
    manifest: dict[str, Any] | None = None
    if remote:
        manifest = read_remote_manifest(path)[0]
    elif manifest_path(path) is not None:
        manifest = read_manifest(path)
    if manifest is None:
        recorded: list[tuple[str, str | None]] = [
            (n, None) for n in sorted(os.listdir(path)) if n.endswith(".parquet")
        ]
    else:
        run_id = manifest.get("run_id")
        if run_id is not None and not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
            raise ValueError(
                f"the manifest of {path} has a run_id of {run_id!r}, not a run id; the "
                f"output is damaged: check it with bfpack verify {path}"
            )
        recorded = [_recorded_shard(s, path) for s in manifest["shards"]]
        fmt = output_format(manifest)
        if remote and fmt == "arrow":
            raise ValueError(
                f"{path} is an Arrow output on an object store, which PackedDataset maps "
                f"only from a local disk: copy it to one (or pack to Parquet on the store)"
            )
    if not recorded:
        raise ValueError(f"{path} holds no Parquet shard; pass a directory that bfpack pack wrote")
    folder = os.path.join(root, run_id or _NO_RUN)
    shards = []
    for name, sha in recorded:
        shard = shard_uri(path, manifest or {}, name) if remote else os.path.join(path, name)
        if fmt == "arrow":
            if sha is None:
                raise ValueError(
                    f"the manifest of {path} records no SHA-256 for {name}; the output is "
                    f"damaged: check it with bfpack verify {path}"
                )
            shards.append(_Shard(shard, sha, shard))  # mapped in place: no copy
            continue
        if sha is None:
            sha = file_sha256(shard)  # no record: the copy holds the bytes read now
        shards.append(_Shard(shard, sha, os.path.join(folder, f"{sha}.arrow")))
    return run_id, fmt, shards


def _recorded_shard(record: Any, path: str) -> tuple[str, str | None]:
    """``(file name, sha256 or None)`` of a manifest's shard record."""
    name = record.get("file") if isinstance(record, dict) else None
    sha = record.get("sha256") if isinstance(record, dict) else None
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or os.path.basename(name) != name
        or (sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)))
    ):
        raise ValueError(
            f"the manifest of {path} lists a shard {record!r} that is not a file name in "
            f"it with a SHA-256; the output is damaged: check it with bfpack verify {path}"
        )
    return name, sha


def _map_arrow(
    shard: _Shard, run_id: str | None, path: str, *, check: bool
) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """The schema and record batches of the Arrow shard ``shard`` of the run
    ``run_id`` of ``path``, mapped in place (views of the file, no copy).

    With ``check``, the bytes mapped are hashed first and must be the
    manifest's. Raises _RunMoved when the file is another run's (``path``
    overwritten since the dataset was opened), ValueError when it is
    damaged.
    """

    def damaged(why: str) -> ValueError:
        return ValueError(
            f"{shard.path} {why}: the output is damaged or was changed by hand; check it "
            f"with: bfpack verify {path}"
        )

    try:
        # One mapping: the bytes hashed are the bytes read.
        data = pa.memory_map(shard.path).read_buffer()
    except FileNotFoundError:
        if run_id is not None and run_id_of(path) != run_id:
            raise _RunMoved from None
        raise FileNotFoundError(
            f"{shard.path} is missing: the output is damaged; check it with: bfpack verify {path}"
        ) from None
    if check:
        digest = hashlib.sha256(memoryview(data)).hexdigest()
        if digest != shard.sha256:
            if run_id is not None and run_id_of(path) != run_id:
                raise _RunMoved
            raise damaged(f"does not hold the bytes recorded for it (SHA-256 {digest})")
    try:
        reader = pa.ipc.open_stream(data)
        written_by = (reader.schema.metadata or {}).get(RUN_KEY)
        if written_by != (run_id or "").encode():
            if run_id_of(path) != run_id:
                raise _RunMoved
            raise damaged(f"was written by another run than {run_id}, its manifest's")
        return reader.schema, list(reader)
    except pa.ArrowInvalid as exc:
        raise damaged(f"cannot be read as an Arrow stream ({exc})") from None


def _open_copy(shard: _Shard, run_id: str | None) -> pa.ipc.RecordBatchFileReader | None:
    """The mapped Arrow copy of ``shard`` of the run ``run_id``; None if it is
    missing, unreadable or holds something else."""
    try:
        reader = pa.ipc.open_file(pa.memory_map(shard.entry))
    except (OSError, pa.ArrowInvalid):
        return None
    metadata = reader.schema.metadata or {}
    if (
        metadata.get(_RUN_KEY) != (run_id or "").encode()
        or metadata.get(_SHA_KEY) != shard.sha256.encode()
    ):
        return None
    return reader


def _copy(shard: _Shard, run_id: str | None, batch_rows: int) -> None:
    """Write the Arrow copy of ``shard``, from bytes whose SHA-256 is the
    recorded one (else raise _ShardChanged), under a temporary name renamed
    into place."""
    folder = os.path.dirname(shard.entry)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the Arrow cache {folder} ({exc.strerror}); pass a writable "
            f"cache_dir= or set {CACHE_ENV}"
        ) from None
    # One mapping of the file: the bytes hashed are the bytes parsed, even if
    # the directory is swapped for another run meanwhile.
    with atomic_path(shard.entry) as tmp, _open_shard(shard.path) as source:
        data = source.read_buffer()
        digest = hashlib.sha256(memoryview(data)).hexdigest()
        if digest != shard.sha256:
            raise _ShardChanged(digest)
        parquet = pq.ParquetFile(pa.BufferReader(data))
        metadata = {_RUN_KEY: (run_id or "").encode(), _SHA_KEY: shard.sha256.encode()}
        schema = parquet.schema_arrow.with_metadata(metadata)
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in parquet.iter_batches(batch_size=batch_rows):
                writer.write_batch(batch)


def _run_id(path: str) -> str | None:
    """The run id of the output at ``path`` (a directory, or a store's URI)."""
    return run_id_at(path) if _fs.is_uri(path) else run_id_of(path)


def _open_shard(path: str) -> Any:
    """A shard mapped (local) or read whole (a store's object)."""
    if _fs.is_uri(path):
        return pa.BufferReader(_fs.read_bytes(path))
    return pa.memory_map(path)


def _packed_columns(schema: pa.Schema, columns: Any, path: str) -> tuple[str, ...]:
    if SEQ_LENGTHS not in schema.names:
        raise ValueError(
            f"{path} holds no {SEQ_LENGTHS!r} column (columns: {schema.names}); its rows "
            f"are not packed by bfpack"
        )
    if columns is None:
        # Every column of numbers: carried columns of strings (--carry url)
        # have no numpy view, and a training step does not read them.
        names = [f.name for f in schema if _of_numbers(f.type) is not False]
    elif isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise TypeError(f"columns must be a list of column names, got {columns!r}")
    else:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"columns {missing} are not in {path} (its columns: {schema.names})")
        names = list(dict.fromkeys([*columns, SEQ_LENGTHS]))
    for name in names:
        t = schema.field(name).type
        if not is_list_type(t):
            raise TypeError(
                f"column {name!r} of {path} is {t}, not a list; "
                f"a packed directory holds list columns only"
            )
        if not _of_numbers(t):
            raise TypeError(
                f"column {name!r} of {path} is {t}: its values have no numpy view; "
                f"leave it out of columns= (read it with pyarrow.parquet)"
            )
    return tuple(names)


def _of_numbers(t: pa.DataType) -> bool | None:
    """Whether the list type ``t`` holds numbers (None: not a list)."""
    if not is_list_type(t):
        return None
    v = t.value_type
    return pa.types.is_integer(v) or pa.types.is_floating(v)
