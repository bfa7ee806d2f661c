"""Checking a packed output against its manifest and, optionally, its source.

:func:`verify` (``bfpack verify DST [--source SRC]``) reads every shard
batch by batch, so memory stays bounded whatever the size of the output
(and whatever the manifest says). One job per unit: ``_Snapshot`` pins
one run's directory, ``bfpack.parquet.manifest.check_manifest`` checks the
manifest's values, ``_check_listing`` the directory's files,
``_OutputCheck`` each shard (bytes, schema against the options),
``_RowCheck`` each row, ``_SourceCheck`` the source, ``_check_method`` the
packing against the recorded method, and ``_Digest`` adds up what is
compared.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._arrow import is_list_type, primitive_view
from .._validate import as_callable, value_dtype
from ..analysis import sequences_of_lengths
from ..methods import METHODS
from ..stream import StreamPacker, length_windows
from ..table import DOC_INDEX, DOC_OFFSET, POSITION_IDS, SEQ_LENGTHS, aligned_lengths
from ._fs import is_uri, local_path
from ._remote import RemoteSnapshot
from ._shards import datasets_files
from ._source import ParquetSource
from ._staging import DestinationBusyError
from .manifest import (
    DATASETS_FILES,
    MANIFEST,
    RUN_KEY,
    Recorded,
    ShardEntry,
    check_manifest,
    read_manifest,
    run_id_of,
)

__all__ = ["Verification", "verify"]

#: Tokens per batch read (memory: about 40 bytes per token while hashing).
_BATCH_TOKENS = 1 << 20
#: Problems listed at most; the rest are counted.
_MAX_PROBLEMS = 50
#: Bytes read at a time while hashing a shard.
_CHUNK = 1 << 20

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_log = logging.getLogger(__name__)

#: The signature of a progress callback: it gets a dict of running totals.
Progress = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found.

    Attributes
    ----------
    dst : str
        The output checked.
    source : str or None
        The source it was compared with, if any.
    problems : tuple of str
        Every mismatch found (empty: the output checks out).
    checked : tuple of str
        What was checked, one line each.
    shards, rows, tokens : int
        Shards, rows (sequences) and packed tokens read from the output.
    unread : int
        Shards that could not be read (damaged, truncated): their rows and
        tokens are not in ``rows`` and ``tokens``.
    """

    dst: str
    source: str | None
    problems: tuple[str, ...]
    checked: tuple[str, ...]
    shards: int
    rows: int
    tokens: int
    unread: int = 0

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def report(self) -> str:
        """A human-readable report: the verdict, then problems or what was checked."""
        head = (
            f"{self.dst}: {'OK' if self.ok else 'MISMATCH'}: {self.shards:,} shard(s), "
            f"{self.rows:,} rows, {self.tokens:,} tokens"
            + (
                f" (not counting {self.unread} shard(s) that could not be read)"
                if self.unread
                else ""
            )
        )
        lines = self.problems if self.problems else self.checked
        bullet = "  problem: " if self.problems else "  ok: "
        return "\n".join([head, *(bullet + line for line in lines)])


def verify(
    dst: str | os.PathLike,
    source: str | os.PathLike | None = None,
    *,
    progress: Progress | None = None,
) -> Verification:
    """Check a directory written by :func:`bfpack.pack_parquet`.

    Parameters
    ----------
    dst : path
        The output directory, or its URI on an object store (then the
        committed manifest and the shards it lists, from its run prefix).
    source : path, optional
        The Parquet file or directory it was packed from (or its URI).
    progress : callable, optional
        Called at the start of each stage and after every batch read, with
        a dict of running totals: ``stage`` ``"output"`` with ``rows`` and
        ``tokens`` read from the shards and ``total_rows`` (the manifest's),
        then, with ``source``, ``stage`` ``"source"`` with ``documents`` and
        ``tokens`` read and ``total_documents`` (the rows in the source
        files' footers).

    Returns
    -------
    Verification
        ``ok`` (also its truth value), the problems found, and a report.

    Raises
    ------
    FileNotFoundError
        ``dst`` holds no manifest, or ``source`` does not exist.
    ValueError
        The manifest is unreadable or damaged (a value of the wrong type or
        range, a shard named outside ``dst``, statistics that disagree with
        the options: one line names the field), or the source cannot be
        read as it was packed (a packed column missing, rows whose columns
        disagree).
    bfpack.parquet.DestinationBusyError
        ``dst`` was replaced by another run (``--overwrite``) while each of
        3 outputs in turn was checked: it kept changing, and nothing is
        known of its health (``bfpack verify`` exits 3).

    Notes
    -----
    One run is checked at a time: the directory ``dst`` names is opened
    once and every file is read through it, so an overwrite that swaps a
    new output in meanwhile cannot mix two runs. If problems are found and
    ``dst`` has been replaced since (another directory, another run id),
    they are not reported: the new output is checked instead.

    Every value of the manifest is checked first (types, ranges, shard
    names that are plain file names in ``dst``, a known method, statistics
    that agree with each other and with ``seq_len``). Then, against it:

    - the directory holds exactly the listed shards (a file of another run,
      or a missing one, is a problem); a shard is read only as a file in
      ``dst``, never through a symbolic link;
    - for an output of ``format="arrow"``: ``state.json`` and
      ``dataset_info.json`` are there and describe the listed shards, in
      order, and their features, as ``datasets.Dataset.save_to_disk``
      would; each shard is an Arrow IPC stream written by the manifest's
      run (the run id in its schema metadata);
    - each shard's size and SHA-256, and its row count (at most
      ``rows_per_shard`` if recorded); a shard that cannot be read is said
      so, with the rows the manifest records in it;
    - every shard has the same schema, with exactly the recorded columns
      (``position_ids`` if and only if recorded);
    - every row is well formed: it holds at least one piece, every piece
      (``seq_lengths``) is 1 to ``seq_len`` tokens, they add up to at most
      ``seq_len``, each packed column holds that many tokens (or exactly
      ``seq_len``, padding included, when padded), padding tokens equal
      the pad value and ``position_ids`` restart at 0 at every piece;
    - rows and packed tokens add up to the manifest's statistics;
    - with ``method="concat"``, every row is full but the last of each
      window (the recorded method must be the one that packed the rows).

    With ``source``, also:

    - the source's files are the manifest's inputs (path, size, rows, format and
      content hash: ``footer_sha256`` or ``ends_sha256``);
    - its documents and tokens are the manifest's;
    - each packed column of the output holds every piece of every source
      document exactly once, tokens in order: pieces are what the method
      cuts (documents longer than ``seq_len`` cut into ``seq_len``-token
      chunks plus the remainder with ``long_docs="split"``, their first
      ``seq_len`` tokens with ``"truncate"``), and the output's pieces are
      read from ``seq_lengths``. Compared: the number of pieces of each
      length, and per column the token count and an order-independent hash
      of the multiset of pieces (each piece hashed from its tokens and
      their positions in it, the piece hashes summed modulo 2**64);
    - the recorded method and options reproduce the packing: the source's
      document lengths, packed again in the same windows, give the
      output's sequences (compared: their number, and a hash of the
      multiset of rows, each its piece lengths in order; for an output of
      :func:`bfpack.dask.pack_parquet`, their number).

    - with provenance (``doc_index``, ``doc_offset``), that every piece's
      tokens are its document's from that offset on (an order-independent
      hash of every token of the first packed column with its document and
      position); with separators, the source's documents are compared with
      their separators appended.

    Not verified: without provenance, which document a piece came from
    (swapping two pieces of equal content between documents, or
    reordering a document's pieces, goes unseen); the values of carried
    columns (only that each row holds one per piece); and the packing's
    quality (whether best fit was followed). The hash detects
    loss, duplication and corruption with overwhelming probability, but it
    is not cryptographic: it does not resist a forger. Methods that cut
    wherever a sequence ends (``"concat"``) are compared token by token
    instead: the multiset of tokens of each column, with counts.
    """
    dst = local_path(os.fspath(dst))
    progress = as_callable(progress, "progress")
    src = None if source is None else local_path(os.fspath(source))
    for _ in range(_ATTEMPTS):
        with RemoteSnapshot(dst) if is_uri(dst) else _Snapshot(dst) as snapshot:
            try:
                result: Verification | None = _verify_snapshot(snapshot, src, progress)
            except (ValueError, OSError, pa.ArrowException):
                if not snapshot.replaced():
                    raise
                result = None  # read across a swap: an error of the moment
            # Problems count only if the run checked is still the output:
            # an overwrite swaps the directory and removes the old one.
            if result is not None and (result.ok or not snapshot.replaced()):
                return result
        _log.info("%s: replaced by another run while it was checked; checking it again", dst)
    raise DestinationBusyError(
        f"{dst} kept changing while it was checked (replaced {_ATTEMPTS} times by another "
        f"bfpack run); verify it once that run has finished"
    )


#: Outputs checked in turn while DST keeps being replaced, at most.
_ATTEMPTS = 3


class _Snapshot:
    """One output, pinned: DST's directory opened once and every file read
    through it, so that an overwrite, which swaps another directory in,
    cannot mix two runs (the old run's files stay readable until removed)."""

    def __init__(self, dst: str) -> None:
        self.dst = dst
        try:
            self.fd = os.open(dst, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(
                f"{dst} is not a bfpack output: it holds no {MANIFEST}"
                + (" (not a directory)" if os.path.lexists(dst) else " (no such directory)")
            ) from None
        try:
            self.stat = os.fstat(self.fd)
            self.manifest = read_manifest(dst, dir_fd=self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        self.manifest_path = os.path.join(dst, MANIFEST)
        run_id = self.manifest.get("run_id")
        self.run_id = run_id if isinstance(run_id, str) else None

    def __enter__(self) -> _Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        """The entries of the directory."""
        return os.listdir(self.fd)

    def open(self, name: str) -> BinaryIO:
        """The file ``name`` of the directory, opened for reading (not through a link)."""
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=self.fd)
        return os.fdopen(fd, "rb")

    def replaced(self) -> bool:
        """Whether DST is no longer the directory (and the run) opened."""
        try:
            now = os.stat(self.dst)
        except OSError:
            return True
        return not os.path.samestat(now, self.stat) or run_id_of(self.dst) != self.run_id


class _Findings:
    """The problems found (at most :data:`_MAX_PROBLEMS` listed) and what was checked."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: list[str] = []

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("... and more problems (only the first 50 are listed)")

    def note(self, text: str) -> None:
        self.checked.append(text)


def _verify_snapshot(
    snapshot: _Snapshot | RemoteSnapshot, src: str | None, progress: Progress | None
) -> Verification:
    """Check one pinned output (and its source): the whole of :func:`verify` but retries."""
    recorded = check_manifest(snapshot.manifest, snapshot.manifest_path)
    found = _Findings()
    _check_listing(snapshot, recorded, found)
    output = _OutputCheck(snapshot, recorded, found, progress)
    output.run()
    source = None
    if src is not None:
        source = _SourceCheck(src, recorded, found, progress).run(output.digest)
    _check_method(recorded, output, source, found)
    return Verification(
        dst=snapshot.dst,
        source=src,
        problems=tuple(found.problems),
        checked=tuple(found.checked),
        shards=output.shards,
        rows=output.rows,
        tokens=output.tokens,
        unread=output.unread,
    )


def _report(progress: Progress | None, stage: str, done: int, total: int, tokens: int) -> None:
    if progress is not None:
        unit = "rows" if stage == "output" else "documents"
        progress({"stage": stage, unit: done, f"total_{unit}": total, "tokens": tokens})


# -- the directory against the manifest ------------------------------------


def _check_listing(
    snapshot: _Snapshot | RemoteSnapshot, recorded: Recorded, found: _Findings
) -> None:
    """The directory holds exactly the listed shards (and, for an Arrow
    output, the two files of the ``datasets`` layout)."""
    listed = [s.file for s in recorded.shards]
    own = set(DATASETS_FILES) if recorded.format == "arrow" else set()
    present = {n for n in snapshot.names() if n != MANIFEST and n not in own}
    for name in sorted(own):
        if not snapshot.exists(name):
            found.problem(f"{name} is missing: datasets.load_from_disk cannot open the output")
    for name in listed:
        if name not in present:
            found.problem(f"shard {name} is listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        found.problem(f"{name} is not in the manifest (a file of another run?)")
    if len(listed) != len(set(listed)):
        found.problem("the manifest lists a shard twice")
    found.note(f"the directory holds exactly the {len(listed)} shard(s) listed")


@dataclass
class _Digest:
    """Per-column piece hashes and counts, added up over batches."""

    by_piece: bool
    tokens: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, int] = field(default_factory=dict)
    # Pieces of each length; sized by the longest piece seen, not by the
    # manifest's seq_len, which is not trusted with memory.
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Provenance: every token of the first packed column with its document
    # and its position there, hashed as a multiset.
    placed: int = 0

    def add_placed(
        self,
        values: np.ndarray,
        starts: np.ndarray,
        lens: np.ndarray,
        doc: np.ndarray,
        offset: np.ndarray,
    ) -> None:
        """Add the pieces ``values[starts[i]:starts[i] + lens[i]]``, piece ``i``
        from token ``offset[i]`` of document ``doc[i]``."""
        self.placed = (self.placed + _placed_hash(values, starts, lens, doc, offset)) % 2**64

    def add(self, column: str, values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> None:
        """Add the pieces ``values[starts[i]:starts[i] + lens[i]]`` of ``column``."""
        self.tokens[column] = self.tokens.get(column, 0) + int(lens.sum())
        hash_of = _piece_hash if self.by_piece else _token_hash
        h = hash_of(values, starts, lens)
        self.hashes[column] = (self.hashes.get(column, 0) + h) % 2**64

    def add_lengths(self, lens: np.ndarray) -> None:
        counts = np.bincount(lens)
        if counts.shape[0] > self.lengths.shape[0]:
            self.lengths = np.pad(self.lengths, (0, counts.shape[0] - self.lengths.shape[0]))
        self.lengths[: counts.shape[0]] += counts


class _OutputCheck:
    """Every listed shard: its bytes, its schema against the options, its rows."""

    def __init__(
        self,
        snapshot: _Snapshot | RemoteSnapshot,
        recorded: Recorded,
        found: _Findings,
        progress: Progress | None,
    ) -> None:
        self.snapshot = snapshot
        self.recorded = recorded
        self.found = found
        self.progress = progress
        self.digest = _Digest(_cuts_by_long_docs(recorded.method))
        self.rows_check = _RowCheck(recorded, found, self.digest)
        self.shards = 0
        self.unread = 0
        self.schema: pa.Schema | None = None

    @property
    def rows(self) -> int:
        return self.rows_check.rows

    @property
    def tokens(self) -> int:
        return self.rows_check.tokens

    def run(self) -> None:
        r = self.recorded
        total = sum(s.rows for s in r.shards)
        _log.info(
            "%s: checking %s shard(s), %s rows", self.snapshot.dst, len(r.shards), f"{total:,}"
        )
        _report(self.progress, "output", 0, total, 0)
        for shard in r.shards:
            self._check_shard(shard, total)
        if r.format == "arrow":
            self._check_datasets_files()
        unsummed = [s.file for s in r.shards if s.sha256 is None or s.bytes is None]
        if unsummed:
            self.found.problem(
                f"the manifest records no size or SHA-256 for {len(unsummed)} shard(s) "
                f"({unsummed[0]}, ...): they cannot be checked"
            )
        self.found.note("shard sizes and SHA-256 match the manifest")
        self.found.note(
            "every shard has the same schema, the columns of the options; every row is well formed"
        )
        if self.unread:
            self.found.note(
                f"rows and tokens not added up: {self.unread} shard(s) could not be read"
            )
            return
        for key, value, what in (
            ("sequences", self.rows, "rows"),
            ("tokens_packed", self.tokens, "packed tokens"),
        ):
            if key in r.stats and r.stats[key] != value:
                self.found.problem(
                    f"the shards hold {value:,} {what}, the manifest's stats {r.stats[key]:,}"
                )
        self.found.note("rows and tokens add up to the manifest's statistics")

    def _not_read(self, shard: ShardEntry, why: str) -> None:
        self.unread += 1
        self.found.problem(
            f"{shard.file}: {why}; its {shard.rows:,} rows (as the manifest records) could "
            f"not be checked"
        )

    def _check_datasets_files(self) -> None:
        """``state.json`` and ``dataset_info.json`` of an Arrow output describe
        its shards, in order, and their schema, as ``save_to_disk`` would."""
        if self.schema is None:
            return
        r = self.recorded
        want = datasets_files(self.schema, [s.file for s in r.shards], r.run_id or "")
        for name, text in want.items():
            try:
                with self.snapshot.open(name) as f:
                    got = json.loads(f.read().decode("utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                continue  # missing: the listing says so; unreadable: compared below
            expected = json.loads(text)
            if name == "state.json":
                got.pop("_fingerprint", None), expected.pop("_fingerprint", None)
            if got != expected:
                self.found.problem(
                    f"{name} does not describe the shards the manifest lists (their names in "
                    f"order, their features) as datasets' save_to_disk would"
                )
        self.found.note("state.json and dataset_info.json describe the shards (datasets layout)")

    def _check_shard(self, shard: ShardEntry, total: int) -> None:
        try:
            f = self.snapshot.open(shard.file)
        except FileNotFoundError:
            return  # the listing says it is missing
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._not_read(shard, "a symbolic link, not a file that bfpack wrote")
            else:
                self._not_read(shard, f"cannot be opened ({exc.strerror})")
            return
        with f:
            self.shards += 1
            why = _bytes_problem(f, shard)
            if why is not None:
                self._not_read(shard, why)  # damaged: its content would only add confusion
                return
            counted = self.rows_check.rows, self.rows_check.tokens
            try:
                if self.recorded.format == "arrow":
                    self._check_arrow(f, shard, total)
                else:
                    self._check_parquet(f, shard, total)
            except (pa.ArrowException, OSError) as exc:
                self.rows_check.rows, self.rows_check.tokens = counted  # only whole shards count
                self._not_read(shard, f"cannot be read ({exc})")

    def _check_parquet(self, f: BinaryIO, shard: ShardEntry, total: int) -> None:
        with pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20) as pf:
            self._check_rows(pf.metadata.num_rows, shard)
            if not self._check_schema(pf.schema_arrow, shard):
                return
            rows = max(1, _BATCH_TOKENS // self.recorded.seq_len)
            self._check_batches(pf.iter_batches(batch_size=rows), shard, total)

    def _check_arrow(self, f: BinaryIO, shard: ShardEntry, total: int) -> None:
        # A stream records no row count up front: the batches are counted as read.
        reader = pa.ipc.open_stream(f)
        run_id = (reader.schema.metadata or {}).get(RUN_KEY, b"").decode("utf-8", "replace")
        if run_id != (self.recorded.run_id or ""):
            self.found.problem(
                f"{shard.file}: written by run {run_id or '(none)'}, not by the manifest's "
                f"run {self.recorded.run_id}"
            )
        if not self._check_schema(reader.schema, shard):
            return
        first = self.rows
        self._check_batches(reader, shard, total)
        self._check_rows(self.rows - first, shard)

    def _check_batches(
        self, batches: Iterator[pa.RecordBatch], shard: ShardEntry, total: int
    ) -> None:
        for batch in batches:
            self.rows_check.check(batch, shard.file)
            _report(self.progress, "output", self.rows, total, self.tokens)

    def _check_rows(self, rows: int, shard: ShardEntry) -> None:
        """The rows of one shard against the manifest and the options."""
        r = self.recorded
        if rows != shard.rows:
            self.found.problem(f"{shard.file}: {rows} rows, the manifest says {shard.rows}")
        if r.rows_per_shard is not None and rows > r.rows_per_shard:
            self.found.problem(
                f"{shard.file}: {rows:,} rows, more than the options' rows_per_shard "
                f"({r.rows_per_shard:,})"
            )

    def _check_schema(self, schema: pa.Schema, shard: ShardEntry) -> bool:
        """The schema of one shard; False if its rows cannot be checked."""
        r = self.recorded
        if self.schema is None:
            self.schema = schema
        elif not schema.equals(self.schema):
            self.found.problem(
                f"{shard.file}: its schema differs from the first shard's "
                f"({schema} against {self.schema})"
            )
        want = [
            *r.columns,
            SEQ_LENGTHS,
            *([POSITION_IDS] if r.position_ids else []),
            *([DOC_INDEX, DOC_OFFSET] if r.provenance else []),
            *r.carry,
        ]
        missing = [c for c in want if c not in schema.names]
        if missing:
            self.found.problem(f"{shard.file}: no column {missing[0]!r}")
            return False
        for name in schema.names:
            if name not in want:
                self.found.problem(
                    f"{shard.file}: a column {name!r} that the manifest's options do not record"
                )
        return True


def _bytes_problem(f: BinaryIO, shard: ShardEntry) -> str | None:
    """What is wrong with the size or SHA-256 of the open shard ``f``, if anything."""
    size = f.seek(0, os.SEEK_END)  # a local file, or a store's object read whole
    f.seek(0)
    if shard.bytes is not None and size != shard.bytes:
        return f"{size:,} bytes, the manifest says {shard.bytes:,} (truncated or damaged)"
    if shard.sha256 is not None:
        h = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            h.update(chunk)
        f.seek(0)
        if h.hexdigest() != shard.sha256:
            return "its SHA-256 differs from the manifest's (damaged?)"
    return None


class _RowCheck:
    """Every row of the shards against the options: pieces, fill, padding, positions."""

    def __init__(self, recorded: Recorded, found: _Findings, digest: _Digest) -> None:
        self.recorded = recorded
        self.found = found
        self.digest = digest
        self.rows = self.tokens = 0
        #: Rows not filled to seq_len, rows whose pieces are not longest
        #: first, and the hash of the multiset of rows' piece lengths: what
        #: the recorded method must reproduce.
        self.not_full = 0
        self.not_longest_first = 0
        self.row_hash = 0

    def check(self, batch: pa.RecordBatch, name: str) -> None:
        """Check one batch of rows and add its pieces to the digest."""
        L = self.recorded.seq_len
        first = self.rows
        self.rows += batch.num_rows
        if not batch.num_rows:
            return
        sl = batch.column(batch.schema.get_field_index(SEQ_LENGTHS))
        if not is_list_type(sl.type) or value_dtype(sl.type) != np.dtype(np.int32):
            self.found.problem(f"{name}: column {SEQ_LENGTHS!r} is {sl.type}, not list<int32>")
            return
        sl_off = sl.offsets.to_numpy().astype(np.int64)
        lens = primitive_view(sl.values, np.dtype(np.int32))[sl_off[0] : sl_off[-1]]
        lens = lens.astype(np.int64)
        per_row = np.diff(sl_off)
        bad = (per_row < 1) | (sl.is_null().to_numpy(zero_copy_only=False))
        if bad.any():
            self.found.problem(f"{name}: row {first + int(np.argmax(bad))} holds no piece")
            return
        if lens.min() < 1 or lens.max() > L:
            self.found.problem(f"{name}: a piece of {int(lens[(lens < 1) | (lens > L)][0])} tokens")
            return
        first_piece = sl_off[:-1] - sl_off[0]
        fill = np.add.reduceat(lens, first_piece)
        if fill.max() > L:
            row = int(np.argmax(fill > L))
            self.found.problem(
                f"{name}: row {first + row} holds {int(fill[row])} tokens > seq_len {L}"
            )
            return
        self.tokens += int(lens.sum())
        self.not_full += int((fill < L).sum())
        later = np.ones(lens.shape[0], dtype=bool)
        later[first_piece] = False  # a piece that follows another in its row
        self.not_longest_first += np.unique(
            np.searchsorted(
                first_piece, np.flatnonzero(later[1:] & (lens[1:] > lens[:-1])) + 1, "right"
            )
        ).shape[0]
        self.row_hash = (self.row_hash + _row_hash(lens, per_row)) % 2**64
        self.digest.add_lengths(lens)
        # Within its row, piece p starts where the pieces before it end.
        ends = np.cumsum(lens)
        within = ends - lens - np.repeat(ends[first_piece] - lens[first_piece], per_row)
        for i, column in enumerate(self.recorded.columns):
            if not self._check_column(batch, name, i, column, (first, fill, lens, per_row, within)):
                return
        if self.recorded.position_ids:
            self._check_positions(batch, name, lens, per_row, within)
        for column in self.recorded.carry:
            self._per_piece(batch, name, column, per_row, None)
        if self.recorded.provenance:
            self._check_provenance(batch, name, lens, per_row, within)

    def _per_piece(
        self,
        batch: pa.RecordBatch,
        name: str,
        column: str,
        per_row: np.ndarray,
        dtype: np.dtype | None,
    ) -> np.ndarray | None:
        """Column ``column``'s values, one per piece of each row (of ``dtype``,
        if given; None if it is not so, said as a problem)."""
        arr = batch.column(batch.schema.get_field_index(column))
        if not is_list_type(arr.type) or (
            dtype is not None
            and (not pa.types.is_integer(arr.type.value_type) or value_dtype(arr.type) != dtype)
        ):
            want = "a list" if dtype is None else f"list<{dtype}>"
            self.found.problem(f"{name}: column {column!r} is {arr.type}, not {want}")
            return None
        if arr.null_count or not np.array_equal(np.diff(arr.offsets.to_numpy()), per_row):
            self.found.problem(f"{name}: column {column!r} does not hold one value per piece")
            return None
        if dtype is None:
            return np.empty(0)
        values = arr.values
        if values.null_count:
            self.found.problem(f"{name}: column {column!r} holds nulls")
            return None
        off = arr.offsets.to_numpy()
        return primitive_view(values, dtype)[off[0] : off[-1]]

    def _check_provenance(
        self,
        batch: pa.RecordBatch,
        name: str,
        lens: np.ndarray,
        per_row: np.ndarray,
        within: np.ndarray,
    ) -> None:
        int64 = np.dtype(np.int64)
        doc = self._per_piece(batch, name, DOC_INDEX, per_row, int64)
        offset = self._per_piece(batch, name, DOC_OFFSET, per_row, int64)
        if doc is None or offset is None:
            return
        if doc.shape[0] and min(doc.min(), offset.min()) < 0:
            self.found.problem(f"{name}: a negative {DOC_INDEX} or {DOC_OFFSET}")
            return
        arr = batch.column(batch.schema.get_field_index(self.recorded.columns[0]))
        starts = np.repeat(arr.offsets.to_numpy().astype(np.int64)[:-1], per_row) + within
        self.digest.add_placed(_unsigned(arr), starts, lens, doc, offset)

    def _check_column(
        self, batch: pa.RecordBatch, name: str, i: int, column: str, rows: tuple[Any, ...]
    ) -> bool:
        first, fill, lens, per_row, within = rows
        L = self.recorded.seq_len
        pads = self.recorded.pads
        arr = batch.column(batch.schema.get_field_index(column))
        if not is_list_type(arr.type):
            self.found.problem(f"{name}: column {column!r} is {arr.type}, not a list")
            return False
        values = _unsigned(arr)
        starts = arr.offsets.to_numpy().astype(np.int64)
        row_len = np.diff(starts)
        want = np.full_like(fill, L) if pads is not None else fill
        if arr.null_count or not np.array_equal(row_len, want):
            row = int(np.argmax(row_len != want)) if not arr.null_count else 0
            self.found.problem(
                f"{name}: row {first + row} of {column!r} holds {int(row_len[row])} tokens "
                f"where its pieces add up to {int(fill[row])}"
                + (f" (padded to {L})" if pads is not None else "")
            )
            return False
        if pads is not None:
            pad_at = _padding(starts[:-1] + fill, L - fill)
            try:
                pad = np.array(pads[i], dtype=value_dtype(arr.type))
            except (OverflowError, ValueError):
                pad = None
            if pad is None or not np.all(values[pad_at] == pad.view(values.dtype)):
                self.found.problem(f"{name}: column {column!r} has padding other than {pads[i]}")
                return False
        self.digest.add(column, values, np.repeat(starts[:-1], per_row) + within, lens)
        return True

    def _check_positions(
        self,
        batch: pa.RecordBatch,
        name: str,
        lens: np.ndarray,
        per_row: np.ndarray,
        within: np.ndarray,
    ) -> None:
        arr = batch.column(batch.schema.get_field_index(POSITION_IDS))
        if not is_list_type(arr.type) or value_dtype(arr.type) != np.dtype(np.int32):
            self.found.problem(f"{name}: column {POSITION_IDS!r} is {arr.type}, not list<int32>")
            return
        got = primitive_view(arr.values, np.dtype(np.int32))
        offsets = arr.offsets.to_numpy().astype(np.int64)
        got = got[offsets[0] : offsets[-1]].astype(np.int64)
        row_len = np.diff(offsets)
        pos = np.zeros(int(row_len.sum()), dtype=np.int64)
        row_start = offsets[:-1] - offsets[0]
        piece_start = np.repeat(row_start, per_row) + within
        idx = np.repeat(piece_start, lens) + _ranges(lens)
        if idx.shape[0] and idx.max() >= pos.shape[0]:
            self.found.problem(f"{name}: {POSITION_IDS} are shorter than the rows' pieces")
            return
        pos[idx] = _ranges(lens)
        if got.shape != pos.shape or not np.array_equal(got, pos):
            self.found.problem(f"{name}: {POSITION_IDS} do not restart at 0 at every piece")


def _row_hash(lens: np.ndarray, per_row: np.ndarray) -> int:
    """The multiset of rows, each its piece lengths in order, hashed (mod 2**64)."""
    starts = np.cumsum(per_row) - per_row
    return _piece_hash(lens.astype(np.uint64), starts, per_row)


# -- the output against its source -------------------------------------------


class _Source(NamedTuple):
    """The source as packing sees it: document lengths, and rows per file."""

    lengths: np.ndarray
    file_rows: list[int]


class _SourceCheck:
    """The source's files and documents against the manifest and the output's pieces."""

    def __init__(
        self, src: str, recorded: Recorded, found: _Findings, progress: Progress | None
    ) -> None:
        self.src = src
        self.recorded = recorded
        self.found = found
        self.progress = progress
        self.by_piece = _cuts_by_long_docs(recorded.method)

    def run(self, output: _Digest) -> _Source | None:
        """Compare; return the source's lengths, or None if it is not what was packed."""
        r = self.recorded
        source = ParquetSource.open(self.src)
        before = len(self.found.problems)
        self._check_inputs(source)
        spec = source.spec(columns=list(r.columns))
        digest = _Digest(self.by_piece)
        lengths = [np.zeros(0, dtype=np.int64)]
        documents = tokens = 0
        _log.info("%s: reading %s documents to compare", self.src, f"{source.rows:,}")
        _report(self.progress, "source", 0, source.rows, 0)
        for batch in source.batches(spec, batch_tokens=_BATCH_TOKENS):
            n = aligned_lengths(pa.Table.from_batches([batch]), spec.columns, documents)
            # The documents as they were packed: with their separators.
            packed = n if r.separators is None else n + (n > 0)
            lengths.append(packed)
            for i, column in enumerate(r.columns):
                arr = batch.column(batch.schema.get_field_index(column))
                values = _unsigned(arr)
                offsets = arr.offsets.to_numpy().astype(np.int64)[:-1]
                if r.separators is not None:
                    sep = np.array(r.separators[i], dtype=value_dtype(arr.type))
                    values, offsets = _appended(values, offsets, n, sep.view(values.dtype))
                starts, lens = self._pieces(offsets, packed)
                digest.add(column, values, starts, lens)
                if i == 0 and self.by_piece:
                    digest.add_lengths(lens)
                if i == 0 and r.provenance:
                    keep = packed > 0
                    kept = packed[keep]
                    if r.long_docs == "truncate":
                        kept = np.minimum(kept, r.seq_len)
                    doc = documents + np.flatnonzero(keep)
                    digest.add_placed(values, offsets[keep], kept, doc, np.zeros_like(doc))
            documents += n.shape[0]
            tokens += int(packed.sum())
            _report(self.progress, "source", documents, source.rows, tokens)
        for key, value in (("documents", documents), ("tokens", tokens)):
            if key in r.stats and r.stats[key] != value:
                self.found.problem(
                    f"the source holds {value:,} {key}, the manifest's stats {r.stats[key]:,}"
                )
        self._compare(digest, output)
        if len(self.found.problems) > before:
            return None
        return _Source(np.concatenate(lengths), [f.rows for f in source.files])

    def _pieces(self, offsets: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and length of every piece of the documents of ``n`` tokens
        that start at ``offsets`` in their values."""
        L = self.recorded.seq_len
        if not self.by_piece:  # whole documents: their tokens, hashed one by one
            return offsets, n
        if self.recorded.long_docs == "truncate":
            keep = n > 0
            return offsets[keep], np.minimum(n[keep], L)
        k = (n + L - 1) // L
        doc = np.repeat(np.arange(n.shape[0]), k)
        j = _ranges(k)
        return offsets[doc] + j * L, np.minimum(L, n[doc] - j * L)

    def _check_inputs(self, source: ParquetSource) -> None:
        inputs = self.recorded.inputs
        if inputs is None:
            self.found.problem(
                "the manifest lists no inputs: the source cannot be checked against it"
            )
            return
        want = {str(i["path"]): i for i in inputs}
        have = {f.name: f for f in source.files}
        for names, what in (
            (sorted(set(want) - set(have)), f"packed but not in {source.path}"),
            (sorted(set(have) - set(want)), f"in {source.path} but not packed"),
        ):
            if names:
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                self.found.problem(
                    f"{len(names)} source file(s) {what}: {', '.join(names[:3])}{more}"
                )
        for name in sorted(set(want) & set(have)):
            f, w = have[name], want[name]
            if (f.size, f.rows) != (w["size"], w["rows"]):
                self.found.problem(
                    f"source file {name}: {f.size:,} bytes and {f.rows:,} rows, the manifest "
                    f"says {w['size']} bytes and {w['rows']} rows (changed since?)"
                )
                continue
            was_format = w.get("format", "parquet")
            if was_format != f.format:
                self.found.problem(
                    f"source file {name}: {f.format}, the manifest says {was_format} (replaced?)"
                )
                continue
            key = f.reader.digest_key
            if key in w and w[key] != f.digest:
                self.found.problem(
                    f"source file {name}: its {key} is not the manifest's: its content is not "
                    f"the one packed (changed since?)"
                )
        self.found.note(f"the source's {len(have)} file(s) are the manifest's inputs")

    def _compare(self, source: _Digest, output: _Digest) -> None:
        columns = self.recorded.columns
        if self.by_piece:
            size = max(source.lengths.shape[0], output.lengths.shape[0])
            s_len = np.pad(source.lengths, (0, size - source.lengths.shape[0]))
            o_len = np.pad(output.lengths, (0, size - output.lengths.shape[0]))
            if not np.array_equal(s_len, o_len):
                diff = np.flatnonzero(s_len != o_len)
                self.found.problem(
                    f"pieces of {int(diff[0])} tokens: {int(s_len[diff[0]]):,} in the "
                    f"source, {int(o_len[diff[0]]):,} in the output"
                    + (f" (and {len(diff) - 1} more lengths differ)" if len(diff) > 1 else "")
                )
        for column in columns:
            s_tok, o_tok = source.tokens.get(column, 0), output.tokens.get(column, 0)
            if s_tok != o_tok:
                self.found.problem(
                    f"column {column!r}: {s_tok:,} tokens to pack in the source, {o_tok:,} in "
                    f"the output"
                )
            elif source.hashes.get(column, 0) != output.hashes.get(column, 0):
                self.found.problem(
                    f"column {column!r}: the same number of tokens, but not the same "
                    f"{'pieces' if self.by_piece else 'tokens'} (tokens lost, duplicated, "
                    f"altered or moved)"
                )
        what = (
            "every piece of every document, once, tokens in order (piece lengths, per-column "
            "counts and order-independent hashes)"
            if self.by_piece
            else f"the multiset of tokens of each column ({self.recorded.method} cuts anywhere: "
            f"pieces are not compared)"
        )
        self.found.note(f"the output holds {what}, for {', '.join(map(repr, columns))}")
        if self.recorded.provenance:
            if source.placed != output.placed:
                self.found.problem(
                    f"provenance: the pieces' {DOC_INDEX} and {DOC_OFFSET} do not match the "
                    f"source (a piece's tokens are not its document's at that offset)"
                )
            else:
                self.found.note(
                    f"every piece's tokens are its document's at its offset ({DOC_INDEX}, "
                    f"{DOC_OFFSET}; an order-independent hash of every token with its place)"
                )


# -- the packing against the recorded method ---------------------------------


def _check_method(
    recorded: Recorded, output: _OutputCheck, source: _Source | None, found: _Findings
) -> None:
    """The recorded method (and options) reproduce the packing of the output.

    Without the source, only what the method implies of any output is
    checked (``concat`` fills every row but the last of each window); with
    it, the source's document lengths are packed again with the recorded
    options and the sequences compared.
    """
    if output.unread:
        return
    r = recorded
    changed = "(was the manifest's method or its options changed?)"
    # Every window but the last holds window_tokens tokens or more (of
    # every task's files, for bfpack.dask).
    tasks = 1
    if r.files_per_task is not None:
        tasks = -(-len(r.inputs) // r.files_per_task) if r.inputs is not None else 0
    if r.method == "concat" and r.window_tokens is not None and tasks:
        windows = output.tokens // r.window_tokens + tasks
        if output.rows_check.not_full > windows:
            found.problem(
                f"{output.rows_check.not_full:,} rows are not full, where method 'concat' fills "
                f"every row but the last of each window (at most {windows:,} here) {changed}"
            )
    m = METHODS[r.method]
    if m.cuts_by_long_docs and not m.streams and output.rows_check.not_longest_first:
        found.problem(
            f"{output.rows_check.not_longest_first:,} rows hold a piece longer than the one "
            f"before it, where method {r.method!r} places pieces longest first and carries "
            f"no sequence to the next window {changed}"
        )
    if source is None or r.window_tokens is None or r.max_open is None:
        return
    replay = _replay(r, source)
    if replay is None:
        return
    sequences, row_hash = replay
    if sequences != output.rows:
        found.problem(
            f"method {r.method!r} packs the source into {sequences:,} sequences with the "
            f"recorded options, the output holds {output.rows:,} {changed}"
        )
    elif row_hash is not None and row_hash != output.rows_check.row_hash:
        found.problem(
            f"method {r.method!r} packs the source into as many sequences with the recorded "
            f"options, but not the same pieces per sequence {changed}"
        )
    else:
        found.note(
            f"the source's documents packed again with {r.method!r} and the recorded options "
            f"give the output's " + ("sequences" if row_hash is not None else "number of sequences")
        )


def _replay(recorded: Recorded, source: _Source) -> tuple[int, int | None] | None:
    """Sequences (and the hash of their piece lengths) of the recorded packing of the
    source; None if it cannot be packed here."""
    r = recorded
    assert r.window_tokens is not None and r.max_open is not None
    try:
        if r.files_per_task is not None:  # packed by bfpack.dask: tasks, then the driver
            rows = np.asarray(source.file_rows, dtype=np.int64)
            firsts = np.arange(0, rows.shape[0], r.files_per_task)
            per_task = np.add.reduceat(rows, firsts) if rows.shape[0] else rows
            groups = np.split(source.lengths, np.cumsum(per_task)[:-1])
            stats = sequences_of_lengths(
                groups,
                r.seq_len,
                method=r.method,
                long_docs=r.long_docs,
                window_tokens=r.window_tokens,
                max_open=r.max_open,
            )
            return stats.sequences, None
        packer = StreamPacker(
            r.seq_len, method=r.method, long_docs=r.long_docs, max_open=r.max_open
        )
    except ValueError:  # a seq_len this machine cannot pack
        return None
    windows = length_windows(source.lengths, r.window_tokens) or [source.lengths]
    sequences = row_hash = 0
    for k, window in enumerate(windows):
        plan = packer.step(window, last=k == len(windows) - 1)
        per_row = np.diff(plan.seq_offsets)
        sequences += per_row.shape[0]
        row_hash = (row_hash + _row_hash(plan.piece_len, per_row)) % 2**64
    return sequences, row_hash


def _appended(
    values: np.ndarray, offsets: np.ndarray, n: np.ndarray, sep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The documents of ``n`` tokens at ``offsets`` in ``values``, each
    non-empty one followed by ``sep``: new values and offsets."""
    packed = n + (n > 0)
    starts = np.cumsum(packed) - packed
    out = np.empty(int(packed.sum()), dtype=values.dtype)
    out[np.repeat(starts, n) + _ranges(n)] = values[np.repeat(offsets, n) + _ranges(n)]
    out[(starts + n)[n > 0]] = sep
    return out, starts


def _placed_hash(
    values: np.ndarray, starts: np.ndarray, lens: np.ndarray, doc: np.ndarray, offset: np.ndarray
) -> int:
    """Sum over tokens of mix(token ^ mix(mix(doc) + position in doc)), mod 2**64."""
    if not lens.shape[0]:
        return 0
    tokens = _gather(values, starts, lens)
    key = _mix(np.repeat(doc.astype(np.uint64), lens) + _GOLDEN)
    key += np.repeat(offset.astype(np.uint64), lens) + _ranges(lens).astype(np.uint64)
    tokens ^= _mix(key)
    return int(_mix(tokens + _GOLDEN).sum(dtype=np.uint64))


def _cuts_by_long_docs(method: str) -> bool:
    m = METHODS.get(method)
    return bool(m is not None and m.cuts_by_long_docs)


def _unsigned(arr: pa.Array) -> np.ndarray:
    """The values of a list array as unsigned integers of their width (a view)."""
    dtype = value_dtype(arr.type)
    return primitive_view(arr.values, dtype).view(f"u{dtype.itemsize}")


def _ranges(counts: np.ndarray) -> np.ndarray:
    """``0 .. c - 1`` for every ``c`` of ``counts``, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _padding(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.repeat(starts, counts) + _ranges(counts)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, in place on a uint64 array: a bijection that spreads bits."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def _gather(values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The tokens of the pieces, in order, as uint64 (a slice when they are contiguous)."""
    if lens.shape[0] and np.array_equal(starts[1:], starts[:-1] + lens[:-1]):
        return values[starts[0] : starts[0] + lens.sum()].astype(np.uint64)
    return values[np.repeat(starts, lens) + _ranges(lens)].astype(np.uint64)


@functools.cache
def _position_keys(size: int) -> np.ndarray:
    """mix(p + golden) for the positions p < size of a piece (read-only)."""
    keys = _mix(np.arange(size, dtype=np.uint64) + _GOLDEN)
    keys.flags.writeable = False
    return keys


def _piece_hash(values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> int:
    """Sum over pieces of mix(length, sum over tokens of mix(token, position)), mod 2**64."""
    keep = lens > 0
    starts, lens = starts[keep], lens[keep]
    if not lens.shape[0]:
        return 0
    tokens = _gather(values, starts, lens)
    # Sizes rounded up to a power of two: a few tables, whatever the pieces.
    tokens ^= _position_keys(1 << int(lens.max()).bit_length())[_ranges(lens)]
    _mix(tokens)
    sums = np.add.reduceat(tokens, np.cumsum(lens) - lens)
    sums += lens.astype(np.uint64) * _GOLDEN
    return int(_mix(sums).sum(dtype=np.uint64))


def _token_hash(values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> int:
    """Sum over tokens of mix(token), mod 2**64: the multiset of tokens."""
    tokens = _gather(values, starts, lens)
    return int(_mix(tokens + _GOLDEN).sum(dtype=np.uint64))
