"""Chapter 06's robust ends and its path trained on the robust loss.

Zhao et al.'s official code (``IBM/model-sanitization``,
``evasion_attack/train_robust_connection.py``) trains the robust end with SGD (momentum
0.9, weight decay 1e-4, the ``train.py`` schedule) on the cross-entropy at a 1-step PGD
example (random start, step ``eps / 4``) plus ``10 * sum ||grad_x L||^2``
(``utils.train_examples_regularization``); with ``--curve`` the same script trains a path
on that loss, with neither weight decay nor the curve's L2 penalty.

* :func:`official_robust_end`: that robust end, the chapter's primary protocol, trained
  for ``adv_epochs`` passes over ``adv_subset`` training images with
  :func:`mcutils.training.sgd_steps` and :func:`mcutils.attacks.gradient_penalty_objective`,
  cached by :mod:`mcutils.core.store`;
* :func:`pgd_robust_end`: the earlier end of this chapter, ``adv_steps``-step PGD
  training with Adam (:func:`mcutils.zoo.trained_model`), kept as a variant;
* :func:`robust_end`: the end of a protocol (``"official"`` or ``"pgd"``);
* :func:`cached_robust_curve`: a Bezier path between two ends trained on the robust
  objective, cached.

Used by chapter 06 (through :mod:`mcutils.chapters.ch06_robust_path`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mcutils.core.checks import ParameterError

if TYPE_CHECKING:
    from mcutils.curves import CurveModel
    from mcutils.data import ImageDataset

__all__ = ["PROTOCOLS", "cached_robust_curve", "load_data", "regular_end",
           "regular_training", "official_robust_end", "pgd_robust_end", "robust_end"]

PROTOCOLS = ("official", "pgd")
"""The robust ends: the official code's 1-step PGD with the gradient penalty, and the
earlier multi-step PGD end (a variant)."""

#: SGD settings of the official robust end (train_robust_connection.py:57-62, 130-135)
OFFICIAL_SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}


def official_robust_end(params: Mapping[str, Any], seed: int | None = None
                        ) -> tuple[nn.Module, dict[str, Any]]:
    """The robust end of the official code: SGD (lr ``adv_lr``, momentum 0.9, weight
    decay ``adv_weight_decay``, the paper's schedule per step) on the 1-step PGD loss at
    ``adv_eps`` (step ``adv_eps / 4``, random start) plus ``adv_penalty`` times the summed
    squared input gradient, for ``adv_epochs`` passes over ``adv_subset`` training images
    in batches of ``batch_size``; initialised and shuffled by ``seed`` (default
    ``robust_seed``). Returns the model and its cache info (test ``metrics``)."""
    from mcutils.attacks import gradient_penalty_objective
    from mcutils.core.runtime import seed_everything
    from mcutils.core.store import code_version, load_or_train
    from mcutils.data import TensorLoader, load_dataset
    from mcutils.models import build_for_dataset
    from mcutils.training import evaluate, lr_factor, sgd_steps

    p = params
    seed = p["robust_seed"] if seed is None else int(seed)
    config = dict(name=f"{p['dataset']}_{p['model']}_official_robust", dataset=p["dataset"],
                  model=p["model"], epochs=p["adv_epochs"], lr=p["adv_lr"], momentum=0.9,
                  weight_decay=p["adv_weight_decay"], batch_size=p["batch_size"],
                  train_subset=p["adv_subset"], eps=p["adv_eps"], penalty=p["adv_penalty"],
                  attack_steps=1, step_size=p["adv_eps"] / 4, schedule="paper", seed=seed)

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(p["model"], p["dataset"])

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        data = load_dataset(p["dataset"], "train", subset=p["adv_subset"], seed=seed)
        loader = TensorLoader(data, p["batch_size"], shuffle=True, seed=seed)
        steps = p["adv_epochs"] * len(loader)
        objective = gradient_penalty_objective(p["adv_eps"], steps=1, penalty=p["adv_penalty"],
                                               seed=seed)
        sgd_steps(net, loader, steps, lr=p["adv_lr"], momentum=0.9,
                  weight_decay=p["adv_weight_decay"],
                  lr_factor=lambda k: lr_factor("paper", k, steps), device=p["device"],
                  seed=seed, progress=True, desc="robust end", objective=objective)

    def test_metrics(net: nn.Module) -> dict[str, float]:
        test = load_dataset(p["dataset"], "test")
        return evaluate(net, TensorLoader(test, 1000), device="cpu")

    return load_or_train(config, build, fit, evaluate=test_metrics, return_info=True,
                         code=code_version(sgd_steps, gradient_penalty_objective))


def pgd_robust_end(params: Mapping[str, Any], seed: int | None = None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """The variant end: ``adv_steps``-step PGD adversarial training at ``adv_eps``,
    ``adv_epochs`` epochs on ``adv_subset`` images, with the regular end's optimiser
    (:func:`regular_end`'s settings: Adam at ``lr`` by default)
    (:func:`mcutils.zoo.trained_model`), seeded by ``seed`` (default ``robust_seed``)."""
    from mcutils import zoo

    p = params
    adversarial = dict(method="pgd", eps=p["adv_eps"], steps=p["adv_steps"],
                       **({"step_size": p["adv_step_size"]} if p["adv_step_size"] else {}))
    return zoo.trained_model(
        dataset=p["dataset"], model=p["model"], epochs=p["adv_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["adv_subset"],
        seed=p["robust_seed"] if seed is None else seed, device=p["device"],
        return_info=True, adversarial=adversarial, **regular_training(p))


def robust_end(params: Mapping[str, Any], seed: int | None = None,
               protocol: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The robust end ``t = 1`` of ``protocol`` (default ``adv_protocol``): ``"official"``
    (:func:`official_robust_end`) or ``"pgd"`` (:func:`pgd_robust_end`)."""
    protocol = params["adv_protocol"] if protocol is None else protocol
    if protocol not in PROTOCOLS:
        raise ParameterError(f"protocol={protocol!r} is not known; valid values: {PROTOCOLS}")
    fn = official_robust_end if protocol == "official" else pgd_robust_end
    return fn(params, seed=seed)


def cached_robust_curve(start: nn.Module, end: nn.Module, data: ImageDataset, steps: int,
                        eps: float, lr: float = 0.05, penalty: float = 10.0,
                        batch_size: int = 128, seed: int = 0, device: str = "cpu",
                        progress: bool = False) -> CurveModel:
    """A quadratic Bezier curve between ``start`` and ``end`` (bend started on the segment)
    trained on the official robust objective
    (:func:`mcutils.attacks.gradient_penalty_objective`: 1-step PGD at ``eps`` with the
    ``penalty`` term) for ``steps`` SGD steps with the paper's schedule, no weight decay
    (as the official script for curves), one ``t`` per batch shared by the attack and the
    loss; cached by :mod:`mcutils.core.store`."""
    from mcutils.attacks import gradient_penalty_objective
    from mcutils.core.store import code_version, fingerprint, load_or_train
    from mcutils.curves import CurveModel, train_curve
    from mcutils.data import TensorLoader

    if steps < 1:
        raise ParameterError(f"steps={steps} must be >= 1")
    config = dict(name="robust_curve", ends=fingerprint(start, end),
                  data=fingerprint(data.x, data.y), steps=steps, lr=lr, eps=eps,
                  penalty=penalty, batch_size=batch_size, schedule="paper", seed=seed)

    def build() -> nn.Module:
        return CurveModel(start, start, end, "bezier", num_bends=3)

    def fit(cm: nn.Module) -> None:
        loader = TensorLoader(data, min(batch_size, len(data)), shuffle=True, seed=seed)
        objective = gradient_penalty_objective(eps, steps=1, penalty=penalty, seed=seed)
        train_curve(cm, loader, steps=steps, lr=lr, schedule="paper", device=device,
                    seed=seed, progress=progress, objective=objective)

    return load_or_train(config, build, fit,
                         code=code_version(train_curve, gradient_penalty_objective))


def load_data(params: Mapping[str, Any]) -> tuple[ImageDataset, ImageDataset, list[float]]:
    """The chapter's data: the ``eval_size`` evaluation images (a random draw of the test
    split by ``seed``), the curve's training images (``curve_subset`` of the training
    split) and the grid of ``num_ts`` equally spaced points (rounded to 6 decimals)."""
    from mcutils.data import load_dataset

    test_set = load_dataset(params["dataset"], "test")
    order = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(params["seed"]))
    eval_set = test_set.subset(order[:params["eval_size"]])
    curve_train = load_dataset(params["dataset"], "train", subset=params["curve_subset"],
                               seed=params["seed"])
    ts = np.linspace(0, 1, params["num_ts"]).round(6).tolist()
    return eval_set, curve_train, ts


def regular_end(params: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The regular end ``t = 0`` (cached by :func:`mcutils.zoo.trained_model`), with its
    cache info: the default model of chapter 00 (``regular_optimizer="adam"``, no weight
    decay, no augmentation: the same checkpoint), or an end trained as the official
    ``train.py`` does (``"sgd"``: momentum 0.9, the papers' schedule, weight decay and
    augmentation as set)."""
    from mcutils import zoo

    p = params
    return zoo.trained_model(
        dataset=p["dataset"], model=p["model"], epochs=p["num_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["train_subset"], seed=p["seed"],
        device=p["device"], return_info=True, **regular_training(p))


def regular_training(p: Mapping[str, Any]) -> dict[str, Any]:
    """Optimiser, schedule, weight decay and augmentation of the regular end (and of the
    PGD variant end): chapter 00's defaults unless ``regular_optimizer`` is ``"sgd"``."""
    sgd = p.get("regular_optimizer", "adam") == "sgd"
    return dict(optimizer="sgd" if sgd else "adam", schedule="paper" if sgd else None,
                weight_decay=float(p.get("regular_weight_decay", 0.0)),
                augment=bool(p.get("regular_augment", False)))
