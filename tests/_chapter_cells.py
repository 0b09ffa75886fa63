"""Shared by the chapter profile tests: a notebook's parameters cell and the validation
cell right after it, and a scope in which a profile's parameters have been applied."""

from __future__ import annotations

from pathlib import Path

import nbformat

from mcutils.core import profiles
from mcutils.tooling import notebooks


def parameter_cells(notebook: Path) -> tuple[str, str]:
    """Sources of the ``parameters`` cell and of the validation cell after it."""
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    index = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    return code[index].source, code[index + 1].source


def profile_scope(notebook: Path, chapter: str, profile: str) -> tuple[dict, str]:
    """The notebook's defaults overlaid with the profile's values for ``chapter`` (device
    forced to cpu: the gpu profile's "cuda" is checked on GPU machines only), and the
    validation cell's source to run in that scope."""
    params_src, validate_src = parameter_cells(notebook)
    scope: dict = {}
    exec(params_src, scope)  # noqa: S102 - our own notebook
    scope.update(notebooks.chapter_parameters(profiles.load_profile(profile), chapter, notebook, profile))
    scope["device"] = "cpu"
    return scope, validate_src
