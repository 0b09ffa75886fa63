import torch
from torch import nn

from mcutils import repair
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model
from mcutils.training import evaluate


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def _loader(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0.5)
    return TensorLoader(ImageDataset(x, y, dataset_info("digits"), "train"), 32, shuffle=True)


def test_fine_tune_and_scratch_take_exact_steps_and_learn():
    torch.set_num_threads(1)
    loader = _loader()
    m = _model()
    ft = repair.fine_tune(m, loader, steps=60, lr=0.05)
    assert evaluate(ft, loader)["loss"] < evaluate(m, loader)["loss"]
    assert any(not torch.equal(p, q) for p, q in zip(ft.parameters(), m.parameters()))
    same = repair.fine_tune(m, loader, steps=0)
    assert all(torch.equal(p, q) for p, q in zip(same.parameters(), m.parameters()))
    scratch = repair.train_from_scratch(m, loader, steps=3, seed=1)
    assert torch.equal(scratch.state_dict()["0.mean"], m.state_dict()["0.mean"])
    r1, r2 = repair.reinitialize(m, 5), repair.reinitialize(m, 5)
    assert all(torch.equal(p, q) for p, q in zip(r1.parameters(), r2.parameters()))


def test_prune_filters_zeroes_and_keeps_zero_through_fine_tuning():
    torch.set_num_threads(1)
    loader = _loader()
    m = _model()
    pruned = repair.prune_filters(m, loader, fraction=0.5)
    conv = pruned[1].features[3]
    dead = (conv.weight.flatten(1).abs().sum(1) == 0)
    assert int(dead.sum()) == conv.out_channels // 2
    tuned = repair.fine_tune(pruned, loader, steps=20, lr=0.05)
    conv2 = tuned[1].features[3]
    assert (conv2.weight[dead] == 0).all() and (conv2.bias[dead] == 0).all()
    assert (conv2.weight[~dead] != conv.weight[~dead]).any()


def test_weight_noise_scale_and_seed():
    m = _model()
    n1, n2 = repair.weight_noise(m, 0.1, seed=3), repair.weight_noise(m, 0.1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), n2.parameters()))
    for p, q in zip(m.parameters(), n1.parameters()):
        rel = float((q - p).detach().pow(2).mean().sqrt() / p.pow(2).mean().sqrt())
        assert 0.03 < rel < 0.3
    assert all(torch.equal(p, q) for p, q in zip(repair.weight_noise(m, 0.0).parameters(),
                                                 m.parameters()))
    assert isinstance(n1, nn.Module)


def test_fingerprint_and_cached_runs(tmp_path, monkeypatch):
    from mcutils import curves

    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    a, b = _model(0), _model(1)
    from mcutils.store import fingerprint

    assert fingerprint(a) == fingerprint(_model(0)) != fingerprint(b)
    ds = _loader().dataset
    cm = repair.cached_curve(a, b, ds, steps=3, lr=0.01)
    assert isinstance(cm, curves.CurveModel)
    cm2, info = repair.cached_curve(a, b, ds, steps=3, lr=0.01, return_info=True)
    assert info["cached"]
    assert all(torch.equal(p, q) for p, q in zip(cm.parameters(), cm2.parameters()))
    # other endpoints or data: another key
    _, info3 = repair.cached_curve(b, a, ds, steps=3, lr=0.01, return_info=True)
    assert not info3["cached"]
    for method in repair.REPAIRS:
        net = repair.cached_repair(method, a, ds, steps=2)
        again = repair.cached_repair(method, a, ds, steps=2)
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
    import pytest
    with pytest.raises(Exception, match="method"):
        repair.cached_repair("magic", a, ds, steps=1)
