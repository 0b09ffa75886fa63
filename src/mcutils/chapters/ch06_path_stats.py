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
* :func:`shuffled_samples` and :func:`planted_barrier_path`: data on which a claim is
  false by construction, for the chapter's negative controls (inputs shuffled against
  each other; a path through :class:`mcutils.planted.Bump`'s known barrier);
* :func:`interval_text`: intervals as text for prose and tables.

Intervals fit the statistic: means over a few seeds are Student-t intervals with the
per-seed values (``"per_seed"``), clipped to the statistic's range where it has one
(correlations on Fisher's z scale); shares of inputs are exact binomial intervals.

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
    "correlation_seed_interval",
    "interval_text",
    "peak_coincidence",
    "per_image_correlations",
    "per_sample_correlation",
    "per_sample_correlations",
    "planted_barrier_path",
    "shuffled_samples",
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


def _seed_values(values: Sequence[float], what: str, bounds: tuple[float, float] | None = None
                 ) -> stats.Interval:
    """Student-t interval over seeds with the per-seed values and the method; with
    ``bounds`` the interval is clipped to the statistic's range."""
    vals = [float(v) for v in values]
    out = stats.seed_interval(vals)
    method = f"Student-t over {out['n']} seeds ({what})"
    if bounds is not None and np.isfinite(out["ci"]).all():
        out["ci"] = [max(out["ci"][0], bounds[0]), min(out["ci"][1], bounds[1])]
        method += f", clipped to [{bounds[0]:g}, {bounds[1]:g}]"
    return {**out, "per_seed": vals, "method": method}


def barrier_interval(path: pd.DataFrame, column: str = "robust_loss",
                     relative: bool = False) -> stats.Interval:
    """Student-t interval over seeds of :func:`barrier_heights`, with the per-seed
    heights (``"per_seed"``) and the method."""
    return _seed_values(barrier_heights(path, column, relative).to_numpy(),
                        "one curve per seed")


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
        Student-t over seeds (clipped to [-2, 2], the range of the difference);
        positive means the eigenvalue wins.
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
            "path": _seed_values(path_diff, "paired difference per curve", (-2.0, 2.0)),
            "per_sample": (_seed_values(sample_diff, "paired difference per curve", (-2.0, 2.0))
                           if sample_diff else None),
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
        ``b``). Intervals are Student-t over seeds, clipped to [0, 1] (the range of
        ``t``).
    """
    rows = []
    for s, g in _per_seed(path):
        t = g["t"].to_numpy(float)
        rows.append({"seed": s, a: float(t[int(np.argmax(g[a].to_numpy(float)))]),
                     b: float(t[int(np.argmax(g[b].to_numpy(float)))]),
                     "interior": bool(0 < int(np.argmax(g[a].to_numpy(float))) < len(t) - 1)})
    ta = np.array([r[a] for r in rows])
    tb = np.array([r[b] for r in rows])
    what = "argmax t per curve"
    return {a: _seed_values(ta, what, (0.0, 1.0)), b: _seed_values(tb, what, (0.0, 1.0)),
            "distance": _seed_values(np.abs(ta - tb), "|difference of argmax t| per curve",
                                     (0.0, 1.0)),
            "interior": float(np.mean([r["interior"] for r in rows])), "per_seed": rows}


def along_path_correlation(path: pd.DataFrame, a: str = "robust_loss", b: str = "top_eig",
                           method: str = "pearson", seed: int = 0) -> stats.Interval:
    """The paper's along-path correlation, per seed, as a Student-t interval over seeds
    on Fisher's z scale (``arctanh``), mapped back, so it stays in [-1, 1].

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
    return correlation_seed_interval(values)


def correlation_seed_interval(values: Sequence[float]) -> stats.Interval:
    """Correlations over a few seeds: a Student-t interval of Fisher's ``z = arctanh(r)``
    mapped back with ``tanh`` (so it stays in [-1, 1]); the estimate is the mean ``r``,
    and ``"per_seed"`` lists the values."""
    r = np.asarray(values, dtype=float)
    r = r[np.isfinite(r)]
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    zi = stats.seed_interval(z) if len(z) else stats.interval(np.nan, np.nan, np.nan, 0)
    ci = [float(np.tanh(v)) for v in zi["ci"]]
    est = float(r.mean()) if len(r) else float("nan")
    if np.isfinite(ci).all():
        ci = [min(ci[0], est), max(ci[1], est)]
    return {**stats.interval(est, ci[0], ci[1], len(r)), "per_seed": r.tolist(),
            "method": f"Student-t over {len(r)} seeds on Fisher's z scale"}


def bound_share(bound: pd.DataFrame, norm: str | None = None, eps: float | None = None,
                n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Share of inputs whose PGD robustness loss does not exceed the second-order bound
    at any of their rows.

    An input is one unit: it counts as a success when the bound holds at every ``t``
    and seed where it was checked, so the share is a fraction of independent inputs and
    its interval is exact (Clopper-Pearson; all inputs holding gives a lower bound below
    1). Filter with ``norm`` / ``eps``. ``n_boot`` and ``seed`` are accepted for the
    callers' sake and unused.
    """
    sub = bound
    if norm is not None:
        sub = sub[sub["norm"] == norm]
    if eps is not None:
        sub = sub[np.isclose(sub["eps"], eps)]
    if sub.empty:
        raise ParameterError(f"no bound rows for norm={norm!r}, eps={eps!r}")
    holds = (sub["robust_loss"] <= sub["bound"] * (1 + 1e-6) + 1e-9).to_numpy(bool)
    per_input = pd.Series(holds).groupby(sub["input"].to_numpy()).all()
    out = stats.binomial_interval(int(per_input.sum()), len(per_input))
    return {**out, "method": f"exact binomial (Clopper-Pearson) over {len(per_input)} inputs; "
                             "an input counts when the bound holds at all its points"}


def bound_shares(bound: pd.DataFrame, n_boot: int = 2000, seed: int = 0
                 ) -> dict[str, stats.Interval]:
    """:func:`bound_share` for every ball of ``bound``, keyed ``"<norm>, eps=<eps>"`` in
    the order the balls first appear."""
    balls = bound[["norm", "eps"]].drop_duplicates().itertuples(index=False)
    return {f"{norm}, eps={eps:g}": bound_share(bound, norm, eps, n_boot=n_boot, seed=seed)
            for norm, eps in balls}


def accuracy_interval(samples: pd.DataFrame, t: float, column: str = "robust_correct",
                      n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Accuracy (or robust accuracy) at ``t`` as a share of independent inputs.

    An input counts when it is correct under every seed's attack: at a fixed ``t`` the
    model is the same for all seeds at the ends (and close to it inside), so the seeds
    are random restarts of one attack and the worst case over them is the stronger
    attack. The interval is exact (Clopper-Pearson) over inputs; ``"per_seed"`` lists
    each seed's own accuracy. ``n_boot`` and ``seed`` are accepted for the callers' sake
    and unused.
    """
    m = _matrix(samples, column, [t])
    if m.size == 0:
        raise ParameterError(f"no per-input {column!r} at t={t}")
    ok = m.min(axis=1) > 0.5
    out = stats.binomial_interval(int(ok.sum()), len(ok))
    return {**out, "per_seed": m.mean(axis=0).tolist(),
            "method": f"exact binomial (Clopper-Pearson) over {len(ok)} inputs; an input "
                      f"counts when it resists all {m.shape[1]} attack restarts"}


def shuffled_samples(samples: pd.DataFrame, column: str = "top_eig", seed: int = 0
                     ) -> pd.DataFrame:
    """``samples`` with ``column`` permuted across inputs within each (seed, ``t``): the
    negative control of a per-input correlation, which breaks every link between the
    column and the others while keeping its distribution."""
    rng = np.random.default_rng(seed)
    out = samples.copy()
    keys = ["seed", "t"] if "seed" in out else ["t"]
    for _, idx in out.groupby(keys).groups.items():
        vals = out.loc[idx, column].to_numpy()
        out.loc[idx, column] = vals[rng.permutation(len(vals))]
    return out


def planted_barrier_path(num_ts: int = 9, column: str = "loss") -> pd.DataFrame:
    """A path table (``t``, ``seed``, ``column``) with a known barrier: the loss of class 0
    along the straight segments of :func:`mcutils.planted.bump_pairs`, one pair per
    "seed". The segments pass next to the planted bump, so the loss inside the path rises
    many times above both ends: a check of "no barrier" must fail on it."""
    import torch

    from mcutils.planted import bump_pairs

    model, a, c, y = bump_pairs()
    ts = torch.linspace(0, 1, int(num_ts))
    rows = []
    with torch.no_grad():
        for i in range(len(a)):
            xs = (1 - ts).view(-1, 1, 1, 1) * a[i] + ts.view(-1, 1, 1, 1) * c[i]
            loss = torch.nn.functional.cross_entropy(model(xs), y[i].expand(len(ts)),
                                                     reduction="none")
            rows += [{"t": float(t), "seed": i, column: float(v)} for t, v in zip(ts, loss)]
    return pd.DataFrame(rows)



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
