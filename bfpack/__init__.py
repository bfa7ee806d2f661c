"""bfpack: best-fit packing of documents into training sequences.

Documents longer than the context length are cut into context-length
chunks plus a remainder; every piece is then packed whole with best-fit
decreasing, so almost no document is truncated (Ding et al., "Fewer
Truncations Improve Language Modeling", ICML 2024).
"""

from ._version import __version__
from .analysis import compare, document_lengths, truncation_profile
from .methods import METHODS, Method
from .packing import DocumentCounts, Packing, PackingStats, pack
from .parquet import pack_parquet
from .stream import StreamPacker, TableStreamPacker
from .table import OutputSpec, assemble, cu_seqlens, max_seqlen, pack_table

__all__ = [
    "METHODS",
    "DocumentCounts",
    "Method",
    "OutputSpec",
    "Packing",
    "PackingStats",
    "StreamPacker",
    "TableStreamPacker",
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
]
