"""SIGINT and SIGTERM: held back where an exception must not land, and the
command line's guard (clean up, one line, exit 130 or 143).

:func:`held` keeps signals from cutting a block in two: the directory
swap, and every call of a numba kernel (:func:`bfpack._jit.call`). numba
runs Python code while it builds a kernel's tuple result, and a handler
that raises there (Python's own SIGINT handler raises KeyboardInterrupt)
leaves a NULL object in numba's hands: a SystemError, or, for a named
tuple, a segmentation fault (numba 0.68; ``tests/test_signals.py``).

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

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

#: Exit status after each signal (128 + the signal number, as shells report it).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextlib.contextmanager
def held(*, defaults: bool = False) -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block is over, then deliver them.

    Python runs signal handlers in the main thread, between bytecodes,
    whichever thread the signal was delivered to (so blocking it in one
    thread would not do). In the main thread, each Python-level handler is
    swapped for one that only records; on leaving the block, the handlers
    are put back and each recorded signal is raised again, once, so its
    own handler runs at once, as if the signal had just come. Ignored
    signals are left alone, and so are those left to the system's default
    action (which ends the process at once) unless ``defaults``: a block
    that must not be cut even by the end of the process, such as the
    directory swap, holds them too. Elsewhere than the main thread the
    block runs as it is: no handler runs there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old: dict[int, Any] = {}
    try:
        for signum in EXIT_STATUS:
            handler = signal.getsignal(signum)
            if callable(handler) or (defaults and handler == signal.SIG_DFL):
                # signal.signal first runs the handlers of signals already
                # come: one may raise here, before the block begins.
                old[signum] = signal.signal(signum, lambda s, f: pending.append(s))
        yield
    finally:
        _put_back(old, pending)


def _put_back(old: dict[int, Any], pending: list[int]) -> None:
    """Restore the handlers ``old``, then raise the ``pending`` signals again.

    Every handler is put back even if a restored one raises meanwhile
    (signal.signal runs pending handlers before it swaps); the first
    exception is raised at the end.
    """
    error: BaseException | None = None
    for signum, handler in old.items():
        while True:
            try:
                signal.signal(signum, handler)
                break
            except BaseException as exc:  # a restored handler raised: swap again
                error = error or exc
    for signum in dict.fromkeys(pending):
        try:
            signal.raise_signal(signum)
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


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
        """Install the handlers (once: a guard entered again, such as the
        command line's installed early and quiet, only raises again)."""
        if not self._old and threading.current_thread() is threading.main_thread():
            for signum in EXIT_STATUS:
                self._old[signum] = signal.signal(signum, self._handle)
            self._old_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        self._raise = True
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
