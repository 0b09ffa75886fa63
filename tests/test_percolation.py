import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from torch import nn

from mcutils import percolation as perc
from mcutils.chapters import ch02_percolation as ch02
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.report import verdict
from mcutils.percolation import growth
from _toy_models import Halfspace

# ----------------------------------------------------------------------------- lattices


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_random_lattice_extremes_and_density(d):
    rng = np.random.default_rng(0)
    assert not perc.random_lattice(d, 6, 0.0, rng).any()
    assert perc.random_lattice(d, 6, 1.0, rng).all()
    lat = perc.random_lattice(d, 6, 0.3, rng, trials=200)
    assert lat.shape == (200,) + (6,) * d and lat.dtype == bool
    assert abs(lat.mean() - 0.3) < 0.05


def test_random_lattice_seeded_and_validated():
    a = perc.random_lattice(3, 8, 0.5, 7)
    b = perc.random_lattice(3, 8, 0.5, np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(ParameterError, match="p="):
        perc.random_lattice(2, 8, 1.5, 0)
    with pytest.raises(ParameterError, match="d="):
        perc.random_lattice(0, 8, 0.5, 0)


HAND = np.array([[1, 1, 0, 0, 1],
                 [0, 1, 0, 1, 1],
                 [0, 0, 0, 0, 0],
                 [1, 0, 1, 1, 0],
                 [1, 0, 0, 1, 1]], dtype=bool)


@pytest.mark.parametrize("method", perc.METHODS)
def test_clusters_hand_made_lattice(method):
    labels, n = perc.clusters(HAND, method=method)
    assert n == 4
    assert (labels > 0).sum() == HAND.sum() and not labels[~HAND].any()
    sizes = sorted(np.bincount(labels.ravel())[1:].tolist())
    assert sizes == [2, 3, 3, 4]
    # diagonal neighbours do not connect: (1,1) and (0,0) join through (0,1) only
    assert labels[0, 0] == labels[1, 1] and labels[0, 4] == labels[1, 3]
    assert labels[3, 0] != labels[3, 2]


@pytest.mark.parametrize("method", perc.METHODS)
def test_clusters_periodic_joins_across_the_boundary(method):
    lat = np.zeros((4, 4), bool)
    lat[1, 0] = lat[1, 3] = True
    assert perc.clusters(lat, method=method)[1] == 2
    labels, n = perc.clusters(lat, periodic=True, method=method)
    assert n == 1 and labels[1, 0] == labels[1, 3]
    labels, n = perc.clusters(lat, periodic=[True, False], method=method)
    assert n == 2


def _brute_force_clusters(lat, periodic):
    """Union-find over explicit neighbour pairs (the definition, slowly)."""
    parent = {idx: idx for idx in zip(*np.nonzero(lat))}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for idx in parent:
        for ax in range(lat.ndim):
            j = list(idx)
            j[ax] += 1
            if periodic[ax]:
                j[ax] %= lat.shape[ax]
            elif j[ax] >= lat.shape[ax]:
                continue
            j = tuple(j)
            if j in parent:
                parent[find(idx)] = find(j)
    return {idx: find(idx) for idx in parent}


@pytest.mark.parametrize("method", perc.METHODS)
def test_clusters_agree_with_brute_force_including_short_periodic_axes(method):
    rng = np.random.default_rng(3)
    for _ in range(60):
        d = int(rng.integers(1, 4))
        shape = tuple(int(v) for v in rng.integers(1, 5, d))  # sides 1..4, incl. 3
        per = [bool(v) for v in rng.integers(0, 2, d)]
        lat = rng.random(shape) < 0.55
        labels, n = perc.clusters(lat, periodic=per, method=method)
        roots = _brute_force_clusters(lat, per)
        assert n == len(set(roots.values()))
        for a, b in itertools.combinations(list(roots)[:12], 2):
            assert (labels[a] == labels[b]) == (roots[a] == roots[b])


def test_clusters_batched_keeps_trials_apart_and_methods_agree():
    rng = np.random.default_rng(1)
    lat = perc.random_lattice(3, 7, 0.35, rng, trials=5)
    for periodic in (False, True):
        la, na = perc.clusters(lat, periodic=periodic, batched=True, method="ndimage")
        lb, nb = perc.clusters(lat, periodic=periodic, batched=True, method="csgraph")
        assert na == nb
        pairs = np.unique(np.stack([la.ravel(), lb.ravel()]), axis=1)
        assert pairs.shape[1] == na + 1
        for t in range(5):  # no cluster is shared by two trials
            others = np.delete(la, t, axis=0)
            assert not np.isin(np.unique(la[t])[1:], others).any()


def test_largest_cluster():
    mask = perc.largest_cluster(perc.clusters(HAND)[0])
    assert mask.sum() == 4 and mask[3, 2] and mask[4, 4] and not mask[0, 4]
    assert not perc.largest_cluster(np.zeros((3, 3), int)).any()


@pytest.mark.parametrize("boundary", perc.BOUNDARIES)
def test_spanning_at_extremes(boundary):
    for d in (1, 2, 4):
        assert perc.spanning_probability(d, 5, 1.0, 6, 0, boundary=boundary) == 1.0
        assert perc.spanning_probability(d, 5, 0.0, 6, 0, boundary=boundary) == 0.0


def test_spanning_of_hand_made_lattices():
    col = np.zeros((1, 5, 5), bool)
    col[0, :, 2] = True
    assert perc.spans(col).tolist() == [True]
    col[0, 2, 2] = False
    assert perc.spans(col).tolist() == [False]
    # a cluster that only spans through the periodic transverse boundary
    snake = np.zeros((1, 3, 4), bool)
    snake[0, 0, 0] = snake[0, 1, 0] = snake[0, 1, 3] = snake[0, 2, 3] = True
    assert perc.spans(snake, boundary="free").tolist() == [False]
    assert perc.spans(snake, boundary="cylinder").tolist() == [True]


def test_cylinders_with_periodic_sides_of_three_are_refused():
    with pytest.raises(ParameterError, match="periodic sides >= 4"):
        perc.spanning_probability(5, 3, 0.2, 2, 0)
    with pytest.raises(ParameterError, match="periodic sides >= 4"):
        perc.estimate_threshold(7, [3, 5], 4, 0)
    with pytest.raises(ParameterError, match="periodic sides"):
        perc.spans(np.ones((1, 5, 3), bool), boundary="cylinder")
    assert perc.spans(np.ones((1, 5, 3), bool), boundary="free").tolist() == [True]


def test_spanning_probability_is_monotone_and_vectorised_over_p():
    probs = perc.spanning_probability(2, 16, [0.3, 0.59, 0.9], 40, 0)
    assert probs.shape == (3,) and probs[0] == 0.0 and probs[2] == 1.0
    assert 0.0 < probs[1] < 1.0


def test_connection_probability():
    assert perc.connection_probability(3, 6, 1.0, 2, 0) == 1.0
    low, high = perc.connection_probability(2, 24, [0.3, 0.8], 10, 0)
    assert low < 0.05 and high > 0.9


def test_spanning_thresholds_are_exact_site_values():
    # in d = 1 a line spans iff all its sites are open: p* is the largest of L uniforms
    thr = perc.spanning_thresholds(1, 10, 400, 0)
    assert abs(thr.mean() - 10 / 11) < 0.015
    # exact: a sample spans at p* (sites with u <= p*) but not just below it
    rng = np.random.default_rng(5)
    thr = perc.spanning_thresholds(2, 8, 6, rng=np.random.default_rng(5))
    u = rng.random((6, 8, 8), dtype=np.float32)
    for t in range(6):
        assert thr[t] in u[t]
        assert perc.spans((u[t] <= thr[t])[None]).tolist() == [True]
        assert perc.spans((u[t] < thr[t])[None]).tolist() == [False]


def test_spanning_estimator_d1_and_d2():
    est = perc.estimate_threshold(1, [8, 64], 200, 0)
    assert 0.97 < est["pc"] <= 1.0
    est = perc.estimate_threshold(2, [16, 48], 48, 0)
    assert abs(est["pc"] - 0.5927) < 0.03 and 0 < est["err"] < 0.05
    with pytest.raises(ParameterError, match="sizes"):
        perc.estimate_threshold(2, [16], 10, 0)
    with pytest.raises(ParameterError, match="boundary"):
        perc.spanning_probability(2, 8, 0.5, 2, 0, boundary="torus")


def test_anchor_connection_probability():
    shape = (5, 5)
    assert perc.anchor_connection_probability(shape, (0, 0), (4, 4), 1.0, 4, 0) == 1.0
    assert perc.anchor_connection_probability(shape, (0, 0), (4, 4), 0.0, 4, 0) == 0.0
    assert perc.anchor_connection_probability(shape, (2, 2), (2, 3), 0.1, 4, 0) == 1.0


# ----------------------------------------------------------------------------- thresholds


def test_published_values_and_series():
    pub = perc.PUBLISHED_THRESHOLDS
    assert pub[4][0] == pytest.approx(0.1968861) and pub[5][0] == pytest.approx(0.1407966)
    assert pub[4][1] == pub[5][1] == pub[6][1] == "mertens2018percolation"
    vals = [pub[d][0] for d in sorted(pub)]
    assert all(a > b for a, b in itertools.pairwise(vals))
    assert perc.bethe_threshold(3) == pytest.approx(0.2)
    for d in (6, 7, 8):  # the series is close where the simulations are precise
        assert perc.asymptotic_threshold(d) == pytest.approx(pub[d][0], rel=0.02)
    big = perc.asymptotic_threshold(np.array([784, 3072]))
    assert np.all(big > perc.bethe_threshold(np.array([784, 3072])))


# ----------------------------------------------------------------------------- growth


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_growth_at_p_one_counts_the_sites_at_each_l1_distance(d):
    # with every site open, chemical distance = L1 distance: the profile is exact
    prof = perc.growth_profile(d, 1.0, 3, 20, seed=0, cap_factor=1e9)
    t = np.arange(21)
    from math import comb
    shell = [1] + [sum(comb(d, k) * comb(s - 1, k - 1) * 2**k for k in range(1, d + 1))
                   for s in t[1:]]
    assert np.array_equal(prof["n"], np.array(shell, float))
    assert not prof["capped"]


def test_growth_on_the_bethe_lattice_at_p_one_and_zero():
    prof = perc.growth_profile(perc.bethe(3), 1.0, 1, 16, seed=0, cap_factor=1e9)
    assert np.array_equal(prof["n"], [1] + [3 * 2 ** (t - 1) for t in range(1, 17)])
    zero = perc.growth_profile(perc.bethe(4), 0.0, 50, 16, seed=0)
    assert zero["n"][0] == 1 and not zero["n"][1:].any()


def test_growth_profile_mean_matches_branching_on_the_tree():
    # Bethe lattice: E N(t) = z p (z - 1)^(t - 1) p^(t - 1) exactly
    z, p = 3, 0.45
    prof = perc.growth_profile(perc.bethe(z), p, 4000, 16, seed=1)
    expect = z * p * ((z - 1) * p) ** (np.arange(1, 6) - 1)
    assert np.allclose(prof["n"][1:6], expect, rtol=0.08)


def test_growth_profile_seeded_and_batched_over_runs():
    a = perc.growth_profile(3, [0.3, 0.32], 50, 32, seed=[4, 2])
    b = perc.growth_profile(3, [0.3, 0.32], 50, 32, seed=[4, 2])
    assert a["n"].shape == (2, 33) and np.array_equal(a["n"], b["n"])
    c = perc.growth_profile(3, [0.3, 0.32], 50, 32, seed=[4, 3])
    assert not np.array_equal(a["n"], c["n"])
    with pytest.raises(ParameterError, match="t_max"):
        perc.growth_profile(3, 0.3, 10, 8)
    with pytest.raises(ParameterError, match="p="):
        perc.growth_profile(3, 1.3, 10, 32)


def test_growth_caps_exploding_runs():
    prof = perc.growth_profile(4, [0.1, 0.5], 20, 64, seed=0, cap_factor=2.0)
    assert prof["capped"].tolist() == [False, True]
    assert np.isnan(prof["n"][1, -1]) and np.isfinite(prof["n"][0]).all()


def test_bending_statistic_on_known_profiles():
    t = np.arange(129, dtype=float)
    power = np.maximum(t, 1) ** 0.7
    assert abs(perc.bending_statistic(power, "curvature")) < 0.02
    assert perc.bending_statistic(np.exp(-0.05 * t), "curvature") < -0.5
    assert perc.bending_statistic(np.exp(0.05 * t), "curvature") > 0.5
    flat = np.ones(129)
    assert perc.bending_statistic(flat, "slope") == 0
    assert perc.bending_statistic(power, "slope") > 0.3  # a power law is not flat
    capped = flat.copy()
    capped[100:] = np.nan
    assert perc.bending_statistic(capped, "slope") == np.inf
    dead = np.r_[1.0, np.zeros(128)]
    assert perc.bending_statistic(dead, "curvature") == -np.inf
    nearly = np.r_[np.ones(64), np.full(65, 0.01)]
    assert perc.bending_statistic(nearly, "slope", min_front=0.1) == -np.inf
    both = perc.bending_statistic(np.stack([power, np.exp(0.05 * t)]), "curvature")
    assert both.shape == (2,) and both[1] > both[0]


def test_growth_threshold_d1_is_one():
    res = perc.growth_threshold(1, runs=4, clusters=200, t_max=32, seed=0, bracket=(0.5, 1.0))
    assert np.all(np.abs(res["estimates"] - 1.0) < 0.01)


@pytest.mark.parametrize("z", [3, 4, 6])
def test_growth_threshold_on_bethe_lattices_is_one_over_z_minus_one(z):
    res = perc.growth_threshold(perc.bethe(z), runs=4, clusters=200, t_max=32, seed=z)
    assert res["criterion"] == "slope"
    assert res["estimate"] == pytest.approx(1 / (z - 1), rel=0.02)
    assert not res["at_edge"].any()


def test_growth_threshold_d2_within_one_percent():
    res = perc.growth_threshold(2, runs=4, clusters=100, t_max=128, seed=[0, 2])
    assert res["criterion"] == "curvature"
    assert res["estimate"] == pytest.approx(perc.PUBLISHED_THRESHOLDS[2][0], rel=0.01)
    assert 0 < res["sigma"] < 0.01
    assert res["history"].shape == (res["steps"] + res["fit_steps"], 4)


def test_growth_threshold_negative_control_wrong_criterion_misses():
    # the flat-profile criterion is wrong in two dimensions (N(t) grows as a power at
    # p_c): the estimator then lands clearly below p_c, so the check can fail
    res = perc.growth_threshold(2, runs=4, clusters=100, t_max=64, seed=[0, 2],
                                criterion="slope")
    assert res["estimate"] < 0.97 * perc.PUBLISHED_THRESHOLDS[2][0]


def test_growth_threshold_flags_a_bracket_that_misses_pc():
    res = perc.growth_threshold(perc.bethe(4), runs=3, clusters=100, t_max=32, seed=0,
                                bracket=(0.4, 0.6))
    assert res["at_edge"].all()


def test_default_bracket_holds_the_published_values():
    for d, (pc, _) in perc.PUBLISHED_THRESHOLDS.items():
        lo, hi = growth.default_bracket(d)
        assert lo < pc < hi and lo == pytest.approx(1 / (2 * d - 1))
    assert growth.default_bracket(perc.bethe(4))[0] < 1 / 3


def test_growth_threshold_validation():
    with pytest.raises(ParameterError, match="runs"):
        perc.growth_threshold(2, runs=1)
    with pytest.raises(ParameterError, match="bracket"):
        perc.growth_threshold(2, bracket=(0.7, 0.6))
    with pytest.raises(ParameterError, match="criterion"):
        perc.growth_threshold(2, criterion="wiggle")
    with pytest.raises(ParameterError, match="fit_steps"):
        perc.growth_threshold(2, fit_steps=1)


def test_threshold_table_growth_and_spanning():
    table = perc.threshold_table([2, 3], estimator=["spanning", "growth"], runs=3,
                                 clusters=[10, 60], t_max=[32, 32], sizes=[[8, 16], [4, 8]],
                                 trials=8, seed=0)
    assert list(table.index) == [2, 3]
    assert table.loc[2, "estimator"] == "spanning" and table.loc[3, "estimator"] == "growth"
    assert table.loc[3, "n"] == 3 and len(table.attrs["samples"][3]) == 3
    assert (table.ci_lo <= table.estimate).all() and (table.estimate <= table.ci_hi).all()
    assert table.loc[3, "published"] == pytest.approx(0.3116077)
    again = perc.threshold_table([3], runs=3, clusters=60, t_max=32, seed=0)
    assert again.loc[3, "estimate"] == table.loc[3, "estimate"]  # per-dimension seeding
    with pytest.raises(ParameterError, match="estimator"):
        perc.threshold_table([2], estimator="guess")
    with pytest.raises(ParameterError, match="sizes"):
        perc.threshold_table([2], estimator="spanning")


def test_deviation_interval_and_its_negative_control():
    pub = 0.2
    good = {"estimate": 0.2004, "ci": [0.1990, 0.2018], "n": 8}
    dev = perc.deviation_interval(good, pub)
    assert dev["ci"][0] == 0 and dev["ci"][1] == pytest.approx(0.009)
    assert verdict(dev["ci"], 0.01, "<=") == "reproduced"
    off = {"estimate": 0.206, "ci": [0.2045, 0.2075], "n": 8}  # 3% high: contradicts
    dev = perc.deviation_interval(off, pub)
    assert dev["ci"][0] == pytest.approx(0.0225) and verdict(dev["ci"], 0.01, "<=") == (
        "not reproduced")
    wide = {"estimate": 0.2, "ci": [0.19, 0.21], "n": 8}  # honest but too imprecise
    assert verdict(perc.deviation_interval(wide, pub)["ci"], 0.01, "<=") == "inconclusive"


def test_falling_interval_and_its_negative_control():
    rng = np.random.default_rng(0)
    falling = {d: 1 / (2 * d - 1) * (1 + 0.003 * rng.standard_normal(8)) for d in (4, 5, 6)}
    iv = perc.falling_interval(falling)
    assert verdict(iv["ci"], 0.0, ">=") == "reproduced"
    flat = {4: falling[4], 5: falling[4] * 1.01, 6: falling[6]}  # 5 above 4: contradicts
    assert verdict(perc.falling_interval(flat)["ci"], 0.0, ">=") == "not reproduced"
    with pytest.raises(ParameterError, match="consecutive"):
        perc.falling_interval({2: falling[4], 4: falling[5]})
    shuffled = perc.shuffled_dims(falling, seed=0)  # its negative control: no trend
    assert {d: len(v) for d, v in shuffled.items()} == {d: len(v) for d, v in falling.items()}
    assert sorted(np.concatenate(list(shuffled.values()))) == sorted(
        np.concatenate(list(falling.values())))
    assert verdict(perc.falling_interval(shuffled)["ci"], 0.0, ">") != "reproduced"


def test_bethe_control_fails_the_within_check_and_matches_its_own_threshold():
    tree = perc.bethe_control([3], runs=4, clusters=200, t_max=32, seed=0)[3]
    assert tree["n"] == 4
    bad = perc.deviation_interval(tree, perc.PUBLISHED_THRESHOLDS[3][0])
    assert verdict(bad["ci"], 0.01, "<=") == "not reproduced"  # p_c(Z^3) is not 1/5
    good = perc.deviation_interval(tree, 1 / 5)  # the claim that holds on the tree
    assert verdict(good["ci"], 0.02, "<=") == "reproduced"


# ----------------------------------------------------------------------------- fields


def _sweep_onsets(field, anchors):
    """Open cells one by one (lowest first) and label: the definition, slowly."""
    shape = field.shape
    order = np.argsort(field, axis=None, kind="stable")
    n = field.size
    a, b = anchors
    conn = span = None
    for k in range(n + 1):
        open_ = np.zeros(n, bool)
        open_[order[:k]] = True
        open_ = open_.reshape(shape)
        forced = open_.copy()
        forced[a] = forced[b] = True
        lab, _ = ndimage.label(forced)
        if conn is None and lab[a] == lab[b]:
            conn = k / n
        lab, _ = ndimage.label(open_)
        if span is None and np.intersect1d(lab[0][lab[0] > 0], lab[-1][lab[-1] > 0]).size:
            span = k / n
    return conn, span


def test_onsets_match_a_brute_force_sweep():
    rng = np.random.default_rng(0)
    for d, n in ((1, 9), (2, 6), (3, 4)):
        shape = (n,) * d
        anchors = ((1,) + (n // 2,) * (d - 1), (n - 2,) + (n // 2,) * (d - 1))
        vals = rng.random((5,) + shape)
        on = perc.onsets(vals, anchors)
        for i in range(5):
            conn, span = _sweep_onsets(vals[i], anchors)
            assert on["p_conn"][i] == pytest.approx(conn)
            assert on["p_span"][i] == pytest.approx(span)
            r = np.argsort(np.argsort(vals[i], axis=None)) + 1
            ia, ib = (np.ravel_multi_index(c, shape) for c in anchors)
            assert on["p_in"][i] == pytest.approx(max(r[ia], r[ib]) / vals[i].size)


def test_onsets_hand_made_line():
    line = np.array([[0.1, 0.9, 0.2, 0.5]])
    on = perc.onsets(line, ((0,), (2,)))
    assert on["p_conn"][0] == 1.0  # the middle cell (the highest) must open
    assert on["p_in"][0] == 0.5 and on["p_span"][0] == 1.0
    adjacent = perc.onsets(line, ((0,), (1,)), span=False)
    assert adjacent["p_conn"][0] == 0.0 and np.isnan(adjacent["p_span"][0])


@pytest.mark.parametrize("d", [2, 3, 4])
def test_a_ball_always_connects_its_interior(d):
    n = 9
    anchors = ((2,) + (4,) * (d - 1), (6,) + (4,) * (d - 1))
    for centre in (anchors, "box"):
        balls = perc.null_fields("convex", (n,) * d, 30, rng=d, centre=centre)
        on = perc.onsets(balls, anchors)
        assert np.all(on["p_conn"] <= on["p_in"])  # joined as soon as both are inside
    # the negative control: independent sites do not have that property
    ind = perc.onsets(perc.null_fields("independent", (n,) * d, 60, rng=d), anchors)
    assert np.mean(ind["p_conn"] <= ind["p_in"]) < 0.97
    assert np.mean(ind["p_in"] < ind["p_conn"]) > 0.03


def test_independent_null_onset_falls_with_dimension_on_nine_point_grids():
    med = []
    for d in (1, 2, 3):
        anchors = ((2,) + (4,) * (d - 1), (6,) + (4,) * (d - 1))
        on = perc.onsets(perc.null_fields("independent", (9,) * d, 80, rng=d), anchors)
        med.append(np.median(on["p_conn"]))
    assert med[0] > med[1] > med[2]
    assert med[0] > 0.75  # d = 1: all three middle cells must open


def test_lag_correlation_and_gaussian_fields():
    ind = perc.lag_correlation(perc.null_fields("independent", (9, 9), 40, rng=0))
    assert abs(ind.mean()) < 0.1  # a small negative finite-grid bias, shared by all fields
    rhos = [perc.lag_correlation(perc.gaussian_field((9, 9), ell, 40, rng=1)).mean()
            for ell in (0.3, 1.0, 3.0)]
    assert rhos[0] < rhos[1] < rhos[2] and rhos[2] > 0.8
    # the sampler's covariance is exp(-r^2 / (2 ell^2)) at every lag
    f = perc.gaussian_field((12,), 2.0, 20000, rng=2)
    for r in (1, 2, 4):
        emp = np.mean(f[:, 0] * f[:, r])
        assert emp == pytest.approx(np.exp(-r * r / 8.0), abs=0.03)
    # monotone transforms do not change the rank-based correlation
    g = perc.gaussian_field((9, 9), 1.5, 5, rng=3)
    assert np.allclose(perc.lag_correlation(g), perc.lag_correlation(np.exp(3 * g)))


def test_match_correlation_length_round_trip():
    shape = (9, 9, 9)
    target = perc.lag_correlation(perc.gaussian_field(shape, 1.7, 30, rng=4)).mean()
    ell = perc.match_correlation_length(target, shape, rng=5)
    assert ell == pytest.approx(1.7, rel=0.1)
    assert perc.match_correlation_length(-0.5, shape) == 0.05  # below reach: lower bound


def test_null_fields_validation():
    with pytest.raises(ParameterError, match="ell"):
        perc.null_fields("correlated", (9, 9), 2)
    with pytest.raises(ParameterError, match="kind"):
        perc.null_fields("smooth", (9, 9), 2)
    with pytest.raises(ParameterError, match="anchors"):
        perc.onsets(np.zeros((1, 9)), ((1,), (1,)))


# ----------------------------------------------------------------------------- networks




def test_anchored_and_random_grids_geometry():
    xa, xb = torch.zeros(1, 3, 3), torch.ones(1, 3, 3)
    grid = perc.anchored_grid(xa, xb, d=3, n=9, margin=2,
                              generator=torch.Generator().manual_seed(0))
    pts = grid.points().view(9, 9, 9, -1)
    assert grid.shape == (9, 9, 9) and grid.anchors == ((2, 4, 4), (6, 4, 4))
    assert torch.allclose(pts[grid.anchors[0]], xa.flatten())
    assert torch.allclose(pts[grid.anchors[1]], xb.flatten(), atol=1e-5)
    gram = grid.directions.double() @ grid.directions.double().T
    assert torch.allclose(gram, grid.step**2 * torch.eye(3, dtype=torch.float64), atol=1e-4)
    assert grid.step == pytest.approx(3.0 / 4)  # |xb - xa| = 3 over 4 steps
    rnd = perc.random_grid(xa, d=2, n=9, step=0.5, generator=torch.Generator().manual_seed(1))
    assert rnd.anchors is None
    assert torch.allclose(rnd.points().view(9, 9, -1)[4, 4], xa.flatten())
    with pytest.raises(ParameterError, match="margin"):
        perc.anchored_grid(xa, xb, d=2, n=9, margin=4)
    with pytest.raises(ParameterError, match="identical"):
        perc.anchored_grid(xa, xa, d=2)


def test_grid_losses_restore_the_callers_mode_and_device():
    model = Halfspace().train()
    grid = perc.anchored_grid(torch.full((1, 2, 2), 0.7), torch.full((1, 2, 2), 0.9), d=2)
    loss, label = perc.grid_losses(model, grid, 1, batch_size=7)
    assert model.training  # train mode restored
    assert next(model.parameters()).device.type == "cpu"
    pts = grid.points().flatten(1)
    z = pts[:, 0] - 0.5
    expect = torch.nn.functional.softplus(-2 * z).view(9, 9).double().numpy()
    assert np.allclose(loss, expect, atol=1e-5)
    assert np.array_equal(label, (z > 0).long().view(9, 9).numpy())
    model.eval()
    assert np.array_equal(perc.label_grid(model, grid), label) and not model.training
    model.train()
    perc.label_grid(model, grid)
    assert model.training


def test_same_class_pairs_restores_mode_and_spreads_classes():
    x = torch.rand(40, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    model = Halfspace().train()
    i, j = perc.same_class_pairs(model, x, y, num_pairs=5, seed=0)
    assert model.training
    assert len(i) == 5 and torch.all(i != j) and torch.all(y[i] == y[j])
    assert set(y[i].tolist()) == {0, 1}
    assert len(perc.same_class_pairs(model, x, 1 - y, 3)[0]) == 0


def test_slice_study_on_a_linear_model_is_convex_like():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 2, 2)
    model = Halfspace().train()
    y = (x.flatten(1)[:, 0] > 0.5).long()
    df = perc.slice_study(model, x, y, dims=[1, 2, 3], anchored=3, unanchored=[2, 2, 0],
                          n=9, seed=0)
    assert model.training
    assert set(df.columns) >= {"kind", "d", "unit", "cls", "p_conn", "p_in", "p_span", "rho",
                               "class_frac", "line_in_class"}
    anch = df[df.kind == "anchored"]
    assert len(anch) == 9 and len(df[df.kind == "random"]) == 4
    # the loss of a linear model is monotone in one direction: its sublevel sets are
    # half-spaces, so the anchors are joined as soon as both are inside
    assert np.all(anch.p_conn <= anch.p_in + 1e-12)
    assert (anch.line_in_class == 1).all() and (anch.rho > 0.5).all()
    again = perc.slice_study(model, x, y, dims=[1, 2, 3], anchored=3, unanchored=[2, 2, 0],
                             n=9, seed=0)
    pd.testing.assert_frame_equal(df, again)
    assert (2 >= max(d for _, d, _ in df.attrs["fields"]))


def test_null_study_matched_lengths_and_summaries():
    slices = pd.DataFrame({"kind": ["anchored"] * 4 + ["random"] * 2, "d": [1, 1, 2, 2, 2, 2],
                           "rho": [0.9, 0.8, 0.7, 0.75, 0.6, 0.65]})
    lengths = perc.matched_lengths({"net": slices}, n=9, seed=0)
    assert set(lengths) == {("net", "anchored", 1), ("net", "anchored", 2), ("net", "random", 2)}
    assert all(v["ell"] > 0 for v in lengths.values())
    nulls = perc.null_study([1, 2], count=[20, 20], n=9, lengths=lengths, span_dims=[2], seed=0)
    assert set(nulls.null) == {"independent", "convex", "correlated:net"}
    conv = nulls[(nulls.null == "convex") & nulls.p_conn.notna()]
    assert np.all(conv.p_conn <= conv.p_in)
    assert nulls[(nulls.d == 1)].p_span.isna().all()
    onset = perc.onset_intervals(nulls, by="null")
    assert set(onset["independent"]) == {1, 2}
    iv = onset["independent"][2]
    assert iv["ci"][0] <= iv["estimate"] <= iv["ci"][1] and iv["n"] == 20
    frac = perc.fraction_intervals(nulls, "null", perc.joined_when_inside(nulls))
    assert frac["convex"][2]["estimate"] == 1.0 and frac["convex"][2]["n"] == 20


def test_match_nulls_finds_the_null_the_data_come_from():
    nulls = perc.null_study([2, 3], count=40, n=9, seed=1)
    nul = {"independent": "independent", "convex": "convex"}
    for source in ("independent", "convex"):
        fake = perc.null_study([2, 3], count=40, n=9, seed=7)
        model_df = fake[(fake.null == source) & fake.p_conn.notna()]
        res = perc.match_nulls(model_df, nulls, nul, seed=0, n_boot=200)
        assert res["best"] == source and res["separated"]
        assert set(res["ratio"][source]) == {2, 3}
    with pytest.raises(ParameterError, match="share no dimension"):
        perc.match_nulls(model_df[model_df.d == 5], nulls, nul)


def test_plane_same_patch_and_trios():
    labels = np.array([[1, 1, 0],
                       [0, 1, 0],
                       [1, 0, 1]])
    assert perc.same_patch(labels, 1, [(0, 0), (1, 1)])
    assert not perc.same_patch(labels, 1, [(0, 0), (2, 2)])
    assert not perc.same_patch(labels, 1, [(0, 0), (0, 2)])  # a cell outside the class
    torch.manual_seed(0)
    x = torch.rand(30, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    model = Halfspace().train()
    table, planes = perc.trio_study(model, x, y, num_trios=4, n=13, margin=1.0, seed=0)
    assert model.training and len(table) == 4 and len(planes) == 4
    assert table.connected.all()  # a half-space is convex: one patch always
    plane = planes[0]
    assert plane["labels"].shape == (13, 13)
    assert plane["cells"][0] == (4, 4) and plane["cells"][1] == (4, 8)


def test_fit_stage_steps_out_of_a_wrong_bracket():
    p = np.array([[0.10, 0.20], [0.12, 0.22], [0.11, 0.21]])
    stat = np.array([[-np.inf, np.inf], [-0.5, np.inf], [-np.inf, 0.3]])
    nxt = growth._next_point(p, stat, np.array([0.11, 0.21]), np.array([False, False]),
                             np.array([0.02, 0.02]), 0.05, 0.5)
    assert nxt[0] == pytest.approx(0.14)  # all negative: one width above the highest point
    assert nxt[1] == pytest.approx(0.18)  # all positive: one width below the lowest point
    mixed = growth._next_point(np.array([[0.1], [0.2]]), np.array([[-0.1], [0.4]]),
                               np.array([0.0]), np.array([False]), np.array([0.05]), 0.0, 1.0)
    assert mixed[0] == pytest.approx(0.15)
    kept = growth._next_point(p, stat, np.array([0.3, 0.7]), np.array([True, True]),
                              np.array([0.02, 0.02]), 0.05, 0.5)
    assert kept.tolist() == [0.3, 0.5]  # fitted roots, clipped to the initial bracket


def test_connection_curves_and_check_per_dim():
    df = perc.connection_curves([2, 3], [0.5927, 0.3116], 4096, 2, rel_p=[0.5, 1.0, 2.0], seed=0)
    assert len(df) == 6 and set(df.L) == {64, 16}
    low = df[df.p_rel == 0.5].connection.to_numpy()
    high = df[df.p_rel == 2.0].connection.to_numpy()
    assert np.all(low < 0.05) and np.all(high > 0.9)
    perc.check_per_dim([1, 2], a=[1, 2], b=3)
    with pytest.raises(ParameterError, match="(?s)a has 1 entries.*c has 3"):
        perc.check_per_dim([1, 2], a=[1], b=3, c=[1, 2, 3])


def _synthetic_table(bias: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows, samples = [], {}
    for d in (4, 5, 6):
        pub = perc.PUBLISHED_THRESHOLDS[d][0]
        runs = pub * (1 + bias) * (1 + 0.004 * rng.standard_normal(10))
        iv = stats.seed_interval(runs)
        samples[d] = runs
        rows.append({"d": d, "estimator": "growth", "estimate": iv["estimate"],
                     "ci_lo": iv["ci"][0], "ci_hi": iv["ci"][1], "sigma": 0.0, "n": 10,
                     "published": pub, "ref": "x", "rel_dev": iv["estimate"] / pub - 1})
    table = pd.DataFrame(rows).set_index("d")
    table.attrs["samples"] = samples
    return table


def test_threshold_summary_and_claims_with_negative_control():
    table = _synthetic_table(0.0)
    summary = ch02.threshold_summary(table)
    assert set(summary["pc"]) == {4, 5, 6} and summary["pc_dmin"] == 4
    assert summary["pc_count"] == 3 and summary["pc_within"] == 3
    assert 0 < summary["series_dev"] < 0.05
    claims = ch02.threshold_claims(table)
    assert [c["claim_id"] for c in claims] == ["pc_d4", "pc_d5", "pc_d6", "pc_falls"]
    assert all(verdict(c["result"]["ci"], c["threshold"], c["direction"]) == "reproduced"
               for c in claims)
    # negative control: runs 3% above the published values contradict the claims
    biased = ch02.threshold_claims(_synthetic_table(0.03))
    assert all(verdict(c["result"]["ci"], c["threshold"], c["direction"]) == "not reproduced"
               for c in biased[:3])
    assert ch02.threshold_summary(_synthetic_table(0.03))["pc_within"] == 0


def test_slices_vs_nulls_orchestration_on_tiny_models():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    nets = {"lin": Halfspace(), "mlp": nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(),
                                                      nn.Linear(8, 2))}
    study = ch02.slices_vs_nulls(nets, x, y, dims=[1, 2, 3], anchored=[4, 4, 4],
                                 unanchored=[0, 3, 3], null_count=[30, 30, 30], seed=0,
                                 min_units=3)
    assert set(study["onset"]) == {"lin", "mlp"}
    assert {"independent", "convex", "correlated_lin", "correlated_mlp"} <= set(
        study["null_onset"])
    assert set(study["span_onset"]) == {"lin", "mlp"} and set(study["match"]) >= {"lin"}
    table = ch02.onset_table(study)
    assert set(table.group) == {"network", "null"} and (table.lo <= table.onset).all()
    mt = ch02.match_table(study)
    assert mt.loc["lin"].best.sum() == 1
    claims = {c["claim_id"]: c for c in ch02.slice_claims(study)}
    assert {"percolation_lin", "null_onset_falls"} <= set(claims)
    assert claims["null_onset_falls"]["result"]["estimate"] > 0
    if "convex_lin" in claims:  # a linear model's regions are half-spaces: always joined
        assert claims["convex_lin"]["result"]["estimate"] == 1.0
    summary = ch02.slice_summary(study)
    assert summary["match_lin"] in perc.NULL_NAMES.values()
    assert summary["line_lin"] == 1.0 and summary["early_lin"] >= 0
    assert study["slices"].early.dtype == bool


def test_ranks_are_a_permutation_with_random_tie_breaking():
    vals = np.array([[0.3, 0.1, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0]])
    r = perc.ranks(vals, rng=0)
    assert r[0].tolist()[1] == 1 and r[0].tolist()[3] == 2
    assert sorted(r[0, [0, 2]].tolist()) == [3, 4]
    assert sorted(r[1].tolist()) == [1, 2, 3, 4]
    ties = {tuple(perc.ranks(vals[1:], rng=s)[0]) for s in range(12)}
    assert len(ties) > 1  # ties are broken at random, not by position
