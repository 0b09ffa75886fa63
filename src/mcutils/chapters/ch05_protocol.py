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
(the claims asserted by the ``cpu`` profile). :func:`findings` (from
:mod:`mcutils.chapters.ch05_findings`) records what the chapter glues and its claims; the
sections are run by :mod:`mcutils.chapters.ch05_study`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils.chapters.ch05_findings import findings
from mcutils.chapters.common import model_params
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import OnDevice, model_device
from mcutils.params import Param, ParameterSchema
from mcutils.repair import cached_curve, cached_repair, midpoint_noise, select_t

if TYPE_CHECKING:
    from mcutils.backdoor import Trigger
    from mcutils.data import ImageDataset

__all__ = [
    "CURVE_METHODS",
    "EXPECTED",
    "METHODS",
    "PAPER_BUDGET",
    "PARAMETERS",
    "DefenderSplit",
    "RepairRun",
    "RepairSetup",
    "Scorer",
    "SweepResult",
    "defender_split",
    "findings",
    "lr_for_size",
    "repair_budget",
    "repair_sweep",
    "run_repair",
    "variant_sweep",
]

CURVE_METHODS = ("bezier", "polychain")
METHODS = (*CURVE_METHODS, "fine_tune", "fine_prune", "scratch", "noise")
#: The papers' repair budget, as :func:`repair_budget` arguments: ``train.py`` of
#: ``IBM/model-sanitization`` (``backdoor/``) trains 100 epochs (its default) at batch 128
#: on the bonafide images tiled to 10,000 per epoch: 7,900 steps at every ``n``.
PAPER_BUDGET = dict(epochs=100, batch_size=128, max_steps=None, epoch_size=10_000)


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


#: Chapter 05's parameters: the default model's (here: the training of the tampered ends),
#: then the protocol's (the cpu profile's values; ``profiles/*.yaml`` override them).
PARAMETERS = ParameterSchema("05", {
    **model_params(seed_help="seed of the test split's cut, the tampered ends (seed and "
                             "seed + 1) and the fault sets"),
    "seeds": Param([0, 1, 2], "each seed: a bonafide draw and the repairs' training seed",
                   range=(0, None), group="chapter 05"),
    "extra_curve_seeds": Param([3, 4], "more seeds of the Bezier curve at the largest n, "
                               "where its claims are read", range=(0, None)),
    "backdoor_subset": Param(20000, "training images of each tampered model (None: all)",
                             range=(100, None), nullable=True),
    "poison_rate": Param(0.1, "fraction of non-target training images poisoned",
                         range=(0.001, 1)),
    "target_class": Param(0, "the label the backdoor sends triggered images to", range=(0, 9)),
    "trigger_size": Param(3, "white square, one pixel from the bottom-right corner",
                          range=(1, 8)),
    "bonafide_sizes": Param([25, 100, 500, 2500], "clean images the defender trains on",
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
    "tune_sizes": Param([100, 2500], "sizes at which the grid is searched (seed 0); others "
                        "reuse"),
    "num_bends": Param(3, "bends including the ends: quadratic Bezier", range=(3, 10)),
    "num_ts": Param(11, "points of a curve evaluated on the validation split", range=(3, 101)),
    "t_tolerance": Param(0.02, "the defender's t: nearest 0.5 within this accuracy of the "
                         "better end", range=(0, 1)),
    "prune_fraction": Param(0.5, "share of channels fine-pruning silences", range=(0, 0.95)),
    "claim_small_n": Param(100, 'the "little data" size at which comparisons are claimed'),
    "asr_max": Param(0.1, "an attack (or fault) success at most this counts as removed",
                     range=(0, 1)),
    "max_drop": Param(0.05, "clean accuracy a repair may lose against the better end",
                      range=(0, 1)),
    "num_faults": Param(10, "error injection: images whose labels are changed", range=(8, 100)),
    "num_keep": Param(1000, "images whose labels the injection must keep (disjoint)",
                      range=(0, 5000)),
    "fault_steps": Param(300, "steps of the fault sneaking attack", range=(1, None)),
    "fault_sizes": Param([100, 500], "bonafide sizes of the error-injection sweep"),
    "fault_methods": Param(["bezier", "fine_tune", "fine_prune", "scratch", "noise"],
                           "methods of the error-injection sweep", choices=METHODS),
    "adaptive_steps": Param(300, "the path-aware attacker's SGD steps on poisoned data",
                            range=(1, None)),
    "adaptive_lr": Param(0.05, "its learning rate", range=(1e-6, 10)),
    "adaptive_sizes": Param([100, 2500], "bonafide sizes of the repair against it"),
    "variant_size": Param(500, "bonafide size of the curve variants"),
    "variants": Param([{"curve": "polychain"}, {"num_bends": 5}, {"weight_decay": 0.0}],
                      "each changes curve, num_bends or weight_decay of the Bezier curve"),
}, checks=[_extra_seeds_are_new, _sizes_are_bonafide_sizes, _variants_are_known])

#: The claims the cpu profile asserts (the others are measured and reported).
EXPECTED = ["curve_keeps_accuracy", "curve_beats_scratch", "curve_beats_noise"]


def repair_budget(n: int, epochs: int, batch_size: int = 64, max_steps: int | None = None,
                  epoch_size: int | None = None) -> tuple[int, int]:
    """The training budget for ``n`` bonafide images: ``(steps, batch)``.

    The batch is ``min(batch_size, n)``; the budget is ``epochs`` passes over the data,
    ``epochs * ceil(n / batch)`` steps, capped at ``max_steps``. Small sets get many
    epochs of few steps, large ones hit the cap (fewer epochs): data size and epochs are
    no longer confounded below the cap.

    ``epoch_size`` is the papers' budget: their code (``IBM/model-sanitization``,
    ``data.loaders_part_test``) tiles the ``n`` bonafide images into a training set of
    10,000, so one epoch is ``ceil(max(n, epoch_size) / batch_size)`` steps of
    ``batch_size`` samples whatever ``n`` is (100 epochs at batch 128: 7,900 steps). Below
    ``batch_size`` images a tiled batch repeats each image; here the batch holds each
    image once instead (the same expected gradient).
    """
    if (n < 1 or epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1)
            or (epoch_size is not None and epoch_size < 1)):
        raise ParameterError(f"need n, epochs, batch_size, max_steps, epoch_size >= 1 "
                             f"(got {n}, {epochs}, {batch_size}, {max_steps}, {epoch_size})")
    batch = min(batch_size, n)
    if epoch_size is None:
        steps = epochs * math.ceil(n / batch)
    else:
        steps = epochs * math.ceil(max(n, epoch_size) / batch_size)
    return (min(steps, max_steps) if max_steps is not None else steps), batch


@dataclass
class DefenderSplit:
    """The test split cut once: the defender's pool of clean images (bonafide sets and a
    validation split) and a held-out test set that measures the repairs.

    Attributes:
        pool: images from which bonafide sets are drawn.
        val: the defender's clean validation split (for every choice).
        test: held-out images for accuracy and attack success (never for a choice).
        rest: the remaining images (e.g. for fault and keep sets).
    """

    pool: ImageDataset
    val: ImageDataset
    test: ImageDataset
    rest: ImageDataset

    def bonafide(self, n: int, seed: int = 0) -> ImageDataset:
        """``n`` pool images drawn with ``seed``; for one seed smaller sets are nested in
        larger ones, and each seed is another draw."""
        if not 1 <= n <= len(self.pool):
            raise ParameterError(f"n={n} must lie in [1, {len(self.pool)}] (the pool size)")
        perm = torch.randperm(len(self.pool), generator=torch.Generator().manual_seed(seed))
        return self.pool.subset(perm[:n])


def defender_split(data: ImageDataset, pool_size: int, val_size: int, test_size: int,
                   seed: int = 0) -> DefenderSplit:
    """Cut ``data`` (a test split) into disjoint pool, validation, test and rest parts."""
    need = pool_size + val_size + test_size
    if min(pool_size, val_size, test_size) < 1 or need > len(data):
        raise ParameterError(f"pool_size + val_size + test_size = {need} must lie in "
                             f"[3, {len(data)}], each >= 1")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = np.cumsum([pool_size, val_size, test_size])
    return DefenderSplit(data.subset(perm[:cut[0]]), data.subset(perm[cut[0]:cut[1]]),
                         data.subset(perm[cut[1]:cut[2]]), data.subset(perm[cut[2]:]))


class Scorer:
    """Test metrics of a model: clean accuracy and, where given, the attack success rate
    of a backdoor trigger and the state of injected faults.

    Args:
        test: held-out test images.
        target, trigger: the backdoor (``asr`` is the share of triggered non-target test
            images sent to ``target``).
        faults: ``{"x", "y_fault", "y_true"}``: fault images, injected and true labels;
            adds ``fault_success`` (share taking the injected label), ``fault_restored``
            (share classified correctly again) and ``fault_hits`` (per image, 0/1).
        batch_size: evaluation batch (128 is fastest for small conv nets on 2 cores).
        device: where to evaluate (default: where each model is).

    Calling it on a model returns a dict; the model's mode and device are restored.
    """

    def __init__(self, test: ImageDataset, target: int | None = None,
                 trigger: Trigger | None = None, faults: Mapping[str, torch.Tensor] | None = None,
                 batch_size: int = 128, device: str | torch.device | None = None):
        if (target is None) != (trigger is None):
            raise ParameterError("give both target and trigger, or neither")
        self.x, self.y = test.x, test.y
        self.target, self.batch_size, self.device = target, batch_size, device
        self.x_trig = None
        if trigger is not None:
            keep = test.y != target
            if not keep.any():
                raise ParameterError("the test set holds no non-target images")
            self.x_trig = trigger.apply(test.x[keep])
        self.faults = None
        if faults is not None:
            missing = {"x", "y_fault", "y_true"} - set(faults)
            if missing:
                raise ParameterError(f"faults lacks {sorted(missing)}")
            self.faults = {k: faults[k] for k in ("x", "y_fault", "y_true")}

    @property
    def totals(self) -> dict[str, int]:
        """Images behind each rate it returns (for intervals from counts)."""
        out = {"accuracy": len(self.x)}
        if self.x_trig is not None:
            out["asr"] = len(self.x_trig)
        if self.faults is not None:
            out["fault_success"] = out["fault_restored"] = len(self.faults["x"])
        return out

    @torch.inference_mode()
    def _pred(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        dev = model_device(net)
        return torch.cat([net(x[i:i + self.batch_size].to(dev)).argmax(1).cpu()
                          for i in range(0, len(x), self.batch_size)])

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        with OnDevice(model, self.device) as net:
            out: dict[str, Any] = {
                "accuracy": float((self._pred(net, self.x) == self.y).float().mean())}
            if self.x_trig is not None:
                out["asr"] = float((self._pred(net, self.x_trig) == self.target).float().mean())
            if self.faults is not None:
                p = self._pred(net, self.faults["x"])
                hits = p == self.faults["y_fault"]
                out["fault_success"] = float(hits.float().mean())
                out["fault_restored"] = float((p == self.faults["y_true"]).float().mean())
                out["fault_hits"] = tuple(int(h) for h in hits)
        return out


@dataclass(frozen=True)
class RepairSetup:
    """What every method of one comparison shares.

    Attributes:
        ends: the two tampered models (``fine_tune`` and ``fine_prune`` start from
            ``ends[fine_tune_end]``).
        val: the defender's clean validation split.
        epochs, max_steps, batch_size, epoch_size: the budget (:func:`repair_budget`;
            ``epoch_size=10_000`` with 100 epochs at batch 128 is the papers' budget).
        weight_decay: the L2 option, the same for every method.
        momentum, schedule: SGD momentum and the learning-rate schedule.
        curve_bends: bends of the curves (3: one free bend between the ends).
        ts: points at which a curve is evaluated on the validation split.
        t_tolerance: accuracy the defender gives up when choosing ``t``
            (:func:`mcutils.repair.select_t`).
        prune_fraction: share of channels fine-pruning removes.
        fine_tune_end: which end the single-model baselines start from.
        eval_batch: evaluation batch size.
        device: where to train and evaluate.
    """

    ends: tuple[nn.Module, nn.Module]
    val: ImageDataset
    epochs: int = 50
    max_steps: int | None = 200
    batch_size: int = 64
    epoch_size: int | None = None
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str | None = "paper"
    curve_bends: int = 3
    ts: tuple[float, ...] = tuple(round(float(v), 4) for v in np.linspace(0, 1, 11))
    t_tolerance: float = 0.02
    prune_fraction: float = 0.5
    fine_tune_end: int = 0
    eval_batch: int = 128
    device: str = "cpu"

    def replace(self, **changes: Any) -> RepairSetup:
        """A copy with some fields changed (e.g. ``weight_decay=0.0`` for a variant)."""
        return dataclasses.replace(self, **changes)


@dataclass
class RepairRun:
    """One repair: the chosen model and what the defender saw while choosing it.

    ``criterion`` is the clean validation accuracy used to compare learning rates: of the
    model for the baselines, averaged over ``setup.ts`` for a curve (the curve's training
    objective is an average over ``t``). ``t`` is the chosen point of a curve (NaN
    otherwise) and ``models`` maps ``"chosen"`` (and ``"t=0.5"`` for curves) to models.
    """

    method: str
    n: int
    seed: int
    lr: float | None
    steps: int
    batch: int
    t: float
    val_accuracy: float
    criterion: float
    models: dict[str, nn.Module]
    profile: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _accuracy(model: nn.Module, data: ImageDataset, batch_size: int) -> float:
    from mcutils.data import TensorLoader

    with OnDevice(model) as net, torch.inference_mode():
        dev = model_device(net)
        correct = sum(int((net(x.to(dev)).argmax(1).cpu() == y).sum())
                      for x, y in TensorLoader(data, batch_size))
    return correct / len(data)


def run_repair(method: str, setup: RepairSetup, bonafide: ImageDataset, lr: float | None,
               seed: int = 0, progress: bool = False) -> RepairRun:
    """Run one method of :data:`METHODS` on ``bonafide`` with learning rate ``lr``.

    Trained models come from the cache when they exist. For a curve, the clean
    validation accuracy is measured at every ``setup.ts`` (BatchNorm statistics
    recomputed at each on the bonafide images) and ``t`` is chosen by
    :func:`mcutils.repair.select_t`.
    """
    from mcutils.curves import evaluate_curve
    from mcutils.data import TensorLoader

    if method not in METHODS:
        raise ParameterError(f"method={method!r} is not known; valid values: {', '.join(METHODS)}")
    if method != "noise" and (lr is None or lr <= 0):
        raise ParameterError(f"method {method!r} needs a learning rate > 0 (got {lr})")
    n = len(bonafide)
    steps, batch = repair_budget(n, setup.epochs, setup.batch_size, setup.max_steps,
                                 setup.epoch_size)
    bn_loader = TensorLoader(bonafide, batch)
    end = setup.ends[setup.fine_tune_end]
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    profile = None
    t = float("nan")
    if method in CURVE_METHODS:
        cm = cached_curve(setup.ends[0], setup.ends[1], bonafide, steps, lr=lr,
                          weight_decay=setup.weight_decay, curve=method,
                          num_bends=setup.curve_bends, batch_size=setup.batch_size,
                          schedule=setup.schedule, seed=seed, device=setup.device,
                          progress=progress, momentum=setup.momentum)
        seconds["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        profile = evaluate_curve(cm, list(setup.ts), TensorLoader(setup.val, setup.eval_batch),
                                 bn_loader=bn_loader)
        t = select_t(profile["t"], profile["accuracy"], setup.t_tolerance)
        models = {"chosen": cm.model_at(t, bn_loader), "t=0.5": cm.model_at(0.5, bn_loader)}
        val_acc = float(profile.loc[np.isclose(profile["t"], t), "accuracy"].iloc[0])
        criterion = float(profile["accuracy"].mean())
        seconds["select"] = time.perf_counter() - clock
    else:
        if method == "noise":
            model = midpoint_noise(setup.ends[0], setup.ends[1], seed=seed, bn_loader=bn_loader)
        else:
            model = cached_repair(method, end, bonafide, steps, lr=lr, batch_size=setup.batch_size,
                                  prune_fraction=setup.prune_fraction, seed=seed,
                                  device=setup.device, progress=progress,
                                  weight_decay=setup.weight_decay, schedule=setup.schedule,
                                  momentum=setup.momentum)
        seconds["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        models = {"chosen": model}
        val_acc = criterion = _accuracy(model, setup.val, setup.eval_batch)
        seconds["select"] = time.perf_counter() - clock
    return RepairRun(method, n, seed, lr, steps, batch, t, val_acc, criterion, models, profile,
                     seconds)


def lr_for_size(n: int, tuned: Mapping[int, float]) -> float:
    """The learning rate tuned at the size nearest ``n`` on a log scale (ties: the larger
    size)."""
    if not tuned:
        raise ParameterError("no tuned learning rates")
    size = min(tuned, key=lambda s: (abs(math.log(n / s)), -s))
    return tuned[size]


@dataclass
class SweepResult:
    """What :func:`repair_sweep` returns.

    Attributes:
        rows: one row per method (curves: also ``"<curve> (middle)"``, the point
            ``t = 0.5``), size ``n`` and seed, with ``lr``, ``steps``, ``t``,
            ``val_accuracy`` and the test metrics of the :class:`Scorer`.
        lrs: the learning rate used per method and size.
        tuning: validation criterion of every learning rate tried.
        profiles: validation accuracy along each curve (method, n, seed, t).
        seconds: wall time per run and stage (train or load, choose, score).
    """

    rows: pd.DataFrame
    lrs: pd.DataFrame
    tuning: pd.DataFrame
    profiles: pd.DataFrame
    seconds: pd.DataFrame

    def lr_table(self) -> dict[str, dict[int, float]]:
        """``{method: {n: lr}}`` for reuse in another sweep."""
        out: dict[str, dict[int, float]] = {}
        for r in self.lrs.itertuples():
            out.setdefault(r.method, {})[int(r.n)] = float(r.lr)
        return out


def repair_sweep(setup: RepairSetup, split: DefenderSplit, scorer: Callable[[nn.Module], dict],
                 methods: Sequence[str] = METHODS, sizes: Sequence[int] = (100,),
                 seeds: Sequence[int] = (0,), lrs: Sequence[float] = (0.01, 0.03, 0.1),
                 tune_sizes: Sequence[int] | None = None, tune_seed: int | None = None,
                 lr_table: Mapping[str, Mapping[int, float]] | None = None,
                 mid_rows: bool = True, progress: bool = True) -> SweepResult:
    """Run every method at every bonafide size and seed, under one protocol.

    Learning rates: for each method, each of ``lrs`` is tried on seed ``tune_seed``
    (default: the first seed) at each of ``tune_sizes`` (default: ``sizes``) and the one
    with the best clean validation criterion (:class:`RepairRun`) wins; a size uses the
    rate tuned at the nearest tuning size (:func:`lr_for_size`). With ``lr_table``
    (``{method: {n: lr}}``, e.g. another sweep's :meth:`SweepResult.lr_table`) nothing is
    tuned. The noise baseline has no learning rate.

    Args:
        setup: the shared protocol.
        split: the defender's data (bonafide draws and validation split).
        scorer: test metrics of a model (a :class:`Scorer`).
        methods, sizes, seeds: the grid; seed ``s`` draws the bonafide set and seeds the
            training.
        mid_rows: also score each curve at ``t = 0.5`` (method ``"<curve> (middle)"``).
        progress: a tqdm bar over the runs.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or not sizes or not seeds:
        raise ParameterError(f"methods {bad} unknown (valid: {', '.join(METHODS)}) or an "
                             "empty grid")
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ParameterError(f"lrs={list(lrs)} must be non-empty and positive")
    tune_sizes = list(tune_sizes or sizes)
    tune_seed = seeds[0] if tune_seed is None else tune_seed
    trained = [m for m in methods if m != "noise"]
    runs: dict[tuple, RepairRun] = {}
    tuning, lr_rows, timing = [], [], []
    jobs = []
    if lr_table is None:
        jobs += [(m, n, tune_seed, lr) for m in trained for n in tune_sizes for lr in lrs]
    bar = tqdm(total=len(jobs) + len(methods) * len(sizes) * len(seeds), desc="repairs",
               disable=not progress)

    def run(m: str, n: int, s: int, lr: float | None) -> RepairRun:
        key = (m, n, s, lr)
        if key not in runs:
            runs[key] = run_repair(m, setup, split.bonafide(n, s), lr, seed=s)
            timing.append(dict(method=m, n=n, seed=s, lr=lr, **runs[key].seconds))
        return runs[key]

    for m, n, s, lr in jobs:
        r = run(m, n, s, lr)
        tuning.append(dict(method=m, n=n, seed=s, lr=lr, criterion=r.criterion))
        bar.update(1)
    table: dict[str, dict[int, float]] = {}
    if lr_table is None:
        tdf = pd.DataFrame(tuning)
        for m in trained:
            table[m] = {}
            for n in tune_sizes:
                sub = tdf[(tdf.method == m) & (tdf.n == n)]
                table[m][n] = float(sub.loc[sub.criterion.idxmax(), "lr"])
    else:
        missing = [m for m in trained if m not in lr_table]
        if missing:
            raise ParameterError(f"lr_table has no learning rates for {missing}")
        table = {m: dict(lr_table[m]) for m in trained}
    # keep only tuning runs that the sweep reuses
    chosen = {(m, n, tune_seed, lr_for_size(n, table[m])) for m in trained for n in sizes}
    runs = {k: v for k, v in runs.items() if k in chosen}
    rows, profiles = [], []
    for s in seeds:
        for n in sizes:
            for m in methods:
                lr = None if m == "noise" else lr_for_size(n, table[m])
                r = run(m, n, s, lr)
                clock = time.perf_counter()
                base = dict(n=n, seed=s, lr=lr, steps=r.steps, batch=r.batch)
                rows.append(dict(method=m, **base, t=r.t, val_accuracy=r.val_accuracy,
                                 **scorer(r.models["chosen"])))
                if m in CURVE_METHODS and mid_rows:
                    rows.append(dict(method=f"{m} (middle)", **base, t=0.5,
                                     val_accuracy=float("nan"), **scorer(r.models["t=0.5"])))
                if r.profile is not None:
                    profiles.append(r.profile.assign(method=m, n=n, seed=s))
                timing.append(dict(method=m, n=n, seed=s, lr=lr,
                                   score=time.perf_counter() - clock))
                runs.pop((m, n, s, lr), None)
                bar.update(1)
    bar.close()
    for m in trained:
        for n in sizes:
            lr_rows.append(dict(method=m, n=n, lr=lr_for_size(n, table[m])))
    prof = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame()
    return SweepResult(pd.DataFrame(rows), pd.DataFrame(lr_rows, columns=["method", "n", "lr"]),
                       pd.DataFrame(tuning, columns=["method", "n", "seed", "lr", "criterion"]),
                       prof, pd.DataFrame(timing))


def variant_sweep(setup: RepairSetup, split: DefenderSplit, scorer: Callable[[nn.Module], dict],
                  variants: Sequence[Mapping[str, Any]], size: int, seeds: Sequence[int],
                  lr_table: Mapping[str, Mapping[int, float]], progress: bool = True
                  ) -> pd.DataFrame:
    """Curve variants at one bonafide size over seeds, each against the chapter's curve.

    Each variant changes some of ``curve`` (``"bezier"`` or ``"polychain"``),
    ``num_bends`` and ``weight_decay`` of the base setting (a Bezier curve with
    ``setup.curve_bends`` bends and ``setup.weight_decay``); the base itself is the first
    row. The learning rate is the one tuned for the curve family (``lr_table``).

    Returns:
        :attr:`SweepResult.rows` of every variant with a ``variant`` label column.
    """
    allowed = {"curve", "num_bends", "weight_decay"}
    frames = []
    for v in [{}, *variants]:
        bad = set(v) - allowed
        if bad:
            raise ParameterError(f"variant keys {sorted(bad)} unknown; valid: {sorted(allowed)}")
        curve = v.get("curve", "bezier")
        if curve not in CURVE_METHODS:
            raise ParameterError(f"curve={curve!r} is not known; valid: {CURVE_METHODS}")
        s = setup.replace(curve_bends=int(v.get("num_bends", setup.curve_bends)),
                          weight_decay=float(v.get("weight_decay", setup.weight_decay)))
        res = repair_sweep(s, split, scorer, methods=[curve], sizes=[size], seeds=seeds,
                           lr_table=lr_table, mid_rows=False, progress=progress)
        label = (f"{curve}, {s.curve_bends} bends, weight decay {s.weight_decay:g}")
        frames.append(res.rows.assign(variant=label))
    return pd.concat(frames, ignore_index=True)
