"""``python -m optmm``: the ``optmm`` command line (see :mod:`optmm.cli`)."""

import sys

from optmm.cli import run

if __name__ == "__main__":
    sys.exit(run())
