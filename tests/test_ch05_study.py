"""Chapter 05's schema, its sections run from parameters and its findings, at tiny size
(the digits dataset, one seed, a few steps per repair)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mcutils.chapters import ch05_controls, ch05_findings, ch05_protocol, ch05_study  # noqa: E402
from mcutils.core.checks import ParameterError  # noqa: E402
from mcutils.core.report import ChapterReport  # noqa: E402

SCHEMA = ch05_protocol.PARAMETERS

TINY = dict(dataset="digits", num_epochs=3, backdoor_subset=1000, seeds=[0],
            extra_curve_seeds=[1], trigger_size=2, bonafide_sizes=[10, 20], val_size=50,
            eval_size=100, repair_epochs=1, repair_max_steps=2, repair_batch=16, lrs=[0.05],
            tune_sizes=[20], num_ts=3, claim_small_n=10, num_faults=8, num_keep=10,
            fault_steps=2, fault_sizes=[20], fault_methods=["bezier", "fine_tune", "noise"],
            adaptive_steps=2, adaptive_sizes=[20], variant_size=20,
            variants=[{"weight_decay": 0.0}], check_claims=False)


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
    assert list(table.index) == [25, 100, 500, 2500]
    assert list(table.steps) == [50, 100, 200, 200] and set(table.paper_steps) == {7900}


class _Recorder(ChapterReport):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.recorded = {}

    def record(self, name, value, digits=4):
        self.recorded[name] = value
        return super().record(name, value, digits)


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
    assert sorted(bd.rows[bd.rows.method == "bezier"].seed.unique()) == [0, 1]
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
    chapter = _Recorder("05", params=p, expected=ch05_protocol.EXPECTED, check=False)
    t_chosen = bd.rows[bd.rows.method.isin(ch05_protocol.CURVE_METHODS)]
    controls = ch05_controls.control_rows(p, ends.backdoored, split, ends.scorer)
    assert set(controls.method) == {"untrained", "noise (redraw)"}
    assert sorted(controls[controls.method == "untrained"].seed.unique()) == [0, 1]
    ch05_protocol.findings(chapter, p, ends=ends, backdoor=bd, t_chosen=t_chosen, faults=fs,
                           aware=aware, variants=variant, controls=controls)
    got = chapter.recorded
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
