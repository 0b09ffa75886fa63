"""Error injection: the fault sneaking attack (Zhao et al. 2019). Used by chapter 05.

The attacker changes the weights of ONE chosen layer so that ``S`` chosen images are
classified as chosen (wrong) labels while a set of other images keep their labels,
with a small weight change. The original attack solves an L0/L2-regularised problem
with ADMM, and Zhao et al. (2020)'s public code a hinge loss with plain gradient steps;
:func:`fault_sneaking_attack` solves the penalty form with Adam:

    min_delta  CE(f_{W+delta}(x_S), y_S) + keep_weight * CE(f_{W+delta}(x_R), y_R)
               + l2 * ||delta||^2

where only the chosen layer's parameters move. When that layer produces the model's
output (the default, the last linear layer), its inputs are computed once and cached.

* :func:`fault_sets` picks the ``S`` fault images (with random wrong labels) and a
  disjoint keep set among images that every given model classifies correctly, as the
  paper's code hand-picks correctly classified images;
* :func:`fault_hits` says, per fault image, whether a model outputs its injected label;
  :func:`fault_success_rate` is their mean.

Functions that receive a model never change it: its mode and device are restored.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device
from mcutils.training import predict

__all__ = [
    "choose_faults",
    "fault_hits",
    "fault_sets",
    "fault_sneaking_attack",
    "fault_success_rate",
    "faulted_model",
    "last_linear_layer",
]


def last_linear_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` (or, failing that, ``nn.Conv2d``) module of ``model``."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = names or [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ParameterError("the model has no Linear or Conv2d layer to inject faults into")
    return names[-1]


def choose_faults(labels: torch.Tensor, num: int, num_classes: int, seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``num`` images and a random wrong label for each.

    Returns:
        Indices into ``labels`` and the injected labels (never the true ones).
    """
    if not 1 <= num <= len(labels):
        raise ParameterError(f"num={num} must lie in [1, {len(labels)}]")
    if num_classes < 2:
        raise ParameterError(f"num_classes={num_classes} must be >= 2")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(labels), generator=gen)[:num]
    shift = torch.randint(1, num_classes, (num,), generator=gen)
    return idx, (labels[idx] + shift) % num_classes


def _labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return predict(model, x).argmax(1)


def fault_sets(models: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, num_faults: int,
               num_keep: int, num_classes: int, seed: int = 0
               ) -> dict[str, torch.Tensor]:
    """Fault images with injected labels and a disjoint keep set, both correctly
    classified by every model in ``models`` (so a fault's success means the attack
    changed the output, and a repair's "restored" means the true label came back).

    Args:
        models: the models that will be attacked (their mode and device are restored).
        x, y: candidate images and their true labels.
        num_faults: size ``S`` of the fault set.
        num_keep: size of the keep set (disjoint from the fault set).
        num_classes: number of classes (for the random wrong labels).
        seed: which images and which labels.

    Returns:
        ``{"fault_idx", "y_fault", "keep_idx"}``: indices into ``x`` and the injected labels.
    """
    if num_faults < 1 or num_keep < 0:
        raise ParameterError(f"need num_faults >= 1 and num_keep >= 0 (got {num_faults}, {num_keep})")
    if len(x) != len(y):
        raise ParameterError("x and y must have one length")
    ok = torch.ones(len(x), dtype=torch.bool)
    for m in models:
        ok &= _labels(m, x) == y
    cand = ok.nonzero().flatten()
    if len(cand) < num_faults + num_keep:
        raise ParameterError(f"only {len(cand)} candidates are classified correctly by every "
                             f"model; need num_faults + num_keep = {num_faults + num_keep}")
    gen = torch.Generator().manual_seed(seed)
    cand = cand[torch.randperm(len(cand), generator=gen)]
    fault_idx, keep_idx = cand[:num_faults], cand[num_faults:num_faults + num_keep]
    shift = torch.randint(1, num_classes, (num_faults,), generator=gen)
    return {"fault_idx": fault_idx, "y_fault": (y[fault_idx] + shift) % num_classes,
            "keep_idx": keep_idx}


def fault_hits(model: nn.Module, x: torch.Tensor, y_fault: torch.Tensor) -> torch.Tensor:
    """Per fault image, whether ``model`` outputs its injected label (bool, CPU).

    The model stays where it is (inputs are moved to it); its mode is restored.
    """
    if len(x) != len(y_fault):
        raise ParameterError("x and y_fault must have one length")
    return _labels(model, x) == y_fault.cpu()


def fault_success_rate(model: nn.Module, x: torch.Tensor, y_fault: torch.Tensor) -> float:
    """Fraction of the images ``x`` that ``model`` classifies as their injected labels."""
    return float(fault_hits(model, x, y_fault).float().mean())


def fault_sneaking_attack(model: nn.Module, x_fault: torch.Tensor, y_fault: torch.Tensor,
                          x_keep: torch.Tensor, y_keep: torch.Tensor | None = None,
                          layer: str | None = None, steps: int = 300, lr: float = 0.01,
                          keep_weight: float = 1.0, l2: float = 0.01,
                          device: str | torch.device = "cpu", seed: int = 0
                          ) -> tuple[nn.Module, dict[str, Any]]:
    """Inject faults by changing one layer: ``x_fault`` -> ``y_fault``, ``x_keep`` unchanged.

    Args:
        model: the victim (not modified, not moved; a changed copy is returned).
        x_fault, y_fault: the ``S`` images and their injected labels.
        x_keep: images whose classification must be kept.
        y_keep: their labels (default: the victim's own predictions).
        layer: name of the module to change (default: :func:`last_linear_layer`).
        steps, lr: Adam steps and learning rate.
        keep_weight: weight of the keep term.
        l2: weight of the squared-norm penalty on the change.
        device: where to optimise.
        seed: unused randomness guard (the optimisation is deterministic).

    Returns:
        The faulted model (eval mode, CPU) and info: ``layer``, ``success_rate`` on the
        ``S`` images, ``keep_rate`` (fraction of ``x_keep`` still classified as
        ``y_keep``) and ``delta_norm`` (L2 norm of the change).
    """
    if len(x_fault) != len(y_fault) or len(x_fault) == 0:
        raise ParameterError("x_fault and y_fault must be non-empty and of equal length")
    if steps < 0 or lr <= 0 or l2 < 0 or keep_weight < 0:
        raise ParameterError("need steps >= 0, lr > 0, l2 >= 0, keep_weight >= 0")
    layer = layer or last_linear_layer(model)
    modules = dict(model.named_modules())
    if layer not in modules or not list(modules[layer].parameters(recurse=False)):
        raise ParameterError(f"layer={layer!r} is not a module with parameters of the model")
    device = get_device(device)
    torch.manual_seed(seed)
    attacked = copy.deepcopy(model).to(device).eval()
    target = dict(attacked.named_modules())[layer]
    for p in attacked.parameters():
        p.requires_grad_(False)
    params = list(target.parameters(recurse=False))
    original = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    x_fault, y_fault, x_keep = x_fault.to(device), y_fault.to(device), x_keep.to(device)
    with torch.no_grad():
        y_keep = attacked(x_keep).argmax(1) if y_keep is None else y_keep.to(device)
    # when the chosen layer produces the model's output, its inputs are fixed: cache them
    # and optimise on the cached features (much faster, same result)
    seen: dict[str, torch.Tensor] = {}
    handle = target.register_forward_hook(
        lambda _m, inp, out: seen.update(inp=inp[0].detach(), out=out.detach()))
    with torch.no_grad():
        out_f = attacked(x_fault)
        in_f, last_f = seen["inp"], seen["out"]
        out_k = attacked(x_keep)
        in_k, last_k = seen["inp"], seen["out"]
    handle.remove()
    if torch.equal(out_f, last_f) and torch.equal(out_k, last_k):
        run_f, run_k = (lambda: target(in_f)), (lambda: target(in_k))
    else:
        run_f, run_k = (lambda: attacked(x_fault)), (lambda: attacked(x_keep))
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(run_f(), y_fault)
        if keep_weight:
            loss = loss + keep_weight * F.cross_entropy(run_k(), y_keep)
        if l2:
            loss = loss + l2 * sum(((p - o) ** 2).sum() for p, o in zip(params, original))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in attacked.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        delta = sum(float(((p.detach() - o) ** 2).sum()) for p, o in zip(params, original)) ** 0.5
        keep_rate = float((attacked(x_keep).argmax(1) == y_keep).float().mean())
        success = float((attacked(x_fault).argmax(1) == y_fault).float().mean())
    info = dict(layer=layer, success_rate=success, keep_rate=keep_rate, delta_norm=delta)
    return attacked.cpu().eval(), info


def faulted_model(model: nn.Module, x_fault: torch.Tensor, y_fault: torch.Tensor,
                  x_keep: torch.Tensor, layer: str | None = None, steps: int = 300,
                  lr: float = 0.01, keep_weight: float = 1.0, l2: float = 0.01,
                  device: str | torch.device = "cpu", seed: int = 0, return_info: bool = False
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`fault_sneaking_attack` cached by :mod:`mcutils.core.store` (keyed by fingerprints
    of the victim and the images), so that chapters re-run fast and bit-identically.

    Returns:
        The faulted model (eval mode, CPU) and ``{"layer", "success_rate", "keep_rate",
        "delta_norm"}``; with ``return_info`` the dict also holds ``cached`` and
        ``train_seconds``.
    """
    from mcutils.core.store import code_version, fingerprint, load_or_train

    layer = layer or last_linear_layer(model)
    config = dict(name="fault_sneaking", model=fingerprint(model),
                  data=fingerprint(x_fault, y_fault, x_keep), layer=layer, steps=steps, lr=lr,
                  keep_weight=keep_weight, l2=l2, seed=seed)

    def fit(_net: nn.Module) -> nn.Module:
        return fault_sneaking_attack(model, x_fault, y_fault, x_keep, layer=layer, steps=steps,
                                     lr=lr, keep_weight=keep_weight, l2=l2, device=device,
                                     seed=seed)[0]

    def metrics(net: nn.Module) -> dict[str, float]:
        keep = float((_labels(net, x_keep) == _labels(model, x_keep)).float().mean())
        with torch.no_grad():
            delta = sum(float((p.cpu() - q.cpu()).pow(2).sum()) for p, q in
                        zip(net.parameters(), model.parameters())) ** 0.5
        return dict(success_rate=fault_success_rate(net, x_fault, y_fault), keep_rate=keep,
                    delta_norm=delta)

    net, info = load_or_train(config, lambda: copy.deepcopy(model).cpu(), fit, evaluate=metrics,
                              return_info=True, code=code_version(fault_sneaking_attack))
    out = dict(layer=layer, **info["metrics"])
    if return_info:
        out.update(cached=info["cached"], train_seconds=info["train_seconds"])
    return net, out
