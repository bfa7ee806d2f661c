"""The manifest of a packed directory: ``.bfpack.json``, written last.

It records what a reader needs to trust the directory:

- ``format`` (2), ``bfpack_version`` and ``run_id`` (random, one per run:
  shards of two runs never share one);
- ``source`` and ``inputs``: the files read, each with its ``path``
  (relative to the source directory; the file name for a one-file source),
  ``size`` in bytes, ``rows``, ``mtime_ns`` and ``footer_sha256`` (of the
  file's footer: its metadata, their length and the magic), as they were
  throughout the run (older manifests lack the last two); ``skipped``: the files and
  directories the ``_``/``.`` convention left out;
- ``options``: how it was packed;
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
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

#: File name of the manifest inside an output directory.
MANIFEST = ".bfpack.json"
#: Its name in bfpack 0.1; a directory holding it is a bfpack output too.
LEGACY_MANIFEST = "_bfpack.json"
#: Version of the manifest's layout (bfpack 0.1 wrote no ``format``: 1).
FORMAT = 2

_CHUNK = 1 << 20


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
    from ._version import __version__

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
    """The manifest file of ``folder`` (the legacy name too), or None."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def read_manifest(folder: str) -> dict[str, Any]:
    """The manifest of the bfpack output ``folder``.

    Raises FileNotFoundError when ``folder`` holds none and ValueError when
    it is not a JSON object.
    """
    path = manifest_path(folder)
    if path is None:
        raise FileNotFoundError(
            f"{folder} is not a bfpack output: it holds no {MANIFEST}"
            + ("" if os.path.isdir(folder) else " (no such directory)")
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
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
