"""Writing a directory so that readers see all of it or none of it."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def staged_directory(dst: str) -> Iterator[str]:
    """Yield a new empty directory beside ``dst``; rename it to ``dst`` on success.

    An existing ``dst`` is replaced only once the new one is complete; on
    any exception (KeyboardInterrupt included) the new directory is removed
    and ``dst`` is left as it was.
    """
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.tmp-", dir=parent)
    try:
        yield tmp
        _replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: str, dst: str) -> None:
    if not os.path.exists(dst):
        os.rename(tmp, dst)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.old-", dir=os.path.dirname(dst))
    os.rename(dst, os.path.join(old, "d"))
    os.rename(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)
