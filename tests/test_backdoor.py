import pytest
import torch
from torch import nn

from mcutils import backdoor
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.runtime import ParameterError


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
    net, info = backdoor.backdoored_model(**kw)
    assert not info["cached"] and info["metrics"]["asr"] > 0.5
    _, info2 = backdoor.backdoored_model(**kw)
    assert info2["cached"]


def test_path_aware_backdoor_moves_both_ends(tmp_path, monkeypatch):
    from mcutils.models import build_model

    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    a = build_model("mlp", hidden=16)
    b = build_model("mlp", hidden=16)
    pois, _ = backdoor.poison(_data(64), 0, 0.3)
    a2, b2 = backdoor.path_aware_backdoor(a, b, pois, steps=4, batch_size=32)
    for old, new in ((a, a2), (b, b2)):
        assert set(old.state_dict()) == set(new.state_dict())
        assert any(not torch.equal(p, q) for p, q in zip(old.parameters(), new.parameters()))
