"""Chapter 02's negative controls and its deviations from the paper.

* :func:`threshold_controls`: the Bethe-lattice control of every threshold claim
  (:func:`mcutils.percolation.bethe_control` with the chapter's growth settings);
* :func:`trio_control`: the one-patch check on planes through a planted class region made
  of two disjoint balls (:func:`mcutils.planted.two_ball_pairs`), where three images
  cannot lie in one patch;
* :data:`DEVIATIONS` and :func:`deviations`: where the chapter departs from the paper's
  protocol and official code (JVrabel/input_space_mode_connectivity), glued as
  ``ch02_deviations`` and ``ch02_deviations_table``.

Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mcutils.core.report import ChapterReport
from mcutils.core.stats import fraction_interval
from mcutils.percolation.networks import plane_predictions, same_patch
from mcutils.percolation.thresholds import bethe_control
from mcutils.planted import two_ball_pairs

__all__ = ["DEVIATIONS", "threshold_controls", "trio_control", "deviations"]

_REPO = "JVrabel/input_space_mode_connectivity"

#: where chapter 02 departs from the paper's protocol and official code (one row each)
DEVIATIONS: list[dict[str, str]] = [
    {"setting": "how the percolation argument is tested",
     "paper": "a conjecture argued from lattice percolation; no experiment, no threshold "
              "estimates, no slices",
     "source": f"the paper's abstract and percolation discussion; {_REPO} README.md "
               "(files table: no percolation code)",
     "ours": "p_c(d) of Z^d for d = 2..8 by cluster growth, and d = 1..5-dimensional "
             "slices of input space compared with three nulls on identical grids",
     "effect": "every claim of the chapter is the book's test of the conjecture, not a "
               "number of the paper; a verdict here can neither confirm nor contradict a "
               "published figure"},
    {"setting": "network whose class regions are probed",
     "paper": "GoogLeNet pretrained on ImageNet (also ResNet-18, ViT), 224x224x3 inputs",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:25-29, :37",
     "ours": "small_cnn trained 2 epochs on Fashion-MNIST (28x28x1 = 784 input "
             "dimensions), the default model shared with the other chapters",
     "effect": "the argument is about dimension: 784 against 150,528 input dimensions and a "
               "far smaller network; slice onsets and the network-vs-null match hold for "
               "this network only"},
    {"setting": "untrained network",
     "paper": "a randomly initialised ResNet-18 on CIFAR-10 inputs (32x32x3)",
     "source": f"{_REPO} sec4_3_untrained_model.py:52",
     "ours": "the same small_cnn architecture freshly initialised (seeded), on Fashion-MNIST",
     "effect": "a different architecture and input dimension; the untrained rows test the "
               "argument's 'even in untrained models' on another network"},
    {"setting": "what 'connected' means",
     "paper": "a low-loss path found by linear interpolation and optimising the barrier "
              "point (bypass) in the full input space",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:5-6",
     "ours": "two anchors joined by nearest-neighbour grid cells of the low-loss set, "
             "inside one d-dimensional slice, at a swept loss threshold",
     "effect": "a slice sees only paths inside its subspace, so its onset is an upper "
               "bound of the full space's; the onsets compare networks with nulls on the "
               "same grids, not with the paper's paths"},
    {"setting": "resolution along the segment between two images",
     "paper": "1,000 interpolation points",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:38",
     "ours": "slice_points per axis (9 in the cpu profile: 5 grid points from one anchor "
             "to the other)",
     "effect": "a barrier narrower than a grid step is missed, so the fraction of "
               "straight segments in class and the onsets can be too optimistic"},
]


def threshold_controls(table: pd.DataFrame, params: Mapping[str, Any]) -> dict[int, dict]:
    """The Bethe-lattice control of each growth-estimated dimension of ``table``: the
    chapter's estimator with its runs, clusters and generations on the tree of
    coordination ``2d`` (:func:`mcutils.percolation.bethe_control`).

    Args:
        table: the threshold table (:func:`mcutils.percolation.threshold_table`).
        params: the chapter's parameters (``growth_runs``, ``growth_clusters``,
            ``growth_tmax``, ``seed``; lists per dimension of ``table``).

    Returns:
        ``{d: interval}`` of the tree's threshold, for the rows estimated by growth.
    """
    dims = [int(d) for d in table.index]

    def per_dim(value: Any) -> list:
        return list(value) if isinstance(value, (list, tuple)) else [value] * len(dims)

    keep = [k for k, d in enumerate(dims) if table.loc[d, "estimator"] == "growth"]
    if not keep:
        return {}
    cl, tm = per_dim(params["growth_clusters"]), per_dim(params["growth_tmax"])
    return bethe_control([dims[k] for k in keep], runs=int(params["growth_runs"]),
                         clusters=[cl[k] for k in keep], t_max=[tm[k] for k in keep],
                         seed=int(params["seed"]))


def trio_control(num_trios: int, n: int = 41, margin: float = 2.0, seed: int = 0) -> dict:
    """The one-patch check on planes where it must fail: a planted classifier whose class
    region is two disjoint balls (:class:`mcutils.planted.TwoBalls`), each plane through
    two images in one ball and one in the other.

    Every plane is evaluated as the chapter's (:func:`mcutils.percolation.plane_predictions`,
    :func:`mcutils.percolation.same_patch`, ``n`` points per axis, ``margin``).

    Returns:
        The exact (Clopper-Pearson) interval of the fraction of planes in one patch.
    """
    model, a, c, _ = two_ball_pairs(2 * int(num_trios), seed=seed)
    flags = []
    for t in range(int(num_trios)):
        plane = plane_predictions(model, a[2 * t], a[2 * t + 1], c[2 * t], n=n, margin=margin)
        flags.append(same_patch(plane["labels"], 0, plane["cells"]))
    return fraction_interval(np.asarray(flags, bool))


def deviations(chapter: ChapterReport) -> pd.DataFrame:
    """Glue chapter 02's :data:`DEVIATIONS` (``ch02_deviations``, ``ch02_deviations_table``)."""
    return chapter.deviations(DEVIATIONS)
