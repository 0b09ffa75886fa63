import math

import pytest
import torch

from _repaircases import _data, _loader, _model, _preresnet
from mcutils import curves, pruning, repair
from mcutils.core.checks import ParameterError
from mcutils.data import TensorLoader
from mcutils.training import evaluate


def test_fine_tune_and_scratch_take_exact_steps_and_learn():
    loader = _loader()
    m = _model()
    ft = repair.fine_tune(m, loader, steps=30, lr=0.05)
    assert evaluate(ft, loader)["loss"] < evaluate(m, loader)["loss"]
    assert any(not torch.equal(p, q) for p, q in zip(ft.parameters(), m.parameters()))
    same = repair.fine_tune(m, loader, steps=0)
    assert all(torch.equal(p, q) for p, q in zip(same.parameters(), m.parameters()))
    scratch = repair.train_from_scratch(m, loader, steps=3, seed=1)
    assert torch.equal(scratch.state_dict()["0.mean"], m.state_dict()["0.mean"])
    r1, r2 = repair.reinitialize(m, 5), repair.reinitialize(m, 5)
    assert all(torch.equal(p, q) for p, q in zip(r1.parameters(), r2.parameters()))
    # weight decay is SGD's L2 term: with a large one the weights shrink
    decayed = repair.fine_tune(m, loader, steps=10, lr=0.05, weight_decay=0.5)
    plain = repair.fine_tune(m, loader, steps=10, lr=0.05)
    def norm(net):
        return sum(float(p.detach().pow(2).sum()) for p in net.parameters())
    assert norm(decayed) < norm(plain)
    with pytest.raises(ParameterError):
        repair.fine_tune(m, loader, steps=1, schedule="linear")


def test_fine_tune_memory_format_changes_only_rounding_and_is_restored():
    def loader():  # a fresh loader per run: the same batches in the same order
        return TensorLoader(_data(96), 32, shuffle=True, seed=0)

    m = _model()
    m_before = {k: v.clone() for k, v in m.state_dict().items()}
    a = repair.fine_tune(m, loader(), steps=6, lr=0.05, channels_last=False)
    b = repair.fine_tune(m, loader(), steps=6, lr=0.05, channels_last=True)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
        assert p.is_contiguous() and q.is_contiguous(), name  # the layout is restored
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m_before.items())  # input untouched
    # pruned channels stay at zero in either layout
    pruned = pruning.prune_filters(m, loader(), fraction=0.5)
    for cl in (False, True):
        out = repair.fine_tune(pruned, loader(), steps=4, lr=0.05, channels_last=cl)
        for mod in out.modules():
            mask = getattr(mod, "_prune_mask", None)
            if mask is not None:
                assert torch.all(mod.weight[~mask.bool()] == 0)


def test_weight_noise_scale_and_seed():
    m = _model()
    n1, n2 = repair.weight_noise(m, 0.1, seed=3), repair.weight_noise(m, 0.1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), n2.parameters()))
    for p, q in zip(m.parameters(), n1.parameters()):
        rel = float((q - p).detach().pow(2).mean().sqrt() / p.detach().pow(2).mean().sqrt())
        assert 0.03 < rel < 0.3


def test_midpoint_noise_is_the_papers_noise_model():
    """Midpoint plus element-wise N(0, |b - a| / 2): over many draws the mean is the
    midpoint and the standard deviation half the distance, element by element."""
    a, b = _model(0), _model(1)
    draws = torch.stack([torch.cat([p.detach().flatten() for p in
                                    repair.midpoint_noise(a, b, seed=s).parameters()])
                         for s in range(200)])
    pa = torch.cat([p.detach().flatten() for p in a.parameters()])
    pb = torch.cat([p.detach().flatten() for p in b.parameters()])
    half = (pb - pa).abs() / 2
    big = half > half.median()
    z = (draws.mean(0) - (pa + pb) / 2)[big] / (half[big] / math.sqrt(200))
    assert z.abs().mean() < 1.0  # mean within its standard error
    ratio = (draws.std(0)[big] / half[big])
    assert 0.93 < float(ratio.median()) < 1.07
    same = repair.midpoint_noise(a, a, seed=1)  # identical ends: no noise at all
    assert all(torch.equal(p, q) for p, q in zip(same.parameters(), a.parameters()))
    with pytest.raises(ParameterError, match="bn_loader"):
        repair.midpoint_noise(_preresnet(0), _preresnet(1))
    bn = repair.midpoint_noise(_preresnet(0), _preresnet(1), bn_loader=_loader())
    assert not bn.training


def test_cached_runs_are_reused_and_keyed(monkeypatch):
    a, b = _model(0), _model(1)
    from mcutils.core.store import fingerprint

    assert fingerprint(a) == fingerprint(_model(0)) != fingerprint(b)
    ds = _data()
    cm = repair.cached_curve(a, b, ds, steps=3, lr=0.01)
    assert isinstance(cm, curves.CurveModel)
    cm2, info = repair.cached_curve(a, b, ds, steps=3, lr=0.01, return_info=True)
    assert info["cached"]
    assert all(torch.equal(p, q) for p, q in zip(cm.parameters(), cm2.parameters()))
    _, info3 = repair.cached_curve(b, a, ds, steps=3, lr=0.01, return_info=True)
    assert not info3["cached"]
    for method in repair.REPAIRS:
        net, i1 = repair.cached_repair(method, a, ds, steps=2, return_info=True)
        again, i2 = repair.cached_repair(method, a, ds, steps=2, return_info=True)
        assert i2["cached"] and i1["cached"] == (method == "fine_prune")  # "prune" is its alias
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
    # scratch does not depend on the tampered weights: one checkpoint for any end
    _, i4 = repair.cached_repair("scratch", b, ds, steps=2, return_info=True)
    assert i4["cached"]
    with pytest.raises(ParameterError, match="method"):
        repair.cached_repair("magic", a, ds, steps=1)


def test_select_t_rule():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    # the middle qualifies: take it
    assert repair.select_t(ts, [0.90, 0.89, 0.885, 0.88, 0.87], 0.02) == 0.5
    # the middle is too inaccurate: the nearest qualifying point, the more accurate side
    assert repair.select_t(ts, [0.90, 0.89, 0.70, 0.895, 0.86], 0.02) == 0.75
    assert repair.select_t(ts, [0.90, 0.89, 0.70, 0.85, 0.86], 0.02) == 0.25
    # no inner point qualifies: an endpoint (the better one is nearer? both equally far)
    assert repair.select_t(ts, [0.90, 0.5, 0.4, 0.5, 0.91], 0.02) == 1.0
    # the tolerance is relative to the better end
    assert repair.select_t(ts, [0.80, 0.6, 0.885, 0.6, 0.90], 0.02) == 0.5
    assert repair.select_t(ts, [0.80, 0.6, 0.875, 0.6, 0.90], 0.02) == 1.0
    with pytest.raises(ParameterError):
        repair.select_t([0.2, 0.5, 1.0], [0.5, 0.5, 0.5])


def test_fine_tune_is_sgd_steps_on_a_copy_with_the_curves_schedule():
    """fine_tune adds validation, the copy and the pruning masks to training.sgd_steps;
    the weights are bit-identical to the loop run directly with the same factor."""
    import copy

    from mcutils.training import sgd_steps

    def loader():
        return TensorLoader(_data(96), 32, shuffle=True, seed=1)

    m = _model()
    ft = repair.fine_tune(m, loader(), 7, lr=0.05, weight_decay=1e-3, schedule="paper",
                          seed=2, channels_last=False)
    net = copy.deepcopy(m)
    sgd_steps(net, loader(), 7, 0.05, weight_decay=1e-3, seed=2, channels_last=False,
              lr_factor=lambda k: curves.lr_factor("paper", k, 7))
    assert all(torch.equal(p, q) for p, q in zip(ft.state_dict().values(),
                                                 net.state_dict().values()))
