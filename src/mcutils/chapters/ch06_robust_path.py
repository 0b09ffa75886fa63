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

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils.chapters.ch06_curve_profile import _check_grid, profile_curve, weight_norm
from mcutils.chapters.ch06_path_figures import path_means
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
from mcutils.chapters.ch06_deviations import DEVIATIONS, deviations
from mcutils.chapters.common import model_params
from mcutils.core.checks import ParameterError
from mcutils.core.report import ChapterReport
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
    "profile_curve",
    "regular_end",
    "robust_end",
    "run_path_study",
    "shared_init_study",
    "shuffled_samples",
    "weight_norm",
]

THRESHOLDS = {
    "standard_tol": 0.1,
    "robust_accuracy": 0.5,
    "barrier_margin": 0.1,
    "correlation": 0.5,
    "bound_share": 0.95,
    "along_path": 0.5,
}
"""The chapter's claim thresholds, fixed before any run: a standard-loss "barrier" of at
most 10% of the worse end counts as none; the robust end must keep half of its inputs
under attack; a robustness-loss barrier must rise at least 10% above the worse end; a
"high" correlation is at least 0.5; the bound must hold on 95% of inputs. The peak
tolerance is one step of the grid (set by :func:`claims`)."""


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
    """``curve_budgets``: at least 3 increasing step counts, the largest >= 4x the smallest."""
    b = list(p["curve_budgets"])
    if len(b) < 3 or b != sorted(set(b)) or b[-1] < 4 * b[0]:
        return (f"curve_budgets={b} must hold at least 3 increasing step counts, the largest "
                "at least 4x the smallest")
    if len(p["seeds"]) < 2:
        return f"seeds={p['seeds']}: the budget curve's interval over seeds needs at least 2"
    return None


PARAMETERS = ParameterSchema("06", {
    **model_params(seed_help="the regular end (chapter 00's model) and the choice of "
                             "evaluation images"),
    "seeds": Param([0, 1, 2], "one curve (its batches and t draws) and one PGD random start "
                   "per seed", range=(0, None)),
    "robust_seed": Param(1, "initialisation and shuffling of the robust end: independent of "
                         "the regular end", range=(0, None)),
    "adv_eps": Param(0.1, "L-inf radius of PGD training and of the evaluation attack (pixel "
                     "units)", range=(1e-4, 1)),
    "adv_steps": Param(3, "PGD steps per training batch", range=(1, 100)),
    "adv_step_size": Param(None, "PGD step during training (None: 2.5 * adv_eps / adv_steps)",
                           range=(1e-5, 1), nullable=True),
    "adv_epochs": Param(1, "epochs of PGD training", range=(1, None)),
    "adv_subset": Param(20000, "training images for PGD training (None: all)",
                        range=(1, None), nullable=True),
    "curve_steps": Param(300, "SGD steps that train the curve's middle bend", range=(1, None)),
    "curve_budgets": Param([150, 300, 600], "curve steps of the barrier's budget curve "
                           "(the claim is read at the largest)", range=(1, None)),
    "curve_lr": Param(0.05, "the curve's SGD learning rate", range=(1e-6, 10)),
    "curve_weight_decay": Param(0.0001, "the paper's wd: penalty wd/2 ||w(t)||^2",
                                range=(0, 1)),
    "curve_subset": Param(None, "training images for the curve (None: all)", range=(1, None),
                          nullable=True),
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
    "shared_init_seeds": Param([0], "curves to a robust end that shares the regular end's "
                               "initialisation ([]: skip)", range=(0, None)),
    "bn_size": Param(2000, "training images for BatchNorm statistics at each t",
                     range=(1, None)),
    "n_boot": Param(2000, "bootstrap resamples", range=(10, 100000)),
}, checks=[_sample_ts_on_grid, _path_size_within_eval_size, _paper_batch_within_path_size,
           _budget_curve])
"""Chapter 06's parameters: the default model's, the two ends, the curve, the grid and the
evaluation; ``sample_ts`` must lie on the grid, ``path_size <= eval_size`` and
``paper_batch <= path_size``."""

EXPECTED = ["standard_no_barrier", "robust_end", "per_sample_correlation"]
"""The claims this chapter expects to reproduce (asserted when ``check_claims``)."""


def path_study(regular: nn.Module, robust: nn.Module, train_set: ImageDataset,
               x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
               ts: Sequence[float] | int,
               eps: float, curve_steps: int, curve_lr: float = 0.05,
               curve_weight_decay: float = 1e-4, curve_schedule: str | None = "cosine",
               batch_size: int = 128, bn_size: int = 2000, device: str = "cpu",
               bound_seeds: int = 1, bound_eps_l2: Sequence[float] = (),
               progress: bool = True, **profile_kwargs: Any) -> dict[str, pd.DataFrame]:
    """Train one curve per seed between ``regular`` and ``robust`` and profile each.

    The curve is a quadratic Bezier curve with fixed ends, its bend initialised on the
    segment and trained on ``train_set`` with SGD (momentum 0.9), one ``t ~ U[0, 1]``
    per batch, standard cross-entropy plus ``curve_weight_decay / 2 * ||w(t)||^2`` (the
    paper's ``l2_regularizer`` with ``wd = 1e-4``), cached by
    :func:`mcutils.repair.cached_curve`. Seed ``s`` seeds the curve's batches and ``t``
    draws and the attack's random start.

    Args:
        regular, robust: the two ends (same architecture).
        train_set: the curve's training data; its first ``bn_size`` images also serve
            for the BatchNorm statistics.
        x, y: evaluation inputs (test split) and labels.
        seeds: one curve (and attack) per seed.
        ts: the grid of :func:`profile_curve`.
        eps: L-inf attack radius.
        curve_steps, curve_lr, curve_weight_decay, curve_schedule: curve training.
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
        ``"training"`` (per seed: the final curve-training loss).
    """
    from mcutils.data import TensorLoader
    from mcutils.repair import cached_curve

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
        curve, info = cached_curve(regular, robust, train_set, steps=curve_steps, lr=curve_lr,
                                   weight_decay=curve_weight_decay, schedule=curve_schedule,
                                   batch_size=batch_size, seed=s, device=device,
                                   progress=progress, return_info=True)
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


CLAIMS: dict[str, dict[str, str]] = {
    "standard_no_barrier": {
        "statement": ("precondition: no standard-loss barrier on the path (largest clean test "
                      "loss inside the path minus the worse end, relative to it; t-interval "
                      "over seeds)"),
        "paper": "no standard-loss barrier on any of its paths (Fig. 4, CIFAR-10 VGG)",
    },
    "robust_end": {
        "statement": ("the adversarially trained end is robust: its PGD robust accuracy "
                      "(share of test inputs that resist the attack of every seed)"),
        "paper": "robust end: PGD adversarial training (the paper's setup)",
    },
    "robust_barrier": {
        "statement": ("a robustness-loss barrier: the largest PGD loss inside the path "
                      "exceeds the worse end by more than a margin (relative to it; "
                      "t-interval over seeds)"),
        "paper": "robustness-loss barrier between regular and robust models (Fig. 4)",
    },
    "per_sample_correlation": {
        "statement": ("per input at fixed t, the robustness loss rises with the top "
                      "input-Hessian eigenvalue (Spearman, mean over the sampled t and seeds; "
                      "bootstrap over inputs)"),
        "paper": "high correlation along the path (PCC, Fig. 4); per input: not tested there",
    },
    "beats_controls_path": {
        "statement": ("along the path the eigenvalue tracks the robustness loss better than "
                      "every control sharing the path's trend (weakest margin: {worst}; "
                      "r(eigenvalue) - |r(control)|, t-interval over seeds)"),
        "paper": "not tested in the paper (it reports the eigenvalue's PCC only)",
    },
    "beats_controls_per_input": {
        "statement": ("per input the eigenvalue ranks robustness losses better than the clean "
                      "loss and the input-gradient norm (weakest margin: {worst_image}; "
                      "rho(eigenvalue) - |rho(control)|, t-interval over seeds)"),
        "paper": "not tested in the paper",
    },
    "peak_coincidence": {
        "statement": ("the robustness loss and the eigenvalue peak at the same t (|difference "
                      "of the argmax t|; t-interval over seeds)"),
        "paper": "the eigenvalue follows the robustness-loss barrier (Fig. 4)",
    },
    "along_path_pcc": {
        "statement": ("description, not a test: Pearson r of robustness loss and mean top "
                      "eigenvalue over the points of the path (mean over seeds)"),
        "paper": "PCC in the titles of Fig. 4 (CIFAR-10 VGG)",
    },
    "second_order_bound": {
        "statement": ("the paper's second-order bound holds on the PGD robustness loss (L-inf "
                      "ball, eps={eps:g}; share of inputs within it at every point)"),
        "paper": ("second-order bound of the robustness loss by the top eigenvalue (its "
                  "theoretical justification)"),
    },
}
"""The chapter's claims in the order of its table: each one's statement (a template
filled by :func:`claims` with the weakest controls and the radius) and what the paper
says."""

CONTROL_STATEMENTS = {
    "standard_no_barrier": ("the same barrier check on a path with a known barrier (the "
                            "planted bump of mcutils.planted.bump_pairs, one segment per pair)"),
    "robust_end": "the same attack on the regular end (t = 0), which had no adversarial training",
    "per_sample_correlation": ("the same correlation with the eigenvalues shuffled across "
                               "inputs (within each seed and t)"),
}
"""The negative control of each asserted claim: the same check on data where the claim is
false by construction (computed by :func:`claims`)."""


def claims(study: Mapping[str, pd.DataFrame], sample_ts: Sequence[float], eps: float,
           thresholds: Mapping[str, float] | None = None, n_boot: int = 2000,
           seed: int = 0, budget: Mapping[int, Mapping[str, Any]] | None = None
           ) -> list[dict[str, Any]]:
    """The chapter's claims, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    Args:
        study: :func:`path_study`'s tables.
        sample_ts: the ``t`` of the per-input correlations.
        eps: the attack radius (for the bound rows).
        thresholds: overrides of :data:`THRESHOLDS` (``standard_tol``,
            ``robust_accuracy``, ``barrier_margin``, ``correlation``, ``bound_share``,
            ``along_path``) and ``peak_distance`` (default: the largest step of the grid).
        n_boot, seed: bootstrap settings.
        budget: the robustness-loss barrier at each curve budget
            (:func:`mcutils.chapters.ch06_budget.barrier_vs_budget`'s ``"robust"``): the
            barrier claim is then read at the largest budget, and is inconclusive while
            the statistic still moves (``budgets=`` of the claim).

    Returns:
        A list of dicts with ``claim_id, statement, paper, result, threshold, direction,
        method`` (and ``budgets`` for the barrier when ``budget`` is given), in the order of :data:`CLAIMS`, and ``control`` for the claims of
        :data:`CONTROL_STATEMENTS` (their negative controls: a planted barrier, the
        regular end's robust accuracy, eigenvalues shuffled across inputs).
    """
    samples, path, bound = study["samples"], study["path"], study["bound"]
    grid = np.unique(path["t"].to_numpy(float))
    th = {**THRESHOLDS, "peak_distance": float(np.diff(grid).max()), **(thresholds or {})}
    unknown = set(th) - set(THRESHOLDS) - {"peak_distance"}
    if unknown:
        raise ParameterError(f"unknown thresholds {sorted(unknown)}; valid: "
                             f"{sorted([*THRESHOLDS, 'peak_distance'])}")
    controls = control_comparison(samples, path, sample_ts)
    worst = min(controls, key=lambda c: controls[c]["path"]["estimate"])
    per_image = {c: v["per_sample"] for c, v in controls.items() if v["per_sample"] is not None}
    worst_image = min(per_image, key=lambda c: per_image[c]["estimate"])
    peak = peak_coincidence(path)
    corr_method = (f"percentile bootstrap over {{n}} inputs ({n_boot} resamples), resampled "
                   "jointly across seeds and t")
    per_sample = per_sample_correlation(samples, sample_ts, n_boot=n_boot, seed=seed)
    control_results = {
        "standard_no_barrier": barrier_interval(planted_barrier_path(len(grid)), "loss",
                                                relative=True),
        "robust_end": accuracy_interval(samples, 0.0),
        "per_sample_correlation": per_sample_correlation(
            shuffled_samples(samples, "top_eig", seed=seed), sample_ts, n_boot=n_boot,
            seed=seed),
    }
    for cid in ("per_sample_correlation",):
        for res in (per_sample, control_results[cid]):
            res["method"] = corr_method.format(n=res["n"])
    tests = {  # claim id -> (interval, threshold, direction)
        "standard_no_barrier": (barrier_interval(path, "loss", relative=True),
                                th["standard_tol"], "<="),
        "robust_end": (accuracy_interval(samples, 1.0, n_boot=n_boot, seed=seed),
                       th["robust_accuracy"], ">="),
        "robust_barrier": (barrier_interval(path, "robust_loss", relative=True),
                           th["barrier_margin"], ">"),
        "per_sample_correlation": (per_sample, th["correlation"], ">="),
        "beats_controls_path": (controls[worst]["path"], 0.0, ">"),
        "beats_controls_per_input": (per_image[worst_image], 0.0, ">"),
        "peak_coincidence": (peak["distance"], th["peak_distance"], "<="),
        "along_path_pcc": (along_path_correlation(path), th["along_path"], ">="),
        "second_order_bound": (bound_share(bound, "linf", eps, n_boot=n_boot, seed=seed),
                               th["bound_share"], ">="),
    }
    out = []
    for cid, text in CLAIMS.items():
        res = tests[cid][0]
        row = {"claim_id": cid,
               "statement": text["statement"].format(worst=worst, worst_image=worst_image,
                                                     eps=eps),
               "paper": text["paper"], "result": res, "threshold": tests[cid][1],
               "direction": tests[cid][2], "method": res.get("method", "not stated")}
        if cid in CONTROL_STATEMENTS:
            row["control"] = {"statement": CONTROL_STATEMENTS[cid],
                              "result": control_results[cid]}
        if cid == "robust_barrier" and budget is not None:
            largest = max(budget)
            row.update(result=budget[largest], budgets=dict(budget),
                       method=budget[largest].get("method", "not stated")
                       + f"; read at {largest} curve steps, the largest of the budget curve")
            row["statement"] += f" (curves of {largest} steps)"
        out.append(row)
    return out


# ------------------------------------------------------------------ the chapter's run
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
    """The regular end ``t = 0``: the default model of chapter 00 (cached by
    :func:`mcutils.zoo.trained_model`), with its cache info."""
    from mcutils import zoo

    p = params
    return zoo.trained_model(
        dataset=p["dataset"], model=p["model"], epochs=p["num_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["train_subset"], seed=p["seed"],
        device=p["device"], return_info=True)


def robust_end(params: Mapping[str, Any], seed: int | None = None
               ) -> tuple[nn.Module, dict[str, Any]]:
    """The robust end ``t = 1``: PGD adversarial training at ``adv_eps`` (``adv_steps``
    steps, ``adv_epochs`` epochs on ``adv_subset`` training images), initialised and
    shuffled by ``seed`` (default ``robust_seed``), with its cache info."""
    from mcutils import zoo

    p = params
    adversarial = dict(method="pgd", eps=p["adv_eps"], steps=p["adv_steps"],
                       **({"step_size": p["adv_step_size"]} if p["adv_step_size"] else {}))
    return zoo.trained_model(
        dataset=p["dataset"], model=p["model"], epochs=p["adv_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["adv_subset"],
        seed=p["robust_seed"] if seed is None else seed, device=p["device"],
        return_info=True, adversarial=adversarial)


def run_path_study(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
                   curve_train: ImageDataset, eval_set: ImageDataset,
                   ts: Sequence[float]) -> dict[str, pd.DataFrame]:
    """:func:`path_study` with the chapter's parameters: one curve per seed of ``seeds``,
    every measurement (the paper's Hessian quantity, the L2 bound) on ``ts``."""
    p = params
    return path_study(
        regular, robust, curve_train, eval_set.x, eval_set.y, seeds=p["seeds"], ts=ts,
        eps=p["adv_eps"], curve_steps=p["curve_steps"], curve_lr=p["curve_lr"],
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
        seeds=p["shared_init_seeds"], ts=ts, eps=p["adv_eps"], curve_steps=p["curve_steps"],
        curve_lr=p["curve_lr"], curve_weight_decay=p["curve_weight_decay"],
        batch_size=p["batch_size"], bn_size=p["bn_size"], device=p["device"],
        attack_steps=p["attack_steps"], path_size=p["path_size"])


def findings(chapter: ChapterReport, params: Mapping[str, Any], *,
             study: Mapping[str, pd.DataFrame], shared: Mapping[str, pd.DataFrame] | None,
             barriers: Mapping[str, Any], correlations: Mapping[str, Any],
             controls: Mapping[str, Mapping[str, Any]], peak: Mapping[str, Any],
             along: Mapping[str, Any], paper_r: Mapping[str, Any],
             bound_rows: Mapping[str, Any],
             budget: Mapping[str, Mapping[int, Any]] | None = None) -> None:
    """Record chapter 06's glued numbers, its claims (:func:`claims`) and their verdicts,
    and print the per-point means of the path.

    Args:
        chapter: the chapter's report.
        params: the validated parameters (:data:`PARAMETERS`).
        study, shared: :func:`run_path_study`'s and :func:`shared_init_study`'s tables.
        barriers: :func:`barrier_summary`.
        correlations: :func:`per_image_correlations`.
        controls: :func:`control_comparison`.
        peak: :func:`peak_coincidence`.
        along: :func:`along_path_correlation` by method (``"pearson"``, ``"diff"``).
        paper_r: :func:`along_path_correlation` with the paper's quantity.
        bound_rows: :func:`bound_shares`.
        budget: :func:`mcutils.chapters.ch06_budget.barrier_vs_budget` (the barrier claim
            is read at its largest budget).
    """
    p, path, text = params, study["path"], interval_text
    for name, key in (("eps", "adv_eps"), ("attack_steps", "attack_steps")):
        chapter.record(f"ch06_{name}", p[key])
    chapter.record("ch06_num_seeds", len(p["seeds"]))
    for key in ("num_ts", "sample_ts", "eval_size", "path_size", "paper_batch", "curve_steps"):
        chapter.record(f"ch06_{key}", p[key])
    chapter.record("ch06_curve_wd", p["curve_weight_decay"], digits=None)
    chapter.record("ch06_robust_seed", p["robust_seed"])
    chapter.record("ch06_bound_eps_l2", p["bound_eps_l2"])
    chapter.record("ch06_standard_tol", THRESHOLDS["standard_tol"])
    chapter.record("ch06_barrier_margin", THRESHOLDS["barrier_margin"])
    chapter.record("ch06_standard_barrier", barriers["standard"])
    chapter.record("ch06_robust_barrier", barriers["robust"])
    chapter.record("ch06_robust_barrier_nats", barriers["robust_nats"])
    ends = barriers["robust_ends"]
    chapter.record("ch06_robust_accuracy_ends", [r["estimate"] for r in ends])
    chapter.record("ch06_robust_accuracy_ends_ci", [r["ci"] for r in ends])
    rivals = {c: correlations[c] for c in ("loss", "grad_norm")}
    chapter.record("ch06_r_per_sample", correlations["top_eig"])
    chapter.record("ch06_r_per_sample_controls", rivals)
    chapter.record("ch06_controls", {c: {"path": v["path"], "per_sample": v["per_sample"]}
                                     for c, v in controls.items()})
    chapter.record("ch06_peak_t", {k: peak[k] for k in ("robust_loss", "top_eig", "distance")})
    chapter.record("ch06_peak_interior", peak["interior"])
    chapter.record("ch06_along_path_r", along["pearson"])
    chapter.record("ch06_along_path_r_diff", along["diff"])
    chapter.record("ch06_paper_eig_r", paper_r)
    chapter.record("ch06_paper_iterations",
                   sorted(int(i) for i in path["paper_iterations"].unique()))
    chapter.record("ch06_bound_share", bound_rows)
    chapter.record("ch06_standard_barrier_text", text(barriers["standard"]))
    chapter.record("ch06_robust_barrier_text", text(barriers["robust"]))
    chapter.record("ch06_robust_barrier_nats_text", text(barriers["robust_nats"]))
    chapter.record("ch06_robust_accuracy_ends_text",
                   f"{text(ends[0])} at the regular end and {text(ends[1])} at the robust end")
    chapter.record("ch06_r_per_sample_text", text(correlations["top_eig"], label="t="))
    chapter.record("ch06_r_loss_text", text(rivals["loss"], label="t="))
    chapter.record("ch06_r_grad_text", text(rivals["grad_norm"], label="t="))
    chapter.record("ch06_controls_path_text", text({c: v["path"] for c, v in controls.items()}))
    chapter.record("ch06_controls_sample_text", text({c: v["per_sample"]
                                                      for c, v in controls.items()
                                                      if v["per_sample"] is not None}))
    chapter.record("ch06_peak_text", f"t = {text(peak['robust_loss'], 2)} for the robustness "
                   f"loss and t = {text(peak['top_eig'], 2)} for the eigenvalue (distance "
                   f"{text(peak['distance'], 2)})")
    chapter.record("ch06_along_path_text", text(along["pearson"]))
    chapter.record("ch06_along_path_diff_text", text(along["diff"]))
    chapter.record("ch06_paper_eig_r_text", text(paper_r))
    chapter.record("ch06_bound_share_text", text(bound_rows))
    chapter.record("ch06_seed", p["seed"])
    chapter.record("ch06_shared_init_seeds", p["shared_init_seeds"])
    chapter.record("ch06_shared_init_barrier", None if shared is None else
                   barrier_heights(shared["path"], "robust_loss", relative=True).tolist())
    chapter.record("ch06_independent_barrier",
                   barrier_heights(path, "robust_loss", relative=True).tolist())
    if budget is not None:
        chapter.record("ch06_standard_barrier_vs_budget", budget["standard"])
        chapter.record("ch06_budget_largest", max(budget["robust"]))
        chapter.record("ch06_curve_budgets", sorted(budget["robust"]))
    for c in claims(study, p["sample_ts"], eps=p["adv_eps"], n_boot=p["n_boot"], seed=p["seed"],
                    budget=None if budget is None else budget["robust"]):
        cid = c.pop("claim_id")
        entry = chapter.claim(cid, **c)
        chapter.record(f"ch06_verdict_{cid}", entry["verdict"])
        if "settled" in entry:
            chapter.record(f"ch06_{cid}_settled",
                           "has settled" if entry["settled"] else "is still moving")
        if "control" in entry:
            chapter.record(f"ch06_control_{cid}_text",
                           f"{text(entry['control'])}, {entry['control']['verdict']}")
    deviations(chapter, p)
    print(path_means(path, ("loss", "robust_loss", "robust_accuracy", "top_eig"), digits=3)
          .to_string())
