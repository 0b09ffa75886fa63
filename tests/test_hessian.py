"""mcutils.hessian: products and eigenvalues against dense Hessians and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutils import hessian
from mcutils.runtime import ParameterError


def _tanh_mlp(d: int = 12, k: int = 4) -> nn.Module:
    """Smooth activations: the network's own second derivatives matter (full-rank H)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, k)).double()


def _relu_cnn() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 2 * 2, 5)).double()


def _autograd_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: torch.autograd.functional.hessian, one sample at a time."""
    out = []
    for xi, yi in zip(x, y):
        def f(z, yi=yi):
            return F.cross_entropy(model(z.view(1, *xi.shape)), yi.view(1))
        out.append(torch.autograd.functional.hessian(f, xi.flatten()))
    return torch.stack(out)


def _data(shape, n=5, k=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *shape), generator=gen, dtype=torch.float64),
            torch.randint(0, k, (n,), generator=gen))


@pytest.mark.parametrize("make,shape,k", [(_tanh_mlp, (1, 3, 4), 4), (_relu_cnn, (1, 4, 4), 5)])
def test_hvp_matches_dense_autograd_hessian(make, shape, k):
    model = make()
    x, y = _data(shape, k=k)
    dense = _autograd_hessian(model, x, y)
    v = torch.randn(x.shape, dtype=torch.float64)
    hv = hessian.input_hvp(model, x, y, v)
    expected = torch.einsum("nij,nj->ni", dense, v.flatten(1)).view_as(x)
    torch.testing.assert_close(hv, expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(hessian.dense_input_hessians(model, x, y), dense,
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("method", hessian.METHODS)
@pytest.mark.parametrize("make,shape,k", [(_tanh_mlp, (1, 3, 4), 4), (_relu_cnn, (1, 4, 4), 5)])
def test_top_eigenvalue_matches_dense(method, make, shape, k):
    model = make()
    x, y = _data(shape, n=6, k=k)
    eigs = torch.linalg.eigvalsh(_autograd_hessian(model, x, y))
    if method == "lanczos":  # the algebraically largest eigenvalue
        truth = eigs[:, -1]
    else:  # power iteration: the eigenvalue of largest magnitude (tanh: H is indefinite)
        truth = eigs.gather(1, eigs.abs().argmax(1, keepdim=True))[:, 0]
    gen = torch.Generator().manual_seed(0)
    iters = 40 if method == "lanczos" else 2000
    tol = 1e-10 if method == "lanczos" else 1e-13
    top = hessian.top_input_eigenvalues(model, x, y, method=method, iters=iters, tol=tol,
                                        generator=gen)
    assert top.shape == (6,)
    torch.testing.assert_close(top, truth, rtol=1e-6, atol=1e-9)


def test_linear_softmax_closed_form():
    """For logits W x + b the input Hessian is W^T (diag(p) - p p^T) W."""
    torch.manual_seed(3)
    d, k, n = 20, 6, 8
    lin = nn.Linear(d, k).double()
    model = nn.Sequential(nn.Flatten(), lin)
    x, y = _data((d,), n=n, k=k)
    p = torch.softmax(lin(x), 1)
    w = lin.weight.detach()
    closed = torch.einsum("ki,nkl,lj->nij", w, torch.diag_embed(p) - p[:, :, None] * p[:, None], w)
    v = torch.randn(n, d, dtype=torch.float64)
    torch.testing.assert_close(hessian.input_hvp(model, x, y, v),
                               torch.einsum("nij,nj->ni", closed, v), rtol=1e-10, atol=1e-12)
    truth = torch.linalg.eigvalsh(closed)[:, -1]
    top, info = hessian.top_input_eigenvalues(model, x, y, iters=30, tol=1e-8,
                                              generator=torch.Generator().manual_seed(0),
                                              return_info=True)
    torch.testing.assert_close(top, truth, rtol=1e-8, atol=1e-12)
    # rank <= k - 1: Lanczos needs at most k products per sample
    assert int(info["sample_products"].max()) <= k
    assert bool(info["converged"].all())


def test_samples_are_independent_and_batch_variant_is_the_max():
    model = _relu_cnn()
    x, y = _data((1, 4, 4), n=7, k=5)
    all_at_once = hessian.top_input_eigenvalues(model, x, y, tol=1e-10,
                                                generator=torch.Generator().manual_seed(0))
    one_by_one = torch.cat([hessian.top_input_eigenvalues(
        model, x[i:i + 1], y[i:i + 1], tol=1e-10, generator=torch.Generator().manual_seed(i))
        for i in range(len(x))])
    torch.testing.assert_close(all_at_once, one_by_one, rtol=1e-7, atol=1e-10)
    small_batches = hessian.top_input_eigenvalues(model, x, y, tol=1e-10, batch_size=3,
                                                  generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(small_batches, all_at_once, rtol=1e-7, atol=1e-10)
    batch = hessian.batch_top_input_eigenvalue(model, x, y, iters=300, tol=1e-10,
                                               generator=torch.Generator().manual_seed(0))
    assert batch == pytest.approx(float(all_at_once.max()), rel=1e-5)


def test_lanczos_needs_fewer_products_than_power_and_reports_history():
    model = _relu_cnn()
    x, y = _data((1, 4, 4), n=10, k=5, seed=4)
    truth = torch.linalg.eigvalsh(hessian.dense_input_hessians(model, x, y))[:, -1]
    gen = torch.Generator
    lz, li = hessian.top_input_eigenvalues(model, x, y, "lanczos", iters=30, tol=1e-3,
                                           generator=gen().manual_seed(0), return_info=True)
    pw, pi = hessian.top_input_eigenvalues(model, x, y, "power", iters=30, tol=0,
                                           generator=gen().manual_seed(0), return_info=True)
    assert ((lz - truth).abs() / truth <= 1e-3).all()
    assert li["products"] <= 5 < pi["products"] == 30
    assert pi["history"].shape == (30, 10) and li["history"].shape[1] == 10
    # Ritz values increase towards the top eigenvalue and never exceed it
    assert (li["history"] <= truth + 1e-9).all()
    assert (li["history"].diff(dim=0) >= -1e-9).all()


def test_eval_mode_and_float32_and_no_param_grads():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4 * 4 * 4, 3))
    model.train()
    x = torch.rand(4, 1, 6, 6)
    y = torch.tensor([0, 1, 2, 0])
    top = hessian.top_input_eigenvalues(model, x, y, generator=torch.Generator().manual_seed(0))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.isfinite(top).all() and (top >= 0).all()
    # eval-mode BatchNorm: a sample's value does not depend on its batch mates
    alone = hessian.top_input_eigenvalues(model, x[:1], y[:1], tol=1e-6,
                                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(alone[0], top[0], rtol=2e-3, atol=1e-6)


def test_input_gradients_and_taylor_model():
    torch.manual_seed(5)
    d, k = 10, 3
    model = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k)).double()
    x, y = _data((d,), n=4, k=k)
    loss, g = hessian.input_gradients(model, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y, reduction="none").detach())
    for norm in ("linf", "l2"):
        for eps in (1e-2, 5e-3):
            t = hessian.taylor_robust_loss(model, x, y, eps, norm=norm)
            step = eps * (g.sign() if norm == "linf" else g / g.norm(dim=1, keepdim=True))
            exact = F.cross_entropy(model(x + step), y, reduction="none").detach()
            # second-order model: error O(eps^3), much smaller than the quadratic term's size
            err = (t["taylor"] - exact).abs().max()
            assert err < 1e-2 * t["second_order"].abs().max() + 1e-12
    lam = hessian.top_input_eigenvalues(model, x, y, tol=1e-10)
    t = hessian.taylor_robust_loss(model, x, y, 0.01, norm="linf", top_eigs=lam)
    assert (t["second_order"] <= t["eig_term"] + 1e-12).all()
    assert (t["bound"] >= t["taylor"] - 1e-12).all()


def test_bad_arguments_raise_parameter_error():
    model = _tanh_mlp()
    x, y = _data((1, 3, 4))
    with pytest.raises(ParameterError, match="method"):
        hessian.top_input_eigenvalues(model, x, y, method="arnoldi")
    with pytest.raises(ParameterError, match="iters"):
        hessian.top_input_eigenvalues(model, x, y, iters=0)
    with pytest.raises(ParameterError, match="shape"):
        hessian.top_input_eigenvalues(model, x, y[:2])
    with pytest.raises(ParameterError, match="v has shape"):
        hessian.input_hvp(model, x, y, torch.zeros(2, 3))
    with pytest.raises(ParameterError, match="norm"):
        hessian.taylor_robust_loss(model, x, y, 0.1, norm="l3")


def test_robustness_and_curvature_on_linear_softmax():
    torch.manual_seed(6)
    d, k = 16, 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    x = torch.rand(40, 1, 4, 4)
    y = torch.randint(0, k, (40,))
    out = hessian.robustness_and_curvature(model, x, y, eps=0.05, pgd_steps=5, eig_samples=10,
                                           extra_eps=[0.02, 0.1])
    assert out["robust_loss@0.02"] <= out["robust_loss"] <= out["robust_loss@0.1"]
    assert set(out) >= {"loss", "accuracy", "robust_loss", "robust_accuracy", "top_eig",
                        "first_order", "second_order", "taylor", "bound"}
    assert out["robust_loss"] >= out["loss"] and out["robust_accuracy"] <= out["accuracy"]
    p = torch.softmax(model(x[:10]), 1).detach()
    w = model[1].weight.detach()
    closed = torch.einsum("ki,nkl,lj->nij", w, torch.diag_embed(p) - p[:, :, None] * p[:, None], w)
    assert out["top_eig"] == pytest.approx(torch.linalg.eigvalsh(closed)[:, -1].mean().item(),
                                           rel=1e-3)
    again = hessian.robustness_and_curvature(model, x, y, eps=0.05, pgd_steps=5, eig_samples=10,
                                             extra_eps=[0.02, 0.1])
    assert again == out  # seeded: repeatable
