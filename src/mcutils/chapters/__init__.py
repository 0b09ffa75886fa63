"""The chapters layer: everything a chapter decides, in modules named after it
(``chNN_<topic>``; a long chapter splits into several, such as chapter 05's protocol and
its claims).

A chapter module owns its parameter schema (``PARAMETERS``, a
:class:`mcutils.params.ParameterSchema`: the notebook's ``parameters`` cell is rendered
from it and its validation cell calls it), its orchestration (sweeps, selections), its
claims and their controls, its tables and figures, and a ``findings(...)`` that records
what the chapter glues; the notebook only calls it. It imports the science, training,
registries and core below it, and nothing imports it but the notebooks and the tooling.
"""

from __future__ import annotations

import importlib

from mcutils.params import ParameterSchema

__all__ = ["MODULES", "schema"]

#: chapter -> the module that declares its parameter schema
MODULES = {
    "00": "ch00_preliminaries",
    "01": "ch01_input_space",
    "02": "ch02_percolation",
    "03": "ch03_untrained",
    "04": "ch04_adversarial",
    "05": "ch05_protocol",
    "06": "ch06_robust_path",
    "07": "ch07_learned_curves",
}


def schema(chapter: str) -> ParameterSchema:
    """The parameter schema of ``chapter`` ("00" to "07")."""
    if chapter not in MODULES:
        raise KeyError(f"no chapter {chapter!r}; chapters: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__name__}.{MODULES[chapter]}")
    return module.PARAMETERS
