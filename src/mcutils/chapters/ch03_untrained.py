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

from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.data import class_pairs
from mcutils.inputspace.paths import barrier, loss_profiles
from mcutils.inputspace.synthesis import synthetic_pairs
from mcutils.chapters.ch01_input_space import (effect_word, two_sample_ci, PairSet, _claim, connect_sets,
                                               connected_flags, pair_table, predict_labels,
                                               round_columns)

__all__ = ["build_untrained", "untrained_study", "barrier_evolution", "evolution_summary", "sweep_study", "factor_effects", "untrained_claims"]


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
    paper = "random-init ResNet-18, FVO pairs, free optimisation of B (sec. 4.3, Fig. 7)"
    for model, sub in untrained.groupby(model_col, sort=False):
        iv = stats.bootstrap_ci(connected_flags(sub, tol), seed=seed, strata=sub["seed"].to_numpy())
        out[f"connected_{model}"] = _claim(
            f"untrained {model}: fraction of synthetic pairs connected (< {tol:g} nats) "
            f"within {len(rounds) - 1} rounds >= {claim_frac:g}", paper, iv, claim_frac, ">=")
    iv = stats.bootstrap_ci(connected_flags(untrained, tol), seed=seed,
                            strata=untrained[model_col].to_numpy())
    out["connected_pooled"] = _claim(
        f"all untrained models pooled: fraction connected (< {tol:g} nats) within "
        f"{len(rounds) - 1} rounds >= {claim_frac:g}", paper, iv, claim_frac, ">=")
    has = 1.0 - connected_flags(untrained, tol, rounds[0])
    iv = stats.bootstrap_ci(has, seed=seed, strata=untrained[model_col].to_numpy())
    out["straight_barriers"] = _claim(
        f"straight paths between untrained synthetic pairs have barriers: fraction with a "
        f"barrier >= {tol:g} nats >= {barrier_frac:g}",
        "Fig. 7 (primary loss curve has a barrier)", iv, barrier_frac, ">=")
    if trained_label is not None:
        tr = table[table[model_col] == trained_label]
        if len(tr):
            iv = two_sample_ci(untrained["rel_length"], tr["rel_length"], seed=seed)
            out["trained_straighter"] = _claim(
                "trained networks connect synthetic pairs by straighter paths: median path "
                "length / |C - A|, untrained minus trained, > 0",
                "trained models: small deviation from a linear path (abstract)", iv, 0.0, ">")
    return out

