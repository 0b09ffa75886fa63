import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mcutils import backdoor, curves, repair
from mcutils.core.checks import ParameterError
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model
from mcutils.training import evaluate


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def _preresnet(seed=0):
    torch.manual_seed(seed)
    return build_model("preresnet20", num_classes=3, in_channels=1, input_size=8, width=4).eval()


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0.5)
    return ImageDataset(x, y, dataset_info("digits"), "train")


def _loader(n=96):
    return TensorLoader(_data(n), 32, shuffle=True)


def test_fine_tune_and_scratch_take_exact_steps_and_learn():
    loader = _loader()
    m = _model()
    ft = repair.fine_tune(m, loader, steps=30, lr=0.05)
    assert evaluate(ft, loader)["loss"] < evaluate(m, loader)["loss"]
    assert any(not torch.equal(p, q) for p, q in zip(ft.parameters(), m.parameters()))
    same = repair.fine_tune(m, loader, steps=0)
    assert all(torch.equal(p, q) for p, q in zip(same.parameters(), m.parameters()))
    scratch = repair.train_from_scratch(m, loader, steps=3, seed=1)
    assert torch.equal(scratch.state_dict()["0.mean"], m.state_dict()["0.mean"])
    r1, r2 = repair.reinitialize(m, 5), repair.reinitialize(m, 5)
    assert all(torch.equal(p, q) for p, q in zip(r1.parameters(), r2.parameters()))
    # weight decay is SGD's L2 term: with a large one the weights shrink
    decayed = repair.fine_tune(m, loader, steps=10, lr=0.05, weight_decay=0.5)
    plain = repair.fine_tune(m, loader, steps=10, lr=0.05)
    def norm(net):
        return sum(float(p.detach().pow(2).sum()) for p in net.parameters())
    assert norm(decayed) < norm(plain)
    with pytest.raises(ParameterError):
        repair.fine_tune(m, loader, steps=1, schedule="step")


def test_fine_tune_memory_format_changes_only_rounding_and_is_restored():
    def loader():  # a fresh loader per run: the same batches in the same order
        return TensorLoader(_data(96), 32, shuffle=True, seed=0)

    m = _model()
    m_before = {k: v.clone() for k, v in m.state_dict().items()}
    a = repair.fine_tune(m, loader(), steps=6, lr=0.05, channels_last=False)
    b = repair.fine_tune(m, loader(), steps=6, lr=0.05, channels_last=True)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
        assert p.is_contiguous() and q.is_contiguous(), name  # the layout is restored
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m_before.items())  # input untouched
    # pruned channels stay at zero in either layout
    pruned = repair.prune_filters(m, loader(), fraction=0.5)
    for cl in (False, True):
        out = repair.fine_tune(pruned, loader(), steps=4, lr=0.05, channels_last=cl)
        for mod in out.modules():
            mask = getattr(mod, "_prune_mask", None)
            if mask is not None:
                assert torch.all(mod.weight[~mask.bool()] == 0)


def test_prune_filters_zeroes_and_keeps_zero_through_fine_tuning():
    loader = _loader()
    m = _model()
    assert repair.prunable_convs(m) == ["1.features.0", "1.features.3"]
    pruned = repair.prune_filters(m, loader, fraction=0.5)
    conv = pruned[1].features[3]
    dead = (conv.weight.flatten(1).abs().sum(1) == 0)
    assert int(dead.sum()) == conv.out_channels // 2
    tuned = repair.fine_tune(pruned, loader, steps=20, lr=0.05, weight_decay=1e-3)
    conv2 = tuned[1].features[3]
    assert (conv2.weight[dead] == 0).all() and (conv2.bias[dead] == 0).all()
    assert (conv2.weight[~dead] != conv.weight[~dead]).any()
    with pytest.raises(ParameterError):
        repair.prune_filters(m, loader, fraction=1.0)


def test_fine_pruning_of_a_residual_net_prunes_channels_the_shortcut_cannot_restore():
    """preresnet20 at a tiny size: only the inner conv of a block may be pruned (conv2 and
    the shortcut feed the residual addition), and a pruned channel is silent after its
    BatchNorm, whatever the statistics, before and after fine-tuning."""
    m = _preresnet()
    convs = repair.prunable_convs(m)
    assert convs and all(c.endswith(".conv1") for c in convs)
    assert "1.blocks.8.conv2" not in convs and "1.conv" not in convs
    loader = _loader()
    with pytest.raises(ParameterError, match="residual"):
        repair.prune_filters(m, loader, layer="1.blocks.8.conv2")
    pruned = repair.prune_filters(m, loader, fraction=0.5)
    block = pruned[1].blocks[8]
    dead = ~block.conv1._prune_mask
    assert int(dead.sum()) == block.conv1.out_channels // 2

    def inner(net):  # what conv2 of the last block receives
        seen = {}
        h = net[1].blocks[8].conv2.register_forward_hook(lambda _m, i, _o: seen.update(x=i[0]))
        net(torch.rand(16, 1, 8, 8))
        h.remove()
        return seen["x"]

    tuned = repair.fine_tune(pruned, loader, steps=10, lr=0.05, weight_decay=1e-3)
    for net in (pruned, curves.recompute_bn(tuned, loader)):
        x = inner(net)
        assert (x[:, dead] == 0).all() and (x[:, ~dead] != 0).any()


def test_weight_noise_scale_and_seed():
    m = _model()
    n1, n2 = repair.weight_noise(m, 0.1, seed=3), repair.weight_noise(m, 0.1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(n1.parameters(), n2.parameters()))
    for p, q in zip(m.parameters(), n1.parameters()):
        rel = float((q - p).detach().pow(2).mean().sqrt() / p.detach().pow(2).mean().sqrt())
        assert 0.03 < rel < 0.3


def test_midpoint_noise_is_the_papers_noise_model():
    """Midpoint plus element-wise N(0, |b - a| / 2): over many draws the mean is the
    midpoint and the standard deviation half the distance, element by element."""
    a, b = _model(0), _model(1)
    draws = torch.stack([torch.cat([p.detach().flatten() for p in
                                    repair.midpoint_noise(a, b, seed=s).parameters()])
                         for s in range(200)])
    pa = torch.cat([p.detach().flatten() for p in a.parameters()])
    pb = torch.cat([p.detach().flatten() for p in b.parameters()])
    half = (pb - pa).abs() / 2
    big = half > half.median()
    z = (draws.mean(0) - (pa + pb) / 2)[big] / (half[big] / math.sqrt(200))
    assert z.abs().mean() < 1.0  # mean within its standard error
    ratio = (draws.std(0)[big] / half[big])
    assert 0.93 < float(ratio.median()) < 1.07
    same = repair.midpoint_noise(a, a, seed=1)  # identical ends: no noise at all
    assert all(torch.equal(p, q) for p, q in zip(same.parameters(), a.parameters()))
    with pytest.raises(ParameterError, match="bn_loader"):
        repair.midpoint_noise(_preresnet(0), _preresnet(1))
    bn = repair.midpoint_noise(_preresnet(0), _preresnet(1), bn_loader=_loader())
    assert not bn.training


def test_cached_runs_are_reused_and_keyed(monkeypatch):
    a, b = _model(0), _model(1)
    from mcutils.core.store import fingerprint

    assert fingerprint(a) == fingerprint(_model(0)) != fingerprint(b)
    ds = _data()
    cm = repair.cached_curve(a, b, ds, steps=3, lr=0.01)
    assert isinstance(cm, curves.CurveModel)
    cm2, info = repair.cached_curve(a, b, ds, steps=3, lr=0.01, return_info=True)
    assert info["cached"]
    assert all(torch.equal(p, q) for p, q in zip(cm.parameters(), cm2.parameters()))
    _, info3 = repair.cached_curve(b, a, ds, steps=3, lr=0.01, return_info=True)
    assert not info3["cached"]
    for method in repair.REPAIRS:
        net, i1 = repair.cached_repair(method, a, ds, steps=2, return_info=True)
        again, i2 = repair.cached_repair(method, a, ds, steps=2, return_info=True)
        assert i2["cached"] and i1["cached"] == (method == "fine_prune")  # "prune" is its alias
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))
    # scratch does not depend on the tampered weights: one checkpoint for any end
    _, i4 = repair.cached_repair("scratch", b, ds, steps=2, return_info=True)
    assert i4["cached"]
    with pytest.raises(ParameterError, match="method"):
        repair.cached_repair("magic", a, ds, steps=1)


def test_repair_budget_epochs_with_a_cap():
    assert repair.repair_budget(25, 50, 64, 200) == (50, 25)
    assert repair.repair_budget(100, 50, 64, 200) == (100, 64)
    assert repair.repair_budget(500, 50, 64, 200) == (200, 64)
    assert repair.repair_budget(500, 2, 64) == (16, 64)
    with pytest.raises(ParameterError):
        repair.repair_budget(0, 5)


def test_repair_budget_tiled_epochs_as_in_the_paper_code():
    # the paper's code tiles the bonafide images to 10,000 per epoch and trains 100 epochs
    # at batch 128: 79 steps per epoch whatever n is
    for n in (25, 100, 2500):
        assert repair.repair_budget(n, 100, 128, None, epoch_size=10_000) == (7900, min(128, n))
    # an epoch is never shorter than one pass over the data
    assert repair.repair_budget(20_000, 1, 128, None, epoch_size=10_000) == (157, 128)
    # the cap still binds
    assert repair.repair_budget(100, 100, 128, 500, epoch_size=10_000) == (500, 100)
    # without tiling, small sets get fewer steps than tiled ones
    assert repair.repair_budget(100, 100, 128)[0] < repair.repair_budget(
        100, 100, 128, epoch_size=10_000)[0]
    with pytest.raises(ParameterError):
        repair.repair_budget(100, 5, epoch_size=0)


def test_paper_budget_is_7900_steps_at_every_size():
    for n in (25, 100, 2500):
        assert repair.repair_budget(n, **repair.PAPER_BUDGET)[0] == 7900


def test_share_text():
    assert repair.share_text([200 / 7900, 50 / 7900, 100 / 7900]) == "0.63% to 2.5%"
    assert repair.share_text([0.5, 0.5]) == "50%"
    assert repair.share_text([1.0]) == "100%"
    with pytest.raises(ParameterError):
        repair.share_text([])
    with pytest.raises(ParameterError):
        repair.share_text([float("nan")])


def test_select_t_rule():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    # the middle qualifies: take it
    assert repair.select_t(ts, [0.90, 0.89, 0.885, 0.88, 0.87], 0.02) == 0.5
    # the middle is too inaccurate: the nearest qualifying point, the more accurate side
    assert repair.select_t(ts, [0.90, 0.89, 0.70, 0.895, 0.86], 0.02) == 0.75
    assert repair.select_t(ts, [0.90, 0.89, 0.70, 0.85, 0.86], 0.02) == 0.25
    # no inner point qualifies: an endpoint (the better one is nearer? both equally far)
    assert repair.select_t(ts, [0.90, 0.5, 0.4, 0.5, 0.91], 0.02) == 1.0
    # the tolerance is relative to the better end
    assert repair.select_t(ts, [0.80, 0.6, 0.885, 0.6, 0.90], 0.02) == 0.5
    assert repair.select_t(ts, [0.80, 0.6, 0.875, 0.6, 0.90], 0.02) == 1.0
    with pytest.raises(ParameterError):
        repair.select_t([0.2, 0.5, 1.0], [0.5, 0.5, 0.5])


def test_defender_split_is_disjoint_and_draws_are_nested():
    ds = _data(200)
    ds = ImageDataset(torch.arange(200).float().view(200, 1, 1, 1).expand(200, 1, 8, 8).clone(),
                      ds.y, ds.info, "test")
    sp = repair.defender_split(ds, 100, 30, 50, seed=3)
    ids = [set(d.x[:, 0, 0, 0].long().tolist()) for d in (sp.pool, sp.val, sp.test, sp.rest)]
    assert [len(i) for i in ids] == [100, 30, 50, 20]
    assert len(set.union(*ids)) == 200
    small, large = sp.bonafide(10, seed=1), sp.bonafide(40, seed=1)
    assert torch.equal(small.x, large.x[:10])
    assert not torch.equal(sp.bonafide(10, seed=2).x, small.x)
    with pytest.raises(ParameterError):
        sp.bonafide(101)
    with pytest.raises(ParameterError):
        repair.defender_split(ds, 150, 30, 50)


class _Detector(nn.Module):
    """Predicts ``target`` when the trigger is there, else the label rule (with an offset)."""

    def __init__(self, target=0):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.target = target

    def forward(self, x):
        out = torch.zeros(len(x), 3) + self.p
        out[:, 1] = 1.0
        hit = x[:, 0, -2:, -2:].mean((1, 2)) > 0.99
        out[hit, self.target] = 2.0
        return out


def test_scorer_metrics_and_restores_mode():
    test = _data(60)
    trig = backdoor.Trigger(size=2, row=6, col=6)
    faults = {"x": test.x[:4], "y_fault": torch.tensor([1, 1, 2, 0]),
              "y_true": torch.tensor([1, 0, 1, 1])}
    sc = repair.Scorer(test, target=0, trigger=trig, faults=faults)
    net = _Detector().train()
    out = sc(net)
    assert net.training  # mode restored
    assert out["accuracy"] == pytest.approx(float((test.y == 1).float().mean()))
    assert out["asr"] == 1.0
    assert out["fault_hits"] == (1, 1, 0, 0) and out["fault_success"] == 0.5
    assert out["fault_restored"] == 0.75
    assert repair.Scorer(test)(_Detector()).keys() == {"accuracy"}
    with pytest.raises(ParameterError):
        repair.Scorer(test, target=0)


def _setup(model_fn=_model, **kw):
    ends = (model_fn(0), model_fn(1))
    val = _data(40, seed=9)
    kw = dict(dict(epochs=2, max_steps=4, batch_size=16, ts=(0.0, 0.5, 1.0)), **kw)
    return repair.RepairSetup(ends=ends, val=val, **kw)


def test_run_repair_every_method_small_cnn():
    setup = _setup()
    bona = _data(24, seed=4)
    for m in repair.METHODS:
        r = repair.run_repair(m, setup, bona, None if m == "noise" else 0.05, seed=1)
        assert r.steps == 4 and r.batch == 16 and r.n == 24
        assert 0 <= r.val_accuracy <= 1 and not r.models["chosen"].training
        if m in repair.CURVE_METHODS:
            assert r.t in setup.ts and set(r.models) == {"chosen", "t=0.5"}
            assert list(r.profile["t"]) == list(setup.ts)
            assert r.criterion == pytest.approx(float(r.profile["accuracy"].mean()))
            chosen = float(r.profile.loc[r.profile.t == r.t, "accuracy"].iloc[0])
            assert r.val_accuracy == chosen
        else:
            assert math.isnan(r.t) and r.criterion == r.val_accuracy
    with pytest.raises(ParameterError):
        repair.run_repair("fine_tune", setup, bona, None)
    with pytest.raises(ParameterError):
        repair.run_repair("magic", setup, bona, 0.1)


def test_run_repair_recomputes_batchnorm_preresnet20():
    """With BatchNorm, every exported point (and the noise model) has statistics of the
    bonafide data: the chosen model equals a fresh recompute on those images."""
    setup = _setup(_preresnet, ts=(0.0, 0.5, 1.0))
    bona = _data(24, seed=4)
    r = repair.run_repair("bezier", setup, bona, 0.05, seed=0)
    m = r.models["t=0.5"]
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    curves.recompute_bn(m, TensorLoader(bona, r.batch))
    after = {k: v for k, v in m.state_dict().items() if "running" in k}
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    for meth in ("noise", "fine_prune"):
        rr = repair.run_repair(meth, setup, bona, 0.05, seed=0)
        assert 0 <= rr.val_accuracy <= 1


def test_lr_for_size():
    tuned = {100: 0.1, 2500: 0.01}
    assert repair.lr_for_size(25, tuned) == 0.1
    assert repair.lr_for_size(100, tuned) == 0.1
    assert repair.lr_for_size(500, tuned) == 0.01  # equally near on a log scale: the larger
    assert repair.lr_for_size(2500, tuned) == 0.01
    with pytest.raises(ParameterError):
        repair.lr_for_size(5, {})


def test_repair_sweep_tunes_on_validation_and_summarises_over_seeds():
    setup = _setup()
    split = repair.defender_split(_data(200, seed=2), 80, 40, 60, seed=0)
    setup = setup.replace(val=split.val)
    scorer = repair.Scorer(split.test)
    res = repair.repair_sweep(setup, split, scorer, methods=["bezier", "fine_tune", "noise"],
                              sizes=[8, 16], seeds=[0, 1], lrs=[0.01, 0.2],
                              tune_sizes=[16], progress=False)
    rows = res.rows
    assert set(rows.method) == {"bezier", "bezier (middle)", "fine_tune", "noise"}
    assert len(rows) == 4 * 2 * 2
    assert rows[rows.method == "noise"].lr.isna().all()
    # the chosen rate is the best validation criterion at the tuning size, seed 0
    for m in ("bezier", "fine_tune"):
        sub = res.tuning[res.tuning.method == m]
        best = float(sub.loc[sub.criterion.idxmax(), "lr"])
        assert set(res.lrs[res.lrs.method == m].lr) == {best}
        assert set(rows[rows.method == m].lr) == {best}
    summ = repair.sweep_summary(rows)
    assert set(summ) == set(rows.method) and set(summ["bezier"]) == {8, 16}
    assert all(isinstance(n, int) for n in summ["bezier"])
    iv = summ["fine_tune"][16]["acc"]
    vals = rows[(rows.method == "fine_tune") & (rows.n == 16)].accuracy
    assert iv["n"] == 2 and iv["estimate"] == pytest.approx(vals.mean())
    # a table from one sweep drives another without tuning
    res2 = repair.repair_sweep(setup, split, scorer, methods=["bezier", "fine_tune"], sizes=[8],
                               seeds=[0], lr_table=res.lr_table(), progress=False)
    assert res2.tuning.empty
    pd.testing.assert_frame_equal(
        res2.rows.drop(columns="val_accuracy").reset_index(drop=True),
        rows[(rows.n == 8) & (rows.seed == 0) & rows.method.isin(["bezier", "bezier (middle)",
                                                                 "fine_tune"])]
        .drop(columns="val_accuracy").reset_index(drop=True))
    with pytest.raises(ParameterError):
        repair.repair_sweep(setup, split, scorer, methods=["magic"], progress=False)


def test_paired_seed_difference_and_frontier_plot():
    rows = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "n": [10] * 6,
                         "seed": [0, 1, 2] * 2, "accuracy": [0.9, 0.8, 0.85, 0.7, 0.6, 0.66],
                         "asr": [0.1, 0.2, 0.1, 0.9, 0.8, 0.9]})
    d = repair.paired_seed_difference(rows, "a", "b", 10, "accuracy")
    assert d["estimate"] == pytest.approx(np.mean([0.2, 0.2, 0.19]))
    assert d["n"] == 3 and d["ci"][0] < d["estimate"] < d["ci"][1]
    with pytest.raises(ParameterError):
        repair.paired_seed_difference(rows, "a", "c", 10, "accuracy")
    fig = repair.plot_frontier(repair.sweep_summary(rows), floor=0.05)
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
        claims = repair.repair_claims(rows, end_accuracy=0.87, small_n=100, large_n=2500,
                                      fault_rows=rows, aware_rows=rows)
        ids = [c["claim_id"] for c in claims]
        assert len(ids) == len(set(ids)) == 12
        for c in claims:
            got = verdict(c["result"]["ci"], c["threshold"], c["direction"])
            assert got == want, (c["claim_id"], c["result"])
            assert c["result"]["n"] == 3
    with pytest.raises(ParameterError):
        repair.repair_claims(good, 0.87, small_n=50, large_n=2500)


def test_interval_words_and_plots():
    iv = {"estimate": 0.5, "ci": [0.2, 0.8], "n": 3}
    assert repair.format_interval(iv) == "0.50 [0.20, 0.80]"
    assert repair.format_interval({"estimate": 1.0, "ci": [float("nan")] * 2, "n": 1},
                                  1) == "1.0 [n/a, n/a]"
    assert repair.interval_word(iv, "up", "down", "flat") == "up"
    assert repair.interval_word(iv, "up", "down", "flat", threshold=0.5) == "flat"
    assert repair.interval_word(iv, "up", "down", "flat", threshold=0.9) == "down"
    ax = repair.plot_vs_n({"a": {25: iv, 100: iv}}, floor=0.1)
    assert len(ax.lines) >= 2
    import matplotlib.pyplot as plt

    plt.close("all")


def test_variant_sweep_and_per_image_counts():
    setup = _setup()
    split = repair.defender_split(_data(200, seed=2), 80, 40, 60, seed=0)
    setup = setup.replace(val=split.val)
    x = split.rest.x[:4]
    scorer = repair.Scorer(split.test, faults={"x": x, "y_fault": torch.tensor([0, 1, 2, 0]),
                                               "y_true": split.rest.y[:4]})
    table = {"bezier": {16: 0.05}, "polychain": {16: 0.05}}
    rows = repair.variant_sweep(setup, split, scorer, [{"curve": "polychain"},
                                                       {"weight_decay": 0.0}],
                                16, [0, 1], table, progress=False)
    assert list(dict.fromkeys(rows.variant)) == [
        "bezier, 3 bends, weight decay 0.0005", "polychain, 3 bends, weight decay 0.0005",
        "bezier, 3 bends, weight decay 0"]
    assert len(rows) == 6 and set(rows.lr) == {0.05}
    counts = repair.per_image_counts(rows)
    assert counts.shape == (4, 2)  # bezier rows of both bezier variants are grouped together
    assert counts.to_numpy().max() <= 4
    with pytest.raises(ParameterError):
        repair.variant_sweep(setup, split, scorer, [{"lr": 1}], 16, [0], table, progress=False)


def test_middle_gap():
    prof = pd.DataFrame({"method": "bezier", "n": 10, "seed": np.repeat([0, 1, 2], 3),
                         "t": [0.0, 0.5, 1.0] * 3,
                         "accuracy": [0.8, 0.7, 0.9, 0.85, 0.8, 0.8, 0.9, 0.6, 0.7]})
    g = repair.middle_gap(prof, "bezier", 10)
    assert g["estimate"] == pytest.approx(np.mean([-0.2, -0.05, -0.3])) and g["n"] == 3
    with pytest.raises(ParameterError):
        repair.middle_gap(prof, "polychain", 10)
    with pytest.raises(ParameterError):
        repair.middle_gap(prof, "bezier", 10, t=0.25)
