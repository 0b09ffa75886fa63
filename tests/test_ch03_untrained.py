"""Chapter 03's module at a tiny size: its parameter schema and cross-checks, the studies
the notebook calls (synthetic pairs, sweep, barrier evolution), ``findings`` and the
figures. The lower-level studies are tested in ``tests/test_inputspace_studies.py``."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from mcutils.chapters import ch01_input_space as ch01
from mcutils.chapters import ch03_sweep
from mcutils.chapters import ch03_untrained as ch03
from mcutils.chapters import ch03_untrained_figures as figures
from mcutils.core import report
from mcutils.core.checks import ParameterError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def tiny_params(**changes):
    """The chapter's defaults at a tiny size: digits, two classes, a few steps."""
    p = ch03.PARAMETERS.defaults()
    p.update(dataset="digits", num_epochs=1, batch_size=32, train_subset=64, seeds=[0],
             pairs_per_class=1,
             num_classes_used=2, num_points=9, synth_steps=5, bypass_steps=3, max_rounds=1,
             tolerances=[0.01, 0.1], sweep_model="small_cnn", sweep_widths=[2, 4],
             sweep_step_factors=[1, 2], sweep_seeds=[0], sweep_base_seeds=[0, 1],
             track_batches=2, track_every=1, track_batch_size=16, track_points=5,
             track_synth_steps=3)
    p.update(changes)
    return ch03.PARAMETERS.validate(p)


def test_schema_matches_the_notebook_s_old_checks():
    defaults = ch03.PARAMETERS.defaults()
    assert ch03.PARAMETERS.validate(defaults) == defaults
    assert list(defaults)[:10] == ["dataset", "model", "num_epochs", "lr", "batch_size",
                                   "train_subset", "seed", "device", "check_claims", "profile"]
    src = ch03.PARAMETERS.cell_source()
    for group in ("# synthetic inputs:", "# free optimisation of barrier points:",
                  "# the narrow ResNet:", "# barrier evolution during training"):
        assert group in src
    bad = dict(defaults, num_classes_used=1, tolerances=[0.01, 20.0], sweep_widths=[0, 4],
               sweep_model="nope", pairs_per_class=101)
    with pytest.raises(ParameterError) as err:
        ch03.PARAMETERS.validate(bad)
    for name in ("num_classes_used=1", "tolerances=20.0", "sweep_widths=0",
                 "sweep_model='nope'", "pairs_per_class=101"):
        assert name in str(err.value)
    ch03.PARAMETERS.validate(dict(defaults, num_classes_used=None, pixel_box=[0.0, 1.0]))


@pytest.mark.parametrize("changes, message", [
    (dict(seeds=[]), "must be non-empty lists"),
    (dict(sweep_step_factors=[]), "must be non-empty lists"),
    (dict(sweep_seeds=[7]), "must include sweep_seeds=[7]"),
    (dict(connect_tol=0.1, tol=0.01), "connect_tol=0.1 must not exceed tol=0.01"),
    (dict(pixel_box=[1.0, 0.0]), "pixel_box=[1.0, 0.0] must be None or [low, high]"),
    (dict(pixel_box=[0.0]), "must be None or [low, high]"),
])
def test_cross_checks_name_the_bad_combination(changes, message):
    with pytest.raises(ParameterError) as err:
        ch03.PARAMETERS.validate({**ch03.PARAMETERS.defaults(), **changes})
    assert message in str(err.value)


def test_expected_claims_and_statements():
    assert ch03.expected_claims("small_cnn") == ["connected_small_cnn", "straight_barriers",
                                                 "trained_straighter"]
    assert set(ch03.CLAIMS) == {"connected_model", "connected_pooled", "straight_barriers",
                                "trained_straighter"}
    rows = [dict(model=m, seed=0, pair=i, target=i, round_0=0.5, round_1=0.0,
                 rel_length=1.5 if m == "tiny" else 1.0)
            for m in ("tiny", "trained tiny") for i in range(6)]
    claims = ch03.untrained_claims(pd.DataFrame(rows), 0.01, trained_label="trained tiny")
    assert claims["connected_tiny"]["statement"] == (
        "untrained tiny: fraction of synthetic pairs connected (< 0.01 nats) within 1 rounds "
        ">= 0.9")
    assert claims["trained_straighter"]["paper"] == ch03.CLAIMS["trained_straighter"]["paper"]


def test_study_settings():
    cfg = ch03.study_settings(tiny_params(pixel_box=[0.0, 1.0]))
    assert cfg.classes == [0, 1] and tuple(cfg.info.shape) == (1, 8, 8)
    assert cfg.synth["steps"] == 5 and cfg.synth["box"] == (0.0, 1.0)
    assert cfg.connect["max_rounds"] == 1 and cfg.connect["constrain"] is False
    assert ch03.study_settings(tiny_params(num_classes_used=None)).classes == list(range(10))


def test_path_geometry_label_cells_and_cell_curve():
    rows = [dict(model=m, width=w, step_factor=f, seed=0, pair=i, target=i,
                 round_0=0.5, round_1=0.0 if w == 4 else 0.05, loss_a=0.1, loss_c=0.2,
                 rel_length=1.0 + i / 10, chord_deviation=i / 100)
            for m in ("a", "b") for w in (2, 4) for f in (1,) for i in range(4)]
    table = pd.DataFrame(rows)
    geo = ch03.path_geometry(table, seed=0)
    assert list(geo.columns) == ["model", "statistic", "median", "lo", "hi", "pairs"]
    assert len(geo) == 4 and set(geo.pairs) == {8}
    labelled = ch03_sweep.label_cells(table)
    assert "cell" not in table and set(labelled.cell) == {"width 2, steps x1", "width 4, steps x1"}
    assert np.allclose(labelled.end_loss_worse, 0.2)
    curve = ch03_sweep.cell_tolerance_curve(table, [0.01, 0.1]).set_index(["cell", "tol"])
    assert curve.loc[("width 4, steps x1", 0.01), "estimate"] == 1.0
    assert curve.loc[("width 2, steps x1", 0.01), "estimate"] == 0.0
    assert curve.loc[("width 2, steps x1", 0.1), "estimate"] == 1.0


def test_evolution_changes():
    rows = [dict(protocol=proto, seed=s, step=step, pair=0,
                 max_loss=1.0 + step * (1 if proto == "fixed at init" else -0.1) + s / 10,
                 gap=0.5, end_loss=0.1)
            for proto in ("re-synthesised", "fixed at init") for s in (0, 1, 2)
            for step in (0, 2, 4)]
    ch = ch03.evolution_changes(pd.DataFrame(rows))
    assert (ch["first"], ch["last"]) == (0, 4)
    assert ch["max_loss"]["fixed at init"]["estimate"] == pytest.approx(4.0)
    assert ch["max_loss"]["re-synthesised"]["estimate"] == pytest.approx(-0.4)
    assert ch["gap"]["fixed at init"]["estimate"] == pytest.approx(0.0)


def test_the_chapter_at_a_tiny_size(capsys):
    """Every step the notebook runs, on digits at a tiny size, through ``findings`` and
    the figures."""
    params = tiny_params()
    cfg = ch03.study_settings(params)
    syn = ch03.synthetic_study(params, cfg)
    assert len(syn["untrained"]) == 2 and len(syn["trained"]) == 2
    assert set(syn["trained"].state) == {"trained"} and set(syn["pairs"]) == {0}
    assert len(syn["end_losses"]) == 4 and 0 <= syn["reached"] <= 1
    assert len(syn["boxed_loss"]) == 2 and syn["ratio_iv"]["n"] == 1  # seeds (hierarchical)
    summary = ch03.synthesis_summary(syn, params).splitlines()
    assert len(summary) == 3 and summary[0].startswith("untrained small_cnn: 2 synthetic pairs")
    sweep, base, alternatives = ch03_sweep.run_sweep(params, cfg)
    assert base == dict(width=2, step_factor=1) and alternatives == dict(width=4, step_factor=2)
    cells = sweep.groupby(["width", "step_factor"]).seed.unique().map(sorted).to_dict()
    assert cells == {(2, 1): [0, 1], (4, 1): [0], (2, 2): [0]}
    effects = ch03_sweep.factor_effects(sweep, base, alternatives, 0.01, 0.1)
    evolution = ch03.track_training(params, cfg)
    assert sorted(evolution.step.unique()) == [0, 1, 2]
    evo = {m: ch03.evolution_summary(evolution, m) for m in ["max_loss", "end_loss"]}
    changes = ch03.evolution_changes(evolution)

    chapter = report.ChapterReport("03", params=params, expected=ch03.expected_claims("small_cnn"))
    glued = {}
    chapter.record = lambda name, value, digits=4: glued.setdefault(
        name, report.plain(value, digits))
    claims = ch03.findings(chapter, params, synthetic=syn, sweep=sweep, base=base,
                           alternatives=alternatives, effects=effects, evo=evo, changes=changes)
    assert set(claims) == {"connected_small_cnn", "connected_pooled", "straight_barriers",
                           "trained_straighter"}  # the sweep's model is the untrained one here
    assert list(chapter.claims) == list(claims)
    for cid in ch03.expected_claims("small_cnn"):  # every asserted claim: a method, a control
        entry = chapter.claims[cid]
        assert entry["method"] != "not stated" and entry["control"]["n"] >= 1
    assert chapter.claims["connected_small_cnn"]["control"]["verdict"] == "not reproduced"
    assert glued["ch03_control_connected_any_tol"] == 0.0
    assert glued["ch03_model"] == "small_cnn" and glued["ch03_num_seeds"] == 1
    assert glued["ch03_resnet_pairs"] == 4 and glued["ch03_sweep_base_num_seeds"] == 2
    assert glued["ch03_track_batches"] == 2 and len(glued["ch03_untrained_by_round"]) == 2
    for key in ("width", "steps", "tol"):
        assert f"ch03_effect_{key}_ci" in glued
    for key in ("fresh", "fixed"):
        assert not math.isnan(glued[f"ch03_evo_{key}_start"])
    assert len(glued) == 78  # with finish()'s three, the notebook's 81
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("untrained small_cnn: connected at 0.01 after rounds 0..1:")
    assert out[1].startswith("narrow ResNet base cell: connected")

    both = pd.concat([syn["untrained"], syn["trained"]], ignore_index=True)
    curve = ch01.tolerance_curve(both, [0.01, 0.1], by="model", n_boot=50)
    cell_curve = ch03_sweep.cell_tolerance_curve(sweep, [0.01, 0.1])
    figs = [figures.plot_synthetic_pairs(syn["pairs"][0], cfg.info.classes, "small_cnn", 0),
            figures.plot_rounds(both, curve, 0.01, 1, "small_cnn"),
            figures.plot_path_lengths(both),
            figures.plot_sweep(sweep, cell_curve, 0.01, 1, 5e-4),
            figures.plot_evolution(evo, 1)]
    assert [len(f.axes) >= 1 for f in figs] == [True] * 5
    assert figs[1].axes[0].get_ylabel() == "barrier (nats)"
    assert "cell" not in sweep  # the sweep's figure labels a copy
    for f in figs:
        plt.close(f)
