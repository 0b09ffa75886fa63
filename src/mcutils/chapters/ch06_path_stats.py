"""The statistics of chapter 06's study tables: barriers, correlations, controls, peaks
and the second-order bound, each as an interval the chapter can claim.

The tables are those of :func:`mcutils.chapters.ch06_robust_path.path_study`
(``samples``: per input and ``t``; ``path``: per ``t``; ``bound``: per input, ``t`` and
ball), with a ``seed`` column for several curves.

* :func:`barrier_heights` and :func:`barrier_interval`: the barrier of a column along
  the path, per seed and as a Student-t interval over seeds; :func:`barrier_summary`:
  the chapter's barriers and the robust accuracy of the two ends;
* :func:`per_sample_correlation` and :func:`per_sample_correlations`: Spearman
  correlations across inputs at fixed ``t``, bootstrapped over inputs;
  :func:`per_image_correlations`: those of the eigenvalue and of its two per-input
  rivals;
* :func:`control_comparison`: the eigenvalue against controls that share the path's
  trend (:data:`CONTROLS`);
* :func:`peak_coincidence`: where two columns peak along the path;
* :func:`along_path_correlation`: the paper's along-path coefficient, a description;
* :func:`bound_share` and :func:`bound_shares`: the share of inputs within the
  second-order bound, per ball;
* :func:`accuracy_interval`: a (robust) accuracy at one ``t``;
* :func:`interval_text`: intervals as text for prose and tables.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _sps

from mcutils.core import stats
from mcutils.core.checks import ParameterError

__all__ = [
    "CONTROLS",
    "accuracy_interval",
    "along_path_correlation",
    "barrier_heights",
    "barrier_interval",
    "barrier_summary",
    "bound_share",
    "bound_shares",
    "control_comparison",
    "interval_text",
    "peak_coincidence",
    "per_image_correlations",
    "per_sample_correlation",
    "per_sample_correlations",
]

CONTROLS = ("loss", "grad_norm", "weight_norm")
"""Quantities that share the path's trend; the eigenvalue must track the robustness
loss better than each of them (``weight_norm`` exists per point only)."""


def _per_seed(path: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    if "seed" not in path:
        return [(0, path.sort_values("t"))]
    return [(s, g.sort_values("t")) for s, g in path.groupby("seed", sort=True)]


def barrier_heights(path: pd.DataFrame, column: str = "robust_loss",
                    relative: bool = False) -> pd.Series:
    """Per seed: the largest value strictly inside the path minus the larger end value.

    With ``relative``, divided by that end value (a barrier of 0.1 rises 10% above the
    worse end). Positive: a barrier; negative: the path never exceeds its worse end.
    """
    out = {}
    for s, g in _per_seed(path):
        v = g[column].to_numpy(dtype=float)
        if len(v) < 3:
            raise ParameterError("a barrier needs at least 3 points along the path")
        end = max(v[0], v[-1])
        height = v[1:-1].max() - end
        out[s] = height / abs(end) if relative else height
    return pd.Series(out, name=f"{column}_barrier", dtype=float)


def barrier_interval(path: pd.DataFrame, column: str = "robust_loss",
                     relative: bool = False) -> stats.Interval:
    """Student-t interval over seeds of :func:`barrier_heights`."""
    return stats.seed_interval(barrier_heights(path, column, relative).to_numpy())


def barrier_summary(path: pd.DataFrame, samples: pd.DataFrame, n_boot: int = 2000,
                    seed: int = 0) -> dict[str, Any]:
    """The chapter's barrier numbers: ``"standard"`` and ``"robust"`` (relative barriers
    of the clean and the robustness loss), ``"robust_nats"`` (the robustness-loss barrier
    in nats), all Student-t intervals over seeds, and ``"robust_ends"`` (the PGD robust
    accuracy at ``t = 0`` and ``t = 1``, bootstrapped over inputs)."""
    return {
        "standard": barrier_interval(path, "loss", relative=True),
        "robust": barrier_interval(path, "robust_loss", relative=True),
        "robust_nats": barrier_interval(path, "robust_loss"),
        "robust_ends": [accuracy_interval(samples, t, n_boot=n_boot, seed=seed)
                        for t in (0.0, 1.0)],
    }


def _spearman_columns(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Mean over columns of the Spearman correlation between columns of ``a`` and ``b``
    (``[inputs, columns]``). With a leading resample axis (``[r, inputs, columns]``) it
    returns ``r`` values, one per resample. NaN where a column is constant."""
    ra = _sps.rankdata(a, axis=-2)
    rb = _sps.rankdata(b, axis=-2)
    ra = ra - ra.mean(-2, keepdims=True)
    rb = rb - rb.mean(-2, keepdims=True)
    den = np.sqrt((ra ** 2).sum(-2) * (rb ** 2).sum(-2))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(-2) / den
    out = np.where(np.isfinite(r).all(-1), r.mean(-1), np.nan)
    return float(out) if out.ndim == 0 else out


def _matrix(samples: pd.DataFrame, column: str, ts: Sequence[float]) -> np.ndarray:
    """``[inputs, (seed, t)]`` matrix of a per-input column at the given ``t``."""
    tv = samples["t"].to_numpy(float)
    sub = samples[np.isclose(tv[:, None], np.asarray(ts, float)[None], atol=1e-6).any(1)]
    key = ["seed", "t"] if "seed" in sub else ["t"]
    wide = sub.pivot_table(index="input", columns=key, values=column, aggfunc="first")
    return wide.dropna().to_numpy(dtype=float)


def per_sample_correlation(samples: pd.DataFrame, ts: float | Sequence[float],
                           a: str = "top_eig", b: str = "robust_loss", n_boot: int = 2000,
                           seed: int = 0) -> stats.Interval:
    """Spearman correlation across inputs of ``a`` and ``b`` at fixed ``t``.

    With several seeds (and several ``t``) the correlation is computed per (seed, t)
    and averaged; the interval is a bootstrap over inputs, resampled jointly across
    seeds and ``t`` (the same test inputs enter every curve). ``n`` is the number of
    inputs.
    """
    ts = [float(ts)] if np.isscalar(ts) else [float(t) for t in ts]
    ma, mb = _matrix(samples, a, ts), _matrix(samples, b, ts)
    if ma.size == 0 or ma.shape != mb.shape or ma.shape[0] < 3:
        raise ParameterError(f"no complete per-input data for {a!r} and {b!r} at t={ts}")
    return stats.bootstrap_ci((ma, mb), _spearman_columns, n_boot=n_boot, seed=seed,
                              vectorized=True)


def per_sample_correlations(samples: pd.DataFrame, ts: Sequence[float] | None = None,
                            a: str = "top_eig", b: str = "robust_loss", n_boot: int = 2000,
                            seed: int = 0) -> dict[float, stats.Interval]:
    """:func:`per_sample_correlation` at each ``t`` (default: every ``t`` on which all
    inputs were evaluated)."""
    if ts is None:
        counts = samples.groupby("t")["input"].nunique()
        ts = counts.index[counts == counts.max()].tolist()
    return {float(t): per_sample_correlation(samples, t, a, b, n_boot, seed) for t in ts}


def per_image_correlations(samples: pd.DataFrame, sample_ts: Sequence[float],
                           n_boot: int = 2000, seed: int = 0
                           ) -> dict[str, dict[float, stats.Interval]]:
    """:func:`per_sample_correlations` with the robustness loss at ``sample_ts`` of the
    top eigenvalue (``"top_eig"``) and of its per-input rivals, the clean loss
    (``"loss"``) and the input-gradient norm (``"grad_norm"``)."""
    return {a: per_sample_correlations(samples, sample_ts, a=a, n_boot=n_boot, seed=seed)
            for a in ("top_eig", "loss", "grad_norm")}


def _pearson(u: np.ndarray, v: np.ndarray) -> float:
    if np.std(u) == 0 or np.std(v) == 0:
        return float("nan")
    return float(np.corrcoef(u, v)[0, 1])


def control_comparison(samples: pd.DataFrame, path: pd.DataFrame,
                       sample_ts: Sequence[float], target: str = "robust_loss",
                       candidate: str = "top_eig", controls: Sequence[str] = CONTROLS
                       ) -> dict[str, dict[str, Any]]:
    """Does ``candidate`` track ``target`` better than controls that share the path's trend?

    Per seed, two paired differences (the candidate's own sign is kept, the control
    gets the benefit of the doubt with ``|r|``):

    * ``"path"``: Pearson ``r(target, candidate) - |r(target, control)|`` over the
      points of the path (per-point means), the paper's statistic;
    * ``"per_sample"``: Spearman ``rho(target, candidate) - |rho(target, control)|``
      across inputs, averaged over ``sample_ts`` (not for ``weight_norm``, which has
      one value per point).

    Returns:
        A dict keyed by control. Each value holds ``"path"`` (an interval),
        ``"per_sample"`` (an interval, or None) and ``"per_seed"`` (the per-seed
        differences, as lists under ``"path"`` and ``"per_sample"``). Intervals are
        Student-t over seeds; positive means the eigenvalue wins.
    """
    out: dict[str, dict[str, Any]] = {}
    seeds = _per_seed(path)
    for control in controls:
        if control not in path:
            raise ParameterError(f"control {control!r} is not a column of the path table")
        path_diff, sample_diff = [], []
        for s, g in seeds:
            tv = g[target].to_numpy(float)
            path_diff.append(_pearson(tv, g[candidate].to_numpy(float))
                             - abs(_pearson(tv, g[control].to_numpy(float))))
            if control in samples:
                sub = samples[samples["seed"] == s] if "seed" in samples else samples
                mt, mc = _matrix(sub, target, sample_ts), _matrix(sub, control, sample_ts)
                mk = _matrix(sub, candidate, sample_ts)
                rho_c = [abs(_spearman_columns(mt[:, [j]], mc[:, [j]])) for j in range(mt.shape[1])]
                rho_k = [_spearman_columns(mt[:, [j]], mk[:, [j]]) for j in range(mt.shape[1])]
                sample_diff.append(float(np.mean(rho_k) - np.mean(rho_c)))
        out[control] = {
            "path": stats.seed_interval(path_diff),
            "per_sample": stats.seed_interval(sample_diff) if sample_diff else None,
            "per_seed": {"path": path_diff, "per_sample": sample_diff},
        }
    return out


def peak_coincidence(path: pd.DataFrame, a: str = "robust_loss", b: str = "top_eig"
                     ) -> dict[str, Any]:
    """Where along the path ``a`` and ``b`` peak, per seed, and how far apart.

    Returns:
        A dict with the interval of the argmax t of ``a`` (under the key ``a``) and of
        ``b`` (key ``b``), ``"distance"`` (the interval of the absolute difference of the
        two argmax t), ``"interior"`` (the share of seeds whose ``a`` peak is strictly
        inside the path) and ``"per_seed"`` (a list of dicts with ``"seed"``, ``a`` and
        ``b``). Intervals are Student-t over seeds.
    """
    rows = []
    for s, g in _per_seed(path):
        t = g["t"].to_numpy(float)
        rows.append({"seed": s, a: float(t[int(np.argmax(g[a].to_numpy(float)))]),
                     b: float(t[int(np.argmax(g[b].to_numpy(float)))]),
                     "interior": bool(0 < int(np.argmax(g[a].to_numpy(float))) < len(t) - 1)})
    ta = np.array([r[a] for r in rows])
    tb = np.array([r[b] for r in rows])
    return {a: stats.seed_interval(ta), b: stats.seed_interval(tb),
            "distance": stats.seed_interval(np.abs(ta - tb)),
            "interior": float(np.mean([r["interior"] for r in rows])), "per_seed": rows}


def along_path_correlation(path: pd.DataFrame, a: str = "robust_loss", b: str = "top_eig",
                           method: str = "pearson", seed: int = 0) -> stats.Interval:
    """The paper's along-path correlation, per seed, as a Student-t interval over seeds.

    ``method="pearson"``: Pearson ``r`` over the points (the paper's PCC);
    ``"diff"`` / ``"detrend"``: :func:`mcutils.core.stats.trend_robust_correlation`'s
    estimate (step-to-step differences / residuals after a line in ``t``; needs at
    least 4 points, else the interval is NaN). A description only: two smooth curves
    with one peak each correlate strongly whatever links them.
    """
    if method not in ("pearson", "diff", "detrend"):
        raise ParameterError(f"method={method!r} is not known; valid values: pearson, diff, "
                             "detrend")
    values = []
    for _, g in _per_seed(path):
        u, v = g[a].to_numpy(float), g[b].to_numpy(float)
        if method == "pearson":
            values.append(_pearson(u, v))
        elif len(u) >= 4:
            values.append(stats.trend_robust_correlation(u, v, t=g["t"].to_numpy(float),
                                                         method=method, n_boot=200,
                                                         seed=seed)["estimate"])
    if not np.isfinite(values).any():  # too few points for the trend-robust variants
        return stats.interval(np.nan, np.nan, np.nan, len(values))
    return stats.seed_interval(values)


def bound_share(bound: pd.DataFrame, norm: str | None = None, eps: float | None = None,
                n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Share of inputs whose PGD robustness loss does not exceed the second-order bound.

    Rows are grouped by input (one input at several ``t`` and seeds is one unit) and the
    interval is a cluster bootstrap over inputs. Filter with ``norm`` / ``eps``.
    """
    sub = bound
    if norm is not None:
        sub = sub[sub["norm"] == norm]
    if eps is not None:
        sub = sub[np.isclose(sub["eps"], eps)]
    if sub.empty:
        raise ParameterError(f"no bound rows for norm={norm!r}, eps={eps!r}")
    holds = (sub["robust_loss"] <= sub["bound"] * (1 + 1e-6) + 1e-9).to_numpy(float)
    return stats.grouped_bootstrap_ci(holds, sub["input"].to_numpy(), n_boot=n_boot, seed=seed)


def bound_shares(bound: pd.DataFrame, n_boot: int = 2000, seed: int = 0
                 ) -> dict[str, stats.Interval]:
    """:func:`bound_share` for every ball of ``bound``, keyed ``"<norm>, eps=<eps>"`` in
    the order the balls first appear."""
    balls = bound[["norm", "eps"]].drop_duplicates().itertuples(index=False)
    return {f"{norm}, eps={eps:g}": bound_share(bound, norm, eps, n_boot=n_boot, seed=seed)
            for norm, eps in balls}


def accuracy_interval(samples: pd.DataFrame, t: float, column: str = "robust_correct",
                      n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Accuracy (or robust accuracy) at ``t``, averaged over seeds, bootstrapped over inputs."""
    m = _matrix(samples, column, [t])
    if m.size == 0:
        raise ParameterError(f"no per-input {column!r} at t={t}")
    return stats.bootstrap_ci(m, lambda z: float(z.mean()), n_boot=n_boot, seed=seed)



def interval_text(value: Mapping[str, Any] | Mapping[Any, Any] | None, digits: int = 3,
                  label: str = "") -> str:
    """An interval (or a dict of them, or of dicts of them) as text for prose and tables.

    ``{"estimate": 0.5, "ci": [0.4, 0.6], "n": 3}`` becomes ``"0.500 [0.400, 0.600]"``;
    a dict of intervals becomes ``"key: ...; key: ..."`` (``label`` is put before each
    key, e.g. ``"t="``); ``None`` becomes ``"n/a"``.
    """
    if value is None:
        return "n/a"
    if {"estimate", "ci"} <= set(value):
        est, (lo, hi) = float(value["estimate"]), value["ci"]

        def f(v: float) -> str:
            return "n/a" if not np.isfinite(float(v)) else f"{float(v):.{digits}f}"
        return f"{f(est)} [{f(lo)}, {f(hi)}]"
    return "; ".join(f"{label}{k:g}: {interval_text(v, digits)}" if isinstance(k, float)
                     else f"{label}{k}: {interval_text(v, digits)}" for k, v in value.items())
