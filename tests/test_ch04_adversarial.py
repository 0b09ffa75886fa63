"""Tests of chapter 04's modules (mcutils.chapters.ch04_adversarial, ch04_sweep,
ch04_detectors) at tiny sizes: the orchestration of the protocol, the sweeps, the
detection study and the adaptive attack; the claims as data, the tables and figures."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from mcutils import advbarriers as ab
from mcutils import data, detection, detection_baselines, training
from mcutils.chapters import ch04_adaptive as ca
from mcutils.chapters import ch04_adversarial as ch04
from mcutils.chapters import ch04_controls as cc
from mcutils.chapters import ch04_detectors as cd
from mcutils.chapters import ch04_parts as cpt
from mcutils.chapters import ch04_sweep as cs
from mcutils.core import report, stats
from mcutils.core.checks import ParameterError

matplotlib.use("Agg")

TINY = {"steps": 30, "lr": 0.05, "warmup": 2}


def test_upsample():
    x = torch.rand(3, 1, 8, 8)
    assert cs.upsample(x, 8) is x
    up = cs.upsample(x, 12)
    assert up.shape == (3, 1, 12, 12) and up.min() >= 0 and up.max() <= 1
    assert torch.allclose(cs.upsample(torch.full((1, 1, 8, 8), 0.3), 20), torch.tensor(0.3))
    assert abs(float(up.mean() - x.mean())) < 0.05
    with pytest.raises(ParameterError):
        cs.upsample(x, 2)


def test_sweep_model_trains_once_and_caches(tmp_path):
    kw = {"dataset": "digits", "model": "mlp", "size": 12, "epochs": 5, "train_subset": 400, "seed": 0, "lr": 0.01,
              "progress": False, "model_kwargs": {"hidden": 16}}
    net = cs.sweep_model(**kw)
    files = sorted(p.name for p in (tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1 and "12px" in files[0]
    again = cs.sweep_model(**kw)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 again.state_dict().values()))
    test = data.load_dataset("digits", "test")
    acc = (training.predict(net, cs.upsample(test.x, 12)).argmax(1) == test.y).float().mean()
    assert acc > 0.5  # trained at 12 px on upsampled digits_mlp
    raw = cs.sweep_model(**dict(kw, trained=False))
    raw2 = cs.sweep_model(**dict(kw, trained=False))
    assert all(torch.equal(a, b) for a, b in zip(raw.state_dict().values(),
                                                 raw2.state_dict().values()))
    assert not torch.equal(list(raw.state_dict().values())[-1],
                           list(net.state_dict().values())[-1])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # untrained: never cached


def test_orchestration_at_tiny_size(digits_mlp):
    net, test = digits_mlp
    df = cs.run_protocol(net, test.x, test.y, seeds=[0, 1], pairs_per_class=1, num_points=5,
                         attack=TINY, progress=False)
    assert sorted(df.seed.unique()) == [0, 1] and len(df) == 2 * 10 * 2
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    sw = cs.attack_sweep(net, pairs, {"paper": TINY, "strong": dict(TINY, mse_weight=0.0)},
                         num_points=5, progress=False)
    assert list(dict.fromkeys(sw.setting)) == ["paper", "strong"]
    w = sw[sw.kind == "within"]
    assert np.allclose(w[w.setting == "paper"].gap, w[w.setting == "strong"].gap)
    ms, nets = cs.model_sweep(pairs, {"mlp 12px": {"model": "mlp", "size": 12},
                                      "untrained": {"model": "mlp", "trained": False}},
                              dataset="digits", epochs=1, train_subset=300, num_points=5,
                              attack=TINY, progress=False)
    assert set(ms.network) == {"mlp 12px", "untrained"} and set(nets) == set(ms.network)
    assert set(ms[ms.network == "mlp 12px"]["size"]) == {12}
    with pytest.raises(ParameterError, match="unknown keys"):
        cs.model_sweep(pairs, {"x": {"depth": 3}}, dataset="digits", progress=False)


def test_sources_attack_suite_and_detector_table(digits_mlp):
    net, test = digits_mlp
    src = cd.select_sources(net, test.x, test.y, 40, seed=0)
    with torch.no_grad():
        assert (net(src.x).argmax(1) == src.y).all()
    assert (src.target != src.y).all()
    # the loss of a correctly classified real image of the target class: below ln(10)
    assert (src.stop_loss >= 0).all() and (src.stop_loss < math.log(10)).all()
    assert len(set(src.index.tolist())) == 40
    adv = cd.attack_suite(net, src, {"pgd": {"kind": "pgd_linf", "eps": 0.3, "steps": 10},
                                     "paper": dict(TINY, kind="optim")}, progress=False)
    with torch.no_grad():
        assert torch.equal(adv["pgd"][1], net(adv["pgd"][0]).argmax(1) != src.y)
        assert torch.equal(adv["paper"][1], net(adv["paper"][0]).argmax(1) == src.target)
    assert adv["pgd"][1].float().mean() > 0.5
    with pytest.raises(ParameterError, match="kind"):
        cd.attack_suite(net, src, {"x": {"kind": "deepfool"}}, progress=False)
    pool = data.load_dataset("digits", "train")
    maha = detection.Mahalanobis().fit(detection.penultimate_features(net, pool.x), pool.y)
    bf_r, lf_r, _ = detection.connectivity_features(net, src.x, pool.x, pool.y, num_refs=2,
                                                    num_points=5, mahalanobis=maha)
    feats = {}
    for name, (xa, ok) in adv.items():
        bf, lf, _ = detection.connectivity_features(net, xa[ok], pool.x, pool.y, num_refs=2,
                                                    num_points=5, seed=1, mahalanobis=maha)
        feats[name] = (bf, lf, np.flatnonzero(ok.numpy()))
    tab, scores = cd.detector_table((bf_r, lf_r), feats, ["logits", "profile", "mahalanobis"],
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


def test_adaptive_study_protocol(digits_mlp):
    net, test = digits_mlp
    src = cd.select_sources(net, test.x, test.y, 40, seed=1)
    att = {"steps": 60, "lr": 0.05, "warmup": 2}
    plain = cd.attack_suite(net, src, {"paper": dict(att, kind="optim")},
                            progress=False)["paper"][0]
    pool = data.load_dataset("digits", "train")
    half = len(pool.y) // 2
    dep = ca.deploy(net, src, plain, (pool.x[:half], pool.y[:half]), detector="logits",
                    num_refs=2, num_points=5)
    assert dep.is_train.sum() == 20
    examples = {1.0: ca.adaptive_examples(net, src, dep, 1.0, (pool.x[half:], pool.y[half:]),
                                          draws=2, attack=att)}
    res = ca.adaptive_study(net, src, plain, dep, examples, n_boot=50, progress=False)
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
    assert ca.strongest(res).penalty == 1.0
    with pytest.raises(ParameterError, match="one paper-attack example"):
        ca.deploy(net, src, plain[:3], (pool.x, pool.y))
    with pytest.raises(ParameterError, match="penalty"):
        ca.adaptive_examples(net, src, dep, 0.0, (pool.x, pool.y))


def _tiny_section_params(**changes):
    return _tiny_params(num_inputs=24, adaptive_inputs=12, folds=2, ref_pool=400,
                        adaptive_penalties=[0.0, 1.0], adaptive_steps=6, eot_draws=2,
                        num_refs=2, det_points=4, pgd_steps=2, cw_steps=2, mc_samples=4,
                        **changes)


def test_parts_then_the_notebook_give_the_one_process_numbers():
    """A pool part computes and caches exactly what the notebook's function loads."""
    params = _tiny_section_params()
    s = cpt.section3_setup(params)
    direct = cd.attack_suite(s["net"], s["sources"], s["specs"], seed=params["seed"],
                             progress=False)
    ch04.attack_part(params, None)
    ch04.adaptive_part(params, 1.0)
    sec = cpt.section3(params, progress=False)
    for name, (adv, ok) in direct.items():
        assert torch.equal(sec["adversarial"][name][0], adv), name
        assert torch.equal(sec["adversarial"][name][1], ok), name
    srcs, plain, dep, attack = cpt.adaptive_inputs(params, sec)
    fresh = ca.adaptive_examples(sec["net"], srcs, dep, 1.0, sec["attacker"], draws=2,
                                 attack=attack, seed=params["seed"])
    cached = cpt.cached_adaptive(sec["net"], srcs, dep, 1.0, sec["attacker"], 2, attack,
                                 seed=params["seed"])
    assert torch.equal(fresh, cached)
    # the table has every detector, the established ones with their choice per fold
    table = sec["table"]
    assert set(table.detector) == set(cd.DETECTORS)
    chosen = table[table.detector == "lid"].chosen.iloc[0]
    assert len(chosen) == 2 and all(0 <= c < len(detection_baselines.LID_KS) for c in chosen)
    assert table[table.detector == "barrier"].chosen.iloc[0] is None
    got = cpt.detection_intervals(table, sec["scores"], n_boot=20)
    assert set(got) == set(ch04.DETECTION_CLAIMS)
    assert got["ensemble_detects"] == cd.table_entry(table, "paper (matched)",
                                                     "mahalanobis_ensemble")
    study = cpt.adaptive_section(params, sec, progress=False)
    assert study.penalty.tolist() == [0.0, 1.0]
    # the controls: real inputs relabelled as adversarial are never detected
    ctl = cc.detection_controls(sec["net"], sec["test"].x, sec["test"].y, sec, params)
    assert set(ctl) == set(ch04.DETECTION_CLAIMS)
    for cid in ("barrier_detects", "ensemble_detects"):
        res = ctl[cid]["result"]
        assert report.verdict(res["ci"], 0.9, ">=") != "reproduced"
        assert res["ci"][0] < 0.5 < res["ci"][1] or abs(res["estimate"] - 0.5) < 0.25
    assert list(cc.control_table(ctl).claim) == list(ctl)


def test_protocol_part_then_the_notebook_give_the_one_process_rows():
    params = _tiny_params()
    net, _ = ch04.setup_model(params)
    test = data.load_dataset(params["dataset"], "test")
    direct, k_direct = cs.run_protocol(net, test.x, test.y, params["seeds"], 1, 5, TINY,
                                       progress=False, return_adversarial=True)
    ch04.protocol_part(dict(params, attack_steps=TINY["steps"]), params["seeds"][1])
    rows, k_adv = cpt.cached_protocol(net, test.x, test.y, params["seeds"], 1, 5,
                                      ch04.paper_attack(params), progress=False)
    pd.testing.assert_frame_equal(rows, direct, check_dtype=False)
    assert all(torch.equal(k_adv[s], k_direct[s]) for s in params["seeds"])


def test_baseline_grids_and_tuned_table(digits_mlp):
    net, test = digits_mlp
    src = cd.select_sources(net, test.x, test.y, 30, seed=0)
    adv = cd.attack_suite(net, src, {"pgd": {"kind": "pgd_linf", "eps": 0.3, "steps": 5}},
                          progress=False)
    pool = data.load_dataset("digits", "train")
    ens = detection_baselines.MahalanobisEnsemble().fit(net, pool.x, pool.y)
    grids = cd.baseline_grids(net, src, adv, (pool.x, pool.y), ens, lid_refs=60,
                              mc_samples=5)
    n_ok = int(adv["pgd"][1].sum())
    assert grids["lid"][0].shape == (30, len(ens.layers), len(detection_baselines.LID_KS))
    assert grids["kd_bu"][1]["pgd"].shape == (n_ok, 2, len(detection_baselines.KD_SCALES))
    with pytest.raises(ParameterError, match="lid_refs"):
        cd.baseline_grids(net, src, adv, (pool.x, pool.y), ens, lid_refs=10)
    bf, lf, _ = detection.connectivity_features(net, src.x, pool.x, pool.y, num_refs=2,
                                                num_points=4)
    bfa, lfa, _ = detection.connectivity_features(net, adv["pgd"][0][adv["pgd"][1]], pool.x,
                                                  pool.y, num_refs=2, num_points=4)
    feats = {"pgd": (bfa, lfa, np.flatnonzero(adv["pgd"][1].numpy()))}
    table, _ = cd.detector_table((bf, lf), feats, ["logits", *detection_baselines.BASELINES],
                                 folds=3, n_boot=20, grids=grids)
    assert len(table) == 4
    with pytest.raises(ParameterError, match="grid"):
        cd.detector_table((bf, lf), feats, ["lid"], folds=3, n_boot=20)


def test_attack_summary_and_defender_features(digits_mlp):
    net, test = digits_mlp
    src = cd.select_sources(net, test.x, test.y, 20, seed=2)
    sub = src.select(range(5))
    assert len(sub) == 5 and torch.equal(sub.index, src.index[:5])
    adv = cd.attack_suite(net, src, {"pgd": {"kind": "pgd_linf", "eps": 0.3, "steps": 10}},
                          progress=False)
    tab = cd.attack_summary(src, adv, n_boot=50)
    row = tab.iloc[0]
    assert row.success["estimate"] == pytest.approx(float(adv["pgd"][1].float().mean()))
    assert 0 < row.linf <= 0.3 + 1e-6 and row.n == int(adv["pgd"][1].sum())
    pool = data.load_dataset("digits", "train")
    (bf, lf), feats = cd.defender_features(net, src, adv, (pool.x, pool.y), num_refs=2,
                                           num_points=5)
    assert len(bf) == len(lf) == 20
    b, lg, rows = feats["pgd"]
    assert np.array_equal(rows, np.flatnonzero(adv["pgd"][1].numpy())) and len(b) == len(rows)
    # references are of the predicted class, drawn from the given pool
    assert torch.equal(lg.predicted, training.predict(net, adv["pgd"][0][adv["pgd"][1]]).argmax(1))


def test_table_entry_missing_attack_is_an_empty_interval():
    iv = {"estimate": 0.7, "ci": [0.6, 0.8], "n": 10}
    tab = pd.DataFrame([{"attack": "a", "detector": "barrier", "auroc": iv}])
    assert cd.table_entry(tab, "a", "barrier") == iv
    missing = cd.table_entry(tab, "b", "barrier")
    assert missing["n"] == 0 and math.isnan(missing["ci"][0])
    assert report.verdict(missing["ci"], 0.9, ">=") == "inconclusive"
    assert cd.table_entry(pd.DataFrame(), "a", "barrier")["n"] == 0


def test_settings_and_network_specs():
    s = cs.sweep_settings([0.1, 10.0], [0.5], [4.0])
    assert list(s) == ["paper", "lambda=10", "stop=0.5 Loss1", "lr=4x", "over-confident"]
    assert s["lambda=10"] == {"mse_weight": 10.0} and s["over-confident"] == {"stop": None}
    assert s["lr=4x"]["lr"] == pytest.approx(4 * ab.PAPER_ATTACK["lr"])
    assert "over-confident" not in cs.sweep_settings(over_confident=False)
    with pytest.raises(ParameterError):
        cs.sweep_settings(stop_scales=[0.0])
    specs = cs.network_specs([42, 28], ["wide", "untrained"], native=28)
    assert list(specs) == ["small_cnn 28px", "small_cnn 42px", "wide", "untrained"]
    assert specs["untrained"]["trained"] is False and specs["wide"]["model_kwargs"]["width"] == 64
    with pytest.raises(ParameterError, match="not known"):
        cs.network_specs([], ["vit"])


def test_functions_receiving_a_model_restore_its_mode_and_use_eval(digits_mlp):
    net, test = digits_mlp
    noisy = torch.nn.Sequential(*net, torch.nn.Dropout(0.5))  # train mode would be random
    noisy.train()
    src = cd.select_sources(noisy, test.x, test.y, 12, seed=3)
    assert noisy.training
    again = cd.select_sources(noisy, test.x, test.y, 12, seed=3)
    assert torch.equal(src.index, again.index) and torch.equal(src.stop_loss, again.stop_loss)
    spec = {"pgd": {"kind": "pgd_linf", "eps": 0.2, "steps": 3, "random_start": False}}
    a1 = cd.attack_suite(noisy, src, spec, progress=False)["pgd"][0]
    assert noisy.training and all(m.training for m in noisy.modules())
    a2 = cd.attack_suite(noisy, src, spec, progress=False)["pgd"][0]
    assert torch.equal(a1, a2)


def test_the_chapter_formats_intervals_with_core_stats():
    assert stats.format_interval({"estimate": 0.75, "ci": [0.6812, 0.82], "n": 3}) == \
        "0.75 [0.68, 0.82]"


# ----------------------------------------------------------------------------- claims, tables, figures
def _iv(est, lo, hi, n=10):
    return stats.interval(est, lo, hi, n)


def _adaptive_rows():
    return pd.DataFrame([{"penalty": 0.0, "n_test_adv": 5, "success": _iv(1.0, 0.9, 1.0),
                          "l2": _iv(2.0, 1.5, 2.5), "auroc_deployed": _iv(0.9, 0.8, 1.0),
                          "auroc_retrained": _iv(0.9, 0.8, 1.0), "difference": _iv(0, 0, 0),
                          "auroc_train": _iv(0.9, 0.8, 1.0)},
                         {"penalty": 1.0, "n_test_adv": 4, "success": _iv(0.8, 0.6, 0.9),
                          "l2": _iv(3.0, 2.5, 3.5), "auroc_deployed": _iv(0.3, 0.1, 0.5),
                          "auroc_retrained": _iv(0.8, 0.6, 0.9), "difference": _iv(0.5, 0.3, 0.7),
                          "auroc_train": _iv(0.35, 0.2, 0.5)},
                         {"penalty": 3.0, "n_test_adv": 4, "success": _iv(0.5, 0.3, 0.7),
                          "l2": _iv(4.0, 3.5, 4.5), "auroc_deployed": _iv(0.5, 0.3, 0.7),
                          "auroc_retrained": _iv(0.8, 0.6, 0.9), "difference": _iv(0.3, 0.1, 0.5),
                          "auroc_train": _iv(0.6, 0.5, 0.7)}])


def _detection(est=0.95, lo=0.92, hi=0.97):
    return {c: _iv(est, lo, hi) for c in ch04.DETECTION_CLAIMS}


def test_claims_are_data_with_unique_ids_and_valid_tests():
    ids = [c["id"] for c in ch04.CLAIMS]
    assert len(ids) == len(set(ids)) == 9
    # the detection claims say they are the book's extension
    assert all(ch04.EXTENSION in c["paper"] for c in ch04.CLAIMS
               if c["id"] in (*ch04.DETECTION_CLAIMS, "adaptive_evades"))
    assert ch04.EXPECTED == ["within_low", "adv_gap_higher"]
    for c in ch04.CLAIMS:
        assert set(c) == {"id", "statement", "paper", "threshold", "direction", "expected"}
        assert c["direction"] in report.DIRECTIONS and isinstance(c["statement"], str) and c["paper"]
        # a claim of an effect (threshold 0, or chance for an AUROC) is strict
        if "higher" in c["id"] or "adds" in c["id"]:
            assert c["direction"] == ">", c["id"]
    assert ch04.CLAIMS[0]["threshold"] == pytest.approx(math.log(2))


def test_check_claims_reads_each_claim_s_interval_with_negative_controls():
    summary = {"median_gap_real": _iv(0.1, 0.0, 0.2), "auroc_gap": _iv(0.7, 0.6, 0.8),
               "median_gap_adv": _iv(0.2, 0.1, 0.3), "auroc_max": _iv(0.4, 0.3, 0.45)}
    results = ch04.claim_results(summary, _detection(), _adaptive_rows())
    assert set(results) == {c["id"] for c in ch04.CLAIMS}
    # the attacker's strongest weight is chosen on the training half (w=1 here, not w=3)
    assert results["adaptive_evades"] == _iv(0.3, 0.1, 0.5)
    with pytest.raises(ValueError, match="detection"):
        ch04.claim_results(summary, {}, _adaptive_rows())
    chapter = report.ChapterReport("04", expected=ch04.EXPECTED, check=True)
    ch04.check_claims(chapter, results)
    assert list(chapter.claims) == [c["id"] for c in ch04.CLAIMS]
    verdicts = {k: v["verdict"] for k, v in chapter.claims.items()}
    assert verdicts == {"within_low": "reproduced", "adv_gap_higher": "reproduced",
                        "adv_gap_high": "not reproduced", "adv_max_higher": "not reproduced",
                        "barrier_detects": "reproduced", "profile_adds": "reproduced",
                        "ensemble_detects": "reproduced", "profile_beats_ensemble": "reproduced",
                        "adaptive_evades": "reproduced"}
    # a claim that is not reproduced carries its reason
    assert chapter.claims["adv_gap_high"]["note"] == ch04.NOTES["adv_gap_high"]
    assert "note" not in chapter.claims["barrier_detects"]
    assert chapter.claims["within_low"]["statement"] == ch04.CLAIMS[0]["statement"]
    assert not chapter.failures()
    assert chapter.claims["barrier_detects"]["method"] == ch04.METHODS["barrier_detects"]
    # with negative controls: a control that is also reproduced fails the check
    ctl = {"within_low": {"statement": "planted", "result": _iv(5.0, 4.0, 6.0)},
           "adv_gap_higher": {"statement": "relabelled", "result": _iv(0.5, 0.4, 0.6)}}
    withc = report.ChapterReport("04", expected=ch04.EXPECTED, check=True)
    ch04.check_claims(withc, results, ctl)
    assert withc.claims["within_low"]["control"]["verdict"] == "not reproduced"
    assert withc.claims["adv_gap_higher"]["control"]["verdict"] == "inconclusive"
    assert "control" not in withc.claims["adv_gap_high"] and not withc.failures()
    passing = dict(ctl, adv_gap_higher={"statement": "x", "result": _iv(0.7, 0.6, 0.8)})
    weak = report.ChapterReport("04", expected=ch04.EXPECTED, check=True)
    ch04.check_claims(weak, results, passing)
    assert len(weak.failures()) == 1 and "control" in weak.failures()[0]
    # negative control: contradicting results fail the expected claims
    bad = dict(results, within_low=_iv(2.0, 1.5, 2.5), adv_gap_higher=_iv(0.3, 0.2, 0.4))
    other = report.ChapterReport("04", expected=ch04.EXPECTED, check=True)
    ch04.check_claims(other, bad)
    assert len(other.failures()) == 2
    with pytest.raises(ValueError, match="no result"):
        ch04.check_claims(report.ChapterReport("04"), {"within_low": _iv(0, 0, 0)})


class _Flat(torch.nn.Module):
    """Logits that do not depend on the input: every straight path is flat (gap 0)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.linspace(0, 1, num_classes))

    def forward(self, x):
        return self.bias.expand(len(x), -1) + 0 * x.flatten(1)[:, :1]


def test_negative_controls_fail_where_the_claims_hold(digits_mlp):
    """The checks of the asserted claims pass on data where the claims hold (flat paths;
    adversarial rows with higher gaps) and fail on each control's data."""
    _, test = digits_mlp
    flat = _Flat()
    params = _tiny_params(pairs_per_class=3, num_points=9, num_boot=200)
    claims = {c["id"]: c for c in ch04.CLAIMS}
    kw = dict(drop=0, n_boot=200, method="hierarchical")

    def verdict(claim_id, iv):
        c = claims[claim_id]
        return report.verdict(iv["ci"], c["threshold"], c["direction"])

    within = cc.planted_barrier_rows(flat, test.x, test.y, [0, 1], 3, 9, height=30.0)
    assert set(within.kind) == {"within"} and len(within) == 2 * 10 * 3
    no_barrier = ab.protocol_summary(within.assign(gap=0.0), keys=["median_gap_real"], **kw)
    assert verdict("within_low", no_barrier["median_gap_real"]) == "reproduced"
    planted = ab.protocol_summary(within, keys=["median_gap_real"], **kw)
    assert planted["median_gap_real"]["estimate"] > 20
    assert verdict("within_low", planted["median_gap_real"]) == "not reproduced"
    # relabelled: the adversarial rows are real within-class paths
    protocol = within.assign(gap=0.0)
    relabelled = cc.relabelled_rows(flat, protocol, test.x, test.y, 3, 9)
    assert (relabelled.groupby(["seed", "kind"]).size() == 30).all()
    auroc = ab.protocol_summary(relabelled, keys=["auroc_gap"], **kw)["auroc_gap"]
    assert auroc["estimate"] == pytest.approx(0.5)
    assert verdict("adv_gap_higher", auroc) == "not reproduced"
    higher = relabelled.assign(gap=np.where(relabelled.kind == "adversarial", 1.0, 0.0))
    good = ab.protocol_summary(higher, keys=["auroc_gap"], **kw)["auroc_gap"]
    assert verdict("adv_gap_higher", good) == "reproduced"
    # the chapter's function: both controls, each not reproduced, in the claim's shape
    controls = cc.negative_controls(flat, protocol, test.x, test.y, params)
    assert set(controls) == set(ch04.EXPECTED)
    for cid, ctl in controls.items():
        assert set(ctl) == {"statement", "result"} and ctl["statement"]
        assert verdict(cid, ctl["result"]) != "reproduced", cid
    with pytest.raises(ParameterError, match="pairs_per_class"):
        cc.relabelled_rows(flat, protocol, test.x, test.y, 2, 9)


def test_deviations_are_complete_rows():
    keys = {"setting", "paper", "source", "ours", "effect"}
    assert len(cc.DEVIATIONS) >= 5
    for row in cc.DEVIATIONS:
        assert keys <= set(row) and all(str(row[k]).strip() for k in keys), row
    assert any("sec4_2_adversarial_attacks.py:" in r["source"] for r in cc.DEVIATIONS)
    chapter = report.ChapterReport("04")
    df = cc.deviations(chapter)
    assert list(df.setting) == [r["setting"] for r in cc.DEVIATIONS]


def test_tables_format_every_interval():
    summ = {"median_gap_real": _iv(0.1234, 0.1, 0.2), "auroc_gap": _iv(0.7, 0.6, 0.8)}
    tab = ch04.protocol_table({"pooled": summ, "seeds": summ})
    assert list(tab.columns) == ["pooled", "seeds"]
    assert tab.loc["median_gap_real", "pooled"] == "0.123 [0.100, 0.200]"
    entries = [{"setting": s, **{k: _iv(i, i, i) for k in ch04.SWEEP_COLUMNS}}
               for i, s in enumerate(["paper", "lambda=10"])]
    sw = ch04.sweep_table(entries)
    assert list(sw.columns) == ["setting", *ch04.SWEEP_COLUMNS]
    assert sw.auroc.tolist() == ["0.000 [0.000, 0.000]", "1.000 [1.000, 1.000]"]
    nets = [dict(e, network=e["setting"]) for e in entries]
    nt = ch04.sweep_table(nets, "network", accuracy={"paper": 0.91234, "lambda=10": 0.5})
    assert list(nt.columns[:2]) == ["network", "test accuracy"]
    assert nt["test accuracy"].tolist() == [0.912, 0.5]
    gt = ch04.gain_table({"a": _iv(0.1, 0.0, 0.2)}, pd.Series({"a": 0.01234}))
    assert gt.iloc[0].tolist() == ["0.100 [0.000, 0.200]", "0.012"]
    at = ch04.adaptive_table(_adaptive_rows())
    assert at.auroc_deployed.tolist()[:2] == ["0.90 [0.80, 1.00]", "0.30 [0.10, 0.50]"]
    assert at.penalty.tolist() == [0.0, 1.0, 3.0]
    assert ch04.interval_table(entries, ["rho"], "setting", digits=1).rho.tolist() == \
        ["0.0 [0.0, 0.0]", "1.0 [1.0, 1.0]"]


def test_figures_draw_what_they_are_given(digits_mlp):
    import matplotlib.pyplot as plt

    net, test = digits_mlp
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    df, k_adv = ab.paired_barriers(net, pairs, num_points=5, attack=TINY, return_adversarial=True)
    fig = ch04.barrier_boxes(df)
    assert fig.axes[0].get_ylabel().startswith("cross-entropy")
    fig = ch04.path_profiles(net, pairs, k_adv, 1, 5)
    assert [a.get_title() for a in fig.axes] == ["A to B (within-class)",
                                                 "A to K' (real-adversarial)",
                                                 "A to K (clean source)"]
    entries = [{"setting": s, "median_gap": _iv(i, i - 0.1, i + 0.1), "auroc": _iv(0.6, 0.5, 0.7)}
               for i, s in enumerate(["a", "b"])]
    fig = ch04.sweep_figure(entries, [0.1, 0.2], "rho", annotate="setting")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert [t.get_text() for t in fig.axes[0].texts] == ["a", "b"]
    table = pd.DataFrame([{"attack": a, "detector": d, "auroc": _iv(0.7, 0.6, 0.8)}
                          for a in ("x", "y") for d in ("barrier", "logits")])
    fig = ch04.detector_figure(table, ["barrier", "logits"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["x", "y"]
    fig = ch04.adaptive_figure(_adaptive_rows())
    assert [t.get_text() for t in fig.axes[0].texts] == ["w=0", "w=1", "w=3"]
    plt.close("all")


# ----------------------------------------------------------------------------- setup, records, findings
class _Recorder(report.ChapterReport):
    """A chapter report that keeps what it glues (outside a kernel nothing is glued)."""

    def __init__(self):
        super().__init__("04", expected=ch04.EXPECTED, check=True)
        self.records: dict = {}

    def record(self, name, value, digits=4):
        self.records[name] = super().record(name, value, digits)
        return self.records[name]


def _tiny_params(**changes):
    params = {**ch04.PARAMETERS.defaults(), "dataset": "digits", "model": "mlp", "num_epochs": 1,
              "train_subset": 300, "seeds": [0, 1], "pairs_per_class": 1, "num_points": 5,
              "attack_steps": TINY["steps"], "attack_lr": TINY["lr"], "warmup": TINY["warmup"],
              "drop": 0, "num_boot": 20, "num_inputs": 8, "folds": 2, "adaptive_inputs": 8}
    params.update(changes)
    return ch04.PARAMETERS.validate(params)


def test_setup_model_and_paper_attack():
    params = _tiny_params()
    net, info = ch04.setup_model(params)
    assert not info["cached"] and info["metrics"]["accuracy"] > 0.1
    assert next(net.parameters()).device.type == "cpu"
    again, info2 = ch04.setup_model(params)
    assert info2["cached"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 again.state_dict().values()))
    assert ch04.paper_attack(params) == {"steps": 30, "lr": 0.05, "mse_weight": 0.1,
                                         "hf_weight": 1e-8, "warmup": 2}
    defaults = ch04.paper_attack(ch04.PARAMETERS.defaults())  # the paper's own values
    assert defaults == {k: ab.PAPER_ATTACK[k] for k in defaults}


def test_record_protocol_and_path_comparison(digits_mlp):
    net, test = digits_mlp
    params = _tiny_params()
    protocol, k_adv = cs.run_protocol(net, test.x, test.y, params["seeds"], 1, 5, TINY,
                                      progress=False, return_adversarial=True)
    summary = ab.protocol_summary(protocol, drop=0, n_boot=20)
    chapter = _Recorder()
    ch04.record_protocol(chapter, params, net, protocol, summary, summary)
    rec = chapter.records
    assert rec["ch04_last_pair"] == 0 and rec["ch04_num_seeds"] == 2
    assert rec["ch04_pairs_per_seed"] == 10 and rec["ch04_hf_weight"] == "1e-08"
    assert 0 <= rec["ch04_stopped_frac"] <= 1
    assert set(rec["ch04_paper_protocol"]) == set(ch04.PAPER_KEYS)
    from mcutils import attacks

    std = float(attacks.input_normalization(net)[1].flatten()[0])
    assert rec["ch04_norm_std"] == round(std, 3)
    chapter = _Recorder()
    pairs0 = ch04.record_path_comparison(chapter, params, net, test.x, test.y, protocol,
                                         summary, summary)
    assert len(pairs0) == 10 and torch.equal(pairs0.a, ab.paper_pairs(test.x, test.y, 1, seed=0).a)
    rec = chapter.records
    assert {"ch04_clean_max", "ch04_adv_max", "ch04_wilcoxon_p", "ch04_gap_real_text",
            "ch04_auroc_gap_all_text", "ch04_rho_text"} <= set(rec)
    assert 0 <= rec["ch04_wilcoxon_p"] <= 1
    assert rec["ch04_adv_max"] == pytest.approx(
        float(protocol[(protocol.kind == "adversarial") & (protocol.seed == 0)]["max"].median()),
        abs=1e-4)
    assert rec["ch04_gap_real_text"] == stats.format_interval(summary["median_gap_real"], 3)
    assert rec["ch04_auroc_max_word"] == stats.interval_word(
        summary["auroc_max"], "lies above", "lies below", "includes", threshold=0.5)


def test_record_rho_trend(digits_mlp):
    net, test = digits_mlp
    pairs = ab.paper_pairs(test.x, test.y, pairs_per_class=1, seed=0)
    settings = {k: {**TINY, **v} for k, v in cs.sweep_settings([10.0]).items()}
    rho_df = cs.attack_sweep(net, pairs, settings, num_points=5, progress=False)
    rho_sweep = ab.rho_curve(ab.sweep_summary(rho_df, "setting", n_boot=20))
    chapter = _Recorder()
    ch04.record_rho_trend(chapter, _tiny_params(), rho_df, rho_sweep)
    rec = chapter.records
    assert rec["ch04_rho_smallest"] == rho_sweep[0]["setting"]
    assert rec["ch04_rho_trend_word"] in ch04.TREND_WORDS
    assert rec["ch04_confidence_word"] in ch04.TREND_WORDS
    assert rec["ch04_reaches_09"] in ("reaches", "does not reach")
    assert rec["ch04_auroc_target"] == ch04.AUROC_TARGET


def test_findings_adds_every_claim_and_glues_the_summary():
    summary = {k: _iv(0.5, 0.4, 0.6) for k in ab.STATISTICS}
    summary["median_gap_real"] = _iv(0.1, 0.0, 0.2)
    summary["auroc_gap"] = _iv(0.8, 0.7, 0.9)
    chapter = report.ChapterReport("04", expected=ch04.EXPECTED, check=True)
    text = ch04.findings(chapter, _tiny_params(), summary=summary,
                         detection=_detection(0.7, 0.6, 0.8), adaptive=_adaptive_rows())
    assert list(chapter.claims) == [c["id"] for c in ch04.CLAIMS]
    assert not chapter.failures()
    assert "Not reproduced" in text and ch04.GPU_SENTENCE in text
    assert ch04.NOTES["barrier_detects"] in text  # its reason, since it is not reproduced


def test_pool_parts_are_plain_and_name_this_module_s_functions():
    import pickle

    assert ch04.pool_parts(_tiny_params()) == []  # too small to pay for a worker
    params = _tiny_params(adaptive_penalties=[0.0, 0.5, 2.0], num_inputs=cpt.PART_MIN_INPUTS)
    parts = ch04.pool_parts(params)
    assert [p[0] for p in parts] == ["04 attacks", "04 protocol seed 0", "04 protocol seed 1",
                                     "04 adaptive w=0.5", "04 adaptive w=2"]
    for _, fn, kwargs in parts:
        assert callable(getattr(ch04, fn))
        pickle.dumps(kwargs)


def test_attack_specs_and_detectors():
    params = _tiny_params(eps_linf=0.2, pgd_steps=3)
    specs = cd.attack_specs(params, ch04.paper_attack(params))
    assert list(specs) == ["FGSM", "PGD L-inf", "PGD L2", "CW L2", "paper (matched)",
                           "paper (over-confident)", "paper (L2-bounded)"]
    assert specs["paper (L2-bounded)"]["max_norm"] == params["eps_l2"]
    assert {s["kind"] for s in specs.values()} == set(cd.ATTACK_KINDS)
    assert specs["PGD L-inf"] == {"kind": "pgd_linf", "eps": 0.2, "steps": 3}
    assert specs["paper (over-confident)"]["stop"] is None
    assert specs["paper (matched)"]["steps"] == 30 and "stop" not in specs["paper (matched)"]
    assert len(set(cd.DETECTORS)) == len(cd.DETECTORS) == 11


def test_extra_protocols_at_tiny_size():
    params = _tiny_params(seeds=[0])
    assert cs.extra_protocols(params, TINY) == {}
    rows = cs.extra_protocols(dict(params, extra_datasets=[["digits", "mlp"]]), TINY)
    assert list(rows) == ["digits/mlp"] and set(rows["digits/mlp"]) == set(ab.STATISTICS)
    assert rows["digits/mlp"]["auroc_gap"]["n"] == 10
