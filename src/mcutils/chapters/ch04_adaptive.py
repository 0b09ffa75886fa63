"""Chapter 04, section 3: the adaptive attack on the deployed detector (Tramer et al.
2020's recommendations: attack the deployed detector's own features, many steps,
expectation over the defender's random references, a sweep of the penalty weight).

* :func:`deploy` splits the sources into a training and a test half and fits the
  deployed detector on the training half against the paper's attack;
* :func:`adaptive_examples` runs the paper's attack with the deployed detector's verdict
  added to its objective (:class:`mcutils.adaptive.DetectorPenalty`) at one penalty weight;
  one weight is one piece of work (the chapter's worker pool runs them side by side);
* :func:`adaptive_study` scores the deployed and a retrained detector on the test half for
  every weight, and :func:`strongest` picks the weight the attacker would choose (the
  lowest deployed AUROC on the *training* half, so the test half never enters the choice).

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils import adaptive, attacks, detection
from mcutils.advbarriers import PAPER_ATTACK, predict_classes
from mcutils.chapters.ch04_detectors import Sources
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device as _model_device

__all__ = ["Deployment", "adaptive_examples", "adaptive_study", "deploy", "strongest"]


@dataclass
class Deployment:
    """The deployed detector and what it was fitted on.

    Attributes:
        detector: the fitted logistic pipeline; kind: its features.
        is_train: ``[N]`` which sources are in the training half.
        real: ``[N, F]`` the defender's features of the real sources.
        plain: ``[N, F]`` features of the paper-attack examples; ok_plain: ``[N]`` their
            success.
        settings: what the defender's features use (``num_refs``, ``num_points``, the
            defender's pool, seeds).
    """

    detector: Any
    kind: str
    is_train: np.ndarray
    real: np.ndarray
    plain: np.ndarray
    ok_plain: np.ndarray
    settings: dict[str, Any]

    def features(self, model: nn.Module, xs: torch.Tensor, draw_seed: int) -> np.ndarray:
        """The defender's features of ``xs`` with its own references (seed ``draw_seed``)."""
        s = self.settings
        bf, lf, _ = detection.connectivity_features(model, xs, *s["pool"],
                                                    num_refs=s["num_refs"],
                                                    num_points=s["num_points"],
                                                    seed=draw_seed)
        return detection.feature_matrix(self.kind, bf, lf)


def _success(model: nn.Module, sources: Sources, adv: torch.Tensor) -> np.ndarray:
    return (predict_classes(model, adv) == sources.target).numpy()


def deploy(model: nn.Module, sources: Sources, plain: torch.Tensor,
           defender_pool: tuple[torch.Tensor, torch.Tensor], detector: str = "profile_logits",
           num_refs: int = 3, num_points: int = 8, seed: int = 0) -> Deployment:
    """Split the sources at random (seeded) into two halves and fit the ``detector`` on
    the training half: its real sources against their successful paper-attack examples
    ``plain`` (one per source). The defender draws its references from its own pool."""
    if len(plain) != len(sources):
        raise ParameterError("plain must hold one paper-attack example per source")
    if detector not in adaptive.DetectorPenalty.KINDS:
        raise ParameterError(f"detector={detector!r} cannot be attacked; valid values: "
                             f"{adaptive.DetectorPenalty.KINDS}")
    n = len(sources)
    rng = np.random.default_rng(seed)
    is_train = np.zeros(n, bool)
    is_train[rng.permutation(n)[: n // 2]] = True
    dep = Deployment(None, detector, is_train, np.empty(0), np.empty(0), np.empty(0),
                     dict(pool=defender_pool, num_refs=num_refs, num_points=num_points,
                          seed=seed))
    dep.real = dep.features(model, sources.x, seed + 101)
    dep.ok_plain = _success(model, sources, plain)
    dep.plain = dep.features(model, plain, seed + 202)
    dep.detector = _fit(dep, dep.plain, dep.ok_plain, seed)
    return dep


def _fit(dep: Deployment, f_adv: np.ndarray, ok: np.ndarray, seed: int):
    groups = np.arange(len(dep.is_train))
    sel = dep.is_train & ok
    if sel.sum() < 2:
        raise ParameterError("fewer than 2 successful attacks on the training half")
    x, lab, _ = detection.stack_groups(dep.real[dep.is_train], f_adv[sel],
                                       groups[dep.is_train], groups[sel])
    return detection.fit_detector(x, lab, seed=seed)


def adaptive_examples(model: nn.Module, sources: Sources, dep: Deployment, penalty: float,
                      attacker_pool: tuple[torch.Tensor, torch.Tensor], draws: int = 8,
                      attack: Mapping[str, Any] | None = None, seed: int = 0) -> torch.Tensor:
    """The adaptive attack at weight ``penalty`` on every source: the paper's attack
    (``attack`` overrides :data:`~mcutils.advbarriers.PAPER_ATTACK`) plus ``penalty x``
    the deployed detector's loss, recomputed with gradients from its own features with
    ``draws`` fresh reference sets per step from the attacker's pool (EOT). A sample stops
    only when the loss rule holds and the detector calls it real."""
    if not penalty > 0:
        raise ParameterError(f"penalty={penalty!r} must be > 0 (0 is the paper's attack)")
    settings = dict(PAPER_ATTACK)
    settings.update(attack or {})
    stop_mode = settings.pop("stop")
    stop = sources.stop_loss if stop_mode == "matched" else stop_mode
    s = dep.settings
    pen = adaptive.DetectorPenalty(model, dep.detector, dep.kind, *attacker_pool,
                                  sources.target, s["num_refs"], s["num_points"],
                                  draws=draws, seed=seed + 7)
    dev = _model_device(model)
    return attacks.optimization_attack(model, sources.x.to(dev), sources.target.to(dev),
                                       stop_loss=stop, penalty=pen,
                                       penalty_weight=float(penalty),
                                       penalty_stop=math.log(2), **settings).cpu()


def adaptive_study(model: nn.Module, sources: Sources, plain: torch.Tensor, dep: Deployment,
                   examples: Mapping[float, torch.Tensor], seed: int = 0, n_boot: int = 1000,
                   progress: bool = True) -> pd.DataFrame:
    """Deployed against retrained detectors on the adaptive examples of every weight.

    ``examples`` maps each weight ``w > 0`` to its adaptive examples
    (:func:`adaptive_examples`); ``w = 0`` is the paper's attack itself (``plain``). On
    the test half only: ``auroc_deployed`` (real test sources against their adaptive
    examples), ``auroc_retrained`` (a detector of the same kind refitted on the training
    half's adaptive examples) and their paired ``difference``. ``auroc_train`` is the
    deployed detector on the training half, which the attacker may see
    (:func:`strongest`).

    Returns:
        One row per weight (0 first): ``penalty``, ``success`` (exact binomial, all
        sources), ``l2`` (median pixel L2 of the successful examples),
        ``auroc_deployed``, ``auroc_retrained``, ``difference``, ``auroc_train``
        (intervals) and ``n_test_adv``.
    """
    if len(plain) != len(sources):
        raise ParameterError("plain must hold one paper-attack example per source")
    groups = np.arange(len(sources))
    tr = dep.is_train
    rows = []
    sets = [(0.0, plain)] + sorted((float(w), x) for w, x in examples.items())
    for w, adv in tqdm(sets, desc="adaptive penalties", disable=not progress):
        if w == 0:
            f_adv, ok = dep.plain, dep.ok_plain
        else:
            ok = _success(model, sources, adv)
            f_adv = dep.features(model, adv, dep.settings["seed"] + 303)
        test = ~tr & ok
        x_t, lab_t, g_t = detection.stack_groups(dep.real[~tr], f_adv[test], groups[~tr],
                                                 groups[test])
        entry: dict[str, Any] = {"penalty": w, "n_test_adv": int(lab_t.sum()),
                                 "success": stats.binomial_interval(int(ok.sum()), len(ok))}
        l2 = (adv - sources.x).flatten(1).norm(dim=1).numpy()[ok]
        entry["l2"] = (stats.bootstrap_ci(l2, np.median, n_boot=n_boot, seed=seed)
                       if len(l2) else stats.interval(np.nan, np.nan, np.nan, 0))
        nan = stats.interval(np.nan, np.nan, np.nan, int(lab_t.sum()))
        entry.update(auroc_deployed=nan, auroc_retrained=nan, difference=nan, auroc_train=nan)
        if lab_t.sum() >= 2 and (tr & ok).sum() >= 2:
            s_dep = detection.detector_scores(dep.detector, x_t)
            s_ret = detection.detector_scores(_fit(dep, f_adv, ok, seed), x_t)
            kw = dict(n_boot=n_boot, seed=seed)
            entry["auroc_deployed"] = stats.metric_interval(lab_t, s_dep, g_t, **kw)
            entry["auroc_retrained"] = stats.metric_interval(lab_t, s_ret, g_t, **kw)
            entry["difference"] = stats.auroc_difference(lab_t, s_ret, s_dep, g_t, **kw)
            x_r, lab_r, g_r = detection.stack_groups(dep.real[tr], f_adv[tr & ok], groups[tr],
                                                     groups[tr & ok])
            entry["auroc_train"] = stats.metric_interval(
                lab_r, detection.detector_scores(dep.detector, x_r), g_r, **kw)
        rows.append(entry)
    return pd.DataFrame(rows)


def strongest(study: pd.DataFrame) -> pd.Series:
    """The row of the weight ``w > 0`` the attacker would choose: the lowest deployed
    AUROC on the training half (rows without one are skipped; the last row if none has
    one)."""
    adaptive = study[study.penalty > 0]
    if len(adaptive) == 0:
        raise ParameterError("the study has no weight > 0")
    est = np.array([r["estimate"] for r in adaptive.auroc_train], dtype=float)
    if np.isnan(est).all():
        return adaptive.iloc[-1]
    return adaptive.iloc[int(np.nanargmin(est))]
