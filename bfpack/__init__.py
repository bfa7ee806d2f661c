"""bfpack: best-fit packing of documents into training sequences.

Documents longer than the context length are cut into context-length
chunks plus a remainder; every piece is then packed whole with best-fit
decreasing, so almost no document is truncated (Ding et al., "Fewer
Truncations Improve Language Modeling", ICML 2024).
"""

from ._version import __version__
from .analysis import compare, truncation_profile
from .packing import Packing, PackingStats, pack
from .parquet import pack_parquet
from .table import cu_seqlens, max_seqlen, pack_table

__all__ = ["Packing", "PackingStats", "compare", "cu_seqlens", "max_seqlen",
           "pack", "pack_parquet", "pack_table", "truncation_profile",
           "__version__"]
