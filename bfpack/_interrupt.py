"""SIGINT and SIGTERM for the command line: clean up, one line, exit 130 or 143.

:class:`InterruptGuard` turns the first SIGINT or SIGTERM into an
:class:`Interrupted` exception (a KeyboardInterrupt), so that ``finally``
blocks and context managers clean up as the stack unwinds. It also records
the signal: a library that swallows the exception (llvmlite can, while
numba loads compiled kernels from its cache) cannot make the run look
successful, because :meth:`InterruptGuard.check` raises again at the next
safe point (after each window, and before the command reports success).

This module imports nothing heavy: the command line installs the guard
before numpy, pyarrow and numba load.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

#: Exit status after each signal (128 + the signal number, as shells report it).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class InterruptGuard:
    """Handle SIGINT and SIGTERM while in the ``with`` block (main thread only).

    The first signal raises :class:`Interrupted`; later ones are only
    recorded, so cleanup is not cut short. After :meth:`quiet`, signals are
    only recorded. With ``restore`` (the default) the previous handlers are
    put back on exit; the command line keeps them until the process ends,
    so that a signal arriving in its last instructions cannot escape as a
    traceback.
    """

    def __init__(self, *, restore: bool = True) -> None:
        self.signum: int | None = None
        self._raise = True
        self._restore = restore
        self._old: dict[int, object] = {}
        self._old_hook = sys.unraisablehook

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_STATUS:
                self._old[signum] = signal.signal(signum, self._handle)
            self._old_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        return self

    def _unraisable(self, unraisable: Any) -> None:
        # An exception raised inside a ctypes callback (llvmlite's, while
        # numba loads its cache) cannot propagate: Python prints it as
        # "Exception ignored". Ours is recorded; check() raises it again.
        if not isinstance(unraisable.exc_value, Interrupted):
            self._old_hook(unraisable)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self._raise:
            raise Interrupted(signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal has arrived (a safe point)."""
        if self.signum is not None and self._raise:
            raise Interrupted(self.signum)

    def quiet(self) -> None:
        """From now on only record signals."""
        self._raise = False

    @property
    def exit_status(self) -> int | None:
        """130 after SIGINT, 143 after SIGTERM, None if no signal arrived."""
        return None if self.signum is None else EXIT_STATUS[signal.Signals(self.signum)]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._raise = False
        if self._restore and self._old:
            for signum, handler in self._old.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._old.clear()
            sys.unraisablehook = self._old_hook
