"""Baselines for repairing a tampered model with a little clean ("bonafide") data.

Chapter 05 compares path connection (:mod:`mcutils.curves`) against the usual cheap
repairs under the same data and the same number of optimisation steps:

* :func:`fine_tune`: continue training one endpoint on the bonafide data;
* :func:`train_from_scratch`: re-initialise the architecture and train on it only;
* :func:`prune_filters` + :func:`fine_tune`: fine-pruning (Liu et al. 2018): remove
  the channels of a conv layer that clean data activate least, then fine-tune with
  them held at zero;
* :func:`weight_noise`: Gaussian noise added to a model's weights (no data).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from mcutils.runtime import ParameterError, get_device

if TYPE_CHECKING:
    from mcutils.data import ImageDataset

__all__ = ["fine_tune", "train_from_scratch", "prune_filters", "weight_noise", "reinitialize",
           "cached_curve", "cached_repair", "REPAIRS"]


def _masked_grad_hooks(model: nn.Module) -> list:
    """Keep pruned (masked) parameters at zero during training."""
    handles = []
    for mod in model.modules():
        mask = getattr(mod, "_prune_mask", None)
        if mask is None:
            continue
        for p in (mod.weight, mod.bias):
            if p is not None:
                shape = (-1,) + (1,) * (p.dim() - 1)
                m = mask.to(p.device).view(shape).to(p.dtype)
                handles.append(p.register_hook(lambda g, m=m: g * m))
    return handles


def fine_tune(model: nn.Module, loader: Iterable, steps: int, lr: float = 0.01,
              optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
              device: str | torch.device = "cpu", seed: int = 0, progress: bool = False
              ) -> nn.Module:
    """A copy of ``model`` trained for exactly ``steps`` batches of ``loader``.

    Channels pruned by :func:`prune_filters` stay at zero. Returns the model in eval
    mode on the CPU.
    """
    from mcutils.training import train

    if steps < 0:
        raise ParameterError(f"steps={steps} must be >= 0")
    net = copy.deepcopy(model)
    handles = _masked_grad_hooks(net)
    batches = list(_take(loader, steps))
    try:
        if batches:
            train(net, batches, epochs=1, lr=lr, optimizer=optimizer, momentum=momentum,
                  weight_decay=weight_decay, device=device, seed=seed, progress=progress,
                  desc="fine-tune")
    finally:
        for h in handles:
            h.remove()
    return net.cpu().eval()


def _take(loader: Iterable, steps: int):
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


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer's parameters reset (seeded); buffers like
    ``Normalize`` statistics are kept."""
    net = copy.deepcopy(model)
    torch.manual_seed(seed)
    for mod in net.modules():
        if hasattr(mod, "reset_parameters") and mod is not net:
            mod.reset_parameters()
    return net


def train_from_scratch(model: nn.Module, loader: Iterable, steps: int, lr: float = 0.01,
                       optimizer: str = "sgd", device: str | torch.device = "cpu",
                       seed: int = 0, progress: bool = False) -> nn.Module:
    """Re-initialise ``model``'s architecture and train it for ``steps`` batches."""
    return fine_tune(reinitialize(model, seed), loader, steps, lr=lr, optimizer=optimizer,
                     device=device, seed=seed, progress=progress)


@torch.inference_mode()
def prune_filters(model: nn.Module, loader: Iterable, fraction: float = 0.5,
                  layer: str | None = None, device: str | torch.device | None = None
                  ) -> nn.Module:
    """Fine-pruning's pruning step: zero the least-activated output channels of a conv layer.

    Args:
        model: the model (not modified; a pruned copy is returned).
        loader: clean batches on which mean activations are measured.
        fraction: share of the layer's channels to remove.
        layer: name of an ``nn.Conv2d`` (default: the last one).
        device: where to run.

    Returns:
        A copy whose pruned channels have zero weights and bias; the mask is kept on
        the module (``_prune_mask``) so that :func:`fine_tune` keeps them at zero.
    """
    if not 0.0 <= fraction < 1.0:
        raise ParameterError(f"fraction={fraction} must lie in [0, 1)")
    net = copy.deepcopy(model).eval()
    convs = {n: m for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise ParameterError("the model has no Conv2d layer to prune")
    layer = layer or list(convs)[-1]
    if layer not in convs:
        raise ParameterError(f"layer={layer!r} is not a Conv2d of the model; "
                             f"valid values: {', '.join(convs)}")
    conv = convs[layer]
    device = get_device(device) if device is not None else next(net.parameters()).device
    net.to(device)
    total: torch.Tensor | None = None
    count = 0

    def hook(_mod, _inp, out):
        nonlocal total, count
        act = torch.relu(out).mean((0, 2, 3)) * len(out)
        total = act if total is None else total + act
        count += len(out)

    handle = conv.register_forward_hook(hook)
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
    conv.weight[~mask] = 0
    if conv.bias is not None:
        conv.bias[~mask] = 0
    conv._prune_mask = mask.cpu()
    return net.cpu().eval()


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


# ---------------------------------------------------------------------- cached runs
def cached_curve(start: nn.Module, end: nn.Module, bonafide: "ImageDataset", steps: int,
                 lr: float = 0.05, weight_decay: float = 0.0, curve: str = "bezier",
                 num_bends: int = 3, batch_size: int = 128, schedule: str | None = None,
                 seed: int = 0, device: str = "cpu", progress: bool = False,
                 return_info: bool = False):
    """A :class:`~mcutils.curves.CurveModel` between ``start`` and ``end`` trained on
    ``bonafide`` for ``steps`` batches (SGD, momentum 0.9), cached by :mod:`mcutils.store`.

    The cache key holds fingerprints of both endpoints and of the data, so a curve is
    never reused for other models or data.
    """
    from mcutils.curves import CurveModel, train_curve
    from mcutils.data import TensorLoader
    from mcutils.store import code_version, fingerprint, load_or_train

    config = dict(name="curve", ends=fingerprint(start, end),
                  data=fingerprint(bonafide.x, bonafide.y), steps=steps, lr=lr,
                  weight_decay=weight_decay, curve=curve, num_bends=num_bends,
                  batch_size=batch_size, schedule=schedule, seed=seed)

    def build() -> nn.Module:
        return CurveModel(start, start, end, curve, num_bends=num_bends)

    def fit(cm: nn.Module) -> None:
        loader = TensorLoader(bonafide, min(batch_size, len(bonafide)), shuffle=True, seed=seed)
        train_curve(cm, loader, steps=steps, lr=lr, weight_decay=weight_decay,
                    schedule=schedule, device=device, seed=seed, progress=progress)

    return load_or_train(config, build, fit, return_info=return_info,
                         code=code_version(train_curve))


REPAIRS = ("fine_tune", "scratch", "prune")


def cached_repair(method: str, model: nn.Module, bonafide: "ImageDataset", steps: int,
                  lr: float = 0.01, batch_size: int = 128, prune_fraction: float = 0.5,
                  seed: int = 0, device: str = "cpu", progress: bool = False) -> nn.Module:
    """A baseline repair of ``model`` with ``bonafide`` data for ``steps`` batches, cached.

    Args:
        method: ``"fine_tune"``, ``"scratch"`` (re-initialise, then train) or ``"prune"``
            (:func:`prune_filters` on the bonafide data, then fine-tune).
        model: the tampered model.
        bonafide: the clean data.
        steps, lr, batch_size: the training budget (SGD with momentum 0.9).
        prune_fraction: share of the last conv layer's channels removed by ``"prune"``.
        seed: seed of shuffling and re-initialisation.
    """
    from mcutils.data import TensorLoader
    from mcutils.store import code_version, fingerprint, load_or_train

    if method not in REPAIRS:
        raise ParameterError(f"method={method!r} is not known; valid values: {', '.join(REPAIRS)}")
    config = dict(name=f"repair_{method}", model=fingerprint(model),
                  data=fingerprint(bonafide.x, bonafide.y), steps=steps, lr=lr,
                  batch_size=batch_size, seed=seed,
                  prune_fraction=prune_fraction if method == "prune" else None)
    loader = TensorLoader(bonafide, min(batch_size, len(bonafide)), shuffle=True, seed=seed)

    def fit(_net: nn.Module) -> nn.Module:
        if method == "fine_tune":
            return fine_tune(model, loader, steps, lr=lr, device=device, seed=seed,
                             progress=progress)
        if method == "scratch":
            return train_from_scratch(model, loader, steps, lr=lr, device=device, seed=seed,
                                      progress=progress)
        pruned = prune_filters(model, loader, fraction=prune_fraction)
        return fine_tune(pruned, loader, steps, lr=lr, device=device, seed=seed,
                         progress=progress)

    return load_or_train(config, lambda: copy.deepcopy(model), fit,
                         code=code_version(fine_tune, train_from_scratch, prune_filters))
