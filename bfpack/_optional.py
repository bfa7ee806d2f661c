"""Optional dependencies: one way to import them, one message when missing.

``import bfpack`` needs numpy, pyarrow and numba only. The integrations
import what their extra installs inside :func:`requires`, which turns a
missing module into an ImportError that names the extra::

    with requires("torch", needed_by="bfpack.torch"):
        import torch

    ImportError: bfpack.torch needs torch: pip install 'bfpack[torch]'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: The top-level modules each extra of pyproject.toml installs.
EXTRAS = {
    "dask": ("dask", "distributed"),
    "hf": ("datasets",),
    "plot": ("matplotlib",),
    "s3": ("boto3",),
    "torch": ("torch",),
    "trl": ("trl", "transformers", "torch"),
}


@contextlib.contextmanager
def requires(extra: str, *, needed_by: str) -> Iterator[None]:
    """Import, in the block, modules that ``pip install 'bfpack[<extra>]'`` installs.

    A module of that extra that is not installed raises ImportError naming
    ``needed_by`` and the command that installs it. Any other failure (a
    module of the extra that is installed but broken) is passed on as it is.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in EXTRAS[extra]:
            raise
        raise ImportError(
            f"{needed_by} needs {missing}: pip install 'bfpack[{extra}]'", name=exc.name
        ) from None
