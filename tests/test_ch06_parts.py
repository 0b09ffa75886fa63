"""Chapter 06's official robust objective, budget snapshots, robust-loss curves, pool parts
and barrier controls (mcutils.attacks.gradient_penalty_objective, mcutils.chapters.ch06_ends,
ch06_budget, ch06_parts, ch06_findings) at tiny sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mcutils import attacks, models
from mcutils.chapters import ch06_budget, ch06_ends
from mcutils.chapters import ch06_robust_path as robustpath
from mcutils.core import report
from mcutils.core.checks import ParameterError
from mcutils.curves import CurveModel, train_curve
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.training import sgd_steps


def _tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8,
                              width=2, hidden=8).eval()


def _data(n: int = 32, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, 1, 8, 8, generator=gen),
                        torch.randint(0, 10, (n,), generator=gen), dataset_info("digits"),
                        "train")


# ------------------------------------------------------------ the official objective
def test_objective_without_penalty_is_the_loss_at_the_one_step_pgd_example():
    net, data = _tiny(), _data(16)
    objective = attacks.gradient_penalty_objective(0.1, penalty=0.0, seed=3)
    loss = objective(net, data.x, data.y)
    adv = attacks.pgd(net, data.x, data.y, eps=0.1, steps=1, step_size=0.025,
                      generator=torch.Generator().manual_seed(3))
    assert float(loss.detach()) == pytest.approx(float(F.cross_entropy(net(adv), data.y)),
                                                 rel=1e-6)


def test_objective_penalty_is_the_summed_squared_input_gradient_and_trains_the_weights():
    net, data = _tiny(), _data(16)
    plain = attacks.gradient_penalty_objective(0.1, penalty=0.0, seed=3)(net, data.x, data.y)
    with_penalty = attacks.gradient_penalty_objective(0.1, penalty=10.0, seed=3)
    loss = with_penalty(net, data.x, data.y)
    adv = attacks.pgd(net, data.x, data.y, eps=0.1, steps=1, step_size=0.025,
                      generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(adv), data.y), adv)
    assert float((loss - plain).detach()) == pytest.approx(10 * float((g ** 2).sum()), rel=1e-4)
    # the penalty reaches the weights: its gradient differs from the plain loss's
    w = next(net.parameters())
    (g_pen,) = torch.autograd.grad(
        attacks.gradient_penalty_objective(0.1, penalty=10.0, seed=3)(net, data.x, data.y), w)
    (g_plain,) = torch.autograd.grad(
        attacks.gradient_penalty_objective(0.1, penalty=0.0, seed=3)(net, data.x, data.y), w)
    assert not torch.allclose(g_pen, g_plain)
    for bad in (dict(eps=0.0), dict(eps=0.1, steps=0), dict(eps=0.1, penalty=-1.0)):
        with pytest.raises(ParameterError):
            attacks.gradient_penalty_objective(**bad)


def test_sgd_steps_objective_replaces_the_cross_entropy():
    data = _data(32)
    a, b = _tiny(), _tiny()
    loader = TensorLoader(data, 8, shuffle=True, seed=0)
    sgd_steps(a, loader, 4, lr=0.1, seed=0)
    sgd_steps(b, TensorLoader(data, 8, shuffle=True, seed=0), 4, lr=0.1, seed=0,
              objective=lambda m, x, y: F.cross_entropy(m(x), y))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = _tiny()
    sgd_steps(c, TensorLoader(data, 8, shuffle=True, seed=0), 4, lr=0.1, seed=0,
              objective=attacks.gradient_penalty_objective(0.1))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


# ------------------------------------------------------------ budget snapshots
def test_budget_snapshots_equal_complete_constant_rate_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    a, b, data = _tiny(0), _tiny(1), _data(48)
    curves, info = ch06_budget.cached_curve_budgets(a, b, data, [2, 4, 8], lr=0.05,
                                                    batch_size=8, seed=5, return_info=True)
    assert sorted(curves) == [2, 4, 8] and not any(i["cached"] for i in info.values())
    for steps in (4, 8):  # a b-step run: constant rate for 4, the paper's schedule for 8
        direct = CurveModel(a, a, b)
        train_curve(direct, TensorLoader(data, 8, shuffle=True, seed=5), steps=steps, lr=0.05,
                    weight_decay=1e-4, schedule=None if steps == 4 else "paper", seed=5,
                    progress=False)
        for (k, v), w in zip(curves[steps].state_dict().items(), direct.state_dict().values()):
            torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.equal(p, q)
               for p, q in zip(curves[2].parameters(), curves[8].parameters()))
    again, info = ch06_budget.cached_curve_budgets(a, b, data, [2, 4, 8], lr=0.05,
                                                   batch_size=8, seed=5, return_info=True)
    assert all(i["cached"] for i in info.values())
    for bud in (2, 4, 8):
        for p, q in zip(again[bud].parameters(), curves[bud].parameters()):
            assert torch.equal(p, q)
    with pytest.raises(ParameterError, match="at most half"):
        ch06_budget.check_budgets([2, 5, 8])
    with pytest.raises(ParameterError, match="4x"):
        ch06_budget.check_budgets([3, 4, 8])


def test_callback_sees_every_step():
    a, b, data = _tiny(0), _tiny(1), _data(16)
    seen = []
    train_curve(CurveModel(a, a, b), TensorLoader(data, 8), steps=5, lr=0.01, progress=False,
                callback=lambda step, cm: seen.append(step))
    assert seen == [1, 2, 3, 4, 5]


def test_robust_curve_is_cached_and_differs_from_the_standard_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    a, b, data = _tiny(0), _tiny(1), _data(32)
    robust = ch06_ends.cached_robust_curve(a, b, data, steps=3, eps=0.1, batch_size=8, seed=0)
    again = ch06_ends.cached_robust_curve(a, b, data, steps=3, eps=0.1, batch_size=8, seed=0)
    for p, q in zip(robust.parameters(), again.parameters()):
        assert torch.equal(p, q)
    plain = CurveModel(a, a, b)
    train_curve(plain, TensorLoader(data, 8, shuffle=True, seed=0), steps=3, lr=0.05,
                schedule="paper", seed=0, progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(robust.parameters(), plain.parameters()))
    with pytest.raises(ParameterError, match="steps"):
        ch06_ends.cached_robust_curve(a, b, data, steps=0, eps=0.1)
    with pytest.raises(ParameterError, match="protocol"):
        ch06_ends.robust_end({"adv_protocol": "fgsm"})


# ------------------------------------------------------------ pool parts
TINY = dict(dataset="digits", model="mlp", num_epochs=1, batch_size=32, train_subset=200,
            seeds=[0, 1], adv_steps=1, adv_subset=200, curve_subset=200, num_ts=3,
            sample_ts=[0.5], eval_size=20, path_size=10, attack_steps=2, paper_batch=5,
            bound_eps_l2=[0.5], bn_size=50, n_boot=50, curve_budgets=[2, 4, 8],
            variant_seeds=[1], robust_path_seeds=[0], robust_path_steps=2)


def test_pool_parts_fill_the_cache_with_what_the_notebook_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path))
    params = robustpath.PARAMETERS.validate({**robustpath.PARAMETERS.defaults(), **TINY})
    parts = robustpath.pool_parts(params)
    assert [p[1] for p in parts] == ["train_curve_part", "train_variant_part",
                                     "train_curve_part", "train_robust_path_part"]
    assert [p[2]["seed"] for p in parts] == [0, 1, 1, 0]
    for _, fn, kwargs in parts:
        getattr(robustpath, fn)(**kwargs)  # as the runner's workers call them
    eval_set, curve_train, ts = robustpath.load_data(params)
    regular, _ = robustpath.regular_end(params)
    robust, info = robustpath.robust_end(params)
    assert info["cached"]
    study = robustpath.run_path_study(params, regular, robust, curve_train, eval_set, ts)
    assert study["training"]["cached"].all()  # the notebook finds every curve in the cache
    budget = ch06_budget.run_budget_study(params, regular, robust, curve_train, eval_set, ts,
                                          path=study["path"])
    # the same numbers as a run without parts, in a fresh cache
    monkeypatch.setenv("MCUTILS_CACHE", str(tmp_path / "fresh"))
    regular2, _ = robustpath.regular_end(params)
    robust2, info2 = robustpath.robust_end(params)
    assert not info2["cached"]
    study2 = robustpath.run_path_study(params, regular2, robust2, curve_train, eval_set, ts)
    assert not study2["training"]["cached"].any()
    pd.testing.assert_frame_equal(study["path"], study2["path"])
    budget2 = ch06_budget.run_budget_study(params, regular2, robust2, curve_train, eval_set,
                                           ts, path=study2["path"])
    for b in (2, 4, 8):
        assert budget["robust"][b]["per_seed"] == budget2["robust"][b]["per_seed"]


# ------------------------------------------------------------ barrier controls
def test_straightened_path_has_no_barrier_and_fails_the_barrier_claims():
    rows = []
    for s in (0, 1, 2):
        for t, v in zip([0, 0.25, 0.5, 0.75, 1.0], [1.0, 2.0, 3.0 + s / 10, 2.0, 0.5]):
            rows.append(dict(t=t, seed=s, robust_loss=v, robust_error=v / 4))
    path = pd.DataFrame(rows)
    assert (robustpath.barrier_heights(path, "robust_loss", relative=True) > 1).all()
    flat = robustpath.straightened_path(path, "robust_loss")
    assert (robustpath.barrier_heights(flat, "robust_loss") < 0).all()
    np.testing.assert_allclose(flat.query("t == 0.5")["robust_loss"], 0.75)
    res = robustpath.barrier_interval(flat, "robust_loss", relative=True)
    assert report.verdict(res["ci"], robustpath.THRESHOLDS["barrier_margin"], ">") \
        == "not reproduced"
