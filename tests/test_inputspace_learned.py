"""Learned input-space curves (mcutils.inputspace.learned) on planted landscapes: a curve
must go around a bump that the straight path crosses, must fail where no connecting path
exists, keeps its ends, stays in the pixel box, and works in normalised units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mcutils import planted
from mcutils.core.checks import ParameterError
from mcutils.inputspace import (barrier, curve_geometry, curve_points, curve_profiles,
                                learn_input_curve, loss_profiles)
from mcutils.models import Normalize


@pytest.mark.parametrize("curve", ["bezier", "polychain"])
def test_the_learned_curve_goes_around_a_bump(curve):
    model, a, c, t = planted.bump_pairs()
    straight = barrier(loss_profiles(model, a, c, t, num_points=1000))
    assert (straight > 1.0).all()  # the straight path crosses the bump
    res = learn_input_curve(model, a, c, t, curve=curve, steps=300, lr=0.02, space="pixel",
                            snapshots=[10, 100])
    learned = barrier(curve_profiles(model, res, num_points=1000))
    assert (learned < 0.05).all(), learned
    geo = curve_geometry(res)
    assert (geo["chord_deviation"] > 0.05).all()  # it left the chord to get there
    assert (geo["relative_length"] > 1.0).all()
    assert sorted(res.snapshots) == [10, 100, 300]
    early = barrier(curve_profiles(model, res.at(10), num_points=200))
    assert (early > learned).all()
    assert res.passes == 2 * 300 and res.at(100).passes == 2 * 100


def test_detour_lengths_respect_the_planted_lower_bound():
    model, a, c, t = planted.detour_pairs(num_pairs=4, seed=1)
    res = learn_input_curve(model, a, c, t, steps=300, lr=0.02, space="pixel")
    prof = curve_profiles(model, res, num_points=1000)
    tol = 0.05
    ok = barrier(prof) < tol
    assert ok.all()
    bound = planted.detour_min_length(model, a, c, tol)
    assert (curve_geometry(res)["relative_length"] >= bound - 1e-4).all()


def test_no_learned_curve_connects_two_disjoint_balls():
    model, a, c, t = planted.two_ball_pairs(num_pairs=3)
    res = learn_input_curve(model, a, c, t, steps=200, lr=0.02, space="pixel")
    assert (barrier(curve_profiles(model, res, num_points=500)) > 1.0).all()


def test_ends_are_fixed_and_the_box_holds():
    model, a, c, t = planted.bump_pairs()
    res = learn_input_curve(model, a, c, t, steps=100, lr=0.2, space="pixel", box=(0.0, 1.0))
    pts = curve_points(res, 50)
    assert torch.equal(pts[:, 0], a) and torch.allclose(pts[:, -1], c)
    assert pts.min() >= 0.0 and pts.max() <= 1.0
    assert torch.equal(res.bends[:, 0], a) and torch.equal(res.bends[:, -1], c)


def test_pairs_do_not_interact():
    model, a, c, t = planted.bump_pairs()
    both = learn_input_curve(model, a, c, t, steps=30, lr=0.02, space="pixel", seed=4)
    # the other two pairs swapped: pair 0 keeps its t draws, and must not notice
    order = torch.tensor([0, 2, 1])
    swapped = learn_input_curve(model, a[order], c[order], t[order], steps=30, lr=0.02,
                                space="pixel", seed=4)
    assert torch.allclose(both.bends[0], swapped.bends[0], atol=1e-6)
    assert not torch.allclose(both.bends[0], a[0])  # it did move


def test_normalized_units_match_pixel_units_scaled():
    bump, a, c, t = planted.bump_pairs()
    std = 0.5
    model = nn.Sequential(Normalize([0.3], [std]), _Unnormalize(0.3, std), bump)
    pix = learn_input_curve(model, a, c, t, steps=20, lr=0.01, space="pixel", seed=2)
    nrm = learn_input_curve(model, a, c, t, steps=20, lr=0.01 / std, space="normalized",
                            seed=2)
    # Adam's steps are scale-free: lr / std in normalised units is lr in pixel units
    assert torch.allclose(pix.bends, nrm.bends, atol=1e-4)


class _Unnormalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, z):
        return z * self.std + self.mean


def test_bad_arguments_are_refused_before_work():
    model, a, c, t = planted.bump_pairs()
    with pytest.raises(ParameterError, match="curve="):
        learn_input_curve(model, a, c, t, curve="spline")
    with pytest.raises(ParameterError, match="free bend"):
        learn_input_curve(model, a, c, t, num_bends=2)
    with pytest.raises(ParameterError, match="snapshots"):
        learn_input_curve(model, a, c, t, steps=5, snapshots=[6])
    with pytest.raises(ParameterError, match="inside box"):
        learn_input_curve(model, a + 1, c, t, box=(0.0, 1.0))
    with pytest.raises(ParameterError, match="steps"):
        learn_input_curve(model, a, c, t, steps=0)
