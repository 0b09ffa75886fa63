import pytest
import torch

from mcutils.core import runtime
from mcutils.core.checks import ParameterError


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


@pytest.mark.parametrize("purpose", ["inference", "train"])
def test_a_cold_calibration_leaves_the_random_stream_alone(purpose):
    """A plan measured for the first time (random inputs, training steps) must not move
    the global random stream: otherwise a run with an empty plan file and one with a
    stored plan would draw different numbers after it (weight init, dropout)."""
    net = models.build_model("small_cnn", input_size=8)
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    expected = torch.rand(5)
    torch.manual_seed(0)
    plan = runtime.prepare(net, x, calibrate=True, purpose=purpose)
    assert plan.source == "calibrated"
    assert torch.equal(torch.rand(5), expected)


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
    strides = {k: v.stride() for k, v in net.state_dict().items()}
    training.predict(net, torch.rand(5, 1, 28, 28), batch_size=2)
    assert net.training
    for k, v in net.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k]), k
        # the exact strides: a one-input-channel kernel is "contiguous" in both layouts,
        # but its strides pick the kernel PyTorch runs, so a leak would change later speed
        # and rounding of the caller's own code
        assert v.stride() == strides[k], k


def test_prepared_restores_exact_strides_of_any_layout():
    net = models.build_model("small_cnn")
    conv = net[1].features[3]
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    strides = [t.stride() for t in list(net.parameters()) + list(net.buffers())]
    plan = runtime.Plan(device=torch.device("cpu"), channels_last=True, batch_size=4)
    with runtime.prepared(net, plan):
        first = net[1].features[0].weight
        assert first.stride()[1] == 1  # the one-channel kernel ran with NHWC strides
    with runtime.prepared(net, runtime.Plan(device=torch.device("cpu"), channels_last=False,
                                            batch_size=4)):
        pass
    assert [t.stride() for t in list(net.parameters()) + list(net.buffers())] == strides


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


# ------------------------------------------------- the plan in the library's batched evaluations
import torch.nn.functional as F  # noqa: E402

from mcutils import detection, inputspace, percolation  # noqa: E402


def _snapshot(net):
    """Mode, and per tensor: device, layout (channels_last or not) and values."""
    tensors = dict(net.named_parameters()) | dict(net.named_buffers())
    return net.training, {k: (t.device, t.is_contiguous(), t.detach().clone())
                          for k, t in tensors.items()}


def _assert_unchanged(net, snap):
    mode, tensors = snap
    assert net.training == mode, "train/eval mode changed"
    now = dict(net.named_parameters()) | dict(net.named_buffers())
    for k, (dev, contiguous, value) in tensors.items():
        t = now[k]
        assert t.device == dev, f"{k} moved to {t.device}"
        assert t.is_contiguous() == contiguous, f"{k} left in another memory format"
        assert not t.is_inference(), f"{k} became an inference tensor"
        assert torch.equal(t.detach(), value), f"{k} changed its values"


def _plain_profiles(net, a, c, y, points):
    """The reference: the model as given (default layout), eval mode, one pair at a time."""
    net.eval()
    with torch.no_grad():
        out = []
        for i in range(len(a)):
            path = torch.stack([torch.lerp(a[i], c[i], float(t))
                                for t in torch.linspace(0, 1, points)])
            out.append(F.cross_entropy(net(path), y[i].repeat(points), reduction="none"))
    return torch.stack(out)


def _strictly_channels_last(t):
    return t.dim() == 4 and not t.is_contiguous() and \
        t.is_contiguous(memory_format=torch.channels_last)


class _Spy:
    """Records the batch size of every input the model sees, and whether it ran in
    channels_last (its conv weights with more than one input channel, and 4-D inputs with
    more than one channel, strictly in that layout; one channel is ambiguous)."""

    def __init__(self, net):
        self.sizes, self.channels_last = [], []
        self.weights = [p for p in net.parameters()        # 1x1 kernels are ambiguous too
                        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
        net.register_forward_pre_hook(self)

    def __call__(self, _module, args):
        x = args[0]
        self.sizes.append(len(x))
        checks = [_strictly_channels_last(w) for w in self.weights]
        if x.dim() == 4 and x.shape[1] > 1:
            checks.append(_strictly_channels_last(x))
        self.channels_last.append(bool(checks) and all(checks))


@pytest.mark.parametrize("name", list(models.MODELS))
def test_loss_profiles_under_the_plan_equal_the_plain_path(name, monkeypatch):
    """For each registered model: profiles under the (fixed) plan equal the plain
    per-pair path and the explicit batch 64 / default layout within 1e-5; the plan's
    batch size and layout are really used, explicit ones win, and the caller's model
    (train mode, contiguous weights) is unchanged."""
    monkeypatch.setattr(runtime, "FIXED_BATCH_SIZE", 4)  # several chunks per call
    x = _input_for(name)
    torch.manual_seed(0)
    net = models.build_model(name, in_channels=x.shape[1])
    a, c = torch.rand(2, *x.shape[1:]), torch.rand(2, *x.shape[1:])
    y = torch.tensor([1, 3])
    ref = _plain_profiles(net, a, c, y, 5)
    with torch.no_grad():
        plain_logits = net(x).sort(dim=1, descending=True).values   # eval mode
    net.train()
    snap = _snapshot(net)
    spy = _Spy(net)
    fast = inputspace.loss_profiles(net, a, c, y, num_points=5)
    _assert_unchanged(net, snap)
    conv = name != "mlp"
    assert max(spy.sizes) == 4 and all(cl == conv for cl in spy.channels_last)
    spy.sizes.clear(), spy.channels_last.clear()
    paper = inputspace.loss_profiles(net, a, c, y, num_points=5, batch_size=64,
                                     channels_last=False)
    _assert_unchanged(net, snap)
    assert spy.sizes == [10] and not any(spy.channels_last)     # explicit choices win
    assert torch.allclose(fast, ref, atol=1e-5), (fast - ref).abs().max()
    assert torch.allclose(fast, paper, atol=1e-5), (fast - paper).abs().max()
    # other entry points of the plan, same model
    spy.sizes.clear()
    feats = detection.logit_features(net, x)
    _assert_unchanged(net, snap)
    assert torch.allclose(feats.sorted_logits, plain_logits, atol=1e-5)
    assert max(spy.sizes) == 4


def test_plan_checks_detect_a_model_left_changed(monkeypatch):
    """Negative controls: the checks above fail for a model left in channels_last, left
    in eval mode, or by a plan that does not restore the layout."""
    net = models.build_model("small_cnn").train()
    snap = _snapshot(net)
    net.to(memory_format=torch.channels_last)
    with pytest.raises(AssertionError, match="memory format"):
        _assert_unchanged(net, snap)
    net = models.build_model("small_cnn").train()
    snap = _snapshot(net)
    net.eval()
    with pytest.raises(AssertionError, match="mode"):
        _assert_unchanged(net, snap)

    import contextlib

    import mcutils.core.runtime as util

    @contextlib.contextmanager
    def leaky(model, plan):          # a "prepared" that forgets to restore
        model.to(memory_format=torch.channels_last)
        yield model

    monkeypatch.setattr(util, "prepared", leaky)
    net = models.build_model("small_cnn").train()
    snap = _snapshot(net)
    a = torch.rand(2, 1, 28, 28)
    inputspace.loss_profiles(net, a, a.flip(0), torch.tensor([0, 1]), num_points=3)
    with pytest.raises(AssertionError, match="memory format"):
        _assert_unchanged(net, snap)


def test_tolerance_check_can_fail():
    """The 1e-5 comparison is sensitive: the reference in train mode (BatchNorm batch
    statistics) differs from the planned eval-mode profiles by far more than 1e-5."""
    net = models.build_model("preresnet20", in_channels=3)
    a, c = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    y = torch.tensor([1, 3])
    fast = inputspace.loss_profiles(net, a, c, y, num_points=5)
    net.train()
    with torch.no_grad():
        path = inputspace.linear_path(a, c, 5).reshape(-1, 3, 32, 32)
        wrong = F.cross_entropy(net(path), y.repeat_interleave(5), reduction="none").view(2, 5)
    assert not torch.allclose(fast, wrong, atol=1e-5)


def test_plan_inside_inference_mode_leaves_trainable_weights():
    """Called inside torch.inference_mode, the plan's layout copies must not turn the
    weights into inference tensors (training afterwards would fail)."""
    net = models.build_model("small_cnn")
    x = torch.rand(4, 1, 28, 28)
    snap = _snapshot(net)
    with torch.inference_mode():
        inputspace.class_reference_loss(net, x, torch.tensor([0, 1, 2, 3]))
        training.predict(net, x)
    _assert_unchanged(net, snap)
    F.cross_entropy(net(x), torch.tensor([0, 1, 2, 3])).backward()   # trains
    assert all(p.grad is not None for p in net.parameters())


def test_explicit_batch_size_wins_everywhere(monkeypatch):
    """segment_losses, find_barrier, class_reference_loss, the detection features and
    the percolation grids use the plan's batch size unless one is given."""
    monkeypatch.setattr(runtime, "FIXED_BATCH_SIZE", 5)
    net = models.build_model("small_cnn")
    spy = _Spy(net)
    a, c = torch.rand(7, 1, 28, 28), torch.rand(7, 1, 28, 28)
    y = torch.arange(7)
    calls = [
        lambda bs: inputspace.find_barrier(net, a, c, y, coarse_points=4, max_rounds=1,
                                           batch_size=bs),
        lambda bs: inputspace.class_reference_loss(net, a, y, batch_size=bs),
        lambda bs: detection.penultimate_features(net, a, batch_size=bs),
        lambda bs: percolation.grid_losses(net, percolation.random_grid(a[0], 2, n=3), 0,
                                           batch_size=bs),
    ]
    for call in calls:
        spy.sizes.clear()
        call(None)
        assert max(spy.sizes) == 5, spy.sizes
        spy.sizes.clear()
        call(2)
        assert max(spy.sizes) == 2, spy.sizes
    with pytest.raises(ParameterError, match="batch_size"):
        inputspace.loss_profiles(net, a, c, y, batch_size=0)


@pytest.mark.parametrize("loop", ["synthesize", "bypass", "optimization_attack"])
def test_input_optimising_loops_run_in_the_plan_and_restore_the_caller(loop, monkeypatch):
    """bypass, synthesis and the optimisation attack run under the plan's memory format
    (FrozenEval with an example); the layouts agree to rounding, and the caller's model
    gets its mode, requires_grad and exact strides back."""
    from mcutils import attacks, inputspace
    from mcutils.core import runtime as _util

    torch.manual_seed(0)
    net = models.build_model("small_cnn", width=4, hidden=16).train()
    strides = [p.stride() for p in net.parameters()]
    a, c = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    y = torch.tensor([0, 1, 2])
    runs = {
        "synthesize": lambda: inputspace.synthesize(
            net, y, (1, 28, 28), steps=5, generator=torch.Generator().manual_seed(0),
            progress=False)[0],
        "bypass": lambda: inputspace.bypass_barrier(net, a, c, (a + c) / 2, y, steps=5,
                                                    progress=False)[0],
        "optimization_attack": lambda: attacks.optimization_attack(
            net, a, torch.tensor([3, 4, 5]), steps=5)[0],
    }
    seen = []
    real_conv = torch.nn.Conv2d._conv_forward

    def spy(self, x, weight, bias):
        seen.append(weight.stride()[1] == 1)
        return real_conv(self, x, weight, bias)

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    planned = runs[loop]()
    assert seen and all(seen)  # every convolution ran with NHWC kernels
    real_prepare = _util.prepare
    monkeypatch.setattr(_util, "prepare",
                        lambda *a, **k: real_prepare(*a, **{**k, "channels_last": False}))
    seen.clear()
    default = runs[loop]()
    assert seen and not any(seen)
    assert torch.allclose(planned, default, atol=1e-4)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert [p.stride() for p in net.parameters()] == strides
