"""Robustness along a weight-space path between a regular and a robust model.

Chapter 06's schema, orchestration and claims (tested at tiny sizes in
``tests/test_ch06_robust_path.py``), after Zhao et al.'s evasion-attack study: a curve
trained on the standard loss joins a regular model (``t = 0``) and an adversarially
trained one (``t = 1``); along it the PGD robustness loss and the largest eigenvalue of
the input Hessian are measured.

* :data:`PARAMETERS` is the chapter's parameter schema, :data:`EXPECTED` its expected
  claims and :data:`THRESHOLDS` its claim thresholds;
* :func:`load_data`, :func:`regular_end` and :func:`robust_end` set up the evaluation
  images and the two ends of the path;
* :func:`profile_curve` (of :mod:`mcutils.chapters.ch06_curve_profile`, re-exported here
  with :func:`weight_norm`) evaluates one curve on a grid of ``t``: per input
  (robustness loss, clean loss, top input-Hessian eigenvalue, input-gradient norm) and
  per point (their means, accuracies, the weight norm ``||w(t)||`` and, optionally, the
  paper's batch-level Hessian quantity), with BatchNorm statistics recomputed at each
  ``t``;
* :func:`path_study` trains one curve per seed (curve seed = attack seed) and profiles
  it; :func:`run_path_study` runs it with the chapter's parameters and
  :func:`shared_init_study` repeats it for a robust end that shares the regular end's
  initialisation;
* the analysis functions of :mod:`mcutils.chapters.ch06_path_stats`, re-exported here,
  turn the tables into the book's intervals: barrier heights (:func:`barrier_interval`),
  per-input correlations at fixed ``t`` (:func:`per_sample_correlations`), the
  comparison with controls that share the path's trend (:func:`control_comparison`),
  peak coincidence (:func:`peak_coincidence`), the along-path correlation kept as a
  description (:func:`along_path_correlation`) and the share of inputs within the
  second-order bound (:func:`bound_share`);
* :func:`claims` assembles the chapter's claims (statements and paper references in
  :data:`CLAIMS`, interval, threshold, direction, method) with the negative control of
  each asserted claim (:data:`CONTROL_STATEMENTS`: a planted barrier, the regular end,
  shuffled eigenvalues), run on the chapter's data;
* :data:`DEVIATIONS` and :func:`deviations` (of
  :mod:`mcutils.chapters.ch06_deviations`, re-exported): the departures from the paper's
  code;
* :func:`findings` records what the chapter glues, its claims and its deviations.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils.chapters.ch06_curve_profile import _check_grid, profile_curve, weight_norm
from mcutils.chapters.ch06_deviations import DEVIATIONS, deviations
from mcutils.chapters.ch06_ends import load_data, regular_end
from mcutils.chapters.ch06_findings import (
    CLAIMS,
    CONTROL_STATEMENTS,
    THRESHOLDS,
    claims,
    findings,
    straightened_path,
)
from mcutils.chapters.ch06_parts import (
    pool_parts,
    robust_trained_study,
    train_curve_part,
    train_robust_path_part,
    train_variant_part,
    variant_study,
)
from mcutils.chapters.ch06_path_stats import (
    CONTROLS,
    accuracy_interval,
    along_path_correlation,
    barrier_heights,
    barrier_interval,
    barrier_summary,
    bound_share,
    bound_shares,
    control_comparison,
    interval_text,
    peak_coincidence,
    per_image_correlations,
    per_sample_correlation,
    per_sample_correlations,
    planted_barrier_path,
    shuffled_samples,
)
from mcutils.chapters.common import model_params
from mcutils.core.checks import ParameterError
from mcutils.params import Param, ParameterSchema

if TYPE_CHECKING:
    from mcutils.data import ImageDataset

__all__ = [
    "CLAIMS",
    "CONTROLS",
    "CONTROL_STATEMENTS",
    "DEVIATIONS",
    "EXPECTED",
    "PARAMETERS",
    "THRESHOLDS",
    "accuracy_interval",
    "along_path_correlation",
    "barrier_heights",
    "barrier_interval",
    "barrier_summary",
    "bound_share",
    "bound_shares",
    "claims",
    "control_comparison",
    "deviations",
    "findings",
    "interval_text",
    "load_data",
    "path_study",
    "peak_coincidence",
    "per_image_correlations",
    "per_sample_correlation",
    "per_sample_correlations",
    "planted_barrier_path",
    "pool_parts",
    "profile_curve",
    "regular_end",
    "robust_end",
    "robust_trained_study",
    "run_path_study",
    "shared_init_study",
    "shuffled_samples",
    "straightened_path",
    "train_curve_part",
    "train_robust_path_part",
    "train_variant_part",
    "variant_study",
    "weight_norm",
]


def _sample_ts_on_grid(p: Mapping[str, Any]) -> str | None:
    """``sample_ts`` must be points of the grid of ``num_ts`` equally spaced points."""
    try:
        _check_grid(int(p["num_ts"]), p["sample_ts"])
    except ParameterError as exc:
        return str(exc)
    return None


def _path_size_within_eval_size(p: Mapping[str, Any]) -> str | None:
    if p["path_size"] > p["eval_size"]:
        return f"path_size={p['path_size']} must be <= eval_size={p['eval_size']}"
    return None


def _paper_batch_within_path_size(p: Mapping[str, Any]) -> str | None:
    if p["paper_batch"] > p["path_size"]:
        return (f"paper_batch={p['paper_batch']} must be <= path_size={p['path_size']} (the "
                "paper's code skips incomplete batches)")
    return None


def _budget_curve(p: Mapping[str, Any]) -> str | None:
    """``curve_budgets``: :func:`mcutils.chapters.ch06_budget.check_budgets`, and at least 2
    seeds for an interval."""
    from mcutils.chapters.ch06_budget import check_budgets

    try:
        check_budgets(p["curve_budgets"])
    except ParameterError as exc:
        return str(exc)
    if len(p["seeds"]) < 2:
        return f"seeds={p['seeds']}: the budget curve's interval over seeds needs at least 2"
    return None


PARAMETERS = ParameterSchema("06", {
    **model_params(seed_help="the regular end (chapter 00's model) and the choice of "
                             "evaluation images"),
    "regular_optimizer": Param("adam", "the regular end: adam (chapter 00's model) or sgd "
                               "(the official train.py: momentum 0.9, the papers' schedule)",
                               choices=("adam", "sgd")),
    "regular_weight_decay": Param(0.0, "the regular end's weight decay (official VGG16: 5e-4)",
                                  range=(0, 1)),
    "regular_augment": Param(False, "the regular end's random crops and flips (official: "
                             "the VGG transform)", choices=(True, False)),
    "seeds": Param([0, 1, 2], "one curve (its batches and t draws) and one PGD random start "
                   "per seed", range=(0, None)),
    "robust_seed": Param(1, "initialisation and shuffling of the robust end: independent of "
                         "the regular end", range=(0, None)),
    "adv_protocol": Param("official", "the robust end: official (1-step PGD + gradient "
                          "penalty, SGD) or pgd (adv_steps-step PGD, Adam)",
                          choices=("official", "pgd")),
    "adv_eps": Param(0.1, "L-inf radius of adversarial training and of the evaluation attack "
                     "(pixel units)", range=(1e-4, 1)),
    "adv_penalty": Param(10.0, "official end: weight of the summed squared input gradient",
                         range=(0, None)),
    "adv_lr": Param(0.01, "official end: SGD learning rate (momentum 0.9, paper's schedule)",
                    range=(1e-6, 10)),
    "adv_weight_decay": Param(0.0001, "official end: SGD weight decay", range=(0, 1)),
    "adv_steps": Param(3, "pgd end: PGD steps per training batch", range=(1, 100)),
    "adv_step_size": Param(None, "pgd end: PGD step (None: 2.5 * adv_eps / adv_steps)",
                           range=(1e-5, 1), nullable=True),
    "adv_epochs": Param(2, "epochs of adversarial training (both ends)", range=(1, None)),
    "adv_subset": Param(20000, "training images for adversarial training (None: all)",
                        range=(1, None), nullable=True),
    "curve_budgets": Param([750, 1500, 3000], "curve steps of the barrier's budget curve, "
                           "snapshots of one run per seed (the largest is the main curve)",
                           range=(1, None)),
    "curve_lr": Param(0.05, "the curve's SGD learning rate", range=(1e-6, 10)),
    "curve_weight_decay": Param(0.0001, "the paper's wd: penalty wd/2 ||w(t)||^2",
                                range=(0, 1)),
    "curve_subset": Param(None, "training images for the curve (None: all)", range=(1, None),
                          nullable=True),
    "variant_seeds": Param([0], "curves of the largest budget to the pgd end, the variant "
                           "([]: skip)", range=(0, None)),
    "robust_path_seeds": Param([], "curves trained on the official robust loss ([]: skip)",
                               range=(0, None)),
    "robust_path_steps": Param(3000, "SGD steps of the curves trained on the robust loss",
                               range=(1, None)),
    "num_ts": Param(9, "equally spaced points along the curve, ends included", range=(3, 201)),
    "sample_ts": Param([0.25, 0.5, 0.75], "points where every evaluation image is used",
                       range=(0, 1)),
    "eval_size": Param(500, "test images at sample_ts", range=(10, 10000)),
    "path_size": Param(200, "the first path_size of them at every point", range=(10, 10000)),
    "attack_steps": Param(10, "PGD steps of the evaluation attack (step 2.5 eps / steps)",
                          range=(1, 1000)),
    "paper_batch": Param(200, "batch of the paper's Hessian code (one vector shaped like a "
                         "batch)", range=(1, 10000)),
    "bound_eps_l2": Param([0.25, 1.0], "L2 radii at which the second-order bound is also "
                          "checked", range=(1e-4, 100)),
    "shared_init_seeds": Param([], "curves to a robust end that shares the regular end's "
                               "initialisation ([]: skip)", range=(0, None)),
    "bn_size": Param(2000, "training images for BatchNorm statistics at each t",
                     range=(1, None)),
    "n_boot": Param(2000, "bootstrap resamples", range=(10, 100000)),
}, checks=[_sample_ts_on_grid, _path_size_within_eval_size, _paper_batch_within_path_size,
           _budget_curve])
"""Chapter 06's parameters: the default model's, the two ends, the curve, the grid and the
evaluation; ``sample_ts`` must lie on the grid, ``path_size <= eval_size`` and
``paper_batch <= path_size``; the budgets as :func:`mcutils.chapters.ch06_budget.check_budgets`
requires."""

EXPECTED = ["standard_no_barrier", "robust_end", "per_sample_correlation"]
"""The claims this chapter expects to reproduce (asserted when ``check_claims``)."""


def path_study(regular: nn.Module, robust: nn.Module, train_set: ImageDataset,
               x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
               ts: Sequence[float] | int, eps: float, curve_budgets: Sequence[int],
               curve_lr: float = 0.05, curve_weight_decay: float = 1e-4,
               batch_size: int = 128, bn_size: int = 2000, device: str = "cpu",
               bound_seeds: int = 1, bound_eps_l2: Sequence[float] = (),
               progress: bool = True, **profile_kwargs: Any) -> dict[str, pd.DataFrame]:
    """Train one curve per seed between ``regular`` and ``robust`` and profile each.

    The curve is a quadratic Bezier curve with fixed ends, its bend initialised on the
    segment and trained on ``train_set`` with SGD (momentum 0.9), one ``t ~ U[0, 1]``
    per batch, standard cross-entropy plus ``curve_weight_decay / 2 * ||w(t)||^2`` (the
    paper's ``l2_regularizer`` with ``wd = 1e-4``) and the paper's schedule, for the
    largest of ``curve_budgets`` steps: the run of
    :func:`mcutils.chapters.ch06_budget.cached_curve_budgets`, which also keeps the
    smaller budgets. Seed ``s`` seeds the curve's batches and ``t`` draws and the
    attack's random start.

    Args:
        regular, robust: the two ends (same architecture).
        train_set: the curve's training data; its first ``bn_size`` images also serve
            for the BatchNorm statistics.
        x, y: evaluation inputs (test split) and labels.
        seeds: one curve (and attack) per seed.
        ts: the grid of :func:`profile_curve`.
        eps: L-inf attack radius.
        curve_budgets, curve_lr, curve_weight_decay: curve training.
        batch_size: training and evaluation batch size.
        bn_size: images for BatchNorm statistics.
        device: where to train and evaluate.
        bound_seeds: the L2 bound check runs for the first ``bound_seeds`` seeds only.
        bound_eps_l2: see :func:`profile_curve`.
        progress: show progress bars.
        **profile_kwargs: passed to :func:`profile_curve` (``sample_ts``,
            ``path_size``, ``attack_steps``, ``paper_batch`` ...).

    Returns:
        The three tables of :func:`profile_curve` with a ``seed`` column, plus
        ``"training"`` (per seed: whether the curve came from the cache, its training
        seconds).
    """
    from mcutils.chapters.ch06_budget import cached_curve_budgets
    from mcutils.data import TensorLoader

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ParameterError(f"seeds={seeds} must be a non-empty list of distinct integers")
    if bn_size < 1:
        raise ParameterError(f"bn_size={bn_size} must be >= 1")
    _check_grid(ts, profile_kwargs.get("sample_ts", ()))
    bn_data = train_set.subset(torch.arange(min(bn_size, len(train_set))))
    bn_loader = TensorLoader(bn_data, batch_size)
    out: dict[str, list[pd.DataFrame]] = {"samples": [], "path": [], "bound": []}
    training = []
    for i, s in enumerate(tqdm(seeds, desc="seeds", disable=not progress, leave=False)):
        curves, infos = cached_curve_budgets(
            regular, robust, train_set, curve_budgets, lr=curve_lr,
            weight_decay=curve_weight_decay, batch_size=batch_size, seed=s, device=device,
            progress=progress, return_info=True)
        largest = max(curves)
        curve, info = curves[largest], infos[largest]
        prof = profile_curve(curve.to(device), ts, x, y, eps=eps, bn_loader=bn_loader,
                             attack_seed=s, batch_size=batch_size,
                             bound_eps_l2=bound_eps_l2 if i < bound_seeds else (),
                             progress=progress, **profile_kwargs)
        for key, table in prof.items():
            out[key].append(table.assign(seed=s))
        training.append({"seed": s, "cached": info["cached"],
                         "train_seconds": info["train_seconds"]})
    result = {k: pd.concat(v, ignore_index=True) for k, v in out.items()}
    result["training"] = pd.DataFrame(training)
    return result


# ------------------------------------------------------------------ the chapter's run
def robust_end(params: Mapping[str, Any], seed: int | None = None,
               protocol: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The robust end ``t = 1`` (:func:`mcutils.chapters.ch06_ends.robust_end`): the
    official code's end (1-step PGD plus the gradient penalty, SGD) when ``adv_protocol``
    is ``"official"``, the multi-step PGD end otherwise; initialised and shuffled by
    ``seed`` (default ``robust_seed``), with its cache info."""
    from mcutils.chapters.ch06_ends import robust_end as _end

    return _end(params, seed=seed, protocol=protocol)


def run_path_study(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
                   curve_train: ImageDataset, eval_set: ImageDataset,
                   ts: Sequence[float]) -> dict[str, pd.DataFrame]:
    """:func:`path_study` with the chapter's parameters: one curve per seed of ``seeds``,
    every measurement (the paper's Hessian quantity, the L2 bound) on ``ts``."""
    p = params
    return path_study(
        regular, robust, curve_train, eval_set.x, eval_set.y, seeds=p["seeds"], ts=ts,
        eps=p["adv_eps"], curve_budgets=p["curve_budgets"], curve_lr=p["curve_lr"],
        curve_weight_decay=p["curve_weight_decay"], batch_size=p["batch_size"],
        bn_size=p["bn_size"], device=p["device"], attack_steps=p["attack_steps"],
        sample_ts=p["sample_ts"], path_size=p["path_size"], paper_batch=p["paper_batch"],
        bound_eps_l2=p["bound_eps_l2"])


def shared_init_study(params: Mapping[str, Any], regular: nn.Module,
                      curve_train: ImageDataset, eval_set: ImageDataset,
                      ts: Sequence[float]) -> dict[str, pd.DataFrame] | None:
    """The comparison of section 3: a robust end trained as :func:`robust_end` but from the
    regular end's initialisation (seed ``seed``), and one curve to it per seed of
    ``shared_init_seeds`` on the first ``path_size`` images at every point (no per-input
    points, no paper quantity, no L2 bound). ``None`` when that list is empty."""
    p = params
    if not p["shared_init_seeds"]:
        return None
    robust_shared, _ = robust_end(p, seed=p["seed"])
    return path_study(
        regular, robust_shared, curve_train, eval_set.x, eval_set.y,
        seeds=p["shared_init_seeds"], ts=ts, eps=p["adv_eps"],
        curve_budgets=p["curve_budgets"],
        curve_lr=p["curve_lr"], curve_weight_decay=p["curve_weight_decay"],
        batch_size=p["batch_size"], bn_size=p["bn_size"], device=p["device"],
        attack_steps=p["attack_steps"], path_size=p["path_size"])
