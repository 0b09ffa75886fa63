"""Chapter 01's checks of its own measurements and of its claims' scale.

* :func:`dense_barriers`, :func:`finder_missed`: every final path re-measured on a grid of
  1,000 points per segment (:func:`~mcutils.inputspace.path_barriers`, the paper's
  resolution), and the fraction of paths the adaptive barrier search called connected
  that the dense grid does not;
* :func:`path_finder_barriers`, :func:`bend_barriers`, :func:`bend_claim`: the null of
  "nearly straight": each bypassed path bent by the same distances in a random direction
  (:func:`~mcutils.inputspace.random_bend`), and the barrier such a bend leaves;
* :func:`two_ball_tolerances`: the chapter's connectivity run on a planted class region of
  two disjoint balls at every tolerance the chapter uses;
* :func:`need_bypass_table`: the bypass statistics of the pairs whose straight path has
  a barrier;
* :func:`smoothness_sweep`: whether the smoothness penalty makes ``A`` smoother than
  ``C``, at the paper's weight and at larger ones.

Tested in ``tests/test_ch01_checks.py``. Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import planted
from mcutils.chapters.ch01_input_space import (PairSet, bypassed, connect_sets, connected_flags,
                                               fraction_result, median_result, round_columns)
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.inputspace.bypass import ConnectResult, path_barriers
from mcutils.inputspace.geometry import random_bend
from mcutils.inputspace.paths import find_barrier, loss_profiles

__all__ = ["dense_barriers", "finder_missed", "path_finder_barriers", "bend_barriers",
           "bend_claim", "two_ball_tolerances", "need_bypass_table", "smoothness_sweep"]


def dense_barriers(model: nn.Module, results: Mapping[Hashable, ConnectResult],
                   sets: Mapping[Hashable, PairSet], points_per_segment: int = 1000
                   ) -> np.ndarray:
    """The barrier of every final path of ``results`` on ``points_per_segment`` points per
    segment, in the row order of :func:`pair_table` (the keys of ``results`` in order, then
    the pairs), as one batch."""
    keys = list(results)
    if not keys:
        return np.zeros(0)
    vertices = [v for k in keys for v in results[k].vertices]
    targets = torch.cat([sets[k].targets for k in keys])
    return path_barriers(model, vertices, targets, points_per_segment).numpy().astype(float)


def finder_missed(table: pd.DataFrame, tol: float) -> tuple[dict[str, Any], str]:
    """Of the pairs whose final path the adaptive search calls connected at ``tol`` (last
    round column), the fraction whose dense barrier (column ``dense``) is ``tol`` or more:
    the barriers the 17-point search missed. Exact binomial interval over those pairs."""
    if "dense" not in table.columns:
        raise ParameterError("the table needs a 'dense' column (dense_barriers)")
    ok = table[connected_flags(table, tol) == 1]
    return fraction_result((ok["dense"].to_numpy(float) >= tol).astype(float) if len(ok) else [],
                           "pairs connected by the adaptive search")


def path_finder_barriers(model: nn.Module, vertices: Sequence[torch.Tensor],
                         targets: torch.Tensor, tol: float) -> torch.Tensor:
    """The barrier of each piecewise-linear path as :func:`~mcutils.inputspace.connect`
    measures it: the highest loss that :func:`~mcutils.inputspace.find_barrier` (accuracy
    ``tol``) finds on any segment minus the larger endpoint loss, clamped at 0."""
    targets = torch.as_tensor(targets)
    starts = torch.cat([v[:-1] for v in vertices])
    ends = torch.cat([v[1:] for v in vertices])
    owner = torch.cat([torch.full((len(v) - 1,), i, dtype=torch.long)
                       for i, v in enumerate(vertices)])
    top, _, _ = find_barrier(model, starts, ends, targets[owner], tol=tol, kind="max")
    best = torch.full((len(vertices),), -float("inf")).scatter_reduce(0, owner, top, "amax")
    a = torch.stack([v[0] for v in vertices])
    c = torch.stack([v[-1] for v in vertices])
    end = loss_profiles(model, a, c, targets, num_points=2).max(dim=1).values
    return (best - end).clamp_min(0)


def bend_barriers(model: nn.Module, table: pd.DataFrame,
                  results: Mapping[Hashable, ConnectResult], sets: Mapping[Hashable, PairSet],
                  key_names: Sequence[str], draws: int = 4, tol: float = 1e-4,
                  seed: int = 0) -> pd.DataFrame:
    """The null of "nearly straight": every bypassed path of ``table`` (:func:`bypassed`)
    bent ``draws`` times by the same distances in a random direction
    (:func:`~mcutils.inputspace.random_bend`), and the barrier each bend leaves
    (:func:`path_finder_barriers` at accuracy ``tol``, as the chapter's own paths are
    measured).

    Returns:
        One row per bypassed pair: its keys, ``pair``, ``target``, ``found`` (the barrier
        of its own path, last round), ``chord_deviation`` and ``null`` (the mean barrier
        of its random bends), ``null_min`` (the lowest).
    """
    if not isinstance(draws, int) or draws < 1:
        raise ParameterError(f"draws={draws!r} must be a positive integer")
    bent = bypassed(table)
    cols = [*key_names, "pair", "target", "found", "chord_deviation", "null", "null_min"]
    if not len(bent):
        return pd.DataFrame(columns=cols)
    gen = torch.Generator().manual_seed(seed)
    paths, targets = [], []
    for _, row in bent.iterrows():
        key = tuple(row[k] for k in key_names)
        key = key if key in results or len(key) > 1 else key[0]
        v = results[key].vertices[int(row["pair"])]
        paths += random_bend([v] * draws, generator=gen)
        targets += [int(row["target"])] * draws
    null = path_finder_barriers(model, paths, torch.tensor(targets), tol).view(-1, draws)
    out = bent[[*key_names, "pair", "target", "chord_deviation"]].copy()
    out["found"] = bent[round_columns(bent)[-1]].to_numpy(float)
    out["null"] = null.mean(dim=1).numpy().astype(float)
    out["null_min"] = null.min(dim=1).values.numpy().astype(float)
    return out[cols].reset_index(drop=True)


def bend_claim(bends: pd.DataFrame, tol: float, seed: int = 0) -> dict[str, Any]:
    """The ``near_linear`` claim from :func:`bend_barriers` of the real pairs: the bypass
    bends a path no further than a targeted move needs, so the same bend in a random
    direction keeps a barrier: the median (over pairs) barrier of the random bends is
    above ``tol`` (hierarchical bootstrap over classes and pairs). A bend so large that
    any direction clears the barrier fails it."""
    iv, method = median_result(bends["null"] if len(bends) else [],
                               bends["target"] if len(bends) else [], seed=seed)
    return dict(result=iv, method=method, threshold=float(tol), direction=">")


def two_ball_tolerances(connect_kw: Mapping[str, Any], tolerances: Sequence[float],
                        num_pairs: int = 24, points_per_segment: int = 1000,
                        seed: int = 0) -> pd.DataFrame:
    """The chapter's connectivity run on :func:`~mcutils.planted.two_ball_pairs` (a class
    region of two disjoint balls, so no path connects a pair) once at each tolerance:
    :func:`~mcutils.inputspace.connect` builds the paths at that tolerance with the
    chapter's bypass (``connect_kw``), and each final path is re-measured on the dense grid.

    Returns:
        One row per tolerance: ``tol``, ``pairs``, ``connected`` (fraction that
        ``connect`` calls connected) with ``lo`` and ``hi`` (exact interval),
        ``dense_connected`` (fraction whose dense barrier is below ``tol``) and
        ``min_barrier`` (the lowest dense barrier, nats).
    """
    model, a, c, y = planted.two_ball_pairs(num_pairs, seed)
    sets = {"two_balls": PairSet(a, c, y)}
    rows = []
    for tol in sorted(set(float(t) for t in tolerances)):
        res = connect_sets(model, sets, tol=tol, **connect_kw)
        dense = dense_barriers(model, res, sets, points_per_segment)
        iv = stats.fraction_interval(res["two_balls"].connected.numpy().astype(int))
        rows.append(dict(tol=tol, pairs=len(y), connected=iv["estimate"], lo=iv["ci"][0],
                         hi=iv["ci"][1], dense_connected=float((dense < tol).mean()),
                         min_barrier=float(dense.min())))
    return pd.DataFrame(rows)


def need_bypass_table(table: pd.DataFrame, tol: float) -> pd.DataFrame:
    """Bypass statistics of the pairs that need one: per kind, the pairs whose straight
    path has a barrier of at least ``tol``, the fraction connected after each round
    (exact interval), and the median relative length and chord deviation of their paths.
    With a ``dense`` column, the fraction connected by the dense check is added."""
    rounds = round_columns(table)
    rows = []
    for kind, sub in table.groupby("kind", sort=False):
        need = sub[connected_flags(sub, tol, rounds[0]) == 0]
        row: dict[str, Any] = {"kind": kind, "pairs": len(sub), "need a bypass": len(need)}
        for r, col in enumerate(rounds[1:], start=1):
            row[f"connected after round {r}"] = (stats.fraction_interval(
                connected_flags(need, tol, col).astype(int)) if len(need) else float("nan"))
        if "dense" in sub.columns:
            row["connected (dense check)"] = (stats.fraction_interval(
                (need["dense"].to_numpy(float) < tol).astype(int)) if len(need) else float("nan"))
        row["median length / |C - A|"] = float(need["rel_length"].median()) if len(need) else float("nan")
        row["median chord deviation"] = (float(need["chord_deviation"].median()) if len(need)
                                         else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def smoothness_sweep(model: nn.Module, targets: torch.Tensor, shape: Sequence[int],
                     weights: Sequence[float], synth: Mapping[str, Any], steps: int,
                     seed: int = 0) -> pd.DataFrame:
    """Synthetic pairs of ``targets`` made with the chapter's settings (``synth``, the
    arguments of :func:`~mcutils.inputspace.synthetic_pairs`) at each smoothness weight of
    ``weights`` for ``A``, at most ``steps`` steps, from the same noise.

    Returns:
        One row per weight: ``weight``, ``tv_ratio`` (median total variation of ``A`` over
        that of ``C`` in normalised units, bootstrap interval over pairs), ``A reached``
        (fraction of ``A`` below the stopping loss), ``A steps`` (median),
        ``A loss`` (median class loss of ``A``) and ``gradient ratio`` (median
        :func:`~mcutils.inputspace.penalty_gradient_ratio` at ``A``'s starting noise).
    """
    from mcutils.inputspace.synthesis import (input_normalization, penalty_gradient_ratio,
                                              synthetic_pairs, total_variation)

    if not weights:
        raise ParameterError("weights must name at least one smoothness weight")
    mean, std = input_normalization(model)
    kw = {**dict(synth), "steps": int(steps)}
    rows = []
    for w in weights:
        kw["tv_weight"] = float(w)
        syn = synthetic_pairs(model, targets, tuple(shape),
                              generator=torch.Generator().manual_seed(seed), **kw)
        tv_a = total_variation((syn.a - mean) / std, "sum")
        tv_c = total_variation((syn.c - mean) / std, "sum")
        ratio = stats.bootstrap_ci((tv_a / tv_c.clamp_min(1e-12)).numpy(), np.median, seed=seed)
        noise = kw.get("init_std", 0.01) * torch.randn(
            len(targets), *shape, generator=torch.Generator().manual_seed(seed))
        start = mean + std * noise
        grad = penalty_gradient_ratio(model, start, targets, float(w),
                                      kw.get("tv_reduction", "sum"))
        stop = kw.get("stop_loss")
        rows.append({"weight": float(w), "tv_ratio": ratio,
                     "A reached": (float((syn.loss_a < stop).float().mean())
                                   if stop is not None else float("nan")),
                     "A steps": int(syn.steps_a.float().median()),
                     "A loss": float(syn.loss_a.median()),
                     "gradient ratio": float(grad.median())})
    return pd.DataFrame(rows)
