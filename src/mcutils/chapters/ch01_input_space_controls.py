"""Chapter 01's negative controls and its deviations from the paper's code.

* :func:`planted_controls`: the chapter's own connectivity run (its bypass settings,
  tolerances and rounds) on planted classifiers of :mod:`mcutils.planted` where its
  claims are false by construction: pairs in a class region made of two disjoint balls
  (:func:`~mcutils.planted.two_ball_pairs`: no path can connect them) and pairs whose
  chords pass next to a wide bump (:func:`~mcutils.planted.detour_pairs`: every
  connecting path is at least :func:`~mcutils.planted.detour_min_length` times as long
  as its chord);
* :func:`control_results`: the same statistics as the claims
  (:func:`~mcutils.chapters.ch01_input_space.connectivity_claims`) on those pairs, as
  the ``control`` of each claim;
* :data:`DEVIATIONS` and :func:`record_deviations`: each setting where the chapter departs
  from the paper's published code (JVrabel/input_space_mode_connectivity), glued as
  ``ch01_deviations``.

Tested in ``tests/test_ch01_input_space.py``.

Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mcutils import planted
from mcutils.chapters.ch01_input_space import (CLAIM_KINDS, PairSet, bypassed, connect_sets,
                                               connected_flags, fraction_result, median_result,
                                               one_round_flags, pair_table)
from mcutils.chapters.ch01_input_space_paths import bypass_kwargs

__all__ = ["planted_controls", "control_results", "DEVIATIONS", "measured_effects",
           "record_deviations"]


def planted_controls(params: Mapping[str, Any], num_pairs: int = 24, num_detour: int = 12,
                     seed: int = 0) -> dict[str, pd.DataFrame]:
    """Connect planted pairs with the chapter's bypass (:func:`bypass_kwargs`, its
    ``connect_tol`` and ``max_rounds``): ``num_pairs`` pairs of
    :func:`~mcutils.planted.two_ball_pairs` and ``num_detour`` of
    :func:`~mcutils.planted.detour_pairs`.

    Returns:
        ``{"two_balls": table, "detour": table}``, :func:`pair_table` s (key ``kind``),
        the second with the column ``min_rel_length``, the geometric lower bound of the
        relative length of a path connected at ``tol``.
    """
    out = {}
    kw = bypass_kwargs(params)
    for name, (model, a, c, y) in (("two_balls", planted.two_ball_pairs(num_pairs, seed)),
                                   ("detour", planted.detour_pairs(num_detour, seed))):
        sets = {(name,): PairSet(a, c, y)}
        res = connect_sets(model, sets, tol=params["connect_tol"], **kw)
        table = pair_table(res, sets, ["kind"])
        if name == "detour":
            table["min_rel_length"] = planted.detour_min_length(model, a, c,
                                                                params["tol"]).tolist()
        out[name] = table
    return out


def control_results(controls: Mapping[str, pd.DataFrame], tol: float,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """The ``control`` of each claim of :func:`connectivity_claims`: the claim's own
    statistic and interval on planted pairs where the claim is false by construction.

    * the four connectivity claims and ``one_round``: the fraction of two-ball pairs
      connected at ``tol`` (after the last round, and after one round), exact binomial;
    * ``near_linear``: the median relative path length of the bypassed detour pairs,
      hierarchical bootstrap as in the claim.

    Returns:
        ``{claim_id: {"statement", "result"}}`` (the ``control`` argument of
        :meth:`~mcutils.core.report.ChapterReport.claim`).
    """
    balls, detour = controls["two_balls"], controls["detour"]
    conn, _ = fraction_result(connected_flags(balls, tol))
    out = {cid: {"statement": f"two-ball region (planted): {len(balls)} pairs whose class "
                              f"region is two disjoint balls, so no path connects them",
                 "result": conn} for cid, _ in CLAIM_KINDS.values()}
    one, _ = fraction_result(one_round_flags(balls, tol))
    out["one_round"] = {"statement": "two-ball region (planted): one round cannot connect "
                                     "its barrier pairs", "result": one}
    bent = bypassed(detour)
    rel, _ = median_result(bent["rel_length"], bent["target"], seed=seed)
    bound = float(detour["min_rel_length"].min()) if len(detour) else float("nan")
    out["near_linear"] = {"statement": f"wide planted bump: {len(bent)} bypassed pairs whose "
                                       f"connected paths are at least {bound:.3f} times "
                                       f"their chord", "result": rel}
    return out


_REPO = "JVrabel/input_space_mode_connectivity"

#: each setting where chapter 01 departs from the paper's code (file:line at commit 1a34232)
DEVIATIONS = [
    {"setting": "data and model",
     "paper": "ImageNet validation images, pretrained GoogLeNet (also ResNet-18, ViT-B/16)",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:25-29,37; utils.py:45-52",
     "ours": "Fashion-MNIST test images, the book's small CNN (chapter 00); the gpu profile "
             "CIFAR-10 with resnet18_cifar; torchvision:googlenet on an image folder",
     "effect": "low-dimensional inputs and a small network; more or fewer barriers than "
               "at ImageNet scale, in either direction"},
    {"setting": "pairs",
     "paper": "hand-picked lowest-loss images: the 3 of the first 9 per class, 4 classes "
              "(pairs of these 12)",
     "source": f"{_REPO} prepare_imagenet_tensors.py:100-117; sec4_1_input_space_connectivity.py:49",
     "ours": "random pairs of correctly classified test images, every class, two sampling "
             "seeds (see ch01_pairs_by_kind)",
     "effect": "endpoints of higher loss: a gap to the worse end is easier to meet, which "
               "may raise the connected fractions"},
    {"setting": "barrier location",
     "paper": "argmax of the loss on a 1000-point grid of the straight line",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:38,59-61; utils.py:160-163",
     "ours": "find_barrier: a coarse grid refined around the highest local maxima, at a "
             "tenth of connect_tol",
     "effect": "a narrow peak missed between grid points would overstate connectivity"},
    {"setting": "rounds of bypass",
     "paper": "one bypass point B' per pair (sec. 4.1); two free rounds only for the "
              "untrained network (sec. 4.3)",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:75-79",
     "ours": "up to max_rounds = 3 rounds, each bypassing every segment with a gap >= "
             "connect_tol",
     "effect": "more rounds can only raise the connected fractions; one_round reports the "
               "paper's single round"},
    {"setting": "connected criterion",
     "paper": "none in code: the maximum loss on 500 points of each new segment is printed "
              "and judged on the figure",
     "source": f"{_REPO} sec4_1_input_space_connectivity.py:82-88",
     "ours": "gap (highest loss minus the worse end's) below tol = 0.01 nats",
     "effect": "a looser tolerance connects more pairs; the tolerance curves show all "
               "tolerances"},
    {"setting": "synthetic inputs of a trained network",
     "paper": "no script (app. A); the feature-visualisation defaults are 4096 iterations "
              "and no smoothness penalty",
     "source": f"{_REPO} utils.py:221-225; sec4_3_untrained_model.py:31-36",
     "ours": "the untrained-network settings of sec. 4.3: lr 0.05, 8192 steps, stop at "
             "0.0005, noise 0.01, weight decay 1e-7, penalty 2.5e-7 on A only",
     "effect": "inputs stop at the same loss either way; a penalty too weak to smooth A "
               "makes the two kinds of synthetic input alike"},
    {"setting": "claim of near-straight paths",
     "paper": "'only a small deviation from a linear path' (abstract), no number",
     "source": "paper abstract and sec. 4.1",
     "ours": "median path length / |C - A| of bypassed real pairs <= max_rel_length = 1.05",
     "effect": "a typed threshold: a looser one passes more easily; the planted detour "
               "control shows the check can fail"},
]


def measured_effects(params: Mapping[str, Any], agreement: float, real_rounds: list[float],
                     straight_fracs: tuple[float, float], tv_ratio: Mapping[str, Any]
                     ) -> dict[str, str]:
    """The effects of deviations that this run measured, ``{setting: text}``: the barrier
    finder's agreement with the grid, the connected fraction after each round, the
    straight line's connected fraction at the smallest and largest tolerance, and the
    smoothness ratio of the synthetic inputs."""
    tols = params["tolerances"]
    return {
        "barrier location": f"agrees with a {params['num_points']}-point grid within "
                            f"connect_tol on {agreement:.3f} of the straight paths (bent "
                            "segments not checked)",
        "rounds of bypass": f"real pairs connected after rounds 0..{params['max_rounds']}: "
                            f"{real_rounds}",
        "connected criterion": "the straight line connects {:.3f} of real pairs at {:g} nats, "
                               "{:.3f} at {:g}".format(straight_fracs[0], min(tols),
                                                       straight_fracs[1], max(tols)),
        "synthetic inputs of a trained network":
            "median TV(A) / TV(C) {:.3f} [{:.3f}, {:.3f}]".format(tv_ratio["estimate"],
                                                                 *tv_ratio["ci"]),
    }


def record_deviations(chapter: Any, measured: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Glue :data:`DEVIATIONS` as ``ch01_deviations`` and ``ch01_deviations_table``
    (:meth:`~mcutils.core.report.ChapterReport.deviations`), with ``measured``
    (``{setting: text}``, the effect this run measured) filled in."""
    known = {row["setting"] for row in DEVIATIONS}
    unknown = set(measured or {}) - known
    if unknown:
        raise ValueError(f"measured effects of unknown settings: {sorted(unknown)}")
    return chapter.deviations([{**row, **({"measured": measured[row["setting"]]}
                                          if row["setting"] in (measured or {}) else {})}
                               for row in DEVIATIONS])
