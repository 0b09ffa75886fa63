"""Compare the glued results of two runs of the book, chapter by chapter.

Usage::

    python benchmarks/glue_diff.py BEFORE_DIR AFTER_DIR [--chapters 01 04]

The same as ``python -m mcutils.book glue-diff`` (:mod:`mcutils.tooling.glue`). Each
folder holds executed notebooks (``book/chapters`` of ``make book``, or the ``--output``
of ``python -m mcutils.book execute``). For every glued name both runs record, it prints
per chapter how many values are identical, the largest number difference among the
others, the names whose text differs in words (a verdict, say), and the names only one
run has. It is how a change that should only alter speed or structure is checked.
"""

from __future__ import annotations

import sys

from mcutils.tooling.runner import main

if __name__ == "__main__":
    sys.exit(main(["glue-diff", *sys.argv[1:]]))
