"""The command ``python -m mcutils.gpucheck``: the headless chapter runner of
:mod:`mcutils.tooling.gpucheck` (the quick GPU check, ``--profile gpu-smoke``)."""

import sys

from mcutils.tooling.gpucheck import main

if __name__ == "__main__":
    sys.exit(main())
