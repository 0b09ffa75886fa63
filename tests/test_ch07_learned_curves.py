"""Chapter 07 (mcutils.chapters.ch07_*): schema, pool parts, the input-space comparison on a
planted landscape, the claims on data where they hold and where they cannot, and the whole
chapter at a tiny size on the digits dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mcutils import planted
from mcutils.chapters import ch07_input_study as inputs
from mcutils.chapters import ch07_learned_curves as ch07
from mcutils.chapters import ch07_weight_study as weights
from mcutils.core import profiles
from mcutils.core.checks import ParameterError
from mcutils.core.report import ChapterReport


def _tiny() -> dict:
    p = ch07.PARAMETERS.defaults()
    p.update(dataset="digits", num_epochs=1, num_test=300, pairs_per_class=2,
             adv_pairs_per_class=1, attack_steps=20, num_points=40, max_pairs=4,
             bypass_steps=8, max_rounds=1, curve_budgets=[2, 4, 8], backdoor_subset=300,
             adv_subset=200, val_size=40, eval_size=80, repair_sizes=[10, 20],
             repair_lrs=[0.1], repair_max_steps=2, robust_eval_size=10, pgd_steps=2,
             path_points=3, n_boot=50, tol=1e-4, num_ts=3)
    return ch07.PARAMETERS.validate(p)


def test_schema_defaults_are_the_cpu_profile_and_bad_values_fail():
    assert "07" in profiles.load_profile("cpu")["chapters"]
    bad = dict(ch07.PARAMETERS.defaults(), pair_seeds=[0, 1])
    with pytest.raises(ParameterError, match="must not share a model"):
        ch07.PARAMETERS.validate(bad)
    with pytest.raises(ParameterError, match="curve_budgets"):
        ch07.PARAMETERS.validate(dict(ch07.PARAMETERS.defaults(), curve_budgets=[100, 200, 300]))


def test_a_pool_part_then_the_notebooks_function_give_the_same_model():
    p = _tiny()
    parts = ch07.pool_parts(p)
    assert [label for label, _, _ in parts][:2] == ["ch07 backdoored pair 0",
                                                     "ch07 backdoored pair 2"]
    assert parts[0][2]["seeds"] == [0, 1]
    assert len(parts) == len(p["pair_seeds"]) + 1 + len(p["robust_seeds"])
    _, name, kwargs = parts[0]
    getattr(ch07, name)(**kwargs)
    again = weights.backdoored_model(p, 0)
    getattr(ch07, name)(**kwargs)  # a cache hit: the same weights
    for k, v in weights.backdoored_model(p, 0).state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_compare_paths_on_a_planted_bump():
    model, a, c, t = planted.bump_pairs()
    p = dict(_tiny(), num_points=200, bypass_steps=200, bypass_lr=0.05, curve_lr=0.05,
             curve_budgets=[50, 100, 200], max_rounds=2, connect_tol=0.01)
    straight = torch.full((3,), 1.0)
    comp = inputs.compare_paths(model, inputs.PairSet(a, c, t, straight, 3), p)
    tab = comp.table
    assert set(tab.kind) == set(inputs.PATH_KINDS)
    assert len(tab) == 3 * (2 + 2 * 3)  # straight and bypass once, each curve per budget
    last = tab[tab.budget.isin([0, 200])].groupby("kind")["barrier"].max()
    assert last["straight"] > 1.0 and last["bezier"] < 0.05 and last["polychain"] < 0.05
    assert (tab[tab.kind == "straight"].relative_length == 1).all()
    assert (tab[tab.kind == "bezier"].passes == tab[tab.kind == "bezier"].budget * 2).all()
    assert set(comp.profiles) == set(inputs.PATH_KINDS)
    with pytest.raises(ParameterError, match="no pairs"):
        inputs.compare_paths(model, inputs.PairSet(a[:0], c[:0], t[:0], straight[:0], 3), p)


def _tables(connected: bool):
    rows = []
    for i in range(40):
        for kind, budget in (("straight", 0), ("bypass", 0), ("bezier", 2), ("bezier", 4),
                             ("bezier", 8)):
            barrier = 2.0 if kind == "straight" else (0.0 if connected else 1.0)
            rows.append(dict(pair=i, kind=kind, budget=budget, barrier=barrier,
                             max_loss=barrier + 0.1 * (kind == "bypass") + 0.01 * i,
                             relative_length=1.0, chord_deviation=0.0, passes=16.0))
    return pd.DataFrame(rows)


def _weights(lower: bool):
    rows = []
    for s, noise in zip((0, 2, 4), (0.0, 0.01, -0.01)):
        for v, base in (("unaligned", 1.0), ("aligned", 0.2 if lower else 1.5),
                        ("random", 1.4)):
            rows.append(dict(pair_seed=s, robust_seed=s, variant=v, barrier=base + noise,
                             accuracy=0.8, asr=1.0, asr_hits=90, asr_total=90,
                             robust_loss=2.0 + noise))
    return pd.DataFrame(rows)


def test_claims_hold_on_data_made_to_hold_and_fail_on_data_made_to_fail():
    p = dict(_tiny(), curve_budgets=[2, 4, 8])
    planted_rows = _tables(False)
    control = dict(accuracy=0.8, asr=0.01, asr_hits=1, asr_total=90)
    good = {c["claim_id"]: c for c in ch07.claims(p, _tables(True), _tables(True), planted_rows,
                                                   _weights(True), control, _weights(True),
                                                   None)}
    bad = {c["claim_id"]: c for c in ch07.claims(p, _tables(False), _tables(False),
                                                  planted_rows, _weights(False), control,
                                                  _weights(False), None)}
    for cid in ch07.EXPECTED:
        ok = ChapterReport("07", expected=[cid], check=True)
        ok.claim(cid, **{k: v for k, v in good[cid].items() if k != "claim_id"})
        assert ok.failures() == [], cid  # holds, and its control fails
        no = ChapterReport("07", expected=[cid], check=True)
        no.claim(cid, **{k: v for k, v in bad[cid].items() if k != "claim_id"})
        assert no.failures(), cid  # contradicting data: the check fails
    assert good["learned_connects_real"]["result"]["estimate"] == 1.0
    assert good["learned_connects_real"]["control"]["result"]["estimate"] == 0.0
    assert set(good["learned_connects_real"]["budgets"]) == {2, 4, 8}
    assert good["aligned_barrier_backdoor"]["result"]["estimate"] == pytest.approx(-0.8)
    assert "aligned_repair_small_n" not in good  # no repair study given


def test_barrier_of_and_variants():
    prof = pd.DataFrame({"t": [0, 0.5, 1], "loss": [0.3, 0.9, 0.5]})
    assert weights.barrier_of(prof) == pytest.approx(0.4)
    assert weights.barrier_of(prof.assign(loss=[0.3, 0.2, 0.5])) == 0.0
    from mcutils.models import build_model

    torch.manual_seed(0)
    a, b = (build_model("small_cnn", input_size=8, width=2, hidden=8).eval() for _ in range(2))
    v = weights.variants(a, b, seed=1)
    x = torch.rand(3, 1, 8, 8)
    for m in v.values():  # the same function, whatever the order of its units
        assert torch.allclose(m(x), b(x), atol=1e-5)
    assert set(v) == set(weights.VARIANTS)


def test_the_whole_chapter_at_a_tiny_size():
    p = _tiny()
    net, test = inputs.model_and_images(p)
    real = inputs.compare_paths(net, inputs.same_class_pairs(net, test, p), p)
    adv = inputs.compare_paths(net, inputs.adversarial_pairs(net, test, p), p)
    plant = inputs.planted_control(p, num_pairs=3)
    bd, bprof, control = weights.backdoor_study(p)
    rb, rprof = weights.robust_study(p)
    rep = weights.repair_study(p)
    assert len(bd) == 3 * len(p["pair_seeds"]) and len(rb) == 3 * len(p["robust_seeds"])
    assert set(rep.variant) == {"unaligned", "aligned"}
    assert set(rep.n) == set(p["repair_sizes"])
    chapter = ChapterReport("07", p, expected=ch07.EXPECTED, check=False)
    ch07.findings(chapter, p, real=real, adversarial=adv, planted=plant, backdoor=bd,
                  clean_control=control, robust=rb, repair=rep)
    assert set(chapter.claims) == set(ch07.CLAIMS)
    for cid in ch07.CONTROL_STATEMENTS:
        assert "control" in chapter.claims[cid]
    fig = inputs.plot_profiles({"a": real, "b": adv}, {})
    assert len(fig.axes) == 2
    fig2 = weights.plot_barriers(bprof, rprof)
    assert len(fig2.axes) == 2
    assert np.isfinite(inputs.summary_table({"a": real}).to_numpy(float)).all()


def test_claim_notes_are_computed_from_the_data():
    p = dict(_tiny(), curve_budgets=[2, 4, 8])
    tie = _tables(True).assign(max_loss=1.0)
    notes = ch07.claim_notes(p, tie, _tables(True))
    assert notes["learned_vs_bypass_real"].startswith("on 40 of 40 pairs")
    assert "learned_connects_real" not in notes  # 40 of 40 clears 0.8
    few = _tables(True)
    few = few[few.pair < 5]
    assert "only 5 pairs" in ch07.claim_notes(p, few, few)["learned_connects_adversarial"]
    assert "learned_vs_bypass_real" not in ch07.claim_notes(p, _tables(True), _tables(True))
    repair = pd.DataFrame([dict(method="bezier", n=10, variant=v, asr=a, pair_seed=0)
                           for v, a in (("unaligned", 0.25), ("aligned", 0.75))])
    note = ch07.claim_notes(p, _tables(True), _tables(True), _weights(True), repair)
    assert note["aligned_repair_small_n"].endswith("attack success 0.25")


def test_the_ends_are_chapter_05s_and_06s_own_checkpoints():
    """Chapter 07 asks for the very models chapters 05 and 06 train (no second copy)."""
    import os
    from pathlib import Path

    from mcutils.chapters import ch05_study, ch06_robust_path

    p = _tiny()
    p5, p6 = weights.ch05_params(p), weights.ch06_params(p)
    trigger, split = ch05_study.defender_data(p5)
    ends = ch05_study.tampered_ends(p5, split, trigger)
    ch06_robust_path.robust_end(p6, seed=p["robust_seeds"][0])
    cache = Path(os.environ["MCUTILS_CACHE"])
    before = sorted(cache.glob("*.pt"))
    a = weights.backdoored_model(p, p["seed"])
    weights.clean_model(p, p["seed"] + 1)
    weights.robust_model(p, p["robust_seeds"][0])
    assert sorted(cache.glob("*.pt")) == before  # every one a cache hit
    for k, v in ends.backdoored[0].state_dict().items():
        assert torch.equal(v, a.state_dict()[k])


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "gpu-smoke"])
def test_the_weight_study_reuses_chapters_05_and_06_checkpoints(profile):
    """In every profile, chapter 07 asks for chapter 05's backdoored ends and chapter 06's
    regular and robust ends with exactly the settings those chapters train them with, so
    the checkpoints are shared (a mismatch would train a second, different set)."""
    from mcutils.chapters.ch05_protocol import END_KEYS
    from mcutils.tooling import notebooks

    prof = profiles.load_profile(profile)
    books = notebooks.chapters()

    def params(chapter):
        nb = books[chapter]
        declared = notebooks.notebook_defaults(nb)
        return {**declared, **notebooks.chapter_parameters(prof, chapter, nb, profile,
                                                           declared)}

    p5, p6, p7 = params("05"), params("06"), params("07")
    derived5, derived6 = weights.ch05_params(p7), weights.ch06_params(p7)
    for k in (*END_KEYS, "trigger_size", "dataset", "model", "seed"):
        assert derived5[k] == p5[k], (profile, k)
    for k in ("dataset", "model", "num_epochs", "lr", "batch_size", "train_subset", "seed",
              "regular_optimizer", "regular_weight_decay", "regular_augment", "adv_protocol",
              "adv_eps", "adv_epochs", "adv_subset"):
        assert derived6[k] == p6[k], (profile, k)
