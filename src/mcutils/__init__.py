"""mcutils: the numerical library behind the executable book on mode connectivity.

One layered package; every import runs downward and a file's folder tells its layer:

* :mod:`mcutils.core`: runtime (device, seeds, speed plan, execution contexts), store,
  profiles, stats, report, checks, tensors, paths;
* :mod:`mcutils.data`, :mod:`mcutils.models`: the registries;
* :mod:`mcutils.training`: the training loop, schedules and optimizers;
* the science: curves, attacks, hessian, inputspace, percolation, detection, backdoor,
  faults, repair, pruning, plus the chapter orchestration still to move to a chapters layer;
* :mod:`mcutils.tooling`: the runners and the book's checks (``python -m mcutils.book``,
  ``python -m mcutils.gpucheck`` are their commands).

Submodules are imported lazily so that ``import mcutils`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "core", "data", "models", "training", "plotting", "params", "tooling",
    "inputspace", "percolation", "attacks", "detection", "curves", "backdoor",
    "faults", "hessian", "repair", "pruning", "advbarriers", "planted", "zoo",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"mcutils.{name}")
    raise AttributeError(f"module 'mcutils' has no attribute {name!r}")
