"""Parameter schemas: the one declaration of each chapter's parameters, the notebook's
parameters cell rendered from it, and every profile checked against it."""

from __future__ import annotations

import ast

import pytest

from mcutils.chapters import MODULES, schema
from mcutils.core import profiles
from mcutils.core.checks import ParameterError
from mcutils.params import Param, ParameterSchema
from mcutils.tooling import notebooks


def _toy() -> ParameterSchema:
    return ParameterSchema("99", {
        "dataset": Param("fashion-mnist", "a registry name"),
        "steps": Param(10, "optimiser steps", range=(1, None), group="optimiser"),
        "lr": Param(0.5, range=(1e-8, 1)),
        "subset": Param(None, "None: all", range=(1, None), nullable=True),
        "norm": Param("linf", choices=("linf", "l2")),
        "sizes": Param([1, 2], range=(1, 8)),
    }, checks=[lambda p: "lr must be below 0.9 when steps > 100"
               if p["steps"] > 100 and p["lr"] >= 0.9 else None])


def test_cell_source_renders_defaults_help_and_groups():
    src = _toy().cell_source()
    assert src.splitlines()[:3] == ['dataset = "fashion-mnist"  # a registry name',
                                    "# optimiser", "steps = 10  # optimiser steps"]
    scope: dict = {}
    exec(src, scope)  # noqa: S102 - rendered by the schema itself
    assert {k: scope[k] for k in _toy().names} == _toy().defaults()


def test_validate_returns_the_chapter_parameters_only():
    scope = {**_toy().defaults(), "unrelated": object()}
    assert _toy().validate(scope) == _toy().defaults()


def test_validate_names_every_bad_parameter_at_once():
    scope = {**_toy().defaults(), "steps": 0, "norm": "l3", "sizes": [1, 9], "dataset": "nope"}
    with pytest.raises(ParameterError) as err:
        _toy().validate(scope)
    msg = str(err.value)
    for name in ("steps=0", "norm='l3'", "sizes=9", "dataset='nope'"):
        assert name in msg


def test_validate_none_only_where_nullable():
    _toy().validate({**_toy().defaults(), "subset": None})
    _toy().validate({**_toy().defaults(), "subset": 5})
    with pytest.raises(ParameterError, match="subset=0"):
        _toy().validate({**_toy().defaults(), "subset": 0})
    with pytest.raises(ParameterError, match="steps=None is not allowed"):
        _toy().validate({**_toy().defaults(), "steps": None})


def test_validate_runs_cross_checks_and_reports_missing_names():
    _toy().validate({**_toy().defaults(), "steps": 200, "lr": 0.5})
    with pytest.raises(ParameterError, match="lr must be below 0.9"):
        _toy().validate({**_toy().defaults(), "steps": 200, "lr": 0.95})
    scope = _toy().defaults()
    del scope["lr"]
    with pytest.raises(ParameterError, match="not set: lr"):
        _toy().validate(scope)


def test_schema_rejects_bad_declarations():
    with pytest.raises(ValueError):
        ParameterSchema("99", {})
    with pytest.raises(ValueError, match="Python name"):
        ParameterSchema("99", {"not a name": Param(1)})


@pytest.mark.parametrize("chapter", sorted(MODULES))
def test_parameters_cell_is_rendered_from_the_schema(chapter):
    nb = notebooks.chapters()[chapter]
    assert notebooks.parameter_cell_drift(selected=[chapter]) == {}, (
        f"{nb.name}: run `python -m mcutils.book params --write`")


@pytest.mark.parametrize("chapter", sorted(MODULES))
def test_validation_cell_is_one_schema_call(chapter):
    cells = notebooks.notebook_cells(notebooks.chapters()[chapter])
    index = next(i for i, c in enumerate(cells) if "parameters" in c["tags"])
    body = [n for n in ast.parse(cells[index + 1]["source"]).body
            if not isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(body) == 1 and "PARAMETERS.validate(globals())" in ast.unparse(body[0])


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "gpu-smoke"])
@pytest.mark.parametrize("chapter", sorted(MODULES))
def test_every_profile_passes_the_schema(chapter, profile):
    nb = notebooks.chapters()[chapter]
    sch = schema(chapter)
    scope = sch.defaults()
    scope.update(notebooks.chapter_parameters(profiles.load_profile(profile), chapter, nb,
                                              profile, declared=sch.defaults()))
    scope["device"] = "cpu"  # "cuda" is checked on GPU machines only
    sch.validate(scope)


def test_runner_refuses_a_bad_override_before_any_chapter_starts(tmp_path):
    from mcutils.tooling import runner

    with pytest.raises(ParameterError, match="chapter 01: invalid parameters") as err:
        runner.execute("smoke", ["00", "01"], output=tmp_path / "out",
                       overrides={"tol": -1.0, "num_epochs": 0})
    assert "num_epochs=0" in str(err.value) and "tol=-1.0" in str(err.value)
    assert not (tmp_path / "out" / "00_preliminaries.ipynb").exists()  # nothing ran
