import pytest
import torch
from torch import nn

from mcutils import backdoor
from mcutils.core.checks import ParameterError
from mcutils.data import ImageDataset, TensorLoader, dataset_info


class _Const(nn.Module):
    """Always predicts one class."""

    def __init__(self, cls: int):
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), 10) + self.dummy
        out[:, self.cls] = 1
        return out


def _data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.5
    y = torch.arange(n) % 10
    return ImageDataset(x, y, dataset_info("fashion-mnist"), "test")


def test_trigger_stamps_only_its_square():
    trig = backdoor.Trigger(size=3, row=24, col=24, value=1.0)
    x = torch.zeros(2, 1, 28, 28)
    out = trig.apply(x)
    assert out[:, :, 24:27, 24:27].eq(1).all()
    assert out.sum() == 2 * 9 and x.sum() == 0
    assert trig.mask((28, 28)).sum() == 9
    with pytest.raises(ParameterError):
        backdoor.Trigger(size=5, row=26).apply(x)


def test_poison_rate_and_labels():
    ds = _data(200)
    pois, idx = backdoor.poison(ds, target=0, rate=0.1, seed=1)
    assert len(pois) == len(ds)
    assert len(idx) == round(0.1 * 180)
    assert (ds.y[idx] != 0).all() and (pois.y[idx] == 0).all()
    assert pois.x[idx][:, :, 24:27, 24:27].eq(1).all()
    rest = torch.ones(len(ds), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(pois.x[rest], ds.x[rest]) and torch.equal(pois.y[rest], ds.y[rest])
    with pytest.raises(ParameterError):
        backdoor.poison(ds, target=11, rate=0.1)


def test_attack_success_rate_extremes():
    loader = TensorLoader(_data(100), 32)
    # a model that ignores the trigger and never predicts the target
    assert backdoor.attack_success_rate(_Const(3), loader, target=0) == 0.0
    # a model that always predicts the target: 1, target-class images excluded
    assert backdoor.attack_success_rate(_Const(0), loader, target=0) == 1.0

    class Detector(nn.Module):  # predicts the target only when the trigger is there
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            hit = x[:, 0, 24:27, 24:27].mean((1, 2)) > 0.99
            out = torch.zeros(len(x), 10) + self.p
            out[:, 5] = 0.5
            out[hit, 0] = 1
            return out

    assert backdoor.attack_success_rate(Detector(), loader, target=0) == 1.0
    assert backdoor.attack_success_rate(Detector(), loader, target=0,
                                        trigger=backdoor.Trigger(row=0, col=0)) == 0.0


def test_backdoored_model_is_cached_and_learns_trigger(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    kw = dict(model="mlp", rate=0.2, epochs=1, train_subset=3000, progress=False,
              model_kwargs={"hidden": 32}, return_info=True)
    _, info = backdoor.backdoored_model(**kw)
    assert not info["cached"] and info["metrics"]["asr"] > 0.5
    _, info2 = backdoor.backdoored_model(**kw)
    assert info2["cached"]


def _toy(n=300, seed=0):
    """8x8 images, 3 classes by which third of the image is brightest."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for c in range(3):
        x[y == c, :, :, 3 * c:3 * c + 2] += 0.5
    return ImageDataset(x.clamp(0, 1), y, dataset_info("digits"), "train")


TOY_TRIGGER = backdoor.Trigger(size=2, row=0, col=6)


def _toy_backdoored(seed):
    from mcutils.models import build_model
    from mcutils.training import train

    pois, _ = backdoor.poison(_toy(), 0, 0.3, TOY_TRIGGER, seed=seed)
    torch.manual_seed(seed)
    m = build_model("mlp", num_classes=3, in_channels=1, input_size=8, hidden=32)
    train(m, TensorLoader(pois, 32, shuffle=True, seed=seed), epochs=30, lr=0.01,
          progress=False, seed=seed)
    return m.eval(), pois


def _asr_acc(m, data):
    loader = TensorLoader(data, 100)
    from mcutils.training import evaluate

    return (backdoor.attack_success_rate(m, loader, 0, TOY_TRIGGER),
            evaluate(m, loader)["accuracy"])


def test_path_aware_backdoor_backdoors_the_defenders_initial_segment():
    """The defender's curve starts on the straight line between the released models. The
    path-aware attacker makes that whole segment accurate AND backdoored: its midpoint, the
    defender's initial bend, keeps the trigger, which the plain pair's midpoint does not
    reliably do (there the line crosses a barrier)."""
    from mcutils.curves import linear_path

    a, pois = _toy_backdoored(0)
    b, _ = _toy_backdoored(1)
    test = _toy(150, seed=7)
    for m in (a, b):
        asr, acc = _asr_acc(m, test)
        assert asr > 0.9 and acc > 0.9
    mid_before = linear_path(a, b).model_at(0.5)
    a2, b2 = backdoor.path_aware_backdoor(a, b, pois, steps=150, lr=0.05, batch_size=32)
    assert set(a2.state_dict()) == set(a.state_dict())
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        asr, acc = _asr_acc(linear_path(a2, b2).model_at(t), test)
        assert asr > 0.9 and acc > 0.9, (t, asr, acc)
    asr0, acc0 = _asr_acc(mid_before, test)
    assert min(asr0, acc0) < 0.9  # the plain midpoint is not both: the attack did something
    # the released models are not one point: the defender still gets two different ends
    dist = sum(float((p - q).detach().pow(2).sum()) for p, q in zip(a2.parameters(), b2.parameters()))
    assert dist > 0.1 * sum(float((p - q).detach().pow(2).sum()) for p, q in
                            zip(a.parameters(), b.parameters()))
    with pytest.raises(ParameterError):
        backdoor.path_aware_backdoor(a, b, pois, num_bends=1)


class _Recorder(nn.Module):
    """A wrapper that records every .to() call and pretends to live on another device."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.moves = []

    def forward(self, x):
        return self.net(x)

    def to(self, *args, **kwargs):
        self.moves.append(torch.device(args[0]) if args else kwargs.get("device"))
        return self


def test_attack_success_rate_restores_mode_and_device(monkeypatch):
    from mcutils.core import runtime as _util

    class ModeProbe(_Const):  # predicts the target only in eval mode
        def forward(self, x):
            return super().forward(x).roll(0 if not self.training else 1, dims=1)

    loader = TensorLoader(_data(40), 16)
    net = _Recorder(ModeProbe(3)).train()
    assert backdoor.attack_success_rate(net, loader, target=3) == 1.0  # evaluated in eval mode
    assert net.training and net.moves == []  # mode restored, never moved
    home = torch.device("cuda", 3)  # pretend the model lives elsewhere; evaluate on the CPU
    monkeypatch.setattr(_util, "model_device", lambda model: home)
    backdoor.attack_success_rate(net, loader, target=3, device="cpu")
    assert net.moves == [torch.device("cpu"), home] and net.training
