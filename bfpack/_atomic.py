"""Files written whole or not at all: a temporary name, renamed when complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary name beside ``path`` to write the file to.

    The name is ``.<name>.tmp-<random>`` (hidden, and unique, so that
    processes writing ``path`` at once never share one). When the block
    ends, the file is renamed to ``path`` (atomically: a reader sees the
    old file or the new one, never a part); when it raises, the file is
    removed. The writer flushes it to disk first where that matters.
    """
    folder, name = os.path.split(os.fspath(path))
    temporary = os.path.join(folder, f".{name}.tmp-{secrets.token_hex(4)}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
