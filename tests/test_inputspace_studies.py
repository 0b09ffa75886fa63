"""Tests of the paper-protocol options (units, smoothness penalty, gradient projection) and
of the chapter orchestration in mcutils.chapters.ch01_input_space and ch03_untrained, at
tiny sizes.

Every expected claim of chapters 01 and 03 has a negative control here: data that
contradict the claim must not give the verdict ``reproduced``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mcutils import inputspace as ins
from mcutils.core.checks import ParameterError
from mcutils.chapters import ch01_input_space as ch01
from mcutils.chapters import ch03_evolution, ch03_findings, ch03_sweep
from mcutils.chapters import ch03_untrained as ch03
from mcutils.models import build_model
from mcutils.planted import bump_pairs as planted


def tiny_cnn(seed: int = 0, classes: int = 3, mean=(0.3,), std=(0.4,)):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=classes, in_channels=1, input_size=8, width=4,
                       hidden=16, mean=mean, std=std).eval()


def steep_mlp():
    """A 3-class MLP on 6x6 inputs with its weights scaled up 3x, so that synthesis reaches
    low losses within a few hundred steps."""
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=3, in_channels=1, input_size=6, hidden=32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


# ------------------------------------------------------------------ units and protocols


def test_input_normalization_reads_the_models_layer():
    model = tiny_cnn(mean=(0.3,), std=(0.4,))
    mean, std = ins.input_normalization(model)
    assert mean.flatten().tolist() == pytest.approx([0.3]) and std.flatten().tolist() == pytest.approx([0.4])
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    mean, std = ins.input_normalization(bare)
    assert mean.item() == 0.0 and std.item() == 1.0


def test_total_variation_sum_is_mean_times_count():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 5, 4, generator=g)
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs()
    want = dh.flatten(1).sum(1) + dw.flatten(1).sum(1)
    assert torch.allclose(ins.total_variation(x, "sum"), want)
    assert torch.allclose(ins.total_variation(x), dh.flatten(1).mean(1) + dw.flatten(1).mean(1))
    with pytest.raises(ParameterError):
        ins.total_variation(x, "max")


def test_normalized_synthesis_equals_adam_on_the_normalised_input():
    """space='normalized' is the paper's optimisation: torch Adam (with weight decay) on
    z = (x - mean) / std fed through the layers after Normalize, starting at 0.01 N(0,1)."""
    model = tiny_cnn(mean=(0.3,), std=(0.4,))
    targets = torch.tensor([0, 1])
    steps, lr, wd, std0 = 15, 0.05, 1e-3, 0.01
    x, loss = ins.synthesize(model, targets, (1, 8, 8), steps=steps, lr=lr, stop_loss=None,
                             init_std=std0, generator=torch.Generator().manual_seed(3),
                             box=None, space="normalized", weight_decay=wd)
    z = (std0 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)))
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr, weight_decay=wd)
    net = model[1]
    best, best_loss = None, torch.full((2,), math.inf)
    for _ in range(steps + 1):
        ce = F.cross_entropy(net(z), targets, reduction="none")
        better = ce.detach() < best_loss
        best = z.detach().clone() if best is None else torch.where(better.view(-1, 1, 1, 1), z.detach(), best)
        best_loss = torch.where(better, ce.detach(), best_loss)
        opt.zero_grad()
        ce.sum().backward()
        opt.step()
    assert torch.allclose(loss, best_loss, atol=1e-5)
    assert torch.allclose(x, 0.3 + 0.4 * best, atol=1e-5)


def test_synthetic_pairs_penalise_a_only_and_count_steps():
    model = steep_mlp()
    t = torch.tensor([0, 1, 2, 0])
    sp = ins.synthetic_pairs(model, t, (1, 6, 6), steps=600, lr=0.05, stop_loss=0.05,
                             tv_weight=0.005, generator=torch.Generator().manual_seed(0))
    assert len(sp) == 4 and sp.a.shape == (4, 1, 6, 6)
    assert sp.reached(0.05).all()
    assert (sp.steps_a < 600).all() and (sp.steps_c < 600).all()
    # the smoothness penalty makes A smoother than C (normalised units, summed)
    mean, std = ins.input_normalization(model)
    tv = lambda v: ins.total_variation((v - mean) / std, "sum")  # noqa: E731
    assert tv(sp.a).mean() < tv(sp.c).mean()
    with torch.no_grad():
        ce = F.cross_entropy(model(sp.a), t, reduction="none")
    assert torch.allclose(ce, sp.loss_a, atol=1e-4)
    # without a stopping loss every input uses the whole budget
    full = ins.synthetic_pairs(model, t[:1], (1, 6, 6), steps=7, stop_loss=None)
    assert full.steps_a.item() == 7 and full.steps_c.item() == 7
    with pytest.raises(ParameterError):
        ins.synthetic_pairs(model, t, (1, 6, 6), tv_weight=-1.0)


@pytest.mark.parametrize("space, box", [("normalized", None), ("pixel", (0.0, 1.0))])
def test_synthetic_pairs_at_several_budgets_equal_one_run_per_budget(space, box):
    """One run to the largest budget gives, at each smaller budget, exactly the pairs a
    run with that budget makes: same inputs, losses and step counts, also for inputs
    that stop early and when every input has stopped before a budget."""
    model = steep_mlp()
    t = torch.tensor([0, 1, 2, 0])
    kw = dict(lr=0.05, stop_loss=0.05, tv_weight=0.005, space=space, box=box)
    budgets = [1, 7, 60, 600, 900]
    runs = ins.synthetic_pairs_at(model, t, (1, 6, 6), budgets,
                                  generator=torch.Generator().manual_seed(4), **kw)
    assert sorted(runs) == budgets
    stopped_between = False
    for k in budgets:
        one = ins.synthetic_pairs(model, t, (1, 6, 6), steps=k,
                                  generator=torch.Generator().manual_seed(4), **kw)
        got = runs[k]
        for name in ("a", "c", "targets", "loss_a", "loss_c", "steps_a", "steps_c"):
            assert torch.equal(getattr(got, name), getattr(one, name)), (k, name)
        stopped_between |= bool(((one.steps_a < k) & (one.steps_a > 7)).any())
    assert stopped_between  # the budgets straddle some input's stopping step
    assert runs[600].reached(0.05).all()  # ... and every input stops before the last one
    with pytest.raises(ParameterError):
        ins.synthetic_pairs_at(model, t, (1, 6, 6), [])
    with pytest.raises(ParameterError):
        ins.synthetic_pairs_at(model, t, (1, 6, 6), [5, 0])


def test_paper_presets_state_their_units():
    assert ins.FVO_PAPER["space"] == "normalized" and ins.FVO_PAPER["stop_loss"] == 5e-4
    assert ins.FVO_PAPER_EVOLUTION["stop_loss"] == 5e-3 and ins.FVO_PAPER_EVOLUTION["steps"] == 4096
    assert ins.BYPASS_PAPER["projection"] == "gradient" and ins.BYPASS_PAPER["steps"] == 1024
    assert ins.FREE_PAPER["constrain"] is False and ins.FREE_PAPER["stop_loss"] == 5e-4


def test_normalized_bypass_equals_pixel_bypass_with_scaled_lr():
    """Adam is invariant to the gradient's scale: with no penalties, steps of lr in
    normalised units are steps of lr * std in pixels (one channel)."""
    model = tiny_cnn(mean=(0.3,), std=(0.4,))
    g = torch.Generator().manual_seed(1)
    a, c = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    y = torch.tensor([0, 1, 2])
    b = 0.5 * (a + c)
    kw = dict(steps=12, deviation_weight=0.0, tv_weight=0.0, box=None, constrain=False)
    zn, _ = ins.bypass_barrier(model, a, c, b, y, lr=0.05, space="normalized", **kw)
    xp, _ = ins.bypass_barrier(model, a, c, b, y, lr=0.05 * 0.4, space="pixel", **kw)
    assert torch.allclose(zn, xp, atol=1e-4)


def test_gradient_projection_drifts_along_the_chord_iterate_does_not():
    model, a, c, y = planted()
    b = ins.interpolate(a, c, 0.5)
    kw = dict(steps=30, lr=0.02, deviation_weight=0.0, tv_weight=0.0, box=None)
    held, _ = ins.bypass_barrier(model, a, c, b, y, projection="iterate", **kw)
    drift, hist = ins.bypass_barrier(model, a, c, b, y, projection="gradient", **kw)
    along = lambda v: ((v - b) * (c - a)).flatten(1).sum(1).abs()  # noqa: E731
    assert along(held).max() < 1e-4
    assert along(drift).max() > 10 * along(held).max() + 1e-6  # Adam's scaling leaves the plane
    assert hist[-1].mean() < hist[0].mean()  # it still lowers the loss
    assert torch.isfinite(drift).all()
    with pytest.raises(ParameterError):
        ins.bypass_barrier(model, a, c, b, y, projection="both", **kw)


def test_bypass_normalized_box_keeps_pixels_in_range():
    model = tiny_cnn(mean=(0.3,), std=(0.4,))
    g = torch.Generator().manual_seed(2)
    a, c = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    y = torch.tensor([0, 1])
    out, _ = ins.bypass_barrier(model, a, c, 0.5 * (a + c), y, steps=20, lr=0.5,
                                space="normalized", box=(0.0, 1.0))
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5
    dot = ((out - 0.5 * (a + c)) * (c - a)).flatten(1).sum(1)
    assert dot.abs().max() < 1e-3


# ------------------------------------------------------------------ chapter 01 orchestration


def test_connect_sets_equals_connecting_each_set_alone():
    model, a, c, y = planted()
    sets = {("s", 0): ch01.PairSet(a[:2], c[:2], y[:2]), ("s", 1): ch01.PairSet(a[2:], c[2:], y[2:])}
    kw = dict(max_rounds=2, steps=40, lr=0.02, num_points=None)
    both = ch01.connect_sets(model, sets, tol=0.1, **kw)
    for key, ps in sets.items():
        alone = ins.connect(model, ps.a, ps.c, ps.targets, tol=0.1, **kw)
        assert torch.allclose(both[key].barriers, alone.barriers, atol=1e-5)
        assert both[key].connected_by_round == pytest.approx(alone.connected_by_round)
        assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(both[key].vertices, alone.vertices))
    with pytest.raises(ParameterError):
        ch01.split_result(both["s", 0], [5], 0.1)


def test_make_pair_sets_gives_four_same_class_kinds():
    model = steep_mlp()
    x = torch.rand(60, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = ch01.predict_labels(model, x)
    synth = dict(steps=200, stop_loss=0.05)
    sets, syn = ch01.make_pair_sets(model, x, y, 2, 1, seeds=[0, 1], synth=synth)
    assert set(sets) == {(s, k) for s in (0, 1) for k in ch01.KINDS}
    assert len(sets[0, "real-real"]) == 2 * len(y.unique())
    for (_, kind), ps in sets.items():
        if kind.startswith("real"):  # the first input is a real one of the pair's class
            rows = [int((x == v).flatten(1).all(1).nonzero()[0]) for v in ps.a]
            assert (y[rows] == ps.targets).all()
        assert (ch01.predict_labels(model, ps.c) == ps.targets).all()
    assert set(syn) == {0, 1} and len(syn[0]) == len(y.unique())
    assert not torch.equal(sets[0, "real-real"].a, sets[1, "real-real"].a)
    again, _ = ch01.make_pair_sets(model, x, y, 2, 1, seeds=[0], synth=synth)
    assert torch.equal(again[0, "real-synthetic"].c, sets[0, "real-synthetic"].c)
    summ = ch01.synthesis_summary(syn, model, 0.05)
    assert summ["inputs"] == 4 * len(y.unique()) and summ["reached"] == 1.0
    assert summ["steps_max"] < 200 and 0 <= summ["outside"] <= 1
    assert set(summ["tv_ratio"]) == {"estimate", "ci", "n"}
    with pytest.raises(ParameterError):
        ch01.synthesis_summary({}, model, 0.05)
    merged = ch01.merge_sets(sets, "real-real")
    assert len(merged) == 2 * len(sets[0, "real-real"])
    with pytest.raises(ParameterError):
        ch01.merge_sets(sets, "other")


@pytest.fixture(scope="module")
def planted_table():
    model, a, c, y = planted()
    sets = {(0, "real-real"): ch01.PairSet(a, c, y), (0, "real-synthetic"): ch01.PairSet(a, a + 1e-3, y)}
    res = ch01.connect_sets(model, sets, tol=0.1, max_rounds=2, steps=60, lr=0.02, num_points=None)
    return ch01.pair_table(res, sets, ["seed", "kind"]), res


def test_pair_table_and_tolerance_curve(planted_table):
    tab, res = planted_table
    assert ch01.round_columns(tab) == ["round_0", "round_1", "round_2"]
    real = tab[tab.kind == "real-real"]
    assert np.allclose(real["round_0"], res[0, "real-real"].linear_barriers.numpy(), atol=1e-6)
    assert (real["rel_length"] > 1).all() and (real["vertices"] >= 3).all()
    assert (tab[tab.kind == "real-synthetic"]["rounds_needed"] == 0).all()
    curve = ch01.tolerance_curve(tab, [0.01, 0.1, 10.0], n_boot=50)
    for (kind, r), sub in curve.groupby(["kind", "round"]):
        est = sub.sort_values("tol")["estimate"].to_numpy()
        assert (np.diff(est) >= 0).all()  # a looser tolerance never connects fewer pairs
        assert ((sub["lo"] <= sub["estimate"] + 1e-12) & (sub["estimate"] <= sub["hi"] + 1e-12)).all()
    real0 = curve[(curve.kind == "real-real") & (curve["round"] == 0) & (curve.tol == 0.1)]
    assert real0["estimate"].item() == 0.0  # the planted barrier is there on the straight line
    summary = ch01.kind_summary(tab, 0.1)
    assert summary.set_index("kind").loc["real-real", "barrier_frac"] == 1.0


def _table(kind_rows):
    rows = []
    for kind, r0, r_last, rounds_needed, rel in kind_rows:
        rows.append(dict(kind=kind, seed=0, pair=len(rows), target=0, round_0=r0, round_1=r_last,
                         rounds_needed=rounds_needed, vertices=2 if rounds_needed == 0 else 3,
                         rel_length=rel, chord_deviation=0.0, detour_angle=0.0))
    return pd.DataFrame(rows)


def test_connectivity_claims_reproduced_on_supporting_data():
    rows = [("real-real", 0.5, 0.0, 1, 1.01)] * 40 + [("real-real", 0.0, 0.0, 0, 1.0)] * 40
    rows += [(k, 0.0, 0.0, 0, 1.0) for k in ch01.KINDS[1:] for _ in range(80)]
    bends = pd.DataFrame({"null": np.full(40, 0.3), "target": np.arange(40) % 10})
    claims = ch01.connectivity_claims(_table(rows), 0.01, bends=bends)
    v = ch01.claim_verdicts(claims)
    assert v == {k: "reproduced" for k in v} and "near_linear" in v
    assert claims["real_connected"]["method"] == "exact binomial (Clopper-Pearson) over 80 pairs"
    assert claims["near_linear"]["method"].startswith("hierarchical bootstrap (class -> pair)")
    assert "near_linear" not in ch01.connectivity_claims(_table(rows), 0.01)
    # exact intervals: 30 of 30 connected is not enough for "at least 0.95" (lower 0.884)
    few = [(k, 0.0, 0.0, 0, 1.0) for k in ch01.KINDS for _ in range(30)]
    few = ch01.connectivity_claims(_table(few), 0.01)
    assert few["real_connected"]["result"]["ci"][0] == pytest.approx(0.884, abs=1e-3)
    assert ch01.claim_verdicts(few)["real_connected"] == "inconclusive"


def test_connectivity_claims_negative_controls():
    """Contradicting data: real pairs stay disconnected, random bends clear the barrier."""
    rows = [("real-real", 0.5, 0.5, -1, 1.5)] * 20 + [("real-real", 0.5, 0.0, 2, 1.6)] * 20
    rows += [(k, 0.5, 0.5, -1, 1.0) for k in ch01.KINDS[1:] for _ in range(20)]
    # random bends of the same size clear the barrier: the bend was no targeted move
    bends = pd.DataFrame({"null": np.full(20, 0.001), "target": np.arange(20) % 10})
    claims = ch01.connectivity_claims(_table(rows), 0.01, bends=bends)
    v = ch01.claim_verdicts(claims)
    for cid in ("real_connected", "interpolated_connected", "real_synthetic_connected",
                "synthetic_connected", "one_round", "near_linear"):
        assert v[cid] == "not reproduced", (cid, claims[cid]["result"])


def test_connectivity_claim_fails_end_to_end_without_bypass():
    """A model with a planted barrier and no bypass rounds: the connectivity claim fails."""
    model, a, c, y = planted()
    sets = {(0, "real-real"): ch01.PairSet(a, c, y)}
    res = ch01.connect_sets(model, sets, tol=0.01, max_rounds=0, num_points=None)
    tab = ch01.pair_table(res, sets, ["seed", "kind"])
    v = ch01.claim_verdicts(ch01.connectivity_claims(tab, 0.01))
    assert v["real_connected"] == "not reproduced"
    assert v["synthetic_connected"] == "inconclusive"  # no unit at all


def test_two_sample_ci_and_effect_word():
    a = np.full(30, 2.0) + np.linspace(0, 0.1, 30)
    b = np.full(30, 1.0) + np.linspace(0, 0.1, 30)
    iv = ch01.two_sample_ci(a, b, np.mean, n_boot=200)
    assert iv["ci"][0] > 0.8 and ch01.effect_word(iv) == "higher"
    assert ch01.effect_word(ch01.two_sample_ci(b, a, np.mean, n_boot=200)) == "lower"
    assert ch01.effect_word({"ci": [-0.1, 0.2]}) == "indistinguishable"
    with pytest.raises(ParameterError):
        ch01.two_sample_ci([], b)


# ------------------------------------------------------------------ chapter 03 orchestration


def _untrained_table(connected: bool, barrier: bool, models=("small_cnn", "resnet18_cifar")):
    rows = []  # 40 pairs per model: an exact interval of 40/40 reaches 0.912 >= 0.9
    for m in models:
        for s in (0, 1, 2, 3):
            for k in range(10):
                rows.append(dict(model=m, seed=s, pair=k, target=k, kind="synthetic",
                                 round_0=0.5 if barrier else 0.0,
                                 round_1=0.0 if connected else 0.5,
                                 rel_length=1.3, rounds_needed=1 if connected else -1))
    return pd.DataFrame(rows)


def test_untrained_claims_reproduced_and_negative_controls():
    good = ch01.claim_verdicts(ch03_findings.untrained_claims(_untrained_table(True, True), 0.01))
    assert good["connected_small_cnn"] == good["connected_pooled"] == "reproduced"
    assert good["straight_barriers"] == "reproduced"
    bad = ch01.claim_verdicts(ch03_findings.untrained_claims(_untrained_table(False, False), 0.01))
    for cid in ("connected_small_cnn", "connected_resnet18_cifar", "connected_pooled",
                "straight_barriers"):
        assert bad[cid] == "not reproduced", cid
    # a trained network with longer paths contradicts "trained paths are straighter"
    tab = _untrained_table(True, True)
    tr = tab[tab.model == "small_cnn"].assign(model="trained", rel_length=2.0)
    v = ch01.claim_verdicts(ch03_findings.untrained_claims(pd.concat([tab, tr]), 0.01,
                                                        trained_label="trained"))
    assert v["trained_straighter"] == "not reproduced"
    assert "connected_trained" not in v


def test_pooled_verdict_follows_the_intervals():
    """One model connected and one not: the pooled claim is not reproduced at 0.9."""
    tab = pd.concat([_untrained_table(True, True, ("small_cnn",)),
                     _untrained_table(False, True, ("resnet18_cifar",))])
    claims = ch03_findings.untrained_claims(tab, 0.01)
    v = ch01.claim_verdicts(claims)
    assert v["connected_small_cnn"] == "reproduced"
    assert v["connected_resnet18_cifar"] == "not reproduced"
    assert v["connected_pooled"] == "not reproduced"
    assert claims["connected_pooled"]["result"]["estimate"] == pytest.approx(0.5)


def test_build_untrained_is_seeded():
    a = ch03.build_untrained("small_cnn", "digits", 3, width=4, hidden=8)
    b = ch03.build_untrained("small_cnn", "digits", 3, width=4, hidden=8)
    c = ch03.build_untrained("small_cnn", "digits", 4, width=4, hidden=8)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc) and not a.training


def test_untrained_study_and_sweep_tiny():
    synth = dict(steps=30, lr=0.1, stop_loss=1e-3, space="normalized", box=None)
    ck = dict(max_rounds=1, steps=20, lr=0.1, deviation_weight=0.0, tv_weight=0.0,
              constrain=False, box=None, num_points=None, space="normalized")
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    nets = {s: tiny_cnn(seed=s, classes=2) for s in (0, 1)}
    kept = {}
    tab = ch03.untrained_study(nets, [0, 1], (1, 8, 8), 1, synth, ck, 0.01, num_points=9,
                                  real_x=x, real_pairs_per_class=1, labels=dict(model="tiny"),
                                  keep_pairs=kept)
    assert set(kept) == {0, 1} and kept[0].a.shape == (2, 1, 8, 8)
    syn = tab[tab.kind == "synthetic"]
    assert len(syn) == 4 and set(syn.seed) == {0, 1} and (tab.model == "tiny").all()
    assert (syn["peak"] >= syn["end_loss"] - 1e-6).all()
    assert np.allclose(syn["gap"], (syn["peak"] - syn["end_loss"]).clip(lower=0), atol=1e-6)
    assert (syn["steps_a"] <= 30).all()
    sweep = ch03_sweep.sweep_study("small_cnn", "digits", [2, 4], [1, 2], [0], [0, 1], (1, 8, 8),
                                synth, ck, 0.01, num_points=9, model_kwargs=dict(hidden=8))
    assert set(zip(sweep.width, sweep.step_factor)) == {(2, 1), (2, 2), (4, 1), (4, 2)}
    assert (sweep[sweep.step_factor == 2]["steps_a"] <= 60).all()
    part = ch03_sweep.sweep_study("small_cnn", "digits", [2, 4], [1, 2], [0], [0], (1, 8, 8),
                               synth, ck, 0.01, num_points=9, model_kwargs=dict(hidden=8),
                               cells=[(2, 1), (4, 1)])
    assert set(zip(part.width, part.step_factor)) == {(2, 1), (4, 1)}
    # the same seed and class start from the same noise in every cell of one width
    base = sweep[(sweep.width == 2) & (sweep.step_factor == 1)]
    same = part[part.width == 2]
    assert np.allclose(base[base.target == 0]["round_0"], same["round_0"])
    eff = ch03_sweep.factor_effects(sweep, dict(width=2, step_factor=1), dict(width=4, step_factor=2),
                                 0.01, 10.0)
    assert list(eff.factor) == ["width", "step_factor", "tolerance"]
    assert eff.set_index("factor").loc["tolerance", "alt_frac"] == 1.0  # 10 nats connects all


def test_factor_effects_find_the_driver():
    rows = []
    for w in (4, 16):
        for f in (1, 4):
            for s in (0, 1):
                for k in range(10):
                    ok = f == 4  # only the step budget matters
                    rows.append(dict(width=w, step_factor=f, seed=s, target=k, round_0=0.5,
                                     round_1=0.0 if ok else 0.05))
    eff = ch03_sweep.factor_effects(pd.DataFrame(rows), dict(width=4, step_factor=1),
                                 dict(width=16, step_factor=4), 0.01, 0.1).set_index("factor")
    assert eff.loc["step_factor", "effect"] == "raises"
    assert eff.loc["width", "effect"] == "no clear effect"
    assert eff.loc["tolerance", "effect"] == "raises"
    with pytest.raises(ParameterError):
        ch03_sweep.factor_effects(pd.DataFrame(rows), dict(width=8, step_factor=1), {}, 0.01, 0.1)


def test_barrier_evolution_tiny():
    from torch.utils.data import TensorDataset

    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(1))
    train_set = TensorDataset(x, y)
    synth = dict(steps=20, lr=0.1, stop_loss=5e-3, space="normalized", box=None)
    kw = dict(model_kwargs=dict(width=4, hidden=8), num_points=9)
    df = ch03_evolution.barrier_evolution("small_cnn", "digits", train_set, [0, 1], 4, 2, 16, 1e-2,
                                   [0, 1], (1, 8, 8), 1, synth, **kw)
    assert sorted(df.step.unique()) == [0, 2, 4]
    assert set(df.protocol) == {"re-synthesised", "fixed at init"}
    at0 = df[df.step == 0].pivot_table(index=["seed", "pair"], columns="protocol", values="max_loss")
    assert np.allclose(at0["re-synthesised"], at0["fixed at init"])  # the same pairs at step 0
    later = df[df.step == 4].pivot_table(index=["seed", "pair"], columns="protocol", values="end_loss")
    assert not np.allclose(later["re-synthesised"], later["fixed at init"])
    assert (df.max_loss >= df.end_loss - 1e-6).all()
    summ = ch03_evolution.evolution_summary(df)
    assert set(summ.n) == {2} and len(summ) == 6
    with pytest.raises(ParameterError):
        ch03_evolution.barrier_evolution("small_cnn", "digits", train_set, [0], 4, 0, 16, 1e-2,
                                  [0], (1, 8, 8), 1, synth, **kw)
