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
* :func:`baseline_grids` computes the established detectors' features at every value of
  their tuned hyper-parameter (:mod:`mcutils.detection_baselines`: the Mahalanobis layer
  ensemble, LID, KD+BU), which :func:`detector_table` tunes inside its folds.

The adaptive attack is in :mod:`mcutils.chapters.ch04_adaptive`.

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils import attacks, detection
from mcutils import detection_baselines as baselines
from mcutils.advbarriers import PAPER_ATTACK, class_loss, predict_classes
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import EvalMode as _EvalMode
from mcutils.core.runtime import model_device as _model_device

__all__ = [
    "ATTACK_KINDS",
    "BASELINE_LABELS",
    "DETECTORS",
    "Sources",
    "attack_specs",
    "baseline_grids",
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
    attack (``paper_attack``) with matched and with over-confident ends, and bounded to
    PGD L2's radius (targeted, matched stop: the same perturbation budget as PGD L2)."""
    return {
        "FGSM": {"kind": "fgsm", "eps": params["eps_linf"]},
        "PGD L-inf": {"kind": "pgd_linf", "eps": params["eps_linf"], "steps": params["pgd_steps"]},
        "PGD L2": {"kind": "pgd_l2", "eps": params["eps_l2"], "steps": params["pgd_steps"]},
        "CW L2": {"kind": "cw", "steps": params["cw_steps"]},
        "paper (matched)": {**paper_attack, "kind": "optim"},
        "paper (over-confident)": {**paper_attack, "kind": "optim", "stop": None},
        "paper (L2-bounded)": {**paper_attack, "kind": "optim", "max_norm": params["eps_l2"],
                               "norm": "l2"},
    }


#: The detectors of the chapter's table, in its column order: the loss-profile ones, the
#: logit baselines, Mahalanobis at the last layer without pre-processing (the chapter's
#: earlier baseline), and the established detectors at full strength
#: (:data:`mcutils.detection_baselines.BASELINES`).
DETECTORS = ("barrier", "barrier_max", "profile", "profile_logits", "msp", "margin", "logits",
             "mahalanobis", *baselines.BASELINES)
#: What each established detector is, in words.
BASELINE_LABELS = {"mahalanobis_ensemble": "Mahalanobis, layer ensemble + pre-processing "
                                           "(Lee et al. 2018)",
                   "lid": "LID (Ma et al. 2018)", "kd_bu": "KD+BU (Feinman et al. 2017)"}


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
                   fpr: float = 0.05,
                   grids: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]] | None = None
                   ) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
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
        grids: for the established detectors among ``detectors``
            (:data:`mcutils.detection_baselines.BASELINES`), ``detector -> (grid of the
            sources, {attack: grid of its successful examples})`` from
            :func:`baseline_grids`; their hyper-parameter is tuned inside every fold on
            the fold's training sources only
            (:func:`mcutils.detection_baselines.tuned_cross_val_scores`); the column
            ``chosen`` lists the choice per fold.

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
            chosen = None
            if det in baselines.BASELINES:
                if not grids or det not in grids:
                    raise ParameterError(f"detector {det!r} needs its grid (grids=)")
                real_grid, adv_grids = grids[det]
                x, labels, groups = detection.stack_groups(
                    real_grid.reshape(len(real_grid), -1), adv_grids[name].reshape(len(g), -1),
                    g_r, g)
                x = x.reshape(len(x), *real_grid.shape[1:])
                s, chosen = baselines.tuned_cross_val_scores(x, labels, groups, folds=folds,
                                                            seed=seed)
            else:
                x, labels, groups = detection.stack_groups(
                    detection.feature_matrix(det, bf_r, lf_r),
                    detection.feature_matrix(det, bf, lf), g_r, g)
                s = detection.cross_val_scores(x, labels, groups, folds=folds, seed=seed)
            scores[name][det] = s
            scores[name]["labels"], scores[name]["groups"] = labels, groups
            rows.append({"attack": name, "detector": det, "n_adv": len(g),
                         "auroc": stats.metric_interval(labels, s, groups, "auroc",
                                                            n_boot=n_boot, seed=seed),
                         "tpr": stats.metric_interval(labels, s, groups, "tpr", fpr=fpr,
                                                          n_boot=n_boot, seed=seed),
                         "wilcoxon_p": wil["pvalue"],
                         "median_gap_difference": wil["median_difference"],
                         "chosen": chosen})
    return pd.DataFrame(rows), scores


def baseline_grids(model: nn.Module, sources: Sources,
                   adversarial: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   defender_pool: tuple[torch.Tensor, torch.Tensor],
                   ensemble: baselines.MahalanobisEnsemble, lid_refs: int = 100,
                   mc_samples: int = 50, seed: int = 0
                   ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The established detectors' grids (:mod:`mcutils.detection_baselines`) of the
    sources and of every attack's successful examples, all from the defender's pool:
    the Mahalanobis ensemble (``ensemble``, fitted on that pool) at Lee et al.'s noise
    magnitudes, LID against ``lid_refs`` pool images at several ``k``, KD+BU against the
    pool at several bandwidths.

    Returns:
        ``detector -> (grid of the sources, {attack: grid of its successful examples})``,
        as :func:`detector_table` takes them.
    """
    px, py = defender_pool
    if not isinstance(lid_refs, int) or not max(baselines.LID_KS) < lid_refs <= len(px):
        raise ParameterError(f"lid_refs={lid_refs!r} must be in ({max(baselines.LID_KS)}, "
                             f"{len(px)}]")
    ref = px[torch.randperm(len(px), generator=torch.Generator().manual_seed(seed))[:lid_refs]]

    def grids(xs: torch.Tensor) -> dict[str, np.ndarray]:
        return {"mahalanobis_ensemble": ensemble.score_grid(model, xs),
                "lid": baselines.lid_grid(model, xs, ref, layers=ensemble.layers),
                "kd_bu": baselines.kd_bu_grid(model, xs, px, py, mc_samples=mc_samples,
                                              seed=seed)}

    real = grids(sources.x)
    out = {d: (real[d], {}) for d in real}
    for name, (adv, ok) in adversarial.items():
        if not ok.any():
            continue
        for d, grid in grids(adv[ok]).items():
            out[d][1][name] = grid
    return out


def table_entry(table: pd.DataFrame, attack: str, detector: str, column: str = "auroc"
                ) -> dict[str, Any]:
    """One interval of a :func:`detector_table`; an empty interval (NaN, ``n = 0``) when
    the attack had too few successful examples to be in the table."""
    sel = table[(table.attack == attack) & (table.detector == detector)] if len(table) else table
    if len(sel) == 0:
        return stats.interval(np.nan, np.nan, np.nan, 0)
    return sel[column].iloc[0]
