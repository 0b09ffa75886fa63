"""Barriers around adversarial examples: the input-space paper's paired statistic and
the sweeps that find where it holds.

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
* :func:`drop_unmatched` is the paper's 2-of-7 post-processing (an option);
* :func:`protocol_summary` gives the chapter's statistics with intervals over seeds,
  :func:`sweep_summary` the same within one set of sources (bootstrap over pairs);
* :func:`run_protocol`, :func:`attack_sweep` and :func:`model_sweep` are the
  orchestration of chapter 04's sections 1 and 2; :func:`sweep_model` trains (and
  caches) the networks they need, including models for upsampled inputs
  (:func:`upsample`);
* :func:`select_sources`, :func:`attack_suite`, :func:`detector_table` and
  :func:`adaptive_study` are the orchestration of section 3 (detectors and the
  adaptive attack).

Used by chapter 04.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils import attacks
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import EvalMode as _EvalMode
from mcutils.core.runtime import model_device as _model_device
from mcutils.core.runtime import planned_inference as _planned_inference
from mcutils.inputspace import barrier, loss_profiles

__all__ = [
    "ATTACK_KINDS",
    "PAPER_ATTACK",
    "PairSet",
    "Sources",
    "adaptive_study",
    "attack_suite",
    "attack_summary",
    "attack_sweep",
    "auroc_of",
    "defender_features",
    "detector_table",
    "drop_unmatched",
    "format_interval",
    "model_sweep",
    "network_specs",
    "paired_barriers",
    "paper_pairs",
    "protocol_summary",
    "rho_curve",
    "run_protocol",
    "select_sources",
    "setting_difference",
    "sweep_model",
    "sweep_settings",
    "sweep_summary",
    "table_entry",
    "upsample",
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
        """The same triples with ``fn`` applied to the images (e.g. :func:`upsample`)."""
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
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Predicted classes under the machine's speed plan (``batch_size=None``: the plan's;
    the caller's mode, device and layout restored), on the CPU."""
    with _planned_inference(model, x, batch_size) as plan:
        return torch.cat([model(plan.input(x[i:i + plan.batch_size])).argmax(1).cpu()
                          for i in range(0, len(x), plan.batch_size)])


def _ce(model: nn.Module, x: torch.Tensor, cls: torch.Tensor, batch_size: int | None = None
        ) -> torch.Tensor:
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
    loss1 = _ce(model, pairs.a, pairs.cls, batch_size)
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
    pred = _predict(model, k_adv, batch_size)
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
def auroc_of(negative: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of separating ``positive`` (label 1) from ``negative`` scores: the
    Mann-Whitney statistic with ties counted one half (NaN when a side is empty)."""
    from scipy.stats import rankdata

    negative, positive = np.asarray(negative, float), np.asarray(positive, float)
    n0, n1 = len(negative), len(positive)
    if n0 == 0 or n1 == 0:
        return float("nan")
    ranks = rankdata(np.r_[negative, positive])
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


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
        return auroc_of(present(col["w_gap"]), present(col["a_gap"]))
    if key == "auroc_max":
        return auroc_of(present(col["w_max"]), present(col["a_max"]))
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


def protocol_summary(df: pd.DataFrame, drop: int = 2, n_boot: int = 1000, seed: int = 0,
                     method: str = "pooled") -> dict[str, dict[str, Any]]:
    """The paper's statistics, each as an interval ``{"estimate", "ci", "n"}``.

    Rows are first post-processed per seed with :func:`drop_unmatched` (``drop`` pairs
    per class and kind; 0 keeps every pair). Then, with ``method``:

    * ``"pooled"`` (default): the statistic of all seeds' units together; the interval
      is a bootstrap *within* seeds (units ``A``, each with both its paths, resampled
      inside their seed) and ``n`` counts the units. The seeds are independent draws of
      pairs for one trained model, so their units are exchangeable;
    * ``"seeds"``: the mean of the per-seed statistics with a Student-t interval over
      the seeds (:func:`mcutils.core.stats.seed_interval`); ``n`` counts the seeds (this is
      the right interval when seeds also retrain the model).

    Statistics: ``median_gap_real`` / ``median_gap_adv`` (medians of the gap over
    within-class / real-adversarial paths), ``median_max_real`` / ``median_max_adv``,
    ``auroc_gap`` / ``auroc_max`` (AUROC of telling real-adversarial from within-class
    paths by the gap / the max), ``rho_median`` (median ``||K' - K|| / ||K' - A||``),
    ``l2_median`` and ``success`` (fraction of ``K'`` classified as the target).
    """
    if method not in ("pooled", "seeds"):
        raise ParameterError(f"method={method!r} is not known; valid values: pooled, seeds")
    if "seed" not in df.columns:
        df = df.assign(seed=0)
    seeds = sorted(df.seed.unique().tolist())
    tabs = {s: _unit_table(drop_unmatched(df[df.seed == s], drop)) for s in seeds}
    if method == "seeds":
        return {k: stats.seed_interval([_stat_of_units(tabs[s], k) for s in seeds])
                for k in STATISTICS}
    tab = np.concatenate([tabs[s] for s in seeds])
    strata = np.concatenate([np.full(len(tabs[s]), s) for s in seeds])
    return {k: stats.bootstrap_ci(np.arange(len(tab)),
                                  lambda idx, k=k: _stat_of_units(tab[idx], k),
                                  n_boot=n_boot, seed=seed, strata=strata)
            for k in STATISTICS}


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


def format_interval(iv: Mapping[str, Any], digits: int = 2) -> str:
    """An interval ``{"estimate", "ci", "n"}`` as text: ``"0.75 [0.68, 0.82]"``."""
    lo, hi = iv["ci"]
    return f"{iv['estimate']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


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


def sweep_settings(mse_weights: Sequence[float] = (), stop_scales: Sequence[float] = (),
                   lr_scales: Sequence[float] = (), over_confident: bool = True
                   ) -> dict[str, dict[str, Any]]:
    """The attack settings of chapter 04's sweeps, as overrides of :data:`PAPER_ATTACK`:
    ``"paper"`` first, then one setting per ``mse_weight`` (lambda, normalised units,
    matched-loss stop), one per stop scale ``s`` (stop below ``s * Loss1``), one per
    learning-rate multiple ``m`` (``m`` times the paper's step, matched-loss stop), and
    ``"over-confident"`` (no stop: every step is taken)."""
    out: dict[str, dict[str, Any]] = {"paper": {}}
    for w in mse_weights:
        if w < 0:
            raise ParameterError(f"mse_weight {w!r} must be >= 0")
        if w != PAPER_ATTACK["mse_weight"]:
            out[f"lambda={w:g}"] = {"mse_weight": float(w)}
    for sc in stop_scales:
        if not sc > 0:
            raise ParameterError(f"stop scale {sc!r} must be > 0")
        out[f"stop={sc:g} Loss1"] = {"stop": float(sc)}
    for m in lr_scales:
        if not m > 0:
            raise ParameterError(f"learning-rate multiple {m!r} must be > 0")
        out[f"lr={m:g}x"] = {"lr": PAPER_ATTACK["lr"] * float(m)}
    if over_confident:
        out["over-confident"] = {"stop": None}
    return out


def network_specs(sizes: Sequence[int] = (), networks: Sequence[str] = (),
                  model: str = "small_cnn", native: int = 28) -> dict[str, dict[str, Any]]:
    """The networks of chapter 04's model sweep for :func:`model_sweep`: ``model`` at
    every input size of ``sizes`` (labelled ``"<model> <size>px"``; ``native`` is always
    included, as the reference), then the named variants at the native size: ``wide``
    (``small_cnn`` with 64/128 channels and 256 hidden units), ``mlp``, ``preresnet20``
    and ``untrained`` (``model`` at its random initialisation)."""
    known = {"wide": {"model": "small_cnn", "model_kwargs": {"width": 64, "hidden": 256}},
             "mlp": {"model": "mlp"}, "preresnet20": {"model": "preresnet20"},
             "untrained": {"model": model, "trained": False}}
    out: dict[str, dict[str, Any]] = {}
    for size in sorted({native, *[int(v) for v in sizes]}):
        out[f"{model} {size}px"] = {"model": model, "size": size}
    for name in networks:
        if name not in known:
            raise ParameterError(f"network {name!r} is not known; valid values: {sorted(known)}")
        out[name] = {**known[name], "size": native}
    return out


# ----------------------------------------------------------------------------- orchestration
def run_protocol(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
                 pairs_per_class: int = 7, num_points: int = 250,
                 attack: Mapping[str, Any] | None = None, batch_size: int | None = None,
                 progress: bool = True, return_adversarial: bool = False
                 ) -> pd.DataFrame | tuple[pd.DataFrame, dict[int, torch.Tensor]]:
    """Section 1 of chapter 04: :func:`paper_pairs` and :func:`paired_barriers` for every
    seed (each seed draws its own pairs and other classes), rows tagged with ``seed``;
    with ``return_adversarial`` also ``{seed: K' images}``."""
    if not seeds:
        raise ParameterError("seeds must name at least one seed")
    frames, images = [], {}
    for s in tqdm(list(seeds), desc="paper protocol (seeds)", disable=not progress):
        pairs = paper_pairs(x, y, pairs_per_class, seed=int(s))
        df, k_adv = paired_barriers(model, pairs, num_points, attack, batch_size=batch_size,
                                    return_adversarial=True)
        frames.append(df.assign(seed=int(s)))
        images[int(s)] = k_adv
    out = pd.concat(frames, ignore_index=True)
    return (out, images) if return_adversarial else out


def attack_sweep(model: nn.Module, pairs: PairSet, settings: Mapping[str, Mapping[str, Any]],
                 num_points: int = 250, batch_size: int | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """One factor at a time on one set of pairs: :func:`paired_barriers` for each named
    attack setting (overrides of :data:`PAPER_ATTACK`); the within-class paths are
    measured once. Rows are tagged with ``setting``."""
    if not settings:
        raise ParameterError("settings must name at least one attack setting")
    frames, within = [], None
    for name, attack in tqdm(list(settings.items()), desc="attack settings", disable=not progress):
        df = paired_barriers(model, pairs, num_points, attack, within=within,
                             batch_size=batch_size)
        within = df[df.kind == "within"]
        frames.append(df.assign(setting=name))
    return pd.concat(frames, ignore_index=True)


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to ``size x size`` pixels (bilinear, ``align_corners=False``),
    kept in ``[0, 1]``; the identity at the images' own size."""
    if not isinstance(size, int) or size < 4:
        raise ParameterError(f"size={size!r} must be an integer >= 4")
    if x.dim() != 4:
        raise ParameterError("x must be [N, C, H, W]")
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def sweep_model(dataset: str = "fashion-mnist", model: str = "small_cnn", size: int | None = None,
                model_kwargs: Mapping[str, Any] | None = None, epochs: int = 2,
                train_subset: int | None = 5000, lr: float = 1e-3, batch_size: int = 128,
                seed: int = 0, trained: bool = True, device: str = "cpu",
                progress: bool = True) -> nn.Module:
    """A network for the sweeps, trained on (a subset of) the training split upsampled
    to ``size`` pixels and cached by :mod:`mcutils.core.store`; ``trained=False`` gives the
    same architecture at its seeded random initialisation (the untrained control).

    Returns:
        The model in eval mode on the CPU.
    """
    from mcutils import data, training
    from mcutils.core.runtime import seed_everything
    from mcutils.core.store import code_version, load_or_train
    from mcutils.models import build_for_dataset

    info = data.dataset_info(dataset)
    size = size or info.input_size
    kwargs = dict(model_kwargs or {})
    if size != info.input_size:
        kwargs["input_size"] = size

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **kwargs)

    if not trained:
        return build().eval()

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        ds = data.load_dataset(dataset, "train", subset=train_subset, seed=seed)
        xs = upsample(ds.x, size)
        loader = data.TensorLoader(torch.utils.data.TensorDataset(xs, ds.y), batch_size,
                                   shuffle=True, seed=seed)
        training.train(net, loader, epochs=epochs, lr=lr, device=device, seed=seed,
                       progress=progress, desc=f"train {model} at {size}px")

    config = {"name": f"{dataset}_{model}_{size}px", "dataset": dataset, "model": model,
              "size": size, "model_kwargs": kwargs, "epochs": epochs,
              "train_subset": train_subset, "lr": lr, "batch_size": batch_size, "seed": seed}
    return load_or_train(config, build, fit, code=code_version(training.train, upsample))


def model_sweep(pairs: PairSet, networks: Mapping[str, Mapping[str, Any]],
                dataset: str = "fashion-mnist", epochs: int = 2, train_subset: int | None = 5000,
                seed: int = 0, num_points: int = 250, attack: Mapping[str, Any] | None = None,
                batch_size: int | None = None, eval_set: tuple[torch.Tensor, torch.Tensor] | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, dict[str, nn.Module]]:
    """The paper's statistic on several networks and input sizes, one set of pairs.

    ``networks`` maps a label to :func:`sweep_model` arguments: ``model`` (default
    ``small_cnn``), ``model_kwargs``, ``size`` (the pairs are upsampled to it with
    :func:`upsample`, and the network is trained at that size) and ``trained``. Every
    trained network uses the same subset, epochs and seed.

    Returns:
        ``(rows tagged with network and size, {label: model})``.
    """
    if not networks:
        raise ParameterError("networks must name at least one network")
    frames, nets = [], {}
    for label, spec in tqdm(list(networks.items()), desc="networks", disable=not progress):
        spec = dict(spec)
        unknown = set(spec) - {"model", "model_kwargs", "trained", "size"}
        if unknown:
            raise ParameterError(f"network {label!r}: unknown keys {sorted(unknown)}")
        size = int(spec.get("size") or pairs.a.shape[-1])
        net = sweep_model(dataset, spec.get("model", "small_cnn"), size,
                          spec.get("model_kwargs"), epochs=epochs, train_subset=train_subset,
                          seed=seed, trained=spec.get("trained", True), progress=progress)
        nets[label] = net
        up = pairs.map_images(lambda t, s=size: upsample(t, s))
        df = paired_barriers(net, up, num_points, attack, batch_size=batch_size)
        df = df.assign(network=label, size=size)
        if eval_set is not None:
            ex, ey = eval_set
            pred = _predict(net, upsample(ex, size), batch_size)
            df = df.assign(accuracy=float((pred == ey).float().mean()))
        frames.append(df)
    return pd.concat(frames, ignore_index=True), nets


# ----------------------------------------------------------------------------- section 3
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
        found.append(chunk[_predict(model, x[chunk]) == y[chunk]])
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
    stop = _ce(model, x[partner], target)
    return Sources(x[src], y[src], target, stop, src)


ATTACK_KINDS = ("fgsm", "pgd_linf", "pgd_l2", "cw", "optim")


def attack_suite(model: nn.Module, sources: Sources, specs: Mapping[str, Mapping[str, Any]],
                 seed: int = 0, progress: bool = True
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run several attacks on the same sources.

    ``specs`` maps a name to ``{"kind": one of ATTACK_KINDS, ...keyword arguments}``.
    ``fgsm``, ``pgd_*`` and ``cw`` are untargeted (true class); ``optim`` is the
    paper's targeted attack (:data:`PAPER_ATTACK` overridden by the spec; ``stop``:
    ``"matched"`` uses the sources' stopping losses, ``None`` runs every step).

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
    pred = _predict(model, adv)
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
    from mcutils import detection

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
    from mcutils import detection

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
    from mcutils import detection

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
        return (_predict(model, adv) == sources.target).numpy()

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
