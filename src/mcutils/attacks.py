"""Adversarial attacks, batched: FGSM, PGD (L-inf / L2), Carlini-Wagner L2, the
input-space paper's optimisation attack (with an optional differentiable penalty, which
the adaptive attack of chapter 04 uses against a detector), and adversarial-training
transforms.

Every model in the book takes images in ``[0, 1]`` (normalisation is its first layer).
The norm-bounded attacks work on raw pixels and keep their result inside the ``[0, 1]``
box and their ``eps`` ball. :func:`optimization_attack` reproduces the input-space
paper's attack in its own units: it optimises the *normalised* input
``(x - mean) / std`` of the model's :class:`~mcutils.models.Normalize` layer and, like
the paper, does not clip to the pixel box unless asked (:func:`pixel_units` converts
its settings to pixel units). The adaptive attacker's penalty, a fitted detector
recomputed with gradients, is :class:`mcutils.adaptive.DetectorPenalty`.

Used by chapters 04 and 06 (and by adversarial training in :mod:`mcutils.training`).

All attacks are self-written batched PyTorch (a few dozen lines each, device
agnostic, seeded through a :class:`torch.Generator`). ``foolbox`` 3.3.4 is used in
the tests as an independent reference for PGD; it is not needed at run time.

Untargeted attacks take the true label ``y`` and push the prediction away from it;
targeted attacks (``targeted=True``) take the target label as ``y`` and pull the
prediction towards it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import FrozenEval as _FrozenEval
from mcutils.core.runtime import layout_hazards as _layout_hazards
from mcutils.core.runtime import model_device as _model_device
from mcutils.core.runtime import prepare as _prepare
from mcutils.core.runtime import prepared as _prepared
from mcutils.core.tensors import NORMS
from mcutils.core.tensors import bview as _view
from mcutils.core.tensors import flat_norm as _flat_norm
from mcutils.training import MaskedAdam

__all__ = [
    "ATTACKS",
    "NORMS",
    "adversarial_transform",
    "cw_l2",
    "fgsm",
    "gradient_penalty_objective",
    "high_frequency_penalty",
    "input_normalization",
    "optimization_attack",
    "perturbation_norms",
    "pgd",
    "pixel_units",
    "run_attack",
    "success_rate",
]

ATTACKS = ("fgsm", "pgd_linf", "pgd_l2", "cw", "optim")

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
@contextlib.contextmanager
def _planned(model: nn.Module, x: torch.Tensor, channels_last: bool | None = None
             ) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Run the attack under the machine's inference plan for inputs like ``x``: the
    weights in the plan's memory format for the duration (exact strides back on exit,
    :func:`mcutils.core.runtime.prepared`; by default never ``channels_last`` for a model
    with :func:`mcutils.core.runtime.layout_hazards`; an explicit ``channels_last`` wins).
    Yields the plan's input conversion. The model's mode, device and ``requires_grad``
    flags are untouched. The format changes gradients at float rounding only."""
    if channels_last is None and x.dim() == 4 and _layout_hazards(model):
        channels_last = False
    plan = _prepare(model, x[:2], channels_last=channels_last)
    with _prepared(model, plan):
        yield plan.input


def _standard(t: torch.Tensor) -> torch.Tensor:
    """``t`` with standard (NCHW) strides, whatever the plan gave it."""
    return t.clone(memory_format=torch.contiguous_format) if t.dim() == 4 else t


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         targeted: bool = False, random_start: bool = False, step_size: float | None = None,
         generator: torch.Generator | None = None, channels_last: bool | None = None
         ) -> torch.Tensor:
    """Fast gradient sign method (L-inf), optionally from a random start ("fast AT"),
    under the speed plan's memory format as :func:`pgd`.

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
        channels_last: memory format of the weights and inputs (default: the plan's).

    Returns:
        Adversarial inputs inside the eps ball and ``[0, 1]``.
    """
    _check_inputs(x, y)
    _check_positive(eps=eps)
    step = step_size if step_size is not None else (1.25 * eps if random_start else eps)
    x = x.detach()
    delta = _random_start(x, eps, "linf", generator) if random_start else torch.zeros_like(x)
    x0 = (x + delta).clamp(0, 1)
    with _planned(model, x, channels_last) as layout:
        _, grad = _loss_grad(model, layout(x0), y)
    sign = -1.0 if targeted else 1.0
    delta = _project(x0 - x + sign * step * grad.sign(), eps, "linf")
    return _standard((x + delta).clamp(0, 1).detach())


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, norm: str = "linf", targeted: bool = False,
        random_start: bool = True, generator: torch.Generator | None = None,
        batch_size: int | None = None, channels_last: bool | None = None) -> torch.Tensor:
    """Projected gradient descent (Madry et al.) in the L-inf or L2 ball, batched.

    The weights take the memory format of the machine's speed plan for the duration
    (as in :func:`optimization_attack`), which changes results at float rounding only;
    the model's mode and ``requires_grad`` flags are left as they are.

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
        channels_last: memory format of the weights and inputs (default: the plan's; a
            caller that runs the model under its own plan passes that plan's choice).

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
            _, grad = _loss_grad(model, layout(xb + delta), yb)
            delta = _project(delta + sign * step * _ascent_direction(grad, norm), eps, norm)
            delta = (xb + delta).clamp(0, 1) - xb
        return _standard((xb + delta).detach())

    with _planned(model, x, channels_last) as layout:
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
          binary_search_steps: int = 1, batch_size: int | None = None,
          channels_last: bool | None = None) -> torch.Tensor:
    """Carlini-Wagner L2 attack: minimise ``||delta||^2 + c * f(x + delta)`` in tanh space,
    under the speed plan's memory format as :func:`pgd`.

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
        channels_last: memory format of the weights and inputs (default: the plan's).

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
                    logits = model(layout(xa))
                    l2 = (xa - xb).flatten(1).pow(2).sum(1)
                    f = _margin_loss(logits, yb, targeted, kappa)
                    loss = (l2 + const * f).sum()
                    # the gradient of w only: the model's own .grad stays untouched
                    (w.grad,) = torch.autograd.grad(loss, w)
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
        return _standard(best.clamp(0, 1))

    with _planned(model, x, channels_last) as layout:
        return _batched(run, x, [y], batch_size)


def input_normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(mean, std)`` of the first :class:`mcutils.models.Normalize` layer of a model.

    Every model of the book starts with one; its statistics define the *normalised
    input units* in which the input-space paper states its attack settings.

    Returns:
        Two ``[1, C, 1, 1]`` tensors on the model's device.

    Raises:
        ParameterError: when the model has no ``Normalize`` layer.
    """
    from mcutils.models import Normalize

    for m in model.modules():
        if isinstance(m, Normalize):
            return m.mean.detach(), m.std.detach()
    raise ParameterError("the model has no mcutils.models.Normalize layer; pass units='pixel' "
                         "or build it with mcutils.models.build_model")


def pixel_units(std: float, lr: float = 0.005, mse_weight: float = 0.1,
                hf_weight: float = 1e-8) -> dict[str, float]:
    """Convert the optimisation attack's settings from normalised to pixel units.

    With ``z = (x - mean) / std`` (one channel, or one common ``std``): Adam is
    invariant to the scale of the gradient, so a step of ``lr`` in ``z`` is a step of
    ``lr * std`` in ``x``; ``mean((z - z0)^2) = mean((x - x0)^2) / std^2`` and the
    total variation scales with ``1 / std``. Adam's ``eps`` (1e-8) is the only part
    that does not convert exactly.

    Args:
        std: the normalisation's standard deviation (Fashion-MNIST: 0.353).
        lr, mse_weight, hf_weight: the settings in normalised units (defaults: the
            paper's 0.005, 0.1 and 1e-8).

    Returns:
        ``{"lr", "mse_weight", "hf_weight"}`` in pixel units.
    """
    _check_positive(std=std, lr=lr)
    if mse_weight < 0 or hf_weight < 0:
        raise ParameterError("mse_weight and hf_weight must be >= 0")
    return {"lr": lr * std, "mse_weight": mse_weight / std ** 2, "hf_weight": hf_weight / std}


def high_frequency_penalty(d: torch.Tensor) -> torch.Tensor:
    """The input-space paper's smoothness penalty, per sample: the *sum* of absolute
    differences between horizontal and vertical neighbours of ``d [N, C, H, W]``
    (an anisotropic total variation that is not averaged over pixels).

    Returns:
        ``[N]``.
    """
    if d.dim() != 4:
        raise ParameterError(f"d must be [N, C, H, W], got {tuple(d.shape)}")
    dw = (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)
    dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
    return dw + dh


Penalty = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def optimization_attack(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                        steps: int = 512, lr: float = 0.005, mse_weight: float = 0.1,
                        hf_weight: float = 1e-8,
                        stop_loss: float | torch.Tensor | None = None, warmup: int = 32,
                        units: str = "normalized", clip: bool = False,
                        penalty: Penalty | None = None, penalty_weight: float = 0.0,
                        penalty_stop: float | None = None,
                        batch_size: int | None = None, return_steps: bool = False,
                        max_norm: float | None = None, norm: str = "l2"
                        ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The input-space paper's targeted optimisation attack, batched over samples.

    Reproduces ``create_adversarial`` of the paper's public code
    (``sec4_2_adversarial_attacks.py``): Adam (``torch.optim.Adam`` defaults, learning
    rate ``lr``) directly on the input, minimising

    ``CE(model(x'), target) + mse_weight * mean((x' - x)^2) + hf_weight * HF(x' - x)``

    where ``HF`` is :func:`high_frequency_penalty` of the *perturbation*. With
    ``units="normalized"`` (the paper's) the input, the step, the mean squared
    deviation and the penalty are all measured in the model's normalised units
    ``z = (x - mean) / std`` (read from its :class:`~mcutils.models.Normalize` layer);
    :func:`pixel_units` gives the equivalent pixel-space settings. Like the paper, the
    result is not clipped to the ``[0, 1]`` pixel box unless ``clip=True``. The weights
    take the memory format of the machine's speed plan for the duration
    (:func:`mcutils.core.runtime.prepare`), which changes results at float rounding only.

    Stopping rule, as in the paper: at step ``i`` (counting from 0) the cross-entropy
    is measured *before* the update; after the update, a sample stops when
    ``i > warmup`` and that cross-entropy was below its ``stop_loss`` (the paper passes
    the loss of the real target-class image at the other end of the path). The
    returned input is the one after that last update. Each sample follows exactly the
    trajectory it would follow alone (Adam is element-wise); stopped samples leave the
    batch, so the forward passes shrink as samples finish.

    Args:
        model: classifier on pixel inputs (its parameters are not modified).
        x: source images ``[N, C, H, W]`` in ``[0, 1]``.
        target: ``[N]`` target classes.
        steps: maximum number of Adam steps (paper: 512).
        lr: Adam learning rate, in ``units`` (paper: 0.005 normalised).
        mse_weight: lambda of the mean squared deviation, in ``units`` (paper: 0.1).
        hf_weight: weight of the high-frequency penalty, in ``units`` (paper: 1e-8).
        stop_loss: ``None`` (run all steps), a float or a ``[N]`` tensor.
        warmup: steps ``0..warmup`` never stop (paper: 32, i.e. at least 34 updates).
        units: ``"normalized"`` (the paper's) or ``"pixel"``.
        clip: keep the result inside the ``[0, 1]`` pixel box (not in the paper).
        penalty: optional differentiable ``f(x_pixel [n, ...], rows [n]) -> [n]`` added
            with ``penalty_weight`` (adaptive attacks; ``rows`` index into ``x``).
        penalty_weight: its weight.
        penalty_stop: with a penalty, a sample stops only when, in addition to the
            loss rule, its penalty is below this value (for a detector's decision
            value, 0: the detector calls it real).
        batch_size: chunk size over samples (``None``: the speed plan's inference batch
            size, or all at once with a ``penalty``, whose random draws are per call and
            must not depend on the machine's plan). Each sample's trajectory is its own,
            so the chunks change results at float rounding only; on one thread the
            plan's batch ran 1.38x as fast as 500 samples at once
            (``benchmarks/attacks.py``, small CNN).
        return_steps: also return the number of updates each sample took.
        max_norm: the bounded variant (not in the paper): after every update the
            perturbation is projected onto the ball of this radius in *pixel* units
            (``norm``: ``"l2"`` or ``"linf"``), so the attack compares with PGD at the
            same radius. ``None``: unbounded, as the paper.
        norm: the ball's norm.

    Returns:
        Adversarial images ``[N, C, H, W]`` in pixel units (and the ``[N]`` step counts).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ParameterError("x must be a tensor of images [N, C, H, W]")
    _check_inputs(x, target)
    _check_positive(lr=lr)
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    if not isinstance(warmup, int) or warmup < 0:
        raise ParameterError(f"warmup={warmup!r} must be a non-negative integer")
    if mse_weight < 0 or hf_weight < 0 or penalty_weight < 0:
        raise ParameterError("mse_weight, hf_weight and penalty_weight must be >= 0")
    if units not in ("normalized", "pixel"):
        raise ParameterError(f"units={units!r} is not known; valid values: normalized, pixel")
    if penalty_weight > 0 and penalty is None:
        raise ParameterError("penalty_weight > 0 needs a penalty function")
    if max_norm is not None:
        _check_norm(norm)
        _check_positive(max_norm=max_norm)
    dev = _model_device(model)
    x = x.detach().to(dev)
    target = target.to(dev)
    if units == "normalized":
        mean, std = input_normalization(model)
    else:
        mean = torch.zeros(1, x.shape[1], 1, 1, device=dev, dtype=x.dtype)
        std = torch.ones(1, x.shape[1], 1, 1, device=dev, dtype=x.dtype)
    lo, hi = (0 - mean) / std, (1 - mean) / std
    stop = None
    if stop_loss is not None:
        stop = torch.as_tensor(stop_loss, dtype=x.dtype, device=dev).expand(len(x)).clone()
    out = torch.empty_like(x)
    taken = torch.zeros(len(x), dtype=torch.long)
    if batch_size is None and penalty is None:
        batch_size = _prepare(model, x[:2]).batch_size
    chunk = batch_size or len(x)
    with _FrozenEval(model, example=x):
        for start in range(0, len(x), chunk):
            rows = torch.arange(start, min(start + chunk, len(x)), device=dev)
            z0 = (x[rows] - mean) / std
            z = z0.clone()
            adam = MaskedAdam(z, lr)
            active = torch.ones(len(rows), dtype=torch.bool, device=dev)
            for i in range(steps):
                idx = active.nonzero().flatten()
                if len(idx) == 0:
                    break
                with torch.enable_grad():
                    zi = z[idx].requires_grad_(True)
                    xi = zi * std + mean
                    ce = F.cross_entropy(model(xi), target[rows[idx]], reduction="none")
                    d = zi - z0[idx]
                    loss = ce + mse_weight * d.pow(2).flatten(1).mean(1)
                    if hf_weight:
                        loss = loss + hf_weight * high_frequency_penalty(d)
                    pen = None
                    if penalty is not None and (penalty_weight > 0 or penalty_stop is not None):
                        pen = penalty(xi, rows[idx])
                        loss = loss + penalty_weight * pen
                    (gi,) = torch.autograd.grad(loss.sum(), zi)
                g = torch.zeros_like(z)
                g[idx] = gi
                z = adam.step(z, g, active)
                if max_norm is not None:
                    z = z0 + _project((z - z0) * std, max_norm, norm) / std
                if clip:
                    z = torch.maximum(torch.minimum(z, hi), lo)
                taken[rows[idx].cpu()] += 1
                if stop is not None and i > warmup:
                    done = ce.detach() < stop[rows[idx]]
                    if penalty_stop is not None and pen is not None:
                        done &= pen.detach() < penalty_stop
                    active[idx[done]] = False
            out[rows] = z * std + mean
    adv = out.detach()
    return (adv, taken) if return_steps else adv


# ----------------------------------------------------------------------------- utilities
def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               **kwargs: Any) -> torch.Tensor:
    """Dispatch by name: ``fgsm``, ``pgd_linf``, ``pgd_l2``, ``cw`` or ``optim``.

    ``y`` is the true label for the untargeted attacks and the target for ``optim``
    (and for the others when ``targeted=True`` is passed).
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


def gradient_penalty_objective(eps: float, step_size: float | None = None, steps: int = 1,
                               penalty: float = 10.0, random_start: bool = True,
                               seed: int = 0
                               ) -> Callable[[Callable[[torch.Tensor], torch.Tensor],
                                              torch.Tensor, torch.Tensor], torch.Tensor]:
    """Zhao et al.'s robust training loss, as an ``(forward, x, y) -> loss`` objective.

    The official ``evasion_attack/train_robust_connection.py`` trains the robust end
    (and the robust paths) on the cross-entropy at a ``steps``-step L-inf PGD example
    (random start, signed steps of ``step_size``; there 1 step of 2/255 at 8/255) plus
    ``penalty`` times the sum over the batch of the squared input gradient of the
    batch-mean loss (``utils.train_examples_regularization``: ``10 * sum(grad_0 ** 2)``).
    Here the gradient is taken at the adversarial point and kept in the graph
    (``create_graph=True``), so the penalty trains the weights; the published code takes
    it without ``create_graph`` (a constant for the optimiser) and through the attack's
    projection only.

    Args:
        eps: L-inf radius (pixel units).
        step_size: the attack's step (default ``eps / 4``: 2/255 at 8/255).
        steps: attack steps.
        penalty: weight of the squared input-gradient term (0: plain adversarial loss).
        random_start: start from a uniform point of the ball.
        seed: seed of the random starts (one generator for the whole run).

    Returns:
        ``objective(forward, x, y)``: the scalar loss, differentiable in the weights that
        ``forward`` uses; the attack itself adds no gradient to them.
    """
    _check_positive(eps=eps)
    step = eps / 4 if step_size is None else step_size
    _check_positive(step_size=step)
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    if penalty < 0:
        raise ParameterError(f"penalty={penalty} must be >= 0")
    gen = torch.Generator().manual_seed(seed)

    def objective(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        delta = _random_start(x, eps, "linf", gen) if random_start else torch.zeros_like(x)
        delta = (x + delta).clamp(0, 1) - x
        for _ in range(steps):
            xa = (x + delta).requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(forward(xa), y, reduction="sum"), xa)
            delta = _project(delta + step * grad.sign(), eps, "linf")
            delta = (x + delta).clamp(0, 1) - x
        xa = (x + delta).detach().requires_grad_(True)
        loss = F.cross_entropy(forward(xa), y)
        if penalty:
            (grad,) = torch.autograd.grad(loss, xa, create_graph=True)
            loss = loss + penalty * (grad ** 2).sum()
        return loss

    return objective
