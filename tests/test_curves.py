import copy

import pytest
import torch
from torch import nn

from mcutils import curves
from mcutils.core.checks import ParameterError
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model


def _model(seed: int, name: str = "small_cnn", **kw) -> nn.Module:
    torch.manual_seed(seed)
    kw.setdefault("width", 4) if name == "small_cnn" else None
    if name == "small_cnn":
        kw.setdefault("hidden", 16)
    return build_model(name, num_classes=3, in_channels=1, input_size=8, **kw).eval()


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Identity(), _BNNet()).eval()


def _loader(n: int = 64, seed: int = 0, batch_size: int = 16) -> TensorLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) * 30).long() % 3
    ds = ImageDataset(x, y, dataset_info("digits"), "train")
    return TensorLoader(ds, batch_size, shuffle=True, seed=seed)


X = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_coefficients_sum_to_one_and_hit_ends():
    for cls in (curves.Bezier, curves.PolyChain):
        for n in (2, 3, 5):
            c = cls(n)
            for t in torch.linspace(0, 1, 11):
                assert torch.isclose(c(t).sum(), torch.tensor(1.0))
            assert torch.equal(c(0.0), torch.eye(n)[0])
            assert torch.equal(c(1.0), torch.eye(n)[-1])
    # polychain passes through its knots
    assert torch.allclose(curves.PolyChain(3)(0.5), torch.tensor([0.0, 1.0, 0.0]))
    # Bezier(3) at 0.5 is (1/4, 1/2, 1/4)
    assert torch.allclose(curves.Bezier(3)(0.5), torch.tensor([0.25, 0.5, 0.25]))
    with pytest.raises(ParameterError):
        curves.Bezier(1)


@pytest.mark.parametrize("curve", ["bezier", "polychain"])
@pytest.mark.parametrize("fix_ends", [True, False])
def test_ends_reproduce_endpoint_models_exactly(curve, fix_ends):
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, curve, fix_ends=fix_ends, num_bends=4)
    with torch.no_grad():
        # perturb the inner bends so that the check is not trivial
        for p in cm.parameters():
            p.add_(torch.randn_like(p))
        if not fix_ends:  # ends are free parameters: restore them
            for i, name in enumerate(cm.param_names):
                cm.bends[i][0].copy_(a.state_dict()[name])
                cm.bends[i][-1].copy_(b.state_dict()[name])
        assert torch.equal(cm(X, 0.0), a(X))
        assert torch.equal(cm(X, 1.0), b(X))
        assert torch.equal(cm.model_at(0.0)(X), a(X))
        assert torch.equal(cm.model_at(1.0)(X), b(X))
        for k, v in cm.state_at(1.0).items():
            assert torch.equal(v, b.state_dict()[k])


def test_identical_ends_linear_init_is_constant():
    a = _model(0)
    for curve in ("bezier", "polychain"):
        cm = curves.CurveModel(a, a, a, curve, num_bends=3)
        with torch.no_grad():
            for t in (0.0, 0.13, 0.5, 0.77, 1.0):
                assert torch.allclose(cm(X, t), a(X), atol=1e-6)


def test_linear_init_gives_straight_line():
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)
    line = curves.linear_path(a, b)
    sa, sb = a.state_dict(), b.state_dict()
    for t in (0.25, 0.6):
        s1, s2 = cm.state_at(t), line.state_at(t)
        for k in s1:
            expect = (1 - t) * sa[k] + t * sb[k]
            assert torch.allclose(s1[k], expect, atol=1e-6)
            assert torch.allclose(s2[k], expect, atol=1e-6)


def test_gradients_reach_only_free_bends():
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3, fix_ends=True)
    names = [n for n, p in cm.named_parameters()]
    assert all(n.startswith("bends.") for n in names)
    assert sum(p.numel() for p in cm.parameters()) == sum(p.numel() for p in a.parameters())
    cm(X, 0.3).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in cm.parameters())
    assert all(not b_.requires_grad for b_ in cm.buffers())
    # the original models are untouched and get no gradient
    assert all(p.grad is None for p in a.parameters())
    # free ends: all three bends are parameters
    cm2 = curves.CurveModel(a, a, b, "bezier", num_bends=3, fix_ends=False)
    assert sum(p.numel() for p in cm2.parameters()) == 3 * sum(p.numel() for p in a.parameters())


def test_train_curve_lowers_midpoint_loss_and_penalty_shrinks_weights():
    from mcutils.training import evaluate, train

    loader = _loader(128)
    a, b = _model(0), _model(1)
    train(a, loader, epochs=15, lr=0.01, progress=False)
    train(b, loader, epochs=15, lr=0.01, progress=False)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)
    before = evaluate(cm.model_at(0.5), loader)["loss"]
    hist = curves.train_curve(copy.deepcopy(cm), loader, epochs=1, lr=0.05, progress=False)
    assert len(hist["loss"]) == len(loader) and all(0 <= t <= 1 for t in hist["t"])
    trained = copy.deepcopy(cm)
    curves.train_curve(trained, loader, steps=80, lr=0.05, progress=False, seed=3)
    after = evaluate(trained.model_at(0.5), loader)["loss"]
    assert after < before
    heavy = copy.deepcopy(cm)
    curves.train_curve(heavy, loader, steps=80, lr=0.05, weight_decay=1.0, progress=False, seed=3)
    # the penalty is on w(t), not on the bend: the midpoint's norm shrinks
    def norm(m):
        return sum(float((v.detach() ** 2).sum()) for v in m.weights(0.5).values())
    assert norm(heavy) < norm(trained)
    # ends stay fixed
    for k, v in trained.state_at(0.0).items():
        assert torch.equal(v, a.state_dict()[k])


def test_train_curve_steps_are_deterministic():
    loader = _loader(64)
    a, b = _model(0), _model(1)
    c1 = curves.CurveModel(a, a, b, "polychain", num_bends=3)
    c2 = copy.deepcopy(c1)
    curves.train_curve(c1, loader, steps=5, lr=0.01, progress=False, seed=7)
    curves.train_curve(c2, _loader(64), steps=5, lr=0.01, progress=False, seed=7)
    for p, q in zip(c1.parameters(), c2.parameters()):
        assert torch.equal(p, q)


def test_batchnorm_stats_recomputed_along_curve():
    a, b = _bn_model(0), _bn_model(1)
    loader = _loader(64)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)
    m = cm._export(0.5)  # interpolated statistics, not yet recomputed
    before = m[1].bn.running_mean.clone()
    curves.recompute_bn(m, loader)
    assert not torch.allclose(m[1].bn.running_mean, before)
    assert not m.training
    # evaluate_curve needs a bn_loader for BN models and uses it
    with pytest.raises(ParameterError, match="bn_loader"):
        curves.evaluate_curve(cm, [0.5], loader)
    df = curves.evaluate_curve(cm, 3, loader, bn_loader=loader,
                               extra={"one": lambda model: 1.0})
    assert list(df.columns) == ["t", "loss", "accuracy", "one"]
    assert df["t"].tolist() == [0.0, 0.5, 1.0]
    # the exported model after update_bn matches a direct recompute
    direct = cm.model_at(0.5, loader)
    from mcutils.training import evaluate
    assert abs(evaluate(direct, loader)["loss"] - df["loss"][1]) < 1e-5
    # training works through BN layers in train mode
    curves.train_curve(cm, loader, steps=3, lr=0.01, progress=False)


def test_normalize_buffers_carried_through():
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, "bezier")
    st = cm.state_at(0.4)
    assert torch.equal(st["0.mean"], a.state_dict()["0.mean"])
    assert set(st) == set(a.state_dict())


def test_vgg_like_any_module_and_errors():
    a, b = _model(0, "mlp", hidden=8), _model(1, "mlp", hidden=8)
    cm = curves.CurveModel(a, a.state_dict(), b.state_dict(), curves.PolyChain(5))
    assert cm(X, 0.5).shape == (10, 3)
    with pytest.raises(ParameterError):
        curves.CurveModel(a, a, _model(0), "bezier")  # architecture mismatch
    with pytest.raises(ParameterError):
        curves.CurveModel(a, a, b, "spline")
    with pytest.raises(ParameterError):
        cm.state_at(1.5)
    with pytest.raises(ParameterError):
        curves.train_curve(curves.linear_path(a, b), _loader(), steps=1, progress=False)
    with pytest.raises(ParameterError):
        curves.evaluate_curve(cm, [0.2, 1.2], _loader())


def _trained_mlp(loader, seed: int = 0) -> nn.Module:
    from mcutils.training import train

    torch.manual_seed(seed)
    m = build_model("mlp", num_classes=3, in_channels=1, input_size=8, hidden=32)
    train(m, loader, epochs=40, lr=0.01, progress=False, seed=seed)
    return m.eval()


def _permuted(model: nn.Module, perm: torch.Tensor) -> nn.Module:
    """The same function with the hidden units of the first layer permuted."""
    out = copy.deepcopy(model)
    lin = [m for m in out.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        lin[0].weight.copy_(lin[0].weight[perm])
        lin[0].bias.copy_(lin[0].bias[perm])
        lin[1].weight.copy_(lin[1].weight[:, perm])
    return out


def test_linear_path_barrier_between_different_models():
    """Two copies of one function that differ by a permutation of hidden units have equal
    loss, but the straight line between their weights leaves the low-loss set (a barrier);
    the identity permutation (the same weights) is the control: no barrier."""
    loader = _loader(128)
    a = _trained_mlp(loader)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(5))
    b = _permuted(a, perm)
    from mcutils.training import evaluate

    df = curves.evaluate_curve(curves.linear_path(a, b), 5, loader)
    ends = df["loss"].iloc[[0, -1]]
    assert abs(ends.iloc[0] - ends.iloc[1]) < 1e-5  # one function at both ends
    assert abs(ends.iloc[0] - evaluate(a, loader)["loss"]) < 1e-6
    assert df["loss"].iloc[2] > ends.max() + 0.1  # the midpoint is clearly worse
    # evaluate_curve's numbers are those of the interpolated model itself
    mid = copy.deepcopy(a)
    mid.load_state_dict(curves.interpolate_states(a.state_dict(), b.state_dict(), 0.5))
    assert abs(evaluate(mid, loader)["loss"] - df["loss"].iloc[2]) < 1e-6
    same = curves.evaluate_curve(curves.linear_path(a, _permuted(a, torch.arange(32))), 5, loader)
    assert (same["loss"] - ends.iloc[0]).abs().max() < 1e-5


def test_train_curve_schedule_changes_the_steps():
    loader = _loader(64)
    a, b = _model(0), _model(1)
    c1 = curves.CurveModel(a, a, b, "bezier")
    c2 = copy.deepcopy(c1)
    curves.train_curve(c1, loader, steps=6, lr=0.05, progress=False)
    curves.train_curve(c2, loader, steps=6, lr=0.05, schedule="paper", progress=False)
    # the first half of the paper schedule is flat: the same first steps; later smaller
    d1 = sum(float((p - q).detach().abs().sum()) for p, q in zip(c1.parameters(), cm_init(a, b)))
    d2 = sum(float((p - q).detach().abs().sum()) for p, q in zip(c2.parameters(), cm_init(a, b)))
    assert 0 < d2 < d1
    with pytest.raises(ParameterError):
        curves.train_curve(c1, loader, steps=1, schedule="linear", progress=False)


def cm_init(a, b):
    return list(curves.CurveModel(a, a, b, "bezier").parameters())


def _tiny_preresnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("preresnet20", num_classes=3, in_channels=1, input_size=8, width=4).eval()


def test_model_at_refuses_batchnorm_without_data_preresnet20():
    a, b = _tiny_preresnet(0), _tiny_preresnet(1)
    loader = _loader(32)
    for cm in (curves.CurveModel(a, a, b, "bezier"), curves.linear_path(a, b)):
        with pytest.raises(ParameterError, match="bn_loader"):
            cm.model_at(0.5)
        # the fixed ends are the end models themselves, statistics included
        assert torch.equal(cm.model_at(0.0)(X), a(X))
        assert torch.equal(cm.model_at(1.0)(X), b(X))
        assert not cm.model_at(0.5, loader).training
    free = curves.CurveModel(a, a, b, "bezier", fix_ends=False)
    with pytest.raises(ParameterError):
        free.model_at(0.0)  # free ends move: their statistics are stale
    # a model without BatchNorm needs no data
    curves.linear_path(_model(0), _model(1)).model_at(0.5)


def test_bn_statistics_recomputed_at_every_t_on_the_straight_line_preresnet20():
    a, b = _tiny_preresnet(0), _tiny_preresnet(1)
    with torch.no_grad():  # give the ends distinct, non-default statistics
        for m, v in ((a, 3.0), (b, -2.0)):
            for bn in m.modules():
                if isinstance(bn, nn.BatchNorm2d):
                    bn.running_mean.fill_(v)
                    bn.running_var.fill_(abs(v))
    line = curves.linear_path(a, b)
    loader = TensorLoader(_loader(64).dataset, 16)  # fixed batches: same statistics each pass
    xs = torch.cat([x for x, _ in loader])
    df = curves.evaluate_curve(line, [0.0, 0.3, 0.5, 1.0], loader, bn_loader=loader)
    from mcutils.training import evaluate

    for i, t in enumerate(df["t"]):
        m = line._export(t)
        stale = evaluate(m, loader)["loss"]
        curves.recompute_bn(m, loader)
        # the statistics are those of the data at w(t): the first BN sees the stem conv
        feats = m[1].conv(m[0](xs))
        bn0 = m[1].blocks[0].bn1
        assert torch.allclose(bn0.running_mean, feats.mean((0, 2, 3)), atol=1e-5)
        assert abs(evaluate(m, loader)["loss"] - df["loss"][i]) < 1e-5
        assert abs(stale - df["loss"][i]) > 1e-3  # interpolated statistics differ


@pytest.mark.parametrize("fix_ends,num_bends", [(True, 3), (True, 4), (False, 3)])
def test_channels_last_weights_equal_default_and_are_channels_last(fix_ends, num_bends):
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=num_bends, fix_ends=fix_ends)
    with torch.no_grad():  # move the free bends off the segment
        for p in cm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = {k: v.detach().clone() for k, v in cm.weights(0.37).items()}
    ref_out = cm(X, 0.37).detach()
    cm.set_channels_last(True)
    assert cm.channels_last
    w = cm.weights(0.37)
    conv = [k for k, v in w.items() if v.dim() == 4]
    assert conv  # the small CNN has conv kernels, the first with one input channel
    for k, v in w.items():
        tol = 0 if num_bends == 3 else 1e-6  # one free bend: the same sum, bit for bit
        assert torch.allclose(v, ref[k], atol=tol, rtol=0), k
        if v.dim() == 4:  # explicit NHWC strides, also for the single-channel kernel
            assert v.stride()[1] == 1 and v.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(cm(X, 0.37), ref_out, atol=1e-5)
    cm.set_channels_last(False)
    assert not cm.channels_last
    fresh = curves.CurveModel(a, a, b, "bezier", num_bends=num_bends, fix_ends=fix_ends)
    # the exact strides of a new curve, also for the one-channel kernel's bend and ends
    assert [p.stride() for p in cm.parameters()] == [p.stride() for p in fresh.parameters()]
    assert [b_.stride() for b_ in cm.buffers()] == [b_.stride() for b_ in fresh.buffers()]
    for k, v in cm.weights(0.37).items():
        assert torch.allclose(v, ref[k], atol=1e-6, rtol=0) and v.is_contiguous()


def test_train_curve_memory_format_changes_only_rounding_and_is_restored():
    a, b = _model(0), _model(1)
    base = curves.CurveModel(a, a, b, "bezier", num_bends=3)
    runs = {}
    for cl in (False, True):
        cm = copy.deepcopy(base)
        params = list(cm.parameters())
        hist = curves.train_curve(cm, _loader(64), steps=6, lr=0.05, weight_decay=1e-3,
                                  progress=False, seed=2, channels_last=cl)
        assert [id(p) for p in cm.parameters()] == [id(p) for p in params]  # same objects
        assert not cm.channels_last  # the layout is restored after training, exactly
        assert [p.stride() for p in cm.parameters()] == [p.stride() for p in base.parameters()]
        assert [b_.stride() for b_ in cm.buffers()] == [b_.stride() for b_ in base.buffers()]
        runs[cl] = (cm, hist)
    (c0, h0), (c1, h1) = runs[False], runs[True]
    assert h0["t"] == h1["t"]
    assert max(abs(u - v) for u, v in zip(h0["loss"], h1["loss"])) < 1e-5
    for p, q in zip(c0.parameters(), c1.parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    # and training moved the bend: the comparison is not between two untrained curves
    assert any(not torch.allclose(p, q) for p, q in zip(c0.parameters(), base.parameters()))


def test_train_curve_runs_under_the_training_plan(monkeypatch):
    seen = []
    real = nn.Conv2d._conv_forward

    def spy(self, x, weight, bias):
        seen.append(weight.is_contiguous(memory_format=torch.channels_last) and weight.stride()[1] == 1)
        return real(self, x, weight, bias)

    monkeypatch.setattr(nn.Conv2d, "_conv_forward", spy)
    a, b = _model(0), _model(1)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)
    curves.train_curve(cm, _loader(32), steps=1, lr=0.01, progress=False, channels_last=True)
    assert seen and all(seen)
    seen.clear()
    curves.train_curve(cm, _loader(32), steps=1, lr=0.01, progress=False, channels_last=False)
    assert seen and not any(seen)
