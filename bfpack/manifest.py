"""The manifest of a packed directory: ``_bfpack.json``, written last.

It records the input, the options, the bfpack version, the shards in order
(file and rows) and the statistics of the packing. A directory without it
is not a finished bfpack output.
"""

import json
import os
from typing import Any

#: File name of the manifest inside an output directory.
MANIFEST = "_bfpack.json"


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as ``folder/_bfpack.json`` (indented JSON)."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
