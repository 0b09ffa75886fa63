"""Chapter 06's expensive, independent pieces of work and the studies built on them.

* :func:`pool_parts` lists them for the book's worker pool (issue 26): one curve run per
  seed (:func:`train_curve_part`, which also trains the robust end on first use), the
  variant's runs to the multi-step PGD end (:func:`train_variant_part`) and the curves
  trained on the robust loss (:func:`train_robust_path_part`). Each part stores in the
  checkpoint cache exactly what the notebook later loads, through the same functions
  with the same arguments, so a run with workers gives the numbers of a run without.
* :func:`variant_study` measures the variant's paths at every budget;
  :func:`robust_trained_study` the paths trained on the robust loss.

Used by chapter 06 (through :mod:`mcutils.chapters.ch06_robust_path`, which re-exports
the part functions for the pool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch06_budget import BARRIERS, cached_curve_budgets, robust_path
from mcutils.chapters.ch06_ends import cached_robust_curve, load_data, regular_end, robust_end
from mcutils.chapters.ch06_path_stats import barrier_heights
from mcutils.data import ImageDataset, TensorLoader

__all__ = ["pool_parts", "robust_trained_study", "train_curve_part", "train_robust_path_part",
           "train_variant_part", "variant_study"]


def _setup(params: Mapping[str, Any]) -> tuple[nn.Module, ImageDataset]:
    regular, _ = regular_end(params)
    _, curve_train, _ = load_data(params)
    return regular, curve_train


def _curves(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
            curve_train: ImageDataset, seed: int) -> dict[int, Any]:
    p = params
    return cached_curve_budgets(regular, robust, curve_train, p["curve_budgets"],
                                lr=p["curve_lr"], weight_decay=p["curve_weight_decay"],
                                batch_size=p["batch_size"], seed=int(seed), device=p["device"])


def _robust_curve(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
                  curve_train: ImageDataset, seed: int) -> Any:
    p = params
    return cached_robust_curve(regular, robust, curve_train, steps=p["robust_path_steps"],
                               eps=p["adv_eps"], lr=p["curve_lr"], penalty=p["adv_penalty"],
                               batch_size=p["batch_size"], seed=int(seed), device=p["device"])


def train_curve_part(params: Mapping[str, Any], seed: int) -> list[int]:
    """Pool part: the robust end (if not cached yet) and the curve run of ``seed`` at
    every budget of ``curve_budgets`` (:func:`mcutils.chapters.ch06_budget.cached_curve_budgets`).
    Returns the budgets stored."""
    regular, curve_train = _setup(params)
    robust, _ = robust_end(params)
    return sorted(_curves(params, regular, robust, curve_train, seed))


def train_variant_part(params: Mapping[str, Any], seed: int) -> list[int]:
    """Pool part: the multi-step PGD end and the curve run of ``seed`` to it."""
    regular, curve_train = _setup(params)
    robust, _ = robust_end(params, protocol="pgd")
    return sorted(_curves(params, regular, robust, curve_train, seed))


def train_robust_path_part(params: Mapping[str, Any], seed: int) -> int:
    """Pool part: the curve of ``seed`` trained on the robust objective between the
    regular and the robust end (:func:`mcutils.chapters.ch06_ends.cached_robust_curve`).
    Returns its steps."""
    regular, curve_train = _setup(params)
    robust, _ = robust_end(params)
    _robust_curve(params, regular, robust, curve_train, seed)
    return int(params["robust_path_steps"])


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The chapter's independent parts, as ``(label, function name, kwargs)``: the first
    seed's curve (which trains the robust end), then the variant's (which trains the PGD
    end, in parallel), the other seeds' curves and the robust-loss curves."""
    p = dict(params)
    seeds = [int(s) for s in p["seeds"]]
    parts = [(f"curve run, seed {seeds[0]}", "train_curve_part", {"params": p, "seed": seeds[0]})]
    parts += [(f"variant curve run, seed {s}", "train_variant_part", {"params": p, "seed": int(s)})
              for s in p["variant_seeds"]]
    parts += [(f"curve run, seed {s}", "train_curve_part", {"params": p, "seed": s})
              for s in seeds[1:]]
    parts += [(f"robust-loss curve, seed {s}", "train_robust_path_part",
               {"params": p, "seed": int(s)}) for s in p["robust_path_seeds"]]
    return parts


def _barriers(path: pd.DataFrame) -> dict[str, list[float]]:
    return {name: barrier_heights(path, column, relative=relative).tolist()
            for name, (column, relative) in BARRIERS.items()}


def variant_study(params: Mapping[str, Any], regular: nn.Module, curve_train: ImageDataset,
                  eval_set: ImageDataset, ts: Sequence[float]) -> dict[str, Any] | None:
    """The variant: curves to the multi-step PGD end (seeds ``variant_seeds``), measured
    at every budget with :func:`mcutils.chapters.ch06_budget.robust_path` on the first
    ``path_size`` images. ``None`` when ``variant_seeds`` is empty.

    Returns:
        A dict: ``"path"``, the table with budget and seed columns; ``"barriers"``,
        budget -> name -> per-seed list; ``"end"``, the end's cache info.
    """
    p = params
    if not p["variant_seeds"]:
        return None
    robust, info = robust_end(p, protocol="pgd")
    n = p["path_size"]
    bn = TensorLoader(curve_train.subset(torch.arange(min(p["bn_size"], len(curve_train)))),
                      p["batch_size"])
    tables = []
    for s in p["variant_seeds"]:
        curves = _curves(p, regular, robust, curve_train, s)
        for b, curve in sorted(curves.items()):
            tables.append(robust_path(curve, ts, eval_set.x[:n], eval_set.y[:n], p["adv_eps"],
                                      p["attack_steps"], bn_loader=bn, attack_seed=int(s),
                                      batch_size=p["batch_size"]).assign(seed=int(s), budget=b))
    path = pd.concat(tables, ignore_index=True)
    return {"path": path,
            "barriers": {b: _barriers(g) for b, g in path.groupby("budget")},
            "end": info}


def robust_trained_study(params: Mapping[str, Any], regular: nn.Module, robust: nn.Module,
                         curve_train: ImageDataset, eval_set: ImageDataset,
                         ts: Sequence[float]) -> dict[str, Any] | None:
    """Curves trained on the robust objective (seeds ``robust_path_seeds``), measured as
    the budget curve's paths. ``None`` when ``robust_path_seeds`` is empty.

    Returns:
        ``{"path": table with a seed column, "barriers": {name: per-seed list}}``.
    """
    p = params
    if not p["robust_path_seeds"]:
        return None
    n = p["path_size"]
    bn = TensorLoader(curve_train.subset(torch.arange(min(p["bn_size"], len(curve_train)))),
                      p["batch_size"])
    tables = [robust_path(_robust_curve(p, regular, robust, curve_train, s), ts,
                          eval_set.x[:n], eval_set.y[:n], p["adv_eps"], p["attack_steps"],
                          bn_loader=bn, attack_seed=int(s),
                          batch_size=p["batch_size"]).assign(seed=int(s))
              for s in p["robust_path_seeds"]]
    path = pd.concat(tables, ignore_index=True)
    return {"path": path, "barriers": _barriers(path)}
