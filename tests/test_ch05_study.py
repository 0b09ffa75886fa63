"""Chapter 05's schema, its sections run from parameters and its findings, at tiny size
(the digits dataset, one seed, a few steps per repair)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mcutils.chapters import ch05_controls, ch05_findings, ch05_protocol, ch05_study  # noqa: E402
from mcutils.core.checks import ParameterError  # noqa: E402
from mcutils.core.report import ChapterReport  # noqa: E402

SCHEMA = ch05_protocol.PARAMETERS

TINY = dict(dataset="digits", end_epochs=10, end_lr=0.1, backdoor_subset=1000, seeds=[0, 1],
            extra_curve_seeds=[2], trigger_size=2, bonafide_sizes=[10, 20], val_size=50,
            eval_size=100, repair_epochs=1, repair_max_steps=2, repair_batch=16, lrs=[0.05],
            lr_extend=0, tune_sizes=[20], num_ts=3, claim_small_n=10, num_faults=8,
            num_keep=10, fault_steps=2, fault_sizes=[20],
            fault_methods=["bezier", "fine_tune", "noise"], adaptive_steps=2,
            adaptive_sizes=[20], variant_size=20, variants=[{"weight_decay": 0.0}],
            variant_setup={"poison_rate": 0.2, "end_optimizer": "adam", "end_lr": 0.01,
                           "end_epochs": 2, "end_schedule": None},
            budget_steps=[1, 2, 4], check_claims=False)


def _params(**changes):
    return SCHEMA.validate({**SCHEMA.defaults(), **TINY, **changes})


def test_schema_defaults_are_valid_and_expected_claims_exist():
    assert SCHEMA.validate(SCHEMA.defaults()) == SCHEMA.defaults()
    from mcutils.chapters.ch05_repair import CLAIMS

    assert set(ch05_protocol.EXPECTED) <= {c["claim_id"] for c in CLAIMS}


@pytest.mark.parametrize("changes, message", [
    (dict(poison_rate=0.0), "poison_rate=0.0"),
    (dict(target_class=10), "target_class=10"),
    (dict(bonafide_sizes=[25, 6000]), "bonafide_sizes=6000"),
    (dict(schedule="linear"), "schedule='linear'"),
    (dict(fault_methods=["bezier", "magic"]), "fault_methods='magic'"),
    (dict(repair_max_steps=0), "repair_max_steps=0"),
    (dict(num_bends=None), "num_bends=None is not allowed"),
    (dict(extra_curve_seeds=[2, 3]), "must not repeat seeds"),
    (dict(tune_sizes=[100, 50]), "tune_sizes=50"),
    (dict(claim_small_n=50), "claim_small_n=50"),
    (dict(fault_sizes=[7]), "fault_sizes=7"),
    (dict(adaptive_sizes=[2500, 3]), "adaptive_sizes=3"),
    (dict(variant_size=1000), "variant_size=1000"),
    (dict(variants=[{"lr": 0.1}]), "variants='lr'"),
    (dict(variants=[{"curve": "spline"}]), "variant_curves='spline'"),
    (dict(variants=["polychain"]), "is not a mapping"),
    (dict(variant_setup={"lr": 0.1}), "variant_setup='lr'"),
    (dict(control_places=["corner", "edge"]), "control_places"),
    (dict(control_inits=["zero"]), "control_inits"),
    (dict(budget_steps=[200, 400, 600]), "largest >= 4x"),
    (dict(budget_steps=[200, 800]), ">= 3 budgets"),
    (dict(end_optimizer="rmsprop"), "end_optimizer='rmsprop'"),
])
def test_schema_rejects_bad_values_and_combinations(changes, message):
    with pytest.raises(ParameterError, match="chapter 05") as err:
        SCHEMA.validate({**SCHEMA.defaults(), **changes})
    assert message in str(err.value)


def test_schema_allows_none_where_the_notebook_does():
    for name in ("train_subset", "backdoor_subset", "repair_max_steps", "repair_epoch_size",
                 "schedule"):
        SCHEMA.validate({**SCHEMA.defaults(), name: None})
    SCHEMA.validate({**SCHEMA.defaults(), "extra_curve_seeds": []})


def test_budget_table_against_the_papers():
    table = ch05_study.budget_table(SCHEMA.defaults())
    assert list(table.index) == [100, 2500]
    assert list(table.steps) == [100, 200] and set(table.paper_steps) == {7900}


def test_defaults_follow_the_official_setup_and_keep_the_earlier_one_as_a_variant():
    d = SCHEMA.defaults()
    # IBM/model-sanitization backdoor-cifar: data.py:263 perc_poison 0.5, data.py:458
    # targets=1, train_poison.py:46 weight decay 1e-4 with SGD (train_poison.py:101)
    assert (d["poison_rate"], d["target_class"], d["end_optimizer"],
            d["end_weight_decay"]) == (0.5, 1, "sgd", 1e-4)
    from mcutils.chapters import ch05_midpoints

    v = ch05_midpoints.end_settings(d, variant=True)
    assert (v["poison_rate"], v["target_class"], v["end_optimizer"]) == (0.1, 0, "adam")
    assert ch05_midpoints.end_settings(d)["poison_rate"] == 0.5
    corner = ch05_midpoints.make_trigger(d, "corner")
    assert (corner.row, corner.col, corner.size) == (24, 24, 3)  # rows 24-26: 1 px from edge
    centre = ch05_midpoints.make_trigger(d, "centre")
    assert (centre.row, centre.col) == (12, 12)
    with pytest.raises(ParameterError):
        ch05_midpoints.make_trigger(d, "edge")


def test_pool_parts_cover_every_training_and_name_the_chapter_function():
    from mcutils.chapters import pool_parts

    parts = pool_parts("05", {})
    labels = [label for label, _, _ in parts]
    assert pool_parts("05", {"repair_max_steps": 4, "end_epochs": 1, "backdoor_subset": 1000,
                             "budget_steps": [2, 4, 8],
                             "variant_setup": {"backdoor_subset": 1000, "end_epochs": 1}}) == []
    assert len(labels) == len(set(labels))
    assert all(call == "mcutils.chapters.ch05_protocol:run_part" for _, call, _ in parts)
    d = SCHEMA.defaults()
    controls = [lb for lb in labels if ":control-" in lb]
    # 2 curves x 2 places x 2 starts x 3 seeds, less the sweep's own corner/segment runs
    assert len(controls) == 2 * 2 * 2 * 3 - 2 * 3
    assert {lb for lb in labels if ":budget-" in lb} == {
        f"05:budget-{b}-{s}" for b in (800, 3200) for s in d["seeds"]}
    # the ends come first: every later part needs them
    assert labels.index("05:end-corner-1") < labels.index("05:tune-bezier-2500")


def _explanations(p, setup, split, ends, lr_table):
    from mcutils.chapters import ch05_midpoints as mp

    large = max(p["bonafide_sizes"])
    lrs = {c: lr_table[c][large] for c in p["control_curves"]}
    return {"segment": mp.segment_midpoint(ends.backdoored, ends.scorer),
            "controls": mp.midpoint_controls(p, setup, split, lrs),
            "budget": mp.budget_curve(p, setup, split, ends.scorer, lrs["bezier"]),
            "variant": mp.variant_study(p, setup, split, lr_table)}


class _Recorder(ChapterReport):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.recorded = {}

    def record(self, name, value, digits=4):
        self.recorded[name] = value
        return super().record(name, value, digits)

    def deviations(self, rows, reason=None):
        self.recorded["ch05_deviations"] = [dict(r) for r in rows]
        return super().deviations(rows, reason)


def test_the_chapter_end_to_end_at_tiny_size():
    p = _params()
    trigger, split = ch05_study.defender_data(p)
    assert (len(split.pool), len(split.val), len(split.test)) == (20, 50, 100)
    ends = ch05_study.tampered_ends(p, split, trigger)
    assert list(ends.scores.index) == ["backdoored 0", "backdoored 1", "clean 0", "clean 1"]
    assert ends.accuracy == ends.scores.accuracy[:2].max()
    assert 0 <= ends.floor["estimate"] <= 1
    setup = ch05_study.repair_setup(p, ends.backdoored, split)
    assert setup.ts == (0.0, 0.5, 1.0) and setup.val is split.val
    bd = ch05_study.backdoor_sweep(p, setup, split, ends.scorer)
    assert set(bd.summary["bezier"]) == {10, 20} and bd.extra is not None
    assert sorted(bd.rows[bd.rows.method == "bezier"].seed.unique()) == [0, 1, 2]
    fig = ch05_study.plot_curve_profiles(bd.profiles, ends.backdoored, setup, split, p)
    assert len(fig.axes) == 3  # bezier, polychain, the straight line
    plt.close("all")
    lr_table = bd.sweep.lr_table()
    fs = ch05_study.fault_study(p, ends.clean, split, setup, lr_table)
    assert len(fs.faulted) == 2 and len(fs.injection) == 2
    assert list(fs.table.index.get_level_values("metric").unique()) == ["acc", "fs", "restored"]
    aware = ch05_study.path_aware_study(p, ends, setup, split, trigger, lr_table)
    assert list(aware.scores.index) == ["released 0", "released 1",
                                        "midpoint, plain backdoored pair",
                                        "midpoint, path-aware pair"]
    ax = ch05_study.plot_aware_vs_plain(bd.summary, aware.summary, [20], floor=0.1)
    assert len(ax.lines) >= 1
    plt.close("all")
    variant = ch05_study.curve_variants(p, setup, split, ends.scorer, lr_table)
    assert list(variant.table.columns) == ["acc", "asr"] and len(variant.table) == 2
    explain = _explanations(p, setup, split, ends, lr_table)
    cells, rows = explain["controls"]
    assert len(cells) == 8 and all(set(v) == {"asr", "acc"} for v in cells.values())
    assert len(rows) == 8 * len(p["seeds"]) and set(rows.place) == {"corner", "centre"}
    # the corner/segment cells are the sweep's own curves at the largest n
    mid = bd.rows[(bd.rows.method == "bezier (middle)") & (bd.rows.n == 20)
                  & bd.rows.seed.isin(p["seeds"])].sort_values("seed")
    cell = rows[(rows.curve == "bezier") & (rows.place == "corner")
                & (rows.init == "segment")].sort_values("seed")
    for col in ("asr", "accuracy"):
        assert list(cell[col]) == list(mid[col])
    budget, brows = explain["budget"]
    assert sorted(budget) == [1, 2, 4] and len(brows) == 3 * len(p["seeds"])
    for col in ("asr", "accuracy"):  # the budget's sweep point is the sweep's run
        assert list(brows[brows.steps == 2].sort_values("seed")[col]) == list(mid[col])
    chapter = _Recorder("05", params=p, expected=ch05_protocol.EXPECTED, check=False)
    t_chosen = bd.rows[bd.rows.method.isin(ch05_protocol.CURVE_METHODS)]
    controls = ch05_controls.control_rows(p, ends.backdoored, split, ends.scorer)
    assert set(controls.method) == {"untrained", "noise (redraw)"}
    assert sorted(controls[controls.method == "untrained"].seed.unique()) == [0, 1, 2]
    works = ch05_protocol.findings(chapter, p, ends=ends, backdoor=bd, t_chosen=t_chosen,
                                   faults=fs, aware=aware, variants=variant, controls=controls,
                                   explain=explain)
    got = chapter.recorded
    assert set(works.verdict) <= {"removed", "kept", "undecided", "removed at a loss of accuracy"}
    assert len(works) == 8 + 2 + 1
    for key in ("ch05_segment_midpoint_asr", "ch05_midpoint_controls", "ch05_mid_asr_vs_budget",
                "ch05_controls_reading", "ch05_works_removed", "ch05_variant_mid_asr",
                "ch05_lr_inside"):
        assert key in got, key
    assert set(got["ch05_mid_asr_vs_budget"]) == {"1", "2", "4"}
    assert chapter.claims["mid_asr"]["budget"] == 4.0
    plain, aware_claim = chapter.claims["curve_removes_backdoor"], chapter.claims["path_aware_repaired"]
    if plain["ci"][1] > p["asr_max"]:  # the plain repair fails: the attacker's claim says nothing
        assert aware_claim["note"].startswith("uninformative")
        assert aware_claim["statement"].startswith("(uninformative")
    else:
        assert "note" not in aware_claim
    rows = got["ch05_deviations"]
    assert any(r["setting"] == "repair budget" and r.get("measured") for r in rows)
    dev = ChapterReport("05").deviations(ch05_controls.DEVIATIONS)
    assert len(dev) == len(ch05_controls.DEVIATIONS) >= 1 and dev.source.str.contains(":").all()
    for cid in ch05_protocol.EXPECTED:
        assert "control" in chapter.claims[cid] and chapter.claims[cid]["method"] != "not stated"
    assert chapter.claims["curve_keeps_accuracy"]["control"]["verdict"] != "reproduced"
    for key in [*ch05_findings.SWEEP_NUMBERS, *ch05_findings.FAULT_NUMBERS]:
        assert f"ch05_{key}" in got
    assert got["ch05_fault_bezier_fs"] != "n/a" and got["ch05_large_n"] == 20
    assert got["ch05_steps_text"] == "1 / 2 at n = 10 / 20"
    assert got["ch05_cap_binds_from"] == 20 and got["ch05_paper_steps"] == 7900
    assert got["ch05_fault_reading"] in (ch05_findings.READINGS["faults_all_removed"],
                                         ch05_findings.READINGS["faults_separate"])
    assert not any("seconds" in k for k in got)
    assert {"curve_keeps_accuracy", "curve_removes_faults", "path_aware_repaired"} <= set(
        chapter.claims)


def test_pool_parts_then_the_notebook_give_the_one_process_numbers(tmp_path, monkeypatch):
    """Parts run first (as the runner's workers do) leave the notebook's functions cache
    hits with the numbers of a one-process run."""
    from mcutils.chapters import ch05_midpoints as mp
    from mcutils.chapters import ch05_parts
    from mcutils.repair import cached_curve

    p = _params(seeds=[0, 1], extra_curve_seeds=[], control_curves=["bezier"],
                control_inits=["segment", "random"], variant_setup={})

    def notebook():
        trigger, split = ch05_study.defender_data(p)
        ends = ch05_study.tampered_ends(p, split, trigger)
        setup = ch05_study.repair_setup(p, ends.backdoored, split)
        bd = ch05_study.backdoor_sweep(p, setup, split, ends.scorer)
        lr = bd.sweep.lr_table()["bezier"][20]
        cells, rows = mp.midpoint_controls(p, setup, split, {"bezier": lr})
        budget, brows = mp.budget_curve(p, setup, split, ends.scorer, lr)
        return bd.rows, rows, brows, setup, split, lr

    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "one"))
    alone = notebook()
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "parts"))
    assert ch05_parts.parts(p) == []  # tiny: no worker would pay for its start-up
    monkeypatch.setattr(ch05_parts, "MIN_STEPS_PER_PART", 0)
    labels = []
    for label, function, kwargs in ch05_parts.parts(p):
        assert function == "run_part"
        getattr(ch05_protocol, function)(**kwargs)
        labels.append(label)
    assert any("control-bezier-centre-random" in lb for lb in labels)
    # a control part's curve is in the cache before the notebook runs
    _, _, _, setup, split, lr = alone
    _, info = cached_curve(*mp.tampered_pair(p, "centre"), split.bonafide(20, 1), 2, lr=lr,
                           weight_decay=setup.weight_decay, batch_size=setup.batch_size,
                           schedule=setup.schedule, seed=1, init="random", return_info=True)
    assert info["cached"]
    after = notebook()
    for a, b in zip(alone[:3], after[:3]):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    with pytest.raises(ParameterError):
        ch05_parts.run_part("magic", p)
