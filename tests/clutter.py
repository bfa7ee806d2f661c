"""A pytest plugin: the tests leave the system temporary directory as they found it.

For the whole session, ``TMPDIR`` (read by :mod:`tempfile` here and in every
child process: the command line, notebook kernels, asv) points to a fresh
directory of its own. Whatever is left in it at the end was written by the
code under test and not removed: the session fails and names it, then the
directory is deleted. pytest's own ``tmp_path`` folders stay where pytest
puts them (``PYTEST_DEBUG_TEMPROOT``, the system temporary directory by
default), with pytest's own retention.

Checking a private directory, rather than listing the shared system one
before and after, keeps the check exact when other processes on the machine
create and remove their own temporary files meanwhile.

Two libraries the training tests use keep files of their own there:
``datasets`` puts the cache files of in-memory datasets in an
``hf_datasets-*`` directory that it removes at interpreter exit (after this
check), and torch compiles into ``torchinductor_<user>`` unless
``TORCHINDUCTOR_CACHE_DIR`` says otherwise. The first is not counted; the
second is sent to a folder of the session's own, removed with it. So are
the Arrow copies of ``bfpack.torch.PackedDataset`` (``BFPACK_CACHE_DIR``),
which would otherwise go to the user's ``~/.cache/bfpack``.
"""

import os
import shutil
import tempfile

import pytest

_KEY = pytest.StashKey[dict]()
#: What libraries keep in the scratch directory and remove themselves (or
#: the session removes): not left by bfpack.
_TORCH_CACHE = ".torchinductor"
_BFPACK_CACHE = ".bfpack-cache"
_OWNED_BY_LIBRARIES = ("hf_datasets-", _TORCH_CACHE, _BFPACK_CACHE)


def pytest_configure(config):
    system = tempfile.gettempdir()
    scratch = tempfile.mkdtemp(prefix="bfpack-tests-tmp-", dir=system)
    saved = {
        k: os.environ.get(k)
        for k in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT", "TORCHINDUCTOR_CACHE_DIR", "BFPACK_CACHE_DIR")
    }
    config.stash[_KEY] = {"scratch": scratch, "saved": saved, "tempdir": tempfile.tempdir}
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", system)
    os.environ["TMPDIR"] = scratch
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(scratch, _TORCH_CACHE))
    os.environ["BFPACK_CACHE_DIR"] = os.path.join(scratch, _BFPACK_CACHE)
    tempfile.tempdir = scratch


def pytest_sessionfinish(session, exitstatus):
    state = session.config.stash.get(_KEY, None)
    if state is None:
        return
    scratch = state["scratch"]
    left = sorted(n for n in os.listdir(scratch) if not n.startswith(_OWNED_BY_LIBRARIES))
    shutil.rmtree(scratch, ignore_errors=True)
    tempfile.tempdir = state["tempdir"]
    for key, value in state["saved"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            "the tests left files in the temporary directory (removed now; write "
            f"under tmp_path or clean up): {', '.join(left)}"
        )
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
