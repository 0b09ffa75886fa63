"""Chapter 05's runs: the defender's data, the scorer, the shared protocol of every repair
and the sweeps over methods, sizes and seeds.

Used by chapter 05 (through :mod:`mcutils.chapters.ch05_protocol`, which re-exports these
names, and :mod:`mcutils.chapters.ch05_study`). The repair methods themselves are in
:mod:`mcutils.repair` and :mod:`mcutils.pruning`.

* :func:`repair_budget`: the steps and batch of a repair of ``n`` bonafide images;
* :class:`DefenderSplit`, :func:`defender_split`: the test split cut once into the
  defender's pool and validation split, held-out test images and the rest;
* :class:`Scorer`: clean accuracy, attack success and fault success of a model;
* :class:`RepairSetup`, :func:`run_repair`: one repair under the shared protocol;
* :func:`tune_lr`, :func:`lr_for_size`: the learning-rate search on clean validation data,
  its grid extended until the chosen rate lies inside;
* :func:`repair_sweep`, :func:`variant_sweep`, :class:`SweepResult`: the comparison over
  methods, sizes and seeds.
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

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import OnDevice, model_device
from mcutils.repair import cached_curve, cached_repair, midpoint_noise, select_t

if TYPE_CHECKING:
    from mcutils.backdoor import Trigger
    from mcutils.data import ImageDataset

__all__ = [
    "CURVE_METHODS",
    "METHODS",
    "PAPER_BUDGET",
    "DefenderSplit",
    "RepairRun",
    "RepairSetup",
    "Scorer",
    "SweepResult",
    "defender_split",
    "lr_for_size",
    "repair_budget",
    "repair_sweep",
    "run_repair",
    "tune_lr",
    "variant_sweep",
]

CURVE_METHODS = ("bezier", "polychain")
METHODS = (*CURVE_METHODS, "fine_tune", "fine_prune", "scratch", "noise")
#: The papers' repair budget, as :func:`repair_budget` arguments: ``train.py`` of
#: ``IBM/model-sanitization`` (``backdoor/``) trains 100 epochs (its default) at batch 128
#: on the bonafide images tiled to 10,000 per epoch: 7,900 steps at every ``n``.
PAPER_BUDGET = dict(epochs=100, batch_size=128, max_steps=None, epoch_size=10_000)

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
        prune_fraction: share of channels fine-pruning removes (when ``prune_tolerance``
            is ``None``).
        prune_tolerance, prune_step: fine-pruning's stopping rule
            (:func:`mcutils.pruning.prune_until`): prune in steps of ``prune_step`` while the
            clean validation accuracy stays within ``prune_tolerance`` of the tampered
            model's.
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
    prune_tolerance: float | None = None
    prune_step: float = 0.1
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
    otherwise), ``prune_fraction`` the share fine-pruning removed (NaN otherwise) and
    ``models`` maps ``"chosen"`` (and ``"t=0.5"`` for curves) to models.
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
    prune_fraction: float = float("nan")


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
    from mcutils.pruning import prune_until

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
        fraction = setup.prune_fraction
        if method == "fine_prune" and setup.prune_tolerance is not None:
            fraction = float(prune_until(end, bn_loader, TensorLoader(setup.val, setup.eval_batch),
                                         setup.prune_tolerance, setup.prune_step)["fraction"])
        if method == "noise":
            model = midpoint_noise(setup.ends[0], setup.ends[1], seed=seed, bn_loader=bn_loader)
        else:
            model = cached_repair(method, end, bonafide, steps, lr=lr, batch_size=setup.batch_size,
                                  prune_fraction=fraction, seed=seed,
                                  device=setup.device, progress=progress,
                                  weight_decay=setup.weight_decay, schedule=setup.schedule,
                                  momentum=setup.momentum)
        seconds["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        models = {"chosen": model}
        val_acc = criterion = _accuracy(model, setup.val, setup.eval_batch)
        seconds["select"] = time.perf_counter() - clock
    return RepairRun(method, n, seed, lr, steps, batch, t, val_acc, criterion, models, profile,
                     seconds, fraction if method == "fine_prune" else float("nan"))


def tune_lr(criterion: Callable[[float], float], lrs: Sequence[float], extend: int = 0
            ) -> tuple[float, list[tuple[float, float]], bool]:
    """The learning rate with the highest ``criterion`` (clean validation accuracy), the
    grid ``lrs`` extended while the best rate lies on its edge.

    Each extension adds one rate beyond the best edge, a grid step (the ratio of the two
    smallest rates of ``lrs``, 3 for a one-rate grid) lower or higher, rounded to one
    significant digit, at most ``extend`` times on each side. Ties go to the smaller rate.

    Returns:
        ``(best, tried, inside)``: the chosen rate, ``[(lr, criterion), ...]`` in the
        order tried, and whether a tried rate lies on each side of the chosen one.
    """
    grid = sorted(float(v) for v in lrs)
    if not grid or grid[0] <= 0 or extend < 0:
        raise ParameterError(f"lrs={list(lrs)} must be non-empty and positive, extend >= 0")
    ratio = grid[1] / grid[0] if len(grid) > 1 else 3.0
    tried = {lr: float(criterion(lr)) for lr in grid}
    added = {"low": 0, "high": 0}
    while True:
        order = sorted(tried)
        best = max(order, key=lambda v: (tried[v], -v))
        side = "low" if best == order[0] else "high" if best == order[-1] else None
        if side is None or added[side] >= extend:
            break
        new = best / ratio if side == "low" else best * ratio
        new = float(f"{new:.1g}")
        if new in tried:
            break
        tried[new] = float(criterion(new))
        added[side] += 1
    order = sorted(tried)
    return best, list(tried.items()), order[0] < best < order[-1]


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
                 mid_rows: bool = True, progress: bool = True, lr_extend: int = 0
                 ) -> SweepResult:
    """Run every method at every bonafide size and seed, under one protocol.

    Learning rates: for each method, each of ``lrs`` is tried on seed ``tune_seed``
    (default: the first seed) at each of ``tune_sizes`` (default: ``sizes``) and the one
    with the best clean validation criterion (:class:`RepairRun`) wins, the grid extended
    at an edge up to ``lr_extend`` times while the best rate lies on it (:func:`tune_lr`;
    :attr:`SweepResult.lrs` says whether the chosen rate lies inside); a size uses the
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
        jobs += [(m, n) for m in trained for n in tune_sizes]
    bar = tqdm(total=len(jobs) * len(lrs) + len(methods) * len(sizes) * len(seeds),
               desc="repairs", disable=not progress)

    def run(m: str, n: int, s: int, lr: float | None) -> RepairRun:
        key = (m, n, s, lr)
        if key not in runs:
            runs[key] = run_repair(m, setup, split.bonafide(n, s), lr, seed=s)
            timing.append(dict(method=m, n=n, seed=s, lr=lr, **runs[key].seconds))
        return runs[key]

    table: dict[str, dict[int, float]] = {}
    inside: dict[tuple[str, int], bool] = {}
    for m, n in jobs:

        def criterion(lr: float, m: str = m, n: int = n) -> float:
            r = run(m, n, tune_seed, lr)
            tuning.append(dict(method=m, n=n, seed=tune_seed, lr=lr, criterion=r.criterion))
            bar.update(1)
            return r.criterion

        best, _, inside[(m, n)] = tune_lr(criterion, lrs, lr_extend)
        table.setdefault(m, {})[n] = best
    if lr_table is not None:
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
                base = dict(n=n, seed=s, lr=lr, steps=r.steps, batch=r.batch,
                            prune_fraction=r.prune_fraction)
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
            lr = lr_for_size(n, table[m])
            tuned_at = min(table[m], key=lambda k: (abs(math.log(n / k)), -k))
            lr_rows.append(dict(method=m, n=n, lr=lr,
                                inside=inside.get((m, tuned_at), float("nan"))))
    prof = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame()
    return SweepResult(pd.DataFrame(rows),
                       pd.DataFrame(lr_rows, columns=["method", "n", "lr", "inside"]),
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
