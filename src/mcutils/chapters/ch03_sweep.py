"""Chapter 03's sweep of the narrow ResNet: does its width, its optimisation budget or the
tolerance drive the fraction of synthetic pairs it connects?

* :func:`sweep_study`: connectivity of synthetic pairs over a grid of widths and step budgets;
* :func:`run_sweep`: the chapter's sweep, each factor changed alone from the base cell;
* :func:`factor_effects`: each factor's paired effect on the connected fraction;
* :func:`label_cells` and :func:`cell_tolerance_curve`: the cells' labels and tolerance curves.

Tested at a tiny size in ``tests/test_inputspace_studies.py`` and
``tests/test_ch03_untrained.py``. Used by chapter 03.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mcutils.chapters.ch01_input_space import connected_flags, effect_word
from mcutils.chapters.ch03_untrained import (StudySettings, sweep_cells, build_untrained,
                                             part_table, study_part, untrained_study)
from mcutils.core import stats
from mcutils.core.checks import ParameterError

__all__ = ["sweep_study", "run_sweep", "factor_effects", "label_cells", "cell_tolerance_curve"]


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


def run_sweep(params: Mapping[str, Any], cfg: StudySettings | None = None
              ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """The narrow ResNet's sweep: the base cell (first width, first step factor) on
    ``sweep_base_seeds``, and every other step factor and width changed alone from it on
    ``sweep_seeds``, one pair per class, matched pair by pair. Each seed of each cell is
    a :func:`~mcutils.chapters.ch03_untrained.study_part` (computed once, cached, and run
    side by side in the runner's pool); ``cfg`` is kept for callers.

    Returns:
        ``(sweep, base, alternatives)``: the pair table (columns ``width`` and
        ``step_factor``), the base cell's levels ``{"width", "step_factor"}`` and each
        varied factor's first alternative level, as :func:`factor_effects` takes them.
    """
    p = params
    widths, factors = p["sweep_widths"], p["sweep_step_factors"]
    base = dict(width=widths[0], step_factor=factors[0])
    frames = [part_table(study_part(p, "sweep", s, f, w), width=w, step_factor=f)
              for w, f, seeds in sweep_cells(p) for s in seeds]
    sweep = pd.concat(frames, ignore_index=True)
    alternatives = {}
    if len(widths) > 1:
        alternatives["width"] = widths[1]
    if len(factors) > 1:
        alternatives["step_factor"] = factors[1]
    return sweep, base, alternatives


def label_cells(sweep: pd.DataFrame) -> pd.DataFrame:
    """A copy of a :func:`sweep_study` table with a ``cell`` label ("width w, steps xf")
    and ``end_loss_worse`` (the class loss of the worse synthetic input of each pair)."""
    out = sweep.copy()
    out["cell"] = [f"width {w}, steps x{f:g}" for w, f in zip(out["width"], out["step_factor"])]
    out["end_loss_worse"] = np.maximum(out["loss_a"], out["loss_c"])
    return out


def cell_tolerance_curve(sweep: pd.DataFrame, tolerances: Sequence[float],
                         seed: int = 0) -> pd.DataFrame:
    """Per cell of a :func:`sweep_study` and tolerance: the fraction connected after the
    last round, with an exact (Clopper-Pearson) interval over pairs: rows ``(cell, tol,
    estimate, lo, hi)``. ``seed`` is kept for callers; the interval needs none."""
    rows = []
    for name, sub in label_cells(sweep).groupby("cell", sort=False):
        for t in tolerances:
            iv = stats.fraction_interval(connected_flags(sub, t).astype(int))
            rows.append(dict(cell=name, tol=t, estimate=iv["estimate"], lo=iv["ci"][0],
                             hi=iv["ci"][1]))
    return pd.DataFrame(rows)
