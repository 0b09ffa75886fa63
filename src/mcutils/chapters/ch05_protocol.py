"""Chapter 05's protocol: one fair comparison of repairs of tampered models.

Used by chapter 05 only (its notebook; the claims, tables and figures built on the
sweeps are in :mod:`mcutils.chapters.ch05_repair`). The repair methods themselves are in
:mod:`mcutils.repair` and :mod:`mcutils.pruning`.

Methods (:data:`METHODS`):

* ``"bezier"``, ``"polychain"``: a curve between the two tampered models, trained on the
  bonafide data (:func:`mcutils.repair.cached_curve`); a point ``t`` is chosen by
  :func:`mcutils.repair.select_t`;
* ``"fine_tune"``: continue training one tampered model (:func:`mcutils.repair.fine_tune`);
* ``"fine_prune"``: fine-pruning (Liu et al. 2018): remove the channels of a conv layer
  that clean data activate least (:func:`mcutils.pruning.prune_filters`), then fine-tune;
* ``"scratch"``: re-initialise the architecture and train on the bonafide data only;
* ``"noise"``: the paper code's noise baseline, the ends' midpoint plus element-wise
  Gaussian noise of standard deviation ``|theta_1 - theta_0| / 2``
  (:func:`mcutils.repair.midpoint_noise`).

Protocol (the same for every method): the same bonafide images, the same weight decay
(SGD's L2 term for plain models, the L2 penalty on ``w(t)`` for curves: both the gradient
of ``wd/2 ||w||^2``), the same optimiser, schedule and learning-rate grid, and a budget in
epochs with a cap on steps (:func:`repair_budget`). Every choice (learning rate, the
curve's ``t``) uses only a clean validation split that the defender holds
(:class:`DefenderSplit`); the test images that measure accuracy and attack success are
never used for a choice. :func:`repair_sweep` runs the comparison over sizes and seeds,
:func:`variant_sweep` compares curve variants at one size;
:func:`mcutils.chapters.ch05_repair.sweep_summary` turns the rows into Student-t
intervals over seeds.

The chapter's parameters: :data:`PARAMETERS` (its schema, from which the notebook's
``parameters`` cell is rendered and which its validation cell calls) and :data:`EXPECTED`
(the claims asserted by the ``cpu`` profile). The tampered ends follow the official code
(``IBM/model-sanitization``: half of the non-target images poisoned, target class 1, SGD
with weight decay); ``variant_setup`` keeps the chapter's earlier set-up as a variant.
:func:`findings` (from :mod:`mcutils.chapters.ch05_findings`) records what the chapter
glues and its claims; the sections are run by :mod:`mcutils.chapters.ch05_study`, the runs
live in :mod:`mcutils.chapters.ch05_runs` (re-exported here), the explanations of where
the backdoor survives in :mod:`mcutils.chapters.ch05_midpoints`, and :func:`pool_parts` /
:func:`run_part` (:mod:`mcutils.chapters.ch05_parts`) let the book runner train the
independent pieces side by side before the notebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcutils.chapters.ch05_findings import findings
from mcutils.chapters.ch05_runs import (CURVE_METHODS, METHODS, PAPER_BUDGET, DefenderSplit,
                                        RepairRun, RepairSetup, Scorer, SweepResult,
                                        defender_split, lr_for_size, repair_budget,
                                        repair_sweep, run_repair, tune_lr, variant_sweep)
from mcutils.chapters.common import model_params
from mcutils.params import Param, ParameterSchema

__all__ = [
    "CURVE_METHODS",
    "EXPECTED",
    "METHODS",
    "PAPER_BUDGET",
    "END_KEYS",
    "INITS",
    "PARAMETERS",
    "PLACES",
    "DefenderSplit",
    "RepairRun",
    "RepairSetup",
    "Scorer",
    "SweepResult",
    "defender_split",
    "findings",
    "lr_for_size",
    "pool_parts",
    "repair_budget",
    "repair_sweep",
    "run_part",
    "run_repair",
    "tune_lr",
    "variant_sweep",
]


def _extra_seeds_are_new(p: Mapping[str, Any]) -> str | None:
    """The extra seeds of the Bezier curve must not repeat the sweep's seeds."""
    if set(p["extra_curve_seeds"]) & set(p["seeds"]):
        return (f"extra_curve_seeds {p['extra_curve_seeds']} must not repeat seeds "
                f"{p['seeds']}")
    return None


def _sizes_are_bonafide_sizes(p: Mapping[str, Any]) -> str | None:
    """Every size at which something is tuned, claimed or run is one of the sweep's sizes."""
    valid = list(p["bonafide_sizes"])
    bad = []
    for name in ("tune_sizes", "claim_small_n", "fault_sizes", "adaptive_sizes", "variant_size"):
        values = p[name] if isinstance(p[name], (list, tuple)) else [p[name]]
        bad += [f"{name}={v!r}" for v in values if v not in valid]
    if bad:
        return (f"{', '.join(bad)} not among bonafide_sizes; valid values: "
                f"{', '.join(map(str, valid))}")
    return None


def _variants_are_known(p: Mapping[str, Any]) -> str | None:
    """Each curve variant changes only ``curve`` (a curve method), ``num_bends`` or
    ``weight_decay``."""
    keys = ("curve", "num_bends", "weight_decay")
    for v in p["variants"]:
        if not isinstance(v, Mapping):
            return f"variants: {v!r} is not a mapping of {', '.join(keys)}"
        bad = sorted(set(v) - set(keys))
        if bad:
            return f"variants={bad[0]!r} is not known; valid values: {', '.join(keys)}"
        if v.get("curve", "bezier") not in CURVE_METHODS:
            return (f"variant_curves={v['curve']!r} is not known; valid values: "
                    f"{', '.join(CURVE_METHODS)}")
    return None


#: What an end set-up may change (:data:`PARAMETERS` ``variant_setup``).
END_KEYS = ("backdoor_subset", "poison_rate", "target_class", "end_optimizer", "end_lr",
            "end_epochs", "end_weight_decay", "end_schedule")
#: Trigger placements of the midpoint controls: the paper's corner, or the image centre,
#: where clean images have ink.
PLACES = ("corner", "centre")
#: Where a curve's bend starts: on the segment between the ends, or a random initialisation.
INITS = ("segment", "random")


def _variant_setup_is_known(p: Mapping[str, Any]) -> str | None:
    """The variant set-up changes only settings of the tampered ends (:data:`END_KEYS`)."""
    v = p["variant_setup"]
    if not isinstance(v, Mapping):
        return f"variant_setup: {v!r} is not a mapping of {', '.join(END_KEYS)}"
    bad = sorted(set(v) - set(END_KEYS))
    if bad:
        return f"variant_setup={bad[0]!r} is not known; valid values: {', '.join(END_KEYS)}"
    return None


def _controls_are_known(p: Mapping[str, Any]) -> str | None:
    """The midpoint controls' grid names known curves, placements and starts, and the
    budget curve holds at least 3 budgets, the largest at least 4x the smallest."""
    for name, valid in (("control_curves", CURVE_METHODS), ("control_places", PLACES),
                        ("control_inits", INITS)):
        bad = [v for v in p[name] if v not in valid]
        if bad or not p[name]:
            return f"{name}={bad or p[name]!r} is not known; valid values: {', '.join(valid)}"
    b = sorted(p["budget_steps"])
    if len(b) < 3 or b[-1] < 4 * b[0]:
        return f"budget_steps={p['budget_steps']} needs >= 3 budgets, the largest >= 4x the smallest"
    return None


#: Chapter 05's parameters: the default model's, then the protocol's (the cpu profile's
#: values; ``profiles/*.yaml`` override them). The tampered ends follow the official code
#: (``end_*``, ``poison_rate``, ``target_class``, the trigger); ``variant_setup`` is the
#: set-up of earlier versions of this chapter, kept as a named variant.
PARAMETERS = ParameterSchema("05", {
    **model_params(seed_help="seed of the test split's cut, the tampered ends (seed and "
                             "seed + 1) and the fault sets"),
    "seeds": Param([0, 1, 2], "each seed: a bonafide draw and the repairs' training seed",
                   range=(0, None), group="chapter 05"),
    "extra_curve_seeds": Param([], "more seeds of the Bezier curve at the largest n, "
                               "where its claims are read", range=(0, None)),
    "backdoor_subset": Param(10000, "training images of each tampered model (None: all)",
                             range=(100, None), nullable=True),
    "poison_rate": Param(0.5, "fraction of non-target training images poisoned (official: "
                         "perc_poison 0.5)", range=(0.001, 1)),
    "target_class": Param(1, "the label the backdoor sends triggered images to (official: 1)",
                          range=(0, 9)),
    "trigger_size": Param(3, "white square, one pixel from the bottom-right corner",
                          range=(1, 8)),
    "end_optimizer": Param("sgd", "optimiser of the tampered (and clean) ends",
                           choices=("sgd", "adam")),
    "end_lr": Param(0.05, "their learning rate", range=(1e-6, 10)),
    "end_epochs": Param(5, "their epochs over backdoor_subset", range=(1, None)),
    "end_weight_decay": Param(0.0001, "their weight decay (official: 1e-4)", range=(0, 1)),
    "end_schedule": Param("paper", "their schedule (official: the papers' train.py)",
                          choices=("cosine", "paper"), nullable=True),
    "variant_setup": Param({"backdoor_subset": 20000, "poison_rate": 0.1, "target_class": 0,
                            "end_optimizer": "adam", "end_lr": 0.001, "end_epochs": 2,
                            "end_weight_decay": 0.0, "end_schedule": None},
                           "the earlier set-up, run as a variant at the largest n"),
    "bonafide_sizes": Param([100, 2500], "clean images the defender trains on",
                            range=(2, 5000)),
    "val_size": Param(500, "the defender's clean validation split (every choice is made on "
                      "it)", range=(50, 5000)),
    "eval_size": Param(1000, "held-out test images: accuracy and attack success, never a "
                       "choice", range=(100, 5000)),
    "repair_epochs": Param(50, "budget of every method: epochs over the bonafide images ...",
                           range=(1, None)),
    "repair_max_steps": Param(200, "... capped at this many SGD steps (None: no cap)",
                              range=(1, None), nullable=True),
    "repair_batch": Param(64, "batch size of every repair", range=(1, None)),
    "repair_epoch_size": Param(None, "samples per epoch, the images tiled (None: one pass; "
                               "paper: 10000)", range=(1, None), nullable=True),
    "weight_decay": Param(0.0001, "the same L2 option for every method (the paper code's "
                          "default)", range=(0, 1)),
    "schedule": Param("paper", "learning-rate schedule of the papers' train.py "
                      "(mcutils.curves.lr_factor)", choices=("cosine", "paper"), nullable=True),
    "lrs": Param([0.01, 0.03, 0.1], "the learning-rate grid of every method", range=(1e-6, 10)),
    "lr_extend": Param(2, "extensions of the grid beyond an edge while the best rate is on it",
                       range=(0, 10)),
    "tune_sizes": Param([100, 2500], "sizes at which the grid is searched (seed 0); others "
                        "reuse"),
    "num_bends": Param(3, "bends including the ends: quadratic Bezier", range=(3, 10)),
    "num_ts": Param(11, "points of a curve evaluated on the validation split", range=(3, 101)),
    "t_tolerance": Param(0.02, "the defender's t: nearest 0.5 within this accuracy of the "
                         "better end", range=(0, 1)),
    "prune_tolerance": Param(0.05, "fine-pruning prunes while validation accuracy stays "
                             "within this of the end's (None: prune_fraction)", range=(0, 1),
                             nullable=True),
    "prune_fraction": Param(0.5, "share of channels fine-pruning silences without a "
                            "tolerance", range=(0, 0.95)),
    "claim_small_n": Param(100, 'the "little data" size at which comparisons are claimed'),
    "asr_max": Param(0.1, "an attack (or fault) success at most this counts as removed",
                     range=(0, 1)),
    "max_drop": Param(0.05, "clean accuracy a repair may lose against the better end",
                      range=(0, 1)),
    "control_curves": Param(["bezier", "polychain"], "curves of the midpoint controls (at "
                            "the largest n, the middle of the curve)"),
    "control_places": Param(["corner", "centre"], "trigger placements of the controls"),
    "control_inits": Param(["segment", "random"], "bend starts of the controls"),
    "budget_steps": Param([200, 800, 3200], "repair steps of the Bezier budget curve (largest "
                          "n)", range=(1, None)),
    "num_faults": Param(10, "error injection: images whose labels are changed", range=(8, 100)),
    "num_keep": Param(1000, "images whose labels the injection must keep (disjoint)",
                      range=(0, 5000)),
    "fault_steps": Param(300, "steps of the fault sneaking attack", range=(1, None)),
    "fault_sizes": Param([100], "bonafide sizes of the error-injection sweep"),
    "fault_methods": Param(["bezier", "fine_tune", "fine_prune", "scratch", "noise"],
                           "methods of the error-injection sweep", choices=METHODS),
    "adaptive_steps": Param(300, "the path-aware attacker's SGD steps on poisoned data",
                            range=(1, None)),
    "adaptive_lr": Param(0.05, "its learning rate", range=(1e-6, 10)),
    "adaptive_sizes": Param([2500], "bonafide sizes of the repair against it"),
    "variant_size": Param(100, "bonafide size of the curve variants"),
    "variants": Param([], "each changes curve, num_bends or weight_decay of the Bezier curve"),
}, checks=[_extra_seeds_are_new, _sizes_are_bonafide_sizes, _variants_are_known,
           _variant_setup_is_known, _controls_are_known])

#: The claims the cpu profile asserts (the others are measured and reported).
EXPECTED = ["curve_keeps_accuracy", "curve_beats_scratch", "curve_beats_noise"]


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Chapter 05's independent trainings for the runner's worker pool
    (:func:`mcutils.chapters.ch05_parts.parts`)."""
    from mcutils.chapters.ch05_parts import parts

    return parts(params)


def run_part(kind: str, params: Mapping[str, Any], **kw: Any) -> None:
    """Compute one pool part into the checkpoint cache
    (:func:`mcutils.chapters.ch05_parts.run_part`)."""
    from mcutils.chapters.ch05_parts import run_part as run

    run(kind, params, **kw)
