"""Chapter 03's modules at a tiny size: its parameter schema and cross-checks, the cached
study parts (a pool part then the notebook's call give identical results), the studies the
notebook calls (synthetic pairs at every budget, sweep, barrier evolution), ``findings`` and
the figures. The lower-level studies are tested in ``tests/test_inputspace_studies.py``."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from mcutils.chapters import ch01_input_space as ch01
from mcutils.chapters import ch03_evolution as evolution_mod
from mcutils.chapters import ch03_findings as findings_mod
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
             num_classes_used=2, num_points=9, synth_steps=8, bypass_steps=4, max_rounds=1,
             check_points=20, fast_steps=3,
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
    for group in ("# synthetic inputs:", "# free optimisation of barrier points", "# budget curve",
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
    (dict(budget_factors=[]), "must be non-empty lists"),
    (dict(budget_factors=[0.25, 1.0]), "at least 3 distinct factors"),
    (dict(budget_factors=[0.5, 0.75, 1.0]), "at least 4x the smallest"),
    (dict(budget_factors=[1.0, 0.25, 0.0625]), "the last the largest"),
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
    claims = findings_mod.untrained_claims(pd.DataFrame(rows), 0.01, trained_label="trained tiny")
    assert claims["connected_tiny"]["statement"] == (
        "untrained tiny: fraction of synthetic pairs connected (< 0.01 nats) within 1 rounds "
        ">= 0.9")
    assert claims["trained_straighter"]["paper"] == ch03.CLAIMS["trained_straighter"]["paper"]


def test_study_settings():
    cfg = ch03.study_settings(tiny_params(pixel_box=[0.0, 1.0]))
    assert cfg.classes == [0, 1] and tuple(cfg.info.shape) == (1, 8, 8)
    assert cfg.synth["steps"] == 8 and cfg.synth["box"] == (0.0, 1.0)
    assert cfg.connect["max_rounds"] == 1 and cfg.connect["constrain"] is False
    assert cfg.connect["bypass_all"] is True  # the paper bypasses both segments
    quarter = ch03.scaled_settings(cfg, 0.25)
    assert (quarter.synth["steps"], quarter.connect["steps"]) == (2, 1)
    assert cfg.synth["steps"] == 8  # a copy
    fast = ch03.scaled_settings(cfg, lr=1.0, steps=3)
    assert (fast.synth["lr"], fast.connect["lr"], fast.connect["steps"]) == (1.0, 1.0, 3)
    with pytest.raises(ParameterError, match="factor"):
        ch03.scaled_settings(cfg, 0.0)
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
    ch = evolution_mod.evolution_changes(pd.DataFrame(rows))
    assert (ch["first"], ch["last"]) == (0, 4)
    assert ch["max_loss"]["fixed at init"]["estimate"] == pytest.approx(4.0)
    assert ch["max_loss"]["re-synthesised"]["estimate"] == pytest.approx(-0.4)
    assert ch["gap"]["fixed at init"]["estimate"] == pytest.approx(0.0)


def test_a_pool_part_then_the_notebook_give_identical_results(tmp_path, monkeypatch):
    """The runner's pool part stores what the notebook's call then loads: same numbers,
    and the second call is a cache hit (it never computes)."""
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    params = tiny_params()
    assert ch03.pool_parts(dict(params, profile="smoke")) == []
    parts = ch03.pool_parts(params)
    labels = [label for label, _, _ in parts]
    assert len(labels) == len(set(labels))
    assert {fn for _, fn, _ in parts} == {"study_part", "evolution_part"}
    assert all(callable(getattr(ch03, fn)) for _, fn, _ in parts)
    label, fn, kwargs = next(t for t in parts if t[0] == "untrained-x1-s0")
    first = getattr(ch03, fn)(**kwargs)
    assert "dense_barrier" in first["table"]  # the largest budget gets the dense check
    calls = []
    monkeypatch.setattr(ch03, "build_untrained", lambda *a, **k: calls.append(1))
    again = ch03.study_part(params, "untrained", 0, 1.0)
    assert calls == [] and again["table"] == first["table"]  # loaded, never recomputed
    assert (again["a"] == first["a"]).all()
    monkeypatch.undo()
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    evo = evolution_mod.evolution_part(params, 0)
    assert evo.equals(ch03.evolution_part(params, 0))
    with pytest.raises(ParameterError, match="kind"):
        ch03.study_part(params, "nope", 0)
    with pytest.raises(ParameterError, match="width"):
        ch03.study_part(params, "sweep", 0)


def test_the_budget_curve_s_parts_share_one_synthesis_run(tmp_path, monkeypatch):
    """The parts of one seed at every budget synthesise once, to the largest budget, and
    each part's table is the one a study with its own synthesis at that budget gives."""
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    params = tiny_params(budget_factors=[0.25, 0.5, 1.0], synth_steps=16, synth_lr=0.5,
                         synth_stop_loss=0.05, check_points=0)
    runs = []
    real = ch03.synthetic_pairs_at
    monkeypatch.setattr(ch03, "synthetic_pairs_at",
                        lambda *a, **k: runs.append(list(a[3])) or real(*a, **k))
    parts = {f: ch03.study_part(params, "untrained", 0, f) for f in (0.25, 1.0, 0.5)}
    assert runs == [[4, 8, 16]]  # one run, from the first part, serves all three
    for f, part in parts.items():
        conf, cfg = ch03._part_setup(params, "untrained", 0, f, None)
        alone = ch03.untrained_study({0: ch03.build_untrained(params["model"], params["dataset"],
                                                              0)},
                                     cfg.classes, conf["shape"], conf["pairs_per_class"],
                                     conf["synth"], conf["connect"], conf["connect_tol"],
                                     num_points=conf["num_points"])
        assert alone.to_dict("list") == part["table"], f
    steps = {f: part["table"]["steps_a"] + part["table"]["steps_c"] for f, part in parts.items()}
    assert max(steps[0.25]) <= 4 and max(steps[1.0]) > 4  # the budgets differ
    with pytest.raises(ParameterError, match="synth_budgets"):
        ch03.shared_synthesis(dict(conf, synth_budgets=[3]), 0, None)
    # the sweep shares within a width's cells only: the base width runs both factors, the
    # other width only the base factor, so its part synthesises its own budget alone
    sweep = tiny_params(synth_steps=16)  # sweep_widths [2, 4], sweep_step_factors [1, 2]
    assert ch03._part_setup(sweep, "sweep", 0, 1.0, 2)[0]["synth_budgets"] == [16, 32]
    assert "synth_budgets" not in ch03._part_setup(sweep, "sweep", 0, 1.0, 4)[0]
    assert "synth_budgets" not in ch03._part_setup(sweep, "trained", 0, 1.0, None)[0]


def test_dense_barriers_find_what_a_coarse_grid_misses():
    """A planted bump between two grid points: the dense check sees it."""
    from mcutils.planted import bump_pairs

    model, a, c, t = bump_pairs()
    verts = [torch.stack([a[i], c[i]]) for i in range(len(a))]
    end = torch.zeros(len(a))
    dense = ch03.dense_barriers(model, verts, t, end, 201)
    coarse = ch03.dense_barriers(model, verts, t, end, 2)
    assert (dense > coarse + 0.1).all()
    with pytest.raises(ParameterError):
        ch03.dense_barriers(model, verts, t, end, 1)


def test_the_chapter_at_a_tiny_size(tmp_path, monkeypatch):
    """Every step the notebook runs, on digits at a tiny size, through ``findings`` (its
    claims, budget curve, summary) and the figures."""
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "cache"))
    params = tiny_params()
    cfg = ch03.study_settings(params)
    syn = ch03.synthetic_study(params, cfg)
    assert len(syn["untrained"]) == 2 and len(syn["trained"]) == 2 and len(syn["fast"]) == 2
    assert sorted(syn["budgets"]) == [0.0625, 0.25, 1.0]
    assert syn["budgets"][1.0]["round_1"].tolist() == syn["untrained"]["round_1"].tolist()
    assert set(syn["trained"].state) == {"trained"} and set(syn["pairs"]) == {0}
    assert len(syn["end_losses"]) == 4 and 0 <= syn["reached"] <= 1
    assert len(syn["boxed_loss"]) == 2 and syn["ratio_iv"]["n"] == 1  # seeds (hierarchical)
    sweep, base, alternatives = ch03_sweep.run_sweep(params, cfg)
    assert base == dict(width=2, step_factor=1) and alternatives == dict(width=4, step_factor=2)
    cells = sweep.groupby(["width", "step_factor"]).seed.unique().map(sorted).to_dict()
    assert cells == {(2, 1): [0, 1], (4, 1): [0], (2, 2): [0]}
    effects = ch03_sweep.factor_effects(sweep, base, alternatives, 0.01, 0.1)
    evolution = evolution_mod.track_training(params, cfg)
    assert sorted(evolution.step.unique()) == [0, 1, 2]
    assert set(evolution.protocol) == {"re-synthesised", "fixed at init"}  # both protocols
    evo = {m: evolution_mod.evolution_summary(evolution, m) for m in ["max_loss", "end_loss"]}
    changes = evolution_mod.evolution_changes(evolution)

    chapter = report.ChapterReport("03", params=params, expected=ch03.expected_claims("small_cnn"))
    glued = {}
    chapter.record = lambda name, value, digits=4: glued.setdefault(
        name, report.plain(value, digits))
    claims = findings_mod.findings(chapter, params, synthetic=syn, sweep=sweep, base=base,
                                   alternatives=alternatives, effects=effects, evo=evo,
                                   changes=changes)
    assert set(claims) == {"connected_small_cnn", "connected_small_cnn_w2", "connected_pooled",
                           "straight_barriers", "trained_straighter"}
    assert list(chapter.claims) == list(claims)
    for cid in ch03.expected_claims("small_cnn"):  # every asserted claim: a method, a control
        entry = chapter.claims[cid]
        assert entry["method"] != "not stated" and entry["control"]["n"] >= 1
    main = chapter.claims["connected_small_cnn"]
    assert main["control"]["verdict"] == "not reproduced"
    assert main["budget"] == 8.0 and isinstance(main["settled"], bool)  # read at the largest
    assert "ch03_connected_small_cnn_vs_budget" in glued
    assert glued["ch03_control_connected_any_tol"] == 0.0
    assert glued["ch03_model"] == "small_cnn" and glued["ch03_num_seeds"] == 1
    assert glued["ch03_resnet_pairs"] == 4 and glued["ch03_sweep_base_num_seeds"] == 2
    assert glued["ch03_track_batches"] == 2
    assert glued["ch03_budget_steps"] == "1/1, 2/1, 8/4"
    for key in ("width", "steps", "tol"):
        assert f"ch03_effect_{key}_ci" in glued
    for key in ("gap", "abs"):
        assert f"ch03_step_effect_{key}_ci" in glued
    for key in ("fresh", "fixed"):
        assert not math.isnan(glued[f"ch03_evo_{key}_start"])
    assert glued["ch03_dense_pairs"] == 4  # untrained and trained pairs
    from mcutils.chapters.ch03_verdicts import deviation_rows

    rows = {r["setting"]: r for r in deviation_rows(params, (1, 8, 8), 2, 2)}
    assert "variant: the book's earlier fast settings (not the claims')" in rows
    assert "which segments round 2 bypasses" not in rows  # bypass_all: as the paper

    both = pd.concat([syn["untrained"], syn["trained"]], ignore_index=True)
    curve = ch01.tolerance_curve(both, [0.01, 0.1], by="model", n_boot=50)
    cell_curve = ch03_sweep.cell_tolerance_curve(sweep, [0.01, 0.1])
    budget = findings_mod.budget_curve(syn["budgets"], 8, 4, 0.01, 0.01, 5e-4)
    figs = [figures.plot_synthetic_pairs(syn["pairs"][0], cfg.info.classes, "small_cnn", 0),
            figures.plot_rounds(both, curve, 0.01, 1, "small_cnn"),
            figures.plot_path_lengths(both),
            figures.plot_sweep(sweep, cell_curve, 0.01, 1, 5e-4),
            figures.plot_evolution(evo, 1),
            figures.plot_budget_curve(budget, 0.01, 0.01)]
    assert [len(f.axes) >= 1 for f in figs] == [True] * 6
    assert figs[1].axes[0].get_ylabel() == "barrier (nats)"
    assert "cell" not in sweep  # the sweep's figure labels a copy
    for f in figs:
        plt.close(f)


def test_the_study_cache_key_covers_the_numerical_modules_it_calls():
    """A change to a helper of the bypass or the synthesis must change the key: the listed
    modules are closed under their mcutils imports (up to the exempt ones), and a module's
    source enters the key."""
    import ast
    import importlib
    import inspect

    from mcutils.chapters import ch03_study
    from mcutils.core.store import code_version

    listed = set(ch03_study.ALGORITHM_MODULES)
    for name in listed:
        tree = ast.parse(inspect.getsource(importlib.import_module(name)))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcutils"):
                assert node.module in listed or node.module.startswith(
                    ch03_study.KEY_EXEMPT), (name, node.module)
    fn = [ch03_study.cached]
    assert ch03_study.study_code_version(fn) != code_version(*fn)
    assert ch03_study.study_code_version(fn) == ch03_study.study_code_version(fn)
    assert ch03_study.study_code_version(fn) != ch03_study.study_code_version(
        [ch03_study.build_untrained])
