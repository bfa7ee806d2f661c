"""``python -m bfpack``: the command line (:mod:`bfpack.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
