"""The manifest of a packed directory: ``.bfpack.json``, written last.

It records what a reader needs to trust the directory:

- ``format`` (2), ``bfpack_version`` and ``run_id`` (random, one per run:
  shards of two runs never share one);
- ``source`` and ``inputs``: the files read, each with its ``path``
  (relative to the source directory; the file name for a one-file source),
  ``size`` in bytes, ``rows``, ``mtime_ns`` and ``footer_sha256`` (of the
  file's footer: its metadata, their length and the magic), as they were
  throughout the run (an Arrow IPC or JSON Lines input has ``format`` and
  ``ends_sha256``, of its size and first and last MiB, instead) and, when
  packed with provenance, ``first_document`` (the ``doc_index`` of its
  first row);
  ``skipped``: the files and directories the ``_``/``.`` convention left
  out;
- ``options``: how it was packed, ``format`` included: ``"parquet"``
  (shards ``part-*.parquet``; the default, and what a manifest without the
  key means) or ``"arrow"`` (uncompressed Arrow IPC stream shards
  ``data-00000-of-0000N.arrow`` and the two files of the layout
  ``datasets.Dataset.save_to_disk`` writes, :data:`DATASETS_FILES`, which
  are the output's own though no shard record lists them);
- ``shards``, in order: ``file``, ``rows``, ``bytes`` and ``sha256`` (of
  the file's bytes);
- ``stats``: the statistics of the packing.

A directory without it is not a finished bfpack output;
:func:`bfpack.verify` checks a directory against it.

The name starts with a dot so that readers of the directory as a Parquet
dataset skip it: pyarrow and pandas skip ``_`` and ``.`` files, but Hugging
Face ``datasets.load_dataset("parquet", data_dir=...)`` skips only hidden
(``.``) files and fails on any other file that is not Parquet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: File name of the manifest inside an output directory.
MANIFEST = ".bfpack.json"
#: Version of the manifest's layout.
FORMAT = 2

_CHUNK = 1 << 20

#: The output formats (``options.format``): the shards' file format.
FORMATS = ("parquet", "arrow")
#: The files beside the shards of an ``"arrow"`` output that make it a
#: ``datasets.Dataset.save_to_disk`` directory: ``dataset_info.json`` and
#: ``state.json`` (the names ``datasets.config`` gives them).
DATASETS_FILES = ("dataset_info.json", "state.json")
#: The schema metadata key of an Arrow shard that holds the id of the run
#: that wrote it.
RUN_KEY = b"bfpack.run_id"


def output_format(manifest: Mapping[str, Any]) -> str:
    """The format of the shards of the output whose manifest is ``manifest``.

    ``"parquet"`` where ``options.format`` is absent (outputs written before
    the option existed); ValueError for a value bfpack does not write.
    """
    options = manifest.get("options")
    fmt = options.get("format", "parquet") if isinstance(options, dict) else "parquet"
    if fmt not in FORMATS:
        raise ValueError(
            f"the manifest's options.format is {fmt!r}, not one of {', '.join(FORMATS)}; "
            f"the output is damaged, or was written by a newer bfpack"
        )
    return str(fmt)


def own_files(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The files of an output, beside its shards and bfpack's hidden files,
    that are its own: :data:`DATASETS_FILES` for an ``"arrow"`` output."""
    return DATASETS_FILES if output_format(manifest) == "arrow" else ()


def new_run_id() -> str:
    """A fresh random run id (32 hex digits)."""
    return uuid.uuid4().hex


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def shard_record(name: str, rows: int, data: Any) -> dict[str, Any]:
    """The manifest entry of the shard ``name`` whose bytes are ``data``.

    Returns ``{"file", "rows", "bytes", "sha256"}``.
    """
    return {
        "file": name,
        "rows": int(rows),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def input_records(source: Any, *, provenance: bool) -> list[dict[str, Any]]:
    """The manifest's ``inputs`` of a ``ParquetSource``: each file's record
    and, with provenance, ``first_document``, the ``doc_index`` of its first row."""
    records = []
    first = 0
    for f in source.files:
        record = f.record()
        if provenance:
            record["first_document"] = first
        first += f.rows
        records.append(record)
    return records


def build_manifest(
    *,
    run_id: str,
    source: str,
    inputs: Sequence[Mapping[str, Any]],
    skipped: Sequence[str],
    options: Mapping[str, Any],
    shards: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest, its keys in the documented order."""
    from .._version import __version__

    return {
        "format": FORMAT,
        "bfpack_version": __version__,
        "run_id": run_id,
        "source": source,
        "inputs": [dict(i) for i in inputs],
        "skipped": list(skipped),
        "options": dict(options),
        "shards": [dict(s) for s in shards],
        "stats": dict(stats),
    }


def write_manifest(folder: str, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` as ``folder/.bfpack.json`` (indented JSON), flushed to disk."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def manifest_path(folder: str) -> str | None:
    """The manifest file of ``folder``, or None."""
    path = os.path.join(folder, MANIFEST)
    return path if os.path.isfile(path) else None


def read_manifest(folder: str, *, dir_fd: int | None = None) -> dict[str, Any]:
    """The manifest of the bfpack output ``folder``.

    With ``dir_fd`` (a descriptor of the directory ``folder`` named when it
    was opened), the manifest is read through it: the directory opened,
    whatever has been renamed to ``folder`` since. Raises FileNotFoundError
    when ``folder`` holds none and ValueError when it is not a JSON object.
    """
    path = os.path.join(folder, MANIFEST)
    try:
        fd = os.open(MANIFEST, os.O_RDONLY, dir_fd=dir_fd) if dir_fd is not None else None
        f = open(fd if fd is not None else path, "rb")
    except (FileNotFoundError, IsADirectoryError):
        exists = os.path.isdir(folder) if dir_fd is None else True
        raise FileNotFoundError(
            f"{folder} is not a bfpack output: it holds no {MANIFEST}"
            + ("" if exists else " (no such directory)")
        ) from None
    with f:
        try:
            manifest = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); the output is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ValueError(f"{path} is not a bfpack manifest (no list of shards)")
    return manifest


def run_id_of(folder: str) -> str | None:
    """The run id of the output at ``folder``; None if there is none or it cannot be read."""
    try:
        run_id = read_manifest(folder).get("run_id")
    except (OSError, ValueError):
        return None
    return run_id if isinstance(run_id, str) else None


# -- the manifest's values, checked --------------------------------------------

#: The largest seq_len bfpack packs (``seq_lengths`` are int32).
_SEQ_LEN_MAX = 2**31 - 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The statistics that count something (non-negative integers).
_COUNTS = (
    "documents",
    "empty_documents",
    "tokens",
    "tokens_packed",
    "sequences",
    "lower_bound",
    "excess_sequences",
    "padding_tokens",
    "documents_truncated",
    "truncation_cuts",
    "tokens_dropped",
)


@dataclass(frozen=True)
class ShardEntry:
    """A shard of the manifest: its file name in the output, rows, and,
    since format 2, its size and SHA-256."""

    file: str
    rows: int
    bytes: int | None
    sha256: str | None


@dataclass(frozen=True)
class Recorded:
    """What a manifest records, every value checked by :func:`check_manifest`.

    ``pads`` holds one pad value per packed column (None: not padded),
    ``separators`` one separator per packed column (None: none appended);
    options the manifest does not record are None (``provenance`` False,
    ``carry`` empty: the manifests of earlier versions).
    """

    run_id: str | None
    seq_len: int
    columns: tuple[str, ...]
    method: str
    long_docs: str
    position_ids: bool
    pads: tuple[int | float, ...] | None
    window_tokens: int | None
    max_open: int | None
    rows_per_shard: int | None
    files_per_task: int | None
    format: str
    shards: tuple[ShardEntry, ...]
    inputs: tuple[Mapping[str, Any], ...] | None
    stats: Mapping[str, Any]
    provenance: bool = False
    carry: tuple[str, ...] = ()
    separators: tuple[int | float, ...] | None = None


class _Damaged(ValueError):
    pass


def check_manifest(manifest: Mapping[str, Any], where: str) -> Recorded:
    """The values of ``manifest`` (read from ``where``), each of its type and range.

    Raises ValueError, one line naming the field, when one is not: the
    manifest is damaged (or was edited), and nothing it says can be trusted.
    """
    try:
        return _check_manifest(manifest)
    except _Damaged as exc:
        raise ValueError(f"{where} is damaged: {exc}") from None


def _check_manifest(m: Mapping[str, Any]) -> Recorded:
    fmt = m.get("format", 1)
    if not _is_int(fmt) or fmt < 1:
        raise _Damaged(f"format is {fmt!r}, not a positive integer")
    if fmt > FORMAT:
        raise _Damaged(f"format {fmt} is newer than this bfpack reads ({FORMAT}); upgrade bfpack")
    for key in ("run_id", "bfpack_version", "source"):
        if key in m and not isinstance(m[key], str):
            raise _Damaged(f"{key} is {m[key]!r}, not a string")
    o = m.get("options")
    needed = ("seq_len", "columns", "method", "long_docs")
    if not isinstance(o, dict) or any(k not in o for k in needed):
        raise _Damaged(f"it lacks the options it was packed with ({', '.join(needed)})")
    seq_len = _int(o, "seq_len", "options.seq_len", lo=1, hi=_SEQ_LEN_MAX)
    columns = o["columns"]
    if (
        not isinstance(columns, list)
        or not columns
        or not all(isinstance(c, str) and c for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise _Damaged(f"options.columns is {columns!r}, not a list of distinct column names")
    from ..methods import METHODS

    method = o["method"]
    if method not in METHODS:
        raise _Damaged(f"options.method is {method!r}, not one of {', '.join(METHODS)}")
    long_docs = o["long_docs"]
    if long_docs not in ("split", "truncate"):
        raise _Damaged(f"options.long_docs is {long_docs!r}, not 'split' or 'truncate'")
    position_ids = o.get("position_ids", False)
    if not isinstance(position_ids, bool):
        raise _Damaged(f"options.position_ids is {position_ids!r}, not true or false")
    for key in ("seed",):
        if o.get(key) is not None and not _is_int(o[key]):
            raise _Damaged(f"options.{key} is {o[key]!r}, not an integer or null")
    provenance = o.get("provenance", False)
    if not isinstance(provenance, bool):
        raise _Damaged(f"options.provenance is {provenance!r}, not true or false")
    carry = o.get("carry", [])
    if (
        not isinstance(carry, list)
        or not all(isinstance(c, str) and c for c in carry)
        or len(set(carry)) != len(carry)
        or set(carry) & set(columns)
    ):
        raise _Damaged(f"options.carry is {carry!r}, not a list of other column names")
    fmt = o.get("format", "parquet")
    if fmt not in FORMATS:
        raise _Damaged(f"options.format is {fmt!r}, not one of {', '.join(FORMATS)}")
    return Recorded(
        run_id=m.get("run_id"),
        seq_len=seq_len,
        columns=tuple(columns),
        method=method,
        long_docs=long_docs,
        position_ids=position_ids,
        pads=_pads(o.get("pad_value"), columns),
        window_tokens=_optional_int(o, "window_tokens", lo=1),
        max_open=_optional_int(o, "max_open", lo=0),
        rows_per_shard=_optional_int(o, "rows_per_shard", lo=1),
        files_per_task=_optional_int(o, "files_per_task", lo=1),
        format=fmt,
        shards=_shards(m["shards"]),
        inputs=_inputs(m.get("inputs")),
        stats=_stats(m.get("stats"), seq_len, method, long_docs),
        provenance=provenance,
        carry=tuple(carry),
        separators=_pads(o.get("separator"), columns, "separator"),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(record: Mapping[str, Any], key: str, what: str, *, lo: int, hi: int | None = None) -> int:
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        if lo <= value and (hi is None or value <= hi):
            return int(value)
    bound = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi:,}]"
    raise _Damaged(f"{what} is {value!r}, not {bound}")


def _optional_int(options: Mapping[str, Any], key: str, *, lo: int) -> int | None:
    if options.get(key) is None:
        return None
    return _int(options, key, f"options.{key}", lo=lo)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pads(pad: Any, columns: list[str], key: str = "pad_value") -> tuple[int | float, ...] | None:
    if pad is None:
        return None
    if isinstance(pad, dict):
        if set(pad) != set(columns) or not all(_is_number(v) for v in pad.values()):
            raise _Damaged(f"options.{key} is {pad!r}, not a number per packed column")
        return tuple(pad[c] for c in columns)
    if not _is_number(pad):
        raise _Damaged(f"options.{key} is {pad!r}, not a number")
    return (pad,) * len(columns)


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is a file name inside a directory: no path, no parent, not hidden."""
    return (
        bool(name)
        and name == os.path.basename(name)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not name.startswith(".")
    )


def _shards(shards: list[Any]) -> tuple[ShardEntry, ...]:
    out = []
    for k, s in enumerate(shards):
        where = f"shards[{k}]"
        if not isinstance(s, dict):
            raise _Damaged(f"{where} is {s!r}, not an object")
        name = s.get("file")
        if not isinstance(name, str) or not is_plain_name(name):
            raise _Damaged(
                f"{where}.file is {name!r}, not the name of a file inside the output "
                f"(no directory, no '..', not hidden)"
            )
        size = None if "bytes" not in s else _int(s, "bytes", f"{where}.bytes", lo=0)
        sha = s.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise _Damaged(f"{where}.sha256 is {sha!r}, not 64 hex digits")
        out.append(ShardEntry(name, _int(s, "rows", f"{where}.rows", lo=0), size, sha))
    return tuple(out)


def _inputs(inputs: Any) -> tuple[Mapping[str, Any], ...] | None:
    if inputs is None:
        return None
    if not isinstance(inputs, list):
        raise _Damaged(f"inputs is {type(inputs).__name__}, not a list")
    for k, i in enumerate(inputs):
        if not isinstance(i, dict) or not isinstance(i.get("path"), str):
            raise _Damaged(f"inputs[{k}] is {i!r}, not an object with a path")
        for key in ("size", "rows"):
            _int(i, key, f"inputs[{k}].{key}", lo=0)
    return tuple(inputs)


def _stats(stats: Any, seq_len: int, method: str, long_docs: str) -> Mapping[str, Any]:
    if stats is None:
        return {}
    if not isinstance(stats, dict):
        raise _Damaged(f"stats is {type(stats).__name__}, not an object")
    for key in _COUNTS:
        if key in stats:
            _int(stats, key, f"stats.{key}", lo=0)
    if "fill" in stats and not (_is_number(stats["fill"]) and 0 <= stats["fill"] <= 1):
        raise _Damaged(f"stats.fill is {stats['fill']!r}, not a number in [0, 1]")
    # The statistics repeat three options: a manifest edited in one place
    # (its method changed, say) disagrees with itself.
    for key, want in (("seq_len", seq_len), ("method", method), ("long_docs", long_docs)):
        if key in stats and stats[key] != want:
            raise _Damaged(f"stats.{key} is {stats[key]!r} where options.{key} is {want!r}")
    packed, sequences = stats.get("tokens_packed"), stats.get("sequences")
    if packed is None or sequences is None:
        return stats
    if packed > sequences * seq_len:
        raise _Damaged(
            f"stats.tokens_packed ({packed:,}) exceeds stats.sequences ({sequences:,}) "
            f"times seq_len ({seq_len:,})"
        )
    # What the packed tokens, the sequences and seq_len imply: a seq_len
    # edited (in options and stats) shows here, whatever the shards hold.
    slots = sequences * seq_len
    implied: dict[str, Any] = {
        "lower_bound": -(-packed // seq_len),
        "excess_sequences": sequences - -(-packed // seq_len),
        "padding_tokens": slots - packed,
    }
    if "tokens" in stats and "tokens_dropped" in stats:
        implied["tokens_packed"] = stats["tokens"] - stats["tokens_dropped"]
    for key, want in implied.items():
        if key in stats and stats[key] != want:
            raise _Damaged(
                f"stats.{key} is {stats[key]:,} where the other statistics and seq_len "
                f"({seq_len:,}) give {want:,}"
            )
    fill = packed / slots if slots else 1.0
    if "fill" in stats and abs(stats["fill"] - fill) > 1e-9:
        raise _Damaged(
            f"stats.fill is {stats['fill']} where the other statistics and seq_len "
            f"({seq_len:,}) give {fill}"
        )
    return stats
