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
from mcutils.chapters.ch01_input_space_checks import bend_barriers, dense_barriers
from mcutils.chapters.ch01_input_space_paths import bypass_kwargs

__all__ = ["planted_controls", "control_results", "detour_lengths"]


def planted_controls(params: Mapping[str, Any], num_pairs: int = 24, num_detour: int = 12,
                     seed: int = 0) -> dict[str, pd.DataFrame]:
    """Connect planted pairs with the chapter's bypass (:func:`bypass_kwargs`, its
    ``connect_tol`` and ``max_rounds``): ``num_pairs`` pairs of
    :func:`~mcutils.planted.two_ball_pairs`, ``num_detour`` of
    :func:`~mcutils.planted.detour_pairs` and ``num_detour`` of the same with the bump almost
    centred on the chords (``offset=0.01``). Every final path is re-measured on
    ``check_points`` points per segment (column ``dense``), and the bypassed centred pairs
    are bent at random (``bend_draws``, :func:`bend_barriers`).

    Returns:
        ``{"two_balls": table, "detour": table, "centred": table, "centred_bends": bends}``:
        :func:`pair_table` s (key ``kind``), the detour one with the column
        ``min_rel_length`` (the geometric lower bound of the relative length of a path
        connected at ``tol``), and the random bends of the centred pairs.
    """
    out = {}
    kw = bypass_kwargs(params)
    for name, (model, a, c, y) in (
            ("two_balls", planted.two_ball_pairs(num_pairs, seed)),
            ("detour", planted.detour_pairs(num_detour, seed)),
            ("centred", planted.detour_pairs(num_detour, seed, offset=0.01))):
        sets = {(name,): PairSet(a, c, y)}
        res = connect_sets(model, sets, tol=params["connect_tol"], **kw)
        table = pair_table(res, sets, ["kind"])
        table["dense"] = dense_barriers(model, res, sets, params["check_points"])
        if name == "detour":
            table["min_rel_length"] = planted.detour_min_length(model, a, c,
                                                                params["tol"]).tolist()
        if name == "centred":
            out["centred_bends"] = bend_barriers(model, table, res, sets, ["kind"],
                                                 draws=params["bend_draws"],
                                                 tol=params["connect_tol"] / 10, seed=seed)
        out[name] = table
    return out


def control_results(controls: Mapping[str, pd.DataFrame], tol: float,
                    seed: int = 0) -> dict[str, dict[str, Any]]:
    """The ``control`` of each claim of :func:`connectivity_claims`: the claim's own
    statistic and interval on planted pairs where the claim is false by construction.

    * the four connectivity claims and ``one_round``: the fraction of two-ball pairs
      connected at ``tol`` (after the last round and on the dense grid, and after one
      round), exact binomial;
    * ``near_linear``: the median barrier of the random bends of the bypassed pairs around
      the bump centred on their chords, hierarchical bootstrap as in the claim.

    Returns:
        ``{claim_id: {"statement", "result"}}`` (the ``control`` argument of
        :meth:`~mcutils.core.report.ChapterReport.claim`).
    """
    balls = controls["two_balls"]
    flags = connected_flags(balls, tol)
    if "dense" in balls.columns:
        flags = flags * (balls["dense"].to_numpy(float) < tol)
    conn, _ = fraction_result(flags)
    out = {cid: {"statement": f"two-ball region (planted): {len(balls)} pairs whose class "
                              f"region is two disjoint balls, so no path connects them",
                 "result": conn} for cid, _ in CLAIM_KINDS.values()}
    one, _ = fraction_result(one_round_flags(balls, tol))
    out["one_round"] = {"statement": "two-ball region (planted): one round cannot connect "
                                     "its barrier pairs", "result": one}
    bends = controls.get("centred_bends")
    if bends is not None:
        rel, _ = median_result(bends["null"] if len(bends) else [],
                               bends["target"] if len(bends) else [], seed=seed)
        out["near_linear"] = {"statement": f"a planted bump centred on the chords: {len(bends)} "
                                           "bypassed pairs whose barrier any direction clears "
                                           "alike", "result": rel}
    return out


def detour_lengths(controls: Mapping[str, pd.DataFrame], seed: int = 0) -> dict[str, Any]:
    """The median relative length of the bypassed pairs around the wide off-centre bump
    (hierarchical bootstrap) and the geometric lower bound of a connected path's length."""
    detour = controls["detour"]
    bent = bypassed(detour)
    rel, _ = median_result(bent["rel_length"], bent["target"], seed=seed)
    bound = float(detour["min_rel_length"].min()) if len(detour) else float("nan")
    return {"result": rel, "bound": bound}
