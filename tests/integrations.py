"""The optional libraries that integration tests need, and how to get them.

Integration tests (marked ``integration``) run where torch, transformers,
datasets, TRL or Dask are installed, and are skipped with one line saying
how to install them where they are not.
"""

import pytest

#: How to install every integration; PyTorch first, from its CPU index, so
#: that pip does not choose a CUDA build of several GB.
INSTALL = (
    "pip install torch --index-url https://download.pytorch.org/whl/cpu && "
    "pip install -e '.[test,test-train,test-storage]'"
)


def need(module):
    """``module`` imported, or the test skipped with a line saying how to install it."""
    return pytest.importorskip(module, reason=f"needs {module} ({INSTALL})")
