"""Device-sensitive library functions on a CUDA GPU (marker ``cuda``; skipped without CUDA).

Each test checks that tensors follow the model's device, that no CPU and GPU tensors are
mixed (a mix raises), that the caller's model keeps its device and mode, and that results
match the CPU within float tolerance. TF32 is switched off here so that the comparison
is at float32 precision (see book/reproducing.md for what TF32 changes in real runs).

``MCUTILS_TEST_DEVICE=cpu`` runs the same checks with the CPU as the "other" device,
which exercises the tests' own logic on a machine without a GPU (the marker still
skips them in a plain ``pytest`` run there).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from mcutils import attacks, curves, data, hessian, inputspace, models, training
from mcutils.core.runtime import seed_everything

pytestmark = pytest.mark.cuda

DEVICE = torch.device(os.environ.get("MCUTILS_TEST_DEVICE", "cuda"))


@pytest.fixture(autouse=True)
def _float32_matmuls():
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _cnn(seed=0, **kw):
    torch.manual_seed(seed)
    return models.build_model("small_cnn", in_channels=1, input_size=28, **kw).eval()


def _bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 10))


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _on(model):
    return copy.deepcopy(model).to(DEVICE)


def _device_of(model):
    return next(model.parameters()).device


def test_loss_profiles_follow_the_model_and_match_cpu():
    net = _cnn()
    a, _ = _batch(6, 1)
    c, y = _batch(6, 2)
    cpu = inputspace.loss_profiles(net, a, c, y, num_points=9)
    gpu_net = _on(net).train()
    for ends in ((a, c), (a.to(DEVICE), c.to(DEVICE))):  # CPU or device inputs
        out = inputspace.loss_profiles(gpu_net, *ends, y, num_points=9)
        assert out.device.type == "cpu" and out.dtype == torch.float32
        torch.testing.assert_close(out, cpu, rtol=1e-4, atol=1e-5)
    assert gpu_net.training and _device_of(gpu_net).type == DEVICE.type


def test_pgd_stays_on_the_device_and_matches_cpu():
    net = _cnn()
    x, y = _batch(32, 3)
    kw = dict(eps=0.1, steps=5, generator=torch.Generator().manual_seed(0))
    cpu = attacks.pgd(net, x, y, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)  # CPU generator: the same start
    gpu_net = _on(net)
    adv = attacks.pgd(gpu_net, x.to(DEVICE), y.to(DEVICE), **kw)
    assert adv.device.type == DEVICE.type
    assert (adv - x.to(DEVICE)).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # signed steps can flip where a gradient entry is ~0: compare almost all entries
    differ = ((adv.cpu() - cpu).abs() > 1e-4).float().mean().item()
    assert differ < 0.01, differ
    rate_cpu = attacks.success_rate(net, cpu, y)
    rate_gpu = attacks.success_rate(gpu_net, adv, y.to(DEVICE))
    assert abs(float(rate_cpu) - float(rate_gpu)) <= 2 / len(y)


def test_top_input_eigenvalue_matches_cpu():
    net = _cnn()
    x, y = _batch(8, 4)
    kw = dict(iters=40, tol=1e-6, generator=torch.Generator().manual_seed(0))
    cpu = hessian.top_input_eigenvalues(net, x, y, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    gpu_net = _on(net)
    gpu = hessian.top_input_eigenvalues(gpu_net, x.to(DEVICE), y.to(DEVICE), **kw)
    torch.testing.assert_close(torch.as_tensor(gpu).cpu(), torch.as_tensor(cpu),
                               rtol=1e-3, atol=1e-5)
    assert _device_of(gpu_net).type == DEVICE.type and not gpu_net.training


def test_curve_evaluation_with_bn_recomputed_on_the_device():
    a, b = _bn_net(0), _bn_net(1)
    x, y = _batch(64, 5)
    loader = data.TensorLoader(torch.utils.data.TensorDataset(x, y), 32)
    cpu = curves.evaluate_curve(curves.linear_path(a, b), 5, loader, bn_loader=loader)
    curve = curves.linear_path(a, b).to(DEVICE)
    gpu = curves.evaluate_curve(curve, 5, loader, bn_loader=loader, device=DEVICE)
    assert _device_of(curve).type == DEVICE.type
    for col in ("loss", "accuracy"):
        torch.testing.assert_close(torch.tensor(gpu[col].to_numpy()),
                                   torch.tensor(cpu[col].to_numpy()), rtol=1e-4, atol=1e-5)


def test_one_training_step_matches_cpu():
    x, y = _batch(32, 6)
    loader = [(x, y)]
    nets = {}
    for dev in ("cpu", DEVICE):
        net = _cnn(seed=1)
        training.train(net, loader, epochs=1, lr=0.05, optimizer="sgd", device=dev,
                       progress=False)
        assert _device_of(net).type == torch.device(dev).type  # trained where asked
        nets[str(dev)] = net
    cpu, gpu = nets["cpu"], nets[str(DEVICE)]
    for (k, p), q in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-4, atol=1e-6, msg=k)
    logits = training.predict(gpu, x)  # CPU input, device model: output on the CPU
    assert logits.device.type == "cpu"
    torch.testing.assert_close(logits, training.predict(cpu, x), rtol=1e-4, atol=1e-5)


def test_training_repeats_bit_for_bit_on_the_device():
    """Deterministic algorithms on, no autocast: two runs give identical weights."""
    x, y = _batch(256, 7)
    ds = torch.utils.data.TensorDataset(x, y)
    runs = []
    for _ in range(2):
        seed_everything(0)
        net = _cnn(seed=2)
        training.train(net, data.TensorLoader(ds, 64, shuffle=True, seed=3), epochs=2,
                       lr=0.01, optimizer="adam", device=DEVICE, augment=False,
                       progress=False)
        runs.append({k: v.cpu() for k, v in net.state_dict().items()})
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_resume_on_the_device_is_bitwise(tmp_path):
    x, y = _batch(192, 8)
    ds = torch.utils.data.TensorDataset(x, y)

    def run(checkpoint=None, stop=None):
        net = _cnn(seed=4)

        def cb(step, model):
            if stop is not None and step == stop:
                raise KeyboardInterrupt

        def noise(model, xb, yb):  # draws from the device's generator
            return xb + 0.01 * torch.randn_like(xb), yb

        training.train(net, data.TensorLoader(ds, 64, shuffle=True, seed=1), epochs=3,
                       lr=0.01, optimizer="sgd", schedule="cosine", device=DEVICE,
                       transform=noise, callback=cb, progress=False, checkpoint=checkpoint)
        return net

    seed_everything(0)
    straight = run()
    seed_everything(0)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "c.pt", stop=5)
    seed_everything(123)
    resumed = run(tmp_path / "c.pt")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_tensor_loader_moves_batches():
    x, y = _batch(10)
    xb, yb = next(iter(data.TensorLoader(torch.utils.data.TensorDataset(x, y), 4,
                                         device=DEVICE)))
    assert xb.device.type == DEVICE.type and yb.device.type == DEVICE.type
