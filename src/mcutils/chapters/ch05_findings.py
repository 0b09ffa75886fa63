"""Chapter 05's findings: every number its prose quotes and every claim it tests,
recorded from the results of its sections.

* :func:`findings` records the glued numbers (settings, budget, the sweeps' intervals,
  paired comparisons and their readings) and the claims of
  :data:`mcutils.chapters.ch05_repair.CLAIMS`;
* the deviations table (:data:`mcutils.chapters.ch05_controls.DEVIATIONS`);
* :data:`SWEEP_NUMBERS`, :data:`FAULT_NUMBERS`: which intervals of the backdoor and
  error-injection sweeps the prose quotes; :data:`READINGS`: the sentences chosen by an
  interval (:func:`mcutils.core.stats.interval_word`).

The sections' results come from :mod:`mcutils.chapters.ch05_study`; the notebook calls
:func:`findings` through :mod:`mcutils.chapters.ch05_protocol`. Used by chapter 05.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mcutils.chapters.ch05_controls import deviations
from mcutils.chapters.ch05_repair import (middle_gap, paired_seed_difference, repair_claims,
                                          share_text)
from mcutils.core.report import ChapterReport
from mcutils.core.stats import format_interval, interval_word

__all__ = ["BACKDOOR_CLAIMS", "FAULT_NUMBERS", "GPU_CHANGES", "READINGS", "SWEEP_NUMBERS",
           "findings"]

#: Glue name (after ``ch05_``) -> (method, size, metric) of the backdoor sweep's summary
#: that the prose quotes; the size is ``"small"`` (``claim_small_n``) or ``"large"`` (the
#: largest bonafide size).
SWEEP_NUMBERS: dict[str, tuple[str, str, str]] = {
    "bezier_small_acc": ("bezier", "small", "acc"),
    "bezier_small_asr": ("bezier", "small", "asr"),
    "ft_small_acc": ("fine_tune", "small", "acc"),
    "ft_small_asr": ("fine_tune", "small", "asr"),
    "scratch_small_acc": ("scratch", "small", "acc"),
    "bezier_large_acc": ("bezier", "large", "acc"),
    "bezier_large_asr": ("bezier", "large", "asr"),
    "scratch_large_acc": ("scratch", "large", "acc"),
    "scratch_large_asr": ("scratch", "large", "asr"),
    "mid_large_acc": ("bezier (middle)", "large", "acc"),
    "mid_large_asr": ("bezier (middle)", "large", "asr"),
    "poly_mid_large_acc": ("polychain (middle)", "large", "acc"),
    "poly_mid_large_asr": ("polychain (middle)", "large", "asr"),
}

#: Glue name (after ``ch05_``) -> (method, metric) of the error-injection sweep at its
#: largest size (``"n/a"`` when the method was not run).
FAULT_NUMBERS: dict[str, tuple[str, str]] = {
    "fault_bezier_fs": ("bezier", "fs"),
    "fault_bezier_restored": ("bezier", "restored"),
    "fault_bezier_acc": ("bezier", "acc"),
    "fault_ft_fs": ("fine_tune", "fs"),
    "fault_ft_acc": ("fine_tune", "acc"),
}

#: The words of a paired comparison: whole interval above 0, below 0, or neither.
COMPARISON = ("higher than", "lower than", "not distinguishable from")

#: The claims on whether a curve removes the backdoor (the summary gives the midpoint
#: controls' reading as the reason when one is not reproduced).
BACKDOOR_CLAIMS = ("curve_removes_backdoor", "curve_removes_backdoor_small_n", "mid_asr",
                   "polychain_removes_backdoor")

#: What the gpu profile changes, for the chapter's summary.
GPU_CHANGES = ("the paper's setting: CIFAR-10 with VGG16 ends trained with SGD for many "
               "epochs on the whole poisoned split, the paper's repair budget of 100 epochs "
               "over the bonafide images tiled to 10,000, every size, five seeds and a larger "
               "test set; its controls and budget curve say whether the corner trigger and "
               "the segment start keep the backdoor alive at that scale too.")

#: Sentences the prose quotes, chosen by a result.
READINGS = {
    # the middle's ASR at the two largest budgets: intervals overlap / not
    "budget": (
        "the attack success has settled there (the two largest budgets' intervals overlap).",
        "the attack success has not settled (the two largest budgets' intervals do not "
        "overlap), so the claim read there is inconclusive."),
    # ASR at the defender's point minus ASR in the middle (above 0, below 0, neither)
    "chosen_vs_mid": (
        "at this budget the defender's clean-data rule gives up what the middle of the curve "
        "gains; the paper's low attack success needs its choice of t by looking at the attack.",
        "the defender's clean-data rule finds a point with less backdoor than the middle.",
        "at this number of seeds the defender's point and the middle cannot be told apart."),
    # all methods but at most one remove the faults / otherwise
    "faults_all_removed": (
        "Fault success hardly separates the methods: an injection that changes one layer a "
        "little is undone by almost any training on clean data, and what separates them is "
        "the accuracy they keep (the figure)."),
    "faults_separate": (
        "Fault success separates the methods: some repairs leave the injected errors in "
        "place."),
}


def _record_settings(chapter: ChapterReport, params: Mapping[str, Any], budget: pd.DataFrame,
                     paper_budget: Mapping[str, Any]) -> None:
    """The protocol's settings and the repair budget against the paper's."""
    chapter.record("ch05_seeds", params["seeds"])
    chapter.record("ch05_num_seeds", len(params["seeds"]))
    chapter.record("ch05_extra_curve_seeds", params["extra_curve_seeds"])
    chapter.record("ch05_num_curve_seeds_large",
                   len(params["seeds"]) + len(params["extra_curve_seeds"]))
    for name in ("lrs", "tune_sizes", "weight_decay", "repair_epochs", "repair_batch",
                 "repair_max_steps", "repair_epoch_size"):
        chapter.record(f"ch05_{name}", params[name])
    chapter.record("ch05_steps", budget.steps.to_dict())
    chapter.record("ch05_steps_text", " / ".join(map(str, budget.steps)) + " at n = "
                   + " / ".join(map(str, budget.index)))
    chapter.record("ch05_paper_steps", int(budget.paper_steps.max()))
    chapter.record("ch05_budget_share", share_text(budget.steps / budget.paper_steps))
    for k, v in paper_budget.items():
        chapter.record(f"ch05_paper_{k}", v)
    cap = params["repair_max_steps"]
    chapter.record("ch05_cap_binds_from", int(budget.index[budget.steps >= cap].min())
                   if cap and (budget.steps >= cap).any() else "never")
    chapter.record("ch05_t_tolerance", params["t_tolerance"])
    chapter.record("ch05_prune_tolerance", params["prune_tolerance"])
    chapter.record("ch05_lr_extend", params["lr_extend"])
    for k in ("poison_rate", "target_class", "end_optimizer", "end_lr", "end_epochs",
              "end_weight_decay", "backdoor_subset"):
        chapter.record(f"ch05_{k}", params[k])


def _record_backdoor(chapter: ChapterReport, params: Mapping[str, Any], ends: Any,
                     backdoor: Any, t_chosen: pd.DataFrame) -> None:
    """The backdoor sweep: the ends, the intervals the prose quotes, the middle of the
    curve against the defender's point, and the paired comparisons."""
    small_n, large_n = params["claim_small_n"], max(params["bonafide_sizes"])
    summary, rows = backdoor.summary, backdoor.rows
    chapter.record("ch05_lr_table", backdoor.sweep.lr_table())
    lrs = backdoor.sweep.lrs
    edge = sorted({r.method for r in lrs.itertuples()
                   if not pd.isna(r.inside) and not bool(r.inside)})
    chapter.record("ch05_lr_inside", "every chosen rate lies inside its searched grid"
                   if not edge else "the chosen rate lies on the edge of the extended grid "
                   "for " + ", ".join(edge))
    fp = rows[rows.method == "fine_prune"]
    if len(fp) and "prune_fraction" in fp:
        chapter.record("ch05_prune_chosen", share_text(fp.prune_fraction.dropna()))
    chapter.record("ch05_t_offset", float((t_chosen.t - 0.5).abs().mean()))
    chapter.record("ch05_floor", format_interval(ends.floor, 3))
    chapter.record("ch05_end_asr", [round(v, 3) for v in ends.scores.asr[:2]])
    chapter.record("ch05_end_accuracy", ends.accuracy)
    chapter.record("ch05_small_n", small_n)
    chapter.record("ch05_large_n", large_n)
    sizes = {"small": small_n, "large": large_n}
    for key, (method, size, metric) in SWEEP_NUMBERS.items():
        chapter.record(f"ch05_{key}", format_interval(summary[method][sizes[size]][metric]))
    for key, n in (("small", small_n), ("large", large_n)):
        chapter.record(f"ch05_mid_gap_{key}",
                       format_interval(middle_gap(backdoor.profiles, "bezier", n)))
    chosen_vs_mid = paired_seed_difference(rows, "bezier", "bezier (middle)", large_n, "asr")
    chapter.record("ch05_chosen_vs_mid", format_interval(chosen_vs_mid))
    chapter.record("ch05_chosen_vs_mid_reading",
                   interval_word(chosen_vs_mid, *READINGS["chosen_vs_mid"]))
    for key, other, n, metric in (("vs_scratch_word", "scratch", small_n, "accuracy"),
                                  ("vs_scratch_large_word", "scratch", large_n, "accuracy"),
                                  ("vs_ft_word", "fine_tune", small_n, "asr")):
        chapter.record(f"ch05_{key}", interval_word(
            paired_seed_difference(rows, "bezier", other, n, metric), *COMPARISON))


def _record_faults(chapter: ChapterReport, params: Mapping[str, Any], faults: Any) -> None:
    """The error-injection sweep at its largest size."""
    fault_n, methods, summary = max(params["fault_sizes"]), params["fault_methods"], faults.summary
    chapter.record("ch05_num_faults", params["num_faults"])
    chapter.record("ch05_num_keep", params["num_keep"])
    chapter.record("ch05_fault_n", fault_n)
    chapter.record("ch05_fault_success_ends", [fi["success_rate"] for _, fi in faults.faulted])
    chapter.record("ch05_fault_summary", summary)
    chapter.record("ch05_fault_num_methods", len(methods))
    n_removed = sum(summary[m][fault_n]["fs"]["estimate"] <= params["asr_max"] for m in methods)
    chapter.record("ch05_fault_removed", n_removed)
    chapter.record("ch05_asr_max", params["asr_max"])
    chapter.record("ch05_fault_reading", READINGS["faults_all_removed"]
                   if n_removed >= len(methods) - 1 else READINGS["faults_separate"])
    for key, (method, metric) in FAULT_NUMBERS.items():
        chapter.record(f"ch05_{key}", format_interval(summary[method][fault_n][metric])
                       if method in summary else "n/a")


def _record_aware(chapter: ChapterReport, params: Mapping[str, Any], backdoor: Any,
                  aware: Any) -> None:
    """The path-aware attacker: its released models, the midpoints, and the repair."""
    aware_n, scores = max(params["adaptive_sizes"]), aware.scores
    chapter.record("ch05_aware_end_acc", [round(v, 3) for v in scores.accuracy[:2]])
    chapter.record("ch05_aware_end_asr", [round(v, 3) for v in scores.asr[:2]])
    chapter.record("ch05_aware_mid_asr", round(float(scores.asr.iloc[3]), 3))
    chapter.record("ch05_plain_mid_asr", round(float(scores.asr.iloc[2]), 3))
    chapter.record("ch05_aware_mid_acc", round(float(scores.accuracy.iloc[3]), 3))
    chapter.record("ch05_plain_mid_acc", round(float(scores.accuracy.iloc[2]), 3))
    chapter.record("ch05_aware_n", aware_n)
    chapter.record("ch05_aware_summary", aware.summary)
    chapter.record("ch05_aware_asr_large", format_interval(aware.summary["bezier"][aware_n]["asr"]))
    chapter.record("ch05_plain_asr_large",
                   format_interval(backdoor.summary["bezier"][aware_n]["asr"]))
    aware_vs_plain = paired_seed_difference(
        pd.concat([aware.sweep.rows.assign(method="aware"), backdoor.rows]), "aware", "bezier",
        aware_n, "asr")
    chapter.record("ch05_aware_vs_plain", aware_vs_plain)
    chapter.record("ch05_aware_word", interval_word(aware_vs_plain, *COMPARISON))


def _budget_claims(claims: list[dict[str, Any]], budget_rows: pd.DataFrame,
                   totals: Mapping[str, int], end_accuracy: float) -> None:
    """Read the middle's claims (``mid_asr``, ``curve_keeps_accuracy``) on the budget
    curve: the interval at the largest budget, with every budget's (``budgets=``)."""
    from mcutils.chapters.ch05_repair import claim_interval

    per = {"mid_asr": ("asr", 0.0), "curve_keeps_accuracy": ("accuracy", -end_accuracy)}
    for c in claims:
        if c["claim_id"] not in per:
            continue
        col, shift = per[c["claim_id"]]
        budgets = {int(k): claim_interval(g[col], totals[col], shift)
                   for k, g in budget_rows.groupby("steps")}
        c["result"] = budgets[max(budgets)]
        c["method"] = budgets[max(budgets)]["method"] + ", read at the largest budget"
        c["budgets"] = budgets
        c["statement"] += f" (after {max(budgets)} repair steps)"


def _record_explanations(chapter: ChapterReport, params: Mapping[str, Any], ends: Any,
                         explain: Mapping[str, Any]) -> pd.DataFrame:
    """The untrained segment's midpoint, the midpoint controls and which factor they
    point to, the budget curve, the variant set-up, and where a curve removes the
    backdoor. Returns the table of :func:`mcutils.chapters.ch05_midpoints.repair_verdicts`."""
    from mcutils.chapters.ch05_midpoints import (FACTORS, factor_effects, factor_reading,
                                                 repair_verdicts)
    from mcutils.chapters.ch05_repair import claim_interval

    seg, variant = explain["segment"], explain["variant"]
    chapter.record("ch05_segment_midpoint_asr", format_interval(seg["asr"]))
    chapter.record("ch05_segment_midpoint_acc", format_interval(seg["acc"]))
    cells, rows = explain["controls"]
    chapter.record("ch05_midpoint_controls", cells)
    chapter.record("ch05_control_seeds", len(params["seeds"]))
    effects = factor_effects(rows)
    for f in FACTORS:
        chapter.record(f"ch05_effect_{f}", format_interval(effects[f]) if f in effects else "n/a")
    chapter.record("ch05_controls_reading", factor_reading(effects))
    budget, budget_rows = explain["budget"]
    chapter.record("ch05_mid_acc_vs_budget", {str(k): v["acc"] for k, v in budget.items()})
    chapter.record("ch05_budget_text", ", ".join(
        f"{format_interval(v['asr'])} after {k} steps" for k, v in sorted(budget.items())))
    chapter.record("ch05_budget_acc_text", ", ".join(
        f"{format_interval(v['acc'])} after {k} steps" for k, v in sorted(budget.items())))
    chapter.record("ch05_variant_end_asr", [round(v, 3) for v in variant.scores.asr])
    chapter.record("ch05_variant_end_acc", [round(v, 3) for v in variant.scores.accuracy])
    chapter.record("ch05_variant_segment_asr", format_interval(variant.segment["asr"]))
    chapter.record("ch05_variant_segment_acc", format_interval(variant.segment["acc"]))
    large = max(params["bonafide_sizes"])
    vs = variant.sweep.rows
    tot = variant.scorer.totals
    vsum = {m: {k: claim_interval(vs[vs.method == m][c], tot[c]) for k, c in
                (("asr", "asr"), ("acc", "accuracy"))} for m in ("bezier", "bezier (middle)")}
    chapter.record("ch05_variant_mid_asr", format_interval(vsum["bezier (middle)"]["asr"]))
    chapter.record("ch05_variant_mid_acc", format_interval(vsum["bezier (middle)"]["acc"]))
    chapter.record("ch05_variant_chosen_asr", format_interval(vsum["bezier"]["asr"]))
    # where a curve removes the backdoor (the middle, t = 1/2, unless said)
    end_acc = rows.groupby("cell").end_acc.first()
    settings = {f"{cell}, {int(budget_rows.steps.min())} steps": {**iv,
                                                                   "end_acc": end_acc[cell]}
                for cell, iv in cells.items()}
    settings.update({f"Bezier, trigger corner, bend on segment, {k} steps": {
        **v, "end_acc": ends.accuracy} for k, v in budget.items()
        if k != int(budget_rows.steps.min())})
    settings["earlier set-up (variant), Bezier middle"] = {
        **vsum["bezier (middle)"], "end_acc": float(variant.scores.accuracy.max())}
    table = repair_verdicts(settings, params["asr_max"], params["max_drop"])
    for word in ("removed", "kept", "undecided"):
        names = list(table.setting[table.verdict == word])
        chapter.record(f"ch05_works_{word}", "; ".join(names) if names else "none")
    chapter.record("ch05_works_n", large)
    return table


def findings(chapter: ChapterReport, params: Mapping[str, Any], *, ends: Any, backdoor: Any,
             t_chosen: pd.DataFrame, faults: Any, aware: Any, variants: Any,
             controls: pd.DataFrame | None = None,
             explain: Mapping[str, Any] | None = None) -> pd.DataFrame | None:
    """Record everything chapter 05 glues and the claims it tests.

    Args:
        chapter: the chapter's report.
        params: the validated parameters (:data:`mcutils.chapters.ch05_protocol.PARAMETERS`).
        ends: the tampered ends (:class:`mcutils.chapters.ch05_study.TamperedEnds`).
        backdoor: the backdoor sweep (:class:`mcutils.chapters.ch05_study.BackdoorSweep`).
        t_chosen: the curves' rows of that sweep (the defender's ``t`` of each run).
        faults: the error injection (:class:`mcutils.chapters.ch05_study.FaultStudy`).
        aware: the path-aware attacker (:class:`mcutils.chapters.ch05_study.AwareStudy`).
        variants: the curve variants (:class:`mcutils.chapters.ch05_study.VariantStudy`).
        controls: the negative controls' rows
            (:func:`mcutils.chapters.ch05_controls.control_rows`); without them the
            asserted claims carry no control.
        explain: the explanations of :mod:`mcutils.chapters.ch05_midpoints`:
            ``"segment"`` (:func:`~mcutils.chapters.ch05_midpoints.segment_midpoint`),
            ``"controls"`` and ``"budget"`` (each ``(intervals, rows)``) and ``"variant"``
            (:class:`~mcutils.chapters.ch05_midpoints.VariantStudy`); with them the
            middle's claims are read on the budget curve.

    Returns:
        Where a curve removes the backdoor (with ``explain``; else ``None``).
    """
    small_n, large_n = params["claim_small_n"], max(params["bonafide_sizes"])
    chapter.record("ch05_sweep", backdoor.summary)
    _record_settings(chapter, params, backdoor.budget, backdoor.paper_budget)
    _record_backdoor(chapter, params, ends, backdoor, t_chosen)
    _record_faults(chapter, params, faults)
    _record_aware(chapter, params, backdoor, aware)
    size = params["variant_size"]
    chapter.record("ch05_variant_size", size)
    chapter.record("ch05_variants", {v: s[size] for v, s in variants.summary.items()})
    totals = {**ends.scorer.totals, "fault_success": params["num_faults"]}
    claims = repair_claims(backdoor.rows, ends.accuracy, small_n, large_n,
                           fault_rows=faults.sweep.rows, aware_rows=aware.sweep.rows,
                           asr_max=params["asr_max"], max_drop=params["max_drop"],
                           totals=totals, control_rows=controls)
    table = None
    if explain is not None:
        _budget_claims(claims, explain["budget"][1], totals, ends.accuracy)
        table = _record_explanations(chapter, params, ends, explain)
    plain = next((c for c in claims if c["claim_id"] == "curve_removes_backdoor"), None)
    for c in claims:
        if c["claim_id"] == "path_aware_repaired" and plain is not None and not (
                plain["result"]["ci"][1] <= params["asr_max"]):
            c["note"] = (f"uninformative: the plain repair already fails (ASR "
                         f"{format_interval(plain['result'])} at n = {large_n}), so a "
                         "failure against the attacker says nothing about the attacker")
            c["statement"] = "(uninformative while the plain repair fails) " + c["statement"]
        chapter.claim(**c)
    measured = {}
    if explain is not None:
        v = explain["variant"]
        measured = {
            "the earlier set-up (run as a variant)": (
                "segment midpoint ASR "
                f"{format_interval(v.segment['asr'])} (official set-up "
                f"{format_interval(explain['segment']['asr'])}); Bezier middle at n = "
                f"{large_n}: see section 5"),
            "repair budget": "Bezier middle ASR " + ", ".join(
                f"{format_interval(iv['asr'])} after {k} steps"
                for k, iv in sorted(explain["budget"][0].items()))}
    chapter.deviations(deviations(measured))
    notes = {}
    if explain is not None:
        mid = chapter.claims.get("mid_asr", {})
        chapter.record("ch05_budget_settled", READINGS["budget"][0] if mid.get("settled")
                       else READINGS["budget"][1])
        from mcutils.chapters.ch05_midpoints import factor_effects, factor_reading

        why = "the midpoint controls: " + factor_reading(factor_effects(explain["controls"][1]))
        notes = {cid: why for cid in BACKDOOR_CLAIMS
                 if cid in chapter.claims and chapter.claims[cid]["verdict"] != "reproduced"}
    chapter.summary(GPU_CHANGES, notes)
    return table
