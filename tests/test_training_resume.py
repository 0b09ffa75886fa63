"""Per-epoch checkpoints: an interrupted run resumes and ends with the same weights."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mcutils import data, models, training, zoo
from mcutils.core import store
from mcutils.core.checks import ParameterError


class Interrupted(Exception):
    """Stands in for a killed job."""


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", "train").subset(range(512))


def _net(seed):
    torch.manual_seed(seed)
    return models.build_model("mlp", in_channels=1, input_size=8, hidden=32)


def _noisy(model, x, y):
    """A transform drawing from torch's, NumPy's and Python's global generators."""
    noise = 0.01 * torch.randn_like(x) + float(np.random.rand()) * 1e-3 + random.random() * 1e-3
    return x + noise, y


def _run(digits, checkpoint=None, stop_at=None, seed=0):
    net = _net(seed)
    loader = data.TensorLoader(digits, 64, shuffle=True, seed=1)

    def callback(step, model):
        if stop_at is not None and step == stop_at:
            raise Interrupted

    hist = training.train(net, loader, epochs=3, lr=0.05, optimizer="sgd", schedule="step",
                          augment=True, transform=_noisy, callback=callback, seed=2,
                          progress=False, checkpoint=checkpoint)
    return net, hist


def test_resume_after_epoch_1_ends_bitwise_equal_to_a_straight_run(digits, tmp_path):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    straight, hist = _run(digits)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    ckpt = tmp_path / "run.partial.pt"
    spe = len(data.TensorLoader(digits, 64))
    with pytest.raises(Interrupted):
        _run(digits, checkpoint=ckpt, stop_at=spe + 3)  # killed during epoch 2
    saved = store.load_state(ckpt)  # weights_only=True
    assert saved["epoch"] == 1 and saved["step"] == spe
    assert isinstance(saved["rng"]["torch"], torch.Tensor)
    # scramble every generator and start from another initialisation: the file must restore
    # all of them (the transform draws from Python's, NumPy's and torch's generators)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    resumed, hist_resumed = _run(digits, checkpoint=ckpt, seed=7)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert hist_resumed == hist


def test_resume_refuses_a_checkpoint_of_other_settings(digits, tmp_path):
    ckpt = tmp_path / "c.pt"
    training.train(_net(0), data.TensorLoader(digits, 64), epochs=1, progress=False,
                   checkpoint=ckpt)
    with pytest.raises(ParameterError, match="written with"):
        training.train(_net(0), data.TensorLoader(digits, 64), epochs=1, lr=0.5,
                       progress=False, checkpoint=ckpt)


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(4)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    state = training.rng_state([gen])
    draws = (random.random(), np.random.randn(), torch.rand(2), torch.rand(1, generator=gen))
    training.set_rng_state(state, [gen])
    again = (random.random(), np.random.randn(), torch.rand(2), torch.rand(1, generator=gen))
    assert draws[:2] == again[:2]
    assert torch.equal(draws[2], again[2]) and torch.equal(draws[3], again[3])
    with pytest.raises(ParameterError, match="generator"):
        training.set_rng_state(state, [])


def test_resume_through_trained_model_and_the_store(monkeypatch, tmp_path):
    """An interrupted trained_model leaves only a partial checkpoint (never served); the
    next call resumes it, stores the finished model, removes the partial, and gets the
    weights of an uninterrupted run."""
    real = training.train
    calls = []

    def interruptible(*args, **kwargs):  # the first call is killed during epoch 2
        calls.append(kwargs.get("checkpoint"))
        if len(calls) == 1:
            spe = len(args[1])

            def stop(step, model):
                if step == spe + 2:
                    raise Interrupted
            kwargs["callback"] = stop
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo, "train", interruptible)
    settings = {"dataset": "digits", "model": "mlp", "epochs": 3, "lr": 3e-3,
                "batch_size": 64, "progress": False, "model_kwargs": {"hidden": 16}}
    with pytest.raises(Interrupted):
        zoo.trained_model(**settings)
    cache = store.cache_dir()
    partial = list(cache.glob("*.partial.pt"))
    assert len(partial) == 1 and calls[0] == partial[0]
    assert not [p for p in cache.glob("*.pt") if not p.name.endswith(".partial.pt")]
    net, info = zoo.trained_model(**settings, return_info=True)
    assert not info["cached"] and calls[1] == partial[0]
    assert not partial[0].exists()  # replaced by the finished model
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "other"))
    straight = zoo.trained_model(**settings)
    for (k, a), b in zip(straight.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k


def test_store_never_serves_a_partial_checkpoint(tmp_path):
    cfg = {"name": "toy", "lr": 0.1}
    partial = store.partial_path(cfg, code="abc")
    assert partial.name.endswith(".partial.pt") and partial.parent == store.cache_dir()
    assert partial != store.checkpoint_paths(dict(cfg, code="abc"))[0]
    torch.manual_seed(0)
    store.save_state(partial, {"w": torch.full((2,), 7.0)})
    trained = []

    def fit(model):
        trained.append(1)
        with torch.no_grad():
            model.weight.fill_(1.0)

    m = store.load_or_train(cfg, lambda: torch.nn.Linear(2, 1), fit, code="abc")
    assert trained == [1] and torch.all(m.weight == 1.0)
    assert not partial.exists()
