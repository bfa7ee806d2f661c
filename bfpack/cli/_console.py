"""What the command line writes on stderr: log lines, warnings, errors and
progress bars.

The library logs what it does to the ``bfpack`` logger (INFO: what it
reads and writes; DEBUG: every file, window and shard) and never configures
it. For the length of a command, :class:`Console` sends those records to
stderr, one line each (``bfpack: ...``), with the warnings and errors, and
draws progress bars with tqdm on a terminal. Lines written while a bar is
shown go above it, and the bar is drawn again below them.

tqdm is imported when the first bar is drawn, never in a pipe or with
``--quiet``, and never by ``import bfpack``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

#: The logger every module of bfpack logs under (``bfpack.parquet``, ...).
LOGGER = "bfpack"

#: Log level by verbosity: ``--quiet`` (-1), nothing (0), ``-v`` (1), ``-vv`` (2).
LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}

#: Seconds between two redraws of a bar at most (tqdm's ``mininterval``).
REDRAW_SECONDS = 0.2


class Console:
    """stderr for one command: lines, and at most one progress bar at a time.

    Parameters
    ----------
    stream : file, optional
        Where everything goes (default: ``sys.stderr`` at creation).
    verbosity : int
        -1 (``--quiet``), 0, 1 (``-v``) or 2 and more (``-vv``): the level of
        the ``bfpack`` log records shown, see :data:`LEVELS`.
    bars : bool, optional
        Whether progress bars are drawn; default: when ``stream`` is a
        terminal and ``verbosity`` is not -1.
    """

    def __init__(
        self, stream: IO[str] | None = None, *, verbosity: int = 0, bars: bool | None = None
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.verbosity = max(-1, verbosity)
        if bars is None:
            bars = self.verbosity >= 0 and _is_terminal(self.stream)
        self.bars = bars
        self.started = time.time()  # log records carry time.time()
        self._bar: Any = None  # the tqdm bar on screen, if any

    # -- lines ---------------------------------------------------------------

    def line(self, text: str) -> None:
        """Write one line; above the progress bar, if one is shown."""
        bar = self._bar  # once: a writer thread may log while the main thread closes it
        if bar is not None:
            bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def warning(self, message: Any) -> None:
        self.line(f"bfpack: warning: {message}")

    def error(self, message: Any) -> None:
        self.line(f"bfpack: error: {message}")

    @contextmanager
    def logging(self) -> Iterator[None]:
        """Show the ``bfpack`` log records of this verbosity, inside the block.

        The logger's level, handlers and propagation are restored after it,
        so that :func:`bfpack.cli.main` called from a program leaves
        that program's logging as it was.
        """
        logger = logging.getLogger(LOGGER)
        saved = logger.level, logger.handlers[:], logger.propagate
        handler = _LineHandler(self)
        logger.handlers = [handler]
        logger.setLevel(LEVELS[min(self.verbosity, 2)])
        logger.propagate = False  # one line per record, not one more from the root's handler
        try:
            yield
        finally:
            level, logger.handlers, logger.propagate = saved
            logger.setLevel(level)  # which also clears the loggers' cached levels

    # -- progress ------------------------------------------------------------

    @contextmanager
    def progress(
        self, view: View, start: tuple[str, str, str] | None = None
    ) -> Iterator[Callable[[Mapping[str, Any]], None]]:
        """A progress callback for the library, drawing a bar inside the block.

        ``view(totals)`` says what the callback's dict of running totals
        means: ``(label, unit, done, total)``, or ``(label, unit, done,
        total, postfix)``. A new label starts a new bar (a new stage).
        ``start=(label, unit, text)`` draws the bar at once, before the
        first call, as ``label: text``.
        The bar is closed (left on screen) at the end of the block, even
        when the command fails. Without bars the callback does nothing.
        """
        if not self.bars:
            yield _ignore
            return
        try:
            if start is not None:
                label, unit, text = start
                self._bar = self._new_bar(label, unit, f"{{desc}}: {text}")
            yield lambda totals: self._show(view(totals))
        finally:
            self._close()

    def _show(self, shown: tuple[Any, ...]) -> None:
        label, unit, done, total, *postfix = shown
        if self._bar is not None and self._bar.desc != label:
            self._close()
        if self._bar is None:
            self._bar = self._new_bar(label, unit)
        self._bar.bar_format = None  # tqdm's own, after the start text
        self._bar.total = total or None  # 0: an empty input, a count without a percentage
        if postfix:
            self._bar.set_postfix_str(postfix[0], refresh=False)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)
        else:
            self._bar.refresh()

    def _new_bar(self, label: str, unit: str, bar_format: str | None = None) -> Any:
        from tqdm import tqdm

        # A terminal that reports no width (a fresh pseudo-terminal) gets 80 columns.
        width = None if _columns(self.stream) else 80
        return tqdm(
            desc=label,
            unit=unit,
            unit_scale=True,
            bar_format=bar_format,
            file=self.stream,
            ncols=width,
            dynamic_ncols=width is None,
            mininterval=REDRAW_SECONDS,
            smoothing=0.1,
        )

    def _close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.close()


#: What a progress dict means: ``(label, unit, done, total[, postfix])``.
View = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _ignore(totals: Mapping[str, Any]) -> None:
    pass


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def _columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` is, or 0 when it reports none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # not a file, closed, not a terminal
        return 0


class _LineHandler(logging.Handler):
    """Log records as ``bfpack: [level: ]message`` lines of a :class:`Console`."""

    _PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: "}

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = self._PREFIX.get(min(record.levelno, logging.ERROR), "")
            text = " ".join(record.getMessage().split())  # one line, whatever it holds
            clock = ""
            if self.console.verbosity >= 2:
                clock = f"[{record.created - self.console.started:7.2f}s] "
            self.console.line(f"bfpack: {clock}{level}{text}")
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)
