"""Chapter 01: its parameters, pair sets, batched connectivity runs, per-pair tables,
tolerance curves, the intervals behind its claims, and its findings.

* :data:`PARAMETERS` is the chapter's parameter schema (cross-checks
  :func:`seeds_given`, :func:`connect_tol_within_tol`, :func:`imagenet_needs_folder`),
  :data:`EXPECTED` its expected claims;
* :class:`PairSet`, :func:`predict_labels`, :func:`make_pair_sets`, :func:`merge_sets`,
  :func:`synthesis_summary`: the four kinds of same-class pairs;
* :func:`connect_sets`, :func:`split_result`: one connectivity run for many pair sets;
* :func:`pair_table`, :func:`round_columns`, :func:`connected_flags`, :func:`bypassed`,
  :func:`tolerance_curve`, :func:`kind_summary`: per-pair tables and their summaries;
* :func:`two_sample_ci`, :func:`effect_word`, :func:`fraction_result` (exact),
  :func:`median_result` (hierarchical), :func:`one_round_flags`, :func:`connectivity_claims`,
  :func:`claim_verdicts` (with :data:`CLAIM_KINDS` and :data:`PAPER`): the claims.

Its findings are recorded by :func:`mcutils.chapters.ch01_input_space_findings.findings`,
its own checks (dense re-measurement, random bends, the two-ball region at every
tolerance, the smoothness comparison) are in :mod:`mcutils.chapters.ch01_input_space_checks`.

Each is tested at a tiny size in ``tests/test_inputspace_studies.py`` and
``tests/test_ch01_input_space.py``. Tables are
:class:`pandas.DataFrame` with one row per pair of inputs. Barriers after each round are
in the columns ``round_0`` (the straight path), ``round_1``, ...; a pair is *connected*
at a tolerance ``tol`` after round ``r`` when ``round_r < tol`` (or is exactly 0), as in
:func:`mcutils.inputspace.connected_fraction`. The model and the measurements of single
sections are in :mod:`mcutils.chapters.ch01_input_space_paths`, the figures in
:mod:`mcutils.chapters.ch01_input_space_figures`.

Used by chapter 01, and by chapter 03 for its tables and tolerance curves
(:mod:`mcutils.chapters.ch03_untrained`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.data import class_pairs, matched_pairs
from mcutils.inputspace._common import DEFAULT_BATCH_SIZE, _check_pairs
from mcutils.inputspace.bypass import ConnectResult, connect
from mcutils.inputspace.geometry import chord_deviation, detour_angle, relative_path_length
from mcutils.inputspace.paths import interpolated_inputs
from mcutils.inputspace.synthesis import SyntheticPairs, synthetic_pairs
from mcutils.params import Param, ParameterSchema
from mcutils.training import predict

__all__ = ["PARAMETERS", "EXPECTED", "seeds_given", "connect_tol_within_tol",
           "imagenet_needs_folder", "KINDS", "PairSet", "predict_labels", "make_pair_sets",
           "merge_sets", "synthesis_summary", "split_result", "connect_sets", "round_columns",
           "pair_table", "connected_flags", "bypassed", "tolerance_curve", "kind_summary",
           "two_sample_ci", "effect_word", "CLAIM_KINDS", "PAPER", "fraction_result",
           "median_result", "one_round_flags", "connectivity_claims", "claim_verdicts",
           "bypassed"]


KINDS = ("real-real", "real-interpolated", "real-synthetic", "synthetic-synthetic")


def seeds_given(p: Mapping[str, Any]) -> str | None:
    """At least one sampling seed."""
    return None if p["seeds"] else "seeds=[] must name at least one sampling seed"


def connect_tol_within_tol(p: Mapping[str, Any]) -> str | None:
    """Paths are built at a tolerance no looser than the main one."""
    if p["connect_tol"] > p["tol"]:
        return (f"connect_tol={p['connect_tol']} must not exceed tol={p['tol']}: paths built at "
                "a looser tolerance say nothing about the main one")
    return None


def imagenet_needs_folder(p: Mapping[str, Any]) -> str | None:
    """A torchvision (ImageNet) model needs a folder of images to draw pairs from."""
    if p["model"].startswith("torchvision:") and not p["image_folder"]:
        return (f"model={p['model']!r} (ImageNet) needs image_folder: a folder with one "
                "sub-folder of images per class (named by class index or name)")
    return None


_SYNTH = "synthetic inputs: the paper's feature visualisation, normalised units"
_BYPASS = "bypass: the paper's, normalised units"
_VARIANT = "variation: bypass stopped as soon as the point is flat, in pixel space, inside [0, 1]"

PARAMETERS = ParameterSchema("01", {
    **model_params(),
    "model": Param("small_cnn", 'a name in mcutils.models.MODELS, or "torchvision:<arch>" '
                   "(ImageNet)"),
    "seeds": Param([0, 1], "sampling seeds: pairs, interpolation points and synthesis noise",
                   range=(0, None)),
    "num_test": Param(3000, "test images from which the pairs are drawn", range=(20, None)),
    "num_pairs_per_class": Param(14, "real same-class pairs per class and seed", range=(1, None)),
    "num_other_pairs_per_class": Param(4, "pairs per class and seed for each other kind",
                                       range=(1, None)),
    "num_points": Param(100, "points of each straight-path loss profile in the figures",
                        range=(3, None)),
    "tol": Param(0.01, "main tolerance (nats): connected when the path's barrier is below this",
                 range=(1e-6, None)),
    "tolerances": Param([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
                        "tolerances of the curve (nats)", range=(1e-6, None)),
    "connect_tol": Param(0.001, "paths are built at this tolerance, a witness for every larger "
                         "one", range=(1e-6, None)),
    "max_rounds": Param(3, "rounds of the recursive bypass", range=(1, 20)),
    "synth_steps": Param(8192, "maximum Adam steps", range=(1, None), group=_SYNTH),
    "synth_lr": Param(0.05, "Adam learning rate", range=(1e-8, 10)),
    "synth_stop_loss": Param(0.0005, "an input stops once its class loss is below this",
                             range=(0, None)),
    "synth_init_std": Param(0.01, "initial noise around the dataset mean", range=(0, None)),
    "synth_weight_decay": Param(1e-7, "Adam weight decay", range=(0, None)),
    "synth_tv_weight": Param(2.5e-7, "smoothness penalty (summed neighbour differences) of A "
                             "only", range=(0, None)),
    "bypass_steps": Param(1024, "Adam steps per bypass point", range=(1, None), group=_BYPASS),
    "bypass_lr": Param(0.005, "Adam learning rate", range=(1e-8, 10)),
    "deviation_weight": Param(0.1, "weight of mean((B' - B)^2)", range=(0, None)),
    "tv_weight": Param(1e-8, "weight of the summed neighbour differences of B' - B",
                       range=(0, None)),
    "variant_steps": Param(100, range=(1, None), group=_VARIANT),
    "variant_lr": Param(0.01, "pixel units per step", range=(1e-8, 10)),
    "variant_deviation_weight": Param(1.0, range=(0, None)),
    "variant_tv_weight": Param(0.1, "mean neighbour differences", range=(0, None)),
    "claim_frac": Param(0.95, "claims: at least this fraction of pairs connected", range=(0, 1)),
    "one_round_frac": Param(0.8, "claim: one round connects at least this fraction of barrier "
                            "pairs", range=(0, 1)),
    "bend_draws": Param(4, "claim near_linear: random bends of each bypassed path (same "
                        "distances, random direction)", range=(1, None)),
    "check_points": Param(1000, "points per segment of the dense re-measurement of every "
                          "final path", range=(2, None)),
    "tv_sweep_weights": Param([2.5e-7, 2.5e-5, 2.5e-4, 2.5e-3], "smoothness weights of A "
                              "compared (the first is the paper's)", range=(0, None)),
    "tv_sweep_steps": Param(512, "maximum Adam steps of that comparison", range=(1, None)),
    "tv_sweep_pairs_per_class": Param(2, "synthetic pairs per class in that comparison",
                                      range=(1, None)),
    "image_folder": Param(None, "torchvision models only: folder with one sub-folder of images "
                          "per class", nullable=True),
    "image_size": Param(224, "torchvision models only: input side", range=(32, 1024)),
    "pretrained": Param(True, "torchvision models only: ImageNet weights"),
}, checks=[seeds_given, connect_tol_within_tol, imagenet_needs_folder])

#: the claims chapter 01 expects to reproduce at its scale (``one_round`` is reported only)
EXPECTED = ["real_connected", "interpolated_connected", "real_synthetic_connected",
            "synthetic_connected", "near_linear"]


@dataclass
class PairSet:
    """Pairs of inputs ``a[i], c[i]`` of class ``targets[i]`` (pixel space, CPU)."""

    a: torch.Tensor
    c: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        _check_pairs(self.a, self.c, self.targets)

    def __len__(self) -> int:
        return len(self.targets)


def predict_labels(model: nn.Module, x: torch.Tensor,
                   batch_size: int | None = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Predicted classes of ``x`` (CPU result): the argmax of
    :func:`mcutils.training.predict` (the machine's speed plan; ``batch_size=None``: the
    plan's); the model's mode, device and layout are restored."""
    if len(x) == 0:
        return torch.empty(0, dtype=torch.long)
    return predict(model, x, batch_size).argmax(1)


def make_pair_sets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pairs_per_class: int,
                   other_pairs_per_class: int, seeds: Sequence[int] = (0,),
                   synth: Mapping | None = None,
                   interp_range: tuple[float, float] = (0.25, 0.75)
                   ) -> tuple[dict[tuple[int, str], PairSet], dict[int, SyntheticPairs]]:
    """The four kinds of same-class pairs of chapter 01, for each sampling seed.

    * ``real-real``: two distinct inputs of ``x`` with the same label
      (``pairs_per_class`` per class);
    * ``real-interpolated``: a real input and an *interpolated* one, a point at a random
      ``t`` in ``interp_range`` on the straight path between two other real inputs of
      the class (kept when the model predicts the class there);
    * ``real-synthetic``: a real input and a synthetic one (either input of a synthetic
      pair);
    * ``synthetic-synthetic``: the pairs of :func:`~mcutils.inputspace.synthetic_pairs` (``A`` made with the
      smoothness penalty, ``C`` without, as in the paper's code).

    The last three have ``other_pairs_per_class`` pairs per class. Synthetic inputs the
    model does not assign to their class are dropped.

    Args:
        model: the classifier.
        x, y: real inputs (pixel space) that the model classifies correctly, and labels.
        pairs_per_class, other_pairs_per_class: pairs per class and seed.
        seeds: one draw per seed (pairs, interpolation points, synthesis noise).
        synth: keyword arguments for :func:`~mcutils.inputspace.synthetic_pairs` (default: the paper's).
        interp_range: range of ``t`` for interpolated inputs.

    Returns:
        ``(sets, synthetic)``: ``{(seed, kind): PairSet}`` (kinds :data:`KINDS`) and
        ``{seed: SyntheticPairs}`` (for their losses and steps).
    """
    if len(x) != len(y) or len(x) < 2:
        raise ParameterError("x and y must hold at least two inputs, one label each")
    for name, v in (("pairs_per_class", pairs_per_class),
                    ("other_pairs_per_class", other_pairs_per_class)):
        if not isinstance(v, int) or v < 1:
            raise ParameterError(f"{name}={v!r} must be a positive integer")
    if not len(seeds):
        raise ParameterError("seeds must name at least one seed")
    sets: dict[tuple[int, str], PairSet] = {}
    made: dict[int, SyntheticPairs] = {}
    classes = torch.tensor(sorted(y.unique().tolist()))
    for seed in seeds:
        i, j = class_pairs(y, pairs_per_class, seed=seed)
        sets[seed, "real-real"] = PairSet(x[i], x[j], y[i])
        i2, j2 = class_pairs(y, other_pairs_per_class, seed=seed + 10_007)
        gen = torch.Generator().manual_seed(seed)
        x_int, _ = interpolated_inputs(x[i2], x[j2], *interp_range, generator=gen)
        y_int = y[i2]
        keep = predict_labels(model, x_int) == y_int
        x_int, y_int = x_int[keep], y_int[keep]
        ia, ib = matched_pairs(y, y_int, other_pairs_per_class, seed=seed + 20_011)
        sets[seed, "real-interpolated"] = PairSet(x[ia], x_int[ib], y[ia])
        targets = classes.repeat_interleave(other_pairs_per_class)
        syn = synthetic_pairs(model, targets, tuple(x.shape[1:]),
                              generator=torch.Generator().manual_seed(seed + 30_013),
                              **(synth or {}))
        made[seed] = syn
        ok_a = predict_labels(model, syn.a) == syn.targets
        ok_c = predict_labels(model, syn.c) == syn.targets
        x_syn = torch.cat([syn.a[ok_a], syn.c[ok_c]])
        y_syn = torch.cat([syn.targets[ok_a], syn.targets[ok_c]])
        ic, id_ = matched_pairs(y, y_syn, other_pairs_per_class, seed=seed + 40_009)
        sets[seed, "real-synthetic"] = PairSet(x[ic], x_syn[id_], y[ic])
        both = ok_a & ok_c
        sets[seed, "synthetic-synthetic"] = PairSet(syn.a[both], syn.c[both], syn.targets[both])
    return sets, made


def merge_sets(sets: Mapping[Hashable, PairSet], kind: str) -> PairSet:
    """All pairs of one kind, concatenated over the seeds of ``{(seed, kind): PairSet}``."""
    parts = [ps for key, ps in sets.items() if key[-1] == kind]
    if not parts:
        raise ParameterError(f"no pair set of kind {kind!r}")
    return PairSet(torch.cat([p.a for p in parts]), torch.cat([p.c for p in parts]),
                   torch.cat([p.targets for p in parts]))


def synthesis_summary(made: Mapping[Any, SyntheticPairs], model: nn.Module, stop_loss: float,
                      seed: int = 0) -> dict[str, Any]:
    """What the synthesis reached: the fraction of inputs below ``stop_loss``, the median and
    largest number of steps, the largest class loss, the fraction of pixels outside
    ``[0, 1]``, and the median ratio of the total variations of ``A`` and ``C`` (summed,
    in the model's normalised units, the penalty's own measure) with a bootstrap interval
    over pairs (below 1: the penalty made ``A`` smoother).
    """
    from mcutils.inputspace.synthesis import input_normalization, total_variation

    if not made:
        raise ParameterError("no synthetic pairs to summarise")
    mean, std = input_normalization(model)
    steps = torch.cat([torch.cat([p.steps_a, p.steps_c]) for p in made.values()]).float()
    loss = torch.cat([torch.cat([p.loss_a, p.loss_c]) for p in made.values()])
    x = torch.cat([torch.cat([p.a, p.c]) for p in made.values()])
    tv_a = torch.cat([total_variation((p.a - mean) / std, "sum") for p in made.values()])
    tv_c = torch.cat([total_variation((p.c - mean) / std, "sum") for p in made.values()])
    ratio = stats.bootstrap_ci((tv_a / tv_c.clamp_min(1e-12)).numpy(), np.median, seed=seed)
    return dict(inputs=len(loss), reached=float((loss < stop_loss).float().mean()),
                steps_median=int(steps.median()), steps_max=int(steps.max()),
                loss_max=float(loss.max()), loss_median=float(loss.median()),
                outside=float(((x < 0) | (x > 1)).float().mean()), tv_ratio=ratio)


def split_result(res: ConnectResult, sizes: Sequence[int], tol: float) -> list[ConnectResult]:
    """Split the result of one :func:`~mcutils.inputspace.connect` call over concatenated pair sets.

    ``sizes`` are the numbers of pairs of the consecutive sets. ``forward_passes`` and
    ``bypass_history`` describe the whole call and are kept only in the first part;
    ``first_bypass`` is restricted to each part's pairs (re-indexed).
    """
    if sum(sizes) != len(res.vertices):
        raise ParameterError(f"sizes add up to {sum(sizes)}, the result has "
                             f"{len(res.vertices)} pairs")
    out, lo = [], 0
    for k, n in enumerate(sizes):
        sl = slice(lo, lo + n)
        by_round = [b[sl] for b in res.barriers_by_round]
        first = None
        if res.first_bypass is not None:
            owner, bp, bn = res.first_bypass
            sel = (owner >= lo) & (owner < lo + n)
            if sel.any():
                first = (owner[sel] - lo, bp[sel], bn[sel])
        out.append(ConnectResult(
            vertices=res.vertices[sl],
            profile=None if res.profile is None else res.profile[sl],
            barriers=res.barriers[sl], connected=res.connected[sl],
            connected_by_round=[((b < tol) | (b == 0)).float().mean().item() if n else math.nan
                                for b in by_round],
            rounds_needed=res.rounds_needed[sl], linear_barriers=res.linear_barriers[sl],
            first_bypass=first, forward_passes=res.forward_passes if k == 0 else 0,
            bypass_history=list(res.bypass_history) if k == 0 else [],
            barriers_by_round=by_round))
        lo += n
    return out


def connect_sets(model: nn.Module, sets: Mapping[Hashable, PairSet], tol: float,
                 **connect_kw: Any) -> dict[Hashable, ConnectResult]:
    """:func:`~mcutils.inputspace.connect` on several pair sets at once (one batch per round), split by set.

    Pairs never interact, so this equals connecting each set alone, with fewer and
    larger batches. Empty sets get no entry.

    Args:
        model: the classifier.
        sets: key (e.g. ``(seed, kind)``) -> :class:`PairSet`.
        tol: the tolerance of :func:`~mcutils.inputspace.connect`.
        **connect_kw: the other arguments of :func:`~mcutils.inputspace.connect`.
    """
    keys = [k for k, s in sets.items() if len(s)]
    if not keys:
        return {}
    a = torch.cat([sets[k].a for k in keys])
    c = torch.cat([sets[k].c for k in keys])
    t = torch.cat([sets[k].targets for k in keys])
    res = connect(model, a, c, t, tol=tol, **connect_kw)
    parts = split_result(res, [len(sets[k]) for k in keys], tol)
    return dict(zip(keys, parts))


def round_columns(table: pd.DataFrame) -> list[str]:
    """The ``round_r`` columns of a pair table, in round order."""
    cols = [c for c in table.columns if c.startswith("round_") and c[6:].isdigit()]
    return sorted(cols, key=lambda c: int(c[6:]))


def pair_table(results: Mapping[Hashable, ConnectResult], sets: Mapping[Hashable, PairSet],
               key_names: Sequence[str]) -> pd.DataFrame:
    """One row per pair: its keys, class, barrier after every round and path geometry.

    Columns: the ``key_names`` (from the tuple keys of ``results``), ``pair``,
    ``target``, ``round_0`` ... ``round_R`` (barriers), ``rounds_needed``,
    ``vertices`` (number of path vertices), ``rel_length`` (path length / ``|C - A|``),
    ``chord_deviation`` (largest distance of a vertex from the chord / ``|C - A|``) and
    ``detour_angle`` (degrees).
    """
    frames = []
    for key, res in results.items():
        key_t = key if isinstance(key, tuple) else (key,)
        if len(key_t) != len(key_names):
            raise ParameterError(f"key {key!r} does not match key_names {list(key_names)}")
        n = len(res.vertices)
        row: dict[str, Any] = {name: [v] * n for name, v in zip(key_names, key_t)}
        row["pair"] = list(range(n))
        row["target"] = sets[key].targets.tolist()
        for r, b in enumerate(res.barriers_by_round):
            row[f"round_{r}"] = b.tolist()
        row["rounds_needed"] = res.rounds_needed.tolist()
        row["vertices"] = [len(v) for v in res.vertices]
        row["rel_length"] = relative_path_length(res.vertices).tolist()
        row["chord_deviation"] = chord_deviation(res.vertices).tolist()
        row["detour_angle"] = detour_angle(res.vertices).tolist()
        frames.append(pd.DataFrame(row))
    if not frames:
        return pd.DataFrame(columns=[*key_names, "pair", "target", "round_0"])
    return pd.concat(frames, ignore_index=True)


def connected_flags(table: pd.DataFrame, tol: float, column: str | None = None) -> np.ndarray:
    """``1.0`` where a pair's barrier (``column``, default the last round) is below ``tol``
    or exactly 0, else ``0.0``."""
    col = column or round_columns(table)[-1]
    b = table[col].to_numpy(dtype=float)
    return ((b < tol) | (b == 0)).astype(float)


def tolerance_curve(table: pd.DataFrame, tolerances: Sequence[float], by: str | Sequence[str] = "kind",
                    n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """Connected fraction against the tolerance and the round, per group, with intervals.

    Args:
        table: a :func:`pair_table`.
        tolerances: the tolerances (nats).
        by: grouping column(s).
        n_boot, seed: unused (kept for callers); the intervals are exact
            (Clopper-Pearson) binomial intervals over pairs.

    Returns:
        Rows ``(*by, round, tol, estimate, lo, hi, n)``.
    """
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, sub in table.groupby(by, sort=False):
        key_t = key if isinstance(key, tuple) else (key,)
        for r, col in enumerate(round_columns(sub)):
            for tol in tolerances:
                iv = stats.fraction_interval(connected_flags(sub, tol, col))
                rows.append({**dict(zip(by, key_t)), "round": r, "tol": float(tol),
                             "estimate": iv["estimate"], "lo": iv["ci"][0], "hi": iv["ci"][1],
                             "n": iv["n"]})
    return pd.DataFrame(rows)


def kind_summary(table: pd.DataFrame, tol: float, by: str | Sequence[str] = "kind",
                 seed: int = 0) -> pd.DataFrame:
    """Per group: pairs, median straight-path barrier, the fraction with a straight-path
    barrier of at least ``tol`` and the fraction connected after the last round (each
    with an exact binomial interval over pairs), and the connected fraction after each
    round. ``seed`` is unused (kept for callers)."""
    by = [by] if isinstance(by, str) else list(by)
    rounds = round_columns(table)
    rows = []
    for key, sub in table.groupby(by, sort=False):
        key_t = key if isinstance(key, tuple) else (key,)
        bar = 1.0 - connected_flags(sub, tol, rounds[0])
        fin = connected_flags(sub, tol, rounds[-1])
        ib = stats.fraction_interval(bar)
        ic = stats.fraction_interval(fin)
        row = {**dict(zip(by, key_t)), "pairs": len(sub),
               "median_linear_barrier": float(sub[rounds[0]].median()),
               "barrier_frac": ib["estimate"], "barrier_frac_ci": ib["ci"],
               "connected": ic["estimate"], "connected_ci": ic["ci"]}
        for r, col in enumerate(rounds):
            row[f"connected_round_{r}"] = float(connected_flags(sub, tol, col).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def two_sample_ci(a: Any, b: Any, statistic: Any = np.median, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Bootstrap interval of ``statistic(a) - statistic(b)`` for two *independent*
    samples (each resampled on its own); ``n`` is the smaller sample size.

    :func:`mcutils.core.stats.paired_difference_ci` is the version for paired samples.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        raise ParameterError("two_sample_ci needs two non-empty samples")
    rng = np.random.default_rng(seed)
    reps = np.array([statistic(a[rng.integers(0, len(a), len(a))])
                     - statistic(b[rng.integers(0, len(b), len(b))]) for _ in range(n_boot)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return stats.interval(statistic(a) - statistic(b), lo, hi, min(len(a), len(b)))


def effect_word(iv: Mapping[str, Any], up: str = "higher", down: str = "lower",
                same: str = "indistinguishable") -> str:
    """A word for the sign of a difference from its interval: ``up`` when the interval
    lies above 0, ``down`` when below, ``same`` otherwise."""
    lo, hi = iv["ci"]
    if lo > 0:
        return up
    if hi < 0:
        return down
    return same


def _claim(statement: str, paper: str, result: Mapping, threshold: float,
           direction: str, method: str | None = None) -> dict[str, Any]:
    out = dict(statement=statement, paper=paper, result=dict(result), threshold=float(threshold),
               direction=direction)
    if method is not None:
        out["method"] = method
    return out


def fraction_result(flags: Any, units: str = "pairs") -> tuple[dict[str, Any], str]:
    """A fraction of independent 0/1 outcomes with its exact (Clopper-Pearson) interval,
    and the method's name; no outcome gives ``[nan, nan]`` (inconclusive)."""
    flags = np.asarray(flags, dtype=float)
    if not len(flags):
        return stats.interval(math.nan, math.nan, math.nan, 0), "no units"
    return (stats.fraction_interval(flags.astype(int)),
            f"exact binomial (Clopper-Pearson) over {len(flags)} {units}")


def median_result(values: Any, classes: Any, seed: int = 0) -> tuple[dict[str, Any], str]:
    """The median of per-pair values with a hierarchical bootstrap interval (classes,
    then pairs within each drawn class), and the method's name.

    Pairs of one class share its region of input space, so they are resampled as a
    cluster; the sampling seeds only redraw pairs from the same model and test images,
    so they are not a level of their own. ``n`` is the number of pairs.
    """
    values = np.asarray(values, dtype=float)
    if not len(values):
        return stats.interval(math.nan, math.nan, math.nan, 0), "no units"
    classes = np.asarray(classes)
    iv = stats.hierarchical_bootstrap_ci(values, [classes], np.median, seed=seed)
    k = iv["n"]
    iv["n"] = len(values)
    return iv, (f"hierarchical bootstrap (class -> pair) of the median over {len(values)} "
                f"pairs in {k} classes")


#: kind of pair -> (claim id, how the claim names the pairs)
CLAIM_KINDS = {"real-real": ("real_connected", "same-class real pairs"),
               "real-interpolated": ("interpolated_connected", "real-interpolated pairs"),
               "real-synthetic": ("real_synthetic_connected", "real-synthetic pairs"),
               "synthetic-synthetic": ("synthetic_connected",
                                       "synthetic pairs (A smoothed, C not)")}

#: claim id -> where the paper says it
PAPER = {
    "real_connected": "ImageNet/GoogLeNet: same-class images generally connected (sec. 4.1)",
    "interpolated_connected": "real, interpolated and synthetic inputs alike (sec. 4.1, app. A)",
    "real_synthetic_connected": "real, interpolated and synthetic inputs alike (sec. 4.1, app. A)",
    "synthetic_connected": "synthetic inputs connected (app. A, sec. 4.3)",
    "one_round": "Figs. 1-3: one bypass point B' in the hyperplane orthogonal to C - A suffices",
    "near_linear": "trained models: 'only a small deviation from a linear path' (abstract; no "
                   "number)",
}


def connectivity_claims(table: pd.DataFrame, tol: float, claim_frac: float = 0.95,
                        one_round_frac: float = 0.8, bends: pd.DataFrame | None = None,
                        seed: int = 0) -> dict[str, dict[str, Any]]:
    """The claims of chapter 01 from its pair table (column ``kind``), with intervals.

    * ``real_connected``, ``interpolated_connected``, ``real_synthetic_connected``,
      ``synthetic_connected``: the fraction of pairs of each kind connected after the
      last round is at least ``claim_frac`` (exact binomial interval over pairs,
      :func:`fraction_result`); with a column ``dense`` (the final paths re-measured on a
      dense grid, :func:`~mcutils.chapters.ch01_input_space_checks.dense_barriers`) a
      pair is connected when both measurements say so;
    * ``one_round``: of the real pairs with a straight-path barrier of at least ``tol``,
      the fraction connected after one round is at least ``one_round_frac`` (exact);
    * ``near_linear`` (with ``bends``, the random bends of the bypassed real pairs,
      :func:`~mcutils.chapters.ch01_input_space_checks.bend_barriers`): the bypass bends a
      path only as far as a targeted move needs, so the same bend in a random direction
      keeps a barrier: the median barrier of the random bends is above ``tol``
      (hierarchical bootstrap over classes and pairs, :func:`median_result`).

    :mod:`mcutils.chapters.ch01_input_space_controls` runs the same checks on planted
    pairs where they are false by construction.

    Returns:
        ``{claim_id: {"statement", "paper", "result", "threshold", "direction", "method"}}``,
        the arguments of :meth:`mcutils.core.report.ChapterReport.claim`. A claim without
        any unit gets the interval ``[nan, nan]`` (inconclusive).
    """
    rounds = round_columns(table)
    out: dict[str, dict[str, Any]] = {}
    dense = "dense" in table.columns
    for kind, (cid, label) in CLAIM_KINDS.items():
        sub = table[table["kind"] == kind]
        flags = connected_flags(sub, tol) if len(sub) else []
        if dense and len(sub):
            flags = flags * (sub["dense"].to_numpy(float) < tol)
        iv, method = fraction_result(flags)
        out[cid] = _claim(f"{label}: fraction connected (barrier < {tol:g} nats"
                          f"{', also on the dense grid' if dense else ''}) within "
                          f"{len(rounds) - 1} rounds >= {claim_frac:g}", PAPER[cid], iv,
                          claim_frac, ">=", method)
    real = table[table["kind"] == "real-real"]
    iv, method = fraction_result(one_round_flags(real, tol), "pairs with a straight-path barrier")
    out["one_round"] = _claim(
        f"one bypass round connects real pairs with a straight-path barrier >= {tol:g}: "
        f"fraction >= {one_round_frac:g}", PAPER["one_round"], iv, one_round_frac, ">=", method)
    if bends is not None:
        iv, method = median_result(bends["null"] if len(bends) else [],
                                   bends["target"] if len(bends) else [], seed=seed)
        out["near_linear"] = _claim(
            f"bypassed real paths are nearly straight: bent by the same distances in a random "
            f"direction they keep a barrier (median barrier of the random bends > {tol:g} "
            f"nats)", PAPER["near_linear"], iv, tol, ">", method)
    return out


def one_round_flags(table: pd.DataFrame, tol: float) -> np.ndarray:
    """Of the pairs of ``table`` whose straight path has a barrier of at least ``tol``:
    ``1.0`` where one bypass round connected them, else ``0.0``."""
    if not len(table):
        return np.zeros(0)
    rounds = round_columns(table)
    had = table[connected_flags(table, tol, rounds[0]) == 0]
    if not len(had):
        return np.zeros(0)
    return connected_flags(had, tol, rounds[min(1, len(rounds) - 1)])


def claim_verdicts(claims: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The verdict of each claim spec (as :meth:`ChapterReport.claim` would compute it)."""
    from mcutils.core.report import verdict

    return {cid: verdict(c["result"]["ci"], c["threshold"], c["direction"])
            for cid, c in claims.items()}


def bypassed(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`pair_table` whose pair needed a bypass (connected or not) and
    whose path has a bypass point."""
    return table[(table["rounds_needed"] != 0) & (table["vertices"] > 2)]
