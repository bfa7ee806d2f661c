"""The program's signal guard, installed before the command line loads.

Run as the program (``python -m bfpack``, or the ``bfpack`` script), SIGINT
and SIGTERM are recorded from the moment this module is imported, the
first thing :mod:`bfpack.cli` does: before argparse, logging and the
console load, so an interrupt while the program starts is one line too.
:func:`bfpack.cli.main` takes this guard over and reports what it recorded.
"""

import os
import sys

from .._interrupt import InterruptGuard


def _is_program() -> bool:
    """Whether this process is the ``bfpack`` program (not a Python program
    that imports bfpack.cli and calls main(argv))."""
    argv0 = (getattr(sys, "argv", None) or [""])[0]  # none in an embedded interpreter
    return os.path.basename(argv0) == "bfpack" or argv0.endswith(
        os.path.join("bfpack", "__main__.py")
    )


#: The program's guard, recording signals until main() is ready to report
#: them; None when bfpack.cli is imported by a Python program.
GUARD = None
if _is_program():
    GUARD = InterruptGuard(restore=False).__enter__()
    GUARD.quiet()
