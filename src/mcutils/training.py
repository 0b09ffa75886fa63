"""Training and evaluation loops, and the cached classifiers that chapters share.

``train`` is a plain loop with tqdm progress, SGD or Adam, an optional cosine or step
schedule, and two optional per-batch hooks: ``transform(model, x, y) -> (x, y)`` runs
before each step (adversarial training uses it) and ``callback(step, model)`` after it
(measuring barriers during training uses it).

Used by every chapter (00-06): each asks for its classifier through
:func:`trained_model`, so chapters with the same settings share one checkpoint;
:func:`predict` labels inputs in chapters 00-04, :func:`evaluate` measures the repaired
models of chapter 05, and :func:`train` follows networks from initialisation in
chapter 03 (adversarial training of chapter 06 goes through ``trained_model``).
:func:`predict` and :func:`evaluate` leave the caller's model in its own mode and on its
own device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils._util import EvalMode, check_positive, model_device
from mcutils.runtime import ParameterError, get_device, seed_everything

__all__ = ["train", "evaluate", "predict", "trained_model", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = (None, "cosine", "step")

Transform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Callback = Callable[[int, nn.Module], None]


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and 4-pixel-padded random crop, per batch (CIFAR style)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def train(model: nn.Module, loader: Iterable, epochs: int = 1, lr: float = 1e-3,
          optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
          schedule: str | None = None, device: str | torch.device = "cpu",
          transform: Transform | None = None, callback: Callback | None = None,
          augment: bool = False, seed: int = 0, progress: bool = True,
          desc: str = "train") -> dict[str, list[float]]:
    """Train ``model`` in place with cross-entropy.

    Args:
        model: the model (moved to ``device``).
        loader: an iterable of ``(x, y)`` batches (re-iterated each epoch).
        epochs: number of passes.
        lr: learning rate.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        schedule: ``None``, ``"cosine"`` (per step, to 0) or ``"step"`` (x0.1 at 50% and 75%).
        device: where to train.
        transform: per-batch hook before the step, ``(model, x, y) -> (x, y)``
            (e.g. replace ``x`` by adversarial examples); called with the model in
            eval mode and gradients enabled.
        callback: per-batch hook after the step, ``(global_step, model)``.
        augment: random flips and crops (for 32x32 colour data).
        seed: seed of augmentation randomness.
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        History with per-epoch ``loss`` and ``accuracy`` (on the training batches).
    """
    if optimizer not in OPTIMIZERS:
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: {OPTIMIZERS}")
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule={schedule!r} is not known; valid values: {SCHEDULES}")
    if epochs < 0 or lr <= 0:
        raise ParameterError(f"need epochs >= 0 and lr > 0 (got {epochs}, {lr})")
    device = get_device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(loader)  # type: ignore[arg-type]
    total = max(epochs * steps_per_epoch, 1)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    elif schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [total // 2, 3 * total // 4], 0.1)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(epochs):
        loss_sum, correct, count = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if augment:
                x = _augment(x, gen)
            if transform is not None:
                model.eval()
                x, y = transform(model, x, y)
            model.train()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
            if callback is not None:
                model.eval()
                callback(step, model)
            bar.update(1)
        history["loss"].append(loss_sum / max(count, 1))
        history["accuracy"].append(correct / max(count, 1))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{history['accuracy'][-1]:.3f}")
    bar.close()
    model.eval()
    return history


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``x``, in eval mode and batches, returned on the CPU.

    The caller's model is left as it was: its train/eval mode and its device are
    restored afterwards (also when the forward pass raises).

    Args:
        model: the classifier.
        x: ``[N, ...]`` inputs (on any device).
        batch_size: inputs per forward pass.
        device: where to compute (default: the model's own device).

    Returns:
        ``[N, num_classes]`` float32 logits on the CPU.
    """
    check_positive(batch_size=batch_size)
    home = model_device(model)
    device = get_device(device) if device is not None else home
    try:
        model.to(device)
        with EvalMode(model), torch.inference_mode():
            out = [model(x[i:i + batch_size].to(device)).float().cpu()
                   for i in range(0, len(x), batch_size)]
    finally:
        model.to(home)
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device | None = None
             ) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``, in eval mode.

    The caller's model keeps its train/eval mode and device (both restored afterwards).

    Args:
        model: the classifier.
        loader: an iterable of ``(x, y)`` batches.
        device: where to compute (default: the model's own device).

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": fraction correct}``.

    Raises:
        ValueError: for an empty loader.
    """
    home = model_device(model)
    device = get_device(device) if device is not None else home
    loss_sum, correct, count = 0.0, 0, 0
    try:
        model.to(device)
        with EvalMode(model), torch.inference_mode():
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()
                count += len(y)
    finally:
        model.to(home)
    if count == 0:
        raise ValueError("evaluate got an empty loader")
    return {"loss": loss_sum / count, "accuracy": correct / count}


def trained_model(dataset: str = "fashion-mnist", model: str = "small_cnn", epochs: int = 2,
                  lr: float = 1e-3, batch_size: int = 128, optimizer: str = "adam",
                  schedule: str | None = None, weight_decay: float = 0.0, seed: int = 0,
                  train_subset: int | None = None, device: str = "cpu",
                  adversarial: Mapping[str, Any] | None = None,
                  model_kwargs: Mapping[str, Any] | None = None, augment: bool = False,
                  data_root: str | None = None, progress: bool = True,
                  return_info: bool = False):
    """A classifier trained on a registered dataset, cached by :mod:`mcutils.store`.

    Every chapter asks for its models through this function, so chapters that use
    the same settings share one checkpoint.

    Args:
        dataset, model: registry names.
        epochs, lr, batch_size, optimizer, schedule, weight_decay: training settings.
        seed: seeds initialisation and shuffling.
        train_subset: train on a random subset of this size.
        device: where to train (the returned model is on the CPU).
        adversarial: adversarial training settings passed to
            ``mcutils.attacks.adversarial_transform`` (e.g. ``{"method": "pgd",
            "eps": 0.1, "steps": 5, "step_size": 0.03}``); ``None`` for standard training.
        model_kwargs: architecture options for :func:`mcutils.models.build_model`.
        augment: random flips and crops.
        data_root: where non-system datasets live.
        progress: show progress bars.
        return_info: also return the cache info (``train_seconds``, ``metrics``,
            ``cached``); ``metrics`` holds the test ``accuracy`` and ``loss``.

    Returns:
        The model in eval mode on the CPU (and the info dict if asked).
    """
    from mcutils.data import TensorLoader, load_dataset
    from mcutils.models import build_for_dataset
    from mcutils.store import code_version, load_or_train

    config = dict(name=f"{dataset}_{model}", dataset=dataset, model=model, epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                  weight_decay=weight_decay, seed=seed, train_subset=train_subset,
                  adversarial=dict(adversarial) if adversarial else None,
                  model_kwargs=dict(model_kwargs or {}), augment=augment)

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **(model_kwargs or {}))

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        data = load_dataset(dataset, "train", root=data_root, subset=train_subset, seed=seed)
        loader = TensorLoader(data, batch_size, shuffle=True, seed=seed)
        transform = None
        if adversarial:
            from mcutils.attacks import adversarial_transform
            transform = adversarial_transform(**adversarial)
        train(net, loader, epochs=epochs, lr=lr, optimizer=optimizer, schedule=schedule,
              weight_decay=weight_decay, device=device, transform=transform, augment=augment,
              seed=seed, progress=progress, desc=f"train {model}")

    def test_metrics(net: nn.Module) -> dict[str, float]:
        test = load_dataset(dataset, "test", root=data_root)
        return evaluate(net, TensorLoader(test, 1000), device="cpu")

    producers: list = [train]
    if adversarial:
        from mcutils import attacks
        producers += [attacks.adversarial_transform, attacks.pgd, attacks.fgsm]
    return load_or_train(config, build, fit, evaluate=test_metrics, return_info=return_info,
                         code=code_version(*producers))
