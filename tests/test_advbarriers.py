"""Tests of mcutils.advbarriers at tiny sizes: the paper's pairing and post-processing,
what each measured column means, the summaries (with negative controls for the chapter's
expected claims) and the orchestration of the sweeps and the detection study."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mcutils import advbarriers as ab
from mcutils import data, detection, training
from mcutils.core import report, stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import seed_everything
from mcutils.models import build_for_dataset

TINY = {"steps": 30, "lr": 0.05, "warmup": 2}


@pytest.fixture(scope="module")
def digits():
    """An MLP trained in a few seconds on the 8x8 digits (with a Normalize layer)."""
    seed_everything(0)
    train = data.load_dataset("digits", "train")
    test = data.load_dataset("digits", "test")
    net = build_for_dataset("mlp", "digits", hidden=32)
    training.train(net, data.TensorLoader(train, 64, shuffle=True), epochs=8, lr=0.01,
                   progress=False)
    return net.eval(), test


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


def test_paired_barriers_measure_what_they_say(digits):
    net, test = digits
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


def test_auroc_of_known_separations():
    assert ab.auroc_of([0, 1, 2], [3, 4]) == 1.0
    assert ab.auroc_of([3, 4], [0, 1, 2]) == 0.0
    assert ab.auroc_of([1, 1], [1, 1]) == 0.5
    assert math.isnan(ab.auroc_of([], [1.0]))


def test_upsample():
    x = torch.rand(3, 1, 8, 8)
    assert ab.upsample(x, 8) is x
    up = ab.upsample(x, 12)
    assert up.shape == (3, 1, 12, 12) and up.min() >= 0 and up.max() <= 1
    assert torch.allclose(ab.upsample(torch.full((1, 1, 8, 8), 0.3), 20), torch.tensor(0.3))
    assert abs(float(up.mean() - x.mean())) < 0.05
    with pytest.raises(ParameterError):
        ab.upsample(x, 2)


def test_sweep_model_trains_once_and_caches(tmp_path):
    kw = {"dataset": "digits", "model": "mlp", "size": 12, "epochs": 5, "train_subset": 400, "seed": 0, "lr": 0.01,
              "progress": False, "model_kwargs": {"hidden": 16}}
    net = ab.sweep_model(**kw)
    files = sorted(p.name for p in (tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1 and "12px" in files[0]
    again = ab.sweep_model(**kw)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 again.state_dict().values()))
    test = data.load_dataset("digits", "test")
    acc = (training.predict(net, ab.upsample(test.x, 12)).argmax(1) == test.y).float().mean()
    assert acc > 0.5  # trained at 12 px on upsampled digits
    raw = ab.sweep_model(**dict(kw, trained=False))
    raw2 = ab.sweep_model(**dict(kw, trained=False))
    assert all(torch.equal(a, b) for a, b in zip(raw.state_dict().values(),
                                                 raw2.state_dict().values()))
    assert not torch.equal(list(raw.state_dict().values())[-1],
                           list(net.state_dict().values())[-1])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # untrained: never cached


def test_orchestration_at_tiny_size(digits):
    net, test = digits
    df = ab.run_protocol(net, test.x, test.y, seeds=[0, 1], pairs_per_class=1, num_points=5,
                         attack=TINY, progress=False)
    assert sorted(df.seed.unique()) == [0, 1] and len(df) == 2 * 10 * 2
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    sw = ab.attack_sweep(net, pairs, {"paper": TINY, "strong": dict(TINY, mse_weight=0.0)},
                         num_points=5, progress=False)
    assert list(dict.fromkeys(sw.setting)) == ["paper", "strong"]
    w = sw[sw.kind == "within"]
    assert np.allclose(w[w.setting == "paper"].gap, w[w.setting == "strong"].gap)
    ms, nets = ab.model_sweep(pairs, {"mlp 12px": {"model": "mlp", "size": 12},
                                      "untrained": {"model": "mlp", "trained": False}},
                              dataset="digits", epochs=1, train_subset=300, num_points=5,
                              attack=TINY, progress=False)
    assert set(ms.network) == {"mlp 12px", "untrained"} and set(nets) == set(ms.network)
    assert set(ms[ms.network == "mlp 12px"]["size"]) == {12}
    with pytest.raises(ParameterError, match="unknown keys"):
        ab.model_sweep(pairs, {"x": {"depth": 3}}, dataset="digits", progress=False)


def test_sources_attack_suite_and_detector_table(digits):
    net, test = digits
    src = ab.select_sources(net, test.x, test.y, 40, seed=0)
    with torch.no_grad():
        assert (net(src.x).argmax(1) == src.y).all()
    assert (src.target != src.y).all()
    # the loss of a correctly classified real image of the target class: below ln(10)
    assert (src.stop_loss >= 0).all() and (src.stop_loss < math.log(10)).all()
    assert len(set(src.index.tolist())) == 40
    adv = ab.attack_suite(net, src, {"pgd": {"kind": "pgd_linf", "eps": 0.3, "steps": 10},
                                     "paper": dict(TINY, kind="optim")}, progress=False)
    with torch.no_grad():
        assert torch.equal(adv["pgd"][1], net(adv["pgd"][0]).argmax(1) != src.y)
        assert torch.equal(adv["paper"][1], net(adv["paper"][0]).argmax(1) == src.target)
    assert adv["pgd"][1].float().mean() > 0.5
    with pytest.raises(ParameterError, match="kind"):
        ab.attack_suite(net, src, {"x": {"kind": "deepfool"}}, progress=False)
    pool = data.load_dataset("digits", "train")
    maha = detection.Mahalanobis().fit(detection.penultimate_features(net, pool.x), pool.y)
    bf_r, lf_r, _ = detection.connectivity_features(net, src.x, pool.x, pool.y, num_refs=2,
                                                    num_points=5, mahalanobis=maha)
    feats = {}
    for name, (xa, ok) in adv.items():
        bf, lf, _ = detection.connectivity_features(net, xa[ok], pool.x, pool.y, num_refs=2,
                                                    num_points=5, seed=1, mahalanobis=maha)
        feats[name] = (bf, lf, np.flatnonzero(ok.numpy()))
    tab, scores = ab.detector_table((bf_r, lf_r), feats, ["logits", "profile", "mahalanobis"],
                                    folds=3, n_boot=50)
    assert set(tab.attack) == set(adv) and len(tab) == 6
    row = tab[(tab.attack == "pgd") & (tab.detector == "logits")].iloc[0]
    labels, s = scores["pgd"]["labels"], scores["pgd"]["logits"]
    assert row.auroc["estimate"] == pytest.approx(stats.auroc(labels, s, num_boot=0).auc)
    assert row.tpr["estimate"] == pytest.approx(stats.tpr_at_fpr(labels, s))
    assert row.auroc["n"] == 40
    # the Wilcoxon test pairs each adversarial example with its own source
    bf_a, _, rows_a = feats["pgd"]
    wil = stats.wilcoxon_paired(bf_a.gap.mean(1).numpy(), bf_r.gap.mean(1).numpy()[rows_a],
                                alternative="greater")
    assert row.wilcoxon_p == wil["pvalue"]


def test_adaptive_study_protocol(digits):
    net, test = digits
    src = ab.select_sources(net, test.x, test.y, 40, seed=1)
    att = {"steps": 60, "lr": 0.05, "warmup": 2}
    plain = ab.attack_suite(net, src, {"paper": dict(att, kind="optim")},
                            progress=False)["paper"][0]
    pool = data.load_dataset("digits", "train")
    half = len(pool.y) // 2
    res = ab.adaptive_study(net, src, plain, (pool.x[:half], pool.y[:half]),
                            (pool.x[half:], pool.y[half:]), penalties=[0.0, 1.0],
                            detector="logits", num_refs=2, num_points=5, attack=att,
                            n_boot=50, progress=False)
    assert res.penalty.tolist() == [0.0, 1.0]
    zero, one = res.iloc[0], res.iloc[1]
    # w = 0 is the paper's attack: the retrained detector is the deployed one
    assert zero.difference["ci"] == [0.0, 0.0]
    assert zero.auroc_deployed == zero.auroc_retrained
    assert zero.n_test_adv + zero.auroc_deployed["n"] > 0
    # the adaptive attacker, who optimises against the deployed detector, beats it while
    # still reaching its target; a detector retrained on its examples recovers
    assert one.success["estimate"] > 0.8
    assert one.auroc_deployed["estimate"] < zero.auroc_deployed["estimate"] - 0.2
    assert one.auroc_retrained["estimate"] > one.auroc_deployed["estimate"]
    with pytest.raises(ParameterError, match="one paper-attack example"):
        ab.adaptive_study(net, src, plain[:3], (pool.x, pool.y), (pool.x, pool.y), [0.0])


def test_settings_specs_and_formatting():
    s = ab.sweep_settings([0.1, 10.0], [0.5], [4.0])
    assert list(s) == ["paper", "lambda=10", "stop=0.5 Loss1", "lr=4x", "over-confident"]
    assert s["lambda=10"] == {"mse_weight": 10.0} and s["over-confident"] == {"stop": None}
    assert s["lr=4x"]["lr"] == pytest.approx(4 * ab.PAPER_ATTACK["lr"])
    assert "over-confident" not in ab.sweep_settings(over_confident=False)
    with pytest.raises(ParameterError):
        ab.sweep_settings(stop_scales=[0.0])
    specs = ab.network_specs([42, 28], ["wide", "untrained"], native=28)
    assert list(specs) == ["small_cnn 28px", "small_cnn 42px", "wide", "untrained"]
    assert specs["untrained"]["trained"] is False and specs["wide"]["model_kwargs"]["width"] == 64
    with pytest.raises(ParameterError, match="not known"):
        ab.network_specs([], ["vit"])
    assert ab.format_interval({"estimate": 0.75, "ci": [0.6812, 0.82], "n": 3}) == \
        "0.75 [0.68, 0.82]"
    summ = [{"setting": "a", "rho": {"estimate": 0.3}}, {"setting": "over-confident",
                                                          "rho": {"estimate": 0.1}},
            {"setting": "b", "rho": {"estimate": 0.2}}]
    assert [e["setting"] for e in ab.rho_curve(summ)] == ["b", "a"]


def test_setting_difference_is_paired_over_units():
    df = pd.concat([_synthetic(seeds=(0,), adv_gap=1.0).assign(setting="far"),
                    _synthetic(seeds=(0,), adv_gap=0.0).assign(setting="near")])
    d = ab.setting_difference(df, "far", "near", n_boot=200)
    assert d["ci"][0] > 0.3 and d["n"] == 21
    same = ab.setting_difference(df, "far", "far", n_boot=200)
    assert same["ci"] == [0.0, 0.0]
    with pytest.raises(ParameterError, match="no rows"):
        ab.setting_difference(df, "far", "missing")


def test_attack_summary_and_defender_features(digits):
    net, test = digits
    src = ab.select_sources(net, test.x, test.y, 20, seed=2)
    sub = src.select(range(5))
    assert len(sub) == 5 and torch.equal(sub.index, src.index[:5])
    adv = ab.attack_suite(net, src, {"pgd": {"kind": "pgd_linf", "eps": 0.3, "steps": 10}},
                          progress=False)
    tab = ab.attack_summary(src, adv, n_boot=50)
    row = tab.iloc[0]
    assert row.success["estimate"] == pytest.approx(float(adv["pgd"][1].float().mean()))
    assert 0 < row.linf <= 0.3 + 1e-6 and row.n == int(adv["pgd"][1].sum())
    pool = data.load_dataset("digits", "train")
    (bf, lf), feats = ab.defender_features(net, src, adv, (pool.x, pool.y), num_refs=2,
                                           num_points=5)
    assert len(bf) == len(lf) == 20
    b, lg, rows = feats["pgd"]
    assert np.array_equal(rows, np.flatnonzero(adv["pgd"][1].numpy())) and len(b) == len(rows)
    # references are of the predicted class, drawn from the given pool
    assert torch.equal(lg.predicted, training.predict(net, adv["pgd"][0][adv["pgd"][1]]).argmax(1))


def test_table_entry_missing_attack_is_an_empty_interval():
    iv = {"estimate": 0.7, "ci": [0.6, 0.8], "n": 10}
    tab = pd.DataFrame([{"attack": "a", "detector": "barrier", "auroc": iv}])
    assert ab.table_entry(tab, "a", "barrier") == iv
    missing = ab.table_entry(tab, "b", "barrier")
    assert missing["n"] == 0 and math.isnan(missing["ci"][0])
    assert report.verdict(missing["ci"], 0.9, ">=") == "inconclusive"
    assert ab.table_entry(pd.DataFrame(), "a", "barrier")["n"] == 0


def test_functions_receiving_a_model_restore_its_mode_and_use_eval(digits):
    net, test = digits
    noisy = torch.nn.Sequential(*net, torch.nn.Dropout(0.5))  # train mode would be random
    noisy.train()
    src = ab.select_sources(noisy, test.x, test.y, 12, seed=3)
    assert noisy.training
    again = ab.select_sources(noisy, test.x, test.y, 12, seed=3)
    assert torch.equal(src.index, again.index) and torch.equal(src.stop_loss, again.stop_loss)
    spec = {"pgd": {"kind": "pgd_linf", "eps": 0.2, "steps": 3, "random_start": False}}
    a1 = ab.attack_suite(noisy, src, spec, progress=False)["pgd"][0]
    assert noisy.training and all(m.training for m in noisy.modules())
    a2 = ab.attack_suite(noisy, src, spec, progress=False)["pgd"][0]
    assert torch.equal(a1, a2)
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    d1 = ab.paired_barriers(noisy, pairs, num_points=5, attack=TINY)
    d2 = ab.paired_barriers(noisy, pairs, num_points=5, attack=TINY)
    assert noisy.training
    pd.testing.assert_frame_equal(d1, d2)
