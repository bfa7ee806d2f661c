"""Comparing packed output directories in tests."""

import json
import os

from bfpack.parquet.manifest import MANIFEST


def contents(dst):
    """Every file of an output: the shards' bytes, the manifest without its run id
    (which differs from run to run by design)."""
    out = {}
    for name in sorted(os.listdir(dst)):
        data = (dst / name).read_bytes()
        if name == MANIFEST:
            data = {**json.loads(data), "run_id": None}
        out[name] = data
    return out
