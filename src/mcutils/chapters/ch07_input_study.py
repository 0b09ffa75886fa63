"""Chapter 07, input space: learned curves against the greedy bypass on the pairs of
chapters 01 and 04.

* :func:`model_and_images`: the default model (chapter 00's checkpoint) and the test images;
* :func:`same_class_pairs`: chapter 01's real same-class pairs
  (:func:`mcutils.data.loading.class_pairs`) whose straight path has a barrier;
* :func:`adversarial_pairs`: chapter 04's triples (:func:`mcutils.advbarriers.paper_pairs`),
  ``K`` attacked towards ``A``'s class with the paper's attack, the real-to-adversarial
  paths ``A -> K'`` that have a barrier;
* :func:`compare_paths`: for one set of pairs, the straight path, the greedy bypass
  (:func:`mcutils.inputspace.connect` with the paper's settings) and the learned Bezier and
  polychain curves (:func:`mcutils.inputspace.learn_input_curve`), each checked at the same
  dense grid: largest loss, barrier, relative length, chord deviation and passes spent;
* :func:`planted_control`: the learned curve on pairs that no path connects
  (:func:`mcutils.planted.two_ball_pairs`), the negative control of the connection claims;
* :func:`plot_profiles`: the loss along the path for the four kinds of path.

Used by chapter 07 (:mod:`mcutils.chapters.ch07_learned_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.core.checks import ParameterError

__all__ = ["PATH_KINDS", "PairSet", "PathComparison", "adversarial_pairs", "compare_paths",
           "model_and_images", "planted_control", "plot_profiles", "same_class_pairs"]

#: The four kinds of path, in the order of the figures and tables.
PATH_KINDS = ("straight", "bypass", "bezier", "polychain")


@dataclass
class PairSet:
    """Pairs ``a[i] -> c[i]`` of class ``targets[i]`` (pixel space, CPU) and the barrier of
    their straight paths on the chapter's grid."""

    a: torch.Tensor
    c: torch.Tensor
    targets: torch.Tensor
    straight_barrier: torch.Tensor
    drawn: int

    def __len__(self) -> int:
        return len(self.targets)


def model_and_images(params: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    """The default model (cached by :func:`mcutils.zoo.trained_model`; trained as chapter
    06's regular end, :func:`mcutils.chapters.ch06_ends.regular_training`, so the gpu
    profile's SGD end serves both studies) in eval mode on the chapter's device, and the
    test split."""
    from mcutils import data, zoo
    from mcutils.chapters.ch06_ends import regular_training
    from mcutils.core.runtime import get_device

    p = params
    net = zoo.trained_model(dataset=p["dataset"], model=p["model"], epochs=p["num_epochs"],
                            lr=p["lr"], batch_size=p["batch_size"],
                            train_subset=p["train_subset"], seed=p["seed"], device=p["device"],
                            **regular_training(p))
    return net.to(get_device(p["device"])).eval(), data.load_dataset(p["dataset"], "test")


def _with_barrier(net: nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                  tol: float, num_points: int, max_pairs: int) -> PairSet:
    from mcutils.inputspace import barrier, loss_profiles

    straight = barrier(loss_profiles(net, a, c, targets, num_points=num_points))
    keep = (straight >= tol).nonzero().flatten()[:max_pairs]
    return PairSet(a[keep], c[keep], targets[keep], straight[keep], len(targets))


def same_class_pairs(net: nn.Module, test: Any, params: Mapping[str, Any]) -> PairSet:
    """Chapter 01's real-real pairs (``pairs_per_class`` per class, drawn with ``seed``
    among the first ``num_test`` test images the model classifies correctly) whose
    straight path has a barrier of at least ``tol`` on ``num_points`` points; at most
    ``max_pairs`` of them, in the order drawn."""
    from mcutils.chapters.ch01_input_space import predict_labels
    from mcutils.data.loading import class_pairs

    p = params
    x, y = test.x[:p["num_test"]], test.y[:p["num_test"]]
    ok = (predict_labels(net, x) == y).nonzero().flatten()
    x, y = x[ok], y[ok]
    i, j = class_pairs(y, p["pairs_per_class"], seed=p["seed"])
    return _with_barrier(net, x[i], x[j], y[i], p["tol"], p["num_points"], p["max_pairs"])


def adversarial_pairs(net: nn.Module, test: Any, params: Mapping[str, Any]) -> PairSet:
    """Chapter 04's triples (its seven pairs per class, drawn with ``seed`` from the test
    split), the first ``adv_pairs_per_class`` of each class: ``K`` is attacked towards the
    class of ``A`` with the paper's attack (:data:`mcutils.advbarriers.PAPER_ATTACK`, its
    steps and learning rate from the parameters) until its loss matches ``A``'s; the
    successful ``A -> K'`` paths with a barrier of at least ``tol`` (at most
    ``max_pairs``)."""
    from mcutils import advbarriers

    p = params
    pairs = advbarriers.paper_pairs(test.x, test.y, 7, seed=p["seed"])
    pairs = pairs.select((pairs.pair < p["adv_pairs_per_class"]).nonzero().flatten())
    attack = dict(steps=p["attack_steps"], lr=p["attack_lr"])
    df, k_adv = advbarriers.paired_barriers(net, pairs, num_points=2, attack=attack,
                                            return_adversarial=True)
    success = torch.as_tensor(df.loc[df.kind == "adversarial", "success"].to_numpy(bool))
    rows = success.nonzero().flatten()
    return _with_barrier(net, pairs.a[rows], k_adv[rows], pairs.cls[rows], p["tol"],
                         p["num_points"], p["max_pairs"])


@dataclass
class PathComparison:
    """Every kind of path for one set of pairs.

    Attributes:
        table: one row per pair and kind of path (and budget for the learned curves):
            ``pair, kind, budget, max_loss, barrier, relative_length, chord_deviation,
            passes``; the straight path and the bypass have ``budget`` 0.
        profiles: ``{kind: [pairs, num_points]}`` losses (learned curves at the largest
            budget).
        bypass_rounds: per pair, the bypass points the greedy search placed.
    """

    table: pd.DataFrame
    profiles: dict[str, torch.Tensor]
    bypass_rounds: list[int]


def _rows(kind: str, budget: int, prof: torch.Tensor, geo: Mapping[str, torch.Tensor],
          passes: Sequence[float]) -> list[dict[str, Any]]:
    from mcutils.inputspace import barrier

    gap, top = barrier(prof, "gap"), barrier(prof, "max")
    return [dict(pair=i, kind=kind, budget=budget, max_loss=float(top[i]),
                 barrier=float(gap[i]), relative_length=float(geo["relative_length"][i]),
                 chord_deviation=float(geo["chord_deviation"][i]), passes=float(passes[i]))
            for i in range(len(prof))]


def compare_paths(net: nn.Module, pairs: PairSet, params: Mapping[str, Any],
                  progress: bool = False) -> PathComparison:
    """The straight path, the greedy bypass and the learned curves of ``pairs``.

    The bypass is :func:`mcutils.inputspace.connect` with the paper's bypass
    (:data:`mcutils.inputspace.BYPASS_PAPER`: ``bypass_steps`` Adam steps of learning
    rate ``bypass_lr`` per bypass point, normalised units, no box, no early stop) for up to
    ``max_rounds`` rounds at ``connect_tol``. Each learned curve
    (:func:`mcutils.inputspace.learn_input_curve`) uses the same optimiser, learning rate
    and units, one ``t`` per step and ``max(curve_budgets)`` steps, the same number of
    gradient evaluations as one bypass point; it is also read after every budget of
    ``curve_budgets``. Every path is checked on ``num_points`` points (the bypass at
    evenly spaced arc length, a curve at evenly spaced ``t``).

    Passes: a gradient evaluation of one input counts two (forward and backward), a loss
    evaluation one; the bypass's passes are its barrier searches (shared evenly among
    the pairs) plus ``2 * bypass_steps`` per bypass point; the final dense checks are not
    counted for any path.
    """
    from mcutils.inputspace import (BYPASS_PAPER, connect, curve_geometry, curve_profiles,
                                    learn_input_curve, loss_profiles, path_profiles)
    from mcutils.inputspace.geometry import chord_deviation, relative_path_length

    p = params
    if len(pairs) == 0:
        raise ParameterError("no pairs to compare (no straight path had a barrier)")
    n, pts = len(pairs), p["num_points"]
    rows: list[dict[str, Any]] = []
    straight = loss_profiles(net, pairs.a, pairs.c, pairs.targets, num_points=pts)
    flat = {"relative_length": torch.ones(n), "chord_deviation": torch.zeros(n)}
    rows += _rows("straight", 0, straight, flat, [0.0] * n)
    bypass = dict(BYPASS_PAPER, steps=p["bypass_steps"], lr=p["bypass_lr"])
    res = connect(net, pairs.a, pairs.c, pairs.targets, max_rounds=p["max_rounds"],
                  tol=p["connect_tol"], num_points=None, progress=progress, **bypass)
    prof_b = path_profiles(net, res.vertices, pairs.targets, num_points=pts)
    points = [len(v) - 2 for v in res.vertices]
    passes_b = [res.forward_passes / n + 2 * p["bypass_steps"] * k for k in points]
    geo_b = {"relative_length": relative_path_length(res.vertices),
             "chord_deviation": chord_deviation(res.vertices)}
    rows += _rows("bypass", 0, prof_b, geo_b, passes_b)
    profiles = {"straight": straight, "bypass": prof_b}
    budgets = sorted(p["curve_budgets"])
    for kind in ("bezier", "polychain"):
        curve = learn_input_curve(net, pairs.a, pairs.c, pairs.targets, curve=kind,
                                  num_bends=p["num_bends"], steps=budgets[-1], lr=p["curve_lr"],
                                  space="normalized", box=None, seed=p["seed"],
                                  snapshots=budgets, progress=progress)
        for b in budgets:
            snap = curve.at(b)
            prof = curve_profiles(net, snap, num_points=pts)
            rows += _rows(kind, b, prof, curve_geometry(snap, pts), [snap.passes] * n)
            if b == budgets[-1]:
                profiles[kind] = prof
    return PathComparison(pd.DataFrame(rows), profiles, points)


def planted_control(params: Mapping[str, Any], num_pairs: int = 10) -> pd.DataFrame:
    """The learned Bezier curve, with the chapter's steps, learning rate and grid, on
    pairs whose ends lie in two disjoint class regions (:func:`mcutils.planted.two_ball_pairs`):
    no path connects them, so a connection claim checked here must fail. Rows as
    :attr:`PathComparison.table` (kind ``"bezier"``, the largest budget)."""
    from mcutils import planted
    from mcutils.inputspace import curve_geometry, curve_profiles, learn_input_curve

    p = params
    model, a, c, t = planted.two_ball_pairs(num_pairs, seed=p["seed"])
    steps = max(p["curve_budgets"])
    curve = learn_input_curve(model, a, c, t, curve="bezier", num_bends=p["num_bends"],
                              steps=steps, lr=p["curve_lr"], space="normalized",
                              seed=p["seed"])
    prof = curve_profiles(model, curve, num_points=p["num_points"])
    return pd.DataFrame(_rows("bezier", steps, prof, curve_geometry(curve, p["num_points"]),
                              [curve.passes] * num_pairs))


def summary_table(comparisons: Mapping[str, PathComparison]) -> pd.DataFrame:
    """Medians per pair set and kind of path (learned curves at their largest budget):
    largest loss, barrier, relative length, chord deviation, passes, and the share of
    pairs whose barrier is below the chapter's ``tol`` is left to the claims."""
    frames = []
    for name, comp in comparisons.items():
        t = comp.table
        last = t[(t.budget == 0) | (t.budget == t.budget.max())]
        frames.append(last.assign(pairs=name))
    df = pd.concat(frames, ignore_index=True)
    cols = ["max_loss", "barrier", "relative_length", "chord_deviation", "passes"]
    out = df.groupby(["pairs", "kind"], sort=False)[cols].median()
    return out.reindex(pd.MultiIndex.from_tuples(
        [(n, k) for n in comparisons for k in PATH_KINDS], names=["pairs", "kind"]))


def plot_profiles(comparisons: Mapping[str, PathComparison], labels: Mapping[str, str]):
    """Median loss along the path (with the inter-quartile band over pairs) for the four
    kinds of path, one panel per pair set, all kinds on one axis."""
    import matplotlib.pyplot as plt

    from mcutils import plotting

    fig, axes = plt.subplots(1, len(comparisons), figsize=(plotting.MAX_WIDTH, 3.2),
                             sharey=False, squeeze=False)
    for ax, (name, comp) in zip(axes[0], comparisons.items()):
        for kind in PATH_KINDS:
            prof = comp.profiles[kind].numpy()
            s = np.linspace(0, 1, prof.shape[1])
            med = np.median(prof, axis=0)
            lo, hi = np.percentile(prof, [25, 75], axis=0)
            ax.plot(s, med, label=kind)
            ax.fill_between(s, lo, hi, alpha=0.2)
        ax.set_title(f"{labels.get(name, name)} ({len(comp.bypass_rounds)} pairs)")
        ax.set_xlabel("position on the path (t; arc length for the bypass)")
        ax.set_ylabel("cross-entropy of the class (nats)")
    axes[0][-1].legend(title="path", fontsize="small")
    fig.tight_layout()
    return fig
