"""Tests of the inputspace additions used by chapter 03: free (unconstrained) bypasses,
barriers per round, connectivity summaries, loss references and the barrier recorder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mcutils import inputspace as ins
from mcutils.core.checks import ParameterError
from mcutils.data import TensorLoader
from mcutils.models import build_model
from mcutils.planted import bump_pairs as planted
from mcutils.training import train


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def test_free_bypass_leaves_the_hyperplane_and_lowers_loss_more():
    model, a, c, y = planted()
    b = ins.interpolate(a, c, 0.5)
    kw = dict(steps=60, lr=0.02, deviation_weight=0.0, tv_weight=0.0)
    free, hist_free = ins.bypass_barrier(model, a, c, b, y, constrain=False, **kw)
    held, hist_held = ins.bypass_barrier(model, a, c, b, y, **kw)
    along = ((free - b) * (c - a)).flatten(1).sum(1).abs()
    assert along.max() > 1e-3  # moved along the chord too
    assert free.min() >= 0 and free.max() <= 1  # the box still applies
    assert (hist_free[-1] <= hist_held[-1] + 1e-4).all()
    unboxed, _ = ins.bypass_barrier(model, a, c, b, y, constrain=False, box=None, **kw)
    assert torch.isfinite(unboxed).all()


def test_connect_free_mode_and_barriers_by_round():
    model, a, c, y = planted()
    res = ins.connect(model, a, c, y, max_rounds=2, tol=0.1, steps=80, lr=0.02,
                      num_points=None, constrain=False)
    assert len(res.barriers_by_round) == 3
    assert torch.allclose(res.barriers_by_round[0], res.linear_barriers)
    assert torch.allclose(res.barriers_by_round[-1], res.barriers)
    for k, frac in enumerate(res.connected_by_round):
        assert ins.connected_fraction(res.barriers_by_round[k], 0.1).item() == pytest.approx(frac)
    assert res.connected.all()
    # the default (hyperplane) mode records per-round barriers as well
    held = ins.connect(model, a, c, y, max_rounds=1, tol=0.1, steps=5, num_points=None)
    assert len(held.barriers_by_round) == 2


def test_connected_fraction_and_rounds_needed():
    b = torch.tensor([[0.5, 0.0, 0.2, 0.05],
                      [0.05, 0.0, 0.2, 0.01],
                      [0.001, 0.0, 0.2, 0.0]])
    assert ins.connected_fraction(b, 0.1).tolist() == pytest.approx([0.5, 0.75, 0.75])
    assert ins.connected_fraction(b[0], 1.0).item() == 1.0
    # per-pair tolerance: 90% below the straight path; zero barrier always connected
    per_pair = 0.1 * b[0]
    assert ins.connected_fraction(b, per_pair).tolist() == pytest.approx([0.25, 0.25, 0.75])
    assert ins.rounds_needed(b, 0.1).tolist() == [1, 0, -1, 0]
    assert ins.connected_fraction(list(b), 0.1).shape == (3,)
    with pytest.raises(ParameterError):
        ins.connected_fraction(b, torch.ones(3))
    with pytest.raises(ParameterError):
        ins.connected_fraction(b, -0.1)


def test_class_reference_loss():
    model = tiny_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g)
    logits = model(x).detach()
    y = logits.argmax(1)  # every input correct
    ref = ins.class_reference_loss(model, x, y, num_classes=3, batch_size=7)
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    for k in range(3):
        sel = ce[y == k]
        if len(sel):
            assert ref[k].item() == pytest.approx(sel.median().item(), rel=1e-5)
        else:
            assert torch.isnan(ref[k])
    wrong = (y + 1) % 3  # nothing correct
    assert torch.isnan(ins.class_reference_loss(model, x, wrong, num_classes=3)).all()


def test_barrier_recorder_follows_training():
    model = tiny_cnn()
    g = torch.Generator().manual_seed(1)
    a, c = torch.rand(4, 1, 8, 8, generator=g), torch.rand(4, 1, 8, 8, generator=g)
    y = torch.tensor([0, 1, 2, 0])
    rec = ins.BarrierRecorder(a, c, y, num_points=9, every=2, max_step=6)
    rec(0, model)
    xs, ys = torch.rand(80, 1, 8, 8, generator=g), torch.randint(0, 3, (80,), generator=g)
    loader = TensorLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=10)
    train(model, loader, epochs=1, lr=0.05, callback=rec, progress=False)
    out = rec.as_tensors()
    assert out["steps"].tolist() == [0, 2, 4, 6]
    assert out["barriers"].shape == out["peaks"].shape == out["end_losses"].shape == (4, 4)
    assert torch.allclose(out["peaks"] - out["end_losses"], out["barriers"].clamp_min(0))
    # the recorded step-6 values are those of the model after 6 steps: replay them
    model2 = tiny_cnn()
    loader6 = TensorLoader(torch.utils.data.TensorDataset(xs[:60], ys[:60]), batch_size=10)
    train(model2, loader6, epochs=1, lr=0.05, progress=False)
    prof = ins.loss_profiles(model2, a, c, y, num_points=9)
    assert torch.allclose(out["barriers"][-1], ins.barrier(prof), atol=1e-5)
    # the barriers changed during training
    assert not torch.allclose(out["barriers"][0], out["barriers"][-1])
    with pytest.raises(ParameterError):
        ins.BarrierRecorder(a, c, y, every=0)
    with pytest.raises(RuntimeError):
        ins.BarrierRecorder(a, c, y).as_tensors()


def test_connect_bypass_all_splits_every_segment_like_the_paper():
    """The paper's round 2 bypasses both segments whatever their barrier: with
    ``bypass_all`` every path ends with 2 ** rounds segments, even a straight path that
    was already flat; without it a flat straight path keeps its two vertices."""
    model, a, c, y = planted()
    flat_c = a + 1e-3 * (c - a)  # a short straight path: no barrier at tol 0.1
    kw = dict(max_rounds=2, tol=0.1, steps=5, lr=0.02, num_points=None, constrain=False)
    every = ins.connect(model, a, flat_c, y, bypass_all=True, **kw)
    only_bad = ins.connect(model, a, flat_c, y, **kw)
    assert [len(v) for v in every.vertices] == [5] * len(a)
    assert [len(v) for v in only_bad.vertices] == [2] * len(a)
    assert every.connected.all() and only_bad.connected.all()
    one = ins.connect(model, a, c, y, bypass_all=True, **dict(kw, max_rounds=1))
    assert [len(v) for v in one.vertices] == [3] * len(a)
