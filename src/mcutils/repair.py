"""Repairing tampered models with a little clean ("bonafide") data: methods and protocol.

Used by chapter 05 (and :func:`cached_curve` by chapter 06). Zhao et al. (2020) connect
two tampered models with a curve (:mod:`mcutils.curves`) trained on the bonafide data and
take a point inside it. This module holds that repair, the usual cheap alternatives, and
the protocol that compares them fairly.

Methods (:data:`METHODS`):

* ``"bezier"``, ``"polychain"``: a curve between the two tampered models, trained on the
  bonafide data (:func:`cached_curve`); a point ``t`` is chosen by :func:`select_t`;
* ``"fine_tune"``: continue training one tampered model (:func:`fine_tune`);
* ``"fine_prune"``: fine-pruning (Liu et al. 2018): remove the channels of a conv layer
  that clean data activate least (:func:`prune_filters`), then fine-tune;
* ``"scratch"``: re-initialise the architecture and train on the bonafide data only;
* ``"noise"``: the paper code's noise baseline, the ends' midpoint plus element-wise
  Gaussian noise of standard deviation ``|theta_1 - theta_0| / 2`` (:func:`midpoint_noise`).

Protocol (the same for every method): the same bonafide images, the same weight decay
(SGD's L2 term for plain models, the L2 penalty on ``w(t)`` for curves: both the gradient
of ``wd/2 ||w||^2``), the same optimiser, schedule and learning-rate grid, and a budget in
epochs with a cap on steps (:func:`repair_budget`). Every choice (learning rate, the
curve's ``t``) uses only a clean validation split that the defender holds
(:class:`DefenderSplit`); the test images that measure accuracy and attack success are
never used for a choice. :func:`repair_sweep` runs the comparison over sizes and seeds,
:func:`sweep_summary` turns it into Student-t intervals over seeds.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import OnDevice, get_device, model_device

if TYPE_CHECKING:
    from mcutils.backdoor import Trigger
    from mcutils.data import ImageDataset

__all__ = [
    "CURVE_METHODS",
    "METHODS",
    "PAPER_BUDGET",
    "REPAIRS",
    "DefenderSplit",
    "RepairRun",
    "RepairSetup",
    "Scorer",
    "SweepResult",
    "cached_curve",
    "cached_repair",
    "defender_split",
    "fine_tune",
    "format_interval",
    "interval_word",
    "lr_for_size",
    "middle_gap",
    "midpoint_noise",
    "paired_seed_difference",
    "per_image_counts",
    "plot_frontier",
    "plot_vs_n",
    "prunable_convs",
    "prune_filters",
    "reinitialize",
    "repair_budget",
    "repair_claims",
    "repair_sweep",
    "run_repair",
    "select_t",
    "share_text",
    "sweep_summary",
    "train_from_scratch",
    "variant_sweep",
    "weight_noise",
]

CURVE_METHODS = ("bezier", "polychain")
METHODS = (*CURVE_METHODS, "fine_tune", "fine_prune", "scratch", "noise")
REPAIRS = ("fine_tune", "scratch", "prune", "fine_prune")
#: The papers' repair budget, as :func:`repair_budget` arguments: ``train.py`` of
#: ``IBM/model-sanitization`` (``backdoor/``) trains 100 epochs (its default) at batch 128
#: on the bonafide images tiled to 10,000 per epoch: 7,900 steps at every ``n``.
PAPER_BUDGET = dict(epochs=100, batch_size=128, max_steps=None, epoch_size=10_000)


# ------------------------------------------------------------------ training baselines
def _masked_grad_hooks(model: nn.Module) -> list:
    """Keep pruned (masked) parameters at zero during training."""
    handles = []
    for mod in model.modules():
        mask = getattr(mod, "_prune_mask", None)
        if mask is None:
            continue
        for p in (getattr(mod, "weight", None), getattr(mod, "bias", None)):
            if p is not None:
                shape = (-1,) + (1,) * (p.dim() - 1)
                m = mask.to(p.device).view(shape).to(p.dtype)
                handles.append(p.register_hook(lambda g, m=m: g * m))
    return handles


def _take(loader: Iterable, steps: int) -> Iterator:
    """Cycle through ``loader`` for ``steps`` batches."""
    done = 0
    while done < steps:
        empty = True
        for batch in loader:
            empty = False
            if done >= steps:
                return
            yield batch
            done += 1
        if empty:
            raise ParameterError("the loader is empty")


def _sgd_steps(net: nn.Module, loader: Iterable, steps: int, lr: float, optimizer: str,
               momentum: float, weight_decay: float, schedule: str | None,
               device: torch.device, seed: int, progress: bool, desc: str,
               channels_last: bool | None = None) -> None:
    """``steps`` optimiser steps of cross-entropy on ``loader`` (in place, train mode).

    Runs under the machine's training plan (:func:`mcutils.core.runtime.prepare`, chosen at the
    first batch as in :func:`mcutils.training.train`): the memory format only, which
    changes results at float rounding; the weights' layout is restored afterwards.
    """
    from mcutils.core.runtime import prepare, prepared
    from mcutils.curves import lr_factor

    torch.manual_seed(seed)
    net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(schedule, k, steps))
             if schedule else None)
    plan = None
    with contextlib.ExitStack() as layout:
        for x, y in tqdm(_take(loader, steps), total=steps, desc=desc, disable=not progress,
                         leave=False):
            if plan is None:
                plan = prepare(net, x, device, channels_last=channels_last, purpose="train")
                layout.enter_context(prepared(net, plan))
            loss = F.cross_entropy(net(plan.input(x)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    net.eval()


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
        schedule: a name in :data:`mcutils.curves.SCHEDULES`, applied per step.
        channels_last: memory format while training (default: the machine's training
            plan, :func:`mcutils.core.runtime.prepare`); it changes results at rounding only.

    Channels pruned by :func:`prune_filters` stay at zero. Returns the model in eval
    mode on the CPU.
    """
    from mcutils.curves import SCHEDULES

    if steps < 0:
        raise ParameterError(f"steps={steps} must be >= 0")
    if optimizer not in ("sgd", "adam"):
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: sgd, adam")
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule={schedule!r} is not known; valid values: {SCHEDULES}")
    if lr <= 0 or weight_decay < 0:
        raise ParameterError(f"need lr > 0 and weight_decay >= 0 (got {lr}, {weight_decay})")
    net = copy.deepcopy(model)
    handles = _masked_grad_hooks(net)
    try:
        if steps:
            _sgd_steps(net, loader, steps, lr, optimizer, momentum, weight_decay, schedule,
                       get_device(device), seed, progress, "fine-tune", channels_last)
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


# ------------------------------------------------------------------ fine-pruning
_PASS_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
                 nn.Tanh, nn.Sigmoid, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)
_PASS_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, torch.tanh,
                   torch.sigmoid, torch.flatten, F.max_pool2d, F.avg_pool2d,
                   F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout, F.dropout2d}
_PASS_METHODS = {"relu", "flatten", "view", "reshape", "contiguous", "clone"}
_CONSUMERS = (nn.Conv2d, nn.Linear)


def _channel_paths(model: nn.Module) -> dict[str, list[str] | None]:
    """For every Conv2d: the BatchNorm2d layers its output passes through before the next
    weight layer, or None when its channels also reach an addition, a concatenation or the
    output (a residual shortcut would carry a pruned channel around the block)."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # dynamic control flow: cannot be analysed
        raise ParameterError(f"the model cannot be traced by torch.fx ({exc}); pass layer= a "
                             "conv whose output channels reach no residual addition") from exc
    mods = dict(gm.named_modules())
    out: dict[str, list[str] | None] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods[node.target], nn.Conv2d):
            continue
        bns: list[str] = []
        ok, flat = True, False
        frontier, seen = list(node.users), set()
        while frontier and ok:
            u = frontier.pop()
            if u in seen:
                continue
            seen.add(u)
            if u.op == "call_module":
                m = mods[u.target]
                if isinstance(m, _CONSUMERS):
                    continue
                if isinstance(m, _PASS_MODULES):
                    if isinstance(m, nn.BatchNorm2d) and not flat:
                        bns.append(u.target)
                    flat = flat or isinstance(m, nn.Flatten)
                    frontier.extend(u.users)
                    continue
            elif u.op == "call_function" and u.target in _PASS_FUNCTIONS:
                flat = flat or u.target is torch.flatten
                frontier.extend(u.users)
                continue
            elif u.op == "call_method" and u.target in _PASS_METHODS:
                flat = flat or u.target in ("flatten", "view", "reshape")
                frontier.extend(u.users)
                continue
            ok = False  # add, cat, output or anything else
        out[node.target] = bns if ok else None
    return out


def prunable_convs(model: nn.Module) -> list[str]:
    """Names of the Conv2d layers whose output channels can be pruned: those that reach
    the next weight layer only through per-channel layers (BatchNorm, activations,
    pooling, dropout, flattening). A conv whose output is added to a residual shortcut is
    left out: zeroing its channels would not remove them, because the shortcut carries the
    same channels around the block. In a pre-activation ResNet the inner conv of each
    block (``conv1``) qualifies and ``conv2`` and the shortcut do not."""
    return [name for name, bns in _channel_paths(model).items() if bns is not None]


@torch.no_grad()
def prune_filters(model: nn.Module, loader: Iterable, fraction: float = 0.5,
                  layer: str | None = None, device: str | torch.device | None = None
                  ) -> nn.Module:
    """Fine-pruning's pruning step: silence the least-activated output channels of a conv.

    Args:
        model: the model (not modified; a pruned copy is returned).
        loader: clean batches on which mean activations are measured (after the
            following BatchNorm, if any, and a ReLU).
        fraction: share of the layer's channels to remove.
        layer: name of a conv from :func:`prunable_convs` (default: the last one).
        device: where to run.

    Returns:
        A copy whose pruned channels have zero conv weights and bias and, when a
        BatchNorm follows, zero BatchNorm scale and shift, so they output exactly zero
        whatever the statistics. Masks are kept on the modules (``_prune_mask``) so that
        :func:`fine_tune` keeps those parameters at zero.
    """
    if not 0.0 <= fraction < 1.0:
        raise ParameterError(f"fraction={fraction} must lie in [0, 1)")
    net = copy.deepcopy(model).eval()
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise ParameterError("the model has no Conv2d layer to prune")
    paths = _channel_paths(net)
    valid = [n for n, b in paths.items() if b is not None]
    if layer is None:
        if not valid:
            raise ParameterError("every conv of the model feeds a residual addition; "
                                 "nothing can be pruned")
        layer = valid[-1]
    if layer not in convs:
        raise ParameterError(f"layer={layer!r} is not a Conv2d of the model; "
                             f"valid values: {', '.join(valid)}")
    if paths.get(layer) is None:
        raise ParameterError(f"layer={layer!r} feeds a residual addition (its pruned channels "
                             f"would pass through the shortcut); valid values: {', '.join(valid)}")
    conv = convs[layer]
    bns = [dict(net.named_modules())[b] for b in paths[layer]]
    bns = [b for b in bns if b.num_features == conv.out_channels]
    device = get_device(device) if device is not None else model_device(net)
    net.to(device)
    total: torch.Tensor | None = None
    count = 0

    def hook(_mod, _inp, out):
        nonlocal total, count
        act = torch.relu(out).mean((0, 2, 3)) * len(out)
        total = act if total is None else total + act
        count += len(out)

    handle = (bns[-1] if bns else conv).register_forward_hook(hook)
    try:
        for x, *_ in loader:
            net(x.to(device))
    finally:
        handle.remove()
    if total is None:
        raise ParameterError("the loader is empty")
    mean = total / count
    k = int(fraction * conv.out_channels)
    mask = torch.ones(conv.out_channels, dtype=torch.bool, device=mean.device)
    mask[mean.argsort()[:k]] = False
    for mod in (conv, *bns):
        mod.weight[~mask] = 0
        if mod.bias is not None:
            mod.bias[~mask] = 0
        mod._prune_mask = mask.cpu()
    return net.cpu().eval()


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
                 return_info: bool = False, momentum: float = 0.9):
    """A :class:`~mcutils.curves.CurveModel` between ``start`` and ``end`` trained on
    ``bonafide`` for ``steps`` batches (SGD), cached by :mod:`mcutils.core.store`.

    The batch size is ``min(batch_size, len(bonafide))``; the penalty ``weight_decay``
    is on ``w(t)`` (see :func:`mcutils.curves.train_curve`). The cache key holds
    fingerprints of both endpoints and of the data, so a curve is never reused for other
    models or data.
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

    def build() -> nn.Module:
        return CurveModel(start, start, end, curve, num_bends=num_bends)

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
            ``"fine_prune"`` (alias ``"prune"``: :func:`prune_filters` on the bonafide
            data, then fine-tune).
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
                         code=code_version(fine_tune, _sgd_steps, reinitialize, prune_filters,
                                           _channel_paths))


# ------------------------------------------------------------------ the protocol
def repair_budget(n: int, epochs: int, batch_size: int = 64, max_steps: int | None = None,
                  epoch_size: int | None = None) -> tuple[int, int]:
    """The training budget for ``n`` bonafide images: ``(steps, batch)``.

    The batch is ``min(batch_size, n)``; the budget is ``epochs`` passes over the data,
    ``epochs * ceil(n / batch)`` steps, capped at ``max_steps``. Small sets get many
    epochs of few steps, large ones hit the cap (fewer epochs): data size and epochs are
    no longer confounded below the cap.

    ``epoch_size`` is the papers' budget: their code (``IBM/model-sanitization``,
    ``data.loaders_part_test``) tiles the ``n`` bonafide images into a training set of
    10,000, so one epoch is ``ceil(max(n, epoch_size) / batch_size)`` steps of
    ``batch_size`` samples whatever ``n`` is (100 epochs at batch 128: 7,900 steps). Below
    ``batch_size`` images a tiled batch repeats each image; here the batch holds each
    image once instead (the same expected gradient).
    """
    if (n < 1 or epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1)
            or (epoch_size is not None and epoch_size < 1)):
        raise ParameterError(f"need n, epochs, batch_size, max_steps, epoch_size >= 1 "
                             f"(got {n}, {epochs}, {batch_size}, {max_steps}, {epoch_size})")
    batch = min(batch_size, n)
    if epoch_size is None:
        steps = epochs * math.ceil(n / batch)
    else:
        steps = epochs * math.ceil(max(n, epoch_size) / batch_size)
    return (min(steps, max_steps) if max_steps is not None else steps), batch


def share_text(shares: Iterable[float]) -> str:
    """Percentages for prose: ``"2.5%"`` when all shares agree, else ``"0.6% to 2.5%"``
    (smallest to largest, two significant digits)."""
    v = np.asarray(list(shares), dtype=float)
    if v.size == 0 or not np.isfinite(v).all() or (v < 0).any():
        raise ParameterError("shares must be a non-empty list of finite values >= 0")

    def pct(x: float) -> str:
        return f"{float(f'{100 * x:.2g}'):g}%"

    lo, hi = pct(v.min()), pct(v.max())
    return lo if lo == hi else f"{lo} to {hi}"


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


@dataclass
class DefenderSplit:
    """The test split cut once: the defender's pool of clean images (bonafide sets and a
    validation split) and a held-out test set that measures the repairs.

    Attributes:
        pool: images from which bonafide sets are drawn.
        val: the defender's clean validation split (for every choice).
        test: held-out images for accuracy and attack success (never for a choice).
        rest: the remaining images (e.g. for fault and keep sets).
    """

    pool: ImageDataset
    val: ImageDataset
    test: ImageDataset
    rest: ImageDataset

    def bonafide(self, n: int, seed: int = 0) -> ImageDataset:
        """``n`` pool images drawn with ``seed``; for one seed smaller sets are nested in
        larger ones, and each seed is another draw."""
        if not 1 <= n <= len(self.pool):
            raise ParameterError(f"n={n} must lie in [1, {len(self.pool)}] (the pool size)")
        perm = torch.randperm(len(self.pool), generator=torch.Generator().manual_seed(seed))
        return self.pool.subset(perm[:n])


def defender_split(data: ImageDataset, pool_size: int, val_size: int, test_size: int,
                   seed: int = 0) -> DefenderSplit:
    """Cut ``data`` (a test split) into disjoint pool, validation, test and rest parts."""
    need = pool_size + val_size + test_size
    if min(pool_size, val_size, test_size) < 1 or need > len(data):
        raise ParameterError(f"pool_size + val_size + test_size = {need} must lie in "
                             f"[3, {len(data)}], each >= 1")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = np.cumsum([pool_size, val_size, test_size])
    return DefenderSplit(data.subset(perm[:cut[0]]), data.subset(perm[cut[0]:cut[1]]),
                         data.subset(perm[cut[1]:cut[2]]), data.subset(perm[cut[2]:]))


class Scorer:
    """Test metrics of a model: clean accuracy and, where given, the attack success rate
    of a backdoor trigger and the state of injected faults.

    Args:
        test: held-out test images.
        target, trigger: the backdoor (``asr`` is the share of triggered non-target test
            images sent to ``target``).
        faults: ``{"x", "y_fault", "y_true"}``: fault images, injected and true labels;
            adds ``fault_success`` (share taking the injected label), ``fault_restored``
            (share classified correctly again) and ``fault_hits`` (per image, 0/1).
        batch_size: evaluation batch (128 is fastest for small conv nets on 2 cores).
        device: where to evaluate (default: where each model is).

    Calling it on a model returns a dict; the model's mode and device are restored.
    """

    def __init__(self, test: ImageDataset, target: int | None = None,
                 trigger: Trigger | None = None, faults: Mapping[str, torch.Tensor] | None = None,
                 batch_size: int = 128, device: str | torch.device | None = None):
        if (target is None) != (trigger is None):
            raise ParameterError("give both target and trigger, or neither")
        self.x, self.y = test.x, test.y
        self.target, self.batch_size, self.device = target, batch_size, device
        self.x_trig = None
        if trigger is not None:
            keep = test.y != target
            if not keep.any():
                raise ParameterError("the test set holds no non-target images")
            self.x_trig = trigger.apply(test.x[keep])
        self.faults = None
        if faults is not None:
            missing = {"x", "y_fault", "y_true"} - set(faults)
            if missing:
                raise ParameterError(f"faults lacks {sorted(missing)}")
            self.faults = {k: faults[k] for k in ("x", "y_fault", "y_true")}

    @torch.inference_mode()
    def _pred(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        dev = model_device(net)
        return torch.cat([net(x[i:i + self.batch_size].to(dev)).argmax(1).cpu()
                          for i in range(0, len(x), self.batch_size)])

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        with OnDevice(model, self.device) as net:
            out: dict[str, Any] = {
                "accuracy": float((self._pred(net, self.x) == self.y).float().mean())}
            if self.x_trig is not None:
                out["asr"] = float((self._pred(net, self.x_trig) == self.target).float().mean())
            if self.faults is not None:
                p = self._pred(net, self.faults["x"])
                hits = p == self.faults["y_fault"]
                out["fault_success"] = float(hits.float().mean())
                out["fault_restored"] = float((p == self.faults["y_true"]).float().mean())
                out["fault_hits"] = tuple(int(h) for h in hits)
        return out


@dataclass(frozen=True)
class RepairSetup:
    """What every method of one comparison shares.

    Attributes:
        ends: the two tampered models (``fine_tune`` and ``fine_prune`` start from
            ``ends[fine_tune_end]``).
        val: the defender's clean validation split.
        epochs, max_steps, batch_size, epoch_size: the budget (:func:`repair_budget`;
            ``epoch_size=10_000`` with 100 epochs at batch 128 is the papers' budget).
        weight_decay: the L2 option, the same for every method.
        momentum, schedule: SGD momentum and the learning-rate schedule.
        curve_bends: bends of the curves (3: one free bend between the ends).
        ts: points at which a curve is evaluated on the validation split.
        t_tolerance: accuracy the defender gives up when choosing ``t`` (:func:`select_t`).
        prune_fraction: share of channels fine-pruning removes.
        fine_tune_end: which end the single-model baselines start from.
        eval_batch: evaluation batch size.
        device: where to train and evaluate.
    """

    ends: tuple[nn.Module, nn.Module]
    val: ImageDataset
    epochs: int = 50
    max_steps: int | None = 200
    batch_size: int = 64
    epoch_size: int | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str | None = "paper"
    curve_bends: int = 3
    ts: tuple[float, ...] = tuple(round(float(v), 4) for v in np.linspace(0, 1, 11))
    t_tolerance: float = 0.02
    prune_fraction: float = 0.5
    fine_tune_end: int = 0
    eval_batch: int = 128
    device: str = "cpu"

    def replace(self, **changes: Any) -> RepairSetup:
        """A copy with some fields changed (e.g. ``weight_decay=0.0`` for a variant)."""
        return dataclasses.replace(self, **changes)


@dataclass
class RepairRun:
    """One repair: the chosen model and what the defender saw while choosing it.

    ``criterion`` is the clean validation accuracy used to compare learning rates: of the
    model for the baselines, averaged over ``setup.ts`` for a curve (the curve's training
    objective is an average over ``t``). ``t`` is the chosen point of a curve (NaN
    otherwise) and ``models`` maps ``"chosen"`` (and ``"t=0.5"`` for curves) to models.
    """

    method: str
    n: int
    seed: int
    lr: float | None
    steps: int
    batch: int
    t: float
    val_accuracy: float
    criterion: float
    models: dict[str, nn.Module]
    profile: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _accuracy(model: nn.Module, data: ImageDataset, batch_size: int) -> float:
    from mcutils.data import TensorLoader

    with OnDevice(model) as net, torch.inference_mode():
        dev = model_device(net)
        correct = sum(int((net(x.to(dev)).argmax(1).cpu() == y).sum())
                      for x, y in TensorLoader(data, batch_size))
    return correct / len(data)


def run_repair(method: str, setup: RepairSetup, bonafide: ImageDataset, lr: float | None,
               seed: int = 0, progress: bool = False) -> RepairRun:
    """Run one method of :data:`METHODS` on ``bonafide`` with learning rate ``lr``.

    Trained models come from the cache when they exist. For a curve, the clean
    validation accuracy is measured at every ``setup.ts`` (BatchNorm statistics
    recomputed at each on the bonafide images) and ``t`` is chosen by :func:`select_t`.
    """
    from mcutils.curves import evaluate_curve
    from mcutils.data import TensorLoader

    if method not in METHODS:
        raise ParameterError(f"method={method!r} is not known; valid values: {', '.join(METHODS)}")
    if method != "noise" and (lr is None or lr <= 0):
        raise ParameterError(f"method {method!r} needs a learning rate > 0 (got {lr})")
    n = len(bonafide)
    steps, batch = repair_budget(n, setup.epochs, setup.batch_size, setup.max_steps,
                                 setup.epoch_size)
    bn_loader = TensorLoader(bonafide, batch)
    end = setup.ends[setup.fine_tune_end]
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    profile = None
    t = float("nan")
    if method in CURVE_METHODS:
        cm = cached_curve(setup.ends[0], setup.ends[1], bonafide, steps, lr=lr,
                          weight_decay=setup.weight_decay, curve=method,
                          num_bends=setup.curve_bends, batch_size=setup.batch_size,
                          schedule=setup.schedule, seed=seed, device=setup.device,
                          progress=progress, momentum=setup.momentum)
        seconds["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        profile = evaluate_curve(cm, list(setup.ts), TensorLoader(setup.val, setup.eval_batch),
                                 bn_loader=bn_loader)
        t = select_t(profile["t"], profile["accuracy"], setup.t_tolerance)
        models = {"chosen": cm.model_at(t, bn_loader), "t=0.5": cm.model_at(0.5, bn_loader)}
        val_acc = float(profile.loc[np.isclose(profile["t"], t), "accuracy"].iloc[0])
        criterion = float(profile["accuracy"].mean())
        seconds["select"] = time.perf_counter() - clock
    else:
        if method == "noise":
            model = midpoint_noise(setup.ends[0], setup.ends[1], seed=seed, bn_loader=bn_loader)
        else:
            model = cached_repair(method, end, bonafide, steps, lr=lr, batch_size=setup.batch_size,
                                  prune_fraction=setup.prune_fraction, seed=seed,
                                  device=setup.device, progress=progress,
                                  weight_decay=setup.weight_decay, schedule=setup.schedule,
                                  momentum=setup.momentum)
        seconds["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        models = {"chosen": model}
        val_acc = criterion = _accuracy(model, setup.val, setup.eval_batch)
        seconds["select"] = time.perf_counter() - clock
    return RepairRun(method, n, seed, lr, steps, batch, t, val_acc, criterion, models, profile,
                     seconds)


def lr_for_size(n: int, tuned: Mapping[int, float]) -> float:
    """The learning rate tuned at the size nearest ``n`` on a log scale (ties: the larger
    size)."""
    if not tuned:
        raise ParameterError("no tuned learning rates")
    size = min(tuned, key=lambda s: (abs(math.log(n / s)), -s))
    return tuned[size]


@dataclass
class SweepResult:
    """What :func:`repair_sweep` returns.

    Attributes:
        rows: one row per method (curves: also ``"<curve> (middle)"``, the point
            ``t = 0.5``), size ``n`` and seed, with ``lr``, ``steps``, ``t``,
            ``val_accuracy`` and the test metrics of the :class:`Scorer`.
        lrs: the learning rate used per method and size.
        tuning: validation criterion of every learning rate tried.
        profiles: validation accuracy along each curve (method, n, seed, t).
        seconds: wall time per run and stage (train or load, choose, score).
    """

    rows: pd.DataFrame
    lrs: pd.DataFrame
    tuning: pd.DataFrame
    profiles: pd.DataFrame
    seconds: pd.DataFrame

    def lr_table(self) -> dict[str, dict[int, float]]:
        """``{method: {n: lr}}`` for reuse in another sweep."""
        out: dict[str, dict[int, float]] = {}
        for r in self.lrs.itertuples():
            out.setdefault(r.method, {})[int(r.n)] = float(r.lr)
        return out


def repair_sweep(setup: RepairSetup, split: DefenderSplit, scorer: Callable[[nn.Module], dict],
                 methods: Sequence[str] = METHODS, sizes: Sequence[int] = (100,),
                 seeds: Sequence[int] = (0,), lrs: Sequence[float] = (0.01, 0.03, 0.1),
                 tune_sizes: Sequence[int] | None = None, tune_seed: int | None = None,
                 lr_table: Mapping[str, Mapping[int, float]] | None = None,
                 mid_rows: bool = True, progress: bool = True) -> SweepResult:
    """Run every method at every bonafide size and seed, under one protocol.

    Learning rates: for each method, each of ``lrs`` is tried on seed ``tune_seed``
    (default: the first seed) at each of ``tune_sizes`` (default: ``sizes``) and the one
    with the best clean validation criterion (:class:`RepairRun`) wins; a size uses the
    rate tuned at the nearest tuning size (:func:`lr_for_size`). With ``lr_table``
    (``{method: {n: lr}}``, e.g. another sweep's :meth:`SweepResult.lr_table`) nothing is
    tuned. The noise baseline has no learning rate.

    Args:
        setup: the shared protocol.
        split: the defender's data (bonafide draws and validation split).
        scorer: test metrics of a model (a :class:`Scorer`).
        methods, sizes, seeds: the grid; seed ``s`` draws the bonafide set and seeds the
            training.
        mid_rows: also score each curve at ``t = 0.5`` (method ``"<curve> (middle)"``).
        progress: a tqdm bar over the runs.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or not sizes or not seeds:
        raise ParameterError(f"methods {bad} unknown (valid: {', '.join(METHODS)}) or an "
                             "empty grid")
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ParameterError(f"lrs={list(lrs)} must be non-empty and positive")
    tune_sizes = list(tune_sizes or sizes)
    tune_seed = seeds[0] if tune_seed is None else tune_seed
    trained = [m for m in methods if m != "noise"]
    runs: dict[tuple, RepairRun] = {}
    tuning, lr_rows, timing = [], [], []
    jobs = []
    if lr_table is None:
        jobs += [(m, n, tune_seed, lr) for m in trained for n in tune_sizes for lr in lrs]
    bar = tqdm(total=len(jobs) + len(methods) * len(sizes) * len(seeds), desc="repairs",
               disable=not progress)

    def run(m: str, n: int, s: int, lr: float | None) -> RepairRun:
        key = (m, n, s, lr)
        if key not in runs:
            runs[key] = run_repair(m, setup, split.bonafide(n, s), lr, seed=s)
            timing.append(dict(method=m, n=n, seed=s, lr=lr, **runs[key].seconds))
        return runs[key]

    for m, n, s, lr in jobs:
        r = run(m, n, s, lr)
        tuning.append(dict(method=m, n=n, seed=s, lr=lr, criterion=r.criterion))
        bar.update(1)
    table: dict[str, dict[int, float]] = {}
    if lr_table is None:
        tdf = pd.DataFrame(tuning)
        for m in trained:
            table[m] = {}
            for n in tune_sizes:
                sub = tdf[(tdf.method == m) & (tdf.n == n)]
                table[m][n] = float(sub.loc[sub.criterion.idxmax(), "lr"])
    else:
        missing = [m for m in trained if m not in lr_table]
        if missing:
            raise ParameterError(f"lr_table has no learning rates for {missing}")
        table = {m: dict(lr_table[m]) for m in trained}
    # keep only tuning runs that the sweep reuses
    chosen = {(m, n, tune_seed, lr_for_size(n, table[m])) for m in trained for n in sizes}
    runs = {k: v for k, v in runs.items() if k in chosen}
    rows, profiles = [], []
    for s in seeds:
        for n in sizes:
            for m in methods:
                lr = None if m == "noise" else lr_for_size(n, table[m])
                r = run(m, n, s, lr)
                clock = time.perf_counter()
                base = dict(n=n, seed=s, lr=lr, steps=r.steps, batch=r.batch)
                rows.append(dict(method=m, **base, t=r.t, val_accuracy=r.val_accuracy,
                                 **scorer(r.models["chosen"])))
                if m in CURVE_METHODS and mid_rows:
                    rows.append(dict(method=f"{m} (middle)", **base, t=0.5,
                                     val_accuracy=float("nan"), **scorer(r.models["t=0.5"])))
                if r.profile is not None:
                    profiles.append(r.profile.assign(method=m, n=n, seed=s))
                timing.append(dict(method=m, n=n, seed=s, lr=lr,
                                   score=time.perf_counter() - clock))
                runs.pop((m, n, s, lr), None)
                bar.update(1)
    bar.close()
    for m in trained:
        for n in sizes:
            lr_rows.append(dict(method=m, n=n, lr=lr_for_size(n, table[m])))
    prof = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame()
    return SweepResult(pd.DataFrame(rows), pd.DataFrame(lr_rows, columns=["method", "n", "lr"]),
                       pd.DataFrame(tuning, columns=["method", "n", "seed", "lr", "criterion"]),
                       prof, pd.DataFrame(timing))


def sweep_summary(rows: pd.DataFrame, metrics: Mapping[str, str] | None = None
                  ) -> dict[str, dict[int, dict[str, dict[str, Any]]]]:
    """Student-t intervals over seeds: ``{method: {n: {short: interval}}}``.

    Args:
        rows: :attr:`SweepResult.rows` (or any frame with ``method``, ``n``, ``seed``).
        metrics: short name -> column (default ``{"acc": "accuracy", "asr": "asr"}``,
            the columns present).

    The keys ``n`` are Python ints; each interval is ``{"estimate", "ci", "n"}`` from
    :func:`mcutils.core.stats.seed_interval` (``n`` = number of seeds).
    """
    from mcutils.core.stats import seed_interval

    metrics = dict(metrics or {k: v for k, v in (("acc", "accuracy"), ("asr", "asr"))
                               if v in rows.columns})
    missing = [c for c in metrics.values() if c not in rows.columns]
    if missing:
        raise ParameterError(f"rows lack the columns {missing}")
    out: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for (method, n), grp in rows.groupby(["method", "n"], sort=False):
        out.setdefault(str(method), {})[int(n)] = {
            short: seed_interval(grp[col].to_numpy(float)) for short, col in metrics.items()}
    return out


def paired_seed_difference(rows: pd.DataFrame, method_a: str, method_b: str, n: int,
                           metric: str) -> dict[str, Any]:
    """Student-t interval over seeds of ``metric(a) - metric(b)`` at size ``n``, paired by
    seed (the two methods share each seed's bonafide draw)."""
    from mcutils.core.stats import seed_interval

    sub = rows[rows.n == n]
    a = sub[sub.method == method_a].set_index("seed")[metric]
    b = sub[sub.method == method_b].set_index("seed")[metric]
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ParameterError(f"no common seeds for {method_a!r} and {method_b!r} at n={n}")
    return seed_interval((a[common] - b[common]).to_numpy(float))


def plot_frontier(summary: Mapping[str, Mapping[int, Mapping[str, Mapping[str, Any]]]],
                  methods: Sequence[str] | None = None, x: str = "asr", y: str = "acc",
                  floor: float | None = None, ncols: int = 4, xlabel: str = "ASR",
                  ylabel: str = "clean accuracy"):
    """The accuracy-ASR frontier: one panel per ``n``, one point per method with its 95%
    intervals over seeds on both axes (from :func:`sweep_summary`).

    Args:
        summary: ``{method: {n: {"acc": interval, "asr": interval}}}``.
        methods: which methods, in legend order (default: all).
        x, y: the interval names on the axes.
        floor: a vertical line at this ``x`` (the trigger floor: the ASR of clean models).
        ncols: panels per row.
        xlabel, ylabel: axis labels.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    methods = list(methods or summary)
    sizes = sorted({n for m in methods for n in summary[m]})
    ncols = min(ncols, len(sizes))
    nrows = math.ceil(len(sizes) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.1 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    colors = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    markers = dict(zip(methods, "osD^vP*Xhp<>"))
    for ax, n in zip(axes.flat, sizes):
        for m in methods:
            if n not in summary[m]:
                continue
            px, py = summary[m][n][x], summary[m][n][y]

            def err(iv: Mapping[str, Any]) -> list[list[float]]:
                lo, hi = iv["ci"]
                if not (np.isfinite(lo) and np.isfinite(hi)):
                    return [[0.0], [0.0]]
                return [[iv["estimate"] - lo], [hi - iv["estimate"]]]

            ax.errorbar(px["estimate"], py["estimate"], xerr=err(px), yerr=err(py),
                        fmt=markers[m], color=colors[m], label=m, capsize=2, ms=5)
        if floor is not None:
            ax.axvline(floor, color="grey", ls=":", lw=1)
        ax.set_title(f"n = {n}")
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(sizes):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(methods), 5), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.05 * math.ceil(len(methods) / 5)))
    fig.tight_layout()
    return fig


def middle_gap(profiles: pd.DataFrame, method: str, n: int, t: float = 0.5
               ) -> dict[str, Any]:
    """How far the validation accuracy at ``t`` lies below the better end's, per seed.

    Args:
        profiles: :attr:`SweepResult.profiles` (``method``, ``n``, ``seed``, ``t``,
            ``accuracy``).
        method, n: which curves.
        t: the point (default: the middle).

    Returns:
        A Student-t interval over seeds of ``acc(t) - max(acc(0), acc(1))`` (negative:
        the point is less accurate than the better end).
    """
    from mcutils.core.stats import seed_interval

    sub = profiles[(profiles.method == method) & (profiles.n == n)]
    if sub.empty:
        raise ParameterError(f"no profiles for method {method!r} at n={n}")
    p = sub.pivot_table(index="seed", columns="t", values="accuracy")
    cols = {round(float(c), 6): c for c in p.columns}
    if not {0.0, 1.0, round(float(t), 6)} <= set(cols):
        raise ParameterError(f"the profiles lack t=0, t=1 or t={t}")
    gap = p[cols[round(float(t), 6)]] - p[[cols[0.0], cols[1.0]]].max(axis=1)
    return seed_interval(gap.to_numpy(float))


def plot_vs_n(series: Mapping[str, Mapping[int, Mapping[str, Any]]], ylabel: str = "ASR",
              ax: Any = None, floor: float | None = None):
    """One line per label: an interval (``{"estimate", "ci", "n"}``) at each bonafide size,
    drawn with its 95% interval, sizes on a log axis.

    Args:
        series: ``{label: {n: interval}}``.
        ylabel: the axis label.
        ax: a matplotlib axis (default: a new figure).
        floor: a horizontal line at this value (e.g. the trigger floor).

    Returns:
        The axis.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for label, per_n in series.items():
        ns = sorted(per_n)
        est = np.array([per_n[n]["estimate"] for n in ns], dtype=float)
        lo = np.array([per_n[n]["ci"][0] for n in ns], dtype=float)
        hi = np.array([per_n[n]["ci"][1] for n in ns], dtype=float)
        yerr = np.nan_to_num(np.stack([est - lo, hi - est]), nan=0.0)
        ax.errorbar(ns, est, yerr=yerr, marker="o", capsize=3, label=label)
    if floor is not None:
        ax.axhline(floor, color="grey", ls=":", lw=1, label="trigger floor")
    ax.set_xscale("log")
    ax.set_xlabel("bonafide images n")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def format_interval(iv: Mapping[str, Any], digits: int = 2) -> str:
    """``"0.81 [0.79, 0.83]"``: an interval as prose quotes it (``n/a`` for a missing end)."""
    def f(v: float) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"

    return f"{f(iv['estimate'])} [{f(iv['ci'][0])}, {f(iv['ci'][1])}]"


def interval_word(iv: Mapping[str, Any], above: str, below: str, neither: str,
                  threshold: float = 0.0) -> str:
    """A qualitative word computed from an interval: ``above`` when the whole 95% interval
    lies above ``threshold``, ``below`` when wholly below, else ``neither``."""
    lo, hi = (float(v) for v in iv["ci"])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return neither
    return above if lo > threshold else below if hi < threshold else neither


def repair_claims(rows: pd.DataFrame, end_accuracy: float, small_n: int, large_n: int,
                  fault_rows: pd.DataFrame | None = None,
                  aware_rows: pd.DataFrame | None = None, asr_max: float = 0.1,
                  max_drop: float = 0.05) -> list[dict[str, Any]]:
    """The claims of Zhao et al. (2020) that chapter 05 tests, as arguments of
    :meth:`mcutils.core.report.ChapterReport.claim` (``claim_id``, ``statement``, ``paper``,
    ``result``, ``threshold``, ``direction``). Every interval is a Student-t interval over
    seeds; comparisons between methods are paired by seed (one bonafide draw per seed).

    Args:
        rows: the backdoor sweep (:attr:`SweepResult.rows`).
        end_accuracy: clean test accuracy of the better tampered end (the reference for
            "keeps accuracy").
        small_n, large_n: the sizes at which the claims are read (the paper's regime of
            little data, and the largest set).
        fault_rows: the error-injection sweep (rows with ``fault_success``); its largest
            size is used.
        aware_rows: the repair of the path-aware attacker's models; its largest size.
        asr_max: the attack success (or fault success) below which a tampering counts as
            removed.
        max_drop: the clean accuracy a repair may lose against ``end_accuracy``.
    """
    from mcutils.core.stats import seed_interval

    def at(df: pd.DataFrame, method: str, n: int, col: str) -> np.ndarray:
        v = df[(df.method == method) & (df.n == n)][col].to_numpy(float)
        if len(v) == 0:
            raise ParameterError(f"no rows for method {method!r} at n={n}")
        return v

    paper = "Zhao et al. (2020)"
    out = [
        dict(claim_id="curve_removes_backdoor",
             statement=f"with {large_n} bonafide images the Bezier curve at the defender's t has "
                       f"ASR <= {asr_max}",
             paper=f"{paper}: attack success near 0 inside the path with 2,500 bonafide images "
                   "(CIFAR-10, VGG16)",
             result=seed_interval(at(rows, "bezier", large_n, "asr")), threshold=asr_max,
             direction="<="),
        dict(claim_id="curve_keeps_accuracy",
             statement=f"with {large_n} bonafide images the Bezier curve at the defender's t "
                       f"loses at most {max_drop} clean accuracy against the better end",
             paper=f"{paper}: clean accuracy close to the ends' inside the path",
             result=seed_interval(at(rows, "bezier", large_n, "accuracy") - end_accuracy),
             threshold=-max_drop, direction=">="),
        dict(claim_id="curve_removes_backdoor_small_n",
             statement=f"with {small_n} bonafide images the Bezier curve at the defender's t "
                       f"has ASR <= {asr_max}",
             paper=f"{paper}: the repair works with limited bonafide data",
             result=seed_interval(at(rows, "bezier", small_n, "asr")), threshold=asr_max,
             direction="<="),
        dict(claim_id="curve_middle_removes_backdoor",
             statement=f"with {large_n} bonafide images the middle of the Bezier curve "
                       f"(t = 0.5, chosen without validation) has ASR <= {asr_max}",
             paper=f"{paper}: the attack success is lowest near the middle of the path",
             result=seed_interval(at(rows, "bezier (middle)", large_n, "asr")),
             threshold=asr_max, direction="<="),
        dict(claim_id="polychain_removes_backdoor",
             statement=f"with {large_n} bonafide images the polygonal chain at the defender's "
                       f"t has ASR <= {asr_max}",
             paper=f"{paper}: Bezier curves and polygonal chains both repair",
             result=seed_interval(at(rows, "polychain", large_n, "asr")), threshold=asr_max,
             direction="<="),
        dict(claim_id="finetune_keeps_backdoor",
             statement=f"fine-tuning with the same {small_n} images keeps the backdoor "
                       "(ASR >= 0.5)",
             paper=f"{paper}: fine-tuning with limited data leaves a high attack success",
             result=seed_interval(at(rows, "fine_tune", small_n, "asr")), threshold=0.5,
             direction=">="),
    ]
    for other, col, sign, what in (("fine_tune", "asr", -1, "a lower ASR than fine-tuning"),
                                   ("fine_prune", "asr", -1, "a lower ASR than fine-pruning"),
                                   ("scratch", "accuracy", 1,
                                    "a higher clean accuracy than training from scratch"),
                                   ("noise", "accuracy", 1,
                                    "a higher clean accuracy than the noisy midpoint")):
        iv = paired_seed_difference(rows, other, "bezier", small_n, col) if sign < 0 else \
            paired_seed_difference(rows, "bezier", other, small_n, col)
        out.append(dict(claim_id=f"curve_beats_{other}",
                        statement=f"with {small_n} bonafide images the Bezier curve has {what} "
                                  "(paired difference > 0)",
                        paper=f"{paper}: path connection outperforms {other.replace('_', '-')} "
                              "with limited bonafide data",
                        result=iv, threshold=0.0, direction=">="))
    if fault_rows is not None:
        fn = int(fault_rows.n.max())
        out.append(dict(claim_id="curve_removes_faults",
                        statement=f"with {fn} bonafide images the Bezier curve between two "
                                  f"faulted models leaves fault success <= {asr_max}",
                        paper=f"{paper}: injected errors are removed inside the path",
                        result=seed_interval(at(fault_rows, "bezier", fn, "fault_success")),
                        threshold=asr_max, direction="<="))
    if aware_rows is not None:
        an = int(aware_rows.n.max())
        out.append(dict(claim_id="path_aware_repaired",
                        statement=f"against the path-aware attacker, with {an} bonafide images "
                                  f"the Bezier repair has ASR <= {asr_max}",
                        paper=f"{paper}: the repair stays effective against an attacker who "
                              "knows it",
                        result=seed_interval(at(aware_rows, "bezier", an, "asr")),
                        threshold=asr_max, direction="<="))
    return out


def variant_sweep(setup: RepairSetup, split: DefenderSplit, scorer: Callable[[nn.Module], dict],
                  variants: Sequence[Mapping[str, Any]], size: int, seeds: Sequence[int],
                  lr_table: Mapping[str, Mapping[int, float]], progress: bool = True
                  ) -> pd.DataFrame:
    """Curve variants at one bonafide size over seeds, each against the chapter's curve.

    Each variant changes some of ``curve`` (``"bezier"`` or ``"polychain"``),
    ``num_bends`` and ``weight_decay`` of the base setting (a Bezier curve with
    ``setup.curve_bends`` bends and ``setup.weight_decay``); the base itself is the first
    row. The learning rate is the one tuned for the curve family (``lr_table``).

    Returns:
        :attr:`SweepResult.rows` of every variant with a ``variant`` label column.
    """
    allowed = {"curve", "num_bends", "weight_decay"}
    frames = []
    for v in [{}, *variants]:
        bad = set(v) - allowed
        if bad:
            raise ParameterError(f"variant keys {sorted(bad)} unknown; valid: {sorted(allowed)}")
        curve = v.get("curve", "bezier")
        if curve not in CURVE_METHODS:
            raise ParameterError(f"curve={curve!r} is not known; valid: {CURVE_METHODS}")
        s = setup.replace(curve_bends=int(v.get("num_bends", setup.curve_bends)),
                          weight_decay=float(v.get("weight_decay", setup.weight_decay)))
        res = repair_sweep(s, split, scorer, methods=[curve], sizes=[size], seeds=seeds,
                           lr_table=lr_table, mid_rows=False, progress=progress)
        label = (f"{curve}, {s.curve_bends} bends, weight decay {s.weight_decay:g}")
        frames.append(res.rows.assign(variant=label))
    return pd.concat(frames, ignore_index=True)


def per_image_counts(rows: pd.DataFrame, column: str = "fault_hits") -> pd.DataFrame:
    """Per fault image, in how many seeds each method (at each size) left the fault active.

    Args:
        rows: sweep rows holding per-image 0/1 tuples in ``column``.

    Returns:
        A frame indexed by fault image, one column per ``(method, n)``, values the number
        of seeds (out of the seeds in ``rows``) with the fault still active.
    """
    if column not in rows.columns:
        raise ParameterError(f"rows have no column {column!r}")
    out = {}
    for (method, n), grp in rows.groupby(["method", "n"], sort=False):
        out[(method, int(n))] = np.sum(np.stack([np.asarray(h) for h in grp[column]]), axis=0)
    df = pd.DataFrame(out)
    df.index.name = "fault image"
    return df
