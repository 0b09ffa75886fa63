"""Training and evaluation loops, and the cached classifiers that chapters share.

``train`` is a plain loop with tqdm progress, SGD or Adam, a learning-rate schedule of
the one table :data:`SCHEDULES`, and two optional per-batch hooks: ``transform(model, x, y) -> (x, y)`` runs
before each step (adversarial training uses it) and ``callback(step, model)`` after it
(measuring barriers during training uses it). Every loop runs under the machine's speed
plan (:func:`mcutils.core.runtime.prepare`): the memory format, and for inference the batch
size, measured once per machine; the training batch size is never changed.

Long runs resume: with ``checkpoint=PATH`` the loop writes, after every epoch and
atomically, the model, the optimiser, the scheduler, every random-number state (as
tensors, so ``torch.load(weights_only=True)`` reads it), the epoch and the history; a run
that finds the file continues after the last finished epoch and ends with the same
weights as one that was never interrupted. :func:`~mcutils.zoo.trained_model` checkpoints under the
store's :func:`mcutils.core.store.partial_path`, which is never served as a finished model.

Used by every chapter (00-06): each asks for its classifier through
:func:`~mcutils.zoo.trained_model`, so chapters with the same settings share one checkpoint;
:func:`predict` labels inputs in chapters 00-04, :func:`evaluate` measures the repaired
models of chapter 05, and :func:`train` follows networks from initialisation in
chapter 03 (adversarial training of chapter 06 goes through ``trained_model``).
:func:`sgd_steps`, a budget in optimiser steps rather than epochs with a per-step
learning-rate factor, trains the repair baselines of chapter 05
(:func:`mcutils.repair.fine_tune`).
:func:`predict` and :func:`evaluate` leave the caller's model in its own mode and on its
own device.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError, check_positive
from mcutils.core.runtime import EvalMode, get_device, prepare, prepared
from mcutils.core.tensors import bview

__all__ = ["train", "sgd_steps", "evaluate", "predict", "rng_state", "set_rng_state",
           "MaskedAdam", "OPTIMIZERS", "SCHEDULES", "lr_factor", "make_optimizer"]

OPTIMIZERS = ("sgd", "adam")
#: the learning-rate schedules of every training loop (:func:`lr_factor` defines them)
SCHEDULES = (None, "cosine", "step", "paper")


def lr_factor(schedule: str | None, step: int, total: int) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of ``total`` steps: the one
    definition of :data:`SCHEDULES`, used by :func:`train`, :func:`sgd_steps` (through
    its ``lr_factor``), :func:`mcutils.curves.train_curve` and :mod:`mcutils.repair`.

    * ``None``: constant 1;
    * ``"cosine"``: ``(1 + cos(pi * step / total)) / 2``, from 1 to 0;
    * ``"step"``: 1, then 0.1 from ``total // 2`` and 0.01 from ``3 * total // 4``;
    * ``"paper"``: the schedule of Garipov et al.'s and Zhao et al.'s ``train.py``
      (per epoch there, per step here): 1 for the first half, then linear down to 0.01 at
      90% of the run, then 0.01.
    """
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule={schedule!r} is not known; valid values: {SCHEDULES}")
    if total < 1 or not 0 <= step <= total:
        raise ParameterError(f"need 0 <= step <= total and total >= 1 (got {step}, {total})")
    if schedule is None:
        return 1.0
    if schedule == "step":
        return 0.1 ** sum(step >= m for m in (total // 2, 3 * total // 4))
    alpha = step / total
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * alpha))
    if alpha <= 0.5:
        return 1.0
    if alpha <= 0.9:
        return 1.0 - (alpha - 0.5) / 0.4 * 0.99
    return 0.01

Transform = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Callback = Callable[[int, nn.Module], None]


def make_optimizer(params: Iterable[torch.Tensor], optimizer: str, lr: float,
                   momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The one place an optimizer of :data:`OPTIMIZERS` is built: ``"sgd"`` (with
    ``momentum``) or ``"adam"``, both with L2 ``weight_decay``. Used by :func:`train`,
    :func:`sgd_steps` and :func:`mcutils.curves.train_curve`."""
    if optimizer not in OPTIMIZERS:
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: {OPTIMIZERS}")
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and 4-pixel-padded random crop, per batch (CIFAR style)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """Every random-number state as tensors (loadable with ``weights_only=True``).

    Python's ``random``, NumPy's global state, torch's CPU and CUDA generators, and the
    given extra generators (e.g. a loop's augmentation generator).
    """
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": torch.tensor(list(words), dtype=torch.int64),
        "python_meta": torch.tensor([version, 0 if gauss is None else 1], dtype=torch.int64),
        "python_gauss": torch.tensor([0.0 if gauss is None else gauss], dtype=torch.float64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_kind": kind,
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state: Mapping[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Restore what :func:`rng_state` returned (the same extra generators, in order)."""
    meta = state["python_meta"].tolist()
    gauss = float(state["python_gauss"][0]) if meta[1] else None
    random.setstate((int(meta[0]), tuple(int(v) for v in state["python"].tolist()), gauss))
    pos, has_gauss = state["numpy_meta"].tolist()
    np.random.set_state((state["numpy_kind"],
                         state["numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                         float(state["numpy_gauss"][0])))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if len(state["generators"]) != len(generators):
        raise ParameterError(f"the state holds {len(state['generators'])} extra generator(s), "
                             f"{len(generators)} given")
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)


def train(model: nn.Module, loader: Iterable, epochs: int = 1, lr: float = 1e-3,
          optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
          schedule: str | None = None, device: str | torch.device = "cpu",
          transform: Transform | None = None, callback: Callback | None = None,
          augment: bool = False, seed: int = 0, progress: bool = True,
          desc: str = "train", checkpoint: str | Path | None = None,
          channels_last: bool | None = None) -> dict[str, list[float]]:
    """Train ``model`` in place with cross-entropy.

    Args:
        model: the model (moved to ``device``).
        loader: an iterable of ``(x, y)`` batches (re-iterated each epoch).
        epochs: number of passes.
        lr: learning rate.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        schedule: a name in :data:`SCHEDULES`, per step (:func:`lr_factor`). ``"cosine"``
            and ``"step"`` run as torch's ``CosineAnnealingLR`` and ``MultiStepLR``, which
            follow :func:`lr_factor` to rounding (tested) and keep the cached checkpoints'
            weights bit for bit.
        device: where to train.
        transform: per-batch hook before the step, ``(model, x, y) -> (x, y)``
            (e.g. replace ``x`` by adversarial examples); called with the model in
            eval mode and gradients enabled.
        callback: per-batch hook after the step, ``(global_step, model)``.
        augment: random flips and crops (for 32x32 colour data).
        seed: seed of augmentation randomness.
        progress: show a tqdm bar.
        desc: the bar's label.
        checkpoint: a file for a resumable run. After every epoch the model, optimiser,
            scheduler, random states (as tensors), epoch and history are written there
            atomically; if the file exists at the start, training continues after its
            last epoch and ends with the same weights as an uninterrupted run (a loader
            with an ``epoch`` counter, like :class:`mcutils.data.registry.TensorLoader`, is set
            to it). The file is left in place; the caller removes it when done.
        channels_last: memory format of the weights and batches during training
            (default: the faster one on this machine, measured once by
            :func:`mcutils.core.runtime.prepare` at the loader's batch size); the weights are
            returned in their original layout.

    Returns:
        History with per-epoch ``loss`` and ``accuracy`` (on the training batches).

    Raises:
        ParameterError: bad options, or a checkpoint written with other settings.
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
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    steps_per_epoch = len(loader)  # type: ignore[arg-type]
    total = max(epochs * steps_per_epoch, 1)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    elif schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [total // 2, 3 * total // 4], 0.1)
    elif schedule == "paper":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor("paper", k, total))
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    step = 0
    first_epoch = 0
    settings = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "optimizer": optimizer,
                "schedule": str(schedule), "lr": float(lr)}
    if checkpoint is not None and Path(checkpoint).is_file():
        first_epoch, step = _resume(Path(checkpoint), settings, model, opt, sched, gen,
                                    loader, history)
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, leave=False)
    layout = contextlib.ExitStack()
    plan = None
    for epoch in range(first_epoch, epochs):
        loss_sum, correct, count = 0.0, 0, 0
        for x, y in loader:
            if plan is None:  # chosen at the first batch: peeking would shift the shuffles
                plan = prepare(model, x, device, channels_last=channels_last, purpose="train")
                layout.enter_context(prepared(model, plan))
            x, y = plan.input(x), y.to(device)
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
        if checkpoint is not None:
            _save_epoch(Path(checkpoint), settings, epoch + 1, step, model, opt, sched, gen,
                        loader, history)
    bar.close()
    layout.close()
    model.eval()
    return history


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


def sgd_steps(model: nn.Module, loader: Iterable, steps: int, lr: float,
              optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
              lr_factor: Callable[[int], float] | None = None,
              device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
              desc: str = "sgd steps", channels_last: bool | None = None,
              objective: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
              | None = None) -> None:
    """Train ``model`` in place for exactly ``steps`` optimiser steps of cross-entropy.

    Unlike :func:`train`, the budget is a number of steps: ``loader`` is cycled through
    (re-iterated when exhausted, so a small data set gives many short epochs), and the
    learning rate follows a per-step factor (the schedules of
    :func:`mcutils.curves.lr_factor` are passed this way) rather than a named schedule.

    Args:
        model: the model (moved to ``device``, trained in place, left in eval mode).
        loader: ``(x, y)`` batches; must not be empty.
        steps: optimiser steps (0: nothing is trained).
        lr: learning rate.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: the optimiser's L2 term (the gradient of
            ``weight_decay / 2 * ||w||^2``).
        lr_factor: ``k -> factor``, the learning rate at step ``k`` is ``lr * factor``
            (a :class:`torch.optim.lr_scheduler.LambdaLR`, stepped after every step);
            ``None``: constant.
        device: where to train.
        seed: seeds torch's global generator first (dropout and other randomness of the
            steps).
        progress: show a tqdm bar labelled ``desc``.
        channels_last: memory format while training (default: the machine's training
            plan, :func:`mcutils.core.runtime.prepare`, chosen at the first batch as in
            :func:`train`); it changes results at float rounding only, and the weights'
            layout is restored afterwards.
        objective: ``(model, x, y) -> loss`` in place of the cross-entropy (e.g.
            :func:`mcutils.attacks.gradient_penalty_objective`, chapter 06's robust end).

    Only parameters with ``requires_grad`` are optimised; gradient hooks registered on
    the parameters (e.g. :func:`mcutils.pruning.masked_grad_hooks`) act on every step.

    Raises:
        ParameterError: bad options, or an empty loader.
    """
    if optimizer not in OPTIMIZERS:
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: {OPTIMIZERS}")
    if steps < 0 or lr <= 0 or weight_decay < 0:
        raise ParameterError(f"need steps >= 0, lr > 0 and weight_decay >= 0 "
                             f"(got {steps}, {lr}, {weight_decay})")
    device = get_device(device)
    torch.manual_seed(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lr_factor) if lr_factor is not None
             else None)
    plan = None
    with contextlib.ExitStack() as layout:
        for x, y in tqdm(_take(loader, steps), total=steps, desc=desc, disable=not progress,
                         leave=False):
            if plan is None:
                plan = prepare(model, x, device, channels_last=channels_last, purpose="train")
                layout.enter_context(prepared(model, plan))
            x, y = plan.input(x), y.to(device)
            loss = (F.cross_entropy(model(x), y) if objective is None
                    else objective(model, x, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()


def _save_epoch(path: Path, settings: dict[str, Any], epoch: int, step: int, model: nn.Module,
                opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator, loader: Iterable,
                history: dict[str, list[float]]) -> None:
    from mcutils.core.store import save_state

    save_state(path, {
        "settings": settings, "epoch": epoch, "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "rng": rng_state([gen]),
        "loader_epoch": getattr(loader, "epoch", None),
        "history": {k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()},
    })


def _resume(path: Path, settings: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
            sched: Any, gen: torch.Generator, loader: Iterable,
            history: dict[str, list[float]]) -> tuple[int, int]:
    from mcutils.core.store import load_state

    state = load_state(path)
    if state["settings"] != settings:
        raise ParameterError(f"checkpoint {path} was written with {state['settings']}, this "
                             f"run has {settings}; remove it to start again")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], [gen])
    if state["loader_epoch"] is not None and hasattr(loader, "epoch"):
        loader.epoch = state["loader_epoch"]
    for k, v in state["history"].items():
        history[k] = v.tolist()
    return int(state["epoch"]), int(state["step"])


def predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Logits of ``model`` on ``x``, in eval mode and batches, returned on the CPU.

    Runs under the machine's speed plan (:func:`mcutils.core.runtime.prepare`: memory format
    and inference batch size). The caller's model is left as it was: its train/eval mode,
    device and weight layout are restored afterwards (also when the forward pass raises).

    Args:
        model: the classifier.
        x: ``[N, ...]`` inputs (on any device).
        batch_size: inputs per forward pass (default: the plan's).
        device: where to compute (default: the model's own device).

    Returns:
        ``[N, num_classes]`` float32 logits on the CPU.
    """
    if batch_size is not None:
        check_positive(batch_size=batch_size)
    if len(x) == 0:
        return torch.empty(0)
    plan = prepare(model, x[:2], device, batch_size=batch_size)
    with prepared(model, plan), EvalMode(model), torch.inference_mode(), \
            plan.autocast_context():
        out = [model(plan.input(x[i:i + plan.batch_size])).float().cpu()
               for i in range(0, len(x), plan.batch_size)]
    return torch.cat(out)


def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device | None = None
             ) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader``, in eval mode.

    The loader's batches are kept; the memory format follows the machine's speed plan.
    The caller's model keeps its train/eval mode, device and weight layout.

    Args:
        model: the classifier.
        loader: an iterable of ``(x, y)`` batches.
        device: where to compute (default: the model's own device).

    Returns:
        ``{"loss": mean cross-entropy, "accuracy": fraction correct}``.

    Raises:
        ValueError: for an empty loader.
    """
    loss_sum, correct, count = 0.0, 0, 0
    plan = None
    with contextlib.ExitStack() as stack:
        for x, y in loader:
            if plan is None:
                plan = prepare(model, x, device)
                stack.enter_context(prepared(model, plan))
                stack.enter_context(EvalMode(model))
                stack.enter_context(torch.inference_mode())
            logits = model(plan.input(x)).float()
            y = y.to(plan.device)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    if count == 0:
        raise ValueError("evaluate got an empty loader")
    return {"loss": loss_sum / count, "accuracy": correct / count}


class MaskedAdam:
    """Adam on a batch of inputs, one independent problem per row, with a row mask.

    Each element has its own first and second moments (as in ``torch.optim.Adam``,
    which is element-wise), and the bias correction uses the number of steps taken so
    far. Rows whose ``active`` flag is off do not move; their moments still see the
    gradient passed in (pass zeros to freeze them), exactly as the loops this class
    replaced did. Because Adam is element-wise, a row's trajectory equals running that
    row alone.

    Args:
        x: ``[N, ...]`` the starting point (only its shape, dtype and device are used).
        lr: step size, in the units of ``x``.
        betas: Adam's moment decay rates.
        eps: Adam's denominator offset.
    """

    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        check_positive(lr=lr)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, x: torch.Tensor, grad: torch.Tensor,
             active: torch.Tensor | None = None) -> torch.Tensor:
        """One step: returns ``x - lr * m_hat / (sqrt(v_hat) + eps)`` on the active rows."""
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        mhat = self.m / (1 - b1 ** self.t)
        vhat = self.v / (1 - b2 ** self.t)
        upd = self.lr * mhat / (vhat.sqrt() + self.eps)
        if active is not None:
            upd = upd * bview(active.to(x.dtype), x)
        return x.detach() - upd
