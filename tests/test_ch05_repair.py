import numpy as np
import pandas as pd
import pytest

from mcutils.chapters import ch05_repair
from mcutils.core.checks import ParameterError


def test_share_text():
    assert ch05_repair.share_text([200 / 7900, 50 / 7900, 100 / 7900]) == "0.63% to 2.5%"
    assert ch05_repair.share_text([0.5, 0.5]) == "50%"
    assert ch05_repair.share_text([1.0]) == "100%"
    with pytest.raises(ParameterError):
        ch05_repair.share_text([])
    with pytest.raises(ParameterError):
        ch05_repair.share_text([float("nan")])


def test_paired_seed_difference_and_frontier_plot():
    rows = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "n": [10] * 6,
                         "seed": [0, 1, 2] * 2, "accuracy": [0.9, 0.8, 0.85, 0.7, 0.6, 0.66],
                         "asr": [0.1, 0.2, 0.1, 0.9, 0.8, 0.9]})
    d = ch05_repair.paired_seed_difference(rows, "a", "b", 10, "accuracy")
    assert d["estimate"] == pytest.approx(np.mean([0.2, 0.2, 0.19]))
    assert d["n"] == 3 and d["ci"][0] < d["estimate"] < d["ci"][1]
    with pytest.raises(ParameterError):
        ch05_repair.paired_seed_difference(rows, "a", "c", 10, "accuracy")
    fig = ch05_repair.plot_frontier(ch05_repair.sweep_summary(rows), floor=0.05)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    import matplotlib.pyplot as plt

    plt.close(fig)


def _fake_rows(curve_asr, curve_acc, other_asr, other_acc, n=(100, 2500), seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for m in ("bezier", "bezier (middle)", "polychain", "fine_tune", "fine_prune", "scratch",
              "noise"):
        for nn_ in n:
            for s in seeds:
                curve = m in ("bezier", "bezier (middle)", "polychain")
                rows.append(dict(method=m, n=nn_, seed=s,
                                 asr=(curve_asr if curve else other_asr) + 0.01 * rng.random(),
                                 accuracy=(curve_acc if curve else other_acc)
                                 + 0.01 * rng.random(),
                                 fault_success=curve_asr if curve else other_asr))
    return pd.DataFrame(rows)


def test_repair_claims_verdicts_follow_the_data():
    """Positive control: a curve that removes the backdoor and keeps accuracy while the
    baselines do neither gives 'reproduced' everywhere. Negative control: contradicting
    data (the curve keeps the backdoor and loses accuracy, baselines repair) gives 'not
    reproduced' for every claim."""
    from mcutils.core.report import verdict

    good = _fake_rows(curve_asr=0.02, curve_acc=0.86, other_asr=0.9, other_acc=0.5)
    bad = _fake_rows(curve_asr=0.9, curve_acc=0.5, other_asr=0.02, other_acc=0.86)
    for rows, want in ((good, "reproduced"), (bad, "not reproduced")):
        claims = ch05_repair.repair_claims(rows, end_accuracy=0.87, small_n=100, large_n=2500,
                                           fault_rows=rows, aware_rows=rows)
        ids = [c["claim_id"] for c in claims]
        assert len(ids) == len(set(ids)) == 12
        for c in claims:
            got = verdict(c["result"]["ci"], c["threshold"], c["direction"])
            assert got == want, (c["claim_id"], c["result"])
            assert c["result"]["n"] == 3
    with pytest.raises(ParameterError):
        ch05_repair.repair_claims(good, 0.87, small_n=50, large_n=2500)


def test_plot_vs_n():
    iv = {"estimate": 0.5, "ci": [0.2, 0.8], "n": 3}
    ax = ch05_repair.plot_vs_n({"a": {25: iv, 100: iv}}, floor=0.1)
    assert len(ax.lines) >= 2
    import matplotlib.pyplot as plt

    plt.close("all")


def test_middle_gap():
    prof = pd.DataFrame({"method": "bezier", "n": 10, "seed": np.repeat([0, 1, 2], 3),
                         "t": [0.0, 0.5, 1.0] * 3,
                         "accuracy": [0.8, 0.7, 0.9, 0.85, 0.8, 0.8, 0.9, 0.6, 0.7]})
    g = ch05_repair.middle_gap(prof, "bezier", 10)
    assert g["estimate"] == pytest.approx(np.mean([-0.2, -0.05, -0.3])) and g["n"] == 3
    with pytest.raises(ParameterError):
        ch05_repair.middle_gap(prof, "polychain", 10)
    with pytest.raises(ParameterError):
        ch05_repair.middle_gap(prof, "bezier", 10, t=0.25)


def test_claims_are_data_and_fill_their_statements():
    """Every claim of CLAIMS is measured once, in order, with its statement filled from the
    settings (no placeholder left) and the paper's reference in front of its finding."""
    rows = _fake_rows(curve_asr=0.02, curve_acc=0.86, other_asr=0.9, other_acc=0.5)
    ids = [c["claim_id"] for c in ch05_repair.CLAIMS]
    assert len(ids) == len(set(ids))
    claims = ch05_repair.repair_claims(rows, 0.87, 100, 2500, fault_rows=rows[rows.n == 100],
                                       aware_rows=rows, asr_max=0.07, max_drop=0.03)
    assert [c["claim_id"] for c in claims] == ids
    by_id = {c["claim_id"]: c for c in claims}
    assert by_id["curve_keeps_accuracy"]["threshold"] == -0.03
    assert by_id["curve_keeps_accuracy"]["statement"] == (
        "with 2500 bonafide images the middle of the Bezier curve (t = 1/2) loses at most "
        "0.03 clean accuracy against the better end")
    assert by_id["curve_removes_faults"]["statement"].startswith("with 100 bonafide images")
    assert by_id["finetune_keeps_backdoor"]["statement"].endswith("(ASR >= 0.5)")
    for c in claims:
        assert "{" not in c["statement"] and c["paper"].startswith(ch05_repair.PAPER + ": ")
    # the sweeps not given are skipped, not guessed
    plain = ch05_repair.repair_claims(rows, 0.87, 100, 2500)
    assert [c["claim_id"] for c in plain] == [i for i in ids if i not in
                                              ("curve_removes_faults", "path_aware_repaired")]


def test_interval_table_quotes_each_method_metric_and_size():
    rows = _fake_rows(0.05, 0.8, 0.9, 0.7, n=(20, 40), seeds=(0, 1))
    summary = ch05_repair.sweep_summary(rows)
    table = ch05_repair.interval_table(summary, [20, 40], ("acc", "asr"))
    assert table.index.names == ["method", "metric"] and table.columns.name == "n"
    assert list(table.columns) == [20, 40] and len(table) == 2 * len(summary)
    from mcutils.core.stats import format_interval

    assert table.loc[("bezier", "asr"), 40] == format_interval(summary["bezier"][40]["asr"])
    only_acc = ch05_repair.interval_table(summary, [20], ("acc",))
    assert list(only_acc.index.get_level_values("metric").unique()) == ["acc"]


def test_claim_interval_fits_the_statistic():
    """A rate over seeds stays inside [0, 1] and keeps its per-seed values (the t-interval
    of 0, 0, 0.3 would leave [0, 1]); a paired difference stays inside [-1, 1]."""
    rate = ch05_repair.claim_interval([0.0, 0.0, 0.3], total=1000)
    assert 0 <= rate["ci"][0] <= rate["estimate"] <= rate["ci"][1] <= 1
    assert rate["per_seed"] == [0.0, 0.0, 0.3] and rate["n"] == 3 and "logit" in rate["method"]
    rel = ch05_repair.claim_interval([0.8, 0.82, 0.81], total=1000, shift=-0.85)
    assert rel["estimate"] == pytest.approx(0.81 - 0.85)
    assert rel["ci"][1] < 0 and rel["per_seed"][0] == pytest.approx(-0.05)
    diff = ch05_repair.claim_interval([0.9, -0.9, 0.95], difference=True)
    assert -1 <= diff["ci"][0] < diff["ci"][1] <= 1 and "paired" in diff["method"]
    with pytest.raises(ParameterError):
        ch05_repair.claim_interval([0.5, 0.5])


def _control_rows(untrained_acc, redraw_acc, n=(100, 2500), seeds=(0, 1, 2, 3, 4)):
    rows = [dict(method="untrained", n=nn_, seed=s, accuracy=untrained_acc + 0.01 * s, asr=0.1)
            for nn_ in n for s in seeds]
    rows += [dict(method="noise (redraw)", n=100, seed=s, accuracy=redraw_acc[s], asr=0.5)
             for s in range(3)]
    return pd.DataFrame(rows)


def test_asserted_claims_pass_and_their_controls_fail():
    """The checks of the asserted claims pass on data where the claims hold, and the same
    checks on their controls (an untrained network in place of the curve, a second draw of
    the noisy midpoint) are not reproduced."""
    from mcutils.chapters.ch05_protocol import EXPECTED
    from mcutils.core.report import verdict

    good = _fake_rows(curve_asr=0.02, curve_acc=0.86, other_asr=0.9, other_acc=0.5,
                      seeds=(0, 1, 2, 3, 4))
    noise = good[(good.method == "noise") & (good.n == 100)].set_index("seed").accuracy
    # the redrawn noise: the baseline's accuracies in another order (no effect on average)
    ctrl = _control_rows(0.1, {0: noise[1], 1: noise[2], 2: noise[0]})
    claims = {c["claim_id"]: c for c in ch05_repair.repair_claims(
        good, 0.87, 100, 2500, control_rows=ctrl)}
    for cid in EXPECTED:
        c = claims[cid]
        assert verdict(c["result"]["ci"], c["threshold"], c["direction"]) == "reproduced", cid
        cres = c["control"]["result"]
        assert verdict(cres["ci"], c["threshold"], c["direction"]) != "reproduced", (cid, cres)
        assert c["method"] == c["result"]["method"] and "per_seed" in cres
    # a claim without a control in CLAIMS gets none; without control rows none at all
    assert "control" not in claims["curve_removes_backdoor"]
    assert not any("control" in c for c in ch05_repair.repair_claims(good, 0.87, 100, 2500))


def test_claim_interval_never_collapses_when_seeds_agree():
    """Three seeds with the same count (the defender chose the same end model) keep the
    test images' uncertainty: at least the exact binomial interval of the pooled counts."""
    from mcutils.core.stats import binomial_interval

    same = ch05_repair.claim_interval([0.85, 0.85, 0.85], total=1000, shift=-0.85)
    pooled = binomial_interval(2550, 3000)["ci"]
    assert same["ci"][0] == pytest.approx(pooled[0] - 0.85)
    assert same["ci"][1] == pytest.approx(pooled[1] - 0.85) and same["ci"][0] < 0 < same["ci"][1]
