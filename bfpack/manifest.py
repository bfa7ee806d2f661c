"""The manifest of a packed directory: ``.bfpack.json``, written last.

It records the input, the options, the bfpack version, the shards in order
(file and rows) and the statistics of the packing. A directory without it
is not a finished bfpack output.

The name starts with a dot so that readers of the directory as a Parquet
dataset skip it: pyarrow and pandas skip ``_`` and ``.`` files, but Hugging
Face ``datasets.load_dataset("parquet", data_dir=...)`` skips only hidden
(``.``) files and fails on any other file that is not Parquet.
"""

import json
import os
from typing import Any

#: File name of the manifest inside an output directory.
MANIFEST = ".bfpack.json"
#: Its name in bfpack 0.1; a directory holding it is a bfpack output too.
LEGACY_MANIFEST = "_bfpack.json"


def write_manifest(folder: str, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as ``folder/.bfpack.json`` (indented JSON)."""
    with open(os.path.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
