"""mcutils: the numerical library behind the executable book on mode connectivity.

One module per concept (see ``shared/DESIGN.md``): :mod:`mcutils.runtime`, :mod:`mcutils.params`,
:mod:`mcutils.report`, :mod:`mcutils.stats`,
:mod:`mcutils.data`, :mod:`mcutils.models`, :mod:`mcutils.training`,
:mod:`mcutils.store`, :mod:`mcutils.plotting` and the chapter modules.
Submodules are imported lazily so that ``import mcutils`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "runtime", "data", "models", "training", "store", "plotting", "book",
    "inputspace", "percolation", "attacks", "detection", "curves", "backdoor",
    "faults", "hessian", "params", "report", "stats", "repair",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"mcutils.{name}")
    raise AttributeError(f"module 'mcutils' has no attribute {name!r}")
