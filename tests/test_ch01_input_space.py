"""Chapter 01's schema, model setup, section measurements, figures and findings
(mcutils.chapters.ch01_input_space, ch01_input_space_paths, ch01_input_space_figures), at
tiny sizes. The pair sets, tables and claims are tested in tests/test_inputspace_studies.py.
"""

from __future__ import annotations

import math

import matplotlib
import pandas as pd
import pytest
import torch

from mcutils.chapters import ch01_input_space as ch01
from mcutils.chapters import ch01_input_space_controls as ctl
from mcutils.chapters import ch01_input_space_deviations as devs
from mcutils.chapters import ch01_input_space_figures as figs
from mcutils.chapters import ch01_input_space_findings as fnd
from mcutils.chapters import ch01_input_space_paths as paths
from mcutils.core import report
from mcutils.core.checks import ParameterError
from mcutils.inputspace.synthesis import SyntheticPairs
from mcutils.planted import bump_pairs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _params(**kw):
    return {**ch01.PARAMETERS.defaults(), **kw}


# ------------------------------------------------------------------ parameters


def test_schema_defaults_pass_and_expected_claims_are_declared():
    assert ch01.PARAMETERS.validate(_params()) == _params()
    assert set(ch01.EXPECTED) <= {cid for cid, _ in ch01.CLAIM_KINDS.values()} | {"near_linear"}
    assert set(ch01.PAPER) == {cid for cid, _ in ch01.CLAIM_KINDS.values()} | {
        "one_round", "near_linear"}


@pytest.mark.parametrize("bad, message", [
    (dict(seeds=[]), "at least one sampling seed"),
    (dict(connect_tol=0.05, tol=0.01), "connect_tol=0.05 must not exceed tol=0.01"),
    (dict(model="torchvision:googlenet"), "needs image_folder"),
    (dict(max_rounds=0), "max_rounds=0"),
    (dict(max_rounds=21), "max_rounds=21"),
    (dict(tolerances=[0.01, 0.0]), "tolerances=0.0"),
    (dict(num_points=2), "num_points=2"),
    (dict(num_test=10), "num_test=10"),
    (dict(claim_frac=1.5), "claim_frac=1.5"),
    (dict(bend_draws=0), "bend_draws=0"),
    (dict(check_points=1), "check_points=1"),
    (dict(image_size=16), "image_size=16"),
    (dict(seeds=[0, -1]), "seeds=-1"),
    (dict(synth_lr=0.0), "synth_lr=0.0"),
    (dict(variant_tv_weight=-1.0), "variant_tv_weight=-1.0"),
    (dict(num_test=None), "num_test=None is not allowed"),
])
def test_schema_rejects_bad_parameters(bad, message):
    with pytest.raises(ParameterError, match=message.replace("[", r"\[")):
        ch01.PARAMETERS.validate(_params(**bad))


def test_schema_allows_an_image_folder_for_torchvision_models():
    ch01.PARAMETERS.validate(_params(model="torchvision:googlenet", image_folder="/images"))
    ch01.PARAMETERS.validate(_params(image_folder=None, train_subset=None))
    assert ch01.seeds_given({"seeds": [0]}) is None
    assert ch01.connect_tol_within_tol({"connect_tol": 0.01, "tol": 0.01}) is None
    assert ch01.imagenet_needs_folder({"model": "small_cnn", "image_folder": None}) is None


def test_kwargs_follow_the_parameters():
    p = _params(synth_steps=7, bypass_steps=9, variant_steps=3, max_rounds=2)
    synth = paths.synthesis_kwargs(p)
    assert synth["steps"] == 7 and synth["space"] == "normalized" and synth["box"] is None
    paper, variant = paths.bypass_kwargs(p), paths.bypass_kwargs(p, variant=True)
    assert paper["steps"] == 9 and paper["stop_loss"] is None and paper["space"] == "normalized"
    assert variant["steps"] == 3 and variant["stop_loss"] == "auto"
    assert variant["box"] == (0.0, 1.0) and paper["max_rounds"] == variant["max_rounds"] == 2


# ------------------------------------------------------------------ model and sections


def test_setup_model_on_a_tiny_dataset():
    p = _params(dataset="digits", model="mlp", num_epochs=1, train_subset=200, num_test=50)
    setup = paths.setup_model(p)
    assert len(setup.x_all) == 50 and len(setup.class_names) == 10
    assert not setup.net.training
    assert (ch01.predict_labels(setup.net, setup.x_ok) == setup.y_ok).all()
    assert 0 < len(setup.x_ok) <= 50
    assert setup.describe().startswith(f"50 images, {len(setup.x_ok)} classified correctly")


@pytest.fixture(scope="module")
def planted_run():
    """A planted barrier on three real pairs, and near-identical 'synthetic' pairs."""
    model, a, c, y = bump_pairs()
    sets = {(0, "real-real"): ch01.PairSet(a, c, y),
            (0, "real-synthetic"): ch01.PairSet(a, a + 1e-3, y)}
    p = _params(seeds=[0], max_rounds=2, bypass_steps=60, bypass_lr=0.02, variant_steps=20,
                num_points=9, tolerances=[0.01, 0.1], tol=0.1, connect_tol=0.01)
    results = ch01.connect_sets(model, sets, tol=p["connect_tol"], **paths.bypass_kwargs(p))
    variant = ch01.connect_sets(model, sets, tol=p["connect_tol"],
                                **paths.bypass_kwargs(p, variant=True))
    return model, sets, p, results, variant


def test_straight_paths_of_the_planted_pairs(planted_run):
    model, sets, p, _, _ = planted_run
    sp = paths.straight_paths(model, sets, ["zero", "one"], p["num_points"], p["tol"],
                              p["connect_tol"])
    assert len(sp.real) == 3 and sp.profiles.shape == (3, p["num_points"])
    assert (sp.barriers >= p["tol"]).all()  # the planted barrier is on every straight line
    assert 0.0 <= sp.agreement <= 1.0 and sp.passes > 0
    assert list(sp.by_class.index) == ["zero"] and sp.by_class["zero"] == 1.0


def test_bypass_deviation_geometry_and_variant(planted_run):
    _, sets, p, results, variant = planted_run
    dev = paths.bypass_deviation(results[0, "real-real"])
    assert dev["points"] >= 1 and dev["median"] > 0 and math.isfinite(dev["loss_at_b"])
    assert paths.bypass_deviation(results[0, "real-synthetic"]) is None
    table = ch01.pair_table(results, sets, ["seed", "kind"])
    bent = ch01.bypassed(table)
    assert set(bent["kind"]) == {"real-real"} and (bent["vertices"] > 2).all()
    geo = paths.path_geometry(bent)
    assert list(geo["statistic"]) == ["rel_length", "chord_deviation"]
    assert (geo["lo"] <= geo["median"] + 1e-12).all() and (geo["pairs"] == len(bent)).all()
    vtable = ch01.pair_table(variant, sets, ["seed", "kind"])
    diff = paths.variant_difference(bent, vtable)
    assert set(diff) == {"estimate", "ci", "n"} and diff["n"] <= len(bent)


# ------------------------------------------------------------------ figures


def test_figures_at_tiny_size(planted_run):
    model, sets, p, results, _ = planted_run
    sp = paths.straight_paths(model, sets, ["zero"], p["num_points"], p["tol"], p["connect_tol"])
    table = ch01.pair_table(results, sets, ["seed", "kind"])
    curve = ch01.tolerance_curve(table, p["tolerances"], n_boot=20)
    syn = SyntheticPairs(a=sets[0, "real-real"].a, c=sets[0, "real-real"].c,
                         targets=sets[0, "real-real"].targets, loss_a=torch.zeros(3),
                         loss_c=torch.zeros(3), steps_a=torch.ones(3, dtype=torch.long),
                         steps_c=torch.ones(3, dtype=torch.long))
    made = [figs.plot_straight_paths(sp.profiles, sp.barriers, sp.real.targets, ["zero"], p["tol"]),
            figs.plot_synthetic_examples(syn, ["zero"]),
            figs.plot_tolerance_curves(curve, ["real-real", "real-synthetic"], p["max_rounds"],
                                       p["tol"]),
            figs.plot_tolerance_curves(curve, ["real-real"], p["max_rounds"], p["tol"]),
            figs.plot_one_bypass(model, sets[0, "real-real"], results[0, "real-real"],
                                 p["num_points"]),
            figs.plot_path_geometry(ch01.bypassed(table)),
            figs.plot_random_bends(pd.DataFrame({"found": [0.0, 1e-3], "null": [0.5, 2e-3]}),
                                   p["tol"])]
    assert all(isinstance(f, plt.Figure) for f in made)
    assert len(made[2].axes) == 2 and len(made[4].axes) == 6
    assert figs.plot_one_bypass(model, sets[0, "real-synthetic"], results[0, "real-synthetic"],
                                p["num_points"]) is None
    plt.close("all")


# ------------------------------------------------------------------ findings


class _Capture(report.ChapterReport):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.recorded: dict = {}

    def record(self, name, value, digits=4):
        self.recorded[name] = super().record(name, value, digits)
        return self.recorded[name]

    def summary(self, gpu, notes=None):
        self.recorded["ch01_summary"] = super().summary(gpu, notes)
        return self.recorded["ch01_summary"]

    def deviations(self, rows, reason=None):
        df = super().deviations(rows, reason)
        self.recorded["ch01_deviations"] = df.to_dict("records")
        return df


def test_findings_records_the_glued_numbers_and_claims(planted_run):
    model, sets, p, results, variant = planted_run
    sp = paths.straight_paths(model, sets, ["zero"], p["num_points"], p["tol"], p["connect_tol"])
    table = ch01.pair_table(results, sets, ["seed", "kind"])
    vtable = ch01.pair_table(variant, sets, ["seed", "kind"])
    synthesis = dict(reached=1.0, steps_median=3, steps_max=5, loss_max=1e-4, outside=0.0,
                     tv_ratio={"estimate": 0.5, "ci": [0.4, 0.6], "n": 3})
    chapter = _Capture("01", params=p, expected=ch01.EXPECTED)
    fnd.findings(chapter, p, straight=sp, synthesis=synthesis, results=results,
                  deviation=paths.bypass_deviation(results[0, "real-real"]), table=table,
                  summary=ch01.kind_summary(table, p["tol"]),
                  curve=ch01.tolerance_curve(table, p["tolerances"], n_boot=20),
                  variant_table=vtable,
                  variant_diff=paths.variant_difference(ch01.bypassed(table), vtable))
    rec = chapter.recorded
    assert rec["ch01_num_pairs"] == 3 and rec["ch01_tol"] == p["tol"]
    assert rec["ch01_straight_frac_real"] == 0.0  # every planted straight line has a barrier
    assert len(rec["ch01_connected_by_round_real"].split(" / ")) == p["max_rounds"] + 1
    assert rec["ch01_need_bypass_real"] == 3
    assert rec["ch01_tv_word"] == "smoother than" and rec["ch01_synth_steps"] == p["synth_steps"]
    assert math.isfinite(rec["ch01_rel_deviation_l2"])
    assert set(chapter.claims) == {cid for cid, _ in ch01.CLAIM_KINDS.values()} | {
        "one_round", "smoother_a"}
    assert chapter.claims["synthetic_connected"]["verdict"] == "inconclusive"  # no such pairs
    assert chapter.claims["smoother_a"]["verdict"] == "reproduced"  # 0.5 [0.4, 0.6] < 1
    assert rec["ch01_summary"].startswith("**Reproduced**")


# ------------------------------------------------------------------ controls, deviations


@pytest.fixture(scope="module")
def controls():
    p = _params(bypass_steps=60, bypass_lr=0.05, max_rounds=2, check_points=100, bend_draws=2)
    return p, ctl.planted_controls(p, num_pairs=8, num_detour=6)


def test_planted_controls_fail_every_claim(controls):
    """The chapter's checks, run by the chapter's code on the planted pairs, are not
    reproduced: no two-ball pair connects, and the detour paths are long."""
    p, tables = controls
    assert set(tables) == {"two_balls", "detour", "centred", "centred_bends"}
    assert ch01.connected_flags(tables["two_balls"], p["tol"]).sum() == 0
    assert (tables["two_balls"]["dense"] > 1.0).all()
    detour = tables["detour"]
    assert (detour["rel_length"] >= detour["min_rel_length"]).all()
    lengths = ctl.detour_lengths(tables)
    assert lengths["result"]["estimate"] >= lengths["bound"] > 1.05
    results = ctl.control_results(tables, p["tol"])
    claims = ch01.connectivity_claims(tables["two_balls"].assign(kind="real-real"), p["tol"],
                                      bends=tables["centred_bends"])
    assert set(results) == set(claims)
    for cid, c in claims.items():
        iv = results[cid]["result"]
        assert report.verdict(iv["ci"], c["threshold"], c["direction"]) == "not reproduced", cid
    assert results["real_connected"]["result"]["ci"][1] == pytest.approx(0.369, abs=1e-3)  # 0/8


def test_findings_carry_controls_and_deviations(planted_run, controls):
    model, sets, p, results, variant = planted_run
    sp = paths.straight_paths(model, sets, ["zero"], p["num_points"], p["tol"], p["connect_tol"])
    table = ch01.pair_table(results, sets, ["seed", "kind"])
    vtable = ch01.pair_table(variant, sets, ["seed", "kind"])
    synthesis = dict(reached=1.0, steps_median=3, steps_max=5, loss_max=1e-4, outside=0.0,
                     tv_ratio={"estimate": 0.5, "ci": [0.4, 0.6], "n": 3})
    chapter = _Capture("01", params=p, expected=ch01.EXPECTED, check=True)
    fnd.findings(chapter, p, straight=sp, synthesis=synthesis, results=results,
                  deviation=None, table=table, summary=ch01.kind_summary(table, p["tol"]),
                  curve=ch01.tolerance_curve(table, p["tolerances"]), variant_table=vtable,
                  variant_diff=paths.variant_difference(ch01.bypassed(table), vtable),
                  bends=pd.DataFrame({"null": [0.5, 0.6, 0.7], "target": [0, 0, 0],
                                      "found": [0.0, 0.0, 0.0], "null_min": [0.4, 0.5, 0.6]}),
                  controls=ctl.control_results(controls[1], controls[0]["tol"]))
    assert all(c["control"]["verdict"] == "not reproduced" for cid, c in chapter.claims.items()
               if cid in ch01.EXPECTED)
    assert not any("cannot fail" in m for m in chapter.failures())
    assert all(c["method"] != "not stated" for c in chapter.claims.values())
    rows = chapter.recorded["ch01_deviations"]
    assert [r["setting"] for r in rows] == [r["setting"] for r in devs.DEVIATIONS]
    assert all(r["source"] and r["paper"] and r["ours"] and r["effect"] for r in rows)
    measured = {r["setting"]: r["measured"] for r in rows}
    assert measured["rounds of bypass"].startswith("real pairs connected after rounds 0..2")
    assert measured["claim of near-straight paths"] == "not measured"
    assert chapter.claims["near_linear"]["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="unknown settings"):
        devs.record_deviations(chapter, {"no such setting": "x"})
