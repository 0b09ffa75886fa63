"""Barriers around adversarial examples: the input-space paper's paired statistic.

The input-space paper (Vrabel et al., its Figure 6 and ``sec4_2_adversarial_attacks.py``)
compares, for every class ``c``, two kinds of straight paths that start at the same
real image ``A`` of class ``c``:

* *within-class*: to a second real image ``B`` of class ``c``;
* *real-adversarial*: to ``K'``, an image ``K`` of another class attacked towards ``c``
  with :func:`mcutils.attacks.optimization_attack` until its loss of ``c`` falls below
  that of ``A`` (so both ends of the path have matched loss).

Along each path (250 evenly spaced points) it records the cross-entropy of ``c``: the
*barrier max* (highest loss on the path) and the *barrier gap* (max minus the larger
endpoint loss). Per class it uses 7 pairs and, in post-processing, drops the 2 pairs
with the largest endpoint-loss difference ``|Loss1 - Loss2|``.

* :func:`paper_pairs` draws the pairs exactly as the paper's code does;
* :func:`paired_barriers` attacks and measures them (one row per path);
  :func:`predict_classes` and :func:`class_loss` are its batched predictions and
  endpoint losses;
* :func:`drop_unmatched` is the paper's 2-of-7 post-processing (an option);
* :func:`protocol_summary` gives the statistics with intervals over seeds,
  :func:`sweep_summary` the same within one set of sources (bootstrap over pairs),
  :func:`setting_difference` the paired difference between two settings and
  :func:`rho_curve` the settings ordered by perturbation size.

The chapter's orchestration (the seeds, the sweeps, the detectors and the adaptive
attack) is in :mod:`mcutils.chapters.ch04_adversarial`. Used by chapter 04.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import attacks
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device as _model_device
from mcutils.core.runtime import planned_inference as _planned_inference
from mcutils.inputspace import barrier, loss_profiles

__all__ = [
    "PAPER_ATTACK",
    "STATISTICS",
    "PairSet",
    "class_loss",
    "drop_unmatched",
    "paired_barriers",
    "paper_pairs",
    "predict_classes",
    "protocol_summary",
    "rho_curve",
    "setting_difference",
    "sweep_summary",
]

#: The paper's attack settings (``compute_adversarial_barriers``), normalised units.
PAPER_ATTACK: dict[str, Any] = {"steps": 512, "lr": 0.005, "mse_weight": 0.1,
                                "hf_weight": 1e-8, "warmup": 32, "units": "normalized",
                                "clip": False, "stop": "matched"}


# ----------------------------------------------------------------------------- pairs
@dataclass
class PairSet:
    """The paper's paired design: ``P`` triples ``(A, B, K)``.

    Attributes:
        a: ``[P, C, H, W]`` real images of class ``cls`` (both paths start here).
        b: ``[P, C, H, W]`` second real images of class ``cls`` (within-class ends).
        k: ``[P, C, H, W]`` real images of another class (the attack's sources).
        cls: ``[P]`` the class of ``A`` and ``B``, and the attack's target.
        k_cls: ``[P]`` the class of ``K``.
        pair: ``[P]`` the pair's number within its class (0, 1, ...).
        index: ``[P, 3]`` dataset indices of ``A``, ``B`` and ``K``.
    """

    a: torch.Tensor
    b: torch.Tensor
    k: torch.Tensor
    cls: torch.Tensor
    k_cls: torch.Tensor
    pair: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.cls)

    def select(self, rows: torch.Tensor | Sequence[int]) -> PairSet:
        """A subset of the triples."""
        r = torch.as_tensor(rows, dtype=torch.long)
        return PairSet(self.a[r], self.b[r], self.k[r], self.cls[r], self.k_cls[r],
                       self.pair[r], self.index[r])

    def map_images(self, fn) -> PairSet:
        """The same triples with ``fn`` applied to the images (e.g. :func:`~mcutils.chapters.ch04_sweep.upsample`)."""
        return PairSet(fn(self.a), fn(self.b), fn(self.k), self.cls, self.k_cls, self.pair,
                       self.index)


def paper_pairs(x: torch.Tensor, y: torch.Tensor, pairs_per_class: int = 7,
                classes: Sequence[int] | None = None, seed: int = 0) -> PairSet:
    """Draw the paper's triples from a labelled set of real images.

    Follows ``compute_within_class_barriers`` and ``compute_adversarial_barriers``:
    the images of each class are put in a seeded random order (the paper reads them in
    the order of its files); pair ``p`` of class ``c`` uses image ``2p`` of ``c`` as
    ``A`` and image ``2p + 1`` as ``B``, and image ``2p`` of a uniformly drawn other
    class as the attack's source ``K`` (so a ``K`` is also the ``A`` of a pair of its
    own class, as in the paper). Images are not filtered by whether the model gets
    them right (the paper's are not).

    Args:
        x: ``[N, C, H, W]`` images; y: ``[N]`` labels.
        pairs_per_class: pairs per class (paper: 7).
        classes: classes to use (default: every label present).
        seed: seed of the orders and of the other-class draws.

    Returns:
        A :class:`PairSet` ordered by class, then pair.

    Raises:
        ParameterError: a class with fewer than ``2 * pairs_per_class`` images.
    """
    if not isinstance(pairs_per_class, int) or pairs_per_class < 1:
        raise ParameterError(f"pairs_per_class={pairs_per_class!r} must be a positive integer")
    y = torch.as_tensor(y)
    if x.dim() != 4 or len(x) != len(y):
        raise ParameterError("x must be [N, C, H, W] with one label per image")
    cls_list = sorted(y.unique().tolist()) if classes is None else [int(c) for c in classes]
    if len(cls_list) < 2:
        raise ParameterError("need at least two classes (the attack's source is another class)")
    gen = torch.Generator().manual_seed(seed)
    order = {}
    for c in cls_list:
        members = (y == c).nonzero().flatten()
        if len(members) < 2 * pairs_per_class:
            raise ParameterError(f"class {c} has {len(members)} images, fewer than "
                                 f"2 * pairs_per_class = {2 * pairs_per_class}")
        order[c] = members[torch.randperm(len(members), generator=gen)]
    ia, ib, ik, cc, kc, pp = [], [], [], [], [], []
    for c in cls_list:
        others = [o for o in cls_list if o != c]
        for p in range(pairs_per_class):
            o = others[int(torch.randint(len(others), (1,), generator=gen))]
            ia.append(int(order[c][2 * p]))
            ib.append(int(order[c][2 * p + 1]))
            ik.append(int(order[o][2 * p]))
            cc.append(c)
            kc.append(o)
            pp.append(p)
    index = torch.tensor([ia, ib, ik]).T
    return PairSet(x[index[:, 0]], x[index[:, 1]], x[index[:, 2]], torch.tensor(cc),
                   torch.tensor(kc), torch.tensor(pp), index)


# ----------------------------------------------------------------------------- measurements
def predict_classes(model: nn.Module, x: torch.Tensor, batch_size: int | None = None
                    ) -> torch.Tensor:
    """Predicted classes under the machine's speed plan (``batch_size=None``: the plan's;
    the caller's mode, device and layout restored), on the CPU."""
    with _planned_inference(model, x, batch_size) as plan:
        return torch.cat([model(plan.input(x[i:i + plan.batch_size])).argmax(1).cpu()
                          for i in range(0, len(x), plan.batch_size)])


def class_loss(model: nn.Module, x: torch.Tensor, cls: torch.Tensor,
               batch_size: int | None = None) -> torch.Tensor:
    """Cross-entropy of ``cls`` at ``x`` (endpoint losses), batched, on the CPU."""
    return loss_profiles(model, x, x, cls, ts=torch.zeros(1), batch_size=batch_size)[:, 0]


def paired_barriers(model: nn.Module, pairs: PairSet, num_points: int = 250,
                    attack: Mapping[str, Any] | None = None, within: pd.DataFrame | None = None,
                    batch_size: int | None = None, return_adversarial: bool = False
                    ) -> pd.DataFrame | tuple[pd.DataFrame, torch.Tensor]:
    """Attack every ``K`` towards its pair's class and measure both kinds of paths.

    The attack is :func:`mcutils.attacks.optimization_attack` with the settings of
    ``attack`` over :data:`PAPER_ATTACK`; its ``stop`` entry is ``"matched"`` (stop
    below ``Loss1``, the loss of ``A``: the paper's rule), ``None`` (all steps: an
    over-confident end) or a number ``s`` (stop below ``s * Loss1``).

    Args:
        model: the classifier.
        pairs: the triples (:func:`paper_pairs`).
        num_points: points per straight path, ends included (paper: 250).
        attack: overrides of :data:`PAPER_ATTACK`.
        within: the within-class rows of an earlier call on the same pairs and model
            (they do not depend on the attack); computed when ``None``.
        batch_size: points per forward pass (``None``: the machine's speed plan's).
        return_adversarial: also return the adversarial images ``K'``.

    Returns:
        One row per path: ``kind`` (``"within"`` / ``"adversarial"``), ``cls``,
        ``pair``, ``unit`` (the row of ``pairs``: both paths of a unit share ``A``),
        ``loss1`` (at ``A``), ``loss2`` (at the other end), ``max``, ``gap``, and for
        adversarial rows ``success`` (``K'`` is classified as ``cls``), ``l2`` (pixel
        L2 of ``K' - K``), ``rho`` (``l2 / ||K' - A||``), ``steps`` (Adam updates) and
        ``out_of_box`` (fraction of pixels of ``K'`` outside ``[0, 1]``).
    """
    settings = dict(PAPER_ATTACK)
    settings.update(attack or {})
    unknown = set(settings) - set(PAPER_ATTACK)
    if unknown:
        raise ParameterError(f"unknown attack settings {sorted(unknown)}; valid: {sorted(PAPER_ATTACK)}")
    stop_mode = settings.pop("stop")
    if len(pairs) == 0:
        raise ParameterError("no pairs")
    units = torch.arange(len(pairs))
    base = {"cls": pairs.cls.numpy(), "pair": pairs.pair.numpy(), "unit": units.numpy()}
    loss1 = class_loss(model, pairs.a, pairs.cls, batch_size)
    if within is None:
        prof_w = loss_profiles(model, pairs.a, pairs.b, pairs.cls, num_points=num_points,
                               batch_size=batch_size)
        within = pd.DataFrame(dict(kind="within", **base, loss1=prof_w[:, 0].numpy(),
                                   loss2=prof_w[:, -1].numpy(),
                                   max=barrier(prof_w, "max").numpy(),
                                   gap=barrier(prof_w, "gap").numpy()))
    if stop_mode == "matched":
        stop = loss1
    elif stop_mode is None:
        stop = None
    elif isinstance(stop_mode, (int, float)) and stop_mode > 0:
        stop = loss1 * float(stop_mode)
    else:
        raise ParameterError(f"stop={stop_mode!r} must be 'matched', None or a positive number")
    dev = _model_device(model)
    k_adv, steps = attacks.optimization_attack(model, pairs.k.to(dev), pairs.cls.to(dev),
                                               stop_loss=stop, return_steps=True, **settings)
    k_adv = k_adv.cpu()
    prof_a = loss_profiles(model, pairs.a, k_adv, pairs.cls, num_points=num_points,
                           batch_size=batch_size)
    pred = predict_classes(model, k_adv, batch_size)
    l2 = (k_adv - pairs.k).flatten(1).norm(dim=1)
    dist = (k_adv - pairs.a).flatten(1).norm(dim=1)
    adv = pd.DataFrame(dict(kind="adversarial", **base, loss1=prof_a[:, 0].numpy(),
                            loss2=prof_a[:, -1].numpy(), max=barrier(prof_a, "max").numpy(),
                            gap=barrier(prof_a, "gap").numpy(),
                            success=(pred == pairs.cls).numpy(), l2=l2.numpy(),
                            rho=(l2 / dist.clamp_min(1e-12)).numpy(), steps=steps.numpy(),
                            out_of_box=((k_adv < 0) | (k_adv > 1)).flatten(1).float()
                            .mean(1).numpy()))
    df = pd.concat([within, adv], ignore_index=True)
    return (df, k_adv) if return_adversarial else df


def drop_unmatched(df: pd.DataFrame, drop: int = 2, by: Sequence[str] = ("kind", "cls")
                   ) -> pd.DataFrame:
    """The paper's post-processing: within each group (per class, separately for each
    kind of path) drop the ``drop`` rows with the largest ``|loss1 - loss2|``.

    As ``postprocess_barriers`` of the paper's code (pandas ``nsmallest``: ties keep the
    earlier row). A group with at most ``drop`` rows is dropped entirely.

    Returns:
        The kept rows (original index).
    """
    if not isinstance(drop, int) or drop < 0:
        raise ParameterError(f"drop={drop!r} must be a non-negative integer")
    missing = {"loss1", "loss2", *by} - set(df.columns)
    if missing:
        raise ParameterError(f"df lacks columns {sorted(missing)}")
    if drop == 0:
        return df
    diff = (df["loss1"] - df["loss2"]).abs()
    keep = []
    for idx in df.groupby(list(by), sort=False).groups.values():
        sub = diff.loc[idx]
        keep.extend(sub.nsmallest(max(len(sub) - drop, 0)).index.tolist())
    return df.loc[sorted(keep)]


# ----------------------------------------------------------------------------- statistics
_UNIT_COLUMNS = ("w_gap", "w_max", "a_gap", "a_max", "rho", "l2", "success")


def _unit_table(df: pd.DataFrame) -> np.ndarray:
    """``[units, 7]``: per unit ``A`` its within-class gap and max, its real-adversarial
    gap and max, rho, l2 and success (NaN where a path was dropped)."""
    units = np.unique(df.unit)
    pos = {u: i for i, u in enumerate(units)}
    tab = np.full((len(units), len(_UNIT_COLUMNS)), np.nan)
    w = df[df.kind == "within"]
    a = df[df.kind == "adversarial"]
    wi = np.array([pos[u] for u in w.unit], dtype=int)
    ai = np.array([pos[u] for u in a.unit], dtype=int)
    tab[wi, 0], tab[wi, 1] = w.gap.to_numpy(), w["max"].to_numpy()
    if len(a):
        tab[ai, 2], tab[ai, 3] = a.gap.to_numpy(), a["max"].to_numpy()
        for j, col in ((4, "rho"), (5, "l2"), (6, "success")):
            tab[ai, j] = a[col].to_numpy(dtype=float)
    return tab


def _unit_classes(df: pd.DataFrame) -> np.ndarray:
    """The class of each unit of :func:`_unit_table` (in the order of its rows)."""
    return df.groupby("unit").cls.first().sort_index().to_numpy()


def _median(v: np.ndarray) -> float:
    v = v[~np.isnan(v)]
    return float(np.median(v)) if len(v) else float("nan")


def _stat_of_units(tab: np.ndarray, key: str) -> float:
    col = {c: tab[:, j] for j, c in enumerate(_UNIT_COLUMNS)}

    def present(v: np.ndarray) -> np.ndarray:
        return v[~np.isnan(v)]

    if key == "median_gap_real":
        return _median(col["w_gap"])
    if key == "median_gap_adv":
        return _median(col["a_gap"])
    if key == "median_max_real":
        return _median(col["w_max"])
    if key == "median_max_adv":
        return _median(col["a_max"])
    if key == "auroc_gap":
        return stats.auroc_of(present(col["w_gap"]), present(col["a_gap"]))
    if key == "auroc_max":
        return stats.auroc_of(present(col["w_max"]), present(col["a_max"]))
    if key == "rho_median":
        return _median(col["rho"])
    if key == "l2_median":
        return _median(col["l2"])
    if key == "success":
        succ = present(col["success"])
        return float(succ.mean()) if len(succ) else float("nan")
    raise ParameterError(f"statistic {key!r} is not known; valid values: {STATISTICS}")


STATISTICS = ("median_gap_real", "median_gap_adv", "median_max_real", "median_max_adv",
              "auroc_gap", "auroc_max", "rho_median", "l2_median", "success")


def _unit_bootstrap(tab: np.ndarray, key: str, n_boot: int, seed: int) -> dict[str, Any]:
    return stats.bootstrap_ci(np.arange(len(tab)), lambda idx: _stat_of_units(tab[idx], key),
                              n_boot=n_boot, seed=seed)


def _hierarchical(tab: np.ndarray, seeds: np.ndarray, classes: np.ndarray, key: str,
                  n_boot: int, seed: int) -> dict[str, Any]:
    """One statistic of :func:`protocol_summary`'s ``"hierarchical"`` method."""
    units = f"{len(np.unique(seeds))} seed(s) -> {len(np.unique(classes))} classes -> " \
            f"{len(tab)} real images A"
    if key == "success":
        succ = tab[:, _UNIT_COLUMNS.index("success")]
        succ = succ[~np.isnan(succ)]
        if len(succ) == 0:
            return {**stats.interval(np.nan, np.nan, np.nan, 0), "method": "no attacks"}
        return {**stats.binomial_interval(int(succ.sum()), len(succ)),
                "method": f"exact binomial (Clopper-Pearson) over {len(succ)} attacks"}
    out = stats.hierarchical_bootstrap_ci(
        np.arange(len(tab), dtype=float), [seeds, classes],
        lambda idx: _stat_of_units(tab[idx.astype(int)], key), n_boot=n_boot, seed=seed)
    return {**out, "n": len(tab), "method": f"hierarchical bootstrap over {units}"}


def protocol_summary(df: pd.DataFrame, drop: int = 2, n_boot: int = 1000, seed: int = 0,
                     method: str = "pooled", keys: Sequence[str] = STATISTICS
                     ) -> dict[str, dict[str, Any]]:
    """The paper's statistics, each as an interval ``{"estimate", "ci", "n"}``.

    Rows are first post-processed per seed with :func:`drop_unmatched` (``drop`` pairs
    per class and kind; 0 keeps every pair). Then, with ``method``:

    * ``"pooled"`` (default): the statistic of all seeds' units together; the interval
      is a bootstrap *within* seeds (units ``A``, each with both its paths, resampled
      inside their seed) and ``n`` counts the units. The seeds are independent draws of
      pairs for one trained model, so their units are exchangeable;
    * ``"seeds"``: the mean of the per-seed statistics with a Student-t interval over
      the seeds (:func:`mcutils.core.stats.seed_interval`); ``n`` counts the seeds (this is
      the right interval when seeds also retrain the model);
    * ``"hierarchical"``: the statistic of all seeds' units together, with a
      hierarchical bootstrap (:func:`mcutils.core.stats.hierarchical_bootstrap_ci`) that
      resamples seeds, then classes within a seed, then units ``A`` within a class, so
      that differences between seeds and between classes widen the interval; ``n``
      counts the units. ``success`` (a fraction of independent attacks) gets the exact
      binomial interval (:func:`mcutils.core.stats.binomial_interval`) instead. Each
      interval carries its ``"method"``.

    Statistics: ``median_gap_real`` / ``median_gap_adv`` (medians of the gap over
    within-class / real-adversarial paths), ``median_max_real`` / ``median_max_adv``,
    ``auroc_gap`` / ``auroc_max`` (AUROC of telling real-adversarial from within-class
    paths by the gap / the max), ``rho_median`` (median ``||K' - K|| / ||K' - A||``),
    ``l2_median`` and ``success`` (fraction of ``K'`` classified as the target);
    ``keys`` picks some of them (default: all).
    """
    unknown = set(keys) - set(STATISTICS)
    if unknown:
        raise ParameterError(f"statistics {sorted(unknown)} are not known; valid values: "
                             f"{STATISTICS}")
    if method not in ("pooled", "seeds", "hierarchical"):
        raise ParameterError(f"method={method!r} is not known; valid values: pooled, seeds, "
                             "hierarchical")
    if "seed" not in df.columns:
        df = df.assign(seed=0)
    seeds = sorted(df.seed.unique().tolist())
    kept = {s: drop_unmatched(df[df.seed == s], drop) for s in seeds}
    tabs = {s: _unit_table(kept[s]) for s in seeds}
    if method == "seeds":
        return {k: stats.seed_interval([_stat_of_units(tabs[s], k) for s in seeds])
                for k in keys}
    tab = np.concatenate([tabs[s] for s in seeds])
    strata = np.concatenate([np.full(len(tabs[s]), s) for s in seeds])
    if method == "hierarchical":
        classes = np.concatenate([_unit_classes(kept[s]) for s in seeds])
        return {k: _hierarchical(tab, strata, classes, k, n_boot, seed) for k in keys}
    return {k: stats.bootstrap_ci(np.arange(len(tab)),
                                  lambda idx, k=k: _stat_of_units(tab[idx], k),
                                  n_boot=n_boot, seed=seed, strata=strata)
            for k in keys}


def sweep_summary(df: pd.DataFrame, by: str = "setting", drop: int = 0, n_boot: int = 1000,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Per setting of a sweep on *one* set of pairs: ``rho``, ``median_gap`` (of the
    real-adversarial paths), ``median_gap_real``, ``auroc`` (of the gap) and ``success``,
    each an interval from a bootstrap over units (an ``A`` keeps both its paths).

    Returns:
        One dict per setting (in order of appearance) with the key ``by`` and the
        intervals.
    """
    if by not in df.columns:
        raise ParameterError(f"df has no column {by!r}")
    out = []
    for value in dict.fromkeys(df[by]):
        tab = _unit_table(drop_unmatched(df[df[by] == value], drop))
        entry: dict[str, Any] = {by: value}
        for name, key in (("rho", "rho_median"), ("median_gap", "median_gap_adv"),
                          ("median_gap_real", "median_gap_real"), ("auroc", "auroc_gap"),
                          ("success", "success")):
            entry[name] = _unit_bootstrap(tab, key, n_boot, seed)
        out.append(entry)
    return out


def rho_curve(summary: Sequence[Mapping[str, Any]], exclude: Sequence[str] = ("over-confident",)
              ) -> list[Mapping[str, Any]]:
    """The entries of a :func:`sweep_summary` ordered by their median ``rho``, without the
    settings named in ``exclude`` (the over-confident end varies confidence, not rho)."""
    keep = [e for e in summary if e.get("setting") not in set(exclude)]
    return sorted(keep, key=lambda e: e["rho"]["estimate"])


def setting_difference(df: pd.DataFrame, a: Any, b: Any, by: str = "setting",
                       statistic: str = "auroc_gap", drop: int = 0, n_boot: int = 1000,
                       seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of ``statistic(a) - statistic(b)`` between two settings of a
    sweep on the same pairs: every resample of units ``A`` is used for both settings.

    Returns:
        ``{"estimate", "ci", "n"}`` (``n``: units present in both settings).
    """
    if by not in df.columns:
        raise ParameterError(f"df has no column {by!r}")
    ta = drop_unmatched(df[df[by] == a], drop)
    tb = drop_unmatched(df[df[by] == b], drop)
    if len(ta) == 0 or len(tb) == 0:
        raise ParameterError(f"no rows for {by}={a!r} or {by}={b!r}")
    units = np.intersect1d(np.unique(ta.unit), np.unique(tb.unit))
    tab_a = _unit_table(ta[ta.unit.isin(units)])
    tab_b = _unit_table(tb[tb.unit.isin(units)])
    return stats.bootstrap_ci(np.arange(len(units)),
                              lambda idx: _stat_of_units(tab_a[idx], statistic)
                              - _stat_of_units(tab_b[idx], statistic),
                              n_boot=n_boot, seed=seed)
