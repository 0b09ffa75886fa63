"""Curvature of the loss with respect to the INPUT: Hessian-vector products and top eigenvalues.

Used by chapter 06 (and ``benchmarks/hessian.py``).

For a classifier :math:`f` and a labelled input :math:`(x, y)` the input Hessian is
:math:`H(x) = \\nabla_x^2 \\, \\ell(f(x), y)` with :math:`\\ell` the cross-entropy. It is a
``d x d`` matrix per sample (``d`` = number of pixels), never formed here: everything
goes through Hessian-vector products computed by double back-propagation, or through
the closed form below.

Per-sample definition (used by the book). With the model in eval mode (BatchNorm
running statistics, no dropout) the summed loss :math:`\\sum_i \\ell(f(x_i), y_i)`
has a block-diagonal Hessian with respect to the stacked batch, one block
:math:`H(x_i)` per sample. One batched product with a stacked vector
``v = [v_1, ..., v_N]`` therefore returns ``[H(x_1) v_1, ..., H(x_N) v_N]``, and
:func:`top_input_eigenvalues` runs N independent eigen-solvers side by side, one
Krylov space per sample (vectors are normalised and orthogonalised per sample, never
across the batch).

Closed form (:func:`closed_form_curvature`, ``method="closed_form"``). For ReLU /
max-pool networks (BatchNorm in eval mode and the input normalisation are affine) the
network's own second derivative vanishes almost everywhere, so
:math:`H(x) = J^\\top (\\operatorname{diag}(p) - p p^\\top) J` with ``J`` the ``K x d``
Jacobian of the logits and ``p`` the softmax: positive semi-definite with rank at most
``K - 1``. Its non-zero eigenvalues are those of the ``K x K`` matrix
:math:`A^{1/2} J J^\\top A^{1/2}`, ``A = diag(p) - p p^T``: ``K`` backward passes and a
small eigenproblem per sample, exact (to float precision) for such networks and the
Gauss-Newton part of the Hessian for any other.

The paper's quantity (:func:`paper_input_eigenvalue`). The public code of Zhao et al.
(``Hessian/hessianflow/eigen.py``, ``get_eigen_full_dataset_only_inputs``, called with
``maxIter=10, tol=1e-2`` on the CIFAR-10 test loader with batches of 200) runs power
iteration with ONE vector shaped like a whole batch, on the Hessian of the batch's
MEAN loss with respect to the batch's inputs, summed over the batches of the loader, and
stops when the estimate changes by less than ``tol`` in absolute value. That operator is
block diagonal over batch positions with blocks
:math:`\\frac1B \\cdot \\frac1{n_b}\\sum_b H(x_{b,i})`, so the number it converges to is
:math:`\\frac1B \\max_i \\lambda_{\\max}\\big(\\tfrac1{n_b}\\sum_b H(x_{b,i})\\big)`: a
``1/B``-scaled statistic of the most curved *batch position*, not a per-image
eigenvalue. :func:`batch_top_input_eigenvalue` is the single-batch, summed-loss variant
(:math:`\\max_i \\lambda_{\\max}(H(x_i))`).

The second-order bound (:func:`robust_loss_bound`). Zhao et al. justify the link between
robustness loss and curvature with the second-order expansion
:math:`\\ell(x+\\delta) \\approx \\ell(x) + g^\\top\\delta + \\tfrac12 \\delta^\\top H \\delta`;
maximised over a ball of radius :math:`\\epsilon` it gives
:math:`\\max_{\\|\\delta\\|_2\\le\\epsilon} \\ell(x+\\delta) \\le \\ell(x) + \\epsilon\\|g\\|_2 +
\\tfrac{\\epsilon^2}{2}\\lambda_{\\max}(H)` (and, since the L-inf ball of radius
:math:`\\epsilon` lies in the L2 ball of radius :math:`\\epsilon\\sqrt d`, the L-inf form
:math:`\\ell + \\epsilon\\|g\\|_1 + \\tfrac{\\epsilon^2 d}{2}\\lambda_{\\max}`). The bound is exact
only for the quadratic model; :func:`robust_loss_bound` compares it with the loss that a
PGD attack actually reaches, so a PGD loss above the bound is a true counterexample.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError

__all__ = [
    "METHODS",
    "InputHessian",
    "batch_top_input_eigenvalue",
    "closed_form_curvature",
    "dense_input_hessians",
    "input_gradients",
    "input_hvp",
    "paper_input_eigenvalue",
    "robust_loss_bound",
    "top_input_eigenvalues",
]

METHODS = ("lanczos", "power", "closed_form")


@contextlib.contextmanager
def _quiet_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no torch deprecation/determinism chatter; restores the modes after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*deterministic.*")
            warnings.filterwarnings("ignore", message=".*does not have a deterministic.*")
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ParameterError("x and y must be tensors")
    if x.dim() < 2 or y.dim() != 1 or len(x) != len(y):
        raise ParameterError(
            f"need x of shape [N, ...] and labels y of shape [N]; got {tuple(x.shape)} and "
            f"{tuple(y.shape)}")
    if not x.is_floating_point():
        raise ParameterError(f"x must be floating point, got {x.dtype}")


class InputHessian:
    """Per-sample input-Hessian operator of the cross-entropy for one batch.

    The forward pass and the first backward pass (with ``create_graph``) are done
    once in the constructor; each call is then one double-backward pass through the
    retained graph, so an iterative eigen-solver pays for the network only once per
    product. The model is put in eval mode for the lifetime of the object's use
    inside :func:`top_input_eigenvalues`; used directly, put it in eval mode yourself.

    Args:
        model: a classifier taking ``x`` and returning logits.
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.

    Attributes:
        loss: per-sample cross-entropy ``[N]`` (detached).
        grad: per-sample input gradient, shape of ``x`` (detached).
        products: number of batched products computed so far.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        _check_xy(x, y)
        self.shape = x.shape
        self._x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            losses = F.cross_entropy(model(self._x), y.to(x.device), reduction="none")
            (self._g,) = torch.autograd.grad(losses.sum(), self._x, create_graph=True)
        self.loss = losses.detach()
        self.grad = self._g.detach()
        self._linear = not self._g.requires_grad  # no curvature path at all (H = 0)
        self.products = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``[H(x_1) v_1, ..., H(x_N) v_N]`` for ``v`` shaped like ``x``."""
        if v.shape != self.shape:
            raise ParameterError(f"v has shape {tuple(v.shape)}, expected {tuple(self.shape)}")
        self.products += 1
        if self._linear:
            return torch.zeros_like(v)
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(self._g, self._x, grad_outputs=v.to(self._g.dtype),
                                        retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if hv is None else hv.detach()


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy and its gradient with respect to the input.

    Args:
        model: classifier returning logits (used in eval mode).
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.

    Returns:
        ``(loss [N], grad)`` with ``grad`` shaped like ``x``.
    """
    _check_xy(x, y)
    with _quiet_eval(model), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        losses = F.cross_entropy(model(xr), y.to(x.device), reduction="none")
        (g,) = torch.autograd.grad(losses.sum(), xr)
    return losses.detach(), g.detach()


def input_hvp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor
              ) -> torch.Tensor:
    """Per-sample Hessian-vector products of the cross-entropy with respect to the input.

    Args:
        model: classifier returning logits (used in eval mode, so samples do not interact).
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        v: vectors shaped like ``x``; row ``i`` multiplies sample ``i``'s Hessian.

    Returns:
        ``H(x_i) v_i`` for every sample, shaped like ``x``.
    """
    with _quiet_eval(model):
        return InputHessian(model, x, y)(v)


def _validate_solver(method: str, iters: int, tol: float) -> None:
    if method not in METHODS:
        raise ParameterError(f"method={method!r} is not known; valid values: {METHODS}")
    if not isinstance(iters, int) or iters < 1:
        raise ParameterError(f"iters={iters!r} must be a positive integer")
    if not (tol >= 0):
        raise ParameterError(f"tol={tol!r} must be >= 0")


def _start_vectors(shape: torch.Size, dtype: torch.dtype, device: torch.device,
                   generator: torch.Generator | None) -> torch.Tensor:
    v = torch.randn(shape, generator=generator, dtype=dtype)  # CPU generator: same on any device
    return v.to(device)


def _lanczos(op: InputHessian, v0: torch.Tensor, iters: int, tol: float
             ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Batched Lanczos with full re-orthogonalisation, one Krylov space per sample."""
    n = v0.shape[0]
    dim = v0[0].numel()
    steps = min(iters, dim)
    q = v0.flatten(1)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-30)
    basis = torch.zeros(n, steps, dim, dtype=q.dtype, device=q.device)
    alphas = torch.zeros(n, steps, dtype=torch.float64, device=q.device)
    betas = torch.zeros(n, steps, dtype=torch.float64, device=q.device)
    result = torch.zeros(n, dtype=torch.float64, device=q.device)
    done = torch.zeros(n, dtype=torch.bool, device=q.device)
    done_at = torch.full((n,), steps, dtype=torch.long, device=q.device)
    converged = torch.zeros(n, dtype=torch.bool, device=q.device)
    history = []
    scale = torch.zeros(n, dtype=torch.float64, device=q.device)
    for j in range(steps):
        basis[:, j] = q
        w = op(q.view(op.shape)).flatten(1)
        alpha = (w * q).sum(1)
        w = w - alpha[:, None] * q
        if j > 0:
            w = w - betas[:, j - 1, None].to(w.dtype) * basis[:, j - 1]
        for _ in range(2):  # full re-orthogonalisation, twice is enough
            coef = torch.einsum("nkd,nd->nk", basis[:, :j + 1], w)
            w = w - torch.einsum("nkd,nk->nd", basis[:, :j + 1], coef)
        beta = w.norm(dim=1)
        alphas[:, j] = alpha.double()
        betas[:, j] = beta.double()
        # Ritz values of the (j+1)x(j+1) tridiagonal matrix, batched over samples
        k = j + 1
        tri = torch.diag_embed(alphas[:, :k])
        if k > 1:
            off = betas[:, :k - 1]
            tri = tri + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, s = torch.linalg.eigh(tri)
        top = theta[:, -1]
        scale = torch.maximum(scale, theta.abs().amax(1))
        residual = (betas[:, j] * s[:, -1, -1]).abs()
        breakdown = betas[:, j] <= 1e-6 * scale.clamp_min(1e-30)  # Krylov space exhausted
        crit = (residual <= tol * top.abs()) | breakdown
        new = ~done & (crit | (j == steps - 1))
        result = torch.where(new, top, result)
        done_at = torch.where(new, torch.full_like(done_at, k), done_at)
        converged = converged | (new & crit)
        done = done | new
        history.append(torch.where(done, result, top).clone())
        if bool(done.all()):
            break
        q = w / beta.clamp_min(1e-30)[:, None]
        q = torch.where(breakdown[:, None], torch.zeros_like(q), q)
    info = {"products": op.products, "sample_products": done_at.cpu(),
                "history": torch.stack(history).cpu(), "converged": converged.cpu()}
    return result, info


def _power(op: InputHessian, v0: torch.Tensor, iters: int, tol: float
           ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Batched power iteration, one vector per sample; Rayleigh quotient estimates."""
    n = v0.shape[0]
    v = v0.flatten(1)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    prev = torch.full((n,), float("nan"), dtype=torch.float64, device=v.device)
    result = torch.zeros(n, dtype=torch.float64, device=v.device)
    done = torch.zeros(n, dtype=torch.bool, device=v.device)
    done_at = torch.full((n,), iters, dtype=torch.long, device=v.device)
    converged = torch.zeros(n, dtype=torch.bool, device=v.device)
    history = []
    for j in range(iters):
        w = op(v.view(op.shape)).flatten(1)
        lam = (w * v).sum(1).double()
        change = (lam - prev).abs()
        crit = change <= tol * lam.abs()
        new = ~done & (crit | (j == iters - 1))
        result = torch.where(new, lam, result)
        done_at = torch.where(new, torch.full_like(done_at, j + 1), done_at)
        converged = converged | (new & crit)
        done = done | new
        history.append(torch.where(done, result, lam).clone())
        if bool(done.all()):
            break
        norm = w.norm(dim=1, keepdim=True)
        zero = norm[:, 0] <= 1e-30
        v = torch.where(zero[:, None], v, w / norm.clamp_min(1e-30))
        prev = lam
    info = {"products": op.products, "sample_products": done_at.cpu(),
                "history": torch.stack(history).cpu(), "converged": converged.cpu()}
    return result, info


def top_input_eigenvalues(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          method: str = "lanczos", iters: int = 30, tol: float = 1e-3,
                          batch_size: int = 256, generator: torch.Generator | None = None,
                          return_info: bool = False):
    """The largest eigenvalue of each sample's input Hessian of the cross-entropy.

    Samples are independent: every sample has its own start vector and its own
    Krylov space (Lanczos) or iterate (power iteration); a batched Hessian-vector
    product serves all of them at once. The chapter's statistic is the mean of the
    returned values; see the module docstring for the batch-level variant.

    Args:
        model: classifier returning logits (used in eval mode; modes are restored).
        x: inputs ``[N, ...]`` (pixel space).
        y: labels ``[N]``.
        method: ``"lanczos"`` (batched Lanczos with full re-orthogonalisation; the
            algebraically largest Ritz value) or ``"power"`` (power iteration; the
            eigenvalue of largest magnitude, equal to the largest one for the positive
            semi-definite Hessians of ReLU networks) or ``"closed_form"``
            (:func:`closed_form_curvature`: exact for piecewise-linear networks, the
            Gauss-Newton part otherwise; ``iters``, ``tol`` and ``generator`` unused).
        iters: maximum number of products per sample.
        tol: relative tolerance. Lanczos stops a sample when its residual bound
            ``|beta_k s_k|`` is below ``tol * |theta|`` (the Ritz value is then within
            that distance of *an* eigenvalue) or when its Krylov space is exhausted.
            The residual rule can stop on the second eigenvalue when the random start
            is nearly orthogonal to the top eigenvector (seen on 1 of 200 Fashion-MNIST
            inputs, 9% low); ``tol=0`` runs to Krylov exhaustion (at most ``K``
            products for ReLU networks with ``K`` classes) and avoids that;
            power iteration stops when the Rayleigh quotient changes by less than
            ``tol`` relative between two products (a heuristic: it can stop early when
            the gap is small). ``tol=0`` runs all ``iters`` products.
        batch_size: samples per batched product (memory bound).
        generator: CPU generator of the random start vectors (seeded runs repeat).
        return_info: also return a dict with ``products`` (batched products over all
            batches), ``sample_products`` (``[N]``, products until each sample
            stopped), ``converged`` (``[N]`` bool) and ``history`` (``[iters, N]``,
            each sample's estimate after every product, padded after it stopped).

    Returns:
        ``Tensor[N]`` (float64, on the CPU) and the info dict if asked.
    """
    _validate_solver(method, iters, tol)
    _check_xy(x, y)
    if batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be >= 1")
    if method == "closed_form":
        values = closed_form_curvature(model, x, y, batch_size=batch_size)["top_eig"]
        if not return_info:
            return values
        n = len(values)
        return values, {"products": 0, "sample_products": torch.zeros(n, dtype=torch.long),
                            "converged": torch.ones(n, dtype=torch.bool), "history": values[None]}
    solver = _lanczos if method == "lanczos" else _power
    values, infos = [], []
    with _quiet_eval(model):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            op = InputHessian(model, xb, yb)
            v0 = _start_vectors(xb.shape, xb.dtype, xb.device, generator)
            val, info = solver(op, v0, iters, tol)
            values.append(val.cpu())
            infos.append(info)
    out = torch.cat(values) if values else torch.empty(0, dtype=torch.float64)
    if not return_info:
        return out
    length = max(i["history"].shape[0] for i in infos)
    hist = torch.cat([torch.cat([i["history"], i["history"][-1:].expand(
        length - i["history"].shape[0], -1)]) for i in infos], dim=1)
    info = {"products": sum(i["products"] for i in infos),
                "sample_products": torch.cat([i["sample_products"] for i in infos]),
                "converged": torch.cat([i["converged"] for i in infos]), "history": hist}
    return out, info


def batch_top_input_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                               iters: int = 100, tol: float = 1e-4,
                               generator: torch.Generator | None = None) -> float:
    """Top eigenvalue of the Hessian of the SUMMED loss w.r.t. the whole batch (one vector).

    Power iteration with one vector normalised over the whole batch, as batch-level
    implementations do. Because the Hessian is block diagonal (eval mode), the exact
    value is ``max_i lambda_max(H(x_i))``: the curvature of the most curved sample,
    not of a typical one. Divide by ``N`` for the Hessian of the mean loss.

    Args:
        model: classifier returning logits.
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        iters: maximum number of products.
        tol: stop when the Rayleigh quotient changes by less than this, relatively.
        generator: CPU generator of the start vector.

    Returns:
        The estimate as a float.
    """
    _validate_solver("power", iters, tol)
    _check_xy(x, y)
    with _quiet_eval(model):
        op = InputHessian(model, x, y)
        v = _start_vectors(x.shape, x.dtype, x.device, generator)
        v = v / v.norm()
        lam, prev = 0.0, float("nan")
        for _ in range(iters):
            w = op(v)
            lam = float((w * v).sum())
            if abs(lam - prev) <= tol * abs(lam):
                break
            norm = w.norm()
            if float(norm) <= 1e-30:
                break
            v, prev = w / norm, lam
    return lam


def dense_input_hessians(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         chunk: int = 256) -> torch.Tensor:
    """Dense per-sample input Hessians ``[N, d, d]`` from Hessian-vector products.

    Ground truth for tests and benchmarks (``d`` products per sample, so only for
    small ``d``). Each sample is replicated ``chunk`` times and multiplied by ``chunk``
    basis vectors in one batched product (valid because samples do not interact in
    eval mode).

    Args:
        model: classifier returning logits.
        x: inputs ``[N, ...]``; ``d`` is the number of entries of one input.
        y: labels ``[N]``.
        chunk: basis vectors per batched product.

    Returns:
        ``Tensor[N, d, d]`` in ``x``'s dtype, symmetrised.
    """
    _check_xy(x, y)
    if chunk < 1:
        raise ParameterError(f"chunk={chunk} must be >= 1")
    n, dim = len(x), x[0].numel()
    out = torch.zeros(n, dim, dim, dtype=x.dtype, device=x.device)
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    with _quiet_eval(model):
        for i in range(n):
            width = min(chunk, dim)
            op = InputHessian(model, x[i:i + 1].expand(width, *x.shape[1:]),
                              y[i:i + 1].expand(width))
            for start in range(0, dim, width):
                basis = eye[start:start + width]
                if len(basis) < width:
                    basis = torch.cat([basis, basis.new_zeros(width - len(basis), dim)])
                cols = op(basis.view(width, *x.shape[1:])).flatten(1)
                stop = min(start + width, dim)
                out[i, :, start:stop] = cols[:stop - start].T
    return 0.5 * (out + out.transpose(1, 2))




def _jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[n, K]`` and their Jacobian ``[n, K, d]`` w.r.t. ``x`` (K backward passes)."""
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        logits = model(xr)
        k = logits.shape[1]
        rows = [torch.autograd.grad(logits[:, c].sum(), xr, retain_graph=c < k - 1)[0]
                .flatten(1) for c in range(k)]
    return logits.detach(), torch.stack(rows, 1)


def closed_form_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          batch_size: int = 256, return_vectors: bool = False
                          ) -> dict[str, torch.Tensor]:
    """Per-sample loss, input-gradient norms and top input-Hessian eigenvalue in closed form.

    For piecewise-linear networks (ReLU, max-pool, affine layers, BatchNorm in eval
    mode) autograd's input Hessian of the cross-entropy is exactly
    ``J^T (diag(p) - p p^T) J`` (``J`` the Jacobian of the logits, ``p`` the softmax);
    its top eigenvalue is that of the ``K x K`` matrix ``A^(1/2) J J^T A^(1/2)`` with
    ``A = diag(p) - p p^T``. Cost: one forward and ``K`` backward passes per batch and a
    batched ``K x K`` eigenproblem; no Hessian-vector product. For networks with smooth
    activations the value is the top eigenvalue of the Gauss-Newton part only (the
    tests show it differs from the true one there).

    The gradient comes for free: ``g = J^T (p - e_y)``.

    Args:
        model: classifier returning logits (used in eval mode; modes are restored).
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        batch_size: samples per batch (memory: ``batch_size * K * d`` Jacobian entries).
        return_vectors: also return the unit top eigenvector of each sample's Hessian
            (shaped like ``x``).

    Returns:
        Dict of CPU tensors ``[N]``: ``loss`` (cross-entropy), ``top_eig`` (float64),
        ``grad_l2`` and ``grad_l1`` (norms of the input gradient) and, if asked,
        ``top_vec``.
    """
    _check_xy(x, y)
    if batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be >= 1")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("loss", "top_eig", "grad_l2",
                                                            "grad_l1", "top_vec")}
    with _quiet_eval(model):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size].to(x.device)
            logits, jac = _jacobian(model, xb)
            p = torch.softmax(logits.double(), 1)
            grad = torch.einsum("nk,nkd->nd", (p - F.one_hot(yb, p.shape[1]).double()),
                                jac.double())
            a = torch.diag_embed(p) - p[:, :, None] * p[:, None]
            evals, evecs = torch.linalg.eigh(a)
            root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(1, 2)
            jd = jac.double()
            small = root @ (jd @ jd.transpose(1, 2)) @ root
            small = 0.5 * (small + small.transpose(1, 2))
            lam, vec = torch.linalg.eigh(small)
            parts["loss"].append(F.cross_entropy(logits, yb, reduction="none").cpu())
            parts["top_eig"].append(lam[:, -1].clamp_min(0).cpu())
            parts["grad_l2"].append(grad.norm(dim=1).float().cpu())
            parts["grad_l1"].append(grad.abs().sum(1).float().cpu())
            if return_vectors:
                v = torch.einsum("nkd,nk->nd", jd, (root @ vec[:, :, -1:])[:, :, 0])
                v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
                parts["top_vec"].append(v.to(x.dtype).view(xb.shape).cpu())
    out = {k: torch.cat(v) for k, v in parts.items() if v}
    return out


def paper_input_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           batch_size: int = 200, iters: int = 10, tol: float = 1e-2,
                           generator: torch.Generator | None = None,
                           return_info: bool = False):
    """The input-Hessian "top eigenvalue" exactly as the paper's public code computes it.

    A re-implementation of ``get_eigen_full_dataset_only_inputs`` of the paper's
    ``hessianflow`` (Zhao et al. call it with ``maxIter=10, tol=1e-2`` on the test
    loader, batch 200, no shuffling, cross-entropy with mean reduction):

    * one random vector ``v`` shaped like ONE batch ``[B, ...]``, normalised as
      ``v / (||v|| + 1e-6)`` over the whole batch;
    * each iteration sums, over the full batches of ``x`` (a last incomplete batch is
      skipped, as there), the product of ``v`` with the Hessian of the batch's MEAN
      cross-entropy with respect to that batch's inputs; the estimate is
      ``v . sum / number_of_batches``; ``v`` becomes the normalised sum;
    * it stops when two successive estimates differ by less than ``tol`` in ABSOLUTE
      value, else after ``iters`` iterations.

    The operator is block diagonal over the ``B`` batch positions, so the estimate
    tends to ``(1/B) max_i lambda_max(mean_b H(x_{b,i}))`` (see the module docstring): not
    comparable with a per-image eigenvalue, and scaled by ``1/B``, so that for small
    curvatures the absolute tolerance stops it after two iterations.

    Args:
        model: classifier returning logits (used in eval mode; modes are restored).
        x: inputs ``[N, ...]`` (pixel space, as the paper's unnormalised CIFAR-10 loader).
        y: labels ``[N]``.
        batch_size: ``B`` (the paper: 200).
        iters: ``maxIter`` (the paper: 10).
        tol: absolute tolerance (the paper: 1e-2).
        generator: CPU generator of the start vector.
        return_info: also return ``{"iterations", "batches", "history", "converged"}``.

    Returns:
        The estimate (float), and the info dict if asked.
    """
    _check_xy(x, y)
    if batch_size < 1 or len(x) < batch_size:
        raise ParameterError(f"batch_size={batch_size} must be >= 1 and <= len(x)={len(x)} "
                             "(incomplete batches are skipped, as in the paper's code)")
    if not isinstance(iters, int) or iters < 1:
        raise ParameterError(f"iters={iters!r} must be a positive integer")
    if not tol >= 0:
        raise ParameterError(f"tol={tol!r} must be >= 0")
    nb = len(x) // batch_size
    history: list[float] = []
    converged = False
    with _quiet_eval(model):
        ops = [InputHessian(model, x[b * batch_size:(b + 1) * batch_size],
                            y[b * batch_size:(b + 1) * batch_size]) for b in range(nb)]
        v = _start_vectors(ops[0].shape, x.dtype, x.device, generator)
        v = v / (float(v.norm()) + 1e-6)
        estimate: float | None = None
        for _ in range(iters):
            total = sum(op(v) for op in ops) / batch_size  # Hessians of the MEAN loss
            current = float((total * v).sum()) / nb
            history.append(current)
            v = total / (float(total.norm()) + 1e-6)
            if estimate is not None and abs(estimate - current) < tol:
                estimate, converged = current, True
                break
            estimate = current
    assert estimate is not None
    if not return_info:
        return estimate
    return estimate, {"iterations": len(history), "batches": nb, "history": history,
                          "converged": converged}


def robust_loss_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      norm: str = "l2", pgd_steps: int = 10, step_size: float | None = None,
                      seed: int = 0, batch_size: int = 256, eig_method: str = "closed_form",
                      curvature: dict[str, torch.Tensor] | None = None,
                      channels_last: bool | None = None) -> dict[str, torch.Tensor]:
    """The second-order bound on the robustness loss, next to the loss PGD reaches.

    Per sample: ``bound = loss + eps ||g||_2 + eps^2/2 lambda_max`` for the L2 ball and
    ``loss + eps ||g||_1 + eps^2 d/2 lambda_max`` for the L-inf ball (module
    docstring). ``robust_loss`` is the cross-entropy at a PGD example of the same
    ball, a lower bound on the true maximum: ``robust_loss > bound`` is therefore a
    certain violation of the bound, ``robust_loss <= bound`` only fails to refute it.

    Args:
        model: classifier on ``[0, 1]`` inputs (eval mode; modes restored).
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        eps: radius of the ball, in pixel units.
        norm: ``"l2"`` or ``"linf"``.
        pgd_steps, step_size: the attack (:func:`mcutils.attacks.pgd`, random start).
        seed: seed of the attack's random start (and of Lanczos' start vectors).
        batch_size: inputs per batch.
        eig_method: ``"closed_form"`` (piecewise-linear networks) or ``"lanczos"``.
        curvature: precomputed :func:`closed_form_curvature` output for ``x`` (reused
            across radii).
        channels_last: the attack's memory format (default: the speed plan's; see
            :func:`mcutils.attacks.pgd`).

    Returns:
        Dict of ``[N]`` CPU tensors: ``loss``, ``robust_loss``, ``first_order``,
        ``second_order``, ``bound``, ``top_eig``.
    """
    from mcutils.attacks import pgd

    _check_xy(x, y)
    if norm not in ("l2", "linf"):
        raise ParameterError(f"norm={norm!r} is not known; valid values: ('l2', 'linf')")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ParameterError(f"eps={eps!r} must be a positive number")
    if eig_method not in ("closed_form", "lanczos"):
        raise ParameterError(f"eig_method={eig_method!r} is not known; valid values: "
                             "('closed_form', 'lanczos')")
    if curvature is None:
        curvature = closed_form_curvature(model, x, y, batch_size=batch_size)
        if eig_method == "lanczos":
            curvature["top_eig"] = top_input_eigenvalues(
                model, x, y, "lanczos", iters=x[0].numel(), tol=0, batch_size=batch_size,
                generator=torch.Generator().manual_seed(seed))
    dim = x[0].numel()
    lam = curvature["top_eig"].double()
    if norm == "l2":
        first = eps * curvature["grad_l2"].double()
        second = 0.5 * eps ** 2 * lam
    else:
        first = eps * curvature["grad_l1"].double()
        second = 0.5 * eps ** 2 * dim * lam
    with _quiet_eval(model):
        adv = pgd(model, x, y, eps=eps, steps=pgd_steps, step_size=step_size, norm=norm,
                  generator=torch.Generator().manual_seed(seed), batch_size=batch_size,
                  channels_last=channels_last)
        with torch.inference_mode():
            robust = torch.cat([F.cross_entropy(model(adv[i:i + batch_size]),
                                                y[i:i + batch_size].to(adv.device),
                                                reduction="none").cpu()
                                for i in range(0, len(x), batch_size)])
    loss = curvature["loss"].double()
    return {"loss": loss, "robust_loss": robust.double(), "first_order": first,
                "second_order": second, "bound": loss + first + second, "top_eig": lam}
