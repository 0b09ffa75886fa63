"""Chapter 04: bad values fail fast against the chapter's parameter schema (every profile
passing it is tests/test_chapter_params.py's), the notebook defines nothing, and its prose
quotes no unglued decimal number except the paper's values listed in
book/allowed_numbers.yml."""

from __future__ import annotations

import re

import nbformat
import pytest
import yaml

from mcutils.chapters import ch04_adversarial as ch04
from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root

NOTEBOOK = repo_root() / "notebooks" / "04_adversarial_barriers.ipynb"


def _validate(**changes):
    return ch04.PARAMETERS.validate({**ch04.PARAMETERS.defaults(), **changes})


def test_bad_parameters_fail_fast():
    with pytest.raises(ParameterError) as exc:
        _validate(sweep_networks=["vit"], num_boot=5, adaptive_detector="oracle")
    for part in ("vit", "num_boot=5", "adaptive_detector='oracle'"):
        assert part in str(exc.value)
    with pytest.raises(ParameterError, match="sweep_subset=50"):
        _validate(sweep_subset=50)
    _validate(sweep_subset=None)  # None: the whole training split


@pytest.mark.parametrize("changes, message", [
    ({"drop": 7}, r"drop=7 is out of range; valid range: \[0, 6\]"),
    ({"pairs_per_class": 2, "drop": 2}, r"drop=2 .*\[0, 1\]"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"seeds": []}, "non-empty"),
    ({"folds": 10, "num_inputs": 30}, r"num_inputs=30 .*\[40, inf\]"),
    ({"num_inputs": 30, "adaptive_inputs": 40}, r"adaptive_inputs=40 .*\[8, 30\]"),
])
def test_cross_checks(changes, message):
    with pytest.raises(ParameterError, match=message):
        _validate(**changes)


def test_cross_checks_accept_their_bounds():
    _validate(pairs_per_class=3, drop=2, folds=5, num_inputs=20, adaptive_inputs=20)
    assert ch04.check_drop({"drop": 0, "pairs_per_class": 1}) is None


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
