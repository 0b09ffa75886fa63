"""The chapters layer: everything a chapter decides, in modules named after it
(``chNN_<topic>``; a long chapter splits into several, such as chapter 05's protocol and
its claims).

A chapter module owns its parameter schema (``PARAMETERS``, a
:class:`mcutils.params.ParameterSchema`: the notebook's ``parameters`` cell is rendered
from it and its validation cell calls it), its orchestration (sweeps, selections), its
claims and their controls, its tables and figures, and a ``findings(...)`` that records
what the chapter glues; the notebook only calls it. A chapter with expensive independent
pieces (one seed's training, one grid cell) may also define ``pool_parts(params)``: see
:func:`pool_parts`. It imports the science, training,
registries and core below it, and nothing imports it but the notebooks and the tooling.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mcutils.params import ParameterSchema

__all__ = ["MODULES", "schema", "pool_parts"]

#: chapter -> the module that declares its parameter schema
MODULES = {
    "00": "ch00_preliminaries",
    "01": "ch01_input_space",
    "02": "ch02_percolation",
    "03": "ch03_untrained",
    "04": "ch04_adversarial",
    "05": "ch05_protocol",
    "06": "ch06_robust_path",
}


def schema(chapter: str) -> ParameterSchema:
    """The parameter schema of ``chapter`` ("00" to "06")."""
    if chapter not in MODULES:
        raise KeyError(f"no chapter {chapter!r}; chapters: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__name__}.{MODULES[chapter]}")
    return module.PARAMETERS


def pool_parts(chapter: str, params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The independent parts of ``chapter`` that the runner computes in its worker pool
    before the chapter's notebook starts, as ``(label, "module:function", kwargs)``.

    A chapter module declares them with ``pool_parts(params) -> [(label, function_name,
    kwargs)]``, where ``params`` are the chapter's validated parameters (its schema's
    defaults under ``params``, as the notebook sees them). Each part computes and stores
    in the checkpoint cache exactly what the notebook loads later (the same function with
    the same arguments), so the notebook gets cache hits and its numbers are those of a
    one-process run. A chapter without parts gives ``[]``.
    """
    if chapter not in MODULES:
        raise KeyError(f"no chapter {chapter!r}; chapters: {', '.join(MODULES)}")
    module = importlib.import_module(f"{__name__}.{MODULES[chapter]}")
    declare = getattr(module, "pool_parts", None)
    if declare is None:
        return []
    full = module.PARAMETERS.validate({**module.PARAMETERS.defaults(), **dict(params)})
    parts = []
    for label, function, kwargs in declare(full):
        if not callable(getattr(module, function, None)):
            raise AttributeError(f"chapter {chapter}: pool part {label!r} names "
                                 f"{function!r}, which {module.__name__} does not define")
        parts.append((f"{chapter}:{label}", f"{module.__name__}:{function}", dict(kwargs)))
    return parts
