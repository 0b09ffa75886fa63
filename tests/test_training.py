import pytest
import torch

from mcutils import data, models, training, zoo
from mcutils.core.checks import ParameterError


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
    net, info = zoo.trained_model(dataset="digits", model="mlp", epochs=2, lr=3e-3,
                                       batch_size=64, progress=False, return_info=True)
    assert not info["cached"] and info["metrics"]["accuracy"] > 0.85
    net2, info2 = zoo.trained_model(dataset="digits", model="mlp", epochs=2, lr=3e-3,
                                         batch_size=64, progress=False, return_info=True)
    assert info2["cached"] and info2["train_seconds"] == info["train_seconds"]
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(net(x), net2(x))


class _Recorder(torch.nn.Module):
    """A small net with BatchNorm and dropout (their behaviour depends on the mode)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                       torch.nn.BatchNorm1d(16), torch.nn.Dropout(0.5),
                                       torch.nn.Linear(16, 10))
        self.moves = []

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("fn", ["predict", "evaluate"])
@pytest.mark.parametrize("mode", [True, False])
def test_predict_and_evaluate_restore_mode(digits, fn, mode):
    _, test_set = digits
    net = _Recorder().train(mode)
    stats_before = net.net[2].running_mean.clone()
    if fn == "predict":
        out = training.predict(net, test_set.x[:40], batch_size=16)
        assert all(m.training is mode for m in net.modules())
        with torch.no_grad():
            expected = net.eval()(test_set.x[:40])
        net.train(mode)
        assert torch.allclose(out, expected, atol=1e-6)  # computed in eval mode
    else:
        training.evaluate(net, data.TensorLoader(test_set, 32))
    assert net.training is mode
    assert all(m.training is mode for m in net.modules())
    # eval mode: BatchNorm's running statistics were not updated by the forward passes
    assert torch.equal(net.net[2].running_mean, stats_before)


@pytest.mark.parametrize("fn", ["predict", "evaluate"])
def test_predict_and_evaluate_restore_the_model_when_the_forward_fails(fn):
    """Mode and weight layout go back to the caller's, also when the forward pass raises
    (the device is restored by the same code path; tests/test_cuda.py runs it on a GPU)."""
    from mcutils.models import build_model

    net = build_model("small_cnn").train()
    calls = []

    def boom(module, inputs):
        calls.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
        raise RuntimeError("boom")

    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(boom)
    x = torch.rand(8, 1, 28, 28)
    y = torch.zeros(8, dtype=torch.long)
    run = {"predict": lambda: training.predict(net, x),
           "evaluate": lambda: training.evaluate(net, [(x, y)])}[fn]
    with pytest.raises(RuntimeError, match="boom"):
        run()
    assert calls == [True]                     # it ran under the channels_last plan
    assert net.training
    assert all(p.is_contiguous() for p in net.parameters())



def test_predict_rejects_bad_batch_size(digits):
    with pytest.raises(ParameterError, match="batch_size"):
        training.predict(_net(), digits[1].x[:4], batch_size=0)


def test_sgd_steps_takes_exact_steps_cycling_the_loader(digits):
    train_set, _ = digits
    small = train_set.subset(torch.arange(100))
    loader = data.TensorLoader(small, 32)  # 4 batches: 10 steps cycle it 2.5 times
    seen = []

    class Counting:
        def __iter__(self):
            for x, y in loader:
                seen.append(len(x))
                yield x, y

    net = _net()
    before = training.evaluate(net, data.TensorLoader(small, 100))["loss"]
    out = training.sgd_steps(net, Counting(), steps=10, lr=0.05, progress=False)
    assert out is None and not net.training
    # the batches in order, the loader re-iterated when exhausted (the generator may pull
    # one batch past the last step; the step count itself is checked through lr_factor)
    assert seen[:10] == [32, 32, 32, 4] * 2 + [32, 32]
    assert training.evaluate(net, data.TensorLoader(small, 100))["loss"] < before
    with pytest.raises(ParameterError, match="empty"):
        training.sgd_steps(_net(), [], steps=1, lr=0.1, progress=False)
    with pytest.raises(ParameterError):
        training.sgd_steps(_net(), loader, steps=1, lr=0.1, optimizer="rmsprop")
    with pytest.raises(ParameterError):
        training.sgd_steps(_net(), loader, steps=-1, lr=0.1)
    with pytest.raises(ParameterError):
        training.sgd_steps(_net(), loader, steps=1, lr=0.0)


def test_sgd_steps_lr_factor_is_per_step_and_seeded(digits):
    train_set, _ = digits
    loader = data.TensorLoader(train_set.subset(torch.arange(64)), 16)
    # a zero factor: the optimiser steps but the weights do not move
    frozen = _net()
    start = [p.detach().clone() for p in frozen.parameters()]
    training.sgd_steps(frozen, loader, steps=3, lr=0.1, lr_factor=lambda k: 0.0,
                       progress=False)
    assert all(torch.equal(p, q) for p, q in zip(frozen.parameters(), start))
    # the factor is called with the step index (0 at construction, then after each step)
    calls = []
    training.sgd_steps(_net(), loader, steps=3, lr=0.1,
                       lr_factor=lambda k: calls.append(k) or 1.0, progress=False)
    assert calls == [0, 1, 2, 3]
    # same seed, same weights (dropout and other randomness are seeded); Adam works too
    nets = [_net(), _net()]
    for net in nets:
        training.sgd_steps(net, loader, steps=4, lr=0.01, optimizer="adam", seed=3,
                           weight_decay=1e-3, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(*(n.parameters() for n in nets)))


def test_make_optimizer_builds_the_named_optimizer_with_its_settings():
    import torch

    from mcutils.core.checks import ParameterError

    w = [torch.nn.Parameter(torch.zeros(3))]
    sgd = training.make_optimizer(w, "sgd", 0.1, momentum=0.8, weight_decay=1e-3)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["weight_decay"] == 1e-3
    adam = training.make_optimizer(w, "adam", 0.01)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["weight_decay"] == 0.0
    with pytest.raises(ParameterError, match="optimizer"):
        training.make_optimizer(w, "rmsprop", 0.1)


def test_lr_factor_schedules():
    assert training.lr_factor(None, 7, 10) == 1.0
    assert training.lr_factor("cosine", 0, 10) == 1.0
    assert abs(training.lr_factor("cosine", 5, 10) - 0.5) < 1e-12
    assert abs(training.lr_factor("cosine", 10, 10)) < 1e-12
    assert [training.lr_factor("step", k, 8) for k in (3, 4, 5, 6, 8)] == [
        1.0, 0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]
    # the papers' schedule: flat for half the run, linear to 1% at 90%, then 1%
    assert training.lr_factor("paper", 50, 100) == 1.0
    assert abs(training.lr_factor("paper", 70, 100) - (1 - 0.2 / 0.4 * 0.99)) < 1e-12
    assert abs(training.lr_factor("paper", 90, 100) - 0.01) < 1e-12
    assert training.lr_factor("paper", 95, 100) == 0.01
    with pytest.raises(ParameterError):
        training.lr_factor("linear", 1, 10)
    with pytest.raises(ParameterError):
        training.lr_factor("paper", 11, 10)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_torch_schedulers_of_train_follow_lr_factor(schedule):
    # train() runs these two as torch's schedulers (bit-compatible with cached weights):
    # they must give the factors of the one table at every step
    total = 37
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if schedule == "cosine"
             else torch.optim.lr_scheduler.MultiStepLR(opt, [total // 2, 3 * total // 4], 0.1))
    for k in range(total):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.3 * training.lr_factor(schedule, k, total),
                                                          rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()


def test_train_runs_the_paper_schedule():
    x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 2
    loader = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)]

    def run(schedule):
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 2)
        snaps = []
        training.train(net, loader, epochs=2, lr=0.2, optimizer="sgd", schedule=schedule,
                       callback=lambda step, m: snaps.append(m.weight.detach().clone()),
                       progress=False)
        return snaps

    paper, constant = run("paper"), run(None)
    # the first half of the 8 steps is at the full rate, the rest lower
    assert all(torch.equal(a, b) for a, b in zip(paper[:4], constant[:4]))
    assert not torch.allclose(paper[-1], constant[-1])
    with pytest.raises(ParameterError, match="schedule"):
        training.train(torch.nn.Linear(4, 2), loader, epochs=1, lr=0.2, schedule="linear",
                       progress=False)
