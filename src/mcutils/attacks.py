"""Adversarial attacks in pixel space, batched: FGSM, PGD (L-inf / L2), Carlini-Wagner L2,
the input-space paper's optimisation attack, an adaptive attack that also flattens the
loss along input-space paths to real images, and adversarial-training transforms.

Every model in the book takes images in ``[0, 1]`` (normalisation is its first layer),
so every attack here works on raw pixels, keeps its result inside the ``[0, 1]`` box
and, for norm-bounded attacks, inside its ``eps`` ball around the clean input.

All attacks are self-written batched PyTorch (a few dozen lines each, device
agnostic, seeded through a :class:`torch.Generator`). ``foolbox`` 3.3.4 is used in
the tests as an independent reference for PGD; it is not needed at run time.

Untargeted attacks take the true label ``y`` and push the prediction away from it;
targeted attacks (``targeted=True``) take the target label as ``y`` and pull the
prediction towards it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcutils._util import NORMS, MaskedAdam
from mcutils._util import bview as _view
from mcutils._util import check_positive as _check_positive
from mcutils._util import flat_norm as _flat_norm
from mcutils.inputspace import total_variation
from mcutils.runtime import ParameterError

__all__ = [
    "ATTACKS",
    "NORMS",
    "adversarial_transform",
    "barrier_attack",
    "cw_l2",
    "fgsm",
    "optimization_attack",
    "perturbation_norms",
    "pgd",
    "run_attack",
    "success_rate",
]

ATTACKS = ("fgsm", "pgd_linf", "pgd_l2", "cw", "optim", "adaptive")

Transform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------- helpers
def _check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ParameterError("x must be a tensor of inputs [N, ...]")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
        raise ParameterError(f"y must be a 1-D label tensor with len(x)={len(x)} entries")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ParameterError("x must be in pixel space [0, 1]")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ParameterError(f"norm={norm!r} is not known; valid values: {NORMS}")







def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations onto the eps ball of ``norm`` (per sample)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _flat_norm(delta, "l2")
    factor = torch.clamp(eps / (n + 1e-12), max=1.0)
    return delta * _view(factor, delta)


def _random_start(x: torch.Tensor, eps: float, norm: str,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A uniform random point of the eps ball (L-inf) or a random direction at a
    uniformly drawn radius fraction (L2)."""
    shape = x.shape
    if norm == "linf":
        u = torch.rand(shape, generator=generator, dtype=x.dtype)
        return ((2 * u - 1) * eps).to(x.device)
    d = torch.randn(shape, generator=generator, dtype=x.dtype)
    d = d / _view(d.flatten(1).norm(dim=1) + 1e-12, d)
    r = torch.rand(shape[0], generator=generator, dtype=x.dtype)
    return (d * _view(r, d) * eps).to(x.device)


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss and gradient of its sum w.r.t. ``x`` (parameters untouched)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        loss = (loss_fn or (lambda z, t: F.cross_entropy(z, t, reduction="none")))(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad.detach()


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _view(_flat_norm(grad, "l2") + 1e-12, grad)


def _batched(fn: Callable[..., torch.Tensor], x: torch.Tensor, others: Sequence[torch.Tensor],
             batch_size: int | None, **kw: Any) -> torch.Tensor:
    if batch_size is None or len(x) <= batch_size:
        return fn(x, *others, **kw)
    outs = [fn(x[i:i + batch_size], *[o[i:i + batch_size] for o in others], **kw)
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


# ----------------------------------------------------------------------------- attacks
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         targeted: bool = False, random_start: bool = False, step_size: float | None = None,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """Fast gradient sign method (L-inf), optionally from a random start ("fast AT").

    Args:
        model: classifier on ``[0, 1]`` inputs (left in its current mode).
        x: clean inputs ``[N, ...]`` in ``[0, 1]``.
        y: true labels (untargeted) or target labels (``targeted=True``).
        eps: L-inf radius.
        targeted: descend the target-class loss instead of ascending the true-class loss.
        random_start: start from a uniform point of the ball (Wong et al.'s fast
            adversarial training); the step is then ``step_size`` (default ``1.25 eps``).
        step_size: size of the signed step (default ``eps``, or ``1.25 eps`` with a
            random start).
        generator: randomness of the start.

    Returns:
        Adversarial inputs inside the eps ball and ``[0, 1]``.
    """
    _check_inputs(x, y)
    _check_positive(eps=eps)
    step = step_size if step_size is not None else (1.25 * eps if random_start else eps)
    x = x.detach()
    delta = _random_start(x, eps, "linf", generator) if random_start else torch.zeros_like(x)
    x0 = (x + delta).clamp(0, 1)
    _, grad = _loss_grad(model, x0, y)
    sign = -1.0 if targeted else 1.0
    delta = _project(x0 - x + sign * step * grad.sign(), eps, "linf")
    return (x + delta).clamp(0, 1).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, norm: str = "linf", targeted: bool = False,
        random_start: bool = True, generator: torch.Generator | None = None,
        batch_size: int | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al.) in the L-inf or L2 ball, batched.

    Args:
        model: classifier on ``[0, 1]`` inputs.
        x: clean inputs ``[N, ...]`` in ``[0, 1]``.
        y: true labels (untargeted) or target labels (``targeted=True``).
        eps: radius of the ball.
        steps: number of gradient steps.
        step_size: step length (default ``2.5 * eps / steps``).
        norm: ``"linf"`` (signed steps) or ``"l2"`` (normalised-gradient steps).
        targeted: minimise the loss of ``y`` instead of maximising it.
        random_start: start from a random point of the ball.
        generator: randomness of the start.
        batch_size: process inputs in chunks of this size (``None``: all at once).

    Returns:
        Adversarial inputs inside the eps ball and ``[0, 1]``.
    """
    _check_inputs(x, y)
    _check_norm(norm)
    _check_positive(eps=eps)
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    step = step_size if step_size is not None else 2.5 * eps / steps
    _check_positive(step_size=step)

    def run(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xb = xb.detach()
        delta = _random_start(xb, eps, norm, generator) if random_start else torch.zeros_like(xb)
        delta = (xb + delta).clamp(0, 1) - xb
        sign = -1.0 if targeted else 1.0
        for _ in range(steps):
            _, grad = _loss_grad(model, xb + delta, yb)
            delta = _project(delta + sign * step * _ascent_direction(grad, norm), eps, norm)
            delta = (xb + delta).clamp(0, 1) - xb
        return (xb + delta).detach()

    return _batched(run, x, [y], batch_size)


def _margin_loss(logits: torch.Tensor, y: torch.Tensor, targeted: bool,
                 kappa: float) -> torch.Tensor:
    """CW's f: how far the decision is from the attacker's goal (<= -kappa is done)."""
    onehot = F.one_hot(y, logits.shape[1]).bool()
    label = logits[onehot]
    other = logits.masked_fill(onehot, float("-inf")).amax(1)
    gap = (other - label) if targeted else (label - other)
    return torch.clamp(gap, min=-kappa)


def cw_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: float = 1.0,
          kappa: float = 0.0, steps: int = 100, lr: float = 0.01, targeted: bool = False,
          binary_search_steps: int = 1, batch_size: int | None = None) -> torch.Tensor:
    """Carlini-Wagner L2 attack: minimise ``||delta||^2 + c * f(x + delta)`` in tanh space.

    ``f`` is the logit-margin loss with confidence ``kappa``. Among the iterates, the
    successful one with the smallest L2 perturbation is kept per sample (the clean input
    where none succeeded). With ``binary_search_steps > 1`` the constant ``c`` is
    adapted per sample (x10 after a failure, halved towards the last success).

    Args:
        model: classifier on ``[0, 1]`` inputs.
        x: clean inputs in ``[0, 1]``.
        y: true labels (untargeted) or targets (``targeted=True``).
        c: initial trade-off constant.
        kappa: confidence margin.
        steps: Adam steps per binary-search round.
        lr: Adam learning rate.
        targeted: reach ``y`` instead of leaving it.
        binary_search_steps: rounds of the search over ``c``.
        batch_size: chunk size.

    Returns:
        Adversarial inputs in ``[0, 1]``.
    """
    _check_inputs(x, y)
    _check_positive(c=c, lr=lr)
    if not isinstance(steps, int) or steps < 1 or binary_search_steps < 1:
        raise ParameterError("steps and binary_search_steps must be positive integers")

    def run(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xb = xb.detach()
        n = len(xb)
        w0 = torch.atanh((xb * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), float(c), device=xb.device)
        lo = torch.zeros(n, device=xb.device)
        hi = torch.full((n,), float("inf"), device=xb.device)
        best = xb.clone()
        best_l2 = torch.full((n,), float("inf"), device=xb.device)
        for _ in range(binary_search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=xb.device)
            for _ in range(steps):
                with torch.enable_grad():
                    xa = (torch.tanh(w) + 1) / 2
                    logits = model(xa)
                    l2 = (xa - xb).flatten(1).pow(2).sum(1)
                    f = _margin_loss(logits, yb, targeted, kappa)
                    loss = (l2 + const * f).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    pred = logits.argmax(1)
                    ok = (pred == yb) if targeted else (pred != yb)
                    if kappa > 0:
                        ok = ok & (f <= -kappa + 1e-6)
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best[better] = xa.detach()[better]
                    succeeded |= ok
            # per-sample search over c
            hi = torch.where(succeeded, torch.minimum(hi, const), hi)
            lo = torch.where(succeeded, lo, torch.maximum(lo, const))
            const = torch.where(torch.isinf(hi), const * 10, (lo + hi) / 2)
        return best.clamp(0, 1)

    return _batched(run, x, [y], batch_size)


def optimization_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                        steps: int = 512, lr: float = 0.005, mse_weight: float = 0.1,
                        tv_weight: float = 0.0,
                        stop_loss: float | torch.Tensor | None = None,
                        batch_size: int | None = None) -> torch.Tensor:
    """The input-space paper's targeted optimisation attack.

    Minimises ``CE(model(x'), target) + mse_weight * MSE(x', x) + tv_weight * TV(x')``
    with Adam directly on the pixels, clipping to ``[0, 1]`` after each step. As in the
    paper, the optimisation of a sample can stop once its target cross-entropy falls
    below ``stop_loss`` (for example the loss of a real image of the target class), so
    the adversarial example is "as confident as a real one" and no more.

    Args:
        model: classifier on ``[0, 1]`` inputs.
        x: source images in ``[0, 1]``.
        target: target classes.
        steps: maximum Adam steps.
        lr: Adam learning rate.
        mse_weight: weight of the mean squared distance to the source (lambda).
        tv_weight: weight of the total-variation smoothness term.
        stop_loss: ``None`` (run all steps), a float or a per-sample tensor: a sample is
            frozen once its target cross-entropy is below it.
        batch_size: chunk size.

    Returns:
        Adversarial images in ``[0, 1]``.
    """
    _check_inputs(x, target)
    _check_positive(lr=lr)
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    if mse_weight < 0 or tv_weight < 0:
        raise ParameterError("mse_weight and tv_weight must be >= 0")
    stop = None
    if stop_loss is not None:
        stop = torch.as_tensor(stop_loss, dtype=x.dtype, device=x.device).expand(len(x))

    def run(xb: torch.Tensor, tb: torch.Tensor, sb: torch.Tensor | None) -> torch.Tensor:
        xb = xb.detach()
        xa = xb.clone()
        adam = MaskedAdam(xa, lr)
        active = torch.ones(len(xb), dtype=torch.bool, device=xb.device)
        for _ in range(steps):
            with torch.enable_grad():
                xa.requires_grad_(True)
                ce = F.cross_entropy(model(xa), tb, reduction="none")
                if sb is not None:
                    active = active & ~(ce.detach() < sb)
                    if not active.any():
                        break
                loss = ce + mse_weight * (xa - xb).flatten(1).pow(2).mean(1)
                if tv_weight:
                    loss = loss + tv_weight * total_variation(xa)
                (g,) = torch.autograd.grad((loss * active).sum(), xa)
            xa = adam.step(xa, g, active).clamp(0, 1)
        return xa.detach()

    if stop is None:
        return _batched(lambda a, b: run(a, b, None), x, [target], batch_size)
    return _batched(run, x, [target, stop], batch_size)


def barrier_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                   references: torch.Tensor, steps: int = 256, lr: float = 0.005,
                   mse_weight: float = 0.1, path_weight: float = 1.0, num_points: int = 4,
                   stop_loss: float | torch.Tensor | None = None,
                   batch_size: int | None = None) -> torch.Tensor:
    """Adaptive attack on connectivity-based detectors: the optimisation attack plus a
    penalty on the loss *along the straight paths* to the attacker's own references.

    Minimises ``CE(x') + mse_weight * MSE(x', x) + path_weight * mean_{k, t} CE((1-t) x'
    + t r_k)`` over ``num_points`` interior points ``t`` of the paths to each reference
    ``r_k`` of the target class, so the adversarial example's loss profiles look like
    those of a real image (low and flat). The references should be disjoint from the
    defender's. With ``stop_loss`` a sample stops once its target cross-entropy is below
    it *and* its mean path loss is too.

    Args:
        model: classifier on ``[0, 1]`` inputs.
        x: source images ``[N, C, H, W]``.
        target: target classes ``[N]``.
        references: ``[N, K, C, H, W]`` real images of each target class.
        steps, lr, mse_weight: as in :func:`optimization_attack`.
        path_weight: weight of the path-loss penalty (0 gives the optimisation attack).
        num_points: interior points per path (evenly spaced in ``(0, 1)``).
        stop_loss: optional early-stopping threshold (float or per-sample tensor).
        batch_size: chunk size over inputs.

    Returns:
        Adversarial images in ``[0, 1]``.
    """
    _check_inputs(x, target)
    _check_positive(lr=lr)
    if not isinstance(steps, int) or steps < 1 or not isinstance(num_points, int) \
            or num_points < 1:
        raise ParameterError("steps and num_points must be positive integers")
    if references.dim() != x.dim() + 1 or references.shape[0] != len(x) \
            or references.shape[2:] != x.shape[1:]:
        raise ParameterError(f"references must be [N, K, ...] with N={len(x)} and the "
                             f"image shape {tuple(x.shape[1:])}, got {tuple(references.shape)}")
    if mse_weight < 0 or path_weight < 0:
        raise ParameterError("mse_weight and path_weight must be >= 0")
    ts = torch.linspace(0, 1, num_points + 2, dtype=x.dtype, device=x.device)[1:-1]
    stop = None
    if stop_loss is not None:
        stop = torch.as_tensor(stop_loss, dtype=x.dtype, device=x.device).expand(len(x))

    def run(xb: torch.Tensor, tb: torch.Tensor, rb: torch.Tensor,
            sb: torch.Tensor | None) -> torch.Tensor:
        xb = xb.detach()
        n, k = rb.shape[:2]
        xa = xb.clone()
        adam = MaskedAdam(xa, lr)
        active = torch.ones(n, dtype=torch.bool, device=xb.device)
        tv = ts.view(1, 1, -1, *([1] * (xb.dim() - 1)))
        path_targets = tb.view(n, 1, 1).expand(n, k, len(ts)).reshape(-1)
        for _ in range(steps):
            with torch.enable_grad():
                xa.requires_grad_(True)
                ce = F.cross_entropy(model(xa), tb, reduction="none")
                start = xa.unsqueeze(1).unsqueeze(2)
                points = start + tv * (rb.unsqueeze(2) - start)
                path = F.cross_entropy(model(points.reshape(-1, *xb.shape[1:])), path_targets,
                                       reduction="none").view(n, -1).mean(1)
                if sb is not None:
                    done = (ce.detach() < sb) & (path.detach() < sb)
                    active = active & ~done
                    if not active.any():
                        break
                loss = ce + mse_weight * (xa - xb).flatten(1).pow(2).mean(1) + path_weight * path
                (g,) = torch.autograd.grad((loss * active).sum(), xa)
            xa = adam.step(xa, g, active).clamp(0, 1)
        return xa.detach()

    if stop is None:
        return _batched(lambda a, b, r: run(a, b, r, None), x, [target, references], batch_size)
    return _batched(run, x, [target, references, stop], batch_size)


# ----------------------------------------------------------------------------- utilities
def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               **kwargs: Any) -> torch.Tensor:
    """Dispatch by name: ``fgsm``, ``pgd_linf``, ``pgd_l2``, ``cw``, ``optim`` or ``adaptive``.

    ``y`` is the true label for the untargeted attacks and the target for ``optim`` and
    ``adaptive`` (which also needs ``references=``), and for the others when
    ``targeted=True`` is passed.
    """
    if name == "fgsm":
        return fgsm(model, x, y, **kwargs)
    if name == "pgd_linf":
        return pgd(model, x, y, norm="linf", **kwargs)
    if name == "pgd_l2":
        return pgd(model, x, y, norm="l2", **kwargs)
    if name == "cw":
        return cw_l2(model, x, y, **kwargs)
    if name == "optim":
        return optimization_attack(model, x, y, **kwargs)
    if name == "adaptive":
        return barrier_attack(model, x, y, **kwargs)
    raise ParameterError(f"attack={name!r} is not known; valid values: {ATTACKS}")


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample ``linf``, ``l2`` and ``mse`` distances between clean and adversarial inputs."""
    d = (x_adv - x).flatten(1)
    return {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "mse": d.pow(2).mean(1)}


@torch.no_grad()
def success_rate(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                 targeted: bool = False) -> float:
    """Fraction of inputs classified as ``y`` (targeted) or not as ``y`` (untargeted)."""
    pred = model(x_adv).argmax(1)
    ok = (pred == y) if targeted else (pred != y)
    return float(ok.float().mean()) if len(ok) else float("nan")


def adversarial_transform(method: str = "pgd", eps: float = 0.1, steps: int = 5,
                          step_size: float | None = None, norm: str = "linf",
                          random_start: bool = True, seed: int = 0) -> Transform:
    """A ``(model, x, y) -> (x_adv, y)`` hook for :func:`mcutils.training.train`.

    Args:
        method: ``"pgd"`` (Madry-style adversarial training) or ``"fgsm"`` (FGSM from a
            random start, the "fast" variant; ``steps`` is ignored).
        eps: radius of the ball.
        steps: PGD steps.
        step_size: PGD/FGSM step (defaults as in :func:`pgd` / :func:`fgsm`).
        norm: ``"linf"`` or ``"l2"`` (PGD only).
        random_start: start from a random point of the ball.
        seed: seed of the random starts (one generator for the whole training run).

    Returns:
        The transform; it leaves the model's mode and parameters untouched apart
        from the gradients it does not accumulate.
    """
    if method not in ("pgd", "fgsm"):
        raise ParameterError(f"method={method!r} is not known; valid values: ('pgd', 'fgsm')")
    _check_norm(norm)
    _check_positive(eps=eps)
    if method == "fgsm" and norm != "linf":
        raise ParameterError("method='fgsm' supports norm='linf' only")
    gen = torch.Generator().manual_seed(seed)

    def transform(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        params = [p for p in model.parameters() if p.requires_grad]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            if method == "pgd":
                x_adv = pgd(model, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm,
                            random_start=random_start, generator=gen)
            else:
                x_adv = fgsm(model, x, y, eps=eps, random_start=random_start,
                             step_size=step_size, generator=gen)
        finally:
            for p, f in zip(params, flags):
                p.requires_grad_(f)
        return x_adv, y

    return transform
