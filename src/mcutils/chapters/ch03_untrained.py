"""Chapter 03's orchestration: connectivity of untrained networks, the barrier's evolution
in the first training steps, and the width/steps sweep of the narrow ResNet, with the
intervals behind the chapter's claims. The per-pair tables and tolerance curves are
chapter 01's (:mod:`mcutils.chapters.ch01_input_space`).

Used by chapter 03; tested at a tiny size in ``tests/test_inputspace_studies.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch01_input_space import (PairSet, _claim, connect_sets, connected_flags,
                                               effect_word, pair_table, predict_labels,
                                               round_columns, two_sample_ci)
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.data import class_pairs
from mcutils.inputspace.paths import barrier, loss_profiles
from mcutils.inputspace.synthesis import synthetic_pairs
from mcutils.params import Param, ParameterSchema

__all__ = ["PARAMETERS", "EXPECTED", "CLAIMS", "expected_claims", "build_untrained",
           "untrained_study", "barrier_evolution", "evolution_summary", "sweep_study",
           "factor_effects", "untrained_claims"]


def check_nonempty_lists(p: Mapping[str, Any]) -> str | None:
    """seeds, sweep_seeds, sweep_widths and sweep_step_factors must not be empty."""
    if not p["seeds"] or not p["sweep_seeds"] or not p["sweep_widths"] or not p["sweep_step_factors"]:
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


_SYNTH = "synthetic inputs: the paper's feature visualisation in normalised units, shorter and faster"
PARAMETERS = ParameterSchema("03", {
    **model_params(seed_help="seed of the trained reference (the checkpoint of chapter 00)"),
    "model": Param("small_cnn", "untrained architecture studied, tracked in training, "
                   "and the trained reference"),
    "seeds": Param([0, 1, 2], "random initialisations of the untrained model (and tracked "
                   "training runs)", range=(0, None)),
    "num_classes_used": Param(None, "None: all classes; else the first N classes",
                              range=(2, None), nullable=True),
    "pairs_per_class": Param(1, "synthetic pairs per class and seed", range=(1, 100)),
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


def sweep_study(arch: str, dataset: str, widths: Sequence[int], step_factors: Sequence[float],
                seeds: Sequence[int], classes: Sequence[int], shape: Sequence[int],
                synth: Mapping, connect_kw: Mapping, tol: float, num_points: int = 200,
                model_kwargs: Mapping[str, Any] | None = None,
                cells: Sequence[tuple[int, float]] | None = None) -> pd.DataFrame:
    """Connectivity of synthetic pairs over a grid of widths and optimisation budgets.

    For every width ``w`` and factor ``f`` (or only the ``(w, f)`` in ``cells``),
    :func:`untrained_study` runs one synthetic pair per class on
    ``build_untrained(arch, dataset, seed, width=w)`` for each seed, with the step
    budgets of both the synthesis and the bypass (``synth["steps"]``,
    ``connect_kw["steps"]``) multiplied by ``f``; everything else, including the
    synthesis noise of each seed, is shared by all cells, so cells are matched pair by
    pair (same seed and class).

    Returns:
        The concatenated pair tables with columns ``width`` and ``step_factor``.
    """
    grid = list(cells) if cells is not None else [(w, f) for w in widths for f in step_factors]
    if not grid:
        raise ParameterError("the sweep has no cell")
    frames = []
    for w, f in grid:
        sy = dict(synth, steps=max(1, int(round(synth["steps"] * f))))
        ck = dict(connect_kw, steps=max(1, int(round(connect_kw["steps"] * f))))
        nets = {s: build_untrained(arch, dataset, s, **dict(model_kwargs or {}, width=w))
                for s in seeds}
        frames.append(untrained_study(nets, classes, shape, 1, sy, ck, tol,
                                      num_points=num_points,
                                      labels=dict(width=w, step_factor=f)))
    return pd.concat(frames, ignore_index=True)


def factor_effects(table: pd.DataFrame, base: Mapping[str, Any], alternatives: Mapping[str, Any],
                   tol: float, loose_tol: float, seed: int = 0) -> pd.DataFrame:
    """Effect of each factor of a :func:`sweep_study` on the connected fraction.

    Each factor is changed alone from the ``base`` cell (``{"width": w0,
    "step_factor": f0}``) to its alternative level, and the tolerance from ``tol`` to
    ``loose_tol`` on the base cell. Pairs are matched by ``(seed, target)`` (the same
    class and synthesis noise), so the interval is a paired bootstrap of the difference
    in connected fraction after the last round.

    Returns:
        Rows ``(factor, change, base_frac, alt_frac, estimate, lo, hi, n, effect)`` with
        ``effect`` one of ``raises``, ``lowers`` or ``no clear effect``.
    """
    def cell(**levels: Any) -> pd.DataFrame:
        sel = table
        for k, v in levels.items():
            sel = sel[sel[k] == v]
        return sel.set_index(["seed", "target"]).sort_index()

    base_cell = cell(**base)
    if base_cell.empty:
        raise ParameterError(f"the sweep has no cell {dict(base)}")
    rows = []
    changes = [(name, {**base, name: lvl}, tol, f"{name} {base[name]} -> {lvl}")
               for name, lvl in alternatives.items()]
    changes.append(("tolerance", dict(base), loose_tol, f"tolerance {tol:g} -> {loose_tol:g}"))
    for name, levels, t_alt, label in changes:
        alt = cell(**levels)
        common = base_cell.index.intersection(alt.index)
        if not len(common):
            continue
        f0 = connected_flags(base_cell.loc[common].reset_index(), tol)
        f1 = connected_flags(alt.loc[common].reset_index(), t_alt)
        iv = stats.paired_difference_ci(f1, f0, seed=seed)
        rows.append(dict(factor=name, change=label, base_frac=float(f0.mean()),
                         alt_frac=float(f1.mean()), estimate=iv["estimate"], lo=iv["ci"][0],
                         hi=iv["ci"][1], n=iv["n"],
                         effect=effect_word(iv, "raises", "lowers", "no clear effect")))
    return pd.DataFrame(rows)


def untrained_claims(table: pd.DataFrame, tol: float, claim_frac: float = 0.9,
                     barrier_frac: float = 0.5, model_col: str = "model",
                     trained_label: str | None = None, seed: int = 0
                     ) -> dict[str, dict[str, Any]]:
    """The claims of chapter 03 from the synthetic pairs of its untrained networks.

    ``table`` holds synthetic pairs with a ``model`` column (one label per untrained
    architecture, plus ``trained_label`` for the trained network) and a ``seed`` column.

    * ``connected_<model>`` per untrained model and ``connected_pooled``: the fraction
      connected (barrier < ``tol``) after the last round is at least ``claim_frac``;
      the interval is a bootstrap over pairs stratified by seed (per model) or by model
      (pooled), so each keeps its share of pairs;
    * ``straight_barriers``: the fraction of untrained pairs whose straight path has a
      barrier of at least ``tol`` is at least ``barrier_frac``;
    * ``trained_straighter`` (with ``trained_label``): the median relative path length
      of untrained minus trained pairs is at least 0 (independent-sample bootstrap).
    """
    rounds = round_columns(table)
    untrained = table[table[model_col] != trained_label] if trained_label else table
    out: dict[str, dict[str, Any]] = {}
    for model, sub in untrained.groupby(model_col, sort=False):
        iv = stats.bootstrap_ci(connected_flags(sub, tol), seed=seed, strata=sub["seed"].to_numpy())
        text = CLAIMS["connected_model"]
        out[f"connected_{model}"] = _claim(
            text["statement"].format(model=model, tol=tol, rounds=len(rounds) - 1, frac=claim_frac),
            text["paper"], iv, claim_frac, ">=")
    iv = stats.bootstrap_ci(connected_flags(untrained, tol), seed=seed,
                            strata=untrained[model_col].to_numpy())
    text = CLAIMS["connected_pooled"]
    out["connected_pooled"] = _claim(
        text["statement"].format(tol=tol, rounds=len(rounds) - 1, frac=claim_frac),
        text["paper"], iv, claim_frac, ">=")
    has = 1.0 - connected_flags(untrained, tol, rounds[0])
    iv = stats.bootstrap_ci(has, seed=seed, strata=untrained[model_col].to_numpy())
    text = CLAIMS["straight_barriers"]
    out["straight_barriers"] = _claim(text["statement"].format(tol=tol, frac=barrier_frac),
                                      text["paper"], iv, barrier_frac, ">=")
    if trained_label is not None:
        tr = table[table[model_col] == trained_label]
        if len(tr):
            iv = two_sample_ci(untrained["rel_length"], tr["rel_length"], seed=seed)
            text = CLAIMS["trained_straighter"]
            out["trained_straighter"] = _claim(text["statement"], text["paper"], iv, 0.0, ">")
    return out
