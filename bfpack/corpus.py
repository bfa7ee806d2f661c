"""Built-in corpora for demonstrations: no download needed."""

import os
import sysconfig

import numpy as np
import pyarrow as pa


def stdlib_files() -> list[str]:
    """Paths of the Python standard library's ``.py`` files, sorted.

    The standard library ships with every interpreter, so it is a real code
    corpus that is always at hand. Third-party packages (``site-packages``)
    are left out, so the corpus depends only on the Python version.
    """
    root = sysconfig.get_paths()["stdlib"]
    paths: list[str] = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if d not in ("site-packages", "dist-packages", "__pycache__")
        )
        paths.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))
    return paths


def stdlib_lengths() -> np.ndarray:
    """Length in tokens of every standard-library file, one token per byte.

    Byte-level tokens (as in byte-level models, before any merges) keep the
    corpus exact and fast to build; lengths are file sizes in bytes.
    """
    return np.array([os.path.getsize(p) for p in stdlib_files()], dtype=np.int64)


def web_like_lengths(num_docs: int, seed: int = 0) -> np.ndarray:
    """Synthetic web-text lengths: ``lognormal(6, 1.3) + 1`` tokens.

    The shape (median ~400 tokens, a long tail past 10k) resembles crawled
    web corpora such as RefinedWeb.
    """
    rng = np.random.default_rng(seed)
    return (rng.lognormal(6.0, 1.3, num_docs) + 1).astype(np.int64)


def stdlib_table() -> pa.Table:
    """The standard library as a table: ``path`` and ``input_ids``.

    ``input_ids`` holds each file's UTF-8 bytes as uint8 tokens (byte-level
    tokenization), so the corpus is exact and built in about a second.
    """
    paths = stdlib_files()
    data = []
    for p in paths:
        with open(p, "rb") as f:
            data.append(f.read())
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    values = np.frombuffer(b"".join(data), dtype=np.uint8)
    ids = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))
    ids = ids.cast(pa.list_(pa.uint8())) if offsets[-1] < 2**31 else ids
    return pa.table({"path": paths, "input_ids": ids})
