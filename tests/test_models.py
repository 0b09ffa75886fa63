import pytest
import torch

from mcutils import models
from mcutils.core.checks import ParameterError

SHAPES = {"small_cnn": (1, 28), "mlp": (1, 28), "vgg16": (3, 32), "preresnet20": (3, 32),
          "resnet18_cifar": (3, 32)}


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_registered_model_runs_forward_and_backward(name):
    channels, size = SHAPES[name]
    net = models.build_model(name, num_classes=7, in_channels=channels, input_size=size)
    x = torch.rand(2, channels, size, size)
    out = net(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_registry_covers_design():
    assert {"small_cnn", "vgg16", "preresnet20", "resnet18_cifar"} <= set(models.MODELS)


def test_vgg16_has_no_batchnorm_and_resnets_do():
    def has_bn(m):
        return any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert not has_bn(models.build_model("vgg16", in_channels=3, input_size=32))
    assert has_bn(models.build_model("preresnet20", in_channels=3, input_size=32))
    assert has_bn(models.build_model("resnet18_cifar", in_channels=3, input_size=32))


def test_normalize_layer_is_first_and_correct():
    net = models.build_model("small_cnn", mean=(0.25,), std=(0.5,))
    assert isinstance(net[0], models.Normalize)
    x = torch.full((1, 1, 28, 28), 0.75)
    assert torch.allclose(net[0](x), torch.ones_like(x))


def test_torchvision_architecture_builds_offline():
    net = models.build_model("torchvision:resnet18", num_classes=5, in_channels=3, input_size=64)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 5)
    net = models.build_model("torchvision:googlenet", num_classes=10, in_channels=3)
    net.eval()
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 10)


def test_pretrained_torchvision_offline_is_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models as tvm

    def refuse(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(tvm, "get_model", refuse)
    with pytest.raises(RuntimeError, match="internet"):
        models.build_model("torchvision:resnet18", num_classes=1000, in_channels=3,
                           pretrained=True)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ParameterError) as exc:
        models.build_model("resnet1000")
    assert "small_cnn" in str(exc.value) and "torchvision:<name>" in str(exc.value)
    with pytest.raises(ParameterError):
        models.build_model("small_cnn", pretrained=True)


def test_build_for_dataset_uses_dataset_shape():
    net = models.build_for_dataset("preresnet20", "cifar10")
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert torch.allclose(net[0].mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))
    assert models.count_parameters(net) > 200_000
