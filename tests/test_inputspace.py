"""Tests of mcutils.inputspace on tiny models (fast)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mcutils import inputspace as ins
from mcutils.core.checks import ParameterError
from mcutils.models import build_model
from mcutils.planted import bump_pairs as planted


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                        hidden=16).eval()
    g = torch.Generator().manual_seed(1)
    a = torch.rand(5, 1, 8, 8, generator=g)
    c = torch.rand(5, 1, 8, 8, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1])
    return model, a, c, y


def test_interpolate_and_linear_path(tiny):
    _, a, c, _ = tiny
    path = ins.linear_path(a, c, 7)
    assert path.shape == (5, 7, 1, 8, 8)
    assert torch.allclose(path[:, 0], a) and torch.allclose(path[:, -1], c)
    assert torch.allclose(path[:, 3], ins.interpolate(a, c, 0.5), atol=1e-6)
    per_pair = ins.interpolate(a, c, torch.linspace(0, 1, 5))
    assert torch.allclose(per_pair[4], c[4]) and torch.allclose(per_pair[0], a[0])
    pts, t = ins.interpolated_inputs(a, c, 0.25, 0.75, generator=torch.Generator().manual_seed(0))
    assert ((t >= 0.25) & (t <= 0.75)).all()
    assert torch.allclose(pts, ins.interpolate(a, c, t), atol=1e-6)
    with pytest.raises(ParameterError):
        ins.linear_path(a, c, 1)
    with pytest.raises(ParameterError):
        ins.interpolate(a, c[:2], 0.5)


def test_profile_ends_equal_endpoint_losses(tiny):
    model, a, c, y = tiny
    prof = ins.loss_profiles(model, a, c, y, num_points=11, batch_size=7)
    assert prof.shape == (5, 11)
    with torch.no_grad():
        la = F.cross_entropy(model(a), y, reduction="none")
        lc = F.cross_entropy(model(c), y, reduction="none")
        mid = F.cross_entropy(model(0.5 * (a + c)), y, reduction="none")
    assert torch.allclose(prof[:, 0], la, atol=1e-5)
    assert torch.allclose(prof[:, -1], lc, atol=1e-5)
    assert torch.allclose(prof[:, 5], mid, atol=1e-5)


def test_batched_profiles_equal_per_pair(tiny):
    model, a, c, y = tiny
    batched = ins.loss_profiles(model, a, c, y, num_points=25, batch_size=64)
    for i in range(len(a)):
        single = ins.loss_profiles(model, a[i:i + 1], c[i:i + 1], y[i:i + 1], num_points=25,
                                   batch_size=10)
        assert torch.allclose(batched[i], single[0], atol=1e-5)


def test_profiles_restore_train_mode(tiny):
    model, a, c, y = tiny
    model.train()
    ins.loss_profiles(model, a, c, y, num_points=3)
    assert model.training
    model.eval()


def test_barrier_identical_endpoints_is_zero(tiny):
    model, a, _, y = tiny
    prof = ins.loss_profiles(model, a, a.clone(), y, num_points=9)
    assert torch.allclose(ins.barrier(prof), torch.zeros(5), atol=1e-5)
    vals, _, _ = ins.find_barrier(model, a, a.clone(), y)
    assert torch.allclose(vals, torch.zeros(5), atol=1e-5)


def test_barrier_kinds():
    prof = torch.tensor([[1.0, 3.0, 2.0], [0.5, 0.2, 0.4]])
    assert torch.allclose(ins.barrier(prof), torch.tensor([1.0, 0.0]))
    assert torch.allclose(ins.barrier(prof, "max"), torch.tensor([3.0, 0.5]))
    with pytest.raises(ParameterError):
        ins.barrier(prof, "height")


def test_find_barrier_matches_fine_grid():
    model, a, c, y = planted()
    fine = ins.loss_profiles(model, a, c, y, num_points=1000)
    ref = ins.barrier(fine)
    ref_t = torch.linspace(0, 1, 1000)[fine.argmax(1)]
    vals, t, passes = ins.find_barrier(model, a, c, y, tol=0.01)
    assert (vals - ref).abs().max() < 0.01
    assert (t - ref_t).abs().max() < 0.02
    assert passes < 3 * 250 / 4
    assert ref.min() > 1.0  # the planted barrier is there


def test_bypass_stays_in_hyperplane_and_lowers_loss():
    model, a, c, y = planted()
    b = ins.interpolate(a, c, 0.5)
    b_prime, hist = ins.bypass_barrier(model, a, c, b, y, steps=60, lr=0.02)
    dot = ((b_prime - b) * (c - a)).flatten(1).sum(1)
    assert dot.abs().max() < 1e-4
    assert hist.shape == (60, 3)
    assert (hist[-1] < hist[0] - 1.0).all()
    assert b_prime.min() >= 0 and b_prime.max() <= 1


def test_bypass_per_pair_stop_loss():
    model, a, c, y = planted()
    b = ins.interpolate(a, c, 0.5)
    stop = torch.tensor([0.0, 2.0, 0.0])
    b_prime, hist = ins.bypass_barrier(model, a, c, b, y, steps=60, lr=0.02, stop_loss=stop)
    # pair 1 stopped as soon as its loss was below 2, the others kept going
    assert hist[-1, 1] < 2.0 and hist[-1, 1] > hist[-1, 0] + 0.1
    moved = (b_prime - b).flatten(1).norm(dim=1)
    assert moved[1] < moved[0]
    with pytest.raises(ParameterError):
        ins.bypass_barrier(model, a, c, b, y, steps=2, stop_loss=torch.zeros(2))


def test_bypass_batched_equals_per_pair(tiny):
    model, a, c, y = tiny
    b = ins.interpolate(a, c, 0.4)
    batched, _ = ins.bypass_barrier(model, a, c, b, y, steps=5, lr=0.01)
    for i in range(len(a)):
        single, _ = ins.bypass_barrier(model, a[i:i + 1], c[i:i + 1], b[i:i + 1], y[i:i + 1],
                                       steps=5, lr=0.01)
        assert torch.allclose(batched[i], single[0], atol=1e-5)


def test_project_to_hyperplane_box():
    g = torch.Generator().manual_seed(0)
    point = torch.rand(4, 1, 5, 5, generator=g)
    normal = torch.randn(4, 1, 5, 5, generator=g)
    x = point + 0.8 * torch.randn(4, 1, 5, 5, generator=g)
    free = ins.project_to_hyperplane(x, point, normal)
    assert ((free - point) * normal).flatten(1).sum(1).abs().max() < 1e-4
    boxed = ins.project_to_hyperplane(x, point, normal, box=(0.0, 1.0))
    assert boxed.min() >= 0 and boxed.max() <= 1
    assert ((boxed - point) * normal).flatten(1).sum(1).abs().max() < 1e-4


def test_connect_removes_planted_barrier():
    model, a, c, y = planted()
    res = ins.connect(model, a, c, y, max_rounds=3, tol=0.1, steps=80, lr=0.02,
                      num_points=50)
    full = ins.connect(model, a, c, y, max_rounds=3, tol=0.1, steps=80, lr=0.02,
                       num_points=None, stop_loss=None)
    assert full.connected.all()
    # stopping each bypass as soon as it is flat enough deviates less from the line
    assert (ins.chord_deviation(res.vertices) <= ins.chord_deviation(full.vertices) + 1e-6).all()
    assert res.linear_barriers.min() > 1.0
    assert res.connected_by_round[0] == 0.0
    assert res.connected.all()
    assert res.connected_by_round[-1] == 1.0
    assert len(res.connected_by_round) == 4
    assert (res.rounds_needed >= 1).all()
    assert all(len(v) >= 3 for v in res.vertices)
    assert all(torch.allclose(v[0], a[i]) and torch.allclose(v[-1], c[i])
               for i, v in enumerate(res.vertices))
    assert res.profile.shape == (3, 50)
    assert ins.barrier(res.profile).max() < 0.1 + 1e-3
    # each bypass vertex lies in the hyperplane orthogonal to the chord through B
    pair, b, b_prime = res.first_bypass
    assert ((b_prime - b) * (c[pair] - a[pair])).flatten(1).sum(1).abs().max() < 1e-4
    rel = ins.relative_path_length(res.vertices)
    assert (rel > 1).all() and (rel < 2).all()
    assert (ins.detour_angle(res.vertices) > 0).all()


def test_connect_straight_path_needs_no_round(tiny):
    model, a, _, y = tiny
    res = ins.connect(model, a, a + 1e-4, y, max_rounds=2, tol=0.1, steps=2, num_points=None)
    assert res.connected_by_round == [1.0, 1.0, 1.0]
    assert res.profile is None and not res.bypass_history
    assert all(len(v) == 2 for v in res.vertices)


def test_path_profiles_straight_equals_loss_profiles(tiny):
    model, a, c, y = tiny
    verts = [torch.stack([a[i], 0.5 * (a[i] + c[i]), c[i]]) for i in range(len(a))]
    p1 = ins.path_profiles(model, verts, y, num_points=9)
    p2 = ins.loss_profiles(model, a, c, y, num_points=9)
    assert torch.allclose(p1, p2, atol=1e-5)


def test_geometry_helpers():
    a = torch.zeros(1, 2, 1)
    c = torch.zeros(1, 2, 1)
    c[0, 0, 0] = 2.0
    b = torch.zeros(1, 2, 1)
    b[0, 0, 0], b[0, 1, 0] = 1.0, 1.0
    verts = [torch.cat([a, b, c])]
    assert math.isclose(ins.path_length(verts).item(), 2 * math.sqrt(2), rel_tol=1e-5)
    assert math.isclose(ins.relative_path_length(verts).item(), math.sqrt(2), rel_tol=1e-5)
    assert math.isclose(ins.detour_angle(verts).item(), 45.0, rel_tol=1e-4)
    assert math.isclose(ins.chord_deviation(verts).item(), 0.5, rel_tol=1e-5)
    straight = [torch.cat([a, c])]
    assert ins.detour_angle(straight).item() == 0.0
    assert math.isclose(ins.relative_path_length(straight).item(), 1.0, rel_tol=1e-6)


def test_total_variation():
    x = torch.zeros(2, 1, 3, 3)
    assert torch.allclose(ins.total_variation(x), torch.zeros(2))
    x[1, 0, :, 2] = 1.0
    assert ins.total_variation(x)[1] > 0


def test_synthesize_reaches_threshold():
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=4, in_channels=1, input_size=6, hidden=32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # a random net with a reachable low-loss region in [0, 1]^d
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    x, loss = ins.synthesize(model, targets, (1, 6, 6), steps=300, lr=0.05, stop_loss=0.05,
                             generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 6, 6)
    assert (loss < 0.05).all()
    assert x.min() >= 0 and x.max() <= 1
    with torch.no_grad():
        ce = F.cross_entropy(model(x), targets, reduction="none")
    assert torch.allclose(ce, loss, atol=1e-5)
    assert not any(p.grad is not None for p in model.parameters())


def test_bad_inputs_fail_fast(tiny):
    model, a, c, y = tiny
    with pytest.raises(ParameterError):
        ins.loss_profiles(model, a, c, y[:2])
    with pytest.raises(ParameterError):
        ins.find_barrier(model, a, c, y, tol=0)
    with pytest.raises(ParameterError):
        ins.bypass_barrier(model, a, c, a, y, steps=-1)
    with pytest.raises(ParameterError):
        ins.connect(model, a, c, y, max_rounds=-1)
    with pytest.raises(ParameterError):
        ins.synthesize(model, y, (1, 8))


def test_relative_deviation():
    b = torch.full((2, 1, 2, 2), 0.5)
    bp = b.clone()
    bp[0, 0, 0, 0] += 0.1
    r = ins.relative_deviation(b, bp)
    assert torch.allclose(r, torch.tensor([0.2, 0.0]))
    assert torch.allclose(ins.relative_deviation(b, bp, "l2"), torch.tensor([0.1, 0.0]))


def test_matched_pairs():
    la = torch.tensor([0, 0, 1, 2, 2])
    lb = torch.tensor([1, 0, 1, 3])
    i, j = ins.matched_pairs(la, lb, 4, seed=0)
    assert len(i) == 8  # classes 0 and 1 only
    assert (la[i] == lb[j]).all()
    i2, j2 = ins.matched_pairs(la, lb, 4, seed=0)
    assert torch.equal(i, i2) and torch.equal(j, j2)


def test_load_image_folder_and_torchvision_model(tmp_path):
    from PIL import Image

    for name in ("7", "goldfish"):
        (tmp_path / name).mkdir()
        for k in range(2):
            Image.new("RGB", (40, 30), (50 * k, 100, 200)).save(tmp_path / name / f"{k}.png")
    x, y, names = ins.load_image_folder(str(tmp_path), size=32,
                                        categories=["tench", "goldfish"])
    assert x.shape == (4, 3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert sorted(y.tolist()) == [1, 1, 7, 7] and names == ["7", "goldfish"]
    with pytest.raises(ParameterError):
        ins.load_image_folder(str(tmp_path / "missing"))
    with pytest.raises(ParameterError):
        ins.load_image_folder(str(tmp_path), size=32)  # "goldfish" unknown without categories
    # the gpu-profile path: a torchvision ImageNet architecture (no weights offline)
    model = build_model("torchvision:googlenet", num_classes=1000, in_channels=3,
                        input_size=64).eval()
    prof = ins.loss_profiles(model, x[:1], x[1:2], y[:1], num_points=2)
    assert prof.shape == (1, 2) and torch.isfinite(prof).all()


def test_input_optimisers_restore_model_state(tiny):
    model, a, c, y = tiny
    model.train()
    ins.bypass_barrier(model, a, c, 0.5 * (a + c), y, steps=2, lr=0.01)
    ins.synthesize(model, y, (1, 8, 8), steps=2, lr=0.05)
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.eval()


def test_masked_adam_rows_are_independent_and_frozen_rows_stay():
    """MaskedAdam is per-element Adam: a row's path equals running it alone, and an
    inactive row does not move."""
    from mcutils.training import MaskedAdam

    torch.manual_seed(0)
    x0 = torch.randn(3, 5)
    target = torch.randn(3, 5)
    active = torch.tensor([True, False, True])

    def run(rows, mask):
        x = x0[rows].clone()
        opt = MaskedAdam(x, lr=0.1)
        for _ in range(20):
            x = opt.step(x, 2 * (x - target[rows]), mask)
        return x

    both = run([0, 1, 2], active)
    alone = run([2], None)
    assert torch.allclose(both[2], alone[0])
    assert torch.equal(both[1], x0[1])
    # the same steps as torch.optim.Adam on the active rows
    ref = x0[[0]].clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        (ref - target[[0]]).pow(2).sum().backward()
        opt.step()
    assert torch.allclose(both[0], ref.detach()[0], atol=1e-6)
