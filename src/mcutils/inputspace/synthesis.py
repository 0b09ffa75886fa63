"""Synthetic inputs by feature visualisation (:func:`synthesize`, :func:`synthetic_pairs`)
and the units in which inputs are optimised (:func:`input_normalization`).

**Units.** Every model of the book starts with a :class:`mcutils.models.Normalize` layer,
so data, paths and bypasses live in *pixel space* ``[0, 1]``. The paper's code feeds
normalised tensors ``z = (x - mean) / std`` to models without such a layer, so its step
sizes, noise scales, weight decay and penalties are in *normalised* units. The input
optimisers here take ``space="normalized"`` to run in those units exactly: they optimise
``z`` and feed ``x = mean + std * z`` (mean and std read from the model's own
``Normalize`` layer by :func:`input_normalization`) to the model; results are returned
in pixel space.

:data:`FVO_PAPER` holds the paper's feature-visualisation settings (section 4.3,
normalised units) and :data:`FVO_PAPER_EVOLUTION` those of its appendix F.1 script.

Used by chapters 01 and 03.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_nonneg as _check_nonneg
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import FrozenEval as _FrozenEval
from mcutils.core.runtime import model_device as _model_device
from mcutils.training import MaskedAdam

__all__ = ["total_variation", "synthesize", "input_normalization", "SyntheticPairs",
           "synthetic_pairs", "synthetic_pairs_at", "penalty_gradient_ratio", "FVO_PAPER",
           "FVO_PAPER_EVOLUTION", "SPACES"]

SPACES = ("pixel", "normalized")
TV_REDUCTIONS = ("mean", "sum")

#: Feature visualisation as in the paper's code (``sec4_3_untrained_model.py``), in
#: normalised units: Adam with learning rate 0.05 and weight decay 1e-7, up to 8192
#: steps, stop once the class loss is below 0.0005 (keeping the best input seen), start
#: from ``0.01 * N(0, 1)`` in normalised space (the dataset mean plus a little noise), and
#: a smoothness penalty of 2.5e-7 times the *summed* absolute neighbour differences for
#: the first input of a pair (``A``) and none for the second (``C``).
FVO_PAPER: dict = dict(steps=8192, lr=0.05, stop_loss=5e-4, init_std=0.01, weight_decay=1e-7,
                       tv_weight=2.5e-7, tv_reduction="sum", space="normalized", box=None)

#: The appendix F.1 script (``appF1_barrier_evolution.py``): as :data:`FVO_PAPER`, but
#: up to 4096 steps and stopping at a class loss of 0.005.
FVO_PAPER_EVOLUTION: dict = dict(FVO_PAPER, steps=4096, stop_loss=5e-3)


def total_variation(x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Anisotropic total variation per image.

    Args:
        x: ``[N, C, H, W]``.
        reduction: ``"mean"`` (default): mean absolute neighbour difference, summed over
            the two directions; ``"sum"``: the sum of all absolute neighbour differences,
            as the paper's smoothness penalty (its weights are for this reduction).

    Returns:
        ``[N]``.
    """
    if reduction not in TV_REDUCTIONS:
        raise ParameterError(f"reduction={reduction!r} is not known; valid values: "
                             f"{', '.join(TV_REDUCTIONS)}")
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1)
    if reduction == "sum":
        return dh.sum(1) + dw.sum(1)
    return dh.mean(1) + dw.mean(1)


def input_normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(mean, std)`` of a model's leading normalisation layer.

    The book's models are ``nn.Sequential(Normalize(mean, std), net)``; the first
    :class:`mcutils.models.Normalize` module found is used. A model without one takes
    its inputs as they are: ``(0, 1)``.

    Returns:
        ``(mean, std)``, each ``[1, C, 1, 1]`` (or ``[1, 1, 1, 1]``) on the CPU, so that
        ``z = (x - mean) / std`` is what the network after that layer sees.
    """
    from mcutils.models import Normalize

    for module in model.modules():
        if isinstance(module, Normalize):
            return module.mean.detach().cpu().clone(), module.std.detach().cpu().clone()
    return torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)


class _Space:
    """Conversion between pixel space and the space an optimiser works in."""

    def __init__(self, model: nn.Module, space: str, device: torch.device):
        if space not in SPACES:
            raise ParameterError(f"space={space!r} is not known; valid values: {', '.join(SPACES)}")
        self.normalized = space == "normalized"
        mean, std = input_normalization(model) if self.normalized else (torch.zeros(1), torch.ones(1))
        self.mean = mean.to(device).view(1, -1, 1, 1)
        self.std = std.to(device).view(1, -1, 1, 1)

    def to_pixel(self, z: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * z if self.normalized else z

    def from_pixel(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.normalized else x

    def clamp(self, z: torch.Tensor, box: tuple[float, float] | None) -> torch.Tensor:
        """Keep the pixel values of ``z`` inside ``box`` (no-op for ``None``)."""
        if box is None:
            return z
        if not self.normalized:
            return z.clamp(box[0], box[1])
        return self.from_pixel(self.to_pixel(z).clamp(box[0], box[1]))


def _check_box(box: tuple[float, float] | None) -> tuple[float, float] | None:
    if box is None:
        return None
    if len(box) != 2 or not box[0] < box[1]:
        raise ParameterError(f"box={box!r} must be None or (low, high) with low < high")
    if math.isinf(box[0]) and math.isinf(box[1]):
        return None
    return (float(box[0]), float(box[1]))


def _fvo(model: nn.Module, targets: torch.Tensor, shape: Sequence[int], steps: int, lr: float,
         tv_weight: float | torch.Tensor, stop_loss: float | None, init_std: float,
         generator: torch.Generator | None, box: tuple[float, float] | None, progress: bool,
         space: str, weight_decay: float, tv_reduction: str,
         taken: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature visualisation core: ``(best x [N, ...] pixel, best loss [N], steps used [N])``.

    ``taken`` (a dict whose keys are step budgets below ``steps``) receives, under each
    key ``k``, the triple that a run with ``steps=k`` returns. Such a run is this run's
    first ``k`` steps followed by one evaluation of the iterate ``z_k``, which is what
    step ``k`` of this run evaluates first, so the triple is read there."""
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.dim() != 1 or len(targets) == 0:
        raise ParameterError("targets must be a non-empty 1-D tensor of classes")
    if len(shape) != 3:
        raise ParameterError(f"shape must be (C, H, W), got {tuple(shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    _check_positive(lr=lr)
    _check_nonneg(init_std=init_std, weight_decay=weight_decay)
    if tv_reduction not in TV_REDUCTIONS:
        raise ParameterError(f"tv_reduction={tv_reduction!r} is not known; valid values: "
                             f"{', '.join(TV_REDUCTIONS)}")
    box = _check_box(box)
    n = len(targets)
    tvw = torch.as_tensor(tv_weight, dtype=torch.float32)
    if tvw.dim() == 0:
        _check_nonneg(tv_weight=float(tvw))
        tvw = tvw.expand(n)
    elif tvw.shape != (n,) or bool((tvw < 0).any()):
        raise ParameterError(f"tv_weight must be a number >= 0 or a [{n}] tensor of them")
    device = _model_device(model)
    sp = _Space(model, space, device)
    noise = init_std * torch.randn(n, *shape, generator=generator)
    if sp.normalized:
        z = noise.to(device)
    else:
        z = (noise + 0.5).to(device)
    z = sp.clamp(z, box)
    tgt = targets.to(device)
    tvw = tvw.to(device)
    use_tv = bool((tvw > 0).any())
    best = z.clone()
    best_loss = torch.full((n,), math.inf, device=device)
    used = torch.full((n,), steps, dtype=torch.long)
    adam = MaskedAdam(z, lr)
    active = torch.ones(n, dtype=torch.bool, device=device)
    wanted = set() if taken is None else {k for k in taken if k < steps}
    with _FrozenEval(model, example=z), torch.enable_grad():
        for step in tqdm(range(steps), desc="synthesize", disable=not progress, leave=False):
            idx = active.nonzero().flatten()
            za = z.index_select(0, idx).requires_grad_(True)
            ce = F.cross_entropy(model(sp.to_pixel(za)).float(), tgt.index_select(0, idx),
                                 reduction="none")
            obj = ce + tvw.index_select(0, idx) * total_variation(za, tv_reduction) if use_tv else ce
            (ga,) = torch.autograd.grad(obj.sum(), za)
            ce = ce.detach()
            improved = ce < best_loss.index_select(0, idx)
            rows = idx[improved]
            best[rows] = za.detach()[improved]
            best_loss[rows] = ce[improved]
            if stop_loss is not None:
                done = ce < stop_loss
                if done.any():
                    used[idx[done].cpu()] = step
                    active[idx[done]] = False
            if step in wanted:
                taken[step] = (sp.to_pixel(best).detach().cpu().clone(),
                               best_loss.cpu().clone(), used.clamp_max(step))
            if stop_loss is not None and not active.any():
                break
            g = torch.zeros_like(z)
            g[idx] = ga
            if weight_decay:
                g[idx] += weight_decay * z.index_select(0, idx)
            z = sp.clamp(adam.step(z, g, active), box)
        with torch.inference_mode():
            idx = active.nonzero().flatten()
            if len(idx):
                ce = F.cross_entropy(model(sp.to_pixel(z[idx])).float(), tgt[idx],
                                     reduction="none")
                improved = ce < best_loss[idx]
                best[idx[improved]] = z[idx][improved]
                best_loss[idx[improved]] = ce[improved]
    out = sp.to_pixel(best).detach().cpu(), best_loss.cpu(), used
    if taken is not None:
        for k in taken:  # the budgets reached after every input had stopped, and steps
            if k not in wanted or taken[k] is None:
                taken[k] = (out[0], out[1], out[2].clamp_max(k))
    return out


def synthesize(model: nn.Module, targets: torch.Tensor, shape: Sequence[int], steps: int = 200,
               lr: float = 0.05, tv_weight: float | torch.Tensor = 0.0,
               stop_loss: float | None = 0.01, init_std: float = 0.1,
               generator: torch.Generator | None = None,
               box: tuple[float, float] | None = (0.0, 1.0), progress: bool = False,
               space: str = "pixel", weight_decay: float = 0.0, tv_reduction: str = "mean"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic inputs by feature visualisation, batched over many targets.

    Runs Adam on ``CE(model(x), target) + tv_weight * TV(x)`` (plus the L2 weight decay
    of ``torch.optim.Adam`` when ``weight_decay > 0``), keeping the pixel values inside
    ``box`` after each step. Each input stops once its cross-entropy falls below
    ``stop_loss``, and the input with the lowest cross-entropy seen is kept. Inputs do
    not interact (eval mode, per-element Adam), so a batch equals running each alone;
    only the inputs still active are evaluated at each step. The weights take the memory
    format of the machine's speed plan for the duration (:func:`mcutils.core.runtime.prepare`),
    which changes results at float rounding only.

    Args:
        model: the classifier (pixel-space input).
        targets: ``[N]`` classes to synthesise.
        shape: ``(C, H, W)`` of one input.
        steps: maximum number of steps.
        lr: Adam learning rate, in the units of ``space``.
        tv_weight: weight of the total-variation penalty (a number, or a ``[N]`` tensor
            with one weight per input).
        stop_loss: early-stopping threshold per input (``None``: run all steps).
        init_std: standard deviation of the initial noise, in the units of ``space``.
        generator: seeded randomness for the initial noise.
        box: pixel range kept (``None``: unbounded).
        progress: show a tqdm bar.
        space: ``"pixel"`` (default): optimise pixels, starting from grey ``0.5`` plus
            noise; ``"normalized"``: optimise the model's normalised input
            ``(x - mean) / std`` (:func:`input_normalization`), starting from ``0`` plus
            noise (the dataset mean), as the paper's code does.
        weight_decay: Adam's L2 weight decay on the optimised variable.
        tv_reduction: ``"mean"`` or ``"sum"`` (see :func:`total_variation`); the penalty
            is computed in the units of ``space``.

    Returns:
        ``(x [N, C, H, W], loss [N])``: the best inputs (pixel space, CPU) and their
        cross-entropy.
    """
    x, loss, _ = _fvo(model, targets, shape, steps, lr, tv_weight, stop_loss, init_std,
                      generator, box, progress, space, weight_decay, tv_reduction)
    return x, loss


@dataclass
class SyntheticPairs:
    """Pairs of synthetic inputs made by :func:`synthetic_pairs` (pixel space, CPU).

    Attributes:
        a: ``[P, C, H, W]`` the first inputs, made *with* the smoothness penalty.
        c: ``[P, C, H, W]`` the second inputs, made *without* it.
        targets: ``[P]`` class of each pair.
        loss_a, loss_c: ``[P]`` class cross-entropy of each input.
        steps_a, steps_c: ``[P]`` optimisation steps each input took before it reached
            the stopping loss (the step budget if it never did).
    """

    a: torch.Tensor
    c: torch.Tensor
    targets: torch.Tensor
    loss_a: torch.Tensor
    loss_c: torch.Tensor
    steps_a: torch.Tensor
    steps_c: torch.Tensor

    def reached(self, stop_loss: float) -> torch.Tensor:
        """``[P]``: whether both inputs of a pair are below ``stop_loss``."""
        return (self.loss_a < stop_loss) & (self.loss_c < stop_loss)

    def __len__(self) -> int:
        return len(self.targets)


def synthetic_pairs(model: nn.Module, targets: torch.Tensor, shape: Sequence[int],
                    steps: int = 8192, lr: float = 0.05, stop_loss: float | None = 5e-4,
                    init_std: float = 0.01, weight_decay: float = 1e-7,
                    tv_weight: float = 2.5e-7, tv_reduction: str = "sum",
                    space: str = "normalized", box: tuple[float, float] | None = None,
                    generator: torch.Generator | None = None, progress: bool = False
                    ) -> SyntheticPairs:
    """Pairs of synthetic inputs of the same class, as the paper's code makes them.

    For each target, input ``A`` is synthesised with the smoothness penalty
    ``tv_weight * TV(z)`` and input ``C`` without it, from independent noise (all ``A``
    noise is drawn first, then all ``C`` noise, from one generator: the paper seeds
    once and makes ``A`` then ``C``). The defaults are the paper's (:data:`FVO_PAPER`,
    normalised units, no pixel box). All ``2 P`` inputs are optimised in one batch;
    each stops on its own.

    Args:
        model: the classifier (pixel-space input with a ``Normalize`` layer).
        targets: ``[P]`` class of each pair.
        shape: ``(C, H, W)`` of one input.
        steps, lr, stop_loss, init_std, weight_decay: as in :func:`synthesize`.
        tv_reduction, space, box, generator, progress: as in :func:`synthesize`.
        tv_weight: penalty weight of the ``A`` inputs (``C`` inputs get 0).

    Returns:
        A :class:`SyntheticPairs`.
    """
    return synthetic_pairs_at(model, targets, shape, [steps], lr, stop_loss, init_std,
                              weight_decay, tv_weight, tv_reduction, space, box, generator,
                              progress)[steps]


def synthetic_pairs_at(model: nn.Module, targets: torch.Tensor, shape: Sequence[int],
                       steps: Sequence[int], lr: float = 0.05, stop_loss: float | None = 5e-4,
                       init_std: float = 0.01, weight_decay: float = 1e-7,
                       tv_weight: float = 2.5e-7, tv_reduction: str = "sum",
                       space: str = "normalized", box: tuple[float, float] | None = None,
                       generator: torch.Generator | None = None, progress: bool = False
                       ) -> dict[int, SyntheticPairs]:
    """:func:`synthetic_pairs` at several step budgets from one run to the largest.

    A run with budget ``k`` is the first ``k`` steps of a longer run followed by one
    evaluation of the ``k``-th iterate, so one run to ``max(steps)`` gives every smaller
    budget's pairs as that budget's own run makes them (the same inputs, losses and step
    counts; tested), at the cost of the largest run alone. Budget curves use it.

    Args:
        steps: the step budgets (positive integers).
        The others: as in :func:`synthetic_pairs`.

    Returns:
        ``{budget: SyntheticPairs}``.
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.dim() != 1 or len(targets) == 0:
        raise ParameterError("targets must be a non-empty 1-D tensor of classes")
    budgets = sorted({int(k) for k in steps}) if len(steps) else []
    if not budgets or budgets[0] < 1 or any(int(k) != k for k in steps):
        raise ParameterError(f"steps={list(steps)!r} must be one or more positive integers")
    _check_nonneg(tv_weight=tv_weight)
    p = len(targets)
    weights = torch.cat([torch.full((p,), float(tv_weight)), torch.zeros(p)])
    taken: dict = {k: None for k in budgets}
    _fvo(model, targets.repeat(2), shape, budgets[-1], lr, weights, stop_loss, init_std,
         generator, box, progress, space, weight_decay, tv_reduction, taken)
    return {k: SyntheticPairs(a=x[:p], c=x[p:], targets=targets.clone(), loss_a=loss[:p],
                              loss_c=loss[p:], steps_a=used[:p], steps_c=used[p:])
            for k, (x, loss, used) in taken.items()}


def penalty_gradient_ratio(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                           tv_weight: float, tv_reduction: str = "sum",
                           space: str = "normalized") -> torch.Tensor:
    """How strongly the smoothness penalty pulls on each input, relative to the class loss.

    For each input ``x[i]`` (pixel space) the ratio of the Euclidean norms of the two
    gradients in the objective of :func:`synthesize`, both taken in the units of
    ``space``: ``|grad tv_weight * TV(z)| / |grad CE(model(x), target)|``. A ratio far
    below 1 means the penalty hardly changes the direction of the optimisation (Adam
    rescales each pixel's step, but the penalty's share of each pixel's gradient is
    about this ratio).

    Returns:
        ``[N]`` ratios (CPU).
    """
    _check_nonneg(tv_weight=tv_weight)
    targets = torch.as_tensor(targets, dtype=torch.long)
    if x.dim() != 4 or len(x) != len(targets):
        raise ParameterError("x must be [N, C, H, W] with one target per input")
    device = _model_device(model)
    sp = _Space(model, space, device)
    z = sp.from_pixel(x.detach().to(device).float()).requires_grad_(True)
    with _FrozenEval(model, example=z), torch.enable_grad():
        ce = F.cross_entropy(model(sp.to_pixel(z)).float(), targets.to(device), reduction="none")
        (g_ce,) = torch.autograd.grad(ce.sum(), z)
    z2 = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g_tv,) = torch.autograd.grad((tv_weight * total_variation(z2, tv_reduction)).sum(), z2)
    return (g_tv.flatten(1).norm(dim=1) / g_ce.flatten(1).norm(dim=1).clamp_min(1e-30)).cpu()
