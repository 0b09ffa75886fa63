"""Repairing tampered models with a little clean ("bonafide") data: the repair methods.

Used by chapter 05 (and :func:`cached_curve` by chapter 06). Zhao et al. (2020) connect
two tampered models with a curve (:mod:`mcutils.curves`) trained on the bonafide data and
take a point inside it. This module holds that repair and the usual cheap alternatives;
the protocol that compares them fairly (the defender's data, budget and choices) is
chapter 05's (:mod:`mcutils.chapters.ch05_protocol`).

* the curve repair: a curve between the two tampered models trained on the bonafide data
  (:func:`cached_curve`), and the defender's choice of a point ``t`` on it from clean
  validation accuracy (:func:`select_t`);
* fine-tuning: continue training one tampered model (:func:`fine_tune`, a fixed number
  of steps of :func:`mcutils.training.sgd_steps`);
* fine-pruning (Liu et al. 2018): remove the channels of a conv layer that clean data
  activate least (:func:`mcutils.pruning.prune_filters`), then fine-tune;
* training from scratch: re-initialise the architecture (:func:`reinitialize`) and train
  on the bonafide data only (:func:`train_from_scratch`);
* noise baselines: the paper code's noisy midpoint of the two ends (:func:`midpoint_noise`)
  and relative Gaussian noise on one model (:func:`weight_noise`).

The trained repairs are cached by :mod:`mcutils.core.store` (:func:`cached_curve`,
:func:`cached_repair`), keyed by fingerprints of the models and the data.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device

if TYPE_CHECKING:
    from mcutils.data import ImageDataset

__all__ = [
    "REPAIRS",
    "cached_curve",
    "cached_repair",
    "fine_tune",
    "midpoint_noise",
    "reinitialize",
    "select_t",
    "train_from_scratch",
    "weight_noise",
]

#: The baselines :func:`cached_repair` trains (``"prune"`` is an alias of ``"fine_prune"``).
REPAIRS = ("fine_tune", "scratch", "prune", "fine_prune")


# ------------------------------------------------------------------ training baselines
def fine_tune(model: nn.Module, loader: Iterable, steps: int, lr: float = 0.01,
              optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
              device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
              schedule: str | None = None, channels_last: bool | None = None) -> nn.Module:
    """A copy of ``model`` trained for exactly ``steps`` batches of ``loader``.

    Args:
        model: the starting model (not modified).
        loader: ``(x, y)`` batches, cycled through.
        steps: optimiser steps.
        lr, momentum, weight_decay: SGD settings (``weight_decay`` is SGD's L2 term, the
            gradient of ``weight_decay / 2 * ||w||^2``, as the curves' penalty).
        optimizer: ``"sgd"`` or ``"adam"``.
        device: where to train.
        seed: seeds dropout and other randomness of the steps.
        progress: show a tqdm bar.
        schedule: a name in :data:`mcutils.training.SCHEDULES`, applied per step
            (:func:`mcutils.training.lr_factor`).
        channels_last: memory format while training (default: the machine's training
            plan, :func:`mcutils.core.runtime.prepare`); it changes results at rounding only.

    Channels pruned by :func:`mcutils.pruning.prune_filters` stay at zero
    (:func:`mcutils.pruning.masked_grad_hooks`). Returns the model in eval
    mode on the CPU.
    """
    from mcutils.training import SCHEDULES, lr_factor
    from mcutils.pruning import masked_grad_hooks
    from mcutils.training import sgd_steps

    if steps < 0:
        raise ParameterError(f"steps={steps} must be >= 0")
    if optimizer not in ("sgd", "adam"):
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: sgd, adam")
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule={schedule!r} is not known; valid values: {SCHEDULES}")
    if lr <= 0 or weight_decay < 0:
        raise ParameterError(f"need lr > 0 and weight_decay >= 0 (got {lr}, {weight_decay})")
    net = copy.deepcopy(model)
    handles = masked_grad_hooks(net)
    try:
        if steps:
            sgd_steps(net, loader, steps, lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay,
                      lr_factor=(lambda k: lr_factor(schedule, k, steps)) if schedule else None,
                      device=get_device(device), seed=seed, progress=progress,
                      desc="fine-tune", channels_last=channels_last)
    finally:
        for h in handles:
            h.remove()
    return net.cpu().eval()


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer's parameters reset (seeded); buffers like
    ``Normalize`` statistics are kept (BatchNorm statistics are reset with their layer)."""
    net = copy.deepcopy(model)
    torch.manual_seed(seed)
    for mod in net.modules():
        if hasattr(mod, "reset_parameters") and mod is not net:
            mod.reset_parameters()
    return net


def train_from_scratch(model: nn.Module, loader: Iterable, steps: int, lr: float = 0.01,
                       optimizer: str = "sgd", device: str | torch.device = "cpu",
                       seed: int = 0, progress: bool = False, weight_decay: float = 0.0,
                       momentum: float = 0.9, schedule: str | None = None) -> nn.Module:
    """Re-initialise ``model``'s architecture and train it for ``steps`` batches
    (the settings of :func:`fine_tune`)."""
    return fine_tune(reinitialize(model, seed), loader, steps, lr=lr, optimizer=optimizer,
                     momentum=momentum, weight_decay=weight_decay, device=device, seed=seed,
                     progress=progress, schedule=schedule)


# ------------------------------------------------------------------ noise baselines
@torch.no_grad()
def weight_noise(model: nn.Module, std: float, seed: int = 0, relative: bool = True
                 ) -> nn.Module:
    """A copy of ``model`` with Gaussian noise on every parameter.

    Args:
        model: the model.
        std: noise standard deviation; with ``relative`` a fraction of each tensor's
            RMS value (so all layers are perturbed alike).
        seed: seed of the noise.
        relative: scale the noise per tensor.
    """
    if std < 0:
        raise ParameterError(f"std={std} must be >= 0")
    net = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        scale = std * (float(p.pow(2).mean().sqrt()) if relative else 1.0)
        p.add_(torch.randn(p.shape, generator=gen).to(p) * scale)
    return net.eval()


@torch.no_grad()
def midpoint_noise(model_a: nn.Module, model_b: nn.Module, seed: int = 0, scale: float = 0.5,
                   bn_loader: Iterable | None = None) -> nn.Module:
    """The noise baseline of Zhao et al.'s code (``aver_weights.py``): the midpoint of two
    models plus element-wise Gaussian noise with standard deviation ``scale * |b - a|``
    (``scale = 0.5``: ``N(0, |theta_1 - theta_0| / 2)``, as there).

    It asks whether a random point as far from the ends as a curve's middle does as well
    as the trained curve. Buffers are the ends' midpoint; a model with BatchNorm needs
    ``bn_loader`` (clean batches) to recompute its statistics.

    Returns:
        A new model in eval mode on the CPU.
    """
    from mcutils.curves import has_batchnorm, interpolate_states, recompute_bn

    if scale < 0:
        raise ParameterError(f"scale={scale} must be >= 0")
    if has_batchnorm(model_a) and bn_loader is None:
        raise ParameterError("the model has BatchNorm: pass bn_loader so that the noisy "
                             "model's statistics are recomputed")
    sa = {k: v.detach().cpu() for k, v in model_a.state_dict().items()}
    sb = {k: v.detach().cpu() for k, v in model_b.state_dict().items()}
    state = interpolate_states(sa, sb, 0.5)
    gen = torch.Generator().manual_seed(seed)
    for name, _ in model_a.named_parameters():
        std = scale * (sb[name] - sa[name]).abs()
        state[name] = state[name] + torch.randn(std.shape, generator=gen) * std
    net = copy.deepcopy(model_a).cpu()
    net.load_state_dict(state)
    if bn_loader is not None:
        recompute_bn(net, bn_loader, "cpu")
    return net.eval()


# ---------------------------------------------------------------------- cached runs
def cached_curve(start: nn.Module, end: nn.Module, bonafide: ImageDataset, steps: int,
                 lr: float = 0.05, weight_decay: float = 0.0, curve: str = "bezier",
                 num_bends: int = 3, batch_size: int = 128, schedule: str | None = None,
                 seed: int = 0, device: str = "cpu", progress: bool = False,
                 return_info: bool = False, momentum: float = 0.9, init: str = "linear"):
    """A :class:`~mcutils.curves.CurveModel` between ``start`` and ``end`` trained on
    ``bonafide`` for ``steps`` batches (SGD), cached by :mod:`mcutils.core.store`.

    The batch size is ``min(batch_size, len(bonafide))``; the penalty ``weight_decay``
    is on ``w(t)`` (see :func:`mcutils.curves.train_curve`). The cache key holds
    fingerprints of both endpoints and of the data, so a curve is never reused for other
    models or data. ``init`` is where the inner bends start
    (:class:`~mcutils.curves.CurveModel`: ``"linear"``, on the segment, or ``"random"``,
    a fresh initialisation seeded by ``seed``).
    """
    from mcutils.core.store import code_version, fingerprint, load_or_train
    from mcutils.curves import CurveModel, train_curve
    from mcutils.data import TensorLoader

    config = dict(name="curve", ends=fingerprint(start, end),
                  data=fingerprint(bonafide.x, bonafide.y), steps=steps, lr=lr,
                  weight_decay=weight_decay, curve=curve, num_bends=num_bends,
                  batch_size=batch_size, schedule=schedule, seed=seed)
    if momentum != 0.9:
        config["momentum"] = momentum
    if init != "linear":
        config["init"] = init

    def build() -> nn.Module:
        return CurveModel(start, start, end, curve, num_bends=num_bends, init=init,
                          init_seed=seed)

    def fit(cm: nn.Module) -> None:
        loader = TensorLoader(bonafide, min(batch_size, len(bonafide)), shuffle=True, seed=seed)
        train_curve(cm, loader, steps=steps, lr=lr, weight_decay=weight_decay,
                    momentum=momentum, schedule=schedule, device=device, seed=seed,
                    progress=progress)

    return load_or_train(config, build, fit, return_info=return_info,
                         code=code_version(train_curve))


def cached_repair(method: str, model: nn.Module, bonafide: ImageDataset, steps: int,
                  lr: float = 0.01, batch_size: int = 128, prune_fraction: float = 0.5,
                  seed: int = 0, device: str = "cpu", progress: bool = False,
                  weight_decay: float = 0.0, schedule: str | None = None,
                  momentum: float = 0.9, prune_layer: str | None = None,
                  return_info: bool = False):
    """A baseline repair of ``model`` with ``bonafide`` data for ``steps`` batches, cached.

    Args:
        method: ``"fine_tune"``, ``"scratch"`` (re-initialise, then train) or
            ``"fine_prune"`` (alias ``"prune"``: :func:`mcutils.pruning.prune_filters` on
            the bonafide data, then fine-tune).
        model: the tampered model.
        bonafide: the clean data.
        steps, lr, batch_size, weight_decay, schedule, momentum: the training budget and
            settings (SGD; batch size ``min(batch_size, len(bonafide))``).
        prune_fraction, prune_layer: what ``"fine_prune"`` removes.
        seed: seed of shuffling and re-initialisation.

    ``"scratch"`` does not depend on the tampered weights: its key is the fingerprint of
    the re-initialised network, so every section that trains the same architecture from
    scratch on the same data shares one checkpoint.
    """
    from mcutils.core.store import code_version, fingerprint, load_or_train
    from mcutils.data import TensorLoader
    from mcutils.pruning import _channel_paths, masked_grad_hooks, prune_filters
    from mcutils.training import sgd_steps

    if method not in REPAIRS:
        raise ParameterError(f"method={method!r} is not known; valid values: {', '.join(REPAIRS)}")
    method = "fine_prune" if method == "prune" else method
    start = reinitialize(model, seed) if method == "scratch" else model
    config = dict(name=f"repair_{method}", model=fingerprint(start),
                  data=fingerprint(bonafide.x, bonafide.y), steps=steps, lr=lr,
                  batch_size=batch_size, seed=seed, weight_decay=weight_decay,
                  schedule=schedule, momentum=momentum,
                  prune_fraction=prune_fraction if method == "fine_prune" else None,
                  prune_layer=prune_layer if method == "fine_prune" else None)
    batch = min(batch_size, len(bonafide))
    loader = TensorLoader(bonafide, batch, shuffle=True, seed=seed)
    kw = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, schedule=schedule,
              device=device, seed=seed, progress=progress)

    def fit(_net: nn.Module) -> nn.Module:
        if method == "fine_prune":
            pruned = prune_filters(model, TensorLoader(bonafide, batch), fraction=prune_fraction,
                                   layer=prune_layer)
            return fine_tune(pruned, loader, steps, **kw)
        return fine_tune(start, loader, steps, **kw)

    return load_or_train(config, lambda: copy.deepcopy(model), fit, return_info=return_info,
                         code=code_version(fine_tune, sgd_steps, reinitialize, prune_filters,
                                           _channel_paths, masked_grad_hooks))


# ------------------------------------------------------------- choosing the point
def select_t(ts: Sequence[float], val_accuracy: Sequence[float], tolerance: float = 0.02,
             target: float = 0.5) -> float:
    """The defender's choice of a point on a curve, from clean validation data only.

    Returns the ``t`` nearest ``target`` whose validation accuracy is at least the
    better endpoint's minus ``tolerance``; among equally near points, the more accurate
    (then the smaller ``t``). The endpoints qualify by definition, so when no inner point
    does, an endpoint is returned: the repair then keeps a tampered model, and the
    attack success shows it.

    Args:
        ts: the evaluated points; must include 0 and 1.
        val_accuracy: clean validation accuracy at each point.
        tolerance: how much accuracy the defender gives up (0.02 = 2 points).
        target: the preferred point (the middle of the curve, farthest from both ends).
    """
    t = np.asarray(ts, dtype=float)
    acc = np.asarray(val_accuracy, dtype=float)
    if t.shape != acc.shape or t.ndim != 1:
        raise ParameterError("ts and val_accuracy must be 1-D and of one length")
    if not (np.isclose(t, 0).any() and np.isclose(t, 1).any()):
        raise ParameterError("ts must include both endpoints, 0 and 1")
    if tolerance < 0:
        raise ParameterError(f"tolerance={tolerance} must be >= 0")
    best_end = max(acc[np.isclose(t, 0)].max(), acc[np.isclose(t, 1)].max())
    ok = np.flatnonzero(acc >= best_end - tolerance - 1e-12)
    order = sorted(ok, key=lambda i: (round(abs(t[i] - target), 9), -acc[i], t[i]))
    return float(t[order[0]])
