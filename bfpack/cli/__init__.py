"""The command line: ``bfpack`` (or ``python -m bfpack``).

``bfpack pack SRC DST`` packs a dataset (Parquet, Arrow IPC, JSON Lines); ``bfpack stats SRC``
compares the packing methods on it; ``bfpack verify DST`` checks an output
against its manifest (and its source); ``bfpack demo`` runs the whole job on
the Python standard library.

Each command is a module of this package (``pack``, ``stats``, ``verify``,
``demo``) listed in :data:`bfpack.cli._app.COMMANDS`; ``_console`` draws the
progress bars and log lines, ``_comparison`` prints ``stats``' tables and
``_demo`` runs the demo.
"""

# First: the program records SIGINT and SIGTERM from here on (see _early).
from . import _early  # noqa: F401  isort: skip
from ._app import main

__all__ = ["main"]
