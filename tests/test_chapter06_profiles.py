"""Chapter 06: every profile's parameters pass the notebook's own validation cell."""

from __future__ import annotations

import nbformat
import pytest

from mcutils import book
from mcutils.runtime import ParameterError, repo_root

NOTEBOOK = repo_root() / "notebooks" / "06_hessian_links.ipynb"


def _cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    index = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    return code[index].source, code[index + 1].source


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profile_parameters_validate(profile):
    params_src, validate_src = _cells()
    scope: dict = {}
    exec(params_src, scope)  # noqa: S102 - our own notebook
    scope.update(book.chapter_parameters(book.load_profile(profile), "06", NOTEBOOK, profile))
    scope["device"] = "cpu"  # the gpu profile's "cuda" is checked on GPU machines only
    exec(validate_src, scope)  # noqa: S102


def test_bad_parameter_fails_fast():
    params_src, validate_src = _cells()
    scope: dict = {}
    exec(params_src, scope)  # noqa: S102
    scope.update(num_ts=1, bound_eps_l2=[-0.1])
    with pytest.raises(ParameterError, match="num_ts.*\n.*bound_eps_l2|bound_eps_l2.*\n.*num_ts"):
        exec(validate_src, scope)  # noqa: S102
