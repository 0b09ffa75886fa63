import pytest
import torch

from mcutils import data, models, training
from mcutils.runtime import ParameterError


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", "train"), data.load_dataset("digits", "test")


def _net():
    torch.manual_seed(0)
    return models.build_model("mlp", in_channels=1, input_size=8, hidden=64)


def test_train_improves_accuracy_and_calls_hooks(digits):
    train_set, test_set = digits
    net = _net()
    before = training.evaluate(net, data.TensorLoader(test_set, 256))
    seen, transformed = [], []

    def callback(step, model):
        seen.append(step)
        assert not model.training

    def transform(model, x, y):
        transformed.append(len(x))
        return x, y

    loader = data.TensorLoader(train_set, 64, shuffle=True)
    hist = training.train(net, loader, epochs=3, lr=3e-3, callback=callback,
                          transform=transform, progress=False, schedule="cosine")
    after = training.evaluate(net, data.TensorLoader(test_set, 256))
    assert after["accuracy"] > 0.85 > before["accuracy"]
    assert after["loss"] < before["loss"]
    assert seen == list(range(1, 3 * len(loader) + 1)) and len(transformed) == len(seen)
    assert len(hist["loss"]) == 3 and hist["loss"][-1] < hist["loss"][0]


def test_train_is_deterministic(digits):
    train_set, _ = digits
    outs = []
    for _ in range(2):
        net = _net()
        training.train(net, data.TensorLoader(train_set, 64, shuffle=True, seed=5), epochs=1,
                       lr=0.05, optimizer="sgd", progress=False, schedule="step")
        outs.append(training.predict(net, train_set.x[:20]))
    assert torch.equal(outs[0], outs[1])


def test_predict_matches_model(digits):
    _, test_set = digits
    net = _net().eval()
    with torch.no_grad():
        expected = net(test_set.x[:50])
    assert torch.allclose(training.predict(net, test_set.x[:50], batch_size=7), expected,
                          atol=1e-6)


def test_bad_training_options(digits):
    train_set, _ = digits
    loader = data.TensorLoader(train_set, 64)
    with pytest.raises(ParameterError, match="optimizer"):
        training.train(_net(), loader, optimizer="lbfgs")
    with pytest.raises(ParameterError, match="schedule"):
        training.train(_net(), loader, schedule="linear")


def test_augment_keeps_shape(digits):
    x = torch.rand(4, 3, 32, 32)
    out = training._augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape


def test_trained_model_is_cached():
    net, info = training.trained_model(dataset="digits", model="mlp", epochs=2, lr=3e-3,
                                       batch_size=64, progress=False, return_info=True)
    assert not info["cached"] and info["metrics"]["accuracy"] > 0.85
    net2, info2 = training.trained_model(dataset="digits", model="mlp", epochs=2, lr=3e-3,
                                         batch_size=64, progress=False, return_info=True)
    assert info2["cached"] and info2["train_seconds"] == info["train_seconds"]
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(net(x), net2(x))
