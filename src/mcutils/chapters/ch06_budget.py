"""Chapter 06's budget curve: the robustness barriers against the curve's training
steps, so that the chapter reads its barrier claims where the statistics have settled.

A 300-step curve gave "no robustness barrier" (-0.003) where 3,000 steps gave +0.40 on two
seeds (issue 27): the claim depends on the budget.

* :func:`cached_curve_budgets` trains one curve per seed for the largest budget with the
  paper's schedule (learning rate held for the first half, then decayed) and keeps the
  bends after each smaller budget. A budget of at most half the largest is still in the
  constant-rate half, so its snapshot *is* a complete run of that many steps at the
  constant rate (a test checks that the two agree). One run per seed gives every budget,
  each cached under its own key.
* :func:`robust_path` measures a curve along ``t``: mean clean loss and error, mean PGD
  loss and robust error.
* :func:`barrier_vs_budget` gives, per budget, the Student-t intervals over seeds of the
  relative robustness-loss barrier, the robust-error barrier (in points of error) and the
  relative clean-loss barrier; :func:`run_budget_study` runs it with the chapter's
  parameters, reusing the main study's path at the largest budget.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.chapters.ch06_path_stats import barrier_interval
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device
from mcutils.data import ImageDataset, TensorLoader

__all__ = ["BARRIERS", "barrier_vs_budget", "cached_curve_budgets", "check_budgets",
           "robust_path", "run_budget_study"]

BARRIERS = {"robust": ("robust_loss", True), "robust_error": ("robust_error", False),
            "standard": ("loss", True)}
"""The barriers of the budget curve: name -> (column of the path table, relative to the
worse end?). The robust error is bounded by 1, so its barrier is in points of error."""


def check_budgets(budgets: Sequence[int]) -> list[int]:
    """``budgets`` as ints: at least 3 increasing step counts, the largest at least 4x the
    smallest, every other at most half the largest (so that it is a snapshot taken
    while the paper's schedule still holds the learning rate)."""
    b = [int(v) for v in budgets]
    if len(b) < 3 or b != sorted(set(b)) or b[0] < 1 or b[-1] < 4 * b[0]:
        raise ParameterError(f"budgets={b} must be >= 3 increasing positive step counts, the "
                             "largest at least 4x the smallest")
    if any(2 * v > b[-1] for v in b[:-1]):
        raise ParameterError(f"budgets={b}: every budget but the largest must be at most half "
                             "of it (the paper's schedule holds the rate for the first half)")
    return b


def cached_curve_budgets(start: nn.Module, end: nn.Module, data: ImageDataset,
                         budgets: Sequence[int], lr: float = 0.05,
                         weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0,
                         device: str = "cpu", progress: bool = False,
                         return_info: bool = False) -> Any:
    """One curve per budget from a single training run, each cached.

    A quadratic Bezier curve with fixed ends and its bend started on the segment is
    trained on ``data`` for the largest budget (SGD, momentum 0.9, batch ``batch_size``,
    one ``t`` per batch, penalty ``weight_decay / 2 ||w(t)||^2``, the paper's schedule:
    :func:`mcutils.curves.train_curve`); the bends after each smaller budget ``b`` are
    kept. Since ``b`` is at most half the largest, the rate was constant until then, so
    the snapshot equals a complete ``b``-step run at the constant rate (tested). Every
    budget has its own cache key (the run's settings plus ``snapshot=b``), so a chapter
    that asks again loads them; a missing snapshot retrains the run.

    Returns:
        ``{budget: CurveModel}`` (and ``{budget: cache info}`` with ``return_info``).
    """
    from mcutils.core.store import code_version, fingerprint, load_or_train
    from mcutils.curves import CurveModel, train_curve

    budgets = check_budgets(budgets)
    largest = budgets[-1]
    base = dict(name="curve_run", ends=fingerprint(start, end),
                data=fingerprint(data.x, data.y), steps=largest, lr=lr,
                weight_decay=weight_decay, curve="bezier", num_bends=3,
                batch_size=batch_size, schedule="paper", seed=seed)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def build() -> nn.Module:
        return CurveModel(start, start, end, "bezier", num_bends=3)

    def keep(step: int, curve: nn.Module) -> None:
        if step in budgets[:-1]:
            snapshots[step] = {k: v.detach().clone().contiguous()
                               for k, v in curve.state_dict().items()}

    def run(cm: nn.Module) -> None:
        loader = TensorLoader(data, min(batch_size, len(data)), shuffle=True, seed=seed)
        train_curve(cm, loader, steps=largest, lr=lr, weight_decay=weight_decay,
                    schedule="paper", device=device, seed=seed, progress=progress,
                    callback=keep)

    code = code_version(train_curve)
    out = {largest: load_or_train({**base, "snapshot": largest}, build, run, code=code,
                                  return_info=True)}
    for b in budgets[:-1]:
        def fit(cm: nn.Module, b: int = b) -> None:
            if b not in snapshots:  # the run came from the cache: train it again
                run(build())
            cm.load_state_dict(snapshots[b])
        out[b] = load_or_train({**base, "snapshot": b}, build, fit, code=code,
                               return_info=True)
    curves = {b: out[b][0] for b in budgets}
    return (curves, {b: out[b][1] for b in budgets}) if return_info else curves


def robust_path(curve: Any, ts: Sequence[float], x: torch.Tensor, y: torch.Tensor, eps: float,
                attack_steps: int, bn_loader: Any = None, attack_seed: int = 0,
                batch_size: int = 128) -> pd.DataFrame:
    """Mean clean and PGD (L-inf, ``eps``) cross-entropy and error of ``x`` at each ``t``
    of a curve (BatchNorm statistics recomputed at each ``t`` when ``bn_loader`` is
    given): rows ``(t, loss, error, robust_loss, robust_error)``."""
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
                     "error": float((clean.argmax(1) != ys).float().mean()),
                     "robust_loss": float(F.cross_entropy(robust, ys)),
                     "robust_error": float((robust.argmax(1) != ys).float().mean())})
    return pd.DataFrame(rows)


def barrier_vs_budget(regular: nn.Module, robust: nn.Module, train_set: ImageDataset,
                      x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
                      budgets: Sequence[int], ts: Sequence[float], eps: float,
                      attack_steps: int = 10, curve_lr: float = 0.05,
                      curve_weight_decay: float = 1e-4, batch_size: int = 128,
                      bn_size: int = 2000, device: str = "cpu",
                      known: Mapping[int, pd.DataFrame] | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """The barriers of :data:`BARRIERS` (Student-t over seeds) at each curve budget.

    Args:
        regular, robust: the two ends.
        train_set: the curves' training data; its first ``bn_size`` images give the
            BatchNorm statistics.
        x, y: the evaluation inputs (every point uses all of them).
        seeds: one curve per seed and budget (at least 2 for an interval).
        budgets: curve training steps (:func:`check_budgets`).
        ts: the points along the path (0 and 1 included).
        eps, attack_steps: the L-inf PGD attack (random start seeded by the curve's seed).
        curve_lr, curve_weight_decay, batch_size: curve training
            (:func:`cached_curve_budgets`).
        bn_size, device, progress: as
            :func:`mcutils.chapters.ch06_robust_path.path_study`.
        known: path tables already measured (``t``, ``seed`` and the columns of
            :data:`BARRIERS`) by budget, e.g. the main study's at the largest budget.

    Returns:
        ``{name: {budget: interval}}`` for each name of :data:`BARRIERS`, and ``"paths"``
        (the per-seed path tables of every budget, with ``budget`` and ``seed`` columns).
    """
    budgets = check_budgets(budgets)
    if len(seeds) < 2:
        raise ParameterError(f"seeds={list(seeds)}: an interval over seeds needs at least 2")
    ts = [float(t) for t in ts]
    if len(ts) < 3 or ts[0] != 0.0 or ts[-1] != 1.0:
        raise ParameterError("ts must hold at least 3 points from 0 to 1")
    known = dict(known or {})
    bn_loader = TensorLoader(train_set.subset(torch.arange(min(bn_size, len(train_set)))),
                             batch_size)
    paths = {b: [] for b in budgets}
    for s in tqdm(seeds, desc="curve seeds", disable=not progress, leave=False):
        curves = cached_curve_budgets(regular, robust, train_set, budgets, lr=curve_lr,
                                      weight_decay=curve_weight_decay, batch_size=batch_size,
                                      seed=int(s), device=device)
        for b in budgets:
            if b in known:
                continue
            paths[b].append(robust_path(curves[b].to(device), ts, x, y, eps, attack_steps,
                                        bn_loader=bn_loader, attack_seed=int(s),
                                        batch_size=batch_size).assign(seed=int(s)))
    tables = {b: (known[b] if b in known else pd.concat(paths[b], ignore_index=True))
              for b in budgets}
    out: dict[str, Any] = {name: {} for name in BARRIERS}
    for b, path in tables.items():
        for name, (column, relative) in BARRIERS.items():
            out[name][b] = barrier_interval(path, column, relative=relative)
    out["paths"] = pd.concat([t.assign(budget=b) for b, t in tables.items()], ignore_index=True)
    return out


def run_budget_study(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
                     curve_train: ImageDataset, eval_set: ImageDataset, ts: Sequence[float],
                     path: pd.DataFrame | None = None) -> dict[str, Any]:
    """:func:`barrier_vs_budget` with the chapter's validated parameters: its seeds, the
    budgets ``curve_budgets``, its curve settings and attack, on the first ``path_size``
    evaluation images; ``path`` (the main study's per-point table, measured on the same
    images, seeds and attack at the largest budget) is reused there."""
    n = params["path_size"]
    largest = max(params["curve_budgets"])
    known = None
    if path is not None:
        known = {largest: path.assign(error=1 - path["accuracy"],
                                      robust_error=1 - path["robust_accuracy"])}
    return barrier_vs_budget(
        regular, robust, curve_train, eval_set.x[:n], eval_set.y[:n], seeds=params["seeds"],
        budgets=params["curve_budgets"], ts=ts, eps=params["adv_eps"],
        attack_steps=params["attack_steps"], curve_lr=params["curve_lr"],
        curve_weight_decay=params["curve_weight_decay"], batch_size=params["batch_size"],
        bn_size=params["bn_size"], device=params["device"], known=known, progress=True)
