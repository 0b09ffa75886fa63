"""Chapter 03's verdicts: intervals that fit each claim's statistic, the negative controls
that show each asserted check can fail, and the chapter's departures from the paper's code.

* :func:`fraction_with_seeds`: the exact (Clopper-Pearson) interval of a fraction of
  pairs, with each seed's fraction where there are at most five seeds;
* :func:`straighter_interval`: the difference of median relative path lengths of two
  groups of pairs, with a hierarchical bootstrap (seed -> class -> pair) of each group;
  :func:`shuffled_groups` relabels the pairs of the two groups at random, its control;
* :func:`planted_table` and :func:`planted_controls`: the chapter's own connectivity and
  barrier checks run on planted classifiers (:mod:`mcutils.planted`) where the claim is
  false by construction: a class region of two disjoint balls (no path connects its
  pairs) and one ball (a convex region: no straight path has a barrier);
* :data:`DEVIATIONS`, :func:`deviation_rows` and :func:`measured_effects`: each setting where the chapter departs
  from the official code of Vrabel et al. (``JVrabel/input_space_mode_connectivity``),
  with the paper's value, its source, ours and the possible effect on the verdicts.

Used by chapter 03.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from mcutils.chapters.ch01_input_space import (PairSet, connect_sets, connected_flags,
                                               pair_table, round_columns)
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.planted import one_ball_pairs, two_ball_pairs

__all__ = ["MAX_SEEDS_SHOWN", "DEVIATIONS", "fraction_with_seeds", "straighter_interval",
           "shuffled_groups", "planted_table", "planted_controls", "deviation_rows",
           "measured_effects"]

#: per-seed values are shown beside an interval over at most this many seeds
MAX_SEEDS_SHOWN = 5


def fraction_with_seeds(flags: Any, seeds: Any) -> dict[str, Any]:
    """The exact (Clopper-Pearson) interval of a fraction of 0/1 ``flags`` (one per pair),
    with ``per_seed`` (each seed's fraction, in seed order) where there are at most
    :data:`MAX_SEEDS_SHOWN` seeds, and ``method``."""
    flags = np.asarray(flags, dtype=float)
    seeds = np.asarray(seeds)
    iv = stats.fraction_interval(flags.astype(int))
    labels = np.unique(seeds)
    iv["method"] = f"exact binomial (Clopper-Pearson) over {len(flags)} pairs"
    if len(labels) <= MAX_SEEDS_SHOWN:
        iv["per_seed"] = [float(flags[seeds == s].mean()) for s in labels]
        iv["method"] += f" of {len(labels)} seed{'s' if len(labels) > 1 else ''} (per seed shown)"
    return iv


def _tree(labels: Sequence[np.ndarray], idx: np.ndarray, depth: int = 0) -> Any:
    if depth == len(labels):
        return idx
    lab = labels[depth][idx]
    return [_tree(labels, idx[lab == g], depth + 1) for g in np.unique(lab)]


def _draw(node: Any, rng: np.random.Generator) -> np.ndarray:
    if isinstance(node, np.ndarray):
        return node[rng.integers(0, len(node), size=len(node))]
    pick = rng.integers(0, len(node), size=len(node))
    return np.concatenate([_draw(node[k], rng) for k in pick])


_LEVEL_NAMES = {"seed": "seed", "target": "class"}


def straighter_interval(a: pd.DataFrame, b: pd.DataFrame, column: str = "rel_length",
                        levels: Sequence[str] = ("seed", "target"), n_boot: int = 2000,
                        level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """``median(a[column]) - median(b[column])`` for two independent groups of pairs, with
    a hierarchical bootstrap of each group on its own: seeds with replacement, then
    classes within each drawn seed, then pairs within each class
    (:func:`mcutils.core.stats.hierarchical_bootstrap_ci`'s scheme, per group).

    Returns:
        ``{"estimate", "ci", "n", "method"}``; ``n`` is the smaller group's number of pairs.
    """
    if len(a) == 0 or len(b) == 0:
        raise ParameterError("straighter_interval needs two non-empty groups of pairs")
    if not 0 < level < 1:
        raise ParameterError(f"level={level!r} must be in (0, 1)")
    va, vb = (g[column].to_numpy(float) for g in (a, b))
    ta, tb = (_tree([g[k].to_numpy() for k in levels], np.arange(len(g))) for g in (a, b))
    rng = np.random.default_rng(seed)
    reps = np.array([np.median(va[_draw(ta, rng)]) - np.median(vb[_draw(tb, rng)])
                     for _ in range(n_boot)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    iv = stats.interval(np.median(va) - np.median(vb), lo, hi, min(len(a), len(b)))
    names = " -> ".join(_LEVEL_NAMES.get(k, k) for k in levels)
    iv["method"] = (f"hierarchical bootstrap ({names} -> pair), each group resampled on its "
                    f"own; {len(a)} and {len(b)} pairs")
    return iv


def shuffled_groups(a: pd.DataFrame, b: pd.DataFrame, column: str = "rel_length",
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of ``a`` and ``b`` whose ``column`` values are shuffled across the two groups
    (every row keeps its seed and class labels): the groups are then exchangeable, so a
    difference between them is absent by construction."""
    values = np.concatenate([a[column].to_numpy(float), b[column].to_numpy(float)])
    values = values[np.random.default_rng(seed).permutation(len(values))]
    return (a.assign(**{column: values[:len(a)]}), b.assign(**{column: values[len(a):]}))


def planted_table(model: torch.nn.Module, a: torch.Tensor, c: torch.Tensor,
                  targets: torch.Tensor, connect_kw: Mapping[str, Any],
                  connect_tol: float) -> pd.DataFrame:
    """The chapter's pipeline on a planted classifier: :func:`~mcutils.inputspace.connect`
    with ``connect_kw`` at ``connect_tol`` (as :func:`~mcutils.chapters.ch03_untrained.untrained_study`
    runs it), as a :func:`~mcutils.chapters.ch01_input_space.pair_table` (seed 0)."""
    sets = {(0, "planted"): PairSet(a, c, targets)}
    res = connect_sets(model, sets, tol=connect_tol, **connect_kw)
    return pair_table(res, sets, ["seed", "kind"])


def planted_controls(connect_kw: Mapping[str, Any], connect_tol: float, tol: float,
                     tolerances: Sequence[float], num_connected: int, num_barrier: int,
                     seed: int = 0) -> dict[str, Any]:
    """The negative controls of the chapter's connectivity and barrier claims.

    * ``connected``: ``num_connected`` pairs with one end in each of two disjoint balls
      (:func:`~mcutils.planted.two_ball_pairs`), connected by the chapter's bypass
      rounds: the fraction connected at ``tol``, with its exact interval, and the
      largest fraction at any of ``tolerances`` (``connected_any_tol``);
    * ``barrier``: ``num_barrier`` pairs inside one ball
      (:func:`~mcutils.planted.one_ball_pairs`): the fraction whose straight path has a
      barrier of at least ``tol``.

    Each control is ``{"statement", "result"}``, as :meth:`ChapterReport.claim` takes it.
    """
    model, a, c, t = two_ball_pairs(num_connected, seed)
    two = planted_table(model, a, c, t, connect_kw, connect_tol)
    model, a, c, t = one_ball_pairs(num_barrier, seed)
    one = planted_table(model, a, c, t, dict(connect_kw, max_rounds=0), connect_tol)
    has = 1.0 - connected_flags(one, tol, round_columns(one)[0])
    return dict(
        connected=dict(statement=f"the same bypass rounds on {num_connected} pairs of a planted "
                                 "classifier whose class region is two disjoint balls, one end "
                                 "in each: no path can connect them",
                       result=fraction_with_seeds(connected_flags(two, tol), two["seed"])),
        connected_any_tol=max(float(connected_flags(two, t).mean()) for t in tolerances),
        barrier=dict(statement=f"the same straight-path check on {num_barrier} pairs inside one "
                               "ball of a planted classifier: a convex class region, whose "
                               "straight paths have no barrier",
                     result=fraction_with_seeds(has, one["seed"])))


#: each setting where chapter 03 departs from the paper's code. ``ours`` is formatted with
#: the run's parameters (and ``shape``, ``n_pairs``); a row with ``same_as_paper`` is left
#: out when every parameter named there has the paper's value (the gpu profile restores
#: several of them).
DEVIATIONS: list[dict[str, Any]] = [
    dict(setting="untrained architecture",
         paper="torchvision ResNet-18 (ImageNet stem), random initialisation",
         source="sec4_3_untrained_model.py:52; utils.py:92",
         ours="{model} (the asserted claim); {sweep_model} of width {sweep_widths[0]} (base "
              "cell, not asserted)",
         effect="a different function class: the small CNN's class regions may be easier to "
                "connect than a full ResNet-18's; the narrow ResNet is the closer stand-in"),
    dict(setting="dataset and input shape", paper="CIFAR-10, 3x32x32 normalised inputs",
         source="utils.py:221 (input_shape); utils.py:27-28", ours="{dataset}, {shape}",
         effect="a smaller input space (784 against 3072 dimensions) could connect fewer "
                "pairs, if connectivity grows with the dimension as percolation suggests"),
    dict(setting="pairs per claim",
         paper="one pair per run (class 1, seed 0), shown as loss curves (Fig. 7)",
         source="sec4_3_untrained_model.py:45",
         ours="{n_pairs} pairs ({n_seeds} seeds x {n_classes} classes x {pairs_per_class})",
         effect="none on the example; the fraction, its threshold ({claim_frac:g}) and the "
                "interval are the book's test of a general claim"),
    dict(setting="connected criterion",
         paper="none: the bypassed curves are shown, their axis spans 0.0005 to 0.005 nats",
         source="utils.py plot_three_rounds (secondary panel); paper sec. 4.3",
         ours="highest loss on every segment below the worse endpoint's plus {tol:g} nats; "
              "beside it, an absolute criterion: the whole path below {abs_tol:g} nats",
         effect="a looser tolerance connects more pairs (the sweep measures the effect of "
                "{loose_tol:g} nats on the narrow ResNet)"),
    dict(setting="synthesis learning rate (Adam, normalised units)", paper="0.05",
         source="sec4_3_untrained_model.py:31 (FVO_LR); utils.py feature_visualization",
         ours="{synth_lr:g}", same_as_paper={"synth_lr": 0.05},
         effect="larger steps reach a low class loss sooner but less precisely: fewer "
                "inputs reach the stopping loss, and less confident endpoints change what "
                "a fixed tolerance means"),
    dict(setting="synthesis steps", paper="8192", source="sec4_3_untrained_model.py:32 "
         "(FVO_ITERS)", ours="{synth_steps}", same_as_paper={"synth_steps": 8192},
         effect="less confident endpoints"),
    dict(setting="bypass learning rate (free optimisation)", paper="0.05",
         source="sec4_3_untrained_model.py:39 (OPT_LR); utils.py optimize_point",
         ours="{bypass_lr:g}", same_as_paper={"bypass_lr": 0.05},
         effect="a barrier point optimised with larger steps can overshoot the low-loss "
                "region, leaving more barriers"),
    dict(setting="bypass steps", paper="4096", source="sec4_3_untrained_model.py:40 "
         "(OPT_ITERS)", ours="{bypass_steps}", same_as_paper={"bypass_steps": 4096},
         effect="fewer steps leave barrier points less optimised: fewer pairs connected"),
    dict(setting="variant: the book's earlier fast settings (not the claims')",
         paper="learning rate 0.05; 8192 synthesis and 4096 bypass steps",
         source="sec4_3_untrained_model.py:31-32, :39-40",
         ours="learning rate {fast_lr:g} with {fast_steps} steps for both, on the same "
              "networks, classes and noise",
         effect="shows what the earlier cpu profile's verdict rested on"),
    dict(setting="step budget (budget curve, not the claims')",
         paper="8192 synthesis and 4096 bypass steps",
         source="sec4_3_untrained_model.py:32, :40",
         ours="{synth_steps} / {bypass_steps} times each of {budget_factors}; the claims are "
              "read at the largest",
         effect="says whether the connected fraction has settled at the paper's budget"),
    dict(setting="which segments round 2 bypasses",
         paper="the highest point of both segments, whatever their barrier",
         source="sec4_3_untrained_model.py:113-114 (bypass_seg on A-B' and B'-C)",
         ours="only segments with a barrier of at least {connect_tol:g} nats, up to "
              "{max_rounds} rounds",
         same_as_paper={"bypass_all": True},
         effect="none at tolerances of at least {connect_tol:g} nats: a segment left alone "
                "is already flat there"),
    dict(setting="barrier point on a segment",
         paper="argmax of a 200-point grid",
         source="sec4_3_untrained_model.py:79, :100 (np.argmax over N = 200 points, :45)",
         ours="adaptive search: 17 coarse points, then refinement around the highest peaks; "
              "final paths checked on {check_points} points per segment",
         effect="a barrier narrower than the coarse spacing can be missed, which would "
                "overstate connectivity"),
    dict(setting="trained reference",
         paper="trained ResNet-18 (CIFAR-10) and GoogLeNet (ImageNet)",
         source="utils.py:75 (load_resnet18_cifar10); paper sec. 4.1",
         ours="{model} trained {num_epochs} epochs on {dataset} (chapter 00's checkpoint)",
         effect="a briefly trained small network may have fewer barriers, which makes its "
                "paths look straighter"),
    dict(setting="evolution: synthesis per checkpoint",
         paper="4096 steps at learning rate 0.05, stopping at 0.005 nats",
         source="appF1_barrier_evolution.py:37-40 (fvo_input)",
         ours="{track_synth_steps} steps at {track_synth_lr:g}, stopping at "
              "{track_synth_stop_loss:g} (the paper's 4096 steps at 0.05, at every checkpoint "
              "of every run, would cost more than the rest of the chapter)",
         same_as_paper={"track_synth_steps": 4096, "track_synth_lr": 0.05,
                        "track_synth_stop_loss": 0.005},
         effect="less confident pairs after training starts; not a claim (no verdict)"),
    dict(setting="evolution: checkpoints and pairs",
         paper="every batch for 30 batches; one training run, 5 pairs per class",
         source="appF1_barrier_evolution.py:260 (PRESETS full), :334-336",
         ours="every {track_every} batches for {track_batches}; {n_seeds} runs, "
              "{pairs_per_class} pair(s) per class",
         effect="coarser curves, but runs that vary the initialisation; not a claim"),
    dict(setting="evolution: training data",
         paper="CIFAR-10 with random flips and crops, batches of 512, Adam 0.001",
         source="appF1_barrier_evolution.py:281-290; :264 (run defaults)",
         ours="{dataset} without augmentation, batches of {track_batch_size}, "
              "Adam {track_lr:g}",
         effect="none expected on the first 30 batches' trend; not a claim"),
]


def deviation_rows(params: Mapping[str, Any], shape: Sequence[int], n_pairs: int,
                   n_classes: int, measured: Mapping[str, str] | None = None
                   ) -> list[dict[str, str]]:
    """:data:`DEVIATIONS` for this run: ``ours`` and ``effect`` formatted with the
    parameters, rows whose parameter equals the paper's value left out, and
    ``measured`` filled from ``measured`` (setting -> text) where given."""
    values = dict(params, shape="x".join(str(s) for s in shape), n_pairs=n_pairs,
                  n_seeds=len(params["seeds"]), n_classes=n_classes,
                  loose_tol=max(params["tolerances"]))
    rows = []
    for row in DEVIATIONS:
        same = row.get("same_as_paper")
        if same and all(params[k] == v for k, v in same.items()):
            continue
        out = {k: str(row[k]).format(**values) for k in ("setting", "paper", "source", "ours",
                                                          "effect")}
        if measured and row["setting"] in measured:
            out["measured"] = measured[row["setting"]]
        rows.append(out)
    return rows


#: factor of :func:`~mcutils.chapters.ch03_sweep.factor_effects` -> the deviation it measures
_MEASURES = {"step_factor": ("synthesis steps", "bypass steps"),
             "tolerance": ("connected criterion",)}


def _iv(iv: Mapping[str, Any], signed: bool = False) -> str:
    est = f"{iv['estimate']:+.2f}" if signed else f"{iv['estimate']:.2f}"
    return f"{est} [{iv['ci'][0]:.2f}, {iv['ci'][1]:.2f}]"


def measured_effects(effects: pd.DataFrame, variant: Mapping[str, Any] | None = None,
                     steps: pd.DataFrame | None = None, dense: Mapping[str, Any] | None = None
                     ) -> dict[str, str]:
    """The measured effects as the ``measured`` text of the deviations they bear on
    (setting -> text): the sweep's (:func:`~mcutils.chapters.ch03_sweep.factor_effects`),
    the fast variant's (:func:`~mcutils.chapters.ch03_findings.variant_effect`), the budget
    curve's step effect under both criteria
    (:func:`~mcutils.chapters.ch03_findings.step_effects`, indexed by criterion) and the
    dense check (:func:`~mcutils.chapters.ch03_findings.dense_check`)."""
    out = {}
    for row in effects.itertuples():
        text = (f"narrow ResNet, {row.change}: {row.effect} the connected fraction "
                f"({row.estimate:+.2f} [{row.lo:.2f}, {row.hi:.2f}], paired bootstrap over "
                f"{row.n} matched pairs)")
        out.update({setting: text for setting in _MEASURES.get(row.factor, ())})
    if variant is not None:
        out["variant: the book's earlier fast settings (not the claims')"] = (
            f"connected {_iv(variant['fast'])} against {_iv(variant['paper'])} at the paper's "
            f"settings; paired difference {_iv(variant['difference'], True)}")
    if steps is not None:
        gap, ab = steps.loc["gap", "effect"], steps.loc["absolute", "effect"]
        out["step budget (budget curve, not the claims')"] = (
            f"smallest to largest budget: {_iv(gap, True)} under the gap criterion, "
            f"{_iv(ab, True)} under the absolute one (paired bootstrap over {gap['n']} pairs)")
    if dense is not None:
        out["barrier point on a segment"] = (
            f"barriers the search missed on the final paths: {_iv(dense['missed'])} "
            f"(exact interval over {dense['missed']['n']} pairs)")
    return out
