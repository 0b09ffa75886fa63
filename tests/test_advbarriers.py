"""Tests of mcutils.advbarriers at tiny sizes: the paper's pairing and post-processing,
what each measured column means and the summaries (with negative controls for the
chapter's expected claims). The chapter's orchestration is tested in
test_ch04_adversarial.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mcutils import advbarriers as ab
from mcutils.core import report
from mcutils.core.checks import ParameterError

TINY = {"steps": 30, "lr": 0.05, "warmup": 2}


def test_paper_pairs_follow_the_papers_indexing():
    y = torch.arange(4).repeat_interleave(10)
    x = torch.rand(len(y), 1, 4, 4)
    p = ab.paper_pairs(x, y, pairs_per_class=3, seed=5)
    assert len(p) == 12 and p.pair.tolist() == [0, 1, 2] * 4
    assert (y[p.index[:, 0]] == p.cls).all() and (y[p.index[:, 1]] == p.cls).all()
    assert (y[p.index[:, 2]] == p.k_cls).all() and (p.k_cls != p.cls).all()
    assert torch.equal(p.a, x[p.index[:, 0]]) and torch.equal(p.k, x[p.index[:, 2]])
    # A and B are distinct images; K of pair p is image 2p of its class, i.e. the A of
    # pair p of that class (the paper's compute_adversarial_barriers reads data_other[2p])
    assert (p.index[:, 0] != p.index[:, 1]).all()
    for row in range(len(p)):
        same = (p.cls == p.k_cls[row]) & (p.pair == p.pair[row])
        assert p.index[same, 0].item() == p.index[row, 2].item()
    again = ab.paper_pairs(x, y, pairs_per_class=3, seed=5)
    assert torch.equal(p.index, again.index)
    assert not torch.equal(p.index, ab.paper_pairs(x, y, pairs_per_class=3, seed=6).index)
    assert len(p.select([0, 5])) == 2
    with pytest.raises(ParameterError, match="fewer than"):
        ab.paper_pairs(x, y, pairs_per_class=6)
    with pytest.raises(ParameterError, match="two classes"):
        ab.paper_pairs(x[:10], y[:10], pairs_per_class=2)


def test_paired_barriers_measure_what_they_say(digits_mlp):
    net, test = digits_mlp
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=2, seed=0)
    df, k_adv = ab.paired_barriers(net, pairs, num_points=9, attack=TINY,
                                   return_adversarial=True)
    w, a = df[df.kind == "within"], df[df.kind == "adversarial"]
    assert len(w) == len(a) == len(pairs) == 20
    with torch.no_grad():
        def ce(im):
            return F.cross_entropy(net(im), pairs.cls, reduction="none").numpy()
        np.testing.assert_allclose(w.loss1, ce(pairs.a), atol=1e-5)
        np.testing.assert_allclose(a.loss1, ce(pairs.a), atol=1e-5)
        np.testing.assert_allclose(w.loss2, ce(pairs.b), atol=1e-5)
        np.testing.assert_allclose(a.loss2, ce(k_adv), atol=1e-5)
        pred = net(k_adv).argmax(1)
    np.testing.assert_allclose(df.gap, df["max"] - np.maximum(df.loss1, df.loss2), atol=1e-6)
    assert (df.gap >= 0).all()
    l2 = (k_adv - pairs.k).flatten(1).norm(dim=1)
    np.testing.assert_allclose(a.l2, l2, rtol=1e-5)
    np.testing.assert_allclose(a.rho, l2 / (k_adv - pairs.a).flatten(1).norm(dim=1), rtol=1e-5)
    assert np.array_equal(a.success.to_numpy(), (pred == pairs.cls).numpy())
    # the matched-loss stop: samples that stopped early end at or below the loss of A
    early = a.steps.to_numpy() < TINY["steps"]
    assert early.sum() > 0
    assert (a.loss2.to_numpy()[early] <= a.loss1.to_numpy()[early] + 1e-6).all()
    # an over-confident end (no stop) reaches a lower loss with a larger perturbation
    over = ab.paired_barriers(net, pairs, num_points=9, attack=dict(TINY, stop=None),
                              within=w)
    oa = over[over.kind == "adversarial"]
    assert oa.loss2.median() < a.loss2.median() and oa.l2.median() > a.l2.median()
    assert (oa.steps == TINY["steps"]).all()
    pd.testing.assert_frame_equal(over[over.kind == "within"], w)
    with pytest.raises(ParameterError, match="unknown attack settings"):
        ab.paired_barriers(net, pairs, attack={"eps": 1.0})
    with pytest.raises(ParameterError, match="stop"):
        ab.paired_barriers(net, pairs, attack={"stop": "early"})


def _synthetic(seeds=(0, 1, 2), adv_gap=1.0, real_gap=0.0, per_class=7, classes=3):
    """A protocol table in the shape of paired_barriers, with chosen gaps."""
    rng = np.random.default_rng(0)
    rows = []
    for s in seeds:
        unit = 0
        for c in range(classes):
            for p in range(per_class):
                l1 = rng.uniform(0, 0.5)
                for kind, gap in (("within", real_gap), ("adversarial", adv_gap)):
                    g = max(gap + rng.normal(0, 0.1), 0.0)
                    l2 = l1 + rng.normal(0, 0.05 + 0.5 * (p == 0))
                    rows.append({"seed": s, "kind": kind, "cls": c, "pair": p, "unit": unit, "loss1": l1,
                                     "loss2": l2, "gap": g, "max": g + max(l1, l2), "success": True,
                                     "l2": 1.0, "rho": 0.3})
                unit += 1
    return pd.DataFrame(rows)


def test_drop_unmatched_is_the_papers_postprocessing():
    df = pd.DataFrame({"kind": ["within"] * 5 + ["adversarial"] * 5, "cls": [0] * 10,
                           "loss1": [0.0] * 10,
                           "loss2": [0.1, 0.5, -0.3, 0.5, 0.2, 0.0, 0.9, 0.0, 0.05, 0.0]})
    kept = ab.drop_unmatched(df, drop=2)
    # within: |diff| 0.1 0.5 0.3 0.5 0.2 -> the two 0.5 rows go; adversarial: 0.9 and
    # the larger of the rest (0.05) go, and of the three ties at 0 all stay
    assert kept.index.tolist() == [0, 2, 4, 5, 7, 9]
    assert ab.drop_unmatched(df, drop=0).equals(df)
    assert len(ab.drop_unmatched(df, drop=5)) == 0
    with pytest.raises(ParameterError, match="columns"):
        ab.drop_unmatched(df.drop(columns="loss2"))


def test_protocol_summary_over_seeds_with_negative_controls():
    good = ab.protocol_summary(_synthetic(), drop=2, n_boot=300)
    assert good["auroc_gap"]["estimate"] > 0.95
    # pooled: units of all seeds (pairs with at least one kept path), bootstrapped
    # within their seed
    assert 45 <= good["auroc_gap"]["n"] < 63
    per_seed = ab.protocol_summary(_synthetic(), drop=2, method="seeds")
    assert per_seed["auroc_gap"]["n"] == 3  # a Student-t interval over the three seeds
    # the chapter's expected claims, checked as the chapter checks them
    for summ in (good, per_seed):
        assert report.verdict(summ["auroc_gap"]["ci"], 0.5, ">=") == "reproduced"
        assert report.verdict(summ["median_gap_real"]["ci"], math.log(2), "<=") == "reproduced"
    # negative controls: contradicting data give a verdict other than "reproduced"
    for method in ("pooled", "seeds"):
        swapped = ab.protocol_summary(_synthetic(adv_gap=0.0, real_gap=1.0), drop=2,
                                      method=method, n_boot=300)
        assert report.verdict(swapped["auroc_gap"]["ci"], 0.5, ">=") == "not reproduced"
        assert report.verdict(swapped["median_gap_real"]["ci"], math.log(2), "<=") == \
            "not reproduced"
    # the drop removes 2 of 7 per class and kind: 5 x 3 classes x 2 kinds per seed
    one = _synthetic(seeds=(0,))
    assert len(ab.drop_unmatched(one, 2)) == 30
    single = ab.protocol_summary(one, drop=2, n_boot=200)
    # units: pairs with at least one kept path (5 of 7 per class kept in each kind)
    assert 15 <= single["auroc_gap"]["n"] < 21
    no_drop = ab.protocol_summary(one, drop=0, n_boot=200)
    assert no_drop["median_gap_adv"]["n"] == 21
    assert set(good) == set(ab.STATISTICS)
    # pooled over seeds equals the statistic of the concatenated units
    pooled_units = ab.drop_unmatched(_synthetic(seeds=(0,)), 2).assign(seed=0)
    assert ab.protocol_summary(pooled_units, drop=0, n_boot=50)["median_gap_adv"]["estimate"] == \
        pytest.approx(np.median(pooled_units[pooled_units.kind == "adversarial"].gap))
    with pytest.raises(ParameterError, match="method"):
        ab.protocol_summary(one, method="mean")


def test_protocol_summary_hierarchical_over_seeds_classes_and_units():
    df = _synthetic()
    hier = ab.protocol_summary(df, drop=2, n_boot=300, method="hierarchical")
    flat = ab.protocol_summary(df, drop=2, n_boot=300)
    assert set(hier) == set(ab.STATISTICS)
    for k in ("median_gap_real", "auroc_gap"):
        assert hier[k]["estimate"] == pytest.approx(flat[k]["estimate"])  # same statistic
        assert hier[k]["n"] == flat[k]["n"]  # n counts the units A
        assert "hierarchical bootstrap over 3 seed(s) -> 3 classes" in hier[k]["method"]
    assert 0 <= hier["auroc_gap"]["ci"][0] <= hier["auroc_gap"]["ci"][1] <= 1
    assert report.verdict(hier["auroc_gap"]["ci"], 0.5, ">") == "reproduced"
    assert report.verdict(hier["median_gap_real"]["ci"], math.log(2), "<=") == "reproduced"
    # the attack's success is a fraction of independent attacks: exact binomial, never [1, 1]
    succ = hier["success"]
    assert succ["estimate"] == 1.0 and succ["ci"][1] == 1.0 and succ["ci"][0] < 1.0
    assert succ["method"].startswith("exact binomial")
    # a strong seed effect widens the hierarchical interval beyond the within-seed one
    shifted = pd.concat([_synthetic(seeds=(s,), real_gap=0.3 * s) for s in range(3)])
    h = ab.protocol_summary(shifted, drop=2, n_boot=300, method="hierarchical")
    f = ab.protocol_summary(shifted, drop=2, n_boot=300)
    width = {k: v["median_gap_real"]["ci"][1] - v["median_gap_real"]["ci"][0]
             for k, v in (("h", h), ("f", f))}
    assert width["h"] > width["f"]
    # negative control: contradicting data are not reproduced
    swapped = ab.protocol_summary(_synthetic(adv_gap=0.0, real_gap=1.0), drop=2, n_boot=300,
                                  method="hierarchical", keys=["auroc_gap", "median_gap_real"])
    assert set(swapped) == {"auroc_gap", "median_gap_real"}
    assert report.verdict(swapped["auroc_gap"]["ci"], 0.5, ">") == "not reproduced"
    assert report.verdict(swapped["median_gap_real"]["ci"], math.log(2), "<=") == \
        "not reproduced"
    with pytest.raises(ParameterError, match="not known"):
        ab.protocol_summary(df, keys=["mean_gap"])


def test_sweep_summary_per_setting():
    df = pd.concat([_synthetic(seeds=(0,), adv_gap=1.0).assign(setting="far"),
                    _synthetic(seeds=(0,), adv_gap=0.0).assign(setting="near")])
    out = ab.sweep_summary(df, by="setting", n_boot=200)
    assert [e["setting"] for e in out] == ["far", "near"]
    assert out[0]["auroc"]["ci"][0] > 0.9 and out[1]["auroc"]["ci"][1] < 0.8
    assert set(out[0]) == {"setting", "rho", "median_gap", "median_gap_real", "auroc",
                           "success"}
    assert out[0]["rho"]["estimate"] == pytest.approx(0.3)
    with pytest.raises(ParameterError, match="column"):
        ab.sweep_summary(df, by="size")


def test_setting_difference_is_paired_over_units():
    df = pd.concat([_synthetic(seeds=(0,), adv_gap=1.0).assign(setting="far"),
                    _synthetic(seeds=(0,), adv_gap=0.0).assign(setting="near")])
    d = ab.setting_difference(df, "far", "near", n_boot=200)
    assert d["ci"][0] > 0.3 and d["n"] == 21
    same = ab.setting_difference(df, "far", "far", n_boot=200)
    assert same["ci"] == [0.0, 0.0]
    with pytest.raises(ParameterError, match="no rows"):
        ab.setting_difference(df, "far", "missing")


def test_predict_classes_and_class_loss_are_batched_in_eval_mode(digits_mlp):
    net, test = digits_mlp
    noisy = torch.nn.Sequential(*net, torch.nn.Dropout(0.5))  # train mode would be random
    noisy.train()
    x, y = test.x[:50], test.y[:50]
    with torch.no_grad():
        logits = net(x)
    pred = ab.predict_classes(noisy, x, batch_size=7)
    assert torch.equal(pred, logits.argmax(1)) and pred.device.type == "cpu"
    loss = ab.class_loss(noisy, x, y, batch_size=7)
    np.testing.assert_allclose(loss.numpy(), F.cross_entropy(logits, y, reduction="none").numpy(),
                               atol=1e-5)
    assert noisy.training


def test_rho_curve_orders_by_rho_without_over_confident():
    summ = [{"setting": "a", "rho": {"estimate": 0.3}}, {"setting": "over-confident",
                                                          "rho": {"estimate": 0.1}},
            {"setting": "b", "rho": {"estimate": 0.2}}]
    assert [e["setting"] for e in ab.rho_curve(summ)] == ["b", "a"]
    assert [e["setting"] for e in ab.rho_curve(summ, exclude=())] == ["over-confident", "b", "a"]


def test_paired_barriers_restore_the_mode_and_use_eval(digits_mlp):
    net, test = digits_mlp
    noisy = torch.nn.Sequential(*net, torch.nn.Dropout(0.5))  # train mode would be random
    noisy.train()
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    d1 = ab.paired_barriers(noisy, pairs, num_points=5, attack=TINY)
    d2 = ab.paired_barriers(noisy, pairs, num_points=5, attack=TINY)
    assert noisy.training
    pd.testing.assert_frame_equal(d1, d2)
