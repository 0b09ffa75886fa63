"""The planted classifiers (mcutils.planted) and the negative control they give
connectivity: connect() joins a bypassable barrier and refuses a disconnected region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mcutils import planted
from mcutils.core import report, stats
from mcutils.inputspace import connect


def test_two_balls_classify_as_built():
    model, a, c, t = planted.two_ball_pairs(4)
    assert (model(a).argmax(1) == 0).all() and (model(c).argmax(1) == 0).all()
    mid = 0.5 * (model.p + model.q)
    assert model(mid.unsqueeze(0)).argmax(1).item() == 1  # between the balls: class 1
    with pytest.raises(ValueError, match="overlap"):
        planted.TwoBalls(torch.zeros(2), torch.full((2,), 0.1), radius=0.4)


def test_bump_pairs_are_connected_by_a_detour():
    model, a, c, t = planted.bump_pairs()
    res = connect(model, a, c, t, max_rounds=3, tol=0.1, steps=100, lr=0.05, num_points=50)
    assert (res.linear_barriers > 0.1).all()   # the straight line has the planted barrier
    assert res.connected.all()


def test_connect_says_not_connected_on_a_disconnected_region():
    """The negative control of connectivity: a region made of two balls cannot be
    connected by any path, and connect() reports it, after all its rounds."""
    model, a, c, t = planted.two_ball_pairs(12)
    res = connect(model, a, c, t, max_rounds=3, tol=0.1, steps=100, lr=0.05, num_points=50)
    assert not res.connected.any()
    assert (res.barriers > 1.0).all()
    # the path really leaves class 0 somewhere: its highest loss exceeds ln 2
    with torch.no_grad():
        mid_loss = F.cross_entropy(model(torch.stack([0.5 * (model.p + model.q)])),
                                   torch.zeros(1, dtype=torch.long))
    assert float(mid_loss) > float(torch.log(torch.tensor(2.0)))
    # as a claim, "at least half of the pairs connect" is then not reproduced on the
    # control (0 of 12: exact interval [0, 0.26]), so the check can fail
    ch = report.ChapterReport("98", expected=["connected"], check=True)
    bm, ba, bc, bt = planted.bump_pairs()
    ok = connect(bm, ba, bc, bt, max_rounds=3, tol=0.1, steps=100, lr=0.05, num_points=None)
    entry = ch.claim("connected", "pairs connect", "paper", stats.fraction_interval(ok.connected),
                     0.5, ">=", method="exact binomial",
                     control={"statement": "two disjoint balls",
                              "result": stats.fraction_interval(res.connected)})
    assert entry["control"]["verdict"] == "not reproduced"
    assert not any("cannot fail" in m for m in ch.failures())


def test_midpoint_barrier_plants_a_known_barrier_and_keeps_the_ends():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    a, c = torch.rand(4, 1, 4, 4), torch.rand(4, 1, 4, 4) + 1.0
    cls = torch.tensor([0, 1, 2, 0])
    model = planted.midpoint_barrier(base, a, c, cls, height=30.0)
    ts = torch.linspace(0, 1, 51).view(1, -1, 1, 1, 1)
    pts = ((1 - ts) * a.unsqueeze(1) + ts * c.unsqueeze(1)).reshape(-1, 1, 4, 4)
    with torch.no_grad():
        loss = F.cross_entropy(model(pts), cls.repeat_interleave(51), reduction="none").view(4, 51)
        plain = F.cross_entropy(base(pts), cls.repeat_interleave(51), reduction="none").view(4, 51)
    gap = loss.max(1).values - torch.maximum(loss[:, 0], loss[:, -1])
    assert (gap > 20).all()  # a barrier of about the planted height on every path
    # the ends keep their loss up to the tails of the other paths' bumps
    assert torch.allclose(loss[:, [0, -1]], plain[:, [0, -1]], atol=0.05)
    assert (loss[:, 25] > plain[:, 25] + 20).all()  # the midpoint carries it
    with pytest.raises(ValueError, match="distinct"):
        planted.midpoint_barrier(base, a, a, cls)
    with pytest.raises(ValueError, match="one class per"):
        planted.midpoint_barrier(base, a, c, cls[:2])


def test_detour_pairs_force_long_connected_paths():
    """The negative control of "nearly straight": every path connected around the planted
    wide bump is at least detour_min_length times its chord (> 1.05), so the check
    'median path length / |C - A| <= 1.05' fails on these pairs."""
    model, a, c, t = planted.detour_pairs(6, seed=1)
    assert torch.allclose(0.5 * (a + c), torch.full_like(a, 0.5))  # one midpoint for all
    bound = planted.detour_min_length(model, a, c, tol=0.01)
    assert (bound > 1.1).all()
    res = connect(model, a, c, t, max_rounds=2, tol=0.01, steps=60, lr=0.05, num_points=None,
                  stop_loss=None, box=None, deviation_weight=0.1, tv_weight=0.0)
    assert (res.linear_barriers > 1.0).all()  # the bump is on every straight line
    from mcutils.inputspace.geometry import relative_path_length
    rel = relative_path_length(res.vertices)
    assert res.connected.all() and (rel >= bound).all()
    iv = stats.bootstrap_ci(rel.numpy(), np.median, n_boot=50)
    assert report.verdict(iv["ci"], 1.05, "<=") == "not reproduced"
    with pytest.raises(ValueError, match="num_pairs"):
        planted.detour_pairs(0)


def test_one_ball_pairs_have_no_straight_path_barrier():
    """The negative control of "straight paths have barriers": pairs inside one ball (a
    convex region) have none, and connect() finds none at round 0."""
    model, a, c, t = planted.one_ball_pairs(8)
    assert (model(a).argmax(1) == 0).all() and (model(c).argmax(1) == 0).all()
    res = connect(model, a, c, t, max_rounds=0, tol=1e-4, num_points=50)
    assert (res.linear_barriers < 1e-4).all() and res.connected.all()
