"""The checks of chapter 01's paths: dense barriers of bent paths
(:func:`mcutils.inputspace.path_barriers`), paths bent at random by the same distances
(:func:`mcutils.inputspace.random_bend`) and the smoothness penalty's share of the
gradient (:func:`mcutils.inputspace.penalty_gradient_ratio`)."""

from __future__ import annotations

import pytest
import torch

from mcutils import inputspace as ins
from mcutils import planted
from mcutils.core.checks import ParameterError
from mcutils.models import build_model


def _narrow(t_centre: float = 0.53, rel_width: float = 0.004):
    """Three pairs of a one-ball region with a narrow planted barrier at t_centre."""
    model, a, c, y = planted.one_ball_pairs(3)
    length = (c - a).flatten(1).norm(dim=1)
    centres = a + t_centre * (c - a)
    return planted.PlantedBarrier(model, centres, rel_width * length, y, height=20.0), a, c, y


def test_path_barriers_equal_a_dense_profile_on_straight_paths():
    model, a, c, y = planted.bump_pairs()
    dense = ins.path_barriers(model, [torch.stack([a[i], c[i]]) for i in range(3)], y, 200)
    grid = ins.barrier(ins.loss_profiles(model, a, c, y, num_points=200))
    assert torch.allclose(dense, grid, atol=1e-6)
    assert (dense > 1.0).all()


def test_path_barriers_find_a_narrow_barrier_the_adaptive_search_misses():
    model, a, c, y = _narrow()
    found, _, _ = ins.find_barrier(model, a, c, y, tol=1e-4)
    dense = ins.path_barriers(model, [torch.stack([a[i], c[i]]) for i in range(3)], y, 1000)
    assert (found < 0.01).all()      # between the coarse grid points, no peak to refine
    assert (dense > 1.0).all()       # 1,000 points see it


def test_path_barriers_take_every_segment_and_the_path_ends():
    model, a, c, y = planted.bump_pairs()
    # a path that goes around the bump through a far vertex, and one through the bump
    sign = torch.tensor([1.0, -1.0]).repeat(8).view(1, 4, 4)  # orthogonal to c - a
    far = 0.5 * (a[0] + c[0]) + sign
    around = torch.stack([a[0], far, c[0]])
    through = torch.stack([a[0], 0.5 * (a[0] + c[0]), c[0]])
    b = ins.path_barriers(model, [around, through], y[:2], 400)
    assert b[0] < 1e-3 and b[1] > 1.0
    with pytest.raises(ParameterError):
        ins.path_barriers(model, [a[:1]], y[:1])
    with pytest.raises(ParameterError):
        ins.path_barriers(model, [around], y[:1], points_per_segment=1)


def test_random_bend_keeps_the_distances_and_changes_the_direction():
    gen = torch.Generator().manual_seed(0)
    a, c = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    mid = 0.5 * (a + c)
    mid[0, 0, 0] += 0.3
    mid[0, 1, 2] -= 0.3
    sign = torch.tensor([1.0, -1.0]).repeat(8).view(1, 4, 4)
    path = torch.stack([a, 0.7 * a + 0.3 * c + 0.1 * sign, mid, c])
    straight = torch.stack([a, c])
    bent, same = ins.random_bend([path, straight], generator=gen)
    assert torch.equal(same, straight)
    assert torch.equal(bent[0], a) and torch.equal(bent[-1], c)
    assert torch.allclose(ins.chord_deviation([bent]), ins.chord_deviation([path]))
    e = (c - a).flatten() / (c - a).norm()
    assert torch.allclose((bent[1:-1] - a).flatten(1) @ e, (path[1:-1] - a).flatten(1) @ e,
                          atol=1e-5)
    assert not torch.allclose(bent, path, atol=1e-3)
    # one direction for the whole path: the two offsets are parallel
    off = (bent[1:-1] - a).flatten(1)
    off = off - (off @ e)[:, None] * e
    cos = (off[0] @ off[1]) / (off[0].norm() * off[1].norm())
    assert cos == pytest.approx(1.0, abs=1e-5)
    again = ins.random_bend([path], generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(again, bent)
    with pytest.raises(ParameterError):
        ins.random_bend([torch.stack([a, mid, a])])


def test_penalty_gradient_ratio_scales_with_the_weight():
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                        hidden=16, mean=(0.3,), std=(0.4,)).eval()
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1])
    r1 = ins.penalty_gradient_ratio(model, x, y, 1e-3)
    r2 = ins.penalty_gradient_ratio(model, x, y, 2e-3)
    assert r1.shape == (5,) and (r1 > 0).all()
    assert torch.allclose(r2, 2 * r1, rtol=1e-5)
    assert (ins.penalty_gradient_ratio(model, x, y, 0.0) == 0).all()
    # by hand, in normalised units
    z = ((x - 0.3) / 0.4).requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(model(0.3 + 0.4 * z), y, reduction="sum")
    (g,) = torch.autograd.grad(ce, z)
    z2 = z.detach().clone().requires_grad_(True)
    (gt,) = torch.autograd.grad(1e-3 * ins.total_variation(z2, "sum").sum(), z2)
    assert torch.allclose(r1, gt.flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1), rtol=1e-4)
    with pytest.raises(ParameterError):
        ins.penalty_gradient_ratio(model, x, y[:2], 1e-3)
