import torch

from mcutils import faults
from mcutils.models import build_model


def _model():
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=4, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def test_choose_faults_gives_wrong_labels():
    y = torch.arange(50) % 4
    idx, yf = faults.choose_faults(y, 6, 4, seed=2)
    assert len(set(idx.tolist())) == 6 and (yf != y[idx]).all() and yf.max() < 4


def test_fault_attack_changes_only_its_layer_and_succeeds():
    torch.set_num_threads(1)
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


def test_faulted_model_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    model = _model()
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y_fault = (model(x[:2]).argmax(1) + 1) % 4
    net, info = faults.faulted_model(model, x[:2], y_fault, x[2:], steps=5)
    net2, info2 = faults.faulted_model(model, x[:2], y_fault, x[2:], steps=5)
    assert info == info2 and set(info) == {"layer", "success_rate", "keep_rate", "delta_norm"}
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters()))
