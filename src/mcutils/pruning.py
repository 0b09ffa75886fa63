"""Fine-pruning's pruning step (Liu et al. 2018): which conv channels can be removed, and
removing the least-activated ones.

Used by chapter 05 (the ``fine_prune`` repair baseline, :func:`mcutils.repair.cached_repair`).

* :func:`prunable_convs`: the conv layers whose output channels can be silenced, found by
  tracing the model's graph (:mod:`torch.fx`): a channel that reaches a residual addition
  would be carried around the block by the shortcut, so such convs are left out;
* :func:`prune_filters`: zero the channels that clean data activate least (conv weights
  and bias, and the following BatchNorm's scale and shift), keeping a mask per module;
* :func:`prune_until`: Liu et al.'s stopping rule, prune more and more of the layer while
  the clean validation accuracy stays within a tolerance of the unpruned model's;
* :func:`masked_grad_hooks`: gradient hooks that keep the masked channels at zero while
  the pruned model is fine-tuned.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device, model_device

__all__ = ["masked_grad_hooks", "prunable_convs", "prune_filters", "prune_until"]

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
        :func:`masked_grad_hooks` (and so :func:`mcutils.repair.fine_tune`) keep those
        parameters at zero.
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


def masked_grad_hooks(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Keep pruned channels at zero while ``model`` trains.

    For every module with a ``_prune_mask`` (set by :func:`prune_filters`), a gradient hook
    on its weight and bias multiplies the gradient by the mask, so the pruned channels
    receive no update (with weight decay in the optimiser too, since their weights are
    zero). Returns the hook handles; call ``handle.remove()`` on each when done.
    """
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


@torch.inference_mode()
def _accuracy(model: nn.Module, loader: Iterable) -> float:
    device = model_device(model)
    correct = total = 0
    for x, y in loader:
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        total += len(y)
    if total == 0:
        raise ParameterError("the validation loader is empty")
    return correct / total


def prune_until(model: nn.Module, loader: Iterable, val_loader: Iterable,
                tolerance: float = 0.05, step: float = 0.1, layer: str | None = None
                ) -> dict[str, object]:
    """Fine-pruning's stopping rule: the largest share of the layer's channels (a multiple
    of ``step``, below 1) that can be pruned, in order of rising clean activation, while
    the clean validation accuracy stays at least the unpruned model's minus ``tolerance``.

    Shares are tried in increasing order and the search stops at the first one whose
    accuracy falls below that level (Liu et al. 2018 prune until the clean validation
    accuracy drops).

    Args:
        model: the model (not modified).
        loader: clean batches that rank the channels (:func:`prune_filters`).
        val_loader: the defender's clean validation batches ``(x, y)``.
        tolerance: validation accuracy the pruning may lose.
        step: increment of the pruned share.
        layer: which conv (default: the last prunable one).

    Returns:
        ``{"fraction", "accuracy", "base_accuracy", "tried"}``: the chosen share (0 when
        even the first step loses too much), its validation accuracy, the unpruned
        model's, and ``[(share, accuracy), ...]`` of every share tried.
    """
    if not 0 <= tolerance <= 1 or not 0 < step < 1:
        raise ParameterError(f"need 0 <= tolerance <= 1 and 0 < step < 1 "
                             f"(got {tolerance}, {step})")
    net = copy.deepcopy(model).eval()
    base = _accuracy(net, val_loader)
    chosen, chosen_acc, tried = 0.0, base, []
    k = 1
    while k * step < 1 - 1e-9:
        frac = round(k * step, 6)
        acc = _accuracy(prune_filters(net, loader, frac, layer), val_loader)
        tried.append((frac, acc))
        if acc < base - tolerance - 1e-12:
            break
        chosen, chosen_acc = frac, acc
        k += 1
    return {"fraction": chosen, "accuracy": chosen_acc, "base_accuracy": base, "tried": tried}
