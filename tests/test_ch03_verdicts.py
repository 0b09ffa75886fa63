"""Chapter 03's verdict helpers (mcutils.chapters.ch03_verdicts): exact intervals with
per-seed values, the hierarchical two-group interval, and the negative controls, each
shown to fail on data where the claim is false and to pass where it holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcutils.chapters import ch03_untrained as ch03
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
    assert ch03.connected_flags(table, 0.01).all()
    assert (1 - ch03.connected_flags(table, 0.01, "round_0")).all()


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
    p = ch03.PARAMETERS.defaults()
    rows = verdicts.deviation_rows(p, (1, 28, 28), 30, 10)
    settings = [r["setting"] for r in rows]
    assert "synthesis learning rate (Adam, normalised units)" in settings
    assert all(r[k] for r in rows for k in ("setting", "paper", "source", "ours", "effect"))
    assert all("{" not in r["ours"] for r in rows)
    paper = dict(p, synth_lr=0.05, synth_steps=8192, bypass_lr=0.05, bypass_steps=4096)
    left = [r["setting"] for r in verdicts.deviation_rows(paper, (1, 28, 28), 30, 10)]
    assert len(left) == len(settings) - 4 and "bypass steps" not in left
    effects = pd.DataFrame([dict(factor="step_factor", change="step_factor 1 -> 4",
                                 effect="lowers", estimate=-0.5, lo=-0.8, hi=-0.2, n=10)])
    measured = verdicts.measured_effects(effects)
    assert set(measured) == {"synthesis steps", "bypass steps"}
    row = verdicts.deviation_rows(p, (1, 28, 28), 30, 10, measured)
    assert [r for r in row if r["setting"] == "bypass steps"][0]["measured"].startswith(
        "narrow ResNet, step_factor 1 -> 4: lowers")
