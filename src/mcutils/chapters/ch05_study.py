"""Chapter 05's sections, run from its parameters: the defender's data, the tampered
models, the backdoor sweep, the error injection, the path-aware attacker and the curve
variants, each returning what the notebook shows and :func:`mcutils.chapters.ch05_findings.findings`
records.

* :func:`defender_data`: the trigger and the test split cut once
  (:func:`mcutils.chapters.ch05_runs.defender_split`);
* :func:`tampered_ends`: two backdoored and two clean models, their scores and the
  trigger floor (:class:`TamperedEnds`);
* :func:`repair_setup`, :func:`budget_table`, :func:`backdoor_sweep`: the protocol, its
  budget against the paper's and the sweep of section 1 (:class:`BackdoorSweep`);
* :func:`plot_curve_profiles`: the validation accuracy along the curves and the straight
  line;
* :func:`fault_study`: section 2, error injection and its repair (:class:`FaultStudy`);
* :func:`path_aware_study`, :func:`plot_aware_vs_plain`: section 3 (:class:`AwareStudy`);
* :func:`curve_variants`: section 4 (:class:`VariantStudy`).

Each function takes the chapter's validated parameters
(:data:`mcutils.chapters.ch05_protocol.PARAMETERS`). Used by chapter 05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import backdoor, curves, data, faults
from mcutils.chapters.ch05_midpoints import chapter_data, clean_pair, make_trigger, tampered_pair
from mcutils.chapters.ch05_runs import (METHODS, PAPER_BUDGET, DefenderSplit, RepairSetup,
                                        Scorer, SweepResult, repair_budget, repair_sweep,
                                        variant_sweep)
from mcutils.chapters.ch05_repair import interval_table, method_label, plot_vs_n, sweep_summary
from mcutils.core import stats

__all__ = [
    "AwareStudy",
    "BackdoorSweep",
    "FaultStudy",
    "TamperedEnds",
    "VariantStudy",
    "backdoor_sweep",
    "budget_table",
    "curve_variants",
    "defender_data",
    "fault_study",
    "path_aware_study",
    "plot_aware_vs_plain",
    "plot_curve_profiles",
    "repair_setup",
    "tampered_ends",
]


def defender_data(params: Mapping[str, Any]) -> tuple[backdoor.Trigger, DefenderSplit]:
    """The backdoor's trigger (a white square ``trigger_size`` wide, one pixel from the
    bottom-right corner: :func:`mcutils.chapters.ch05_midpoints.make_trigger`) and the test
    split cut once into the defender's pool and
    validation split, the held-out test images and the rest."""
    return make_trigger(params, "corner"), chapter_data(params)


@dataclass
class TamperedEnds:
    """The models of section 1 and what they score.

    Attributes:
        backdoored: two backdoored models (seeds ``seed`` and ``seed + 1``): the ends of
            every curve.
        clean: two clean models trained on the same subset (the faults' ends).
        scorer: clean accuracy and ASR on the held-out test images.
        scores: one row per model (``accuracy``, ``asr``).
        floor: the trigger floor, a bootstrap interval of the clean models' ASR.
        accuracy: clean accuracy of the better backdoored end.
    """

    backdoored: tuple[nn.Module, nn.Module]
    clean: tuple[nn.Module, nn.Module]
    scorer: Scorer
    scores: pd.DataFrame
    floor: dict[str, Any]
    accuracy: float


def tampered_ends(params: Mapping[str, Any], split: DefenderSplit,
                  trigger: backdoor.Trigger) -> TamperedEnds:
    """Train (or load) two backdoored and two clean models with the chapter's end settings
    (``end_*``, on ``backdoor_subset`` training images:
    :func:`mcutils.chapters.ch05_midpoints.tampered_pair`), and score them."""
    p = params
    bd = tampered_pair(p, "corner")
    clean = clean_pair(p)
    scorer = Scorer(split.test, target=p["target_class"], trigger=trigger)
    scores = pd.DataFrame({name: scorer(m) for name, m in
                           [("backdoored 0", bd[0]), ("backdoored 1", bd[1]),
                            ("clean 0", clean[0]), ("clean 1", clean[1])]}).T
    loader = data.TensorLoader(split.test, 128)
    hits = torch.stack([backdoor.attack_hits(m, loader, p["target_class"], trigger)
                        for m in clean]).float().mean(0)
    floor = stats.bootstrap_ci(hits.numpy(), seed=p["seed"])
    accuracy = float(scores.loc[["backdoored 0", "backdoored 1"], "accuracy"].max())
    return TamperedEnds(bd, clean, scorer, scores, floor, accuracy)


def repair_setup(params: Mapping[str, Any], ends: Sequence[nn.Module],
                 split: DefenderSplit) -> RepairSetup:
    """The protocol every method of the chapter shares, between ``ends``, with the
    defender's validation split of ``split``."""
    p = params
    return RepairSetup(ends=tuple(ends), val=split.val, epochs=p["repair_epochs"],
                       max_steps=p["repair_max_steps"], batch_size=p["repair_batch"],
                       epoch_size=p["repair_epoch_size"], weight_decay=p["weight_decay"],
                       schedule=p["schedule"], curve_bends=p["num_bends"],
                       ts=tuple(np.linspace(0, 1, p["num_ts"]).round(4)),
                       t_tolerance=p["t_tolerance"], prune_fraction=p["prune_fraction"],
                       prune_tolerance=p["prune_tolerance"], device=p["device"])


def budget_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """Per bonafide size ``n``: the repair budget's ``steps`` and ``batch``
    (:func:`mcutils.chapters.ch05_runs.repair_budget`) and the paper's ``paper_steps``
    (:data:`mcutils.chapters.ch05_runs.PAPER_BUDGET`)."""
    p = params
    return pd.DataFrame([dict(n=n, **dict(zip(["steps", "batch"], repair_budget(
        n, p["repair_epochs"], p["repair_batch"], p["repair_max_steps"],
        p["repair_epoch_size"]))), paper_steps=repair_budget(n, **PAPER_BUDGET)[0])
        for n in p["bonafide_sizes"]]).set_index("n")


@dataclass
class BackdoorSweep:
    """Section 1: every method at every size and seed.

    Attributes:
        sweep: the sweep (its learning rates are reused by the later sections).
        extra: the Bezier curve's extra seeds at the largest size (``None`` without).
        rows: the rows of both; profiles: the validation accuracy along their curves.
        summary: intervals over seeds (:func:`mcutils.chapters.ch05_repair.sweep_summary`).
        budget: :func:`budget_table`; paper_budget: the paper's budget it is compared with.
    """

    sweep: SweepResult
    extra: SweepResult | None
    rows: pd.DataFrame
    profiles: pd.DataFrame
    summary: dict
    budget: pd.DataFrame
    paper_budget: dict[str, Any]


def backdoor_sweep(params: Mapping[str, Any], setup: RepairSetup, split: DefenderSplit,
                   scorer: Scorer) -> BackdoorSweep:
    """Every method of :data:`mcutils.chapters.ch05_runs.METHODS` at every bonafide
    size and seed, the learning rates searched at ``tune_sizes`` on the first seed; then
    the Bezier curve on ``extra_curve_seeds`` at the largest size, where its claims are
    read (same protocol and learning rate)."""
    p, sizes = params, params["bonafide_sizes"]
    sweep = repair_sweep(setup, split, scorer, methods=METHODS, sizes=sizes, seeds=p["seeds"],
                         lrs=p["lrs"], tune_sizes=p["tune_sizes"], tune_seed=p["seeds"][0],
                         lr_extend=p["lr_extend"])
    extra = (repair_sweep(setup, split, scorer, methods=["bezier"], sizes=[max(sizes)],
                          seeds=p["extra_curve_seeds"], lr_table=sweep.lr_table())
             if p["extra_curve_seeds"] else None)
    done = [sweep] + ([extra] if extra is not None else [])
    rows = pd.concat([r.rows for r in done], ignore_index=True)
    profiles = pd.concat([r.profiles for r in done])
    return BackdoorSweep(sweep, extra, rows, profiles, sweep_summary(rows, totals=scorer.totals),
                         budget_table(p),
                         dict(PAPER_BUDGET))


def plot_curve_profiles(profiles: pd.DataFrame, ends: Sequence[nn.Module], setup: RepairSetup,
                        split: DefenderSplit, params: Mapping[str, Any]):
    """The clean validation accuracy along each trained curve (mean over seeds, one line
    per size), with the straight line between ``ends`` (BatchNorm statistics on the
    largest bonafide set) as its own panel, two panels a row, at most
    :data:`mcutils.plotting.MAX_WIDTH` wide. Returns the figure."""
    import seaborn as sns

    from mcutils.plotting import MAX_WIDTH

    line = curves.evaluate_curve(
        curves.linear_path(*ends), list(setup.ts), data.TensorLoader(split.val, 128),
        bn_loader=data.TensorLoader(split.bonafide(max(params["bonafide_sizes"])),
                                    params["repair_batch"]))
    prof = pd.concat([profiles, line.assign(method="straight line", n=0, seed=0)])
    # for the figure only: the methods in words, the straight line's n (none) in words
    sizes = sorted(int(n) for n in profiles.n.unique())
    prof = prof.assign(method=prof.method.map(method_label),
                       bonafide=prof.n.map(lambda n: str(int(n)) if n else "none"))
    # two panels a row, the legend in the free slot (or below the grid)
    panels = prof.method.nunique()
    g = sns.relplot(prof, x="t", y="accuracy", hue="bonafide",
                    hue_order=[str(n) for n in sizes] + ["none"], col="method", col_wrap=2,
                    kind="line", marker="o", height=0.9 * MAX_WIDTH / 2 / 1.4, aspect=1.4,
                    palette="viridis", errorbar=None, facet_kws={"legend_out": False})
    g.set_titles("{col_name}")
    g.set_axis_labels("curve parameter t", "clean validation accuracy")
    g.tight_layout()
    if panels % 2:
        sns.move_legend(g, "center", bbox_to_anchor=(0.75, 0.5 / -(-panels // 2)),
                        title="bonafide images", frameon=False)
    else:
        sns.move_legend(g, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(sizes) + 1,
                        title="bonafide images", frameon=False)
    return g.figure


@dataclass
class FaultStudy:
    """Section 2: the faulted models and their repair.

    Attributes:
        faulted: ``(model, info)`` of each faulted clean model
            (:func:`mcutils.faults.faulted_model`).
        injection: the infos as a table, one row per faulted model.
        sweep: the repair sweep; summary: its intervals (``acc``, ``fs``, ``restored``).
        table: the summary as text, one row per method and metric, one column per size.
    """

    faulted: list[tuple[nn.Module, dict[str, Any]]]
    injection: pd.DataFrame
    sweep: SweepResult
    summary: dict
    table: pd.DataFrame


def fault_study(params: Mapping[str, Any], clean: Sequence[nn.Module], split: DefenderSplit,
                setup: RepairSetup, lr_table: Mapping[str, Mapping[int, float]]) -> FaultStudy:
    """Inject the same ``num_faults`` errors (keeping ``num_keep`` other labels) into both
    clean models, with fault and keep sets drawn from the unused test images that both
    classify correctly, and repair the pair with ``fault_methods`` at ``fault_sizes``."""
    p = params
    # candidates: enough of the unused test images for both sets among correctly classified ones
    rest = split.rest.subset(torch.arange(min(len(split.rest),
                                              2 * (p["num_faults"] + p["num_keep"]) + 200)))
    fsets = faults.fault_sets(list(clean), rest.x, rest.y, p["num_faults"], p["num_keep"],
                              data.dataset_info(p["dataset"]).num_classes, seed=p["seed"])
    x_fault, y_fault = rest.x[fsets["fault_idx"]], fsets["y_fault"]
    faulted = [faults.faulted_model(m, x_fault, y_fault, rest.x[fsets["keep_idx"]],
                                    steps=p["fault_steps"], device=p["device"], seed=p["seed"])
               for m in clean]
    scorer = Scorer(split.test, faults={"x": x_fault, "y_fault": y_fault,
                                        "y_true": rest.y[fsets["fault_idx"]]})
    sweep = repair_sweep(setup.replace(ends=tuple(m for m, _ in faulted)), split,
                         scorer, methods=p["fault_methods"], sizes=p["fault_sizes"],
                         seeds=p["seeds"], lr_table=lr_table)
    summary = sweep_summary(sweep.rows, {"acc": "accuracy", "fs": "fault_success",
                                         "restored": "fault_restored"}, scorer.totals)
    return FaultStudy(faulted, pd.DataFrame([info for _, info in faulted]), sweep, summary,
                      interval_table(summary, p["fault_sizes"], ("acc", "fs", "restored")))


@dataclass
class AwareStudy:
    """Section 3: the path-aware attacker's released models and their repair.

    Attributes:
        ends: the two released models.
        scores: accuracy and ASR of the released models and of the midpoints of the plain
            and the path-aware pair.
        sweep: the Bezier repair of the released models; summary: its intervals.
    """

    ends: tuple[nn.Module, nn.Module]
    scores: pd.DataFrame
    sweep: SweepResult
    summary: dict


def path_aware_study(params: Mapping[str, Any], ends: TamperedEnds, setup: RepairSetup,
                     split: DefenderSplit, trigger: backdoor.Trigger,
                     lr_table: Mapping[str, Mapping[int, float]]) -> AwareStudy:
    """The attacker trains the two backdoored models jointly on its poisoned data so that
    the straight segment between them is backdoored
    (:func:`mcutils.backdoor.path_aware_backdoor`); the defender repeats the Bezier
    repair at ``adaptive_sizes`` with the learning rates of ``lr_table``."""
    p = params
    poison_train = data.load_dataset(p["dataset"], "train", subset=p["backdoor_subset"],
                                     seed=p["seed"])
    poison_train, _ = backdoor.poison(poison_train, p["target_class"], p["poison_rate"],
                                      trigger, seed=p["seed"])
    aware = tuple(backdoor.path_aware_backdoor(
        ends.backdoored[0], ends.backdoored[1], poison_train, steps=p["adaptive_steps"],
        lr=p["adaptive_lr"], batch_size=p["batch_size"], seed=p["seed"], device=p["device"]))
    mids = {"plain backdoored pair": curves.linear_path(*ends.backdoored).model_at(0.5),
            "path-aware pair": curves.linear_path(*aware).model_at(0.5)}
    scores = pd.DataFrame({**{f"released {i}": ends.scorer(m) for i, m in enumerate(aware)},
                           **{f"midpoint, {k}": ends.scorer(m) for k, m in mids.items()}}).T
    sweep = repair_sweep(setup.replace(ends=aware), split, ends.scorer,
                         methods=["bezier"], sizes=p["adaptive_sizes"], seeds=p["seeds"],
                         lr_table=lr_table)
    return AwareStudy(aware, scores, sweep, sweep_summary(sweep.rows, totals=ends.scorer.totals))


def plot_aware_vs_plain(plain: Mapping[str, Any], aware: Mapping[str, Any], sizes: Sequence[int],
                        floor: float | None = None):
    """The ASR after the Bezier repair against ``n``: the plain backdoor's (``plain``, a
    :func:`~mcutils.chapters.ch05_repair.sweep_summary`) and the path-aware attacker's
    (``aware``), at ``sizes``, with the trigger floor. Returns the axis."""
    return plot_vs_n({"Bezier repair, plain backdoor": {n: plain["bezier"][n]["asr"]
                                                        for n in sizes},
                      "Bezier repair, path-aware attacker": {n: aware["bezier"][n]["asr"]
                                                             for n in sizes}},
                     ylabel="attack success rate after repair", floor=floor)


@dataclass
class VariantStudy:
    """Section 4: the curve variants at ``variant_size``.

    Attributes:
        rows: :func:`mcutils.chapters.ch05_runs.variant_sweep`'s rows.
        summary: intervals over seeds per variant label.
        table: ``acc`` and ``asr`` as text, one row per variant.
    """

    rows: pd.DataFrame
    summary: dict
    table: pd.DataFrame


def curve_variants(params: Mapping[str, Any], setup: RepairSetup, split: DefenderSplit,
                   scorer: Scorer, lr_table: Mapping[str, Mapping[int, float]]) -> VariantStudy:
    """The chapter's Bezier curve against each of ``variants`` at ``variant_size`` over
    the seeds, with the learning rate tuned for the curve family."""
    p, size = params, params["variant_size"]
    rows = variant_sweep(setup, split, scorer, p["variants"], size,
                         p["seeds"], lr_table)
    summary = sweep_summary(rows.assign(method=rows.variant), totals=scorer.totals)
    table = pd.DataFrame({v: {k: stats.format_interval(s[size][k]) for k in ("acc", "asr")}
                          for v, s in summary.items()}).T
    return VariantStudy(rows, summary, table)
