"""Chapter 05's explanations of where the backdoor survives: the tampered ends of each
set-up, the untrained segment's midpoint, the midpoint controls, the budget curve and the
earlier set-up as a variant.

* :func:`end_settings`, :func:`make_trigger`, :func:`tampered_pair`, :func:`clean_pair`:
  the ends of every set-up, trained (or loaded) like the official code's
  (``train_poison.py``: SGD with weight decay) or as the variant says;
* :func:`segment_midpoint`: accuracy and attack success of the straight segment's
  midpoint, the untrained curve's middle, with exact binomial intervals;
* :func:`tuned_lr`: the learning rate the chapter's sweep chooses for a method at a size
  (the same runs, so the same cache entries and the same choice);
* :func:`curve_middle`: one curve's middle, ``t = 1/2``, scored;
* :func:`midpoint_controls`: the grid of curve x trigger placement x bend start at the
  largest ``n`` over the seeds (``{cell: {"asr", "acc"}}``);
* :func:`budget_curve`: the Bezier middle against repair steps;
* :func:`variant_study`: the earlier set-up's ends, midpoint and Bezier repair.

Every trained piece is cached (:func:`mcutils.repair.cached_curve`,
:func:`mcutils.backdoor.backdoored_model`), and :func:`mcutils.chapters.ch05_protocol.pool_parts`
trains them side by side before the notebook runs. Used by chapter 05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from mcutils import backdoor, data, zoo
from mcutils.chapters.ch05_repair import claim_interval
from mcutils.chapters.ch05_runs import (DefenderSplit, RepairSetup, Scorer, SweepResult,
                                        defender_split, lr_for_size, repair_budget,
                                        repair_sweep, run_repair, tune_lr)
from mcutils.core.checks import ParameterError
from mcutils.core.stats import binomial_interval

__all__ = [
    "FACTORS",
    "VariantStudy",
    "budget_curve",
    "budget_table",
    "cell_label",
    "chapter_data",
    "clean_pair",
    "controls_table",
    "curve_middle",
    "end_settings",
    "factor_effects",
    "factor_reading",
    "make_trigger",
    "midpoint_controls",
    "plot_budget",
    "repair_verdicts",
    "scorer_for",
    "segment_midpoint",
    "setup_table",
    "tampered_pair",
    "tuned_lr",
    "variant_study",
]

_END_KEYS = ("backdoor_subset", "poison_rate", "target_class", "end_optimizer", "end_lr",
             "end_epochs", "end_weight_decay", "end_schedule")


def end_settings(params: Mapping[str, Any], variant: bool = False) -> dict[str, Any]:
    """The settings of the tampered ends (``backdoor_subset``, ``poison_rate``,
    ``target_class``, ``end_*``): the chapter's, or with ``variant`` those of
    ``variant_setup`` over them."""
    out = {k: params[k] for k in _END_KEYS}
    if variant:
        out.update(params["variant_setup"])
    return out


def make_trigger(params: Mapping[str, Any], place: str = "corner") -> backdoor.Trigger:
    """The backdoor's trigger, a white square ``trigger_size`` wide: ``"corner"``, one
    pixel from the bottom-right corner (the official code's ``add_pattern_bd``), or
    ``"centre"``, in the middle of the image, where clean images have ink."""
    size = params["trigger_size"]
    side = data.dataset_info(params["dataset"]).input_size
    if place == "corner":
        at = side - size - 1
    elif place == "centre":
        at = (side - size) // 2
    else:
        raise ParameterError(f"place={place!r} is not known; valid values: corner, centre")
    return backdoor.Trigger(size=size, row=at, col=at, value=1.0)


def _train_kw(params: Mapping[str, Any], s: Mapping[str, Any]) -> dict[str, Any]:
    return dict(dataset=params["dataset"], model=params["model"], epochs=s["end_epochs"],
                lr=s["end_lr"], batch_size=params["batch_size"], optimizer=s["end_optimizer"],
                weight_decay=s["end_weight_decay"], schedule=s["end_schedule"],
                train_subset=s["backdoor_subset"], device=params["device"], progress=False)


def tampered_pair(params: Mapping[str, Any], place: str = "corner", variant: bool = False,
                  which: Sequence[int] = (0, 1)) -> tuple[nn.Module, ...]:
    """The two backdoored ends (seeds ``seed`` and ``seed + 1``) of a set-up: trigger at
    ``place``, the chapter's end settings or (``variant``) the variant's
    (:func:`end_settings`); ``which`` picks some of the two (a pool part trains one)."""
    s = end_settings(params, variant)
    trig = make_trigger(params, place)
    return tuple(backdoor.backdoored_model(target=s["target_class"], rate=s["poison_rate"],
                                           trigger=trig, seed=params["seed"] + i,
                                           **_train_kw(params, s))
                 for i in which)


def clean_pair(params: Mapping[str, Any], which: Sequence[int] = (0, 1)
               ) -> tuple[nn.Module, ...]:
    """Two clean models trained like the chapter's ends on the same subset (the trigger
    floor and the faults' ends)."""
    kw = _train_kw(params, end_settings(params))
    return tuple(zoo.trained_model(seed=params["seed"] + i, **kw) for i in which)


def chapter_data(params: Mapping[str, Any]) -> DefenderSplit:
    """The test split cut once (:func:`mcutils.chapters.ch05_runs.defender_split`)."""
    return defender_split(data.load_dataset(params["dataset"], "test"),
                          max(params["bonafide_sizes"]), params["val_size"],
                          params["eval_size"], seed=params["seed"])


def scorer_for(params: Mapping[str, Any], split: DefenderSplit, place: str = "corner",
               variant: bool = False) -> Scorer:
    """Accuracy and attack success on the held-out test images for a set-up."""
    return Scorer(split.test, target=end_settings(params, variant)["target_class"],
                  trigger=make_trigger(params, place))


def segment_midpoint(ends: Sequence[nn.Module], scorer: Scorer) -> dict[str, dict[str, Any]]:
    """Accuracy (``"acc"``) and attack success (``"asr"``) of the midpoint of the straight
    segment between ``ends`` (the untrained curve's middle), each an exact binomial
    interval over the held-out test images."""
    from mcutils.curves import linear_path

    score = scorer(linear_path(*ends).model_at(0.5))
    totals = scorer.totals
    return {short: binomial_interval(round(score[col] * totals[col]), totals[col])
            for short, col in (("acc", "accuracy"), ("asr", "asr"))}


def tuned_lr(params: Mapping[str, Any], method: str, n: int, setup: RepairSetup,
             split: DefenderSplit) -> float:
    """The learning rate the chapter's sweep uses for ``method`` at size ``n``: searched on
    the first seed at the tuning size nearest ``n`` (:func:`mcutils.chapters.ch05_runs.tune_lr`
    over ``lrs``, extended ``lr_extend`` times), from the same runs as
    :func:`mcutils.chapters.ch05_runs.repair_sweep`, so from the same cache entries."""
    size = min(params["tune_sizes"], key=lambda k: (abs(__import__("math").log(n / k)), -k))
    seed = params["seeds"][0]
    bona = split.bonafide(size, seed)
    best, _, _ = tune_lr(lambda lr: run_repair(method, setup, bona, lr, seed=seed).criterion,
                         params["lrs"], params["lr_extend"])
    return lr_for_size(n, {size: best})


def curve_middle(setup: RepairSetup, bonafide: Any, lr: float, curve: str, seed: int,
                 init: str = "segment", steps: int | None = None) -> nn.Module:
    """The middle, ``t = 1/2``, of a curve between ``setup.ends`` trained on ``bonafide``
    as the chapter's sweep trains it (same arguments, so the same cache entry), with the
    bend started on the segment (``"segment"``) or at a random initialisation
    (``"random"``), for ``steps`` (default: the protocol's budget)."""
    from mcutils.data import TensorLoader
    from mcutils.repair import cached_curve

    n = len(bonafide)
    budget, batch = repair_budget(n, setup.epochs, setup.batch_size, setup.max_steps,
                                  setup.epoch_size)
    cm = cached_curve(setup.ends[0], setup.ends[1], bonafide, steps or budget, lr=lr,
                      weight_decay=setup.weight_decay, curve=curve, num_bends=setup.curve_bends,
                      batch_size=setup.batch_size, schedule=setup.schedule, seed=seed,
                      device=setup.device, momentum=setup.momentum,
                      init={"segment": "linear", "random": "random"}[init])
    return cm.model_at(0.5, TensorLoader(bonafide, batch))


def cell_label(curve: str, place: str, init: str) -> str:
    """A control cell's name in words."""
    return (f"{'Bezier' if curve == 'bezier' else 'chain'}, trigger {place}, "
            f"bend {'on segment' if init == 'segment' else 'random'}")


def midpoint_controls(params: Mapping[str, Any], setup: RepairSetup, split: DefenderSplit,
                      lrs: Mapping[str, float]) -> tuple[dict[str, dict[str, Any]],
                                                         pd.DataFrame]:
    """The midpoint controls at the largest ``n``, ``t = 1/2``: every cell of
    ``control_curves`` x ``control_places`` x ``control_inits`` over ``seeds``.

    A placement has its own pair of ends (the same settings, the trigger elsewhere) and
    its own scorer. ``lrs`` maps a curve to its learning rate (the sweep's at that size).

    Returns:
        ``({cell: {"asr": interval, "acc": interval}}, rows)``: intervals over seeds
        (:func:`mcutils.chapters.ch05_repair.claim_interval`) and one row per cell and seed
        (with ``end_acc``, the better end's test accuracy of the cell's pair).
    """
    n = max(params["bonafide_sizes"])
    rows = []
    for place in params["control_places"]:
        ends = tampered_pair(params, place)
        scorer = scorer_for(params, split, place)
        end_acc = max(scorer(e)["accuracy"] for e in ends)
        s = setup.replace(ends=tuple(ends))
        for curve in params["control_curves"]:
            for init in params["control_inits"]:
                for seed in params["seeds"]:
                    mid = curve_middle(s, split.bonafide(n, seed), lrs[curve], curve, seed, init)
                    rows.append(dict(curve=curve, place=place, init=init, seed=seed,
                                     cell=cell_label(curve, place, init), end_acc=end_acc,
                                     **scorer(mid)))
    df = pd.DataFrame(rows)
    totals = scorer.totals
    out = {cell: {"asr": claim_interval(g.asr, totals["asr"]),
                  "acc": claim_interval(g.accuracy, totals["accuracy"])}
           for cell, g in df.groupby("cell", sort=False)}
    return out, df


def budget_curve(params: Mapping[str, Any], setup: RepairSetup, split: DefenderSplit,
                 scorer: Scorer, lr: float) -> tuple[dict[int, dict[str, Any]], pd.DataFrame]:
    """The Bezier middle at the largest ``n`` after each of ``budget_steps`` repair steps
    (the same schedule over each budget), over ``seeds``, learning rate ``lr``.

    Returns:
        ``({steps: {"asr": interval, "acc": interval}}, rows)``.
    """
    n = max(params["bonafide_sizes"])
    rows = []
    for steps in sorted(params["budget_steps"]):
        for seed in params["seeds"]:
            mid = curve_middle(setup, split.bonafide(n, seed), lr, "bezier", seed, "segment",
                               steps)
            rows.append(dict(steps=steps, seed=seed, **scorer(mid)))
    df = pd.DataFrame(rows)
    totals = scorer.totals
    out = {int(k): {"asr": claim_interval(g.asr, totals["asr"]),
                    "acc": claim_interval(g.accuracy, totals["accuracy"])}
           for k, g in df.groupby("steps")}
    return out, df


@dataclass
class VariantStudy:
    """The earlier set-up (``variant_setup``) beside the chapter's.

    Attributes:
        ends: its two backdoored ends; scorer: its accuracy and attack success.
        scores: one row per end (``accuracy``, ``asr``).
        segment: :func:`segment_midpoint` of its ends.
        sweep: the Bezier repair of its ends at the largest ``n`` over the seeds (rows
            ``"bezier"``, the defender's point, and ``"bezier (middle)"``).
    """

    ends: tuple[nn.Module, ...]
    scorer: Scorer
    scores: pd.DataFrame
    segment: dict[str, dict[str, Any]]
    sweep: SweepResult


def variant_study(params: Mapping[str, Any], setup: RepairSetup, split: DefenderSplit,
                  lr_table: Mapping[str, Mapping[int, float]]) -> VariantStudy:
    """The variant's ends, their segment midpoint and their Bezier repair at the largest
    ``n`` with the chapter's protocol and learning rates."""
    ends = tampered_pair(params, "corner", variant=True)
    scorer = scorer_for(params, split, "corner", variant=True)
    scores = pd.DataFrame({f"variant end {i}": scorer(m) for i, m in enumerate(ends)}).T
    sweep = repair_sweep(setup.replace(ends=tuple(ends)), split, scorer, methods=["bezier"],
                         sizes=[max(params["bonafide_sizes"])], seeds=params["seeds"],
                         lr_table=lr_table, progress=False)
    return VariantStudy(tuple(ends), scorer, scores, segment_midpoint(ends, scorer), sweep)


#: The levels compared by :func:`factor_effects`: (factor column, level kept by the
#: paper's set-up, the other level), with each factor's name in words.
FACTORS = {"place": ("corner", "centre", "the trigger's placement (corner minus centre)"),
           "init": ("segment", "random", "the bend's start (on the segment minus random)")}


def factor_effects(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The main effect of each factor of the midpoint controls on the middle's ASR.

    For each seed, the ASR at the first level minus the ASR at the second
    (:data:`FACTORS`), averaged over the cells of the other factors (the curves included);
    a Student-t interval over seeds of these per-seed effects. A factor with one level in
    ``rows`` is left out.
    """
    from mcutils.core.stats import seed_interval

    out = {}
    for factor, (a, b, _) in FACTORS.items():
        if not {a, b} <= set(rows[factor]):
            continue
        others = [c for c in ("curve", "place", "init") if c != factor]
        piv = rows.pivot_table(index=["seed", *others], columns=factor, values="asr")
        per_seed = (piv[a] - piv[b]).groupby(level="seed").mean()
        out[factor] = {**seed_interval(per_seed.to_numpy(float)),
                       "per_seed": [float(v) for v in per_seed]}
    return out


def factor_reading(effects: Mapping[str, Mapping[str, Any]]) -> str:
    """Which factor keeps the backdoor alive, in words, from :func:`factor_effects`: the
    factors whose interval lies wholly above 0, the larger effect first."""
    alive = sorted((f for f, iv in effects.items() if iv["ci"][0] > 0),
                   key=lambda f: -effects[f]["estimate"])
    if not alive:
        return ("neither factor changes the middle's attack success by an amount its "
                "interval separates from zero")
    names = [FACTORS[f][2].split(" (")[0] for f in alive]
    if len(names) == 1:
        return f"{names[0]} keeps the backdoor alive; the other factor's interval includes zero"
    return (f"both keep the backdoor alive: {names[0]} more than {names[1]} (by the "
            "estimates)")


def repair_verdicts(settings: Mapping[str, Mapping[str, Any]], asr_max: float,
                    max_drop: float) -> pd.DataFrame:
    """Where a curve removes the backdoor: per setting, ``"removed"`` when the ASR
    interval lies at or below ``asr_max`` and the accuracy interval at or above the better
    end's accuracy minus ``max_drop``; ``"kept"`` when the ASR interval lies above
    ``asr_max`` or the accuracy interval below that level; ``"undecided"`` otherwise.

    Args:
        settings: ``{label: {"asr": interval, "acc": interval, "end_acc": float}}``.

    Returns:
        One row per setting: ``setting``, ``asr``, ``acc``, ``end accuracy`` and
        ``verdict``.
    """
    rows = []
    for label, s in settings.items():
        floor = float(s["end_acc"]) - max_drop
        asr_lo, asr_hi = s["asr"]["ci"]
        acc_lo, acc_hi = s["acc"]["ci"]
        if asr_hi <= asr_max and acc_lo >= floor:
            word = "removed"
        elif asr_lo > asr_max or acc_hi < floor:
            word = "kept" if asr_lo > asr_max else "removed at a loss of accuracy"
        else:
            word = "undecided"
        rows.append({"setting": label, "asr": s["asr"], "acc": s["acc"],
                     "end accuracy": float(s["end_acc"]), "verdict": word})
    return pd.DataFrame(rows, columns=["setting", "asr", "acc", "end accuracy", "verdict"])


def controls_table(cells: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The midpoint controls as the chapter shows them: one row per cell, its attack
    success and clean accuracy at ``t = 1/2`` with their intervals."""
    return pd.DataFrame([{"curve, trigger, bend start": cell, "attack success": v["asr"],
                          "clean accuracy": v["acc"]} for cell, v in cells.items()])


def budget_table(budget: Mapping[int, Mapping[str, Any]]) -> pd.DataFrame:
    """The budget curve as a table: one row per number of repair steps."""
    return pd.DataFrame([{"repair steps": k, "attack success": v["asr"],
                          "clean accuracy": v["acc"]} for k, v in sorted(budget.items())])


def setup_table(ends: Any, segment: Mapping[str, Any], middle: Mapping[str, Any],
                variant: VariantStudy) -> pd.DataFrame:
    """The chapter's set-up beside the earlier one: the ends' attack success and accuracy
    (the better end's accuracy), the segment's midpoint and the Bezier middle at the
    largest ``n``.

    Args:
        ends: :class:`mcutils.chapters.ch05_study.TamperedEnds` of the chapter's set-up.
        segment: its :func:`segment_midpoint`.
        middle: its Bezier middle at the largest ``n`` (``{"asr", "acc"}`` intervals).
        variant: the earlier set-up (:func:`variant_study`).
    """
    from mcutils.chapters.ch05_repair import claim_interval

    vs, tot = variant.sweep.rows, variant.scorer.totals
    mid = vs[vs.method == "bezier (middle)"]
    vmid = {"asr": claim_interval(mid.asr, tot["asr"]),
            "acc": claim_interval(mid.accuracy, tot["accuracy"])}
    out = []
    for name, scores, seg, m in (
            ("official (primary)", ends.scores.iloc[:2], segment, middle),
            ("earlier (variant)", variant.scores, variant.segment, vmid)):
        out.append({"set-up": name, "ends' attack success": float(scores.asr.min()),
                    "better end's accuracy": float(scores.accuracy.max()),
                    "segment midpoint: attack success": seg["asr"],
                    "segment midpoint: accuracy": seg["acc"],
                    "Bezier middle: attack success": m["asr"],
                    "Bezier middle: accuracy": m["acc"]})
    return pd.DataFrame(out)


def plot_budget(budget: Mapping[int, Mapping[str, Any]], end_accuracy: float,
                asr_max: float, max_drop: float):
    """The Bezier middle's attack success and clean accuracy against repair steps (log
    axis), with 95% intervals, the removal threshold and the accuracy floor. Returns the
    figure (at most :data:`mcutils.plotting.MAX_WIDTH` wide)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mcutils.plotting import MAX_WIDTH

    steps = sorted(budget)
    fig, axes = plt.subplots(1, 2, figsize=(min(MAX_WIDTH, 7.5), 3.0))
    for ax, key, label, line in ((axes[0], "asr", "attack success rate", asr_max),
                                 (axes[1], "acc", "clean test accuracy",
                                  end_accuracy - max_drop)):
        est = np.array([budget[s][key]["estimate"] for s in steps])
        lo = np.array([budget[s][key]["ci"][0] for s in steps])
        hi = np.array([budget[s][key]["ci"][1] for s in steps])
        ax.errorbar(steps, est, yerr=[est - lo, hi - est], marker="o", capsize=3)
        ax.axhline(line, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("repair steps (log scale)")
        ax.set_ylabel(label)
    fig.tight_layout()
    return fig
