"""Chapter 06's budget curve: the robustness-loss barrier against the curve's training
budget, so that the chapter reads its barrier claim where the statistic has settled.

A 300-step curve gave "no robustness barrier" (-0.003) where 3,000 steps gave +0.40 on two
seeds: the claim depends on the budget. :func:`barrier_vs_budget` trains one curve per
seed at each budget (the chapter's own curve settings, cached by
:func:`mcutils.repair.cached_curve`, so the chapter's main curve is shared) and measures
the relative robustness-loss and clean-loss barriers along each, with PGD on the first
``path_size`` test inputs at every point: the same statistic as the chapter's claim,
without the curvature columns it does not need. The result feeds
:meth:`mcutils.core.report.ChapterReport.claim` (``budgets=``), which reads the claim at
the largest budget and calls it inconclusive while the last two budgets disagree.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.chapters.ch06_path_stats import barrier_interval
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device
from mcutils.core.stats import Interval
from mcutils.data import ImageDataset, TensorLoader

__all__ = ["robust_path", "barrier_vs_budget", "run_budget_study"]


def robust_path(curve: Any, ts: Sequence[float], x: torch.Tensor, y: torch.Tensor, eps: float,
                attack_steps: int, bn_loader: Any = None, attack_seed: int = 0,
                batch_size: int = 128) -> pd.DataFrame:
    """Mean clean and PGD (L-inf, ``eps``) cross-entropy of ``x`` at each ``t`` of a curve
    (BatchNorm statistics recomputed at each ``t`` when ``bn_loader`` is given): rows
    ``(t, loss, robust_loss)``."""
    from mcutils.attacks import pgd

    if len(x) != len(y) or len(x) < 1:
        raise ParameterError("x and y must hold the same number (>= 1) of inputs")
    rows = []
    for t in ts:
        model: nn.Module = curve.model_at(t, bn_loader) if bn_loader is not None \
            else curve.model_at(t)
        model.eval()
        dev = model_device(model)
        xs, ys = x.to(dev), y.to(dev)
        adv = pgd(model, xs, ys, eps=eps, steps=attack_steps, norm="linf",
                  generator=torch.Generator().manual_seed(attack_seed), batch_size=batch_size)
        with torch.no_grad():
            clean = torch.cat([model(xs[i:i + batch_size]) for i in range(0, len(xs), batch_size)])
            robust = torch.cat([model(adv[i:i + batch_size]) for i in range(0, len(adv), batch_size)])
        rows.append({"t": float(t), "loss": float(F.cross_entropy(clean, ys)),
                     "robust_loss": float(F.cross_entropy(robust, ys))})
    return pd.DataFrame(rows)


def barrier_vs_budget(regular: nn.Module, robust: nn.Module, train_set: ImageDataset,
                      x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
                      budgets: Sequence[int], ts: Sequence[float], eps: float,
                      attack_steps: int = 10, curve_lr: float = 0.05,
                      curve_weight_decay: float = 1e-4, curve_schedule: str | None = "cosine",
                      batch_size: int = 128, bn_size: int = 2000, device: str = "cpu",
                      progress: bool = False) -> dict[str, dict[int, Interval]]:
    """The relative robustness-loss and clean-loss barriers (Student-t over seeds) at each
    curve budget: ``{"robust": {budget: interval}, "standard": {budget: interval}}``.

    Args:
        regular, robust: the two ends.
        train_set: the curves' training data; its first ``bn_size`` images give the
            BatchNorm statistics.
        x, y: the evaluation inputs (every point uses all of them).
        seeds: one curve per seed and budget (at least 2 for an interval).
        budgets: curve training steps, increasing.
        ts: the points along the path (0 and 1 included).
        eps, attack_steps: the L-inf PGD attack.
        curve_lr, curve_weight_decay, curve_schedule, batch_size: curve training, as the
            chapter's main curve.
        bn_size, device, progress: as :func:`mcutils.chapters.ch06_robust_path.path_study`.
    """
    from mcutils.repair import cached_curve

    budgets = [int(b) for b in budgets]
    if len(budgets) < 3 or budgets != sorted(set(budgets)) or budgets[0] < 1:
        raise ParameterError(f"budgets={budgets} must be >= 3 increasing positive step counts")
    if len(seeds) < 2:
        raise ParameterError(f"seeds={list(seeds)}: an interval over seeds needs at least 2")
    ts = [float(t) for t in ts]
    if len(ts) < 3 or ts[0] != 0.0 or ts[-1] != 1.0:
        raise ParameterError("ts must hold at least 3 points from 0 to 1")
    bn_loader = TensorLoader(train_set.subset(torch.arange(min(bn_size, len(train_set)))),
                             batch_size)
    out: dict[str, dict[int, Interval]] = {"robust": {}, "standard": {}}
    for b in tqdm(budgets, desc="curve budgets", disable=not progress, leave=False):
        paths = []
        for s in seeds:
            curve = cached_curve(regular, robust, train_set, steps=b, lr=curve_lr,
                                 weight_decay=curve_weight_decay, schedule=curve_schedule,
                                 batch_size=batch_size, seed=int(s), device=device)
            paths.append(robust_path(curve.to(device), ts, x, y, eps, attack_steps,
                                     bn_loader=bn_loader, attack_seed=int(s),
                                     batch_size=batch_size).assign(seed=int(s)))
        path = pd.concat(paths, ignore_index=True)
        out["robust"][b] = barrier_interval(path, "robust_loss", relative=True)
        out["standard"][b] = barrier_interval(path, "loss", relative=True)
    return out


def run_budget_study(params: dict[str, Any], regular: nn.Module, robust: nn.Module,
                     curve_train: ImageDataset, eval_set: ImageDataset,
                     ts: Sequence[float]) -> dict[str, dict[int, Interval]]:
    """:func:`barrier_vs_budget` with the chapter's validated parameters: its seeds, the
    budgets ``curve_budgets``, its curve settings and attack, on the first ``path_size``
    evaluation images."""
    n = params["path_size"]
    return barrier_vs_budget(
        regular, robust, curve_train, eval_set.x[:n], eval_set.y[:n], seeds=params["seeds"],
        budgets=params["curve_budgets"], ts=ts, eps=params["adv_eps"],
        attack_steps=params["attack_steps"], curve_lr=params["curve_lr"],
        curve_weight_decay=params["curve_weight_decay"],
        curve_schedule="cosine",  # the schedule of the chapter's main curve (path_study)
        batch_size=params["batch_size"], bn_size=params["bn_size"], device=params["device"],
        progress=True)
