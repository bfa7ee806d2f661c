"""bfpack: best-fit packing of documents into training sequences.

Documents longer than the context length are cut into context-length
chunks plus a remainder; every piece is then packed whole with best-fit
decreasing, so almost no document is truncated (Ding et al., "Fewer
Truncations Improve Language Modeling", ICML 2024).

The public names load their module on first use (:mod:`bfpack._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from .analysis import compare, document_lengths, truncation_profile
    from .methods import METHODS, Method
    from .packing import DocumentCounts, Packing, PackingStats, pack
    from .parquet import Verification, pack_parquet, verify
    from .stream import StreamPacker, TableStreamPacker
    from .table import OutputSpec, PieceSources, assemble, cu_seqlens, max_seqlen, pack_table

#: Public name -> the module that defines it.
_EXPORTS = {
    "compare": "analysis",
    "document_lengths": "analysis",
    "truncation_profile": "analysis",
    "METHODS": "methods",
    "Method": "methods",
    "DocumentCounts": "packing",
    "Packing": "packing",
    "PackingStats": "packing",
    "pack": "packing",
    "pack_parquet": "parquet",
    "StreamPacker": "stream",
    "TableStreamPacker": "stream",
    "OutputSpec": "table",
    "PieceSources": "table",
    "assemble": "table",
    "cu_seqlens": "table",
    "max_seqlen": "table",
    "pack_table": "table",
    "Verification": "parquet",
    "verify": "parquet",
}

__all__ = [
    "METHODS",
    "DocumentCounts",
    "Method",
    "OutputSpec",
    "Packing",
    "PackingStats",
    "PieceSources",
    "StreamPacker",
    "TableStreamPacker",
    "Verification",
    "__version__",
    "assemble",
    "compare",
    "cu_seqlens",
    "document_lengths",
    "max_seqlen",
    "pack",
    "pack_parquet",
    "pack_table",
    "truncation_profile",
    "verify",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
