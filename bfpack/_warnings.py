"""Warnings for users: attributed to their code, shown once per place
(:func:`warn_user` says why bfpack keeps its own registry of them)."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str) -> None:
    """A UserWarning attributed to the first caller outside bfpack, shown
    once per place of that call.

    Python's own once-per-place registry is cleared whenever any code
    changes the warning filters, which numba does while it compiles and
    pandas while it converts types; so under the default filters a record
    of its own keeps a script or a notebook cell that packs many tables to
    one line. Filters that show every warning ("always") or raise it
    ("error") are obeyed as usual.
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the caller of this function
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    module = frame.f_globals.get("__name__", "<string>")
    action = _filter_action(message, UserWarning, module, frame.f_lineno)
    place = {"once": (), "module": (module,)}.get(
        action, (frame.f_code.co_filename, frame.f_lineno)
    )
    key = (message, *place)
    if action in ("default", "module", "once") and key in _SHOWN:
        return
    warnings.warn(message, UserWarning, stacklevel=level)
    _SHOWN.add(key)


_SHOWN: set[tuple[Any, ...]] = set()


def _filter_action(message: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action the current warning filters give this warning (as Python decides it)."""
    for action, text, cat, mod, line in warnings.filters:
        if (
            (text is None or text.match(message))
            and issubclass(category, cat)
            and (mod is None or mod.match(module))
            and (line == 0 or line == lineno)
        ):
            return action
    return getattr(warnings, "defaultaction", "default")  # not in typeshed
