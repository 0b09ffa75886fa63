"""Chapter 01's model and its measurements of paths, section by section.

* :func:`setup_model`: the model on its device and the correctly classified images
  (:class:`ModelSetup`);
* :func:`synthesis_kwargs`, :func:`bypass_kwargs`: the arguments of the synthesis, of
  the paper's bypass and of the early-stopped variant, from the chapter's parameters;
* :func:`straight_paths`: the straight paths of the real pairs (:class:`StraightPaths`);
* :func:`bypass_deviation`: the first round's bypass points of one result;
* :func:`path_geometry`, :func:`variant_difference`: how far bypassed paths stray from
  the chord, and the paper's bypass against the variant.

The pair sets, tables and claims are in :mod:`mcutils.chapters.ch01_input_space`, the
figures in :mod:`mcutils.chapters.ch01_input_space_figures`. Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch01_input_space import PairSet, merge_sets, predict_labels
from mcutils.core import stats
from mcutils.inputspace.bypass import ConnectResult

__all__ = ["ModelSetup", "setup_model", "synthesis_kwargs", "bypass_kwargs", "StraightPaths",
           "straight_paths", "bypass_deviation", "path_geometry", "variant_difference"]


@dataclass
class ModelSetup:
    """The chapter's model and the images its pairs are drawn from (pixel space, CPU).

    ``x_ok, y_ok`` are the images of ``x_all, y_all`` the model classifies correctly;
    ``mean, std`` are the model's input normalisation."""

    net: nn.Module
    class_names: list[str]
    x_all: torch.Tensor
    y_all: torch.Tensor
    x_ok: torch.Tensor
    y_ok: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def describe(self) -> str:
        """One line: how many images, how many classified correctly, the normalisation."""
        return (f"{len(self.x_all)} images, {len(self.x_ok)} classified correctly; the model's "
                f"input normalisation: mean {self.mean.flatten().tolist()}, "
                f"std {self.std.flatten().tolist()}")


def setup_model(params: Mapping[str, Any]) -> ModelSetup:
    """The chapter's model on its device, in eval mode, and its images: the cached default
    model (:func:`mcutils.zoo.trained_model`) with the first ``num_test`` test images, or
    a ``torchvision:<arch>`` ImageNet model with the images of ``image_folder``."""
    from mcutils import data, models, zoo
    from mcutils.core.runtime import get_device
    from mcutils.inputspace.synthesis import input_normalization

    model = params["model"]
    if model.startswith("torchvision:"):
        import torchvision.models as tvm

        weights = tvm.get_model_weights(model.split(":", 1)[1]).DEFAULT
        class_names = list(weights.meta["categories"])
        net = models.build_model(model, num_classes=1000, in_channels=3,
                                 pretrained=params["pretrained"])
        x_all, y_all, _ = data.load_image_folder(params["image_folder"],
                                                 size=params["image_size"],
                                                 categories=class_names)
    else:
        net = zoo.trained_model(
            dataset=params["dataset"], model=model, epochs=params["num_epochs"],
            lr=params["lr"], batch_size=params["batch_size"],
            train_subset=params["train_subset"], seed=params["seed"], device=params["device"])
        test_set = data.load_dataset(params["dataset"], "test")
        class_names = list(test_set.classes)
        x_all, y_all = test_set.x[:params["num_test"]], test_set.y[:params["num_test"]]
    net = net.to(get_device(params["device"])).eval()
    correct = (predict_labels(net, x_all) == y_all).nonzero().flatten()
    mean, std = input_normalization(net)
    return ModelSetup(net, class_names, x_all, y_all, x_all[correct], y_all[correct], mean, std)


def synthesis_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`~mcutils.inputspace.synthetic_pairs` from the ``synth_*``
    parameters: the paper's feature visualisation in normalised units, unclipped."""
    return dict(steps=params["synth_steps"], lr=params["synth_lr"],
                stop_loss=params["synth_stop_loss"], init_std=params["synth_init_std"],
                weight_decay=params["synth_weight_decay"], tv_weight=params["synth_tv_weight"],
                tv_reduction="sum", space="normalized", box=None)


def bypass_kwargs(params: Mapping[str, Any], variant: bool = False) -> dict[str, Any]:
    """The arguments of :func:`~mcutils.inputspace.connect` besides ``tol``: the paper's
    bypass (``bypass_*``, normalised units, no stopping), or with ``variant`` the
    early-stopped bypass in pixel space inside ``[0, 1]`` (``variant_*``)."""
    if variant:
        return dict(max_rounds=params["max_rounds"], steps=params["variant_steps"],
                    lr=params["variant_lr"], deviation_weight=params["variant_deviation_weight"],
                    tv_weight=params["variant_tv_weight"], stop_loss="auto", box=(0.0, 1.0),
                    num_points=None)
    return dict(max_rounds=params["max_rounds"], steps=params["bypass_steps"],
                lr=params["bypass_lr"], deviation_weight=params["deviation_weight"],
                tv_weight=params["tv_weight"], tv_reduction="sum", stop_loss=None, box=None,
                projection="gradient", space="normalized", num_points=None)


@dataclass
class StraightPaths:
    """The straight paths of the real pairs: their loss profiles on a grid, the barriers on
    it, the barriers of :func:`~mcutils.inputspace.find_barrier` and its forward passes,
    the fraction of pairs on which both agree within ``connect_tol``, and the fraction
    with a barrier of at least ``tol`` by class name."""

    real: PairSet
    profiles: torch.Tensor
    barriers: torch.Tensor
    found: torch.Tensor
    passes: int
    agreement: float
    by_class: pd.Series


def straight_paths(model: nn.Module, sets: Mapping[Hashable, PairSet], class_names: Sequence[str],
                   num_points: int, tol: float, connect_tol: float) -> StraightPaths:
    """Section 1: the loss along the straight paths of all real-real pairs of ``sets``
    (a grid of ``num_points``), and the same barriers located by
    :func:`~mcutils.inputspace.find_barrier` at a tenth of ``connect_tol``."""
    from mcutils.inputspace.paths import barrier, find_barrier, loss_profiles

    real = merge_sets(sets, "real-real")
    profiles = loss_profiles(model, real.a, real.c, real.targets, num_points=num_points)
    barriers = barrier(profiles)
    found, _, passes = find_barrier(model, real.a, real.c, real.targets, tol=connect_tol / 10)
    agreement = ((found - barriers).abs() <= connect_tol).float().mean().item()
    by_class = pd.Series((barriers >= tol).float().numpy(),
                         index=[class_names[int(k)] for k in real.targets]).groupby(level=0).mean()
    return StraightPaths(real, profiles, barriers, found, passes, agreement, by_class)


def bypass_deviation(result: ConnectResult) -> dict[str, Any] | None:
    """The first round's bypass points of one :class:`ConnectResult`: how many, the mean
    loss at the barrier points ``B`` before the bypass, and the median
    ``|B' - B| / |B|``; ``None`` when no pair had a barrier."""
    from mcutils.inputspace.geometry import relative_deviation

    if result.first_bypass is None:
        return None
    owner, b_pts, b_new = result.first_bypass
    dev = relative_deviation(b_pts, b_new, "l2")
    return dict(points=len(owner), loss_at_b=float(result.bypass_history[0][0]),
                median=dev.median().item())


def path_geometry(bent: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Median relative path length and chord deviation per kind of the bypassed pairs
    ``bent``, with bootstrap intervals over pairs: rows ``(kind, statistic, median, lo,
    hi, pairs)``."""
    rows = []
    for kind, sub in bent.groupby("kind", sort=False):
        for col in ["rel_length", "chord_deviation"]:
            iv = stats.bootstrap_ci(sub[col].to_numpy(float), np.median, seed=seed)
            rows.append(dict(kind=kind, statistic=col, median=iv["estimate"], lo=iv["ci"][0],
                             hi=iv["ci"][1], pairs=iv["n"]))
    return pd.DataFrame(rows)


def variant_difference(bent: pd.DataFrame, variant_table: pd.DataFrame,
                       seed: int = 0) -> dict[str, Any]:
    """Paired over the pairs bypassed by both the paper's bypass (``bent``) and the variant
    (``variant_table``, a :func:`pair_table` with keys ``seed`` and ``kind``): the median
    chord deviation, paper minus variant, with a bootstrap interval."""
    both = bent.merge(variant_table, on=["seed", "kind", "pair"], suffixes=("", "_variant"))
    both = both[both["vertices_variant"] > 2]
    return stats.paired_difference_ci(both["chord_deviation"].to_numpy(float),
                                      both["chord_deviation_variant"].to_numpy(float),
                                      np.median, seed=seed)


