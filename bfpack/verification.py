"""Checking a packed output against its manifest and, optionally, its source.

:func:`verify` (``bfpack verify DST [--source SRC]``) reads every shard
batch by batch, so memory stays bounded whatever the size of the output.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._arrow import _primitive_view, is_list_type
from ._source import ParquetSource
from ._validate import as_callable, value_dtype
from .manifest import MANIFEST, file_sha256, read_manifest
from .table import POSITION_IDS, SEQ_LENGTHS, aligned_lengths

__all__ = ["Verification", "verify"]

#: Tokens per batch read (memory: about 40 bytes per token while hashing).
_BATCH_TOKENS = 1 << 20
#: Problems listed at most; the rest are counted.
_MAX_PROBLEMS = 50

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
    """

    dst: str
    source: str | None
    problems: tuple[str, ...]
    checked: tuple[str, ...]
    shards: int
    rows: int
    tokens: int

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
        The output directory.
    source : path, optional
        The Parquet file or directory it was packed from.
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
        The manifest is unreadable, or the source cannot be read as it was
        packed (a packed column missing, rows whose columns disagree).

    Notes
    -----
    Always checked, against the manifest:

    - the directory holds exactly the listed shards (a file of another run,
      or a missing one, is a problem);
    - each shard's size and SHA-256, and its row count;
    - every shard has the same schema;
    - every row is well formed: it holds at least one piece, every piece
      (``seq_lengths``) is 1 to ``seq_len`` tokens, they add up to at most
      ``seq_len``, each packed column holds that many tokens (or exactly
      ``seq_len``, padding included, when padded), padding tokens equal
      the pad value and ``position_ids`` restart at 0 at every piece;
    - rows and packed tokens add up to the manifest's statistics.

    With ``source``, also:

    - the source's files are the manifest's inputs (path, size, rows);
    - its documents and tokens are the manifest's;
    - each packed column of the output holds every piece of every source
      document exactly once, tokens in order: pieces are what the method
      cuts (documents longer than ``seq_len`` cut into ``seq_len``-token
      chunks plus the remainder with ``long_docs="split"``, their first
      ``seq_len`` tokens with ``"truncate"``), and the output's pieces are
      read from ``seq_lengths``. Compared: the number of pieces of each
      length, and per column the token count and an order-independent hash
      of the multiset of pieces (each piece hashed from its tokens and
      their positions in it, the piece hashes summed modulo 2**64).

    Not verified: which document a piece came from (the output records no
    document ids, so swapping two pieces of equal content between
    documents, or reordering a document's pieces, goes unseen), and the
    packing's quality (whether best fit was followed). The hash detects
    loss, duplication and corruption with overwhelming probability, but it
    is not cryptographic: it does not resist a forger. Methods that cut
    wherever a sequence ends (``"concat"``) are compared token by token
    instead: the multiset of tokens of each column, with counts.
    """
    dst = os.fspath(dst)
    progress = as_callable(progress, "progress")
    manifest = read_manifest(dst)
    checker = _Checker(dst, manifest, progress)
    checker.check_listing()
    output = checker.check_shards()
    if source is not None:
        checker.check_source(os.fspath(source), output)
    return checker.result(None if source is None else os.fspath(source))


@dataclass
class _Digest:
    """Per-column piece hashes and counts, added up over batches."""

    seq_len: int
    by_piece: bool
    tokens: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, int] = field(default_factory=dict)
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.zeros(self.seq_len + 1, dtype=np.int64)

    def add(self, column: str, values: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> None:
        """Add the pieces ``values[starts[i]:starts[i] + lens[i]]`` of ``column``."""
        self.tokens[column] = self.tokens.get(column, 0) + int(lens.sum())
        hash_of = _piece_hash if self.by_piece else _token_hash
        h = hash_of(values, starts, lens)
        self.hashes[column] = (self.hashes.get(column, 0) + h) % 2**64

    def add_lengths(self, lens: np.ndarray) -> None:
        self.lengths += np.bincount(lens, minlength=self.seq_len + 1)[: self.seq_len + 1]


class _Checker:
    def __init__(self, dst: str, manifest: dict[str, Any], progress: Progress | None) -> None:
        self.dst = dst
        self.manifest = manifest
        self.progress = progress
        self.problems: list[str] = []
        self.checked: list[str] = []
        self.shards = self.rows = self.tokens = 0
        options = manifest.get("options")
        needed = ("seq_len", "columns", "method", "long_docs")
        if not isinstance(options, dict) or any(k not in options for k in needed):
            raise ValueError(
                f"the manifest of {dst} lacks the options it was packed with ({', '.join(needed)})"
            )
        self.seq_len = int(options["seq_len"])
        self.columns = [str(c) for c in options["columns"]]
        self.method = str(options["method"])
        self.long_docs = str(options["long_docs"])
        self.position_ids = bool(options.get("position_ids"))
        pad = options.get("pad_value")
        self.pads: list[float] | None = None
        if isinstance(pad, dict):
            self.pads = [_number(pad[c]) for c in self.columns]
        elif pad is not None:
            self.pads = [_number(pad)] * len(self.columns)
        self.by_piece = _cuts_by_long_docs(self.method)
        self.shard_records = [s for s in manifest["shards"] if isinstance(s, dict)]

    def report(self, stage: str, done: int, total: int, tokens: int) -> None:
        if self.progress is not None:
            unit = "rows" if stage == "output" else "documents"
            self.progress({"stage": stage, unit: done, f"total_{unit}": total, "tokens": tokens})

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)
        elif len(self.problems) == _MAX_PROBLEMS:
            self.problems.append("... and more problems (only the first 50 are listed)")

    def result(self, source: str | None) -> Verification:
        return Verification(
            dst=self.dst,
            source=source,
            problems=tuple(self.problems),
            checked=tuple(self.checked),
            shards=self.shards,
            rows=self.rows,
            tokens=self.tokens,
        )

    # -- the directory against the manifest --------------------------------

    def check_listing(self) -> None:
        listed = [str(s.get("file")) for s in self.shard_records]
        present = {n for n in os.listdir(self.dst) if n != MANIFEST}
        for name in listed:
            if name not in present:
                self.problem(f"shard {name} is listed in the manifest but missing")
        for name in sorted(present - set(listed)):
            self.problem(f"{name} is not in the manifest (a file of another run?)")
        if len(listed) != len(set(listed)):
            self.problem("the manifest lists a shard twice")
        self.checked.append(f"the directory holds exactly the {len(listed)} shard(s) listed")

    def check_shards(self) -> _Digest:
        digest = _Digest(self.seq_len, self.by_piece)
        schema = None
        total = sum(r["rows"] for r in self.shard_records if isinstance(r.get("rows"), int))
        _log.info(
            "%s: checking %s shard(s), %s rows", self.dst, len(self.shard_records), f"{total:,}"
        )
        self.report("output", 0, total, 0)
        for record in self.shard_records:
            path = os.path.join(self.dst, str(record.get("file")))
            if not os.path.isfile(path):
                continue
            self.shards += 1
            _log.debug("checking %s", path)
            if not self._check_bytes(path, record):
                continue  # damaged: its content would only add confusing problems
            try:
                with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as pf:
                    if pf.metadata.num_rows != record.get("rows"):
                        self.problem(
                            f"{record['file']}: {pf.metadata.num_rows} rows, the manifest says "
                            f"{record.get('rows')}"
                        )
                    if schema is None:
                        schema = pf.schema_arrow
                    elif not pf.schema_arrow.equals(schema):
                        self.problem(
                            f"{record['file']}: its schema differs from the first shard's "
                            f"({pf.schema_arrow} against {schema})"
                        )
                    rows = max(1, _BATCH_TOKENS // self.seq_len)
                    for batch in pf.iter_batches(batch_size=rows):
                        self._check_rows(batch, str(record["file"]), digest)
                        self.report("output", self.rows, total, self.tokens)
            except (pa.ArrowException, OSError, KeyError) as exc:
                self.problem(f"{record.get('file')}: cannot be read ({exc})")
        self.checked.append("shard sizes and SHA-256 match the manifest")
        self.checked.append("every shard has the same schema; every row is well formed")
        stats = self.manifest.get("stats") or {}
        for key, value, what in (
            ("sequences", self.rows, "rows"),
            ("tokens_packed", self.tokens, "packed tokens"),
        ):
            if key in stats and stats[key] != value:
                self.problem(
                    f"the shards hold {value:,} {what}, the manifest's stats {stats[key]:,}"
                )
        self.checked.append("rows and tokens add up to the manifest's statistics")
        return digest

    def _check_bytes(self, path: str, record: dict[str, Any]) -> bool:
        size = os.path.getsize(path)
        said = record.get("bytes")
        if size != said:
            shown = f"{said:,}" if isinstance(said, int) else "no size"
            self.problem(f"{record['file']}: {size:,} bytes, the manifest says {shown}")
            return False
        if file_sha256(path) != record.get("sha256"):
            self.problem(f"{record['file']}: its SHA-256 differs from the manifest's (damaged?)")
            return False
        return True

    def _check_rows(self, batch: pa.RecordBatch, name: str, digest: _Digest) -> None:
        """Check one batch of rows and add its pieces to ``digest``."""
        L = self.seq_len
        first = self.rows
        self.rows += batch.num_rows
        if not batch.num_rows:
            return
        missing = [c for c in [*self.columns, SEQ_LENGTHS] if c not in batch.schema.names]
        if missing:
            self.problem(f"{name}: no column {missing[0]!r}")
            return
        sl = batch.column(batch.schema.get_field_index(SEQ_LENGTHS))
        sl_off = sl.offsets.to_numpy().astype(np.int64)
        lens = _primitive_view(sl.values, np.dtype(np.int32))[sl_off[0] : sl_off[-1]]
        lens = lens.astype(np.int64)
        per_row = np.diff(sl_off)
        bad = (per_row < 1) | (sl.is_null().to_numpy(zero_copy_only=False))
        if bad.any():
            self.problem(f"{name}: row {first + int(np.argmax(bad))} holds no piece")
            return
        if lens.min() < 1 or lens.max() > L:
            self.problem(f"{name}: a piece of {int(lens[(lens < 1) | (lens > L)][0])} tokens")
            return
        first_piece = sl_off[:-1] - sl_off[0]
        fill = np.add.reduceat(lens, first_piece)
        if fill.max() > L:
            row = int(np.argmax(fill > L))
            self.problem(f"{name}: row {first + row} holds {int(fill[row])} tokens > seq_len {L}")
            return
        self.tokens += int(lens.sum())
        digest.add_lengths(lens)
        # Within its row, piece p starts where the pieces before it end.
        ends = np.cumsum(lens)
        within = ends - lens - np.repeat(ends[first_piece] - lens[first_piece], per_row)
        for i, column in enumerate(self.columns):
            arr = batch.column(batch.schema.get_field_index(column))
            if not is_list_type(arr.type):
                self.problem(f"{name}: column {column!r} is {arr.type}, not a list")
                return
            values = _unsigned(arr)
            starts = arr.offsets.to_numpy().astype(np.int64)
            row_len = np.diff(starts)
            want = np.full_like(fill, L) if self.pads is not None else fill
            if arr.null_count or not np.array_equal(row_len, want):
                row = int(np.argmax(row_len != want)) if not arr.null_count else 0
                self.problem(
                    f"{name}: row {first + row} of {column!r} holds {int(row_len[row])} tokens "
                    f"where its pieces add up to {int(fill[row])}"
                    + (f" (padded to {L})" if self.pads is not None else "")
                )
                return
            if self.pads is not None:
                pad_at = _padding(starts[:-1] + fill, L - fill)
                pad_bits = np.array(self.pads[i], dtype=value_dtype(arr.type)).view(values.dtype)
                if not np.all(values[pad_at] == pad_bits):
                    self.problem(f"{name}: column {column!r} has padding other than {self.pads[i]}")
                    return
            digest.add(column, values, np.repeat(starts[:-1], per_row) + within, lens)
        if self.position_ids:
            self._check_positions(batch, name, lens, per_row, within)

    def _check_positions(
        self,
        batch: pa.RecordBatch,
        name: str,
        lens: np.ndarray,
        per_row: np.ndarray,
        within: np.ndarray,
    ) -> None:
        if POSITION_IDS not in batch.schema.names:
            self.problem(f"{name}: no column {POSITION_IDS!r}")
            return
        arr = batch.column(batch.schema.get_field_index(POSITION_IDS))
        got = _primitive_view(arr.values, np.dtype(np.int32))
        offsets = arr.offsets.to_numpy().astype(np.int64)
        got = got[offsets[0] : offsets[-1]].astype(np.int64)
        row_len = np.diff(offsets)
        pos = np.zeros(int(row_len.sum()), dtype=np.int64)
        row_start = offsets[:-1] - offsets[0]
        piece_start = np.repeat(row_start, per_row) + within
        idx = np.repeat(piece_start, lens) + _ranges(lens)
        pos[idx] = _ranges(lens)
        if got.shape != pos.shape or not np.array_equal(got, pos):
            self.problem(f"{name}: {POSITION_IDS} do not restart at 0 at every piece")

    # -- the output against its source -------------------------------------

    def check_source(self, src: str, output: _Digest) -> None:
        source = ParquetSource.open(src)
        self._check_inputs(source)
        spec = source.spec(columns=self.columns)
        digest = _Digest(self.seq_len, self.by_piece)
        documents = tokens = 0
        _log.info("%s: reading %s documents to compare", src, f"{source.rows:,}")
        self.report("source", 0, source.rows, 0)
        for batch in source.batches(spec, batch_tokens=_BATCH_TOKENS):
            n = aligned_lengths(pa.Table.from_batches([batch]), spec.columns, documents)
            documents += n.shape[0]
            tokens += int(n.sum())
            for column in self.columns:
                arr = batch.column(batch.schema.get_field_index(column))
                starts, lens = self._source_pieces(arr, n)
                digest.add(column, _unsigned(arr), starts, lens)
            if self.by_piece:
                digest.add_lengths(self._source_pieces(batch.column(0), n)[1])
            self.report("source", documents, source.rows, tokens)
        stats = self.manifest.get("stats") or {}
        for key, value in (("documents", documents), ("tokens", tokens)):
            if key in stats and stats[key] != value:
                self.problem(
                    f"the source holds {value:,} {key}, the manifest's stats {stats[key]:,}"
                )
        self._compare(digest, output)

    def _source_pieces(self, arr: pa.Array, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start (in ``arr.values``) and length of every piece of the documents of ``arr``."""
        offsets = arr.offsets.to_numpy().astype(np.int64)[:-1]
        L = self.seq_len
        if not self.by_piece:  # whole documents: their tokens, hashed one by one
            return offsets, n
        if self.long_docs == "truncate":
            keep = n > 0
            return offsets[keep], np.minimum(n[keep], L)
        k = (n + L - 1) // L
        doc = np.repeat(np.arange(n.shape[0]), k)
        j = _ranges(k)
        return offsets[doc] + j * L, np.minimum(L, n[doc] - j * L)

    def _check_inputs(self, source: ParquetSource) -> None:
        inputs = self.manifest.get("inputs")
        if not isinstance(inputs, list):
            self.problem("the manifest lists no inputs: the source cannot be checked against it")
            return
        want = {str(i.get("path")): i for i in inputs if isinstance(i, dict)}
        have = {f.name: f for f in source.files}
        for names, what in (
            (sorted(set(want) - set(have)), f"packed but not in {source.path}"),
            (sorted(set(have) - set(want)), f"in {source.path} but not packed"),
        ):
            if names:
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                self.problem(f"{len(names)} source file(s) {what}: {', '.join(names[:3])}{more}")
        for name in sorted(set(want) & set(have)):
            f, w = have[name], want[name]
            if (f.size, f.rows) != (w.get("size"), w.get("rows")):
                self.problem(
                    f"source file {name}: {f.size:,} bytes and {f.rows:,} rows, the manifest "
                    f"says {w.get('size')} bytes and {w.get('rows')} rows (changed since?)"
                )
        self.checked.append(f"the source's {len(have)} file(s) are the manifest's inputs")

    def _compare(self, source: _Digest, output: _Digest) -> None:
        if self.by_piece and not np.array_equal(source.lengths, output.lengths):
            diff = np.flatnonzero(source.lengths != output.lengths)
            self.problem(
                f"pieces of {int(diff[0])} tokens: {int(source.lengths[diff[0]]):,} in the "
                f"source, {int(output.lengths[diff[0]]):,} in the output"
                + (f" (and {len(diff) - 1} more lengths differ)" if len(diff) > 1 else "")
            )
        for column in self.columns:
            s_tok, o_tok = source.tokens.get(column, 0), output.tokens.get(column, 0)
            if s_tok != o_tok:
                self.problem(
                    f"column {column!r}: {s_tok:,} tokens to pack in the source, {o_tok:,} in "
                    f"the output"
                )
            elif source.hashes.get(column, 0) != output.hashes.get(column, 0):
                self.problem(
                    f"column {column!r}: the same number of tokens, but not the same "
                    f"{'pieces' if self.by_piece else 'tokens'} (tokens lost, duplicated, "
                    f"altered or moved)"
                )
        what = (
            "every piece of every document, once, tokens in order (piece lengths, per-column "
            "counts and order-independent hashes)"
            if self.by_piece
            else f"the multiset of tokens of each column ({self.method} cuts anywhere: "
            f"pieces are not compared)"
        )
        self.checked.append(f"the output holds {what}, for {', '.join(map(repr, self.columns))}")


def _number(value: Any) -> float:
    """A pad value of the manifest: an int, or a float for a float column."""
    return value if isinstance(value, float) else int(value)


def _cuts_by_long_docs(method: str) -> bool:
    from .methods import METHODS

    m = METHODS.get(method)
    return bool(m is not None and m.cuts_by_long_docs)


def _unsigned(arr: pa.Array) -> np.ndarray:
    """The values of a list array as unsigned integers of their width (a view)."""
    dtype = value_dtype(arr.type)
    return _primitive_view(arr.values, dtype).view(f"u{dtype.itemsize}")


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
