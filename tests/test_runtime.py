import pytest
import torch

from mcutils import runtime
from mcutils.runtime import ParameterError


def test_get_device_cpu_and_auto():
    assert runtime.get_device("cpu") == torch.device("cpu")
    auto = runtime.get_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.get_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_gpu_is_a_clear_error(spec):
    with pytest.raises(ParameterError, match="CUDA is not available"):
        runtime.get_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "", 3])
def test_unknown_device(spec):
    with pytest.raises(ParameterError, match="device="):
        runtime.get_device(spec)


def test_seed_everything_repeats_random_draws():
    g = runtime.seed_everything(123)
    a = torch.rand(5), torch.rand(3, generator=g)
    g = runtime.seed_everything(123)
    b = torch.rand(5), torch.rand(3, generator=g)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    runtime.seed_everything(124)
    assert not torch.equal(torch.rand(5), a[0])


def test_seed_must_be_nonnegative_int():
    with pytest.raises(ParameterError):
        runtime.seed_everything(-1)


# ----------------------------------------------------------------------------- speed plans
import pytest  # noqa: E402

from mcutils import models, training  # noqa: E402


def _input_for(name):
    return torch.rand(6, 3, 32, 32) if name in ("vgg16", "preresnet20", "resnet18_cifar") \
        else torch.rand(6, 1, 28, 28)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_prepared_predict_equals_plain_path(name):
    """The plan changes speed, not results: within 1e-5 of a plain forward pass."""
    x = _input_for(name)
    net = models.build_model(name, in_channels=x.shape[1]).eval()
    with torch.inference_mode():
        plain = net(x)
    fast = training.predict(net, x, batch_size=4)   # two chunks, channels_last for conv nets
    assert torch.allclose(fast, plain, atol=1e-5), (fast - plain).abs().max()


def test_plan_calibrates_once_and_stores_it(monkeypatch):
    net = models.build_model("small_cnn")
    x = torch.rand(2, 1, 28, 28)
    calls = []
    monkeypatch.setattr(runtime, "_calibrate", lambda *a: calls.append(1) or (True, 64))
    first = runtime.prepare(net, x, calibrate=True)
    again = runtime.prepare(net, x, calibrate=True)
    assert calls == [1] and first.source == "calibrated" and again.source == "stored"
    assert (again.channels_last, again.batch_size) == (True, 64)
    # another input shape or purpose is another plan
    runtime.prepare(net, torch.rand(2, 1, 28, 28), calibrate=True, purpose="train")
    assert calls == [1, 1]


def test_explicit_choices_win_and_fixed_mode_does_not_measure(monkeypatch):
    net = models.build_model("small_cnn")
    x = torch.rand(2, 1, 28, 28)
    monkeypatch.setattr(runtime, "_calibrate", lambda *a: pytest.fail("measured"))
    monkeypatch.setenv(runtime.CALIBRATE_ENV, "0")
    plan = runtime.prepare(net, x)
    assert (plan.channels_last, plan.batch_size, plan.source) == (True, 128, "fixed")
    plan = runtime.prepare(net, x, batch_size=7, channels_last=False, calibrate=True)
    assert (plan.channels_last, plan.batch_size) == (False, 7)
    mlp = runtime.prepare(models.build_model("mlp"), x)
    assert not mlp.channels_last           # no conv layers: layout does not matter
    with pytest.raises(ParameterError, match="batch_size"):
        runtime.prepare(net, x, batch_size=0)
    with pytest.raises(ParameterError, match="purpose"):
        runtime.prepare(net, x, purpose="fly")


def test_caller_model_keeps_mode_device_and_layout():
    net = models.build_model("small_cnn").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    training.predict(net, torch.rand(5, 1, 28, 28), batch_size=2)
    assert net.training
    for k, v in net.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k]), k


def test_training_layouts_agree_and_weights_return_contiguous():
    from torch.utils.data import TensorDataset

    from mcutils.data import TensorLoader

    torch.manual_seed(0)
    ds = TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    nets = []
    for cl in (False, True):
        torch.manual_seed(1)
        net = models.build_model("small_cnn")
        training.train(net, TensorLoader(ds, 16, shuffle=True), epochs=1, lr=0.01,
                       optimizer="sgd", progress=False, channels_last=cl)
        nets.append(net)
    for (k, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        assert b.is_contiguous() and torch.allclose(a, b, atol=1e-5), k
