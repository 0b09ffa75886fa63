"""Synthetic inputs by feature visualisation (:func:`synthesize`).

Used by chapters 01 and 03.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils._util import FrozenEval as _FrozenEval
from mcutils._util import MaskedAdam
from mcutils._util import bview as _bview
from mcutils._util import check_nonneg as _check_nonneg
from mcutils._util import check_positive as _check_positive
from mcutils._util import model_device as _model_device
from mcutils.runtime import ParameterError

__all__ = ["total_variation", "synthesize"]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image (mean absolute neighbour difference).

    Args:
        x: ``[N, C, H, W]``.

    Returns:
        ``[N]``.
    """
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def synthesize(model: nn.Module, targets: torch.Tensor, shape: Sequence[int], steps: int = 200,
               lr: float = 0.05, tv_weight: float = 0.0, stop_loss: float | None = 0.01,
               init_std: float = 0.1, generator: torch.Generator | None = None,
               box: tuple[float, float] = (0.0, 1.0), progress: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic inputs by feature visualisation, batched over many targets.

    Starts from noise ``0.5 + init_std * N(0, 1)`` (clipped to ``box``) and runs Adam
    on ``CE(model(x), target) + tv_weight * TV(x)``, clipping to ``box`` after each
    step. Each input stops once its cross-entropy falls below ``stop_loss``, and the
    input with the lowest cross-entropy seen is kept.

    Args:
        model: the classifier.
        targets: ``[N]`` classes to synthesise.
        shape: ``(C, H, W)`` of one input.
        steps: maximum number of steps.
        lr: Adam learning rate (pixel units).
        tv_weight: weight of the total-variation penalty (smoother images).
        stop_loss: early-stopping threshold per input (``None``: run all steps).
        init_std: standard deviation of the initial noise.
        generator: seeded randomness for the initial noise.
        box: pixel range.
        progress: show a tqdm bar.

    Returns:
        ``(x [N, C, H, W], loss [N])``: the best inputs (CPU) and their cross-entropy.
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.dim() != 1 or len(targets) == 0:
        raise ParameterError("targets must be a non-empty 1-D tensor of classes")
    if len(shape) != 3:
        raise ParameterError(f"shape must be (C, H, W), got {tuple(shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    _check_positive(lr=lr)
    _check_nonneg(tv_weight=tv_weight, init_std=init_std)
    device = _model_device(model)
    lo, hi = box
    x0 = 0.5 + init_std * torch.randn(len(targets), *shape, generator=generator)
    x = x0.clamp(lo, hi).to(device)
    tgt = targets.to(device)
    best = x.clone()
    best_loss = torch.full((len(targets),), math.inf, device=device)
    adam = MaskedAdam(x, lr)
    active = torch.ones(len(targets), dtype=torch.bool, device=device)
    with _FrozenEval(model), torch.enable_grad():
        for step in tqdm(range(steps), desc="synthesize", disable=not progress, leave=False):
            x.requires_grad_(True)
            ce = F.cross_entropy(model(x).float(), tgt, reduction="none")
            obj = ce + tv_weight * total_variation(x) if tv_weight else ce
            (g,) = torch.autograd.grad(obj.sum(), x)
            x = x.detach()
            ce = ce.detach()
            improved = ce < best_loss
            best = torch.where(_bview(improved, x), x, best)
            best_loss = torch.where(improved, ce, best_loss)
            if stop_loss is not None:
                active &= ce >= stop_loss
                if not active.any():
                    break
            x = adam.step(x, g, active).clamp(lo, hi)
        with torch.inference_mode():
            ce = F.cross_entropy(model(x).float(), tgt, reduction="none")
        improved = ce < best_loss
        best = torch.where(_bview(improved, x), x, best)
        best_loss = torch.where(improved, ce, best_loss)
    return best.cpu(), best_loss.cpu()
