"""Chapter 01's deviations from the paper's published code
(JVrabel/input_space_mode_connectivity): :data:`DEVIATIONS`, one row per setting, with
the paper's value and its file:line, ours and the possible effect;
:func:`measured_effects` fills in the effects this run measured, and
:func:`record_deviations` glues the table as ``ch01_deviations`` and
``ch01_deviations_table`` (:meth:`mcutils.core.report.ChapterReport.deviations`).

Tested in ``tests/test_ch01_input_space.py``.

Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["DEVIATIONS", "measured_effects", "record_deviations"]

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
     "ours": "a null instead of a typed length: each bypassed real path bent by the same "
             "distances in a random direction; claimed: the median barrier of those bends "
             "is above tol (a targeted, local bend, not a detour that any direction would do)",
     "effect": "tests that the deviation is small on the scale of the barrier; a planted bump "
               "centred on the chords, which any direction clears alike, fails it"},
]


def measured_effects(params: Mapping[str, Any], agreement: float, real_rounds: list[float],
                     straight_fracs: tuple[float, float], tv_ratio: Mapping[str, Any],
                     missed: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The effects of deviations that this run measured, ``{setting: text}``: the barrier
    finder's agreement with the grid, the connected fraction after each round, the
    straight line's connected fraction at the smallest and largest tolerance, and the
    smoothness ratio of the synthetic inputs, and (``missed``) the fraction of final paths
    called connected by the adaptive search on which the dense grid finds a barrier."""
    tols = params["tolerances"]
    location = (f"agrees with a {params['num_points']}-point grid within connect_tol on "
                f"{agreement:.3f} of the straight paths")
    if missed is not None and missed.get("n"):
        location += ("; on every final path re-measured at {} points per segment it missed a "
                     "barrier >= tol on {:.3f} [{:.3f}, {:.3f}] of {} paths it called "
                     "connected").format(params["check_points"], missed["estimate"],
                                         *missed["ci"], missed["n"])
    return {
        "barrier location": location,
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
