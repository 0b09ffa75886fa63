"""Chapter 06's claims and findings: what the chapter asserts, its controls, and what it
glues.

* :data:`THRESHOLDS`, :data:`CLAIMS` and :data:`CONTROL_STATEMENTS`: the claims' thresholds,
  statements and negative controls, fixed before any run;
* :func:`claims` assembles them from the study's tables (intervals, thresholds,
  directions, methods, controls, and the budget curve of the barrier claims);
* :func:`straightened_path`: a path table without a barrier by construction (the
  barrier claims' control);
* :func:`findings` records what the chapter glues, its claims, its deviations and its
  summary.

Used by chapter 06 (through :mod:`mcutils.chapters.ch06_robust_path`, which re-exports
them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mcutils.chapters.ch06_deviations import deviations
from mcutils.chapters.ch06_path_stats import (
    accuracy_interval,
    along_path_correlation,
    barrier_heights,
    barrier_interval,
    bound_share,
    control_comparison,
    interval_text,
    peak_coincidence,
    per_sample_correlation,
    planted_barrier_path,
    shuffled_samples,
)
from mcutils.core.checks import ParameterError
from mcutils.core.report import ChapterReport

__all__ = ["CLAIMS", "CONTROL_STATEMENTS", "THRESHOLDS", "claims", "findings",
           "straightened_path"]


def straightened_path(path: pd.DataFrame, column: str) -> pd.DataFrame:
    """``path`` with ``column`` replaced, per seed, by the straight line in ``t`` between
    its two end values: a path with no barrier by construction (every inner value lies
    strictly below the worse end when the ends differ)."""
    out = path.copy()
    groups = out.groupby("seed").groups.items() if "seed" in out else [(0, out.index)]
    for _, idx in groups:
        g = out.loc[idx].sort_values("t")
        t = g["t"].to_numpy(float)
        v0, v1 = g[column].iloc[0], g[column].iloc[-1]
        out.loc[g.index, column] = v0 + (v1 - v0) * (t - t[0]) / (t[-1] - t[0])
    return out


THRESHOLDS = {
    "standard_tol": 0.1,
    "robust_accuracy": 0.5,
    "barrier_margin": 0.1,
    "error_margin": 0.0,
    "correlation": 0.5,
    "bound_share": 0.95,
    "along_path": 0.5,
}
"""The chapter's claim thresholds, fixed before any run: a standard-loss "barrier" of at
most 10% of the worse end counts as none; the robust end must keep half of its inputs
under attack; a robustness-loss barrier must rise at least 10% above the worse end, a
robust-error barrier above the worse end's error at all (it is bounded by 1); a
"high" correlation is at least 0.5; the bound must hold on 95% of inputs. The peak
tolerance is one step of the grid (set by :func:`claims`)."""



CLAIMS: dict[str, dict[str, str]] = {
    "standard_no_barrier": {
        "statement": ("precondition: no standard-loss barrier on the path (largest clean test "
                      "loss inside the path minus the worse end, relative to it; t-interval "
                      "over seeds)"),
        "paper": "no standard-loss barrier on any of its paths (Fig. 4, CIFAR-10 VGG)",
    },
    "robust_end": {
        "statement": ("the adversarially trained end is robust: its PGD robust accuracy "
                      "(share of test inputs that resist the attack of every seed)"),
        "paper": "robust end: PGD adversarial training (the paper's setup)",
    },
    "robust_barrier": {
        "statement": ("a robustness-loss barrier: the largest PGD loss inside the path "
                      "exceeds the worse end by more than a margin (relative to it; "
                      "t-interval over seeds)"),
        "paper": "robustness-loss barrier between regular and robust models (Fig. 4)",
    },
    "robust_error_barrier": {
        "statement": ("a robust-error barrier: the largest PGD error inside the path exceeds "
                      "the worse end's (points of error; t-interval over seeds)"),
        "paper": "robust error along the path between regular and robust models (Fig. 4)",
    },
    "per_sample_correlation": {
        "statement": ("per input at fixed t, the robustness loss rises with the top "
                      "input-Hessian eigenvalue (Spearman, mean over the sampled t and seeds; "
                      "bootstrap over inputs)"),
        "paper": "high correlation along the path (PCC, Fig. 4); per input: not tested there",
    },
    "beats_controls_path": {
        "statement": ("along the path the eigenvalue tracks the robustness loss better than "
                      "every control sharing the path's trend (weakest margin: {worst}; "
                      "r(eigenvalue) - |r(control)|, t-interval over seeds)"),
        "paper": "not tested in the paper (it reports the eigenvalue's PCC only)",
    },
    "beats_controls_per_input": {
        "statement": ("per input the eigenvalue ranks robustness losses better than the clean "
                      "loss and the input-gradient norm (weakest margin: {worst_image}; "
                      "rho(eigenvalue) - |rho(control)|, t-interval over seeds)"),
        "paper": "not tested in the paper",
    },
    "peak_coincidence": {
        "statement": ("the robustness loss and the eigenvalue peak at the same t (|difference "
                      "of the argmax t|; t-interval over seeds)"),
        "paper": "the eigenvalue follows the robustness-loss barrier (Fig. 4)",
    },
    "along_path_pcc": {
        "statement": ("description, not a test: Pearson r of robustness loss and mean top "
                      "eigenvalue over the points of the path (mean over seeds)"),
        "paper": "PCC in the titles of Fig. 4 (CIFAR-10 VGG)",
    },
    "second_order_bound": {
        "statement": ("the paper's second-order bound holds on the PGD robustness loss (L-inf "
                      "ball, eps={eps:g}; share of inputs within it at every point)"),
        "paper": ("second-order bound of the robustness loss by the top eigenvalue (its "
                  "theoretical justification)"),
    },
}
"""The chapter's claims in the order of its table: each one's statement (a template
filled by :func:`claims` with the weakest controls and the radius) and what the paper
says."""

CONTROL_STATEMENTS = {
    "robust_barrier": ("the same barrier check on paths without a barrier by construction "
                       "(each curve's interior replaced by the straight line between its end "
                       "values)"),
    "robust_error_barrier": ("the same check on paths without a barrier by construction "
                             "(the interior replaced by the straight line between the ends)"),
    "standard_no_barrier": ("the same barrier check on a path with a known barrier (the "
                            "planted bump of mcutils.planted.bump_pairs, one segment per pair)"),
    "robust_end": "the same attack on the regular end (t = 0), which had no adversarial training",
    "per_sample_correlation": ("the same correlation with the eigenvalues shuffled across "
                               "inputs (within each seed and t)"),
}
"""The negative control of each asserted claim: the same check on data where the claim is
false by construction (computed by :func:`claims`)."""


def claims(study: Mapping[str, pd.DataFrame], sample_ts: Sequence[float], eps: float,
           thresholds: Mapping[str, float] | None = None, n_boot: int = 2000,
           seed: int = 0, budget: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None
           ) -> list[dict[str, Any]]:
    """The chapter's claims, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    Args:
        study: :func:`path_study`'s tables.
        sample_ts: the ``t`` of the per-input correlations.
        eps: the attack radius (for the bound rows).
        thresholds: overrides of :data:`THRESHOLDS` (``standard_tol``,
            ``robust_accuracy``, ``barrier_margin``, ``correlation``, ``bound_share``,
            ``along_path``) and ``peak_distance`` (default: the largest step of the grid).
        n_boot, seed: bootstrap settings.
        budget: :func:`mcutils.chapters.ch06_budget.barrier_vs_budget`'s barriers by
            budget (``"robust"``, ``"robust_error"``): the two barrier claims are then
            read at the largest budget, and are inconclusive while the statistic still
            moves (``budgets=`` of the claim).

    Returns:
        A list of dicts with ``claim_id, statement, paper, result, threshold, direction,
        method`` (and ``budgets`` for the barrier when ``budget`` is given), in the order of :data:`CLAIMS`, and ``control`` for the claims of
        :data:`CONTROL_STATEMENTS` (their negative controls: a planted barrier, paths
        straightened between their ends, the regular end's robust accuracy, eigenvalues
        shuffled across inputs).
    """
    samples, path, bound = study["samples"], study["path"], study["bound"]
    grid = np.unique(path["t"].to_numpy(float))
    th = {**THRESHOLDS, "peak_distance": float(np.diff(grid).max()), **(thresholds or {})}
    unknown = set(th) - set(THRESHOLDS) - {"peak_distance"}
    if unknown:
        raise ParameterError(f"unknown thresholds {sorted(unknown)}; valid: "
                             f"{sorted([*THRESHOLDS, 'peak_distance'])}")
    controls = control_comparison(samples, path, sample_ts)
    worst = min(controls, key=lambda c: controls[c]["path"]["estimate"])
    per_image = {c: v["per_sample"] for c, v in controls.items() if v["per_sample"] is not None}
    worst_image = min(per_image, key=lambda c: per_image[c]["estimate"])
    peak = peak_coincidence(path)
    corr_method = (f"percentile bootstrap over {{n}} inputs ({n_boot} resamples), resampled "
                   "jointly across seeds and t")
    per_sample = per_sample_correlation(samples, sample_ts, n_boot=n_boot, seed=seed)
    error_path = path.assign(robust_error=1 - path["robust_accuracy"])
    control_results = {
        "robust_barrier": barrier_interval(straightened_path(path, "robust_loss"),
                                           "robust_loss", relative=True),
        "robust_error_barrier": barrier_interval(straightened_path(error_path, "robust_error"),
                                                 "robust_error"),
        "standard_no_barrier": barrier_interval(planted_barrier_path(len(grid)), "loss",
                                                relative=True),
        "robust_end": accuracy_interval(samples, 0.0),
        "per_sample_correlation": per_sample_correlation(
            shuffled_samples(samples, "top_eig", seed=seed), sample_ts, n_boot=n_boot,
            seed=seed),
    }
    for cid in ("per_sample_correlation",):
        for res in (per_sample, control_results[cid]):
            res["method"] = corr_method.format(n=res["n"])
    tests = {  # claim id -> (interval, threshold, direction)
        "standard_no_barrier": (barrier_interval(path, "loss", relative=True),
                                th["standard_tol"], "<="),
        "robust_end": (accuracy_interval(samples, 1.0, n_boot=n_boot, seed=seed),
                       th["robust_accuracy"], ">="),
        "robust_barrier": (barrier_interval(path, "robust_loss", relative=True),
                           th["barrier_margin"], ">"),
        "robust_error_barrier": (barrier_interval(error_path, "robust_error"),
                                 th["error_margin"], ">"),
        "per_sample_correlation": (per_sample, th["correlation"], ">="),
        "beats_controls_path": (controls[worst]["path"], 0.0, ">"),
        "beats_controls_per_input": (per_image[worst_image], 0.0, ">"),
        "peak_coincidence": (peak["distance"], th["peak_distance"], "<="),
        "along_path_pcc": (along_path_correlation(path), th["along_path"], ">="),
        "second_order_bound": (bound_share(bound, "linf", eps, n_boot=n_boot, seed=seed),
                               th["bound_share"], ">="),
    }
    out = []
    for cid, text in CLAIMS.items():
        res = tests[cid][0]
        row = {"claim_id": cid,
               "statement": text["statement"].format(worst=worst, worst_image=worst_image,
                                                     eps=eps),
               "paper": text["paper"], "result": res, "threshold": tests[cid][1],
               "direction": tests[cid][2], "method": res.get("method", "not stated")}
        if cid in CONTROL_STATEMENTS:
            row["control"] = {"statement": CONTROL_STATEMENTS[cid],
                              "result": control_results[cid]}
        key = {"robust_barrier": "robust", "robust_error_barrier": "robust_error"}.get(cid)
        if key is not None and budget is not None:
            curve = budget[key]
            largest = max(curve)
            row.update(result=curve[largest], budgets=dict(curve),
                       method=curve[largest].get("method", "not stated")
                       + f"; read at {largest} curve steps, the largest of the budget curve")
            row["statement"] += f" (curves of {largest} steps)"
        out.append(row)
    return out



def _per_seed_text(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.2f}" for v in values)


GPU_NOTE = ("The gpu profile runs the paper's setting: CIFAR-10 with VGG-16, the regular end "
            "trained as the official train.py does (SGD, lr 0.05, weight decay 5e-4, 200 "
            "epochs, crops and flips), the robust one for 60 epochs with the official 1-step "
            "PGD and gradient penalty, "
            "curves of up to 6,000 steps on five seeds, 31 points along the path, the curves "
            "trained on the robust loss and the shared-initialisation comparison.")
"""What the gpu profile changes, for the chapter's summary."""


def findings(chapter: ChapterReport, params: Mapping[str, Any], *,
             study: Mapping[str, pd.DataFrame], shared: Mapping[str, pd.DataFrame] | None,
             barriers: Mapping[str, Any], correlations: Mapping[str, Any],
             controls: Mapping[str, Mapping[str, Any]], peak: Mapping[str, Any],
             along: Mapping[str, Any], paper_r: Mapping[str, Any],
             bound_rows: Mapping[str, Any], budget: Mapping[str, Any],
             variant: Mapping[str, Any] | None = None,
             robust_trained: Mapping[str, Any] | None = None) -> None:
    """Record chapter 06's glued numbers, its claims (:func:`claims`) with their verdicts,
    its deviations and its summary.

    Args:
        chapter: the chapter's report.
        params: the validated parameters.
        study, shared: the main study's and the shared-initialisation study's tables.
        barriers: :func:`mcutils.chapters.ch06_path_stats.barrier_summary`.
        correlations: :func:`mcutils.chapters.ch06_path_stats.per_image_correlations`.
        controls: :func:`mcutils.chapters.ch06_path_stats.control_comparison`.
        peak: :func:`mcutils.chapters.ch06_path_stats.peak_coincidence`.
        along: :func:`mcutils.chapters.ch06_path_stats.along_path_correlation` by method
            (``"pearson"``, ``"diff"``).
        paper_r: the along-path correlation with the paper's quantity.
        bound_rows: :func:`mcutils.chapters.ch06_path_stats.bound_shares`.
        budget: :func:`mcutils.chapters.ch06_budget.run_budget_study` (the barrier claims
            are read at its largest budget).
        variant: :func:`mcutils.chapters.ch06_parts.variant_study` (or None).
        robust_trained: :func:`mcutils.chapters.ch06_parts.robust_trained_study` (or None).
    """
    p, path, text = params, study["path"], interval_text
    largest = max(budget["robust"])
    for name, key in (("eps", "adv_eps"), ("attack_steps", "attack_steps")):
        chapter.record(f"ch06_{name}", p[key])
    chapter.record("ch06_num_seeds", len(p["seeds"]))
    for key in ("num_ts", "sample_ts", "eval_size", "path_size", "paper_batch", "adv_penalty",
                "adv_protocol", "adv_steps"):
        chapter.record(f"ch06_{key}", p[key])
    for key in ("variant_seeds", "robust_path_seeds"):
        chapter.record(f"ch06_{key}", ", ".join(str(s) for s in p[key]) or "none")
    chapter.record("ch06_curve_steps", largest)
    chapter.record("ch06_curve_wd", p["curve_weight_decay"], digits=None)
    chapter.record("ch06_robust_seed", p["robust_seed"])
    chapter.record("ch06_bound_eps_l2", p["bound_eps_l2"])
    chapter.record("ch06_standard_tol", THRESHOLDS["standard_tol"])
    chapter.record("ch06_barrier_margin", THRESHOLDS["barrier_margin"])
    chapter.record("ch06_standard_barrier", barriers["standard"])
    chapter.record("ch06_robust_barrier", barriers["robust"])
    chapter.record("ch06_robust_barrier_nats", barriers["robust_nats"])
    ends = barriers["robust_ends"]
    chapter.record("ch06_robust_accuracy_ends", [r["estimate"] for r in ends])
    chapter.record("ch06_robust_accuracy_ends_ci", [r["ci"] for r in ends])
    rivals = {c: correlations[c] for c in ("loss", "grad_norm")}
    chapter.record("ch06_r_per_sample", correlations["top_eig"])
    chapter.record("ch06_r_per_sample_controls", rivals)
    chapter.record("ch06_controls", {c: {"path": v["path"], "per_sample": v["per_sample"]}
                                     for c, v in controls.items()})
    chapter.record("ch06_peak_t", {k: peak[k] for k in ("robust_loss", "top_eig", "distance")})
    chapter.record("ch06_peak_interior", peak["interior"])
    chapter.record("ch06_along_path_r", along["pearson"])
    chapter.record("ch06_along_path_r_diff", along["diff"])
    chapter.record("ch06_paper_eig_r", paper_r)
    chapter.record("ch06_paper_iterations",
                   ", ".join(str(int(i)) for i in sorted(path["paper_iterations"].unique())))
    chapter.record("ch06_bound_share", bound_rows)
    chapter.record("ch06_standard_barrier_text", text(barriers["standard"]))
    chapter.record("ch06_robust_barrier_text", text(barriers["robust"]))
    chapter.record("ch06_robust_barrier_nats_text", text(barriers["robust_nats"]))
    chapter.record("ch06_robust_accuracy_ends_text",
                   f"{text(ends[0])} at the regular end and {text(ends[1])} at the robust end")
    chapter.record("ch06_r_per_sample_text", text(correlations["top_eig"], label="t="))
    chapter.record("ch06_r_loss_text", text(rivals["loss"], label="t="))
    chapter.record("ch06_r_grad_text", text(rivals["grad_norm"], label="t="))
    chapter.record("ch06_controls_path_text", text({c: v["path"] for c, v in controls.items()}))
    chapter.record("ch06_controls_sample_text", text({c: v["per_sample"]
                                                      for c, v in controls.items()
                                                      if v["per_sample"] is not None}))
    chapter.record("ch06_peak_text", f"t = {text(peak['robust_loss'], 2)} for the robustness "
                   f"loss and t = {text(peak['top_eig'], 2)} for the eigenvalue (distance "
                   f"{text(peak['distance'], 2)})")
    chapter.record("ch06_peak_interior_text", f"{peak['interior']:.0%}")
    chapter.record("ch06_along_path_text", text(along["pearson"]))
    chapter.record("ch06_along_path_diff_text", text(along["diff"]))
    chapter.record("ch06_paper_eig_r_text", text(paper_r))
    chapter.record("ch06_bound_share_text", text(bound_rows))
    chapter.record("ch06_seed", p["seed"])
    chapter.record("ch06_shared_init_text", "skipped in this profile" if shared is None else
                   _per_seed_text(barrier_heights(shared["path"], "robust_loss", relative=True)))
    chapter.record("ch06_independent_barrier_text",
                   _per_seed_text(barrier_heights(path, "robust_loss", relative=True)))
    # the budget curve
    chapter.record("ch06_barrier_vs_steps", budget["robust"])
    chapter.record("ch06_error_barrier_vs_steps", budget["robust_error"])
    chapter.record("ch06_standard_barrier_vs_steps", budget["standard"])
    chapter.record("ch06_budget_largest", largest)
    chapter.record("ch06_curve_budgets", ", ".join(str(b) for b in sorted(budget["robust"])))
    chapter.record("ch06_barrier_vs_steps_text",
                   "; ".join(f"{b} steps: {text(v)}" for b, v in sorted(budget["robust"].items())))
    chapter.record("ch06_error_barrier_vs_steps_text",
                   "; ".join(f"{b} steps: {text(v)}"
                             for b, v in sorted(budget["robust_error"].items())))
    if variant is None:
        chapter.record("ch06_variant_text", "skipped in this profile")
    else:
        chapter.record("ch06_variant_text", "; ".join(
            f"{b} steps: {_per_seed_text(v['robust'])} (robust error: "
            f"{_per_seed_text(v['robust_error'])})" for b, v in sorted(variant["barriers"].items())))
        chapter.record("ch06_variant_accuracy", variant["end"]["metrics"]["accuracy"])
    chapter.record("ch06_robust_trained_text", "skipped in this profile (it does not fit the "
                   "cpu budget)" if robust_trained is None else
                   f"{_per_seed_text(robust_trained['barriers']['robust'])} (robust error: "
                   f"{_per_seed_text(robust_trained['barriers']['robust_error'])})")
    for c in claims(study, p["sample_ts"], eps=p["adv_eps"], n_boot=p["n_boot"], seed=p["seed"],
                    budget=budget):
        cid = c.pop("claim_id")
        entry = chapter.claim(cid, **c)
        chapter.record(f"ch06_verdict_{cid}", entry["verdict"])
        if "settled" in entry:
            chapter.record(f"ch06_{cid}_settled",
                           "has settled" if entry["settled"] else "is still moving")
        if "control" in entry:
            chapter.record(f"ch06_control_{cid}_text",
                           f"{text(entry['control'])}, {entry['control']['verdict']}")
    deviations(chapter, p)
    chapter.summary(GPU_NOTE, notes=_notes(budget, correlations, peak, path, variant))


def _mean(v: Mapping[str, Any]) -> float:
    return float(np.mean([float(x["estimate"]) for x in v.values()]))


def _notes(budget: Mapping[str, Any], correlations: Mapping[str, Any],
           peak: Mapping[str, Any], path: pd.DataFrame,
           variant: Mapping[str, Any] | None) -> dict[str, str]:
    """One computed line per claim whose outcome needs a reason."""
    curve = budget["robust"]
    steps = sorted(curve)
    moving = ", ".join(f"{format(float(curve[b]['estimate']), '+.2f')} at {b}" for b in steps)
    notes = {"robust_barrier": f"the relative barrier is {moving} steps"}
    if variant is not None:
        largest = max(variant["barriers"])
        notes["robust_barrier"] += (" (towards the multi-step PGD end: "
                                    f"{_per_seed_text(variant['barriers'][largest]['robust'])})")
    ends = path.sort_values("t").groupby("t")["robust_accuracy"].mean()
    notes["robust_error_barrier"] = (f"the regular end's robust error is already "
                                     f"{1 - ends.iloc[0]:.2f}, so no point can rise far "
                                     "above it")
    notes["per_sample_correlation"] = (
        f"the clean loss ranks the robustness losses with rho {_mean(correlations['loss']):.2f} "
        f"against the eigenvalue's {_mean(correlations['top_eig']):.2f}: both follow the "
        "softmax margin")
    notes["peak_coincidence"] = (
        f"the robustness loss peaks at t = {float(peak['robust_loss']['estimate']):.2f} and "
        f"the eigenvalue at t = {float(peak['top_eig']['estimate']):.2f} (means over seeds)")
    return notes
