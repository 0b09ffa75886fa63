"""mcutils.chapters.ch06_robust_path (with ch06_curve_profile, ch06_path_stats and
ch06_path_figures): chapter 06's schema, orchestration, findings and figures at tiny sizes,
and negative controls for every claim the chapter asserts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mcutils import attacks, hessian, models
from mcutils.chapters import ch06_path_figures as figures
from mcutils.chapters import ch06_deviations, ch06_path_stats
from mcutils.chapters import ch06_robust_path as robustpath
from mcutils.core import report
from mcutils.core.checks import ParameterError
from mcutils.curves import CurveModel
from mcutils.data import ImageDataset, TensorLoader, dataset_info


def _tiny(name: str = "small_cnn", seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    kw = {"width": 2, "hidden": 8, **kw} if name == "small_cnn" else {"width": 2, **kw}
    return models.build_model(name, num_classes=10, in_channels=1, input_size=8, **kw).eval()


def _data(n: int = 24, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen),
                        dataset_info("digits"), "train")


def test_profile_curve_matches_direct_computation_at_the_ends():
    a, b = _tiny(seed=0), _tiny(seed=1)
    curve = CurveModel(a, a, b)
    data = _data(12)
    out = robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.1,
                                   attack_steps=3, sample_ts=[0.5], path_size=8,
                                   attack_seed=3, paper_batch=4, bound_eps_l2=[0.5])
    samples, path, bound = out["samples"], out["path"], out["bound"]
    # all inputs at the sampled t, path_size elsewhere; the means use the first path_size
    assert samples.groupby("t")["input"].count().to_dict() == {0.0: 8, 0.5: 12, 1.0: 8}
    mid = samples[samples["t"] == 0.5]
    assert path.set_index("t").loc[0.5, "robust_loss"] == pytest.approx(
        mid["robust_loss"].iloc[:8].mean())
    # t = 0 is the first end: PGD with the same seed, Lanczos eigenvalues, its weight norm
    x, y = data.x[:8], data.y[:8]
    adv = attacks.pgd(a, x, y, eps=0.1, steps=3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = F.cross_entropy(a(adv), y, reduction="none").double().numpy()
    start = samples[samples["t"] == 0.0]
    np.testing.assert_allclose(start["robust_loss"], expected, rtol=1e-5, atol=1e-6)
    lam = hessian.top_input_eigenvalues(a, x, y, iters=80, tol=0)
    np.testing.assert_allclose(start["top_eig"], lam.numpy(), rtol=1e-4, atol=1e-8)
    norm = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in a.parameters())))
    assert path.set_index("t").loc[0.0, "weight_norm"] == pytest.approx(norm, rel=1e-6)
    assert {"paper_eig", "paper_iterations"} <= set(path)
    # the L2 bound rows exist at the sampled t only, on the path_size inputs
    l2 = bound[bound["norm"] == "l2"]
    assert set(l2["t"]) == {0.5} and len(l2) == 8
    assert set(bound[bound["norm"] == "linf"]["t"]) == {0.0, 0.5, 1.0}


def test_profile_curve_memory_format_changes_only_rounding():
    a, b = _tiny(seed=0), _tiny(seed=1)
    curve = CurveModel(a, a, b)
    data = _data(12)
    seen = []
    conv = next(m for m in curve._template[0].modules() if isinstance(m, torch.nn.Conv2d))
    real = type(conv)._conv_forward

    def run(cl):
        seen.clear()
        out = robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.1,
                                       attack_steps=3, sample_ts=[0.5], path_size=8,
                                       attack_seed=3, paper_batch=4, bound_eps_l2=[0.5],
                                       channels_last=cl)
        return out, list(seen)

    def spy(self, x, weight, bias):
        seen.append(weight.stride()[1] == 1)
        return real(self, x, weight, bias)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(conv), "_conv_forward", spy)
        default, seen_default = run(False)
        planned, seen_planned = run(True)
    assert seen_default and not any(seen_default)  # it ran in the default layout ...
    assert seen_planned and all(seen_planned)      # ... and in channels_last
    for key in ("samples", "path", "bound"):
        left, right = default[key], planned[key]
        assert list(left.columns) == list(right.columns) and len(left) == len(right)
        for col in left.columns:
            if pd.api.types.is_numeric_dtype(left[col]):
                np.testing.assert_allclose(left[col].astype(float), right[col].astype(float),
                                           rtol=1e-4, atol=1e-5, err_msg=f"{key}.{col}")
            else:
                assert left[col].equals(right[col])


def test_profile_curve_recomputes_batchnorm_on_preresnet20():
    """At each t the BatchNorm statistics are those of w(t) on the given batches, not the
    interpolated statistics of the ends; without batches a BN model is refused."""
    a, b = _tiny("preresnet20", seed=0), _tiny("preresnet20", seed=1)
    bn = _data(32, seed=5)
    for net, s in ((a, 1), (b, 2)):  # give the ends distinct running statistics
        net.train()
        with torch.no_grad():
            net(_data(32, seed=s).x * (1 + s))
        net.eval()
    curve = CurveModel(a, a, b)
    data = _data(6)
    loader = TensorLoader(bn, 16)
    out = robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.05,
                                   attack_steps=2, bn_loader=loader)
    recomputed = curve.model_at(0.5, loader)
    interpolated = curve._export(0.5)  # the interpolated (stale) statistics, for contrast
    with torch.no_grad():
        want = F.cross_entropy(recomputed(data.x), data.y, reduction="none").double().numpy()
        stale = F.cross_entropy(interpolated(data.x), data.y, reduction="none").double().numpy()
    got = out["samples"].query("t == 0.5")["loss"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(got - stale).max() > 1e-3
    with pytest.raises(ParameterError, match="BatchNorm"):
        robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.05)


def test_path_study_trains_one_cached_curve_per_seed_with_weight_decay():
    a, b = _tiny(seed=0), _tiny(seed=1)
    train, test = _data(64, seed=1), _data(10, seed=2)
    kw = dict(seeds=[0, 1], ts=[0.0, 0.5, 1.0], eps=0.1, curve_budgets=[1, 2, 4], curve_lr=0.01,
              batch_size=16, bn_size=16, attack_steps=2, sample_ts=[0.5], path_size=6,
              progress=False)
    study = robustpath.path_study(a, b, train, test.x, test.y, **kw)
    assert sorted(study["path"]["seed"].unique()) == [0, 1]
    assert len(study["samples"]) == 2 * (6 + 10 + 6)
    assert not study["training"]["cached"].any()
    again = robustpath.path_study(a, b, train, test.x, test.y, **kw)
    assert again["training"]["cached"].all()
    pd.testing.assert_frame_equal(again["path"], study["path"])
    # different seeds train different curves
    mids = study["path"].query("t == 0.5").set_index("seed")["weight_norm"]
    assert mids[0] != mids[1]
    # weight decay is part of the cached configuration: another value trains anew
    other = robustpath.path_study(a, b, train, test.x, test.y, curve_weight_decay=0.0, **kw)
    assert not other["training"]["cached"].any()
    with pytest.raises(ParameterError, match="seeds"):
        robustpath.path_study(a, b, train, test.x, test.y, **{**kw, "seeds": [1, 1]})
    with pytest.raises(ParameterError, match="sample_ts"):
        robustpath.path_study(a, b, train, test.x, test.y, **{**kw, "sample_ts": [0.3]})


# ------------------------------------------------------------------ synthetic study tables
TS = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]


def _study(robust_peak: float = 0.375, eig_peak: float | None = None, barrier: float = 1.0,
           clean_bump: float = 0.0, robust_acc: float = 0.7, link: float = 1.0,
           bound_slack: float = 1.0, control_link: float = 0.0, n: int = 300,
           seeds=(0, 1, 2)) -> dict[str, pd.DataFrame]:
    """Tables shaped like path_study's. Per input: robust loss = link * f(eig) + noise."""
    eig_peak = robust_peak if eig_peak is None else eig_peak
    rng = np.random.default_rng(0)
    samples, path, bound = [], [], []
    base = rng.lognormal(size=n)
    robust_u = rng.random(n)  # the ends are one model for every seed: restarts agree
    for s in seeds:
        for t in TS:
            bump_r = barrier * np.exp(-((t - robust_peak) / 0.12) ** 2)
            bump_e = np.exp(-((t - eig_peak) / 0.12) ** 2)
            eig = base * (0.5 + bump_e) * rng.lognormal(sigma=0.2, size=n)
            noise = rng.lognormal(sigma=0.3, size=n)
            robust = (link * np.log1p(eig) + (1 - link) * noise) * (1 + bump_r) + 2 - t
            loss = 0.3 + 0.2 * t + clean_bump * np.exp(-((t - 0.5) / 0.1) ** 2) \
                + 0.01 * rng.random(n) + control_link * robust
            correct = rng.random(n) < 0.9
            rcorrect = robust_u < (robust_acc if t == 1.0 else 0.1)
            grad = rng.lognormal(size=n)
            samples.append(pd.DataFrame(dict(t=t, input=np.arange(n), robust_loss=robust,
                                             robust_correct=rcorrect, loss=loss, correct=correct,
                                             top_eig=eig, grad_norm=grad, seed=s)))
            path.append(dict(t=t, seed=s, weight_norm=10 - 2 * np.sin(np.pi * t) + 0.01 * s,
                             loss=loss.mean(), accuracy=correct.mean(),
                             robust_loss=robust.mean(), robust_accuracy=rcorrect.mean(),
                             top_eig=eig.mean(), grad_norm=grad.mean()))
            bound.append(pd.DataFrame(dict(t=t, norm="linf", eps=0.1, input=np.arange(n),
                                           robust_loss=robust, bound=robust * bound_slack,
                                           seed=s)))
    return {"samples": pd.concat(samples, ignore_index=True), "path": pd.DataFrame(path),
            "bound": pd.concat(bound, ignore_index=True)}


def _verdicts(study) -> dict[str, str]:
    out = robustpath.claims(study, [0.25, 0.5, 0.75], eps=0.1, n_boot=200)
    return {c["claim_id"]: report.verdict(c["result"]["ci"], c["threshold"], c["direction"])
            for c in out}


def test_claims_reproduced_on_data_that_support_them():
    out = robustpath.claims(_study(), [0.25, 0.5, 0.75], eps=0.1, n_boot=200)
    assert next(c for c in out if c["claim_id"] == "peak_coincidence")["threshold"] == 0.125
    v = _verdicts(_study())
    assert v["standard_no_barrier"] == "reproduced"
    assert v["robust_end"] == "reproduced"
    assert v["robust_barrier"] == "reproduced"
    assert v["per_sample_correlation"] == "reproduced"
    assert v["peak_coincidence"] == "reproduced"
    assert v["second_order_bound"] == "reproduced"
    assert v["beats_controls_per_input"] == "reproduced"


@pytest.mark.parametrize("claim,kwargs", [
    ("standard_no_barrier", dict(clean_bump=0.5)),      # the clean loss bulges in the middle
    ("robust_end", dict(robust_acc=0.2)),               # the "robust" end is not robust
    ("robust_barrier", dict(barrier=-0.2)),             # robust loss never exceeds the ends
    ("per_sample_correlation", dict(link=0.0)),         # robust loss independent of eigenvalue
    ("peak_coincidence", dict(eig_peak=0.75)),          # peaks far apart
    ("second_order_bound", dict(bound_slack=0.5)),      # every PGD loss above the bound
    ("beats_controls_per_input", dict(link=0.5, control_link=1.0)),  # clean loss = the link
])
def test_negative_controls_are_not_reproduced(claim, kwargs):
    assert _verdicts(_study(**kwargs))[claim] != "reproduced"


def test_barrier_heights_sign_and_relative_scale():
    path = pd.DataFrame(dict(t=[0, 0.5, 1, 0, 0.5, 1], seed=[0, 0, 0, 1, 1, 1],
                             robust_loss=[2.0, 3.0, 1.0, 2.0, 1.5, 1.0]))
    h = robustpath.barrier_heights(path)
    assert h.to_dict() == {0: 1.0, 1: -0.5}
    assert robustpath.barrier_heights(path, relative=True).to_dict() == {0: 0.5, 1: -0.25}


def test_per_sample_correlation_is_rank_based_and_bootstrapped_over_inputs():
    rng = np.random.default_rng(1)
    n = 500
    eig = rng.lognormal(sigma=2, size=n)
    df = pd.DataFrame(dict(t=0.5, input=np.arange(n), top_eig=eig, robust_loss=np.log(eig) ** 3,
                           seed=0))
    res = robustpath.per_sample_correlation(df, 0.5, n_boot=200)
    assert res["estimate"] == pytest.approx(1.0) and res["n"] == n  # monotone: rho = 1
    df["robust_loss"] = rng.random(n)
    res = robustpath.per_sample_correlation(df, 0.5, n_boot=200)
    assert res["ci"][0] < 0 < res["ci"][1]


def test_spearman_columns_batched_matches_one_resample_at_a_time():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 3))
    b = a + rng.normal(size=(40, 3))
    b[:5, 0] = b[0, 0]  # ties are averaged in both paths
    idx = rng.integers(0, 40, size=(25, 40))
    batched = ch06_path_stats._spearman_columns(a[idx], b[idx])
    assert batched.shape == (25,)
    assert batched == pytest.approx([ch06_path_stats._spearman_columns(a[i], b[i]) for i in idx])
    const = np.ones((40, 3))
    assert np.isnan(ch06_path_stats._spearman_columns(const, b))


def test_control_that_is_the_target_beats_the_eigenvalue():
    study = _study(link=0.5)
    study["path"]["loss"] = study["path"]["robust_loss"] * 2 + 1  # a perfect control
    study["samples"]["loss"] = study["samples"]["robust_loss"] ** 3
    res = robustpath.control_comparison(study["samples"], study["path"], [0.25, 0.5, 0.75])
    assert res["loss"]["path"]["ci"][1] <= 1e-9
    assert res["loss"]["per_sample"]["ci"][1] < 0
    assert res["weight_norm"]["per_sample"] is None


def test_peak_coincidence_measures_distance_between_argmax():
    res = robustpath.peak_coincidence(_study(robust_peak=0.25, eig_peak=0.625)["path"])
    assert res["distance"]["estimate"] == pytest.approx(0.375)
    assert res["robust_loss"]["estimate"] == pytest.approx(0.25) and res["interior"] == 1.0


def test_along_path_correlation_is_high_for_any_two_single_peaked_curves():
    """The reason it is only a description: t^2(1-t) and t(1-t)^2-shaped curves that
    share nothing but one bump correlate strongly."""
    t = np.linspace(0, 1, 21)
    path = pd.DataFrame(dict(t=np.tile(t, 3), seed=np.repeat([0, 1, 2], 21),
                             robust_loss=np.tile(np.sin(np.pi * t), 3),
                             top_eig=np.tile(np.sin(np.pi * t) ** 3 + 0.1 * t, 3)))
    assert robustpath.along_path_correlation(path)["estimate"] > 0.9


def test_bound_share_groups_inputs():
    df = pd.DataFrame(dict(t=[0, 1, 0, 1], norm="linf", eps=0.1, input=[0, 0, 1, 1],
                           robust_loss=[1.0, 1.0, 1.0, 3.0], bound=[2.0, 2.0, 2.0, 2.0]))
    res = robustpath.bound_share(df, "linf", 0.1, n_boot=50)
    # input 1 breaks the bound at t=1, so it fails as a unit: 1 of 2 inputs
    assert res["estimate"] == pytest.approx(0.5) and res["n"] == 2
    assert "exact binomial" in res["method"]
    df["robust_loss"] = 1.0  # all inputs hold: the exact interval does not collapse to [1, 1]
    res = robustpath.bound_share(df, "linf", 0.1)
    assert res["estimate"] == 1.0 and res["ci"][0] == pytest.approx(0.158, abs=1e-3)
    with pytest.raises(ParameterError):
        robustpath.bound_share(df, "l2")


def test_bad_arguments():
    a = _tiny()
    curve = CurveModel(a, a, _tiny(seed=1))
    data = _data(6)
    with pytest.raises(ParameterError, match="ts"):
        robustpath.profile_curve(curve, [0.0, 1.0], data.x, data.y, eps=0.1)
    with pytest.raises(ParameterError, match="path_size"):
        robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.1, path_size=99)
    with pytest.raises(ParameterError, match="paper_batch"):
        robustpath.profile_curve(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.1,
                                 path_size=4, paper_batch=5)
    with pytest.raises(ParameterError, match="thresholds"):
        robustpath.claims(_study(n=20), [0.5], eps=0.1, thresholds={"barrier": 0.1})


def test_interval_text():
    iv = {"estimate": 0.5, "ci": [0.25, float("nan")], "n": 3}
    assert robustpath.interval_text(iv, 2) == "0.50 [0.25, n/a]"
    assert robustpath.interval_text({0.5: iv, 1.0: None}, 1, label="t=") == \
        "t=0.5: 0.5 [0.2, n/a]; t=1: n/a"


def test_bad_parameter_fails_fast():
    scope = {**robustpath.PARAMETERS.defaults(), "num_ts": 1, "bound_eps_l2": [-0.1]}
    with pytest.raises(ParameterError, match="num_ts.*\n.*bound_eps_l2|bound_eps_l2.*\n.*num_ts"):
        robustpath.PARAMETERS.validate(scope)


def test_schema_cross_checks_name_every_problem():
    defaults = robustpath.PARAMETERS.defaults()
    ok = {**defaults, "num_ts": 5, "sample_ts": [0.25, 0.5], "eval_size": 60, "path_size": 40,
          "paper_batch": 20}
    assert robustpath.PARAMETERS.validate(ok)["num_ts"] == 5
    bad = {**ok, "sample_ts": [0.3], "path_size": 80, "paper_batch": 100}
    with pytest.raises(ParameterError, match="(?s)sample_ts.*path_size.*paper_batch"):
        robustpath.PARAMETERS.validate(bad)
    with pytest.raises(ParameterError, match="paper_batch=30 must be <= path_size=20"):
        robustpath.PARAMETERS.validate({**ok, "path_size": 20, "paper_batch": 30})


def test_parameters_none_only_where_nullable():
    defaults = robustpath.PARAMETERS.defaults()
    for name in ("train_subset", "adv_step_size", "adv_subset", "curve_subset"):
        robustpath.PARAMETERS.validate({**defaults, name: None})
    with pytest.raises(ParameterError, match="paper_batch=None is not allowed"):
        robustpath.PARAMETERS.validate({**defaults, "paper_batch": None})


# ------------------------------------------------------------- the chapter's run, tiny
TINY = dict(dataset="digits", model="mlp", num_epochs=1, batch_size=32, train_subset=200,
            seeds=[0, 1], adv_steps=1, adv_subset=200, curve_subset=200,
            num_ts=3, sample_ts=[0.5], eval_size=20, path_size=10, attack_steps=2,
            paper_batch=5, bound_eps_l2=[0.5], shared_init_seeds=[0], bn_size=50, n_boot=50,
            curve_budgets=[2, 4, 8], variant_seeds=[0], robust_path_seeds=[0],
            robust_path_steps=2)


class _Recorder(report.ChapterReport):
    """A chapter report that keeps what it glues."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.glued: dict = {}

    def record(self, name, value, digits=4):
        self.glued[name] = super().record(name, value, digits)
        return self.glued[name]


def test_chapter_run_and_findings_at_tiny_size():
    params = robustpath.PARAMETERS.validate({**robustpath.PARAMETERS.defaults(), **TINY})
    eval_set, curve_train, ts = robustpath.load_data(params)
    assert len(eval_set) == 20 and len(curve_train) == 200 and ts == [0.0, 0.5, 1.0]
    again, _, _ = robustpath.load_data(params)
    assert torch.equal(again.x, eval_set.x)  # the evaluation images are a function of seed
    regular, reg_info = robustpath.regular_end(params)
    robust, rob_info = robustpath.robust_end(params)
    assert reg_info["config"]["adversarial"] is None
    assert rob_info["config"]["penalty"] == params["adv_penalty"]  # the official end
    assert rob_info["config"]["eps"] == params["adv_eps"]
    assert rob_info["config"]["seed"] == params["robust_seed"]
    _, pgd_info = robustpath.robust_end(params, protocol="pgd")
    assert pgd_info["config"]["adversarial"]["steps"] == params["adv_steps"]
    study = robustpath.run_path_study(params, regular, robust, curve_train, eval_set, ts)
    path, samples = study["path"], study["samples"]
    assert sorted(path["seed"].unique()) == [0, 1] and "paper_eig" in path
    assert set(study["bound"]["norm"]) == {"linf", "l2"}
    shared = robustpath.shared_init_study(params, regular, curve_train, eval_set, ts)
    assert shared is not None and list(shared["path"]["seed"].unique()) == [0]
    assert "paper_eig" not in shared["path"]
    assert robustpath.shared_init_study({**params, "shared_init_seeds": []}, regular,
                                        curve_train, eval_set, ts) is None
    barriers = robustpath.barrier_summary(path, samples, n_boot=50)
    assert barriers["standard"] == robustpath.barrier_interval(path, "loss", relative=True)
    assert len(barriers["robust_ends"]) == 2
    correlations = robustpath.per_image_correlations(samples, [0.5], n_boot=50)
    assert list(correlations) == ["top_eig", "loss", "grad_norm"]
    assert list(correlations["loss"]) == [0.5]
    bound_rows = robustpath.bound_shares(study["bound"], n_boot=50)
    assert list(bound_rows) == ["linf, eps=0.1", "l2, eps=0.5"]
    from mcutils.chapters import ch06_budget

    budget = ch06_budget.run_budget_study(params, regular, robust, curve_train, eval_set, ts,
                                          path=path)
    for name in ("robust", "robust_error", "standard"):
        assert sorted(budget[name]) == [2, 4, 8]
    # the main study's curves are the budget curve's largest point (its path is reused)
    assert budget["robust"][8] == robustpath.barrier_interval(path, "robust_loss",
                                                              relative=True)
    assert set(budget["paths"]["budget"]) == {2, 4, 8}
    variant = robustpath.variant_study(params, regular, curve_train, eval_set, ts)
    assert sorted(variant["barriers"]) == [2, 4, 8]
    assert len(variant["barriers"][8]["robust"]) == 1
    trained = robustpath.robust_trained_study(params, regular, robust, curve_train, eval_set, ts)
    assert list(trained["path"]["seed"].unique()) == [0]
    assert robustpath.variant_study({**params, "variant_seeds": []}, regular, curve_train,
                                    eval_set, ts) is None
    chapter = _Recorder("06", params=params, expected=robustpath.EXPECTED, check=False)
    robustpath.findings(
        chapter, params, study=study, shared=shared, barriers=barriers,
        correlations=correlations,
        controls=robustpath.control_comparison(samples, path, [0.5]),
        peak=robustpath.peak_coincidence(path),
        along={m: robustpath.along_path_correlation(path, method=m) for m in ("pearson", "diff")},
        paper_r=robustpath.along_path_correlation(path, b="paper_eig"), bound_rows=bound_rows,
        budget=budget, variant=variant, robust_trained=trained)
    assert list(chapter.claims) == list(robustpath.CLAIMS)
    barrier = chapter.claims["robust_barrier"]
    assert barrier["budget"] == 8 and barrier["ci"] == budget["robust"][8]["ci"]
    assert chapter.claims["robust_error_barrier"]["budget"] == 8
    assert chapter.glued["ch06_robust_barrier_settled"] in ("has settled", "is still moving")
    assert {str(k) for k in chapter.glued["ch06_barrier_vs_steps"]} == {"2", "4", "8"}
    assert chapter.glued["ch06_curve_steps"] == 8
    assert "8 steps: " in chapter.glued["ch06_variant_text"]
    assert "Reproduced" in chapter.summary_text or "Not reproduced" in chapter.summary_text
    for cid in robustpath.CLAIMS:
        assert chapter.glued[f"ch06_verdict_{cid}"] == chapter.claims[cid]["verdict"]
    assert chapter.glued["ch06_num_seeds"] == 2 and chapter.glued["ch06_eps"] == 0.1
    assert chapter.glued["ch06_shared_init_text"].count(",") == 0  # one seed
    assert chapter.glued["ch06_bound_share_text"].startswith("linf, eps=0.1: ")


def test_claim_statements_are_filled_from_the_data():
    out = robustpath.claims(_study(), [0.25, 0.5, 0.75], eps=0.1, n_boot=50)
    assert [c["claim_id"] for c in out] == list(robustpath.CLAIMS)
    for c in out:
        assert "{" not in c["statement"] and c["paper"] == robustpath.CLAIMS[c["claim_id"]]["paper"]
    bound = next(c for c in out if c["claim_id"] == "second_order_bound")
    assert "eps=0.1;" in bound["statement"]


def test_figures_and_path_means():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = _study(n=20)
    path = study["path"].assign(paper_eig=lambda d: d["top_eig"] / 10)
    means = figures.path_means(path)
    assert list(means.index) == TS and means.loc[0.0, "weight_norm"] == pytest.approx(10.01)
    assert list(figures.path_means(path, ("loss",), digits=1).columns) == ["loss"]
    fig = figures.plot_path_profiles(path)
    assert len(fig.axes) == 4 and fig.axes[3].get_yscale() == "log"
    plt.close(fig)
    fig = figures.plot_per_image_scatter(study["samples"], t=0.5, seed=1)
    assert len(fig.axes[0].collections[0].get_offsets()) == 20
    assert fig.axes[0].get_title() == "one image per dot, t = 0.5, seed 1"
    plt.close(fig)
    fig = figures.plot_hessian_quantities(path)
    assert [a.get_yscale() for a in fig.axes] == ["log", "log"]
    plt.close(fig)


def test_accuracy_interval_is_exact_over_inputs_and_worst_case_over_restarts():
    rows = []
    for s in (0, 1, 2):  # input i resists seed s's attack unless i < s
        rows += [dict(t=1.0, input=i, seed=s, robust_correct=i >= s) for i in range(40)]
    res = robustpath.accuracy_interval(pd.DataFrame(rows), 1.0)
    assert res["n"] == 40 and res["estimate"] == pytest.approx(38 / 40)
    assert res["per_seed"] == pytest.approx([1.0, 39 / 40, 38 / 40])
    rows = [dict(t=1.0, input=i, seed=0, robust_correct=True) for i in range(40)]
    res = robustpath.accuracy_interval(pd.DataFrame(rows), 1.0)
    assert res["ci"] == pytest.approx([0.912, 1.0], abs=1e-3)  # exact, never [1, 1]


def test_along_path_and_peak_intervals_stay_in_range():
    t = np.linspace(0, 1, 9)
    rng = np.random.default_rng(0)
    path = pd.DataFrame(dict(t=np.tile(t, 3), seed=np.repeat([0, 1, 2], 9),
                             robust_loss=np.tile(np.sin(np.pi * t), 3),
                             top_eig=np.concatenate([np.sin(np.pi * t) + a * rng.normal(size=9)
                                                     for a in (0.01, 0.3, 1.0)])))
    r = robustpath.along_path_correlation(path)
    assert -1 <= r["ci"][0] <= r["estimate"] <= r["ci"][1] <= 1 and len(r["per_seed"]) == 3
    peak = robustpath.peak_coincidence(_study(robust_peak=0.25, eig_peak=0.625)["path"])
    for key in ("robust_loss", "top_eig", "distance"):
        assert 0 <= peak[key]["ci"][0] and peak[key]["ci"][1] <= 1


def test_planted_barrier_path_fails_the_no_barrier_check():
    """The negative control of ``standard_no_barrier``: the same check on a path with a
    known barrier is not reproduced; on a flat path it is."""
    path = robustpath.planted_barrier_path(9)
    res = robustpath.barrier_interval(path, "loss", relative=True)
    assert res["n"] == 3 and res["ci"][0] > 10  # the bump rises many times above the ends
    assert report.verdict(res["ci"], robustpath.THRESHOLDS["standard_tol"], "<=") \
        == "not reproduced"
    flat = path.assign(loss=1.0 + 0.001 * path["t"] * path["seed"])
    res = robustpath.barrier_interval(flat, "loss", relative=True)
    assert report.verdict(res["ci"], robustpath.THRESHOLDS["standard_tol"], "<=") == "reproduced"


def test_shuffled_eigenvalues_fail_the_per_sample_correlation_check():
    study = _study()
    good = robustpath.per_sample_correlation(study["samples"], [0.5], n_boot=200)
    assert report.verdict(good["ci"], 0.5, ">=") == "reproduced"
    shuffled = robustpath.shuffled_samples(study["samples"], "top_eig", seed=0)
    assert sorted(shuffled["top_eig"]) == sorted(study["samples"]["top_eig"])
    res = robustpath.per_sample_correlation(shuffled, [0.5], n_boot=200)
    assert report.verdict(res["ci"], 0.5, ">=") == "not reproduced"


def test_every_asserted_claim_has_a_control_that_is_not_reproduced():
    out = {c["claim_id"]: c for c in robustpath.claims(_study(), [0.25, 0.5, 0.75], eps=0.1,
                                                       n_boot=200)}
    for cid in robustpath.EXPECTED:
        c = out[cid]
        assert report.verdict(c["result"]["ci"], c["threshold"], c["direction"]) == "reproduced"
        ctrl = c["control"]["result"]
        assert report.verdict(ctrl["ci"], c["threshold"], c["direction"]) == "not reproduced"
    for c in out.values():
        assert c["method"] != "not stated"
    assert out["robust_barrier"]["direction"] == ">"  # an effect: strict


def test_deviation_rows_are_filled_from_the_parameters():
    params = robustpath.PARAMETERS.defaults()
    rows = ch06_deviations.deviation_rows(params)
    assert len(rows) == len(robustpath.DEVIATIONS) >= 1
    for row in rows:
        assert all(row[k].strip() for k in ("setting", "paper", "source", "ours", "effect"))
        assert "{" not in row["ours"]
    curve = next(r for r in rows if r["setting"].startswith("curve training"))
    assert str(max(params["curve_budgets"])) in curve["ours"] and "train.py:" in curve["source"]
    end = next(r for r in rows if r["setting"] == "robust end's training")
    assert "train_robust_connection.py:" in end["source"] and "utils.py:158" in end["source"]


def test_budget_curve_rejects_bad_budgets_and_single_seeds():
    from mcutils.chapters import ch06_budget

    a, b, data = _tiny(), _tiny(seed=1), _data()
    kw = dict(x=data.x[:4], y=data.y[:4], ts=[0.0, 0.5, 1.0], eps=0.1)
    with pytest.raises(ParameterError, match="budgets"):
        ch06_budget.barrier_vs_budget(a, b, data, seeds=[0, 1], budgets=[2, 4], **kw)
    with pytest.raises(ParameterError, match="seeds"):
        ch06_budget.barrier_vs_budget(a, b, data, seeds=[0], budgets=[1, 2, 4], **kw)
    with pytest.raises(ParameterError, match="ts"):
        ch06_budget.barrier_vs_budget(a, b, data, seeds=[0, 1], budgets=[1, 2, 4],
                                      **{**kw, "ts": [0.2, 0.5, 1.0]})
    defaults = robustpath.PARAMETERS.defaults()
    with pytest.raises(ParameterError, match="4x the smallest"):
        robustpath.PARAMETERS.validate({**defaults, "curve_budgets": [300, 600, 900]})
    with pytest.raises(ParameterError, match="at most half"):
        robustpath.PARAMETERS.validate({**defaults, "curve_budgets": [750, 2000, 3000]})
    with pytest.raises(ParameterError, match="needs at least 2"):
        robustpath.PARAMETERS.validate({**defaults, "seeds": [0]})


def test_robust_path_rises_with_the_attack():
    from mcutils.chapters import ch06_budget
    from mcutils.curves import CurveModel

    a, b, data = _tiny(), _tiny(seed=1), _data()
    curve = CurveModel(a, a, b)
    rows = ch06_budget.robust_path(curve, [0.0, 0.5, 1.0], data.x, data.y, eps=0.2,
                                   attack_steps=3)
    assert list(rows["t"]) == [0.0, 0.5, 1.0]
    assert (rows["robust_loss"] >= rows["loss"] - 1e-6).all()  # PGD never lowers the loss
    assert ((rows["robust_error"] >= 0) & (rows["robust_error"] <= 1)).all()
    assert set(rows) >= {"error", "robust_error"}



def test_the_regular_end_is_chapter_00_s_model_unless_sgd_is_asked_for(monkeypatch):
    """Default settings reach zoo.trained_model as chapter 00's (one checkpoint); sgd
    brings the official train.py settings, to the regular end and the PGD variant end."""
    from mcutils import zoo
    from mcutils.chapters import ch06_ends

    calls = []
    monkeypatch.setattr(zoo, "trained_model", lambda **kw: calls.append(kw) or (None, {}))
    params = robustpath.PARAMETERS.defaults()
    ch06_ends.regular_end(params)
    assert calls[-1]["optimizer"] == "adam" and calls[-1]["schedule"] is None
    assert calls[-1]["weight_decay"] == 0.0 and calls[-1]["augment"] is False
    sgd = dict(params, regular_optimizer="sgd", regular_weight_decay=5e-4,
               regular_augment=True, lr=0.05)
    for fn in (ch06_ends.regular_end, ch06_ends.pgd_robust_end):
        fn(sgd)
        assert (calls[-1]["optimizer"], calls[-1]["schedule"]) == ("sgd", "paper")
        assert calls[-1]["weight_decay"] == 5e-4 and calls[-1]["augment"] is True
    row = next(r for r in ch06_deviations.deviation_rows(sgd)
               if r["setting"] == "regular end's training")
    assert "SGD" in row["ours"] and "random crops" in row["ours"] and "0.0005" in row["ours"]
    row = next(r for r in ch06_deviations.deviation_rows(params)
               if r["setting"] == "regular end's training")
    assert row["ours"].startswith("Adam") and "no augmentation" in row["ours"]
