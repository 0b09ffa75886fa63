import pytest
import torch

from mcutils import runtime
from mcutils.runtime import ParameterError, validate_params


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


def test_validate_params_accepts_good_values():
    validate_params(dict(dataset="fashion-mnist", model="small_cnn", lr=0.1, device="cpu",
                         profile="smoke"), ranges=dict(lr=(0, 1)))
    validate_params(dict(model="torchvision:resnet18"))
    validate_params(dict(models=["small_cnn", "vgg16"], teacher_model="mlp"))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ParameterError) as exc:
        validate_params(dict(dataset="nope"))
    msg = str(exc.value)
    assert "dataset='nope'" in msg
    for name in ("fashion-mnist", "mnist", "cifar10", "svhn", "digits"):
        assert name in msg


def test_unknown_model_and_profile_and_range_in_one_error():
    with pytest.raises(ParameterError) as exc:
        validate_params(dict(model="resnet9000", profile="huge", lr=-1.0, eval_dataset="x"),
                        ranges=dict(lr=(0, None)))
    msg = str(exc.value)
    assert "model='resnet9000'" in msg and "small_cnn" in msg
    assert "profile='huge'" in msg and "cpu" in msg and "smoke" in msg
    assert "lr=-1.0" in msg and "out of range" in msg
    assert "eval_dataset='x'" in msg


def test_list_values_and_choices():
    with pytest.raises(ParameterError, match="sizes=0"):
        validate_params(dict(sizes=[10, 0]), ranges=dict(sizes=(1, None)))
    with pytest.raises(ParameterError, match="norm='l3'"):
        validate_params(dict(norm="l3"), choices=dict(norm=["linf", "l2"]))
    with pytest.raises(ParameterError, match="must be a number"):
        validate_params(dict(lr="fast"), ranges=dict(lr=(0, 1)))


def test_unknown_torchvision_arch():
    with pytest.raises(ParameterError, match="torchvision has no"):
        validate_params(dict(model="torchvision:not_a_net"))


def test_bad_device_in_params():
    with pytest.raises(ParameterError, match="device="):
        validate_params(dict(device="tpu"))
