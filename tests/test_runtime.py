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
