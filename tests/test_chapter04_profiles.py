"""Chapter 04: every profile's parameters pass the notebook's own validation cell, bad
values fail fast, the notebook defines nothing, and its prose quotes no unglued decimal
number except the paper's values listed in book/allowed_numbers.yml."""

from __future__ import annotations

import re

import nbformat
import pytest
import yaml
from _chapter_cells import parameter_cells, profile_scope

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root

NOTEBOOK = repo_root() / "notebooks" / "04_adversarial_barriers.ipynb"


def _cells():
    return parameter_cells(NOTEBOOK)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profile_parameters_validate(profile):
    scope, validate_src = profile_scope(NOTEBOOK, "04", profile)
    exec(validate_src, scope)  # noqa: S102 - our own notebook


def test_bad_parameters_fail_fast():
    params_src, validate_src = _cells()
    scope: dict = {}
    exec(params_src, scope)  # noqa: S102
    scope.update(drop=7, sweep_networks=["vit"])
    with pytest.raises(ParameterError, match="drop=7") as exc:
        exec(validate_src, scope)  # noqa: S102
    assert "vit" in str(exc.value)
    scope.update(drop=2, sweep_networks=["mlp"], seeds=[0, 0])
    with pytest.raises(ValueError, match="distinct"):
        exec(validate_src, scope)  # noqa: S102


def test_notebook_defines_nothing_and_quotes_only_glued_numbers():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    allowed = set((yaml.safe_load((repo_root() / "book" / "allowed_numbers.yml").read_text())
                   or {}).get("04", {}))
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*(def|class)\s", cell.source, flags=re.MULTILINE), cell.source[:80]
            assert "lambda" not in cell.source, cell.source[:80]
        else:
            prose = re.sub(r"\{glue:text\}`[^`]*`", "", cell.source)
            for number in re.findall(r"\d+\.\d+", prose):
                assert number in allowed, f"unglued number {number} in: {cell.source[:80]}"
