"""Chapter 03's orchestration: connectivity of untrained networks at the paper's settings,
with a budget curve and the book's earlier fast settings as a variant. The per-pair tables
and tolerance curves are chapter 01's (:mod:`mcutils.chapters.ch01_input_space`); the
narrow ResNet's sweep is in :mod:`mcutils.chapters.ch03_sweep`, the barrier evolution in
:mod:`mcutils.chapters.ch03_evolution`, the claims and what the chapter glues in
:mod:`mcutils.chapters.ch03_findings`, the controls and deviations in
:mod:`mcutils.chapters.ch03_verdicts` and the figures in
:mod:`mcutils.chapters.ch03_untrained_figures`.

* :data:`PARAMETERS` is the chapter's parameter schema, :data:`EXPECTED` (and
  :func:`expected_claims`) its expected claims, :data:`CLAIMS` their statements and the
  paper's references; :func:`check_nonempty_lists`, :func:`check_sweep_base_seeds`,
  :func:`check_connect_tol`, :func:`check_pixel_box` and :func:`check_budget_factors` are
  its cross-checks;
* :func:`study_settings` gives the settings every study shares (:class:`StudySettings`),
  :func:`scaled_settings` the same at another step budget or learning rate;
* :func:`build_untrained` and :func:`untrained_study`: synthetic pairs of networks, connected;
* :func:`cached` and :func:`study_part`: one seed's study, computed once and kept in the
  checkpoint cache, whose synthesis the budget curve's parts of a seed share
  (:func:`shared_synthesis`); :func:`pool_parts` lists them for the runner's worker pool;
* :func:`synthetic_study`: the chapter's untrained and trained pairs at every budget and
  in the fast variant, with the statistics of their synthetic inputs;
* :func:`path_geometry`: how straight the connecting paths are.

Used by chapter 03; tested at a tiny size in ``tests/test_inputspace_studies.py`` and
``tests/test_ch03_untrained.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch01_input_space import PairSet, connect_sets, pair_table, predict_labels
from mcutils.chapters.ch03_evolution import evolution_part as _evolution_part
from mcutils.chapters.ch03_study import (StudySettings, _profile_stats, build_untrained, cached,
                                         scaled_settings, study_settings)
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.data import class_pairs
from mcutils.inputspace.bypass import connect
from mcutils.inputspace.paths import segment_losses
from mcutils.inputspace.synthesis import (SyntheticPairs, synthesize, synthetic_pairs,
                                          synthetic_pairs_at)
from mcutils.params import Param, ParameterSchema
from mcutils.zoo import trained_model

__all__ = ["PARAMETERS", "EXPECTED", "CLAIMS", "STUDY_KINDS", "SMALL_PROFILES",
           "check_nonempty_lists", "check_sweep_base_seeds", "check_connect_tol",
           "check_pixel_box", "check_budget_factors",
           "StudySettings", "expected_claims", "study_settings", "scaled_settings",
           "build_untrained", "untrained_study", "cached", "study_part", "shared_synthesis",
           "pool_parts",
           "dense_barriers", "part_table", "sweep_cells", "evolution_part",
           "synthetic_study", "path_geometry"]


def check_nonempty_lists(p: Mapping[str, Any]) -> str | None:
    """seeds, sweep_seeds, sweep_widths, sweep_step_factors and budget_factors must not be
    empty."""
    names = ("seeds", "sweep_seeds", "sweep_widths", "sweep_step_factors", "budget_factors")
    if not all(p[n] for n in names):
        return f"{', '.join(names)} must be non-empty lists"
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


def check_budget_factors(p: Mapping[str, Any]) -> str | None:
    """A budget curve: at least 3 distinct factors, the last the largest (the claims are
    read there) and at least 4x the smallest."""
    f = p["budget_factors"]
    if f and (len(set(f)) < 3 or f[-1] != max(f) or f[-1] < 4 * min(f)):
        return (f"budget_factors={f}: give at least 3 distinct factors, the last the largest "
                "and at least 4x the smallest")
    return None


PARAMETERS = ParameterSchema("03", {
    **model_params(seed_help="seed of the trained reference (the checkpoint of chapter 00)"),
    "model": Param("small_cnn", "untrained architecture studied, tracked in training, "
                   "and the trained reference"),
    "seeds": Param([0, 1, 2], "random initialisations of the untrained model (and tracked "
                   "training runs)", range=(0, None)),
    "num_classes_used": Param(None, "None: all classes; else the first N classes",
                              range=(2, None), nullable=True),
    "pairs_per_class": Param(2, "synthetic pairs per class and seed", range=(1, 100)),
    "tol": Param(0.01, "main tolerance over the worse endpoint (nats)", range=(1e-6, 10)),
    "abs_tol": Param(0.01, "absolute criterion: highest loss on the whole path below this (nats)",
                     range=(1e-6, 10)),
    "connect_tol": Param(0.001, "a segment counts as flat below this (nats)", range=(1e-6, 10)),
    "tolerances": Param([0.001, 0.003, 0.01, 0.03, 0.1], "tolerances reported (nats)",
                        range=(1e-6, 10)),
    "max_rounds": Param(2, "bypass rounds (1: 2-segment paths, 2: 4 segments)", range=(1, 10)),
    "bypass_all": Param(True, "bypass every segment in every round, as the paper does (else "
                        "only segments with a barrier of at least connect_tol)",
                        choices=(True, False)),
    "num_points": Param(200, "points per straight path (the paper's 200)", range=(3, None)),
    "check_points": Param(1000, "points per segment of the dense check of the final paths "
                          "(0: skip)", range=(0, None)),
    "synth_steps": Param(8192, "maximum Adam steps (paper)", range=(1, None),
                         group="synthetic inputs: the paper's feature visualisation, normalised "
                               "units"),
    "synth_lr": Param(0.05, "Adam learning rate (paper)", range=(1e-6, 10)),
    "synth_stop_loss": Param(0.0005, "stop once the class loss is below this (paper)",
                             range=(0, 10)),
    "synth_init_std": Param(0.01, "initial noise around the dataset mean (paper)", range=(0, 1)),
    "synth_weight_decay": Param(1e-7, "(paper)", range=(0, 1)),
    "synth_tv_weight": Param(2.5e-7, "smoothness penalty of A only, summed differences (paper)",
                             range=(0, 1)),
    "bypass_steps": Param(4096, "maximum Adam steps (paper)", range=(1, None),
                          group="free optimisation of barrier points (the paper's)"),
    "bypass_lr": Param(0.05, "(paper)", range=(1e-6, 10)),
    "bypass_stop_loss": Param(0.0005, "(paper)", range=(0, 10)),
    "bypass_weight_decay": Param(1e-7, "(paper)", range=(0, 1)),
    "pixel_box": Param(None, "None: inputs may leave [0, 1] (as in the paper); [0.0, 1.0]: "
                       "they may not", nullable=True),
    "budget_factors": Param([0.0625, 0.25, 1.0], "multipliers of synth_steps and bypass_steps; "
                            "the last (the largest) is the claims'", range=(0.001, 100),
                            group="budget curve, and the book's earlier fast settings as a "
                                  "variant"),
    "fast_lr": Param(1.0, "the variant's learning rate (synthesis and bypass)",
                     range=(1e-6, 10)),
    "fast_steps": Param(200, "the variant's step budget (synthesis and bypass)",
                        range=(1, None)),
    "sweep_model": Param("resnet18_cifar", group="the narrow ResNet: width x optimisation budget"),
    "sweep_widths": Param([4, 8], "the first is the base width", range=(1, 512)),
    "sweep_step_factors": Param([0.0625, 0.25], "multipliers of synth_steps and bypass_steps; "
                                "the first is the base", range=(0.001, 100)),
    "sweep_seeds": Param([0, 1, 2], range=(0, None)),
    "sweep_base_seeds": Param([0, 1, 2], "seeds of the base cell, whose pairs the claim "
                              "reads (includes sweep_seeds)", range=(0, None)),
    "track_batches": Param(30, "training batches followed (paper: 30)", range=(1, None),
                           group="barrier evolution during training (the paper's appendix F.1)"),
    "track_every": Param(5, "measure before training and after every this many batches",
                         range=(1, None)),
    "track_batch_size": Param(512, "(paper)", range=(1, None)),
    "track_lr": Param(0.001, "Adam (paper)", range=(1e-8, 10)),
    "track_points": Param(100, "points per straight path (paper: 200)", range=(3, None)),
    "track_synth_steps": Param(400, "(paper: 4096)", range=(1, None)),
    "track_synth_lr": Param(1.0, "(paper: 0.05; the fast variant's, to fit the cpu budget)",
                            range=(1e-6, 10)),
    "track_synth_stop_loss": Param(0.005, "(paper's appendix script)", range=(0, 10)),
    "claim_frac": Param(0.9, "claims: at least this fraction of pairs connected", range=(0, 1)),
    "barrier_frac": Param(0.5, "claim: at least this fraction of straight paths with a barrier "
                          "of at least tol", range=(0, 1)),
}, checks=[check_nonempty_lists, check_sweep_base_seeds, check_connect_tol, check_pixel_box,
           check_budget_factors])


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


def untrained_study(nets: Mapping[int, nn.Module], classes: Sequence[int], shape: Sequence[int],
                    pairs_per_class: int, synth: Mapping, connect_kw: Mapping, tol: float,
                    num_points: int = 200, real_x: torch.Tensor | None = None,
                    real_pairs_per_class: int = 0,
                    real_box: tuple[float, float] | None = (0.0, 1.0),
                    labels: Mapping[str, Any] | None = None,
                    keep_pairs: dict | None = None,
                    keep_results: dict | None = None,
                    synthesized: Mapping[int, SyntheticPairs] | None = None) -> pd.DataFrame:
    """Connect synthetic (and real) same-class pairs of networks, seed by seed.

    For each ``seed, net`` of ``nets``: :func:`~mcutils.inputspace.synthetic_pairs` makes ``pairs_per_class``
    pairs per class with ``synth`` (noise seeded by the seed); :func:`~mcutils.inputspace.connect` (with
    ``connect_kw`` and ``tol``) connects them. With ``real_x`` and
    ``real_pairs_per_class``, real inputs labelled by the network's own prediction are
    paired and connected too (inside ``real_box``). With ``keep_pairs`` (a dict), the
    :class:`~mcutils.inputspace.SyntheticPairs` of each seed are stored in it under the seed;
    with ``keep_results`` (a dict), the :class:`~mcutils.inputspace.ConnectResult` of each
    set, under ``(seed, kind)``. ``synthesized`` gives a seed's pairs already made with
    ``synth`` (by :func:`~mcutils.inputspace.synthetic_pairs_at`, for example), which are
    then used instead of synthesising them again.

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
        if synthesized is not None and s in synthesized:
            syn = synthesized[s]
            if not torch.equal(syn.targets, targets):
                raise ParameterError(f"the pairs given for seed {s} have other classes than "
                                     f"classes x pairs_per_class")
        else:
            syn = synthetic_pairs(net, targets, shape,
                                  generator=torch.Generator().manual_seed(s), **synth)
        if keep_pairs is not None:
            keep_pairs[s] = syn
        sets = {(s, "synthetic"): PairSet(syn.a, syn.c, syn.targets)}
        res = connect_sets(net, sets, tol=tol, **connect_kw)
        if keep_results is not None:
            keep_results.update(res)
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




def dense_barriers(model: nn.Module, vertices: Sequence[torch.Tensor], targets: torch.Tensor,
                   end_loss: torch.Tensor, points: int) -> torch.Tensor:
    """Each path's barrier over its worse endpoint (``end_loss``) from ``points`` evenly
    spaced points on every segment: the dense check of the adaptive barrier search.

    Returns:
        ``[pairs]`` ``max(highest loss - end_loss, 0)``.
    """
    if not isinstance(points, int) or points < 2:
        raise ParameterError(f"points={points!r} must be an integer >= 2")
    starts = torch.cat([v[:-1] for v in vertices])
    ends = torch.cat([v[1:] for v in vertices])
    owner = torch.cat([torch.full((len(v) - 1,), i, dtype=torch.long)
                       for i, v in enumerate(vertices)])
    t = torch.linspace(0, 1, points).repeat(len(starts))
    seg = torch.arange(len(starts)).repeat_interleave(points)
    loss = segment_losses(model, starts, ends, torch.as_tensor(targets)[owner], seg, t)
    seg_max = loss.view(len(starts), points).max(dim=1).values
    path_max = torch.full((len(vertices),), -float("inf")).scatter_reduce(
        0, owner, seg_max, reduce="amax")
    return (path_max - torch.as_tensor(end_loss, dtype=torch.float32)).clamp_min(0)


#: profiles whose parts are too small for the worker pool (:func:`pool_parts`)
SMALL_PROFILES = ("smoke", "gpu-smoke")

#: the kinds of :func:`study_part`
STUDY_KINDS = ("untrained", "fast", "trained", "sweep", "boxed")


def _part_setup(params: Mapping[str, Any], kind: str, seed: int, factor: float,
                width: int | None) -> tuple[dict[str, Any], StudySettings]:
    p = params
    base = study_settings(p)
    if kind == "fast":
        cfg = scaled_settings(base, lr=p["fast_lr"], steps=p["fast_steps"])
    elif kind in ("untrained", "sweep", "trained", "boxed"):
        cfg = scaled_settings(base, factor)
    else:
        raise ParameterError(f"kind={kind!r} is not known; valid values: {', '.join(STUDY_KINDS)}")
    if kind == "sweep" and width is None:
        raise ParameterError("a sweep part needs its width")
    arch = p["sweep_model"] if kind == "sweep" else p["model"]
    net = dict(arch=arch, dataset=p["dataset"], seed=seed,
               model_kwargs={"width": width} if kind == "sweep" else {})
    if kind == "trained":
        net.update(trained=dict(epochs=p["num_epochs"], lr=p["lr"], batch_size=p["batch_size"],
                                train_subset=p["train_subset"], seed=p["seed"]))
    # the budgets whose parts share one synthesis run (:func:`shared_synthesis`): the budget
    # curve's, and the sweep's factors at this width (other widths run the base factor only)
    family = (p["budget_factors"] if kind == "untrained" else
              [f for w, f, _ in sweep_cells(p) if w == width] if kind == "sweep" else None)
    conf = dict(kind=kind, net=net, classes=cfg.classes, shape=list(cfg.info.shape),
                pairs_per_class=1 if kind == "sweep" else p["pairs_per_class"],
                synth=cfg.synth, connect=cfg.connect, connect_tol=p["connect_tol"],
                num_points=p["num_points"], device=p["device"],
                check_points=p["check_points"] if kind in ("untrained", "trained")
                and factor == max(p["budget_factors"]) else 0)
    if family:
        budgets = sorted({scaled_settings(base, f).synth["steps"] for f in [*family, factor]})
        if len(budgets) > 1:
            conf["synth_budgets"] = budgets
    return conf, cfg


def _part_net(conf: Mapping[str, Any]) -> nn.Module:
    net = conf["net"]
    if "trained" in net:
        return trained_model(dataset=net["dataset"], model=net["arch"], device=conf["device"],
                             **net["trained"])
    return build_untrained(net["arch"], net["dataset"], net["seed"], **net["model_kwargs"])


def study_part(params: Mapping[str, Any], kind: str, seed: int, factor: float = 1.0,
               width: int | None = None) -> dict[str, Any]:
    """One seed's study of chapter 03, computed once and cached (:func:`cached`).

    ``kind`` is one of :data:`STUDY_KINDS`: ``untrained`` (the untrained ``model`` of
    ``seed``, both step budgets times ``factor``), ``fast`` (the same network with the
    variant's ``fast_lr`` and ``fast_steps``), ``trained`` (chapter 00's checkpoint, its
    synthesis noise seeded with ``seed``), ``sweep`` (the ``sweep_model`` of ``width``, one
    pair per class) or ``boxed`` (the synthesis alone, kept inside [0, 1]). The key is
    made of the settings the part uses, not of the whole ``params``, so the runner's pool
    part and the notebook share it.

    Returns:
        ``{"table": the untrained_study table as a dict of lists, "a", "c", "targets"}``
        (tensors of the pairs, for figures); for ``boxed``, ``{"boxed_loss": [...]}``.
        Where ``check_points`` applies (the largest budget of the ``untrained`` and
        ``trained`` parts), the table has ``dense_barrier``: :func:`dense_barriers` of the
        final paths.
    """
    conf, cfg = _part_setup(params, kind, seed, factor, width)

    def compute() -> dict[str, Any]:
        net = _part_net(conf)
        if kind == "boxed":
            _, loss = synthesize(
                net, torch.tensor(conf["classes"]), conf["shape"], steps=conf["synth"]["steps"],
                lr=conf["synth"]["lr"], stop_loss=conf["synth"]["stop_loss"],
                init_std=conf["synth"]["init_std"], weight_decay=conf["synth"]["weight_decay"],
                space="normalized", box=(0.0, 1.0), generator=torch.Generator().manual_seed(seed))
            return {"boxed_loss": loss.tolist()}
        pairs: dict = {}
        results: dict = {}
        shared = ({seed: shared_synthesis(conf, seed, net)} if conf.get("synth_budgets")
                  else None)
        tab = untrained_study({seed: net}, conf["classes"], conf["shape"],
                              conf["pairs_per_class"], conf["synth"], conf["connect"],
                              conf["connect_tol"], num_points=conf["num_points"],
                              keep_pairs=pairs, keep_results=results, synthesized=shared)
        syn = pairs[seed]
        if conf["check_points"]:
            tab["dense_barrier"] = dense_barriers(
                net, results[seed, "synthetic"].vertices, syn.targets,
                torch.tensor(tab["end_loss"].to_numpy(float)), conf["check_points"]).tolist()
        return {"table": tab.to_dict("list"), "a": syn.a, "c": syn.c, "targets": syn.targets}

    return cached(dict(conf, seed=seed), [study_part, _part_setup, _part_net, untrained_study,
                                          _profile_stats, dense_barriers, synthetic_pairs,
                                          shared_synthesis, synthetic_pairs_at, connect],
                  compute)


def shared_synthesis(conf: Mapping[str, Any], seed: int, net: nn.Module) -> SyntheticPairs:
    """The synthetic pairs of a :func:`study_part` (its ``conf``, made by ``_part_setup``),
    taken from one synthesis run of ``net`` to the largest budget of ``conf["synth_budgets"]``
    that serves every budget of that list (:func:`~mcutils.inputspace.synthetic_pairs_at`:
    each budget's pairs are those of its own run).

    The run is cached on its own (:func:`cached`, under a file lock), keyed by the network,
    the pairs, the synthesis settings except the step budget, and the list of budgets, so the
    budget curve's parts of one seed, in one process or in the pool's workers, synthesise
    once: a part that finds the run under way waits for it.
    """
    synth = {k: v for k, v in conf["synth"].items() if k != "steps"}
    budgets = [int(k) for k in conf["synth_budgets"]]
    if conf["synth"]["steps"] not in budgets:
        raise ParameterError(f"the part's synthesis budget {conf['synth']['steps']} is not one "
                             f"of synth_budgets={budgets}")
    key = dict(kind="synthesis", net=conf["net"], classes=conf["classes"], shape=conf["shape"],
               pairs_per_class=conf["pairs_per_class"], synth=synth, budgets=budgets,
               device=conf["device"], seed=int(seed))

    def compute() -> dict[str, Any]:
        targets = torch.tensor(conf["classes"]).repeat_interleave(conf["pairs_per_class"])
        runs = synthetic_pairs_at(net, targets, conf["shape"], budgets,
                                  generator=torch.Generator().manual_seed(int(seed)), **synth)
        return {str(k): vars(v) for k, v in runs.items()}

    return SyntheticPairs(**cached(key, [shared_synthesis, synthetic_pairs_at],
                                   compute)[str(conf["synth"]["steps"])])


def part_table(part: Mapping[str, Any], **labels: Any) -> pd.DataFrame:
    """The pair table of a :func:`study_part`, with constant columns ``labels``."""
    tab = pd.DataFrame(part["table"])
    for k, v in labels.items():
        tab[k] = v
    return tab


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Chapter 03's independent parts for the runner's worker pool, longest first: every
    :func:`study_part` the notebook loads (each seed at each budget, the fast variant, the
    trained reference, the sweep's cells, the boxed synthesis) and every seed's
    :func:`~mcutils.chapters.ch03_evolution.evolution_part`. The profiles of
    :data:`SMALL_PROFILES` declare none: there a worker's start-up costs more than its part,
    and the notebook computes everything itself."""
    p = dict(params)
    if p["profile"] in SMALL_PROFILES:
        return []
    parts: list[tuple[str, str, dict[str, Any]]] = []
    for w, f, seeds in sweep_cells(p):
        parts += [(f"sweep-w{w}-x{f:g}-s{s}", "study_part",
                   dict(params=p, kind="sweep", seed=s, factor=f, width=w)) for s in seeds]
    for f in sorted(p["budget_factors"], reverse=True):
        parts += [(f"untrained-x{f:g}-s{s}", "study_part",
                   dict(params=p, kind="untrained", seed=s, factor=f)) for s in p["seeds"]]
    top = max(p["budget_factors"])
    parts.append((f"trained-s{p['seed']}", "study_part",
                  dict(params=p, kind="trained", seed=p["seed"], factor=top)))
    parts.append((f"boxed-s{p['seeds'][0]}", "study_part",
                  dict(params=p, kind="boxed", seed=p["seeds"][0],
                       factor=min(p["budget_factors"]))))
    parts += [(f"evolution-s{s}", "evolution_part", dict(params=p, seed=s)) for s in p["seeds"]]
    parts += [(f"fast-s{s}", "study_part", dict(params=p, kind="fast", seed=s))
              for s in p["seeds"]]
    return parts


def sweep_cells(p: Mapping[str, Any]) -> list[tuple[int, float, list[int]]]:
    """The sweep's cells ``(width, factor, seeds)``: the base cell (first width and factor)
    on ``sweep_base_seeds``, every other factor and width changed alone on ``sweep_seeds``."""
    widths, factors = p["sweep_widths"], p["sweep_step_factors"]
    cells = [(widths[0], factors[0], list(p["sweep_base_seeds"]))]
    cells += [(widths[0], f, list(p["sweep_seeds"])) for f in factors[1:]]
    cells += [(w, factors[0], list(p["sweep_seeds"])) for w in widths[1:]]
    return cells


def evolution_part(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """:func:`mcutils.chapters.ch03_evolution.evolution_part`, named here so that the
    runner finds every pool part of the chapter in this module."""
    return _evolution_part(params, seed)


def synthetic_study(params: Mapping[str, Any], cfg: StudySettings | None = None
                    ) -> dict[str, Any]:
    """Synthetic pairs of the untrained ``model`` (one network per seed of ``seeds``) at
    every step budget of ``budget_factors``, in the fast variant, and of the trained
    reference (the checkpoint of chapter 00), each connected by free bypass rounds
    (:func:`study_part`, loaded from the cache where the pool computed it), and the
    statistics the chapter reports about them. ``cfg`` is kept for callers.

    Returns:
        A dict with ``untrained`` (at the largest budget, the claims'), ``budgets``
        (factor -> the untrained table at that budget), ``fast`` and ``trained`` (pair
        tables, labelled by ``model``, ``state`` and ``budget``), ``pairs`` (seed -> the
        untrained network's :class:`~mcutils.inputspace.SyntheticPairs` at the largest
        budget), ``end_losses`` (class losses of every untrained synthetic input there),
        ``reached`` (the fraction below ``synth_stop_loss``), ``boxed_loss`` (class losses
        when the first seed's inputs are kept inside [0, 1], at the smallest budget) and ``ratio_iv`` (median of
        highest straight-path loss over worse endpoint loss, with a hierarchical bootstrap
        interval: seed -> class -> pair).
    """
    from mcutils.inputspace.synthesis import SyntheticPairs

    p = params
    seeds, model, top = p["seeds"], p["model"], max(p["budget_factors"])

    def table(kind: str, factor: float, run_seeds: Sequence[int], **labels: Any
              ) -> tuple[dict[int, dict[str, Any]], pd.DataFrame]:
        parts = {s: study_part(p, kind, s, factor) for s in run_seeds}
        return parts, pd.concat([part_table(parts[s], **labels) for s in run_seeds],
                                ignore_index=True)

    budgets = {f: table("untrained", f, seeds, model=model, state="untrained", budget=f)[1]
               for f in p["budget_factors"]}
    parts, untrained = table("untrained", top, seeds, model=model, state="untrained", budget=top)
    _, fast = table("fast", 1.0, seeds, model=model, state="untrained", budget="fast")
    _, trained = table("trained", top, [p["seed"]], model=f"trained {model}", state="trained",
                       budget=top)
    pairs = {}
    for s, part in parts.items():
        tab = part["table"]
        pairs[s] = SyntheticPairs(part["a"], part["c"], part["targets"],
                                  torch.tensor(tab["loss_a"]), torch.tensor(tab["loss_c"]),
                                  torch.tensor(tab["steps_a"]), torch.tensor(tab["steps_c"]))
    end_losses = np.concatenate([untrained["loss_a"], untrained["loss_c"]])
    reached = float((end_losses < p["synth_stop_loss"]).mean())
    boxed_loss = torch.tensor(study_part(p, "boxed", seeds[0],
                                         min(p["budget_factors"]))["boxed_loss"])
    ratio_iv = stats.hierarchical_bootstrap_ci(
        (untrained["peak"] / untrained["end_loss"]).to_numpy(float),
        [untrained["seed"].to_numpy(), untrained["target"].to_numpy()], np.median, seed=seeds[0])
    return dict(untrained=untrained, budgets=budgets, fast=fast, trained=trained, pairs=pairs,
                end_losses=end_losses, reached=reached, boxed_loss=boxed_loss, ratio_iv=ratio_iv)


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
