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

The deviations from the paper's code are in
:mod:`mcutils.chapters.ch01_input_space_deviations`.

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

__all__ = ["planted_controls", "control_results"]


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
