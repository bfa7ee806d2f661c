"""bfpack: best-fit packing of documents into training sequences.

Documents longer than the context length are cut into context-length
chunks plus a remainder; every piece is then packed whole with best-fit
decreasing, so almost no document is truncated (Ding et al., "Fewer
Truncations Improve Language Modeling", ICML 2024).

The public names load their module on first use: ``import bfpack`` itself
imports neither numpy, pyarrow nor numba, so that the command line can
install its signal handlers before they load.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .analysis import compare, document_lengths, truncation_profile
    from .methods import METHODS, Method
    from .packing import DocumentCounts, Packing, PackingStats, pack
    from .parquet import pack_parquet
    from .stream import StreamPacker, TableStreamPacker
    from .table import OutputSpec, assemble, cu_seqlens, max_seqlen, pack_table
    from .verification import Verification, verify

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
    "assemble": "table",
    "cu_seqlens": "table",
    "max_seqlen": "table",
    "pack_table": "table",
    "Verification": "verification",
    "verify": "verification",
}

__all__ = [
    "METHODS",
    "DocumentCounts",
    "Method",
    "OutputSpec",
    "Packing",
    "PackingStats",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f".{name}", __name__)  # bfpack.table, ...
    else:
        raise AttributeError(f"module 'bfpack' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
