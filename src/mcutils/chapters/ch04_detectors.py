"""Chapter 04, section 3: detectors built from loss profiles, placed among established
ones, and attacked.

* :class:`Sources` and :func:`select_sources`: correctly classified test images with a
  target class and the paper's stopping loss;
* :func:`attack_specs` gives the chapter's attacks from its parameters, and
  :func:`attack_suite` runs FGSM, PGD, Carlini-Wagner and the paper's attack on them
  (:data:`ATTACK_KINDS`), :func:`attack_summary` tabulates their success and size;
* :func:`defender_features` computes what the defender sees
  (:func:`mcutils.detection.connectivity_features`), :func:`detector_table` the
  cross-validated AUROC and TPR of every detector on every attack (:data:`DETECTORS`
  in the chapter's order; :func:`table_entry` reads one interval);
* :func:`adaptive_study`: the deployed detector against the adaptive attack
  (:class:`mcutils.attacks.DetectorPenalty`) and a detector retrained on it.

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils import attacks, detection
from mcutils.advbarriers import PAPER_ATTACK, class_loss, predict_classes
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import EvalMode as _EvalMode
from mcutils.core.runtime import model_device as _model_device

__all__ = [
    "ATTACK_KINDS",
    "DETECTORS",
    "Sources",
    "adaptive_study",
    "attack_specs",
    "attack_suite",
    "attack_summary",
    "defender_features",
    "detector_table",
    "select_sources",
    "table_entry",
]


@dataclass
class Sources:
    """Inputs of the detection experiments: correctly classified test images with a
    random other target class and the loss of a real target-class image (the paper's
    stopping threshold), all indices into the test set.

    Attributes:
        x: ``[N, C, H, W]``; y: ``[N]`` true classes; target: ``[N]`` target classes.
        stop_loss: ``[N]`` loss of a real image of the target class (not a source).
        index: ``[N]`` test-set indices of the sources.
    """

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    stop_loss: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def select(self, rows: torch.Tensor | Sequence[int] | range) -> Sources:
        """A subset of the sources."""
        r = torch.as_tensor(list(rows) if isinstance(rows, range) else rows, dtype=torch.long)
        return Sources(self.x[r], self.y[r], self.target[r], self.stop_loss[r], self.index[r])


def select_sources(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0,
                   batch_size: int = 256) -> Sources:
    """The first ``n`` correctly classified images after a seeded shuffle, a uniformly
    drawn other class as each one's target, and as its stopping loss the loss of the
    target class at a random correctly classified image of that class that is not a
    source."""
    if not isinstance(n, int) or n < 2:
        raise ParameterError(f"n={n!r} must be an integer >= 2")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=gen)
    classes = int(y.max()) + 1
    want = n + 20 * classes  # sources plus spare images for the stopping losses
    found: list[torch.Tensor] = []
    count = 0
    for i in range(0, len(order), 4 * batch_size):
        chunk = order[i:i + 4 * batch_size]
        found.append(chunk[predict_classes(model, x[chunk]) == y[chunk]])
        count += len(found[-1])
        if count >= want:
            break
    correct = torch.cat(found)
    if len(correct) < n + 10:
        raise ParameterError(f"only {len(correct)} correctly classified images for n={n}")
    src, rest = correct[:n], correct[n:]
    target = (y[src] + torch.randint(1, classes, (n,), generator=gen)) % classes
    partner = torch.empty(n, dtype=torch.long)
    for c in target.unique().tolist():
        members = rest[y[rest] == c]
        if len(members) == 0:
            raise ParameterError(f"no spare image of class {c} for the stopping loss")
        rows = (target == c).nonzero().flatten()
        partner[rows] = members[torch.randint(len(members), (len(rows),), generator=gen)]
    stop = class_loss(model, x[partner], target)
    return Sources(x[src], y[src], target, stop, src)


ATTACK_KINDS = ("fgsm", "pgd_linf", "pgd_l2", "cw", "optim")


def attack_specs(params: Mapping[str, Any], paper_attack: Mapping[str, Any]
                 ) -> dict[str, dict[str, Any]]:
    """The attacks of section 3 (name -> :func:`attack_suite` spec) from the chapter's
    parameters: FGSM and PGD at the chapter's radii, Carlini-Wagner, and the paper's
    attack (``paper_attack``) with matched and with over-confident ends."""
    return {
        "FGSM": {"kind": "fgsm", "eps": params["eps_linf"]},
        "PGD L-inf": {"kind": "pgd_linf", "eps": params["eps_linf"], "steps": params["pgd_steps"]},
        "PGD L2": {"kind": "pgd_l2", "eps": params["eps_l2"], "steps": params["pgd_steps"]},
        "CW L2": {"kind": "cw", "steps": params["cw_steps"]},
        "paper (matched)": {**paper_attack, "kind": "optim"},
        "paper (over-confident)": {**paper_attack, "kind": "optim", "stop": None},
    }


#: The detectors of the chapter's table, in its column order.
DETECTORS = ("barrier", "barrier_max", "profile", "profile_logits", "msp", "margin", "logits",
             "mahalanobis")


def attack_suite(model: nn.Module, sources: Sources, specs: Mapping[str, Mapping[str, Any]],
                 seed: int = 0, progress: bool = True
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run several attacks on the same sources.

    ``specs`` maps a name to ``{"kind": one of ATTACK_KINDS, ...keyword arguments}``.
    ``fgsm``, ``pgd_*`` and ``cw`` are untargeted (true class); ``optim`` is the
    paper's targeted attack (:data:`~mcutils.advbarriers.PAPER_ATTACK` overridden by the
    spec; ``stop``: ``"matched"`` uses the sources' stopping losses, ``None`` runs every
    step).

    Returns:
        name -> ``(adversarial images [N, ...], success [N] bool)``.
    """
    dev = _model_device(model)
    out = {}
    with _EvalMode(model):
        for name, spec in tqdm(list(specs.items()), desc="attacks", disable=not progress):
            out[name] = _one_attack(model, sources, name, dict(spec), seed, dev)
    return out


def _one_attack(model: nn.Module, sources: Sources, name: str, spec: dict[str, Any], seed: int,
                dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One attack of :func:`attack_suite`: ``(adversarial images, success)``."""
    kind = spec.pop("kind", name)
    if kind not in ATTACK_KINDS:
        raise ParameterError(f"attack {name!r}: kind={kind!r} is not known; valid: {ATTACK_KINDS}")
    xs = sources.x.to(dev)
    if kind == "optim":
        settings = dict(PAPER_ATTACK)
        settings.update(spec)
        stop_mode = settings.pop("stop")
        stop = sources.stop_loss if stop_mode == "matched" else stop_mode
        adv = attacks.optimization_attack(model, xs, sources.target.to(dev), stop_loss=stop,
                                          **settings)
        label, targeted = sources.target, True
    else:
        if kind in ("pgd_linf", "pgd_l2"):
            spec.setdefault("generator", torch.Generator().manual_seed(seed))
        adv = attacks.run_attack(kind, model, xs, sources.y.to(dev), **spec)
        label, targeted = sources.y, False
    adv = adv.detach().cpu()
    pred = predict_classes(model, adv)
    ok = (pred == label) if targeted else (pred != label)
    return adv, ok


def attack_summary(sources: Sources, adversarial: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per attack: success rate (interval over sources) and the median pixel L-inf and L2
    perturbation of its successful examples."""
    rows = []
    for name, (adv, ok) in adversarial.items():
        norms = attacks.perturbation_norms(sources.x, adv)
        okn = ok.numpy()
        rows.append({"attack": name,
                     "success": stats.bootstrap_ci(okn.astype(float), n_boot=n_boot, seed=seed),
                     "linf": float(norms["linf"][ok].median()) if okn.any() else float("nan"),
                     "l2": float(norms["l2"][ok].median()) if okn.any() else float("nan"),
                     "n": int(okn.sum())})
    return pd.DataFrame(rows)


def defender_features(model: nn.Module, sources: Sources,
                      adversarial: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                      pool: tuple[torch.Tensor, torch.Tensor], num_refs: int, num_points: int,
                      seed: int = 0, mahalanobis: Any = None
                      ) -> tuple[tuple[Any, Any], dict[str, tuple[Any, Any, np.ndarray]]]:
    """What the defender computes: :func:`mcutils.detection.connectivity_features` of the
    real sources and of every attack's successful examples, with references drawn from
    the defender's ``pool`` (a different seed for each set).

    Returns:
        A pair. First the sources' ``(barrier, logit features)``; then a dict that maps
        each attack to ``(barrier, logit features, source rows)``.
    """
    px, py = pool
    bf, lf, _ = detection.connectivity_features(model, sources.x, px, py, num_refs=num_refs,
                                                num_points=num_points, seed=seed,
                                                mahalanobis=mahalanobis)
    out = {}
    for i, (name, (adv, ok)) in enumerate(adversarial.items()):
        rows = np.flatnonzero(ok.numpy())
        if len(rows) == 0:
            continue
        b, lg, _ = detection.connectivity_features(model, adv[ok], px, py, num_refs=num_refs,
                                                   num_points=num_points, seed=seed + 1 + i,
                                                   mahalanobis=mahalanobis)
        out[name] = (b, lg, rows)
    return (bf, lf), out


def detector_table(real: tuple[Any, Any], adversarial: Mapping[str, tuple[Any, Any, np.ndarray]],
                   detectors: Sequence[str], folds: int = 5, seed: int = 0, n_boot: int = 1000,
                   fpr: float = 0.05) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Cross-validated detectors for every attack: AUROC and TPR at ``fpr`` with
    intervals over sources, and a Wilcoxon signed-rank test of the barrier gap of each
    adversarial example against that of its own source.

    Args:
        real: ``(BarrierFeatures, LogitFeatures)`` of the sources (group ``i`` = row ``i``).
        adversarial: attack -> ``(BarrierFeatures, LogitFeatures, groups)`` of its
            successful examples (``groups``: their source rows).
        detectors: names of :data:`mcutils.detection.DETECTORS`.
        folds, seed: source-disjoint cross-validation
            (:func:`mcutils.detection.cross_val_scores`).
        n_boot: bootstrap resamples of the intervals
            (:func:`mcutils.core.stats.metric_interval`).
        fpr: false-positive rate of the TPR column.

    Returns:
        ``(table, scores)``: one row per attack and detector with ``auroc`` and ``tpr``
        intervals and the Wilcoxon ``p`` and median paired gap difference (attack
        rows), and ``scores[attack]`` with ``labels``, ``groups`` and each detector's
        out-of-fold scores (for paired comparisons).
    """
    bf_r, lf_r = real
    g_r = np.arange(len(lf_r))
    rows, scores = [], {}
    for name, (bf, lf, g) in adversarial.items():
        g = np.asarray(g)
        if len(g) < folds:
            continue
        gap_r = bf_r.gap.mean(1).numpy()[g]
        gap_a = bf.gap.mean(1).numpy()
        wil = stats.wilcoxon_paired(gap_a, gap_r, alternative="greater")
        scores[name] = {}
        for det in detectors:
            x, labels, groups = detection.stack_groups(
                detection.feature_matrix(det, bf_r, lf_r), detection.feature_matrix(det, bf, lf),
                g_r, g)
            s = detection.cross_val_scores(x, labels, groups, folds=folds, seed=seed)
            scores[name][det] = s
            scores[name]["labels"], scores[name]["groups"] = labels, groups
            rows.append({"attack": name, "detector": det, "n_adv": len(g),
                         "auroc": stats.metric_interval(labels, s, groups, "auroc",
                                                            n_boot=n_boot, seed=seed),
                         "tpr": stats.metric_interval(labels, s, groups, "tpr", fpr=fpr,
                                                          n_boot=n_boot, seed=seed),
                         "wilcoxon_p": wil["pvalue"],
                         "median_gap_difference": wil["median_difference"]})
    return pd.DataFrame(rows), scores


def table_entry(table: pd.DataFrame, attack: str, detector: str, column: str = "auroc"
                ) -> dict[str, Any]:
    """One interval of a :func:`detector_table`; an empty interval (NaN, ``n = 0``) when
    the attack had too few successful examples to be in the table."""
    sel = table[(table.attack == attack) & (table.detector == detector)] if len(table) else table
    if len(sel) == 0:
        return stats.interval(np.nan, np.nan, np.nan, 0)
    return sel[column].iloc[0]


def adaptive_study(model: nn.Module, sources: Sources, plain: torch.Tensor,
                   defender_pool: tuple[torch.Tensor, torch.Tensor],
                   attacker_pool: tuple[torch.Tensor, torch.Tensor], penalties: Sequence[float],
                   detector: str = "profile_logits", num_refs: int = 3, num_points: int = 16,
                   draws: int = 1, attack: Mapping[str, Any] | None = None, seed: int = 0,
                   n_boot: int = 1000, mahalanobis: Any = None, progress: bool = True
                   ) -> pd.DataFrame:
    """Deployed against retrained detectors under an adaptive attack, on one protocol.

    The sources are split at random into a training and a test half. The *deployed*
    detector (``detector``, logistic) is fitted once on the training half: its real
    sources against their paper-attack examples ``plain``. For each penalty weight
    ``w`` the attacker reruns the paper's attack on every source with
    ``w x`` the deployed detector's decision value added to its objective
    (:class:`mcutils.attacks.DetectorPenalty`, with ``draws`` sets of references per
    step from its own pool, disjoint from the defender's; with ``w > 0`` a sample stops
    only when its loss rule holds *and* the detector calls it real). Then, on the test
    half only:

    * ``auroc_deployed``: the deployed detector, real test sources vs their adaptive
      examples;
    * ``auroc_retrained``: a detector of the same kind refitted on the training half's
      adaptive examples;
    * ``difference``: retrained minus deployed (paired bootstrap over test sources).

    ``w = 0`` is the paper's attack itself (``plain`` is reused). The defender's
    references are drawn from its pool with a seed the attacker does not use.

    Returns:
        One row per penalty: ``penalty``, ``success`` (target reached, all sources),
        ``l2`` (median pixel L2 of the successful examples), ``auroc_deployed``,
        ``auroc_retrained``, ``difference`` (intervals) and ``n_test_adv``.
    """
    if len(plain) != len(sources):
        raise ParameterError("plain must hold one paper-attack example per source")
    n = len(sources)
    rng = np.random.default_rng(seed)
    train_rows = np.sort(rng.permutation(n)[: n // 2])
    is_train = np.zeros(n, bool)
    is_train[train_rows] = True
    dx, dy = defender_pool
    ax, ay = attacker_pool
    dev = _model_device(model)

    def features(xs: torch.Tensor, draw_seed: int):
        bf, lf, _ = detection.connectivity_features(model, xs, dx, dy, num_refs=num_refs,
                                                    num_points=num_points, seed=draw_seed,
                                                    mahalanobis=mahalanobis)
        return detection.feature_matrix(detector, bf, lf)

    def success_of(adv: torch.Tensor) -> np.ndarray:
        return (predict_classes(model, adv) == sources.target).numpy()

    f_real = features(sources.x, seed + 101)
    ok_plain = success_of(plain)
    f_plain = features(plain, seed + 202)
    groups = np.arange(n)

    def fit(f_adv: np.ndarray, ok: np.ndarray):
        sel = is_train & ok
        x, lab, _ = detection.stack_groups(f_real[is_train], f_adv[sel], groups[is_train],
                                           groups[sel])
        return detection.fit_detector(x, lab, seed=seed)

    def test_set(f_adv: np.ndarray, ok: np.ndarray):
        sel = ~is_train & ok
        return detection.stack_groups(f_real[~is_train], f_adv[sel], groups[~is_train],
                                      groups[sel])

    deployed = fit(f_plain, ok_plain)
    settings = dict(PAPER_ATTACK)
    settings.update(attack or {})
    stop_mode = settings.pop("stop")
    stop = sources.stop_loss if stop_mode == "matched" else stop_mode
    rows = []
    for w in tqdm(list(penalties), desc="adaptive penalties", disable=not progress):
        if w == 0:
            adv, f_adv, ok = plain, f_plain, ok_plain
        else:
            pen = attacks.DetectorPenalty(model, deployed, detector, ax, ay, sources.target,
                                            num_refs, num_points, draws=draws, seed=seed + 7)
            adv = attacks.optimization_attack(model, sources.x.to(dev), sources.target.to(dev),
                                              stop_loss=stop, penalty=pen, penalty_weight=float(w),
                                              penalty_stop=math.log(2), **settings).cpu()
            ok = success_of(adv)
            f_adv = features(adv, seed + 303)
        x_t, lab_t, g_t = test_set(f_adv, ok)
        entry: dict[str, Any] = {"penalty": float(w), "n_test_adv": int(lab_t.sum())}
        entry["success"] = stats.bootstrap_ci(ok.astype(float), n_boot=n_boot, seed=seed)
        l2 = (adv - sources.x).flatten(1).norm(dim=1).numpy()[ok]
        entry["l2"] = (stats.bootstrap_ci(l2, np.median, n_boot=n_boot, seed=seed)
                       if len(l2) else stats.interval(np.nan, np.nan, np.nan, 0))
        if lab_t.sum() < 2 or (is_train & ok).sum() < 2:
            nan = stats.interval(np.nan, np.nan, np.nan, int(lab_t.sum()))
            entry.update(auroc_deployed=nan, auroc_retrained=nan, difference=nan)
            rows.append(entry)
            continue
        s_dep = detection.detector_scores(deployed, x_t)
        s_ret = detection.detector_scores(fit(f_adv, ok), x_t)
        entry["auroc_deployed"] = stats.metric_interval(lab_t, s_dep, g_t, n_boot=n_boot,
                                                            seed=seed)
        entry["auroc_retrained"] = stats.metric_interval(lab_t, s_ret, g_t, n_boot=n_boot,
                                                             seed=seed)
        entry["difference"] = stats.auroc_difference(lab_t, s_ret, s_dep, g_t,
                                                         n_boot=n_boot, seed=seed)
        rows.append(entry)
    return pd.DataFrame(rows)
