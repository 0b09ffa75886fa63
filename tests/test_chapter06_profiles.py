"""Chapter 06: every profile's parameters pass the notebook's own validation cell."""

from __future__ import annotations

import pytest
from _chapter_cells import parameter_cells, profile_scope

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root

NOTEBOOK = repo_root() / "notebooks" / "06_hessian_links.ipynb"


def _cells():
    return parameter_cells(NOTEBOOK)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_profile_parameters_validate(profile):
    scope, validate_src = profile_scope(NOTEBOOK, "06", profile)
    exec(validate_src, scope)  # noqa: S102 - our own notebook


def test_bad_parameter_fails_fast():
    params_src, validate_src = _cells()
    scope: dict = {}
    exec(params_src, scope)  # noqa: S102
    scope.update(num_ts=1, bound_eps_l2=[-0.1])
    with pytest.raises(ParameterError, match="num_ts.*\n.*bound_eps_l2|bound_eps_l2.*\n.*num_ts"):
        exec(validate_src, scope)  # noqa: S102
