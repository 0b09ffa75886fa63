"""The command ``python -m mcutils.book``: the chapter runner of
:mod:`mcutils.tooling.runner` (``execute``, ``list``, ``prose``, ``offline``)."""

import sys

from mcutils.tooling.runner import main

if __name__ == "__main__":
    sys.exit(main())
