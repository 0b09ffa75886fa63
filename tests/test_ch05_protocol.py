import math

import pandas as pd
import pytest
import torch
from torch import nn

from _repaircases import _data, _model, _preresnet
from mcutils import backdoor, curves
from mcutils.chapters import ch05_protocol, ch05_repair
from mcutils.core.checks import ParameterError
from mcutils.data import ImageDataset, TensorLoader


def test_repair_budget_epochs_with_a_cap():
    assert ch05_protocol.repair_budget(25, 50, 64, 200) == (50, 25)
    assert ch05_protocol.repair_budget(100, 50, 64, 200) == (100, 64)
    assert ch05_protocol.repair_budget(500, 50, 64, 200) == (200, 64)
    assert ch05_protocol.repair_budget(500, 2, 64) == (16, 64)
    with pytest.raises(ParameterError):
        ch05_protocol.repair_budget(0, 5)


def test_repair_budget_tiled_epochs_as_in_the_paper_code():
    # the paper's code tiles the bonafide images to 10,000 per epoch and trains 100 epochs
    # at batch 128: 79 steps per epoch whatever n is
    for n in (25, 100, 2500):
        assert ch05_protocol.repair_budget(n, 100, 128, None, epoch_size=10_000) == (7900, min(128, n))
    # an epoch is never shorter than one pass over the data
    assert ch05_protocol.repair_budget(20_000, 1, 128, None, epoch_size=10_000) == (157, 128)
    # the cap still binds
    assert ch05_protocol.repair_budget(100, 100, 128, 500, epoch_size=10_000) == (500, 100)
    # without tiling, small sets get fewer steps than tiled ones
    assert ch05_protocol.repair_budget(100, 100, 128)[0] < ch05_protocol.repair_budget(
        100, 100, 128, epoch_size=10_000)[0]
    with pytest.raises(ParameterError):
        ch05_protocol.repair_budget(100, 5, epoch_size=0)


def test_paper_budget_is_7900_steps_at_every_size():
    for n in (25, 100, 2500):
        assert ch05_protocol.repair_budget(n, **ch05_protocol.PAPER_BUDGET)[0] == 7900


def test_defender_split_is_disjoint_and_draws_are_nested():
    ds = _data(200)
    ds = ImageDataset(torch.arange(200).float().view(200, 1, 1, 1).expand(200, 1, 8, 8).clone(),
                      ds.y, ds.info, "test")
    sp = ch05_protocol.defender_split(ds, 100, 30, 50, seed=3)
    ids = [set(d.x[:, 0, 0, 0].long().tolist()) for d in (sp.pool, sp.val, sp.test, sp.rest)]
    assert [len(i) for i in ids] == [100, 30, 50, 20]
    assert len(set.union(*ids)) == 200
    small, large = sp.bonafide(10, seed=1), sp.bonafide(40, seed=1)
    assert torch.equal(small.x, large.x[:10])
    assert not torch.equal(sp.bonafide(10, seed=2).x, small.x)
    with pytest.raises(ParameterError):
        sp.bonafide(101)
    with pytest.raises(ParameterError):
        ch05_protocol.defender_split(ds, 150, 30, 50)


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
    sc = ch05_protocol.Scorer(test, target=0, trigger=trig, faults=faults)
    net = _Detector().train()
    out = sc(net)
    assert net.training  # mode restored
    assert out["accuracy"] == pytest.approx(float((test.y == 1).float().mean()))
    assert out["asr"] == 1.0
    assert out["fault_hits"] == (1, 1, 0, 0) and out["fault_success"] == 0.5
    assert out["fault_restored"] == 0.75
    assert ch05_protocol.Scorer(test)(_Detector()).keys() == {"accuracy"}
    with pytest.raises(ParameterError):
        ch05_protocol.Scorer(test, target=0)


def _setup(model_fn=_model, **kw):
    ends = (model_fn(0), model_fn(1))
    val = _data(40, seed=9)
    kw = dict(dict(epochs=2, max_steps=4, batch_size=16, ts=(0.0, 0.5, 1.0)), **kw)
    return ch05_protocol.RepairSetup(ends=ends, val=val, **kw)


def test_run_repair_every_method_small_cnn():
    setup = _setup()
    bona = _data(24, seed=4)
    for m in ch05_protocol.METHODS:
        r = ch05_protocol.run_repair(m, setup, bona, None if m == "noise" else 0.05, seed=1)
        assert r.steps == 4 and r.batch == 16 and r.n == 24
        assert 0 <= r.val_accuracy <= 1 and not r.models["chosen"].training
        if m in ch05_protocol.CURVE_METHODS:
            assert r.t in setup.ts and set(r.models) == {"chosen", "t=0.5"}
            assert list(r.profile["t"]) == list(setup.ts)
            assert r.criterion == pytest.approx(float(r.profile["accuracy"].mean()))
            chosen = float(r.profile.loc[r.profile.t == r.t, "accuracy"].iloc[0])
            assert r.val_accuracy == chosen
        else:
            assert math.isnan(r.t) and r.criterion == r.val_accuracy
    with pytest.raises(ParameterError):
        ch05_protocol.run_repair("fine_tune", setup, bona, None)
    with pytest.raises(ParameterError):
        ch05_protocol.run_repair("magic", setup, bona, 0.1)


def test_run_repair_recomputes_batchnorm_preresnet20():
    """With BatchNorm, every exported point (and the noise model) has statistics of the
    bonafide data: the chosen model equals a fresh recompute on those images."""
    setup = _setup(_preresnet, ts=(0.0, 0.5, 1.0))
    bona = _data(24, seed=4)
    r = ch05_protocol.run_repair("bezier", setup, bona, 0.05, seed=0)
    m = r.models["t=0.5"]
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    curves.recompute_bn(m, TensorLoader(bona, r.batch))
    after = {k: v for k, v in m.state_dict().items() if "running" in k}
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    for meth in ("noise", "fine_prune"):
        rr = ch05_protocol.run_repair(meth, setup, bona, 0.05, seed=0)
        assert 0 <= rr.val_accuracy <= 1


def test_lr_for_size():
    tuned = {100: 0.1, 2500: 0.01}
    assert ch05_protocol.lr_for_size(25, tuned) == 0.1
    assert ch05_protocol.lr_for_size(100, tuned) == 0.1
    assert ch05_protocol.lr_for_size(500, tuned) == 0.01  # equally near on a log scale: the larger
    assert ch05_protocol.lr_for_size(2500, tuned) == 0.01
    with pytest.raises(ParameterError):
        ch05_protocol.lr_for_size(5, {})


def test_repair_sweep_tunes_on_validation_and_summarises_over_seeds():
    setup = _setup()
    split = ch05_protocol.defender_split(_data(200, seed=2), 80, 40, 60, seed=0)
    setup = setup.replace(val=split.val)
    scorer = ch05_protocol.Scorer(split.test)
    res = ch05_protocol.repair_sweep(setup, split, scorer, methods=["bezier", "fine_tune", "noise"],
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
    summ = ch05_repair.sweep_summary(rows)
    assert set(summ) == set(rows.method) and set(summ["bezier"]) == {8, 16}
    assert all(isinstance(n, int) for n in summ["bezier"])
    iv = summ["fine_tune"][16]["acc"]
    vals = rows[(rows.method == "fine_tune") & (rows.n == 16)].accuracy
    assert iv["n"] == 2 and iv["estimate"] == pytest.approx(vals.mean())
    # a table from one sweep drives another without tuning
    res2 = ch05_protocol.repair_sweep(setup, split, scorer, methods=["bezier", "fine_tune"], sizes=[8],
                               seeds=[0], lr_table=res.lr_table(), progress=False)
    assert res2.tuning.empty
    pd.testing.assert_frame_equal(
        res2.rows.drop(columns="val_accuracy").reset_index(drop=True),
        rows[(rows.n == 8) & (rows.seed == 0) & rows.method.isin(["bezier", "bezier (middle)",
                                                                 "fine_tune"])]
        .drop(columns="val_accuracy").reset_index(drop=True))
    with pytest.raises(ParameterError):
        ch05_protocol.repair_sweep(setup, split, scorer, methods=["magic"], progress=False)


def test_variant_sweep_and_per_image_counts():
    setup = _setup()
    split = ch05_protocol.defender_split(_data(200, seed=2), 80, 40, 60, seed=0)
    setup = setup.replace(val=split.val)
    x = split.rest.x[:4]
    scorer = ch05_protocol.Scorer(split.test, faults={"x": x, "y_fault": torch.tensor([0, 1, 2, 0]),
                                               "y_true": split.rest.y[:4]})
    table = {"bezier": {16: 0.05}, "polychain": {16: 0.05}}
    rows = ch05_protocol.variant_sweep(setup, split, scorer, [{"curve": "polychain"},
                                                       {"weight_decay": 0.0}],
                                16, [0, 1], table, progress=False)
    assert list(dict.fromkeys(rows.variant)) == [
        "bezier, 3 bends, weight decay 0.0005", "polychain, 3 bends, weight decay 0.0005",
        "bezier, 3 bends, weight decay 0"]
    assert len(rows) == 6 and set(rows.lr) == {0.05}
    counts = ch05_repair.per_image_counts(rows)
    assert counts.shape == (4, 2)  # bezier rows of both bezier variants are grouped together
    assert counts.to_numpy().max() <= 4
    with pytest.raises(ParameterError):
        ch05_protocol.variant_sweep(setup, split, scorer, [{"lr": 1}], 16, [0], table, progress=False)
