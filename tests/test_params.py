import pytest

from mcutils.params import ParameterError, validate_params


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


def test_none_only_where_allowed():
    # None means "whole split" for a subset size: allowed only when declared
    validate_params(dict(train_subset=None, lr=0.1), ranges=dict(train_subset=(1, None)),
                    allow_none=["train_subset"])
    with pytest.raises(ParameterError, match="train_subset=None must be a number"):
        validate_params(dict(train_subset=None), ranges=dict(train_subset=(1, None)))
    # a declared-nullable name still gets its range checked when it is not None
    with pytest.raises(ParameterError, match="train_subset=0"):
        validate_params(dict(train_subset=0), ranges=dict(train_subset=(1, None)),
                        allow_none=["train_subset"])
    with pytest.raises(KeyError, match="allow_none"):
        validate_params(dict(lr=0.1), allow_none=["train_subset"])


def test_runtime_does_not_import_registries():
    """The import cycle runtime <-> data/models is broken: runtime imports neither."""
    import subprocess
    import sys

    code = ("import sys, mcutils.core.runtime; "
            "print(any(m in sys.modules for m in ('mcutils.data', 'mcutils.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
