"""Curvature of the loss with respect to the INPUT: Hessian-vector products and top eigenvalues.

For a classifier :math:`f` and a labelled input :math:`(x, y)` the input Hessian is
:math:`H(x) = \\nabla_x^2 \\, \\ell(f(x), y)` with :math:`\\ell` the cross-entropy. It is a
``d x d`` matrix per sample (``d`` = number of pixels), never formed here: everything
goes through Hessian-vector products computed by double back-propagation.

Per-sample definition (used by the book). With the model in eval mode (BatchNorm
running statistics, no dropout) the summed loss :math:`\\sum_i \\ell(f(x_i), y_i)`
has a block-diagonal Hessian with respect to the stacked batch, one block
:math:`H(x_i)` per sample. One batched product with a stacked vector
``v = [v_1, ..., v_N]`` therefore returns ``[H(x_1) v_1, ..., H(x_N) v_N]``, and
:func:`top_input_eigenvalues` runs N independent eigen-solvers side by side, one
Krylov space per sample (vectors are normalised and orthogonalised per sample, never
across the batch). Chapter 06 reports the **mean over samples of the per-sample top
eigenvalue**, :math:`\\bar\\lambda = \\frac1N \\sum_i \\lambda_{\\max}(H(x_i))`.

Batch-level variant (:func:`batch_top_input_eigenvalue`): treat the whole batch as one
vector and take the top eigenvalue of the block-diagonal Hessian of the summed loss.
That is :math:`\\max_i \\lambda_{\\max}(H(x_i))`, a statistic of the single most
curved sample (divide by N for the mean loss). It is what a power iteration with one
shared, batch-normalised vector converges to, slowly when the top samples have close
eigenvalues, and it says little about the typical input.

For ReLU/max-pool networks the second-derivative term of the network vanishes almost
everywhere, so :math:`H(x) = J^\\top (\\operatorname{diag}(p) - p p^\\top) J` with
``J`` the Jacobian of the logits and ``p`` the softmax: it is positive semi-definite
with rank at most ``K - 1`` (``K`` classes). Lanczos then finds the top eigenvalue in
at most ``K`` products, while power iteration depends on the gap to the second one.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.runtime import ParameterError

__all__ = [
    "METHODS",
    "input_gradients",
    "input_hvp",
    "InputHessian",
    "top_input_eigenvalues",
    "batch_top_input_eigenvalue",
    "dense_input_hessians",
    "taylor_robust_loss",
    "robustness_and_curvature",
]

METHODS = ("lanczos", "power")


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
    info = dict(products=op.products, sample_products=done_at.cpu(),
                history=torch.stack(history).cpu(), converged=converged.cpu())
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
    info = dict(products=op.products, sample_products=done_at.cpu(),
                history=torch.stack(history).cpu(), converged=converged.cpu())
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
            semi-definite Hessians of ReLU networks).
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
    info = dict(products=sum(i["products"] for i in infos),
                sample_products=torch.cat([i["sample_products"] for i in infos]),
                converged=torch.cat([i["converged"] for i in infos]), history=hist)
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


def taylor_robust_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                       norm: str = "linf", top_eigs: torch.Tensor | None = None
                       ) -> dict[str, torch.Tensor]:
    """Second-order Taylor model of the loss in an ``eps`` ball, per sample.

    ``L(x + delta) ~ L + g^T delta + delta^T H delta / 2``. For the first-order
    optimal step (``delta = eps * g/||g||`` for ``"l2"``, ``eps * sign(g)`` for
    ``"linf"``) the linear term is ``eps ||g||_*`` (dual norm: ``||g||_2`` or
    ``||g||_1``) and the quadratic term is measured with one Hessian-vector product.
    With the top eigenvalue the quadratic term is bounded by
    ``eps^2 r^2 lambda_max / 2`` where ``r^2 = 1`` (``"l2"``) or ``d`` (``"linf"``:
    the L-inf ball lies in the L2 ball of radius ``eps sqrt(d)``).

    Args:
        model: classifier returning logits.
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        eps: radius of the ball.
        norm: ``"linf"`` or ``"l2"``.
        top_eigs: per-sample top eigenvalues (e.g. from :func:`top_input_eigenvalues`)
            for the bound; omitted -> no ``"bound"`` entry.

    Returns:
        Dict of ``[N]`` CPU tensors: ``loss``, ``first_order`` (the linear term),
        ``second_order`` (the quadratic term along the step), ``taylor`` (their sum
        with the loss) and, with ``top_eigs``, ``eig_term`` and ``bound``
        (``loss + first_order + eig_term``).
    """
    if norm not in ("linf", "l2"):
        raise ParameterError(f"norm={norm!r} is not known; valid values: ('linf', 'l2')")
    if not eps >= 0:
        raise ParameterError(f"eps={eps!r} must be >= 0")
    _check_xy(x, y)
    with _quiet_eval(model):
        op = InputHessian(model, x, y)
        g = op.grad.flatten(1)
        if norm == "linf":
            step = eps * torch.sign(g)
            first = eps * g.abs().sum(1)
            radius2 = float(g.shape[1])
        else:
            step = eps * g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)
            first = eps * g.norm(dim=1)
            radius2 = 1.0
        hv = op(step.view(x.shape)).flatten(1)
        second = 0.5 * (step * hv).sum(1)
    out = dict(loss=op.loss.cpu(), first_order=first.cpu(), second_order=second.cpu())
    out["taylor"] = out["loss"] + out["first_order"] + out["second_order"]
    if top_eigs is not None:
        lam = torch.as_tensor(top_eigs, dtype=out["loss"].dtype).cpu()
        out["eig_term"] = 0.5 * eps ** 2 * radius2 * lam
        out["bound"] = out["loss"] + out["first_order"] + out["eig_term"]
    return out



def robustness_and_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                             pgd_steps: int = 10, step_size: float | None = None,
                             eig_samples: int | None = 100, eig_method: str = "lanczos",
                             eig_iters: int = 30, eig_tol: float = 0.0, seed: int = 0,
                             batch_size: int = 500, extra_eps: Sequence[float] = ()
                             ) -> dict[str, float]:
    """Clean and PGD-robust loss/accuracy and input curvature of one model, on fixed data.

    The quantities that chapter 06 follows along a path between two models:

    * ``loss``, ``accuracy``: clean cross-entropy and accuracy on ``(x, y)``;
    * ``robust_loss``, ``robust_accuracy``: the same at L-inf PGD adversarial examples
      (:func:`mcutils.attacks.pgd`, random start seeded by ``seed``);
    * ``top_eig``: mean over the first ``eig_samples`` inputs of the per-sample top
      eigenvalue of the input Hessian (:func:`top_input_eigenvalues`), and
      ``top_eig_median``;
    * ``first_order``, ``second_order``, ``eig_term``: the mean terms of
      :func:`taylor_robust_loss` at radius ``eps`` on the same inputs (``taylor`` =
      ``loss_eig + first_order + second_order`` and ``bound`` = ``loss_eig + first_order
      + eig_term``, with ``loss_eig`` the clean loss of those inputs);
    * ``robust_loss@E``, ``robust_accuracy@E`` for every radius ``E`` in ``extra_eps``
      (same attack settings, step size scaled with the radius).

    Args:
        model: classifier on ``[0, 1]`` inputs (evaluated in eval mode).
        x: inputs ``[N, ...]``.
        y: labels ``[N]``.
        eps: L-inf radius of the attack.
        pgd_steps: PGD steps.
        step_size: PGD step (default ``2.5 * eps / pgd_steps``).
        eig_samples: how many of the inputs enter the curvature statistics
            (``None``: all).
        eig_method, eig_iters, eig_tol: eigen-solver settings (default: Lanczos run to
            Krylov exhaustion or ``eig_iters`` products, see :func:`top_input_eigenvalues`).
        seed: seeds the attack's random start and the solver's start vectors.
        batch_size: inputs per attack batch.
        extra_eps: further attack radii for the robust loss only.

    Returns:
        A dict of plain floats.
    """
    from mcutils.attacks import pgd

    _check_xy(x, y)
    _validate_solver(eig_method, eig_iters, eig_tol)
    if eig_samples is not None and eig_samples < 1:
        raise ParameterError(f"eig_samples={eig_samples} must be >= 1 or None")
    if not eps > 0 or any(not e > 0 for e in extra_eps):
        raise ParameterError(f"attack radii must be > 0 (got {eps}, {list(extra_eps)})")

    def logits(inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model(inputs[i:i + batch_size])
                              for i in range(0, len(inputs), batch_size)])

    with _quiet_eval(model):
        clean = logits(x)
        y_dev = y.to(clean.device)
        out = dict(loss=F.cross_entropy(clean, y_dev).item(),
                   accuracy=(clean.argmax(1) == y_dev).float().mean().item())
        for radius in [eps, *extra_eps]:
            size = None if step_size is None else step_size * radius / eps
            adv = logits(pgd(model, x, y, eps=radius, steps=pgd_steps, step_size=size,
                             norm="linf", generator=torch.Generator().manual_seed(seed),
                             batch_size=batch_size))
            tag = "" if radius is eps else f"@{radius:g}"
            out["robust_loss" + tag] = F.cross_entropy(adv, y_dev).item()
            out["robust_accuracy" + tag] = (adv.argmax(1) == y_dev).float().mean().item()
    m = len(x) if eig_samples is None else min(eig_samples, len(x))
    xe, ye = x[:m], y[:m]
    lam = top_input_eigenvalues(model, xe, ye, method=eig_method, iters=eig_iters, tol=eig_tol,
                                generator=torch.Generator().manual_seed(seed))
    taylor = taylor_robust_loss(model, xe, ye, eps, norm="linf", top_eigs=lam)
    out.update(top_eig=lam.mean().item(), top_eig_median=lam.median().item(),
               loss_eig=taylor["loss"].mean().item(),
               first_order=taylor["first_order"].mean().item(),
               second_order=taylor["second_order"].mean().item(),
               eig_term=taylor["eig_term"].mean().item(),
               taylor=taylor["taylor"].mean().item(), bound=taylor["bound"].mean().item())
    return {k: float(v) for k, v in out.items()}
