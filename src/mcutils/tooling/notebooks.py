"""The chapter notebooks as files: which exist, the parameters each declares and gets
from a profile, and their code cells, read from the JSON without nbformat.

Used by the runners (:mod:`mcutils.tooling.runner`, :mod:`mcutils.tooling.gpucheck`) and
the tests that keep each notebook's defaults equal to ``profiles/cpu.yaml``.

Used by the tooling, not by the chapters.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.core.profiles import load_profile

__all__ = ["chapters", "chapter_plan", "set_environ", "restore_environ", "chapter_parameters", "notebook_defaults", "notebook_cells",
           "parameter_cell_drift", "check_plan"]


def chapters(root: Path | None = None) -> dict[str, Path]:
    """Chapter number (``"00"``, ``"01"`` ...) -> notebook path, from ``notebooks/NN_*.ipynb``."""
    folder = (root or repo_root()) / "notebooks"
    found = {}
    for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        found[nb.name[:2]] = nb
    return found


def _declared(notebook: Path) -> dict[str, Any]:
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def chapter_parameters(profile: dict[str, Any], chapter: str, notebook: Path,
                       profile_name: str | None = None,
                       declared: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters one chapter gets from a profile (checked against its declaration).

    ``declared`` (the notebook's parameter names) is read with papermill when not given.
    """
    if declared is None:
        declared = _declared(notebook)
    params = {k: v for k, v in profile["defaults"].items() if k in declared}
    section = profile["chapters"].get(chapter, {})
    unknown = sorted(set(section) - set(declared))
    if unknown:
        raise ParameterError(
            f"profile section for chapter {chapter} sets {unknown}, which {notebook.name} does "
            f"not declare; its parameters are: {', '.join(declared)}"
        )
    params.update(section)
    if profile_name is not None and "profile" in declared:
        params["profile"] = profile_name
    return params


def _read_notebook(notebook: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(notebook, Mapping):
        return dict(notebook)
    return json.loads(Path(notebook).read_text(encoding="utf-8"))


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def notebook_defaults(notebook: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The parameter defaults of a notebook: the assignments of its ``parameters`` cell.

    Each top-level assignment ``name = <literal>`` of the cell tagged ``parameters`` is
    read with :func:`ast.literal_eval` (nothing is executed).

    Args:
        notebook: a path to an ``.ipynb`` file, or the notebook as a JSON mapping.

    Returns:
        ``{name: value}`` in the cell's order.

    Raises:
        ParameterError: no ``parameters`` cell, or a default that is not a literal.
    """
    nb = _read_notebook(notebook)
    cells = [c for c in nb.get("cells", [])
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ParameterError(f"{notebook}: no cell is tagged 'parameters'")
    out: dict[str, Any] = {}
    for node in ast.parse(_source(cells[0])).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            try:
                out[target.id] = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ParameterError(
                    f"{notebook}: the default of {target.id!r} is not a literal "
                    f"({ast.unparse(node.value)}); profiles and tests need literals") from exc
    return out


def notebook_cells(path: str | Path) -> list[dict[str, Any]]:
    """The code cells of a notebook, read from its JSON: ``[{"source": str, "tags": [...]}]``."""
    nb = json.loads(Path(path).read_text())
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        cells.append({"source": "".join(src) if isinstance(src, list) else src,
                      "tags": list(cell.get("metadata", {}).get("tags", []))})
    return cells


def chapter_plan(profile: str, selected: Sequence[str] | None, overrides: dict[str, Any],
          root: Path, declare: Any = None) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Chapter -> notebook and chapter -> parameters; ``declare(notebook)`` lists a
    notebook's parameters (papermill's reading by default; :mod:`mcutils.tooling.gpucheck` passes
    :func:`notebook_defaults`, which needs no papermill)."""
    declare = declare or _declared
    prof = load_profile(profile, root)
    available = chapters(root)
    selected = [str(c).zfill(2) for c in (selected or available)]
    bad = [c for c in selected if c not in available]
    if bad:
        raise ParameterError(
            f"chapter(s) {bad} not found; valid values: {', '.join(available)}"
        )
    unknown_sections = sorted(set(prof["chapters"]) - set(available))
    if unknown_sections:
        raise ParameterError(f"profile {profile!r} has sections for missing chapters "
                             f"{unknown_sections}; valid: {', '.join(available)}")
    declared = {c: declare(available[c]) for c in selected}
    plan = {c: chapter_parameters(prof, c, available[c], profile, declared[c]) for c in selected}
    if overrides:
        unused = sorted(k for k in overrides if not any(k in d for d in declared.values()))
        if unused:
            raise ParameterError(f"override(s) {unused} are declared by none of the chapters "
                                 f"{', '.join(selected)}")
        for c in selected:
            plan[c].update({k: v for k, v in overrides.items() if k in declared[c]})
    if Path(root).resolve() == _PACKAGE_REPO:  # the book's own chapters (not a test's)
        check_plan(plan)
    return available, plan


#: the repository this package lives in (src/mcutils/tooling/notebooks.py -> the root)
_PACKAGE_REPO = Path(__file__).resolve().parents[3]


def check_plan(plan: Mapping[str, Mapping[str, Any]]) -> None:
    """Check every planned chapter's parameters against its schema before any kernel
    starts, so a bad value in a profile or an override fails in seconds, not when its
    chapter's turn comes. CUDA devices are left to :func:`mcutils.tooling.preflight.preflight`,
    which says what is missing on a machine without them.

    Raises:
        ParameterError: every bad parameter of every chapter, in one message.
    """
    from mcutils.chapters import MODULES, schema

    problems = []
    for chapter, params in plan.items():
        if chapter not in MODULES:
            continue
        sch = schema(chapter)
        values = {**sch.defaults(), **params}
        if str(values.get("device", "")).startswith("cuda"):
            values["device"] = "cpu"
        try:
            sch.validate(values)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise ParameterError("\n".join(problems))


def set_environ(updates: Mapping[str, str]) -> dict[str, str | None]:
    """Set environment variables for the chapter kernels started next; returns the
    previous values for :func:`restore_environ`."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    return saved


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put back the values :func:`set_environ` returned (unset where there was none)."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def parameter_cell_drift(write: bool = False, root: Path | None = None,
                         selected: Sequence[str] | None = None) -> dict[str, str]:
    """Chapters whose ``parameters`` cell differs from its schema's
    :meth:`~mcutils.params.ParameterSchema.cell_source` (chapter -> notebook name).

    With ``write=True`` those cells are rewritten from the schema (outputs and metadata
    kept), so the schema in the chapter module stays the one declaration. ``selected``
    limits the check to some chapters.
    """
    from mcutils.chapters import MODULES, schema

    drift = {}
    for chapter, nb_path in chapters(root).items():
        if chapter not in MODULES or (selected is not None and chapter not in selected):
            continue
        nb = _read_notebook(nb_path)
        cells = [c for c in nb.get("cells", [])
                 if "parameters" in c.get("metadata", {}).get("tags", [])]
        if not cells:
            raise ParameterError(f"{nb_path}: no cell is tagged 'parameters'")
        want = schema(chapter).cell_source()
        if _source(cells[0]) == want:
            continue
        drift[chapter] = nb_path.name
        if write:
            cells[0]["source"] = want.splitlines(keepends=True)
            nb_path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n",
                               encoding="utf-8")
    return drift
