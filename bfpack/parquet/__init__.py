"""Packed Parquet directories: write one, check one, read its manifest.

A packed output is a directory of Parquet shards and a manifest
(:mod:`bfpack.parquet.manifest`), written by :func:`pack_parquet` into a
staged directory that a locked, atomic swap puts in place, and checked by
:func:`verify`. Named after its format, as :mod:`pyarrow.parquet` is.

Modules: ``_source`` reads the input in windows of whole documents,
``_pack`` drives a run, ``_shards`` writes the shards, ``_staging`` holds
the lock and the swap, ``_verify`` checks an output, and ``manifest``
defines the manifest. None of them packs: packing is
:class:`bfpack.stream.TableStreamPacker`'s.

The public names load their module on first use (:mod:`bfpack._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ..options import DEFAULT_WINDOW_TOKENS
    from ._pack import pack_parquet
    from ._shards import WRITE_OPTIONS, ShardWriter
    from ._staging import DestinationBusyError
    from ._verify import Verification, verify
    from .manifest import MANIFEST, read_manifest

_EXPORTS = {
    "DEFAULT_WINDOW_TOKENS": "_pack",  # defined in bfpack.options
    "pack_parquet": "_pack",
    "WRITE_OPTIONS": "_shards",
    "ShardWriter": "_shards",
    "DestinationBusyError": "_staging",
    "Verification": "_verify",
    "verify": "_verify",
    "MANIFEST": "manifest",
    "read_manifest": "manifest",
}

__all__ = [
    "DEFAULT_WINDOW_TOKENS",
    "MANIFEST",
    "DestinationBusyError",
    "ShardWriter",
    "Verification",
    "WRITE_OPTIONS",
    "pack_parquet",
    "read_manifest",
    "verify",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
