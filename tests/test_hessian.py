"""mcutils.hessian: products and eigenvalues against dense Hessians and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutils import hessian
from mcutils.core.checks import ParameterError


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
        def f(z, yi=yi, shape=xi.shape):
            return F.cross_entropy(model(z.view(1, *shape)), yi.view(1))
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


@pytest.mark.parametrize("method", ["lanczos", "power"])
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
    _pw, pi = hessian.top_input_eigenvalues(model, x, y, "power", iters=30, tol=0,
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


def test_input_gradients_match_autograd():
    torch.manual_seed(5)
    d, k = 10, 3
    model = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k)).double()
    x, y = _data((d,), n=4, k=k)
    loss, g = hessian.input_gradients(model, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y, reduction="none").detach())
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    torch.testing.assert_close(g, ref)


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
        hessian.robust_loss_bound(model, x, y, 0.1, norm="l3")
    with pytest.raises(ParameterError, match="eps"):
        hessian.robust_loss_bound(model, x, y, -0.1)
    with pytest.raises(ParameterError, match="batch_size"):
        hessian.paper_input_eigenvalue(model, x, y, batch_size=len(x) + 1)
    with pytest.raises(ParameterError, match="batch_size"):
        hessian.closed_form_curvature(model, x, y, batch_size=0)




def test_closed_form_is_exact_for_piecewise_linear_networks():
    """ReLU + max-pool: J^T (diag p - p p^T) J is the whole Hessian; its top eigenpair,
    the loss and the gradient norms come out of K backward passes."""
    model = _relu_cnn()
    x, y = _data((1, 4, 4), n=7, k=5, seed=3)
    dense = hessian.dense_input_hessians(model, x, y)
    truth = torch.linalg.eigvalsh(dense)[:, -1]
    out = hessian.closed_form_curvature(model, x, y, batch_size=3, return_vectors=True)
    torch.testing.assert_close(out["top_eig"], truth, rtol=1e-8, atol=1e-12)
    # the returned vector is a unit eigenvector: H v = lambda v
    hv = hessian.input_hvp(model, x, y, out["top_vec"])
    torch.testing.assert_close(hv, out["top_eig"].view(-1, 1, 1, 1) * out["top_vec"],
                               rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(out["top_vec"].flatten(1).norm(dim=1),
                               torch.ones(7, dtype=torch.float64))
    loss, g = hessian.input_gradients(model, x, y)
    torch.testing.assert_close(out["loss"], loss)
    torch.testing.assert_close(out["grad_l2"], g.flatten(1).norm(dim=1).float())
    torch.testing.assert_close(out["grad_l1"], g.flatten(1).abs().sum(1).float())
    via_method = hessian.top_input_eigenvalues(model, x, y, method="closed_form")
    torch.testing.assert_close(via_method, truth, rtol=1e-8, atol=1e-12)


def test_closed_form_misses_curvature_of_smooth_networks():
    """With tanh the network's own second derivatives matter: the closed form is only the
    Gauss-Newton part and differs from the true top eigenvalue."""
    model = _tanh_mlp()
    x, y = _data((1, 3, 4), n=6, k=4)
    truth = torch.linalg.eigvalsh(_autograd_hessian(model, x, y))[:, -1]
    gauss_newton = hessian.closed_form_curvature(model, x, y)["top_eig"]
    assert ((gauss_newton - truth).abs() / truth.abs()).max() > 1e-3


def test_paper_quantity_is_scaled_max_over_batch_positions():
    """The paper's power iteration (one batch-shaped vector, mean loss, summed over
    batches) converges to (1/B) max_i lambda_max(mean_b H(x_{b,i})), and skips a last
    incomplete batch."""
    model = _relu_cnn()
    b, nb = 3, 2
    x, y = _data((1, 4, 4), n=b * nb + 2, k=5, seed=7)
    dense = hessian.dense_input_hessians(model, x[:b * nb], y[:b * nb]).view(nb, b, 16, 16)
    averaged = dense.mean(0)  # [B, d, d]: per batch position, averaged over batches
    truth = float(torch.linalg.eigvalsh(averaged)[:, -1].max()) / b
    est, info = hessian.paper_input_eigenvalue(model, x, y, batch_size=b, iters=3000, tol=0,
                                               generator=torch.Generator().manual_seed(0),
                                               return_info=True)
    assert info["batches"] == nb and info["iterations"] == 3000
    # within the bias of the paper's normalisation v / (||v|| + 1e-6): (s / (s + 1e-6))^2
    assert est == pytest.approx(truth, rel=1e-3) and est <= truth
    # not the mean per-image eigenvalue that the book reports
    per_image = hessian.top_input_eigenvalues(model, x[:b * nb], y[:b * nb], tol=0, iters=20)
    assert abs(est - float(per_image.mean())) > 1e-3 * float(per_image.mean())
    # the paper's absolute tolerance 1e-2 stops after two iterations on small values
    small, sinfo = hessian.paper_input_eigenvalue(model, x, y, batch_size=b,
                                                  generator=torch.Generator().manual_seed(0),
                                                  return_info=True)
    assert truth < 1e-2 and sinfo["iterations"] == 2 and sinfo["converged"]
    assert small == sinfo["history"][-1]


def test_second_order_bound_formula_and_tightness_at_small_radius():
    model = _tanh_mlp()
    x, y = _data((1, 3, 4), n=6, k=4)
    eigs = torch.linalg.eigvalsh(_autograd_hessian(model, x, y))[:, -1]
    loss, g = hessian.input_gradients(model, x, y)
    for norm, dual, r2 in (("l2", g.flatten(1).norm(dim=1), 1.0),
                           ("linf", g.flatten(1).abs().sum(1), 12.0)):
        out = hessian.robust_loss_bound(model, x, y, 1e-3, norm=norm, pgd_steps=20,
                                        eig_method="lanczos")
        expected = loss + 1e-3 * dual + 0.5 * 1e-6 * r2 * eigs
        torch.testing.assert_close(out["bound"], expected, rtol=1e-6, atol=1e-12)
        # tiny radius: the quadratic model is accurate and PGD stays below the bound,
        # while it does reach most of the first-order gain
        assert (out["robust_loss"] <= out["bound"] + 1e-12).all()
        assert (out["robust_loss"] - out["loss"] >= 0.5 * out["first_order"]).all()


def test_second_order_bound_fails_on_saturated_relu_network():
    """Negative control: a confident ReLU classifier has almost no gradient and curvature
    at its inputs, yet a large attack flips it; the PGD loss then exceeds the bound."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    x = torch.rand(40, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)  # confidently right by construction
    out = hessian.robust_loss_bound(model, x, y, eps=2.0, norm="l2", pgd_steps=20)
    assert (out["robust_loss"] > out["bound"]).float().mean() > 0.5
