"""Chapter 03's verdict helpers (mcutils.chapters.ch03_verdicts): exact intervals with
per-seed values, the hierarchical two-group interval, and the negative controls, each
shown to fail on data where the claim is false and to pass where it holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcutils.chapters import ch03_untrained as ch03
from mcutils.chapters.ch01_input_space import connected_flags
from mcutils.chapters import ch03_verdicts as verdicts
from mcutils.core import report
from mcutils.planted import bump_pairs

#: the chapter's bypass settings (cpu profile) at a few steps
CONNECT = dict(ch03.study_settings(ch03.PARAMETERS.defaults()).connect, steps=40)


def test_fraction_with_seeds_is_exact_and_shows_seeds():
    iv = verdicts.fraction_with_seeds(np.ones(40), np.repeat([0, 1, 2, 3], 10))
    assert iv["ci"][0] == pytest.approx(0.912, abs=5e-4) and iv["ci"][1] == 1.0
    assert iv["per_seed"] == [1.0] * 4 and iv["method"].startswith("exact binomial")
    many = verdicts.fraction_with_seeds(np.r_[np.zeros(6), np.ones(6)], np.arange(12) % 6)
    assert "per_seed" not in many and many["estimate"] == 0.5


def test_planted_controls_fail_and_the_checks_pass_where_the_claim_holds():
    ctl = verdicts.planted_controls(CONNECT, 0.001, 0.01, [0.001, 0.01, 0.1],
                                    num_connected=12, num_barrier=12)
    conn, bar = ctl["connected"]["result"], ctl["barrier"]["result"]
    assert conn["estimate"] == 0.0 and ctl["connected_any_tol"] == 0.0  # at every tolerance
    assert bar["estimate"] == 0.0 and conn["n"] == bar["n"] == 12
    assert report.verdict(conn["ci"], 0.9, ">=") == "not reproduced"
    assert report.verdict(bar["ci"], 0.5, ">=") == "not reproduced"
    # the same checks on a planted barrier that a detour removes: both claims hold
    model, a, c, t = bump_pairs()
    table = verdicts.planted_table(model, a, c, t, dict(CONNECT, steps=100, lr=0.05), 0.001)
    assert connected_flags(table, 0.01).all()
    assert (1 - connected_flags(table, 0.01, "round_0")).all()


def _pairs(values, seeds):
    return pd.DataFrame(dict(rel_length=values, seed=seeds, target=np.arange(len(values)) % 5))


def test_straighter_interval_and_its_shuffled_control():
    rng = np.random.default_rng(0)
    untrained = _pairs(1.3 + 0.1 * rng.random(30), np.repeat([0, 1, 2], 10))
    trained = _pairs(1.0 + 0.02 * rng.random(10), np.zeros(10, int))
    iv = verdicts.straighter_interval(untrained, trained, n_boot=300)
    assert report.verdict(iv["ci"], 0.0, ">") == "reproduced" and iv["n"] == 10
    assert "seed -> class -> pair" in iv["method"]
    u, t = verdicts.shuffled_groups(untrained, trained, seed=0)
    assert sorted(np.r_[u.rel_length, t.rel_length]) == sorted(
        np.r_[untrained.rel_length, trained.rel_length])
    assert (u.seed == untrained.seed).all()
    ctl = verdicts.straighter_interval(u, t, n_boot=300)
    assert report.verdict(ctl["ci"], 0.0, ">") != "reproduced"


def test_hierarchical_interval_is_wider_with_a_seed_effect():
    seeds = np.repeat([0, 1, 2], 10)
    strong = _pairs(1.0 + 0.5 * seeds + 0.01 * np.arange(30) % 3, seeds)
    flat = strong.assign(seed=0)
    ref = _pairs(np.ones(10), np.zeros(10, int))
    wide = verdicts.straighter_interval(strong, ref, n_boot=300)["ci"]
    narrow = verdicts.straighter_interval(flat, ref, n_boot=300)["ci"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


def test_deviation_rows_follow_the_parameters():
    p = ch03.PARAMETERS.defaults()  # the paper's lr, steps and both segments bypassed
    rows = verdicts.deviation_rows(p, (1, 28, 28), 30, 10)
    settings = [r["setting"] for r in rows]
    for gone in ("synthesis learning rate (Adam, normalised units)", "synthesis steps",
                 "bypass steps", "which segments round 2 bypasses"):
        assert gone not in settings
    assert "variant: the book's earlier fast settings (not the claims')" in settings
    assert all(r[k] for r in rows for k in ("setting", "paper", "source", "ours", "effect"))
    assert all("{" not in r["ours"] for r in rows)
    fast = dict(p, synth_lr=1.0, synth_steps=200, bypass_lr=1.0, bypass_steps=200,
                bypass_all=False)
    more = [r["setting"] for r in verdicts.deviation_rows(fast, (1, 28, 28), 30, 10)]
    assert len(more) == len(settings) + 5 and "bypass steps" in more
    effects = pd.DataFrame([dict(factor="step_factor", change="step_factor 1 -> 4",
                                 effect="lowers", estimate=-0.5, lo=-0.8, hi=-0.2, n=10)])
    measured = verdicts.measured_effects(effects)
    assert set(measured) == {"synthesis steps", "bypass steps"}
    row = verdicts.deviation_rows(fast, (1, 28, 28), 30, 10, measured)
    assert [r for r in row if r["setting"] == "bypass steps"][0]["measured"].startswith(
        "narrow ResNet, step_factor 1 -> 4: lowers")
    for r in rows:  # every source names the official code's file and line, or a section
        assert ".py:" in r["source"] or "sec." in r["source"] or "utils.py" in r["source"]


def _budget_table(n, end_loss, barrier, seed=0):
    """``n`` pairs with a worse-endpoint loss and a final barrier over it (one round)."""
    return pd.DataFrame(dict(seed=seed, target=np.arange(n) % 10, pair=np.arange(n),
                             round_0=0.5, round_1=barrier, end_loss=end_loss,
                             loss_a=end_loss, loss_c=end_loss))


def test_absolute_criterion_and_the_step_effect_separate_deeper_endpoints():
    """Deeper endpoints at the larger budget, with the path's top unchanged in absolute
    terms: the gap criterion drops, the absolute one does not; the reading says so.
    Its control: the same drop with the paths themselves higher (absolute criterion drops
    too) is not explained by deeper endpoints."""
    from mcutils.chapters import ch03_findings as fnd

    n = 40
    shallow = _budget_table(n, 0.004, 0.004)  # top 0.008: gap 0.004 < 0.01, abs < 0.01
    deep = _budget_table(n, 0.0005, 0.0075)  # top 0.008 again: gap 0.0075 < 0.01 ...
    deep.loc[:19, "round_1"] = 0.012  # ... except half, whose gap exceeds 0.01
    deep.loc[:19, "end_loss"] = -0.005  # with the top still at 0.007 in absolute terms
    assert fnd.abs_flags(deep, 0.01).all() and not fnd.abs_flags(
        _budget_table(3, 0.5, 0.0), 0.01).any()
    eff = fnd.step_effects({0.25: shallow, 1.0: deep}, 0.01, 0.01).set_index("criterion")
    assert eff.loc["gap", "effect"]["ci"][1] < 0 and eff.loc["absolute", "effect"]["estimate"] == 0
    curve = fnd.budget_curve({0.25: shallow, 1.0: deep, 0.0625: shallow}, 8192, 4096,
                             0.01, 0.01, 5e-4)
    assert list(curve["synth_steps"]) == [512, 2048, 8192]
    assert curve["gap"].iloc[-1]["estimate"] == 0.5 and curve["abs"].iloc[-1]["estimate"] == 1.0
    assert curve["gap"].iloc[-1]["ci"][0] < curve["gap"].iloc[-1]["ci"][1]  # never zero-width
    higher = _budget_table(n, 0.0005, 0.0075)
    higher.loc[:19, "round_1"] = 0.02  # the paths rise: both criteria drop
    ctl = fnd.step_effects({0.25: shallow, 1.0: higher}, 0.01, 0.01).set_index("criterion")
    assert ctl.loc["absolute", "effect"]["ci"][1] < 0
    assert "explain the drop" in fnd.deeper_reading(0.004, 0.0005, eff.loc["gap", "effect"],
                                                    eff.loc["absolute", "effect"])
    assert "do not explain" in fnd.deeper_reading(0.004, 0.0005, ctl.loc["gap", "effect"],
                                                 ctl.loc["absolute", "effect"])
    flat = fnd.step_effects({0.25: shallow, 1.0: shallow}, 0.01, 0.01).set_index("criterion")
    assert "no drop" in fnd.deeper_reading(0.004, 0.004, flat.loc["gap", "effect"],
                                          flat.loc["absolute", "effect"])
    with pytest.raises(Exception):
        fnd.step_effects({1.0: deep}, 0.01, 0.01)
    with pytest.raises(Exception):
        fnd.abs_flags(deep, 0.0)


def test_variant_effect_and_dense_check():
    from mcutils.chapters import ch03_findings as fnd

    paper = _budget_table(20, 0.001, 0.0)
    fast = _budget_table(20, 0.01, 0.0)
    fast.loc[:9, "round_1"] = 0.5
    v = fnd.variant_effect(paper, fast, 0.01)
    assert v["paper"]["estimate"] == 1.0 and v["fast"]["estimate"] == 0.5
    assert v["difference"]["estimate"] == -0.5 and v["fast_end_loss"] == 0.01
    with pytest.raises(Exception):
        fnd.variant_effect(paper, fast.assign(seed=9), 0.01)
    table = paper.assign(dense_barrier=0.0)
    table.loc[:3, "dense_barrier"] = 0.05  # four barriers the search missed
    d = fnd.dense_check(table, 0.01)
    assert d["missed"]["estimate"] == 0.2 and d["connected_dense"]["estimate"] == 0.8
    assert d["largest_miss"] == pytest.approx(0.05)
    clean = fnd.dense_check(paper.assign(dense_barrier=0.0), 0.01)  # its control: no miss
    assert clean["missed"]["estimate"] == 0.0 and clean["missed"]["ci"][1] > 0
    with pytest.raises(Exception):
        fnd.dense_check(paper, 0.01)
