import pytest
import torch
from torch import nn

from mcutils import faults
from mcutils.core.checks import ParameterError
from mcutils.models import build_model


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=4, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def test_choose_faults_gives_wrong_labels():
    y = torch.arange(50) % 4
    idx, yf = faults.choose_faults(y, 6, 4, seed=2)
    assert len(set(idx.tolist())) == 6 and (yf != y[idx]).all() and yf.max() < 4


def test_fault_sets_are_disjoint_correct_and_relabelled():
    models = [_model(0), _model(0)]
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = models[0](x).argmax(1)
    y[::3] = (y[::3] + 1) % 4  # every third label is one the models get wrong
    agree = models[1](x).argmax(1) == y
    sets = faults.fault_sets(models, x, y, num_faults=8, num_keep=20, num_classes=4, seed=1)
    fi, ki = sets["fault_idx"], sets["keep_idx"]
    assert len(fi) == 8 and len(ki) == 20 and not set(fi.tolist()) & set(ki.tolist())
    assert agree[fi].all() and agree[ki].all()  # both models classify them correctly
    assert (sets["y_fault"] != y[fi]).all()
    with pytest.raises(ParameterError, match="candidates"):
        faults.fault_sets(models, x, y, num_faults=8, num_keep=int(agree.sum()), num_classes=4)


def test_fault_attack_changes_only_its_layer_and_succeeds():
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 8, 8, generator=g)
    pred = model(x).argmax(1)
    idx = torch.arange(3)
    y_fault = (pred[idx] + 1) % 4
    layer = faults.last_linear_layer(model)
    assert layer == "1.classifier.3"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attacked, info = faults.fault_sneaking_attack(model, x[idx], y_fault, x[3:], steps=100,
                                                  lr=0.05, l2=0.0)
    assert info["success_rate"] == 1.0 and info["keep_rate"] > 0.6 and info["delta_norm"] > 0
    assert faults.fault_success_rate(attacked, x[idx], y_fault) == 1.0
    assert faults.fault_hits(attacked, x[idx], y_fault).tolist() == [True] * 3
    assert faults.fault_hits(model, x[idx], y_fault).tolist() == [False] * 3
    after = attacked.state_dict()
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v)  # victim untouched
        if k.startswith(layer + "."):
            assert not torch.equal(after[k], v)
        else:
            assert torch.equal(after[k], v)
    # another layer can be chosen
    att2, info2 = faults.fault_sneaking_attack(model, x[idx], y_fault, x[3:], layer="1.classifier.1",
                                               steps=5)
    assert info2["layer"] == "1.classifier.1"
    assert torch.equal(att2.state_dict()["1.classifier.3.weight"], before["1.classifier.3.weight"])


class _Recorder(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.moves = []

    def forward(self, x):
        return self.net(x)

    def to(self, *args, **kwargs):
        self.moves.append(args[0] if args else kwargs.get("device"))
        return super().to(*args, **kwargs)

    def cpu(self):
        self.moves.append("cpu")
        return super().cpu()

    def cuda(self, device=None):
        self.moves.append("cuda")
        return super().cuda(device)


def test_faults_never_move_or_switch_the_callers_model():
    """The caller's model stays on its device and in its mode (the old code moved it to
    the CPU and left it in eval mode). Prediction runs through training.predict, whose
    speed plan may place the weights for the duration (here on their own device, or a
    memory format only) and restores device and strides afterwards."""
    net = _Recorder(_model()).train()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    yf = torch.zeros(12, dtype=torch.long)
    faults.fault_success_rate(net, x, yf)
    faults.fault_hits(net, x, yf)
    faults.fault_sets([net], x, net.eval()(x).argmax(1), 2, 3, 4)
    net.train()
    _, info = faults.fault_sneaking_attack(net, x[:2], yf[:2], x[2:], steps=3)
    home = torch.device("cpu")
    assert net.training and all(m in (home, None) for m in net.moves), net.moves
    assert all(p.device == home and p.is_contiguous() for p in net.parameters())
    assert info["keep_rate"] >= 0


def test_faulted_model_is_cached(tmp_path, monkeypatch):
    """The second call loads the checkpoint instead of attacking again (a broken cache
    would call the attack twice), and other images give another key."""
    model = _model()
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y_fault = (model(x[:2]).argmax(1) + 1) % 4
    calls = []
    real = faults.fault_sneaking_attack

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(faults, "fault_sneaking_attack", counting)
    net, info = faults.faulted_model(model, x[:2], y_fault, x[2:], steps=5, return_info=True)
    net2, info2 = faults.faulted_model(model, x[:2], y_fault, x[2:], steps=5, return_info=True)
    assert len(calls) == 1 and not info["cached"] and info2["cached"]
    keys = {"layer", "success_rate", "keep_rate", "delta_norm"}
    assert set(faults.faulted_model(model, x[:2], y_fault, x[2:], steps=5)[1]) == keys
    assert {k: info[k] for k in keys} == {k: info2[k] for k in keys}
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters()))
    assert len(calls) == 1
    faults.faulted_model(model, x[:2], y_fault, x[3:], steps=5)
    assert len(calls) == 2
