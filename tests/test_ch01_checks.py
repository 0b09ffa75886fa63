"""Chapter 01's own checks (mcutils.chapters.ch01_input_space_checks) and its findings
module, at tiny sizes: dense re-measurement, the random-bend null of "nearly straight",
the two-ball region at every tolerance, the bypass table and the smoothness comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mcutils import planted
from mcutils.chapters import ch01_input_space as ch01
from mcutils.chapters import ch01_input_space_checks as chk
from mcutils.chapters import ch01_input_space_findings as fnd
from mcutils.chapters import ch01_input_space_paths as paths
from mcutils.core import report
from mcutils.core.checks import ParameterError
from mcutils.models import build_model

FAST = dict(max_rounds=2, steps=40, lr=0.05, deviation_weight=0.1, tv_weight=0.0,
            stop_loss=None, box=None, num_points=None)


def _narrow():
    model, a, c, y = planted.one_ball_pairs(3)
    length = (c - a).flatten(1).norm(dim=1)
    return planted.PlantedBarrier(model, a + 0.53 * (c - a), 0.004 * length, y, 20.0), a, c, y


def test_dense_barriers_follow_the_pair_table_and_find_what_the_search_missed():
    model, a, c, y = _narrow()
    sets = {(0, "real-real"): ch01.PairSet(a, c, y), (1, "real-real"): ch01.PairSet(a[:1], a[:1] + 0.01, y[:1])}
    res = ch01.connect_sets(model, sets, tol=0.01, **{**FAST, "max_rounds": 0})
    table = ch01.pair_table(res, sets, ["seed", "kind"])
    table["dense"] = chk.dense_barriers(model, res, sets, 1000)
    assert list(table["dense"] > 1.0) == [True, True, True, False]
    missed, method = chk.finder_missed(table, 0.01)
    assert missed["n"] == 4 and missed["estimate"] == 0.75  # three of four "connected" missed
    assert method.startswith("exact binomial")
    # the connectivity claim counts a pair as connected only when the dense grid agrees
    claims = ch01.connectivity_claims(table, 0.01)
    assert claims["real_connected"]["result"]["estimate"] == 0.25
    with pytest.raises(ParameterError, match="dense"):
        chk.finder_missed(table.drop(columns="dense"), 0.01)


def test_random_bends_keep_a_wall_and_clear_a_centred_bump():
    """Around a bump centred on the chords every direction clears the barrier alike, so
    the claim's statistic (median barrier of random bends > tol) is not reproduced."""
    model, a, c, y = planted.detour_pairs(6, offset=0.01)
    sets = {("centred",): ch01.PairSet(a, c, y)}
    res = ch01.connect_sets(model, sets, tol=0.001, **{**FAST, "steps": 300, "lr": 0.01})
    table = ch01.pair_table(res, sets, ["kind"])
    bends = chk.bend_barriers(model, table, res, sets, ["kind"], draws=3, tol=1e-4)
    assert len(bends) == len(ch01.bypassed(table)) > 0
    assert np.allclose(bends["chord_deviation"], ch01.bypassed(table)["chord_deviation"])
    claim = chk.bend_claim(bends, 0.01)
    assert report.verdict(claim["result"]["ci"], claim["threshold"], claim["direction"]) == \
        "not reproduced"
    # data where random bends keep barriers: the same statistic is reproduced
    fake = pd.DataFrame({"null": np.full(30, 0.5), "target": np.arange(30) % 3})
    claim = chk.bend_claim(fake, 0.01)
    assert report.verdict(claim["result"]["ci"], claim["threshold"], claim["direction"]) == \
        "reproduced"
    with pytest.raises(ParameterError):
        chk.bend_barriers(model, table, res, sets, ["kind"], draws=0)


def test_path_finder_barriers_match_connect():
    model, a, c, y = planted.bump_pairs()
    res = ch01.connect_sets(model, {"k": ch01.PairSet(a, c, y)}, tol=0.01, **FAST)["k"]
    again = chk.path_finder_barriers(model, res.vertices, y, tol=0.001)
    assert torch.allclose(again, res.barriers, atol=1e-4)


def test_two_ball_region_is_not_connected_at_any_tolerance():
    rows = chk.two_ball_tolerances({**FAST, "steps": 10}, [0.1, 0.001, 0.01], num_pairs=4,
                                   points_per_segment=50)
    assert list(rows["tol"]) == [0.001, 0.01, 0.1]
    assert (rows["connected"] == 0).all() and (rows["dense_connected"] == 0).all()
    assert (rows["min_barrier"] > 1.0).all() and (rows["hi"] < 0.7).all()


def test_need_bypass_table_counts_the_barrier_pairs():
    model, a, c, y = planted.bump_pairs()
    sets = {(0, "real-real"): ch01.PairSet(a, c, y),
            (0, "real-synthetic"): ch01.PairSet(a, a + 1e-3, y)}
    res = ch01.connect_sets(model, sets, tol=0.01, **FAST)
    table = ch01.pair_table(res, sets, ["seed", "kind"])
    table["dense"] = chk.dense_barriers(model, res, sets, 100)
    tab = chk.need_bypass_table(table, 0.01).set_index("kind")
    assert tab.loc["real-real", "need a bypass"] == 3
    assert tab.loc["real-synthetic", "need a bypass"] == 0
    assert tab.loc["real-real", "connected after round 2"]["n"] == 3
    assert "connected (dense check)" in tab.columns
    assert tab.loc["real-real", "median length / |C - A|"] > 1


def test_smoothness_sweep_finds_the_weight_that_smooths():
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                        hidden=16, mean=(0.3,), std=(0.4,)).eval()
    synth = dict(lr=0.05, stop_loss=None, init_std=0.5, weight_decay=0.0, tv_reduction="sum",
                 space="normalized", box=None)
    sweep = chk.smoothness_sweep(model, torch.tensor([0, 1, 2, 0, 1, 2]), (1, 8, 8),
                                 [0.0, 1.0], synth, steps=40)
    assert list(sweep["weight"]) == [0.0, 1.0]
    assert sweep.loc[0, "gradient ratio"] == 0 and sweep.loc[1, "gradient ratio"] > 0
    assert sweep.loc[0, "tv_ratio"]["estimate"] > 0.5
    assert sweep.loc[1, "tv_ratio"]["ci"][1] < 1  # a heavy penalty smooths A
    view = fnd.smoothness_view(sweep)
    assert "weight of the penalty on A" in view.columns
    with pytest.raises(ParameterError):
        chk.smoothness_sweep(model, torch.tensor([0]), (1, 8, 8), [], synth, steps=2)


def test_views_have_words_for_columns():
    summary = pd.DataFrame([dict(kind="real-real", pairs=4, median_linear_barrier=0.1,
                                 barrier_frac=0.5, barrier_frac_ci=[0.1, 0.9], connected=1.0,
                                 connected_ci=[0.4, 1.0])])
    view = fnd.kind_view(summary)
    assert view.loc[0, "connected after the last round"] == {"estimate": 1.0, "ci": [0.4, 1.0]}
    assert list(fnd.straight_view(pd.Series({"a": 0.1, "b": 0.5}))["class"]) == ["b", "a"]
    tb = pd.DataFrame([dict(tol=0.01, pairs=4, connected=0.0, lo=0.0, hi=0.6,
                            dense_connected=0.0, min_barrier=16.0)])
    assert fnd.tolerance_view(tb).loc[0, "connected (connect)"]["ci"] == [0.0, 0.6]
    geo = pd.DataFrame([dict(kind="real-real", statistic="rel_length", median=1.02, lo=1.01,
                             hi=1.03, pairs=5),
                        dict(kind="real-real", statistic="chord_deviation", median=0.1, lo=0.05,
                             hi=0.2, pairs=5)])
    gv = fnd.geometry_view(geo)
    assert len(gv) == 1 and gv.loc[0, "median chord deviation"]["ci"] == [0.05, 0.2]
    assert paths.synthesis_kwargs(ch01.PARAMETERS.defaults())["tv_weight"] == 2.5e-7


def test_claim_notes_explain_what_was_not_reproduced():
    def spec(est, lo, hi, thr, direction):
        return {"result": {"estimate": est, "ci": [lo, hi], "n": 9}, "threshold": thr,
                "direction": direction}
    notes = fnd.claim_notes({"near_linear": spec(0.05, 0.005, 0.2, 0.01, ">"),
                             "real_connected": spec(1.0, 0.96, 1.0, 0.95, ">="),
                             "smoother_a": spec(0.99, 0.96, 1.02, 1.0, "<")})
    assert set(notes) == {"near_linear", "smoother_a"}
    assert "interval over classes" in notes["near_linear"]
    few = fnd.claim_notes({"real_connected": spec(1.0, 0.8, 1.0, 0.95, ">="),
                           "synthetic_connected": spec(0.7, 0.35, 0.93, 0.95, ">=")})
    assert few["real_connected"].startswith("too few pairs")
    assert few["synthetic_connected"] == "3 of 9 pairs are not connected after the last round"
    none = {"result": {"estimate": float("nan"), "ci": [float("nan")] * 2, "n": 0},
            "threshold": 0.95, "direction": ">="}
    assert fnd.claim_notes({"synthetic_connected": none}) == {
        "synthetic_connected": "no pairs of this kind"}
    low = fnd.claim_notes({"near_linear": spec(0.002, 0.001, 0.004, 0.01, ">")})
    assert "clear the barrier too" in low["near_linear"]


def test_detour_offset_moves_the_bump_towards_the_chords():
    far, a, c, _ = planted.detour_pairs(4, seed=0)
    near, a2, c2, _ = planted.detour_pairs(4, seed=0, offset=0.01)
    assert torch.equal(a, a2) and torch.equal(c, c2)
    mid = 0.5 * (a[0] + c[0])
    assert float((near.m - mid).norm()) == pytest.approx(0.01 * 2 ** 0.5, rel=1e-5)
    assert float((far.m - mid).norm()) == pytest.approx(0.05 * 2 ** 0.5, rel=1e-5)
    with pytest.raises(ValueError):
        planted.detour_pairs(4, offset=0.0)
