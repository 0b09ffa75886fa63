"""Chapter 03's orchestration: connectivity of untrained networks, the barrier's evolution
in the first training steps, and the width/steps sweep of the narrow ResNet, with the
intervals behind the chapter's claims. The per-pair tables and tolerance curves are
chapter 01's (:mod:`mcutils.chapters.ch01_input_space`); the narrow ResNet's width x steps
sweep is in :mod:`mcutils.chapters.ch03_sweep` and the figures in
:mod:`mcutils.chapters.ch03_untrained_figures`.

* :data:`PARAMETERS` is the chapter's parameter schema, :data:`EXPECTED` (and
  :func:`expected_claims`) its expected claims, :data:`CLAIMS` their statements and the
  paper's references; :func:`check_nonempty_lists`, :func:`check_sweep_base_seeds`,
  :func:`check_connect_tol` and :func:`check_pixel_box` are its cross-checks;
* :func:`study_settings` gives the settings every study shares (:class:`StudySettings`);
* :func:`build_untrained`, :func:`untrained_study`, :func:`synthetic_study` and
  :func:`synthesis_summary`: synthetic pairs of untrained (and trained) networks, connected;
* :func:`path_geometry`: how straight the connecting paths are;
* :func:`barrier_evolution`, :func:`track_training`, :func:`evolution_summary` and
  :func:`evolution_changes`: barriers during the first training batches;
* :func:`untrained_claims` and :func:`findings`: the claims, and what the chapter glues.

Used by chapter 03; tested at a tiny size in ``tests/test_inputspace_studies.py`` and
``tests/test_ch03_untrained.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch01_input_space import (PairSet, _claim, connect_sets, connected_flags,
                                               effect_word, pair_table, predict_labels,
                                               round_columns)
from mcutils.chapters.ch03_verdicts import (deviation_rows, fraction_with_seeds,
                                            measured_effects, planted_controls,
                                            shuffled_groups, straighter_interval)
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.report import ChapterReport
from mcutils.data import DatasetInfo, class_pairs, dataset_info, load_dataset
from mcutils.inputspace.paths import barrier, loss_profiles
from mcutils.inputspace.synthesis import FVO_PAPER, synthesize, synthetic_pairs
from mcutils.params import Param, ParameterSchema
from mcutils.zoo import trained_model

__all__ = ["PARAMETERS", "EXPECTED", "CLAIMS", "EFFECT_NAMES", "EVOLUTION_NAMES",
           "check_nonempty_lists", "check_sweep_base_seeds", "check_connect_tol",
           "check_pixel_box",
           "StudySettings", "expected_claims", "study_settings", "build_untrained",
           "untrained_study", "synthetic_study", "synthesis_summary", "path_geometry",
           "barrier_evolution", "track_training", "evolution_summary", "evolution_changes",
           "untrained_claims", "findings"]


def check_nonempty_lists(p: Mapping[str, Any]) -> str | None:
    """seeds, sweep_seeds, sweep_widths and sweep_step_factors must not be empty."""
    if not all(p[n] for n in ("seeds", "sweep_seeds", "sweep_widths", "sweep_step_factors")):
        return ("seeds, sweep_seeds, sweep_widths and sweep_step_factors must be "
                "non-empty lists")
    return None


def check_sweep_base_seeds(p: Mapping[str, Any]) -> str | None:
    """The base cell's seeds must include every other cell's seeds."""
    if not set(p["sweep_seeds"]) <= set(p["sweep_base_seeds"]):
        return (f"sweep_base_seeds={p['sweep_base_seeds']} must include "
                f"sweep_seeds={p['sweep_seeds']}")
    return None


def check_connect_tol(p: Mapping[str, Any]) -> str | None:
    """Paths are built at ``connect_tol``, a witness for every larger tolerance."""
    if p["connect_tol"] > p["tol"]:
        return f"connect_tol={p['connect_tol']} must not exceed tol={p['tol']}"
    return None


def check_pixel_box(p: Mapping[str, Any]) -> str | None:
    """``pixel_box`` is None or ``[low, high]`` with ``low < high``."""
    box = p["pixel_box"]
    if box is not None and (len(box) != 2 or not box[0] < box[1]):
        return f"pixel_box={box!r} must be None or [low, high] with low < high"
    return None


_SYNTH = ("synthetic inputs: the paper's feature visualisation in normalised units, shorter "
          "and faster")
PARAMETERS = ParameterSchema("03", {
    **model_params(seed_help="seed of the trained reference (the checkpoint of chapter 00)"),
    "model": Param("small_cnn", "untrained architecture studied, tracked in training, "
                   "and the trained reference"),
    "seeds": Param([0, 1, 2, 3, 4], "random initialisations of the untrained model (and tracked "
                   "training runs)", range=(0, None)),
    "num_classes_used": Param(None, "None: all classes; else the first N classes",
                              range=(2, None), nullable=True),
    "pairs_per_class": Param(2, "synthetic pairs per class and seed", range=(1, 100)),
    "tol": Param(0.01, "main tolerance (nats)", range=(1e-6, 10)),
    "connect_tol": Param(0.001, "paths are built at this tolerance, a witness for every "
                         "larger one", range=(1e-6, 10)),
    "tolerances": Param([0.001, 0.003, 0.01, 0.03, 0.1], "tolerances reported (nats)",
                        range=(1e-6, 10)),
    "max_rounds": Param(2, "bypass rounds (1: 2-segment paths, 2: up to 4 segments)",
                        range=(1, 10)),
    "num_points": Param(200, "points per straight path (the paper's 200)", range=(3, None)),
    "synth_steps": Param(200, "maximum Adam steps (paper: 8192)", range=(1, None), group=_SYNTH),
    "synth_lr": Param(1.0, "Adam learning rate (paper: 0.05)", range=(1e-6, 10)),
    "synth_stop_loss": Param(0.0005, "stop once the class loss is below this (paper)",
                             range=(0, 10)),
    "synth_init_std": Param(0.01, "initial noise around the dataset mean (paper)", range=(0, 1)),
    "synth_weight_decay": Param(1e-7, "(paper)", range=(0, 1)),
    "synth_tv_weight": Param(2.5e-7, "smoothness penalty of A only, summed differences (paper)",
                             range=(0, 1)),
    "bypass_steps": Param(200, "maximum Adam steps (paper: 4096)", range=(1, None),
                          group="free optimisation of barrier points: the paper's, shorter "
                          "and faster"),
    "bypass_lr": Param(1.0, "(paper: 0.05)", range=(1e-6, 10)),
    "bypass_stop_loss": Param(0.0005, "(paper)", range=(0, 10)),
    "bypass_weight_decay": Param(1e-7, "(paper)", range=(0, 1)),
    "pixel_box": Param(None, "None: inputs may leave [0, 1] (as in the paper); [0.0, 1.0]: "
                       "they may not", nullable=True),
    "sweep_model": Param("resnet18_cifar", group="the narrow ResNet: width x optimisation budget"),
    "sweep_widths": Param([4, 16], "the first is the base width", range=(1, 512)),
    "sweep_step_factors": Param([1, 4], "multipliers of synth_steps and bypass_steps; the "
                                "first is the base", range=(0.01, 100)),
    "sweep_seeds": Param([0], range=(0, None)),
    "sweep_base_seeds": Param([0, 1, 2, 3, 4], "seeds of the base cell, whose pairs the claim "
                              "reads (includes sweep_seeds)", range=(0, None)),
    "track_batches": Param(30, "training batches followed (paper: 30)", range=(1, None),
                           group="barrier evolution during training (the paper's appendix F.1)"),
    "track_every": Param(5, "measure before training and after every this many batches",
                         range=(1, None)),
    "track_batch_size": Param(512, "(paper)", range=(1, None)),
    "track_lr": Param(0.001, "Adam (paper)", range=(1e-8, 10)),
    "track_points": Param(100, "points per straight path (paper: 200)", range=(3, None)),
    "track_synth_steps": Param(400, "(paper: 4096)", range=(1, None)),
    "track_synth_stop_loss": Param(0.005, "(paper's appendix script)", range=(0, 10)),
    "claim_frac": Param(0.9, "claims: at least this fraction of pairs connected", range=(0, 1)),
    "barrier_frac": Param(0.5, "claim: at least this fraction of straight paths with a barrier "
                          "of at least tol", range=(0, 1)),
}, checks=[check_nonempty_lists, check_sweep_base_seeds, check_connect_tol, check_pixel_box])

#: the expected claim ids; ``connected_{model}`` names the chapter's untrained model
EXPECTED = ["connected_{model}", "straight_barriers", "trained_straighter"]

#: the claims' statements (formatted with the run's values) and the paper's references
CLAIMS = {
    "connected_model": dict(
        statement="untrained {model}: fraction of synthetic pairs connected (< {tol:g} nats) "
                  "within {rounds} rounds >= {frac:g}",
        paper="random-init ResNet-18, FVO pairs, free optimisation of B (sec. 4.3, Fig. 7)"),
    "connected_pooled": dict(
        statement="all untrained models pooled: fraction connected (< {tol:g} nats) within "
                  "{rounds} rounds >= {frac:g}",
        paper="random-init ResNet-18, FVO pairs, free optimisation of B (sec. 4.3, Fig. 7)"),
    "straight_barriers": dict(
        statement="straight paths between untrained synthetic pairs have barriers: fraction "
                  "with a barrier >= {tol:g} nats >= {frac:g}",
        paper="Fig. 7 (primary loss curve has a barrier)"),
    "trained_straighter": dict(
        statement="trained networks connect synthetic pairs by straighter paths: median path "
                  "length / |C - A|, untrained minus trained, > 0",
        paper="trained models: small deviation from a linear path (abstract)"),
}


def expected_claims(model: str) -> list[str]:
    """The ids of the claims chapter 03 expects to reproduce with the untrained ``model``."""
    return [c.format(model=model) for c in EXPECTED]


def _profile_stats(model: nn.Module, ps: PairSet, num_points: int) -> dict[str, list[float]]:
    prof = loss_profiles(model, ps.a, ps.c, ps.targets, num_points=num_points)
    end = torch.maximum(prof[:, 0], prof[:, -1])
    return dict(end_loss=end.tolist(), peak=barrier(prof, "max").tolist(),
                gap=barrier(prof, "gap").tolist())


def build_untrained(name: str, dataset: str, seed: int, **kwargs: Any) -> nn.Module:
    """A randomly initialised network of a registered architecture, in eval mode.

    Seeds everything with ``seed`` first (:func:`mcutils.core.runtime.seed_everything`), as
    :func:`mcutils.zoo.trained_model` does, so seed ``s`` gives the initialisation
    from which the cached model of that seed was trained.
    """
    from mcutils.core.runtime import seed_everything
    from mcutils.models import build_for_dataset

    seed_everything(seed)
    return build_for_dataset(name, dataset, **kwargs).eval()


def untrained_study(nets: Mapping[int, nn.Module], classes: Sequence[int], shape: Sequence[int],
                    pairs_per_class: int, synth: Mapping, connect_kw: Mapping, tol: float,
                    num_points: int = 200, real_x: torch.Tensor | None = None,
                    real_pairs_per_class: int = 0,
                    real_box: tuple[float, float] | None = (0.0, 1.0),
                    labels: Mapping[str, Any] | None = None,
                    keep_pairs: dict | None = None) -> pd.DataFrame:
    """Connect synthetic (and real) same-class pairs of networks, seed by seed.

    For each ``seed, net`` of ``nets``: :func:`~mcutils.inputspace.synthetic_pairs` makes ``pairs_per_class``
    pairs per class with ``synth`` (noise seeded by the seed); :func:`~mcutils.inputspace.connect` (with
    ``connect_kw`` and ``tol``) connects them. With ``real_x`` and
    ``real_pairs_per_class``, real inputs labelled by the network's own prediction are
    paired and connected too (inside ``real_box``). With ``keep_pairs`` (a dict), the
    :class:`~mcutils.inputspace.SyntheticPairs` of each seed are stored in it under the seed.

    Returns:
        A :func:`~mcutils.chapters.ch01_input_space.pair_table` with keys ``seed`` and ``kind`` (``synthetic``/``real``),
        plus ``end_loss`` (worse endpoint), ``peak`` (highest loss on the straight path)
        and ``gap`` (their difference) from a ``num_points`` profile, ``loss_a``,
        ``loss_c``, ``steps_a``, ``steps_c`` (synthesis; NaN for real pairs) and the
        constant columns in ``labels``.
    """
    if not nets:
        raise ParameterError("nets must hold at least one seed's network")
    frames = []
    targets = torch.tensor(list(classes)).repeat_interleave(pairs_per_class)
    for s, net in nets.items():
        syn = synthetic_pairs(net, targets, shape, generator=torch.Generator().manual_seed(s),
                              **synth)
        if keep_pairs is not None:
            keep_pairs[s] = syn
        sets = {(s, "synthetic"): PairSet(syn.a, syn.c, syn.targets)}
        res = connect_sets(net, sets, tol=tol, **connect_kw)
        tab = pair_table(res, sets, ["seed", "kind"])
        for k, v in _profile_stats(net, sets[s, "synthetic"], num_points).items():
            tab[k] = v
        tab["loss_a"], tab["loss_c"] = syn.loss_a.tolist(), syn.loss_c.tolist()
        tab["steps_a"], tab["steps_c"] = syn.steps_a.tolist(), syn.steps_c.tolist()
        frames.append(tab)
        if real_x is not None and real_pairs_per_class:
            pred = predict_labels(net, real_x)
            i, j = class_pairs(pred, real_pairs_per_class, seed=s)
            if len(i):
                rs = {(s, "real"): PairSet(real_x[i], real_x[j], pred[i])}
                kw = dict(connect_kw, box=real_box)
                res = connect_sets(net, rs, tol=tol, **kw)
                tab = pair_table(res, rs, ["seed", "kind"])
                for k, v in _profile_stats(net, rs[s, "real"], num_points).items():
                    tab[k] = v
                frames.append(tab)
    out = pd.concat(frames, ignore_index=True)
    for k, v in (labels or {}).items():
        out[k] = v
    return out


def barrier_evolution(arch: str, dataset: str, train_set: Any, seeds: Sequence[int],
                      num_batches: int, every: int, batch_size: int, lr: float,
                      classes: Sequence[int], shape: Sequence[int], pairs_per_class: int,
                      synth: Mapping, num_points: int = 200, device: str = "cpu",
                      model_kwargs: Mapping[str, Any] | None = None,
                      progress: bool = False) -> pd.DataFrame:
    """Barrier evolution during the first training batches, as in the paper's appendix F.1.

    For each seed: a fresh network (:func:`build_untrained`) is trained with Adam
    (learning rate ``lr``) on ``num_batches`` batches of ``batch_size`` drawn from
    ``train_set`` (a random subset, shuffled with the seed). Before the first batch and
    after every ``every``-th batch (and the last) the straight-path loss profile
    (``num_points`` points) is measured for two sets of pairs:

    * ``re-synthesised``: new pairs made by :func:`~mcutils.inputspace.synthetic_pairs` (with ``synth``)
      for the *current* network, ``pairs_per_class`` per class (the paper's protocol);
    * ``fixed at init``: the pairs synthesised for the initial network, kept fixed
      (their barrier also moves because their endpoints stop being confident).

    Returns:
        Rows ``(seed, step, protocol, pair, target, max_loss, gap, end_loss)``:
        ``max_loss`` is the highest loss on the path (the paper's metric), ``gap`` the
        barrier over the worse endpoint, ``end_loss`` the worse endpoint's loss.
    """
    from mcutils.data import TensorLoader
    from mcutils.training import train

    if not isinstance(every, int) or every < 1:
        raise ParameterError(f"every={every!r} must be a positive integer")
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ParameterError(f"num_batches={num_batches!r} must be a positive integer")
    targets = torch.tensor(list(classes)).repeat_interleave(pairs_per_class)
    rows: list[dict[str, Any]] = []
    tx, ty = train_set.tensors[0], train_set.tensors[1]
    for s in seeds:
        net = build_untrained(arch, dataset, s, **(model_kwargs or {}))
        fixed: list[PairSet] = []

        def measure(step: int, model: nn.Module, s: int = s, fixed: list = fixed) -> None:
            if (step % every and step != num_batches) or step > num_batches:
                return
            gen = torch.Generator().manual_seed(1_000_003 * s + step)
            syn = synthetic_pairs(model, targets, shape, generator=gen, **synth)
            fresh = PairSet(syn.a, syn.c, syn.targets)
            if not fixed:
                fixed.append(fresh)
            for name, ps in (("re-synthesised", fresh), ("fixed at init", fixed[0])):
                st = _profile_stats(model, ps, num_points)
                for p in range(len(ps)):
                    rows.append(dict(seed=s, step=step, protocol=name, pair=p,
                                     target=int(ps.targets[p]), max_loss=st["peak"][p],
                                     gap=st["gap"][p], end_loss=st["end_loss"][p]))

        measure(0, net)
        gen = torch.Generator().manual_seed(s)
        idx = torch.randperm(len(tx), generator=gen)[:num_batches * batch_size]
        sub = torch.utils.data.TensorDataset(tx[idx], ty[idx])
        loader = TensorLoader(sub, batch_size, shuffle=False, seed=s)
        train(net, loader, epochs=1, lr=lr, device=device, callback=measure, seed=s,
              progress=progress, desc=f"evolution seed {s}")
    return pd.DataFrame(rows)


def evolution_summary(df: pd.DataFrame, metric: str = "max_loss") -> pd.DataFrame:
    """Per protocol and step: the mean of ``metric`` over pairs in each seed, then a
    Student-t interval over seeds (:func:`mcutils.core.stats.seed_interval`)."""
    rows = []
    per_seed = df.groupby(["protocol", "step", "seed"], as_index=False)[metric].mean()
    for (proto, step), sub in per_seed.groupby(["protocol", "step"], sort=True):
        iv = stats.seed_interval(sub[metric].to_numpy())
        rows.append(dict(protocol=proto, step=int(step), estimate=iv["estimate"],
                         lo=iv["ci"][0], hi=iv["ci"][1], n=iv["n"]))
    return pd.DataFrame(rows)




def untrained_claims(table: pd.DataFrame, tol: float, claim_frac: float = 0.9,
                     barrier_frac: float = 0.5, model_col: str = "model",
                     trained_label: str | None = None, seed: int = 0,
                     controls: Mapping[str, Any] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """The claims of chapter 03 from the synthetic pairs of its untrained networks.

    ``table`` holds synthetic pairs with a ``model`` column (one label per untrained
    architecture, plus ``trained_label`` for the trained network) and ``seed`` and
    ``target`` columns.

    * ``connected_<model>`` per untrained model and ``connected_pooled``: the fraction
      connected (barrier < ``tol``) after the last round is at least ``claim_frac``,
      with an exact (Clopper-Pearson) interval over pairs and each seed's fraction
      (:func:`~mcutils.chapters.ch03_verdicts.fraction_with_seeds`);
    * ``straight_barriers``: the fraction of untrained pairs whose straight path has a
      barrier of at least ``tol`` is at least ``barrier_frac`` (exact interval);
    * ``trained_straighter`` (with ``trained_label``): the median relative path length
      of untrained minus trained pairs is above 0 (strict), with a hierarchical
      bootstrap (seed -> class -> pair) of each group
      (:func:`~mcutils.chapters.ch03_verdicts.straighter_interval`); its control is
      the same check with the pairs shuffled between the groups.

    ``controls`` (from :func:`~mcutils.chapters.ch03_verdicts.planted_controls`) gives the
    connectivity claims (``"connected"``) and ``straight_barriers`` (``"barrier"``) their
    negative controls. Each claim carries ``method`` and, where it has one, ``control``.
    """
    rounds = round_columns(table)
    untrained = table[table[model_col] != trained_label] if trained_label else table
    ctl = dict(controls or {})
    out: dict[str, dict[str, Any]] = {}
    for model, sub in untrained.groupby(model_col, sort=False):
        iv = fraction_with_seeds(connected_flags(sub, tol), sub["seed"])
        text = CLAIMS["connected_model"]
        out[f"connected_{model}"] = _claim(
            text["statement"].format(model=model, tol=tol, rounds=len(rounds) - 1, frac=claim_frac),
            text["paper"], iv, claim_frac, ">=")
        out[f"connected_{model}"].update(method=iv["method"], control=ctl.get("connected"))
    iv = stats.fraction_interval(connected_flags(untrained, tol).astype(int))
    text = CLAIMS["connected_pooled"]
    out["connected_pooled"] = _claim(
        text["statement"].format(tol=tol, rounds=len(rounds) - 1, frac=claim_frac),
        text["paper"], iv, claim_frac, ">=")
    out["connected_pooled"].update(
        method=f"exact binomial (Clopper-Pearson) over {len(untrained)} pairs of "
               f"{untrained[model_col].nunique()} model(s)", control=ctl.get("connected"))
    has = 1.0 - connected_flags(untrained, tol, rounds[0])
    iv = stats.fraction_interval(has.astype(int))
    text = CLAIMS["straight_barriers"]
    out["straight_barriers"] = _claim(text["statement"].format(tol=tol, frac=barrier_frac),
                                      text["paper"], iv, barrier_frac, ">=")
    out["straight_barriers"].update(
        method=f"exact binomial (Clopper-Pearson) over {len(untrained)} pairs",
        control=ctl.get("barrier"))
    if trained_label is not None:
        tr = table[table[model_col] == trained_label]
        if len(tr):
            iv = straighter_interval(untrained, tr, seed=seed)
            text = CLAIMS["trained_straighter"]
            out["trained_straighter"] = _claim(text["statement"], text["paper"], iv, 0.0, ">")
            shuffled = straighter_interval(*shuffled_groups(untrained, tr, seed=seed), seed=seed)
            out["trained_straighter"].update(method=iv["method"], control=dict(
                statement="the same check with the pairs shuffled between untrained and "
                          "trained (exchangeable groups: no difference by construction)",
                result=shuffled))
    for claim in out.values():
        if claim["control"] is None:
            del claim["control"]
    return out


@dataclass(frozen=True)
class StudySettings:
    """What every study of chapter 03 shares: the dataset's facts, the classes used, and
    the keyword arguments of the synthesis (``synth``) and of the bypass (``connect``)."""

    info: DatasetInfo
    classes: list[int]
    synth: dict[str, Any]
    connect: dict[str, Any]


def study_settings(params: Mapping[str, Any]) -> StudySettings:
    """The chapter's :class:`StudySettings` from its validated parameters: the paper's
    feature visualisation and free bypass in normalised units (no hyperplane, no deviation
    penalty), inside ``pixel_box`` when it is set."""
    p = params
    info = dataset_info(p["dataset"])
    box = tuple(p["pixel_box"]) if p["pixel_box"] else None
    synth = dict(steps=p["synth_steps"], lr=p["synth_lr"], stop_loss=p["synth_stop_loss"],
                 init_std=p["synth_init_std"], weight_decay=p["synth_weight_decay"],
                 tv_weight=p["synth_tv_weight"], tv_reduction="sum", space="normalized",
                 box=box)
    connect = dict(max_rounds=p["max_rounds"], steps=p["bypass_steps"], lr=p["bypass_lr"],
                   deviation_weight=0.0, tv_weight=0.0, weight_decay=p["bypass_weight_decay"],
                   stop_loss=p["bypass_stop_loss"], constrain=False, space="normalized",
                   box=box, num_points=None)
    return StudySettings(info, list(range(p["num_classes_used"] or info.num_classes)),
                         synth, connect)


def synthetic_study(params: Mapping[str, Any], cfg: StudySettings) -> dict[str, Any]:
    """Synthetic pairs of the untrained ``model`` (one network per seed of ``seeds``) and
    of the trained reference (the checkpoint of chapter 00), connected by free bypass
    rounds (:func:`untrained_study`), and the statistics the chapter reports about them.

    Returns:
        A dict with ``untrained`` and ``trained`` (pair tables, labelled by ``model`` and
        ``state``), ``pairs`` (seed -> the untrained network's
        :class:`~mcutils.inputspace.SyntheticPairs`), ``end_losses`` (class losses of
        every untrained synthetic input), ``reached`` (the fraction below
        ``synth_stop_loss``), ``boxed_loss`` (class losses when the first seed's inputs
        are kept inside [0, 1]) and ``ratio_iv`` (median of highest straight-path loss
        over worse endpoint loss, with a hierarchical bootstrap interval: seed -> class
        -> pair).
    """
    p = params
    seeds, model = p["seeds"], p["model"]
    nets = {s: build_untrained(model, p["dataset"], s) for s in seeds}
    made: dict = {}
    untrained = untrained_study(nets, cfg.classes, cfg.info.shape, p["pairs_per_class"],
                                cfg.synth, cfg.connect, p["connect_tol"],
                                num_points=p["num_points"],
                                labels=dict(model=model, state="untrained"), keep_pairs=made)
    trained_net = trained_model(
        dataset=p["dataset"], model=model, epochs=p["num_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["train_subset"], seed=p["seed"],
        device=p["device"])
    trained = untrained_study({p["seed"]: trained_net}, cfg.classes, cfg.info.shape,
                              p["pairs_per_class"], cfg.synth, cfg.connect, p["connect_tol"],
                              num_points=p["num_points"],
                              labels=dict(model=f"trained {model}", state="trained"))
    end_losses = np.concatenate([untrained["loss_a"], untrained["loss_c"]])
    reached = float((end_losses < p["synth_stop_loss"]).mean())
    _, boxed_loss = synthesize(
        nets[seeds[0]], torch.tensor(cfg.classes), cfg.info.shape, steps=p["synth_steps"],
        lr=p["synth_lr"], stop_loss=p["synth_stop_loss"], init_std=p["synth_init_std"],
        weight_decay=p["synth_weight_decay"], space="normalized", box=(0.0, 1.0),
        generator=torch.Generator().manual_seed(seeds[0]))
    ratio_iv = stats.hierarchical_bootstrap_ci(
        (untrained["peak"] / untrained["end_loss"]).to_numpy(float),
        [untrained["seed"].to_numpy(), untrained["target"].to_numpy()], np.median, seed=seeds[0])
    return dict(untrained=untrained, trained=trained, pairs=made, end_losses=end_losses,
                reached=reached, boxed_loss=boxed_loss, ratio_iv=ratio_iv)


def synthesis_summary(study: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """Three lines about a :func:`synthetic_study`: the class losses its synthetic inputs
    reached, those reached inside [0, 1], and the straight paths' peak ratio."""
    p, end, boxed, iv = params, study["end_losses"], study["boxed_loss"], study["ratio_iv"]
    return "\n".join([
        f"untrained {p['model']}: {len(study['untrained'])} synthetic pairs; class loss of their "
        f"inputs: median {np.median(end):.2e}, max {end.max():.2e}; {study['reached']:.3f} "
        f"reached {p['synth_stop_loss']:g} within {p['synth_steps']} steps",
        f"inside [0, 1] instead (seed {p['seeds'][0]}): median class loss "
        f"{boxed.median():.3f}, lowest {boxed.min():.3f}",
        f"straight paths: highest loss / worse endpoint loss, median {iv['estimate']:.1f} "
        f"{[round(v, 1) for v in iv['ci']]}"])


def path_geometry(both: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Median relative path length and chord deviation per model, with hierarchical
    bootstrap intervals (seed -> class -> pair): rows ``(model, statistic, median, lo,
    hi, pairs)``."""
    rows = []
    for name, sub in both.groupby("model", sort=False):
        levels = [sub["seed"].to_numpy(), sub["target"].to_numpy()]
        for col in ["rel_length", "chord_deviation"]:
            iv = stats.hierarchical_bootstrap_ci(sub[col].to_numpy(float), levels, np.median,
                                                 seed=seed)
            rows.append(dict(model=name, statistic=col, median=iv["estimate"], lo=iv["ci"][0],
                             hi=iv["ci"][1], pairs=len(sub)))
    return pd.DataFrame(rows)





def track_training(params: Mapping[str, Any], cfg: StudySettings) -> pd.DataFrame:
    """:func:`barrier_evolution` of the untrained ``model`` for every seed of ``seeds``,
    trained on the chapter's training split with the ``track_*`` parameters (its pairs
    synthesised with ``track_synth_steps`` and ``track_synth_stop_loss``)."""
    p = params
    train_set = load_dataset(p["dataset"], "train", subset=p["train_subset"], seed=p["seed"])
    synth = dict(cfg.synth, steps=p["track_synth_steps"], stop_loss=p["track_synth_stop_loss"])
    return barrier_evolution(p["model"], p["dataset"], train_set, p["seeds"],
                             p["track_batches"], p["track_every"], p["track_batch_size"],
                             p["track_lr"], cfg.classes, cfg.info.shape, p["pairs_per_class"],
                             synth, num_points=p["track_points"], device=p["device"])


def evolution_changes(evolution: pd.DataFrame) -> dict[str, Any]:
    """Per protocol of a :func:`barrier_evolution`: the change of the pairs' mean highest
    loss (``max_loss``) and of their mean barrier over the worse endpoint (``gap``) from
    the first to the last step, with a Student-t interval over runs.

    Returns:
        ``{"first", "last", "max_loss": {protocol: interval}, "gap": {protocol: interval}}``.
    """
    per_run = evolution.groupby(["protocol", "seed", "step"], as_index=False)[
        ["max_loss", "gap", "end_loss"]].mean()
    first, last = per_run["step"].min(), per_run["step"].max()
    out: dict[str, Any] = dict(first=first, last=last, max_loss={}, gap={})
    for proto, sub in per_run.groupby("protocol"):
        for metric in ("max_loss", "gap"):
            wide = sub.pivot_table(index="seed", columns="step", values=metric)
            out[metric][proto] = stats.seed_interval((wide[last] - wide[first]).to_numpy())
    return out


#: glued name -> factor of :func:`~mcutils.chapters.ch03_sweep.factor_effects` (effects quoted)
EFFECT_NAMES = {"width": "width", "steps": "step_factor", "tol": "tolerance"}
#: glued name -> protocol of :func:`barrier_evolution`
EVOLUTION_NAMES = {"fresh": "re-synthesised", "fixed": "fixed at init"}


def findings(chapter: ChapterReport, params: Mapping[str, Any], *, synthetic: Mapping[str, Any],
             sweep: pd.DataFrame, base: Mapping[str, Any], alternatives: Mapping[str, Any],
             effects: pd.DataFrame, evo: Mapping[str, pd.DataFrame],
             changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Record chapter 03's glued numbers and its claims.

    Args:
        chapter: the chapter's report.
        params: the validated parameters.
        synthetic: the :func:`synthetic_study`.
        sweep, base, alternatives: the :func:`~mcutils.chapters.ch03_sweep.run_sweep`.
        effects: the sweep's :func:`~mcutils.chapters.ch03_sweep.factor_effects`.
        evo: :func:`evolution_summary` of ``max_loss`` and ``end_loss``, by metric.
        changes: the :func:`evolution_changes`.

    Runs the negative controls on planted classifiers
    (:func:`~mcutils.chapters.ch03_verdicts.planted_controls`), glues the deviations
    table (:func:`~mcutils.chapters.ch03_verdicts.deviation_rows`), prints the connected
    fractions by round and the sweep's effects, and returns the claims
    (:func:`untrained_claims`: the untrained model, the narrow ResNet's base cell,
    pooled, and the trained reference, each with its interval method and control).
    """
    p, rec = params, chapter.record
    model, tol, seed0 = p["model"], p["tol"], p["seeds"][0]
    untrained, trained = synthetic["untrained"], synthetic["trained"]
    end_losses, boxed_loss, ratio_iv = (synthetic["end_losses"], synthetic["boxed_loss"],
                                        synthetic["ratio_iv"])
    rcols = round_columns(pd.concat([untrained, trained], ignore_index=True))
    resnet_base = sweep[(sweep["width"] == base["width"])
                        & (sweep["step_factor"] == base["step_factor"])]
    resnet_base = resnet_base.assign(model=p["sweep_model"])
    claim_table = pd.concat([untrained, resnet_base, trained], ignore_index=True)
    cfg = study_settings(p)
    ctl = planted_controls(cfg.connect, p["connect_tol"], tol, p["tolerances"],
                           num_connected=len(untrained),
                           num_barrier=len(untrained) + len(resnet_base), seed=seed0)
    claims = untrained_claims(claim_table, tol, p["claim_frac"], p["barrier_frac"],
                              trained_label=f"trained {model}", seed=seed0, controls=ctl)
    rel_diff = claims["trained_straighter"]["result"]
    untr_rel, tr_rel = untrained["rel_length"], trained["rel_length"]
    eff = effects.set_index("factor")
    rec("ch03_model", model)
    rec("ch03_num_seeds", len(p["seeds"]))
    rec("ch03_pairs_per_class", p["pairs_per_class"])
    rec("ch03_tol", tol)
    rec("ch03_loose_tol", max(p["tolerances"]))
    for key in ("connect_tol", "max_rounds", "synth_lr"):
        rec(f"ch03_{key}", p[key])
    rec("ch03_paper_lr", FVO_PAPER["lr"])
    for key in ("synth_steps", "bypass_steps", "synth_stop_loss"):
        rec(f"ch03_{key}", p[key])
    rec("ch03_synth_loss_median", float(np.median(end_losses)), digits=6)
    rec("ch03_synth_loss_max", float(end_losses.max()), digits=6)
    rec("ch03_synth_reached", synthetic["reached"])
    rec("ch03_boxed_loss_median", boxed_loss.median().item())
    rec("ch03_boxed_loss_min", boxed_loss.min().item())
    rec("ch03_peak_ratio", ratio_iv)
    rec("ch03_peak_ratio_est", ratio_iv["estimate"], digits=1)
    rec("ch03_peak_ratio_ci", ratio_iv["ci"], digits=1)
    rec("ch03_straight_frac", float(connected_flags(untrained, tol, rcols[0]).mean()))
    by_round = [round(float(connected_flags(untrained, tol, c).mean()), 3) for c in rcols]
    rec("ch03_untrained_by_round", by_round)
    rec("ch03_trained_by_round",
        [round(float(connected_flags(trained, tol, c).mean()), 3) for c in rcols])
    rec("ch03_untrained_rel_length", float(untr_rel.median()) if len(untr_rel) else float("nan"))
    rec("ch03_trained_rel_length", float(tr_rel.median()) if len(tr_rel) else float("nan"))
    rec("ch03_rel_length_diff", rel_diff)
    rec("ch03_rel_length_diff_est", rel_diff["estimate"])
    rec("ch03_rel_length_diff_ci", rel_diff["ci"], digits=3)
    rec("ch03_straighter_word", effect_word(
        rel_diff, "straighter than the untrained network's",
        "less straight than the untrained network's",
        "not distinguishable from the untrained network's"))
    rec("ch03_sweep_base_width", base["width"])
    rec("ch03_sweep_alt_width", alternatives.get("width", base["width"]))
    rec("ch03_sweep_alt_factor", alternatives.get("step_factor", base["step_factor"]))
    rec("ch03_resnet_pairs", len(resnet_base))
    rec("ch03_sweep_base_num_seeds", len(p["sweep_base_seeds"]))
    rec("ch03_sweep_num_seeds", len(p["sweep_seeds"]))
    resnet_connected = float(connected_flags(resnet_base, tol).mean())
    rec("ch03_resnet_connected", resnet_connected)
    rec("ch03_resnet_barrier_q25", float(resnet_base[rcols[-1]].quantile(0.25)))
    rec("ch03_resnet_barrier_q75", float(resnet_base[rcols[-1]].quantile(0.75)))
    rec("ch03_resnet_end_loss",
        float(np.median(np.maximum(resnet_base["loss_a"], resnet_base["loss_c"]))))
    long_cell = sweep[(sweep["width"] == base["width"])
                      & (sweep["step_factor"] == alternatives.get("step_factor",
                                                                  base["step_factor"]))]
    rec("ch03_resnet_end_loss_long",
        float(np.median(np.maximum(long_cell["loss_a"], long_cell["loss_c"]))))
    for key, factor in EFFECT_NAMES.items():
        if factor in eff.index:
            rec(f"ch03_effect_{key}", eff.loc[factor, "effect"])
            rec(f"ch03_effect_{key}_est", float(eff.loc[factor, "estimate"]))
            rec(f"ch03_effect_{key}_ci",
                [float(eff.loc[factor, "lo"]), float(eff.loc[factor, "hi"])], digits=3)
        else:
            rec(f"ch03_effect_{key}", "was not varied")
            rec(f"ch03_effect_{key}_est", float("nan"))
            rec(f"ch03_effect_{key}_ci", [float("nan"), float("nan")])
    drivers = [c for c in effects["change"][effects["effect"] != "no clear effect"]]
    rec("ch03_drivers", "; ".join(drivers) if drivers else "none of them")
    rec("ch03_track_lr", p["track_lr"])
    rec("ch03_track_batch_size", p["track_batch_size"])
    rec("ch03_track_stop_loss", p["track_synth_stop_loss"])
    rec("ch03_track_every", p["track_every"])
    rec("ch03_track_batches", p["track_batches"])
    first, last = changes["first"], changes["last"]
    mx = evo["max_loss"].set_index(["protocol", "step"])
    el = evo["end_loss"].set_index(["protocol", "step"])
    for key, proto in EVOLUTION_NAMES.items():
        change = changes["max_loss"][proto]
        rec(f"ch03_evo_{key}_start", float(mx.loc[(proto, first), "estimate"]))
        rec(f"ch03_evo_{key}_end", float(mx.loc[(proto, last), "estimate"]))
        rec(f"ch03_evo_{key}_change", change)
        rec(f"ch03_evo_{key}_change_est", change["estimate"])
        rec(f"ch03_evo_{key}_change_ci", change["ci"], digits=3)
        rec(f"ch03_evo_{key}_word", effect_word(
            change, "higher than", "lower than", "not distinguishable from"))
    fixed = EVOLUTION_NAMES["fixed"]
    rec("ch03_evo_fixed_end_loss_start", float(el.loc[(fixed, first), "estimate"]), digits=6)
    rec("ch03_evo_fixed_end_loss_end", float(el.loc[(fixed, last), "estimate"]))
    gap = changes["gap"][fixed]
    rec("ch03_evo_fixed_gap_change", gap)
    rec("ch03_evo_fixed_gap_change_est", gap["estimate"])
    rec("ch03_evo_fixed_gap_change_ci", gap["ci"], digits=3)
    rec("ch03_connected_by_model", {k: round(v["result"]["estimate"], 3)
                                    for k, v in claims.items() if k.startswith("connected_")})
    rec("ch03_connected_per_seed", claims[f"connected_{model}"]["result"].get("per_seed", []),
        digits=3)
    rec("ch03_control_connected", ctl["connected"]["result"])
    rec("ch03_control_connected_any_tol", ctl["connected_any_tol"])
    rec("ch03_control_barrier", ctl["barrier"]["result"])
    rec("ch03_straighter_control", claims["trained_straighter"]["control"]["result"])
    chapter.deviations(deviation_rows(p, cfg.info.shape, len(untrained), len(cfg.classes),
                                      measured_effects(effects)))
    print(f"untrained {model}: connected at {tol:g} after rounds 0..{p['max_rounds']}: "
          f"{by_round}")
    print(f"narrow ResNet base cell: connected {resnet_connected:.3f}; "
          f"effects: {dict(zip(effects['factor'], effects['effect']))}")
    for cid, c in claims.items():
        chapter.claim(cid, **c)
    return claims
