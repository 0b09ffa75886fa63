"""Uncertainty for the book's claims: intervals over independent units or seeds.

Every quantity with uncertainty that a chapter glues has one shape, an *interval*::

    {"estimate": x, "ci": [lo, hi], "n": n}

where ``n`` counts the independent units the interval rests on (pairs, inputs, grids or
seeds) and ``ci`` is a 95% confidence interval unless stated.

* :func:`binomial_interval`, :func:`fraction_interval`: exact (Clopper-Pearson) intervals
  for fractions of independent successes (never a zero-width interval).
* :func:`hierarchical_bootstrap_ci`: nested units (seed -> class -> pair), resampling the
  top level first.
* :func:`seed_rate_interval`: a rate over a few seeds, on the logit scale, inside [0, 1].
* :func:`bootstrap_ci`: percentile bootstrap over units; several arrays are resampled
  jointly (a *paired* bootstrap when two methods share units), optionally within strata.
* :func:`paired_difference_ci`: the paired bootstrap of ``stat(a) - stat(b)``.
* :func:`grouped_bootstrap_ci`: resample whole groups (clusters of dependent units,
  such as pairs that share a source image).
* :func:`seed_interval`: a Student-t interval over a handful of seeds' estimates (a
  percentile bootstrap over 3 seeds covers too little).
* :func:`wilcoxon_paired`: Wilcoxon signed-rank test for paired samples (scipy).
* :func:`format_interval`, :func:`interval_word`: an interval as prose quotes it, and a
  word computed from where it lies (the one formatting every chapter uses).
* :func:`trend_robust_correlation`: the correlation of two series along a path that a
  shared trend cannot produce (step-to-step differences or residuals after a linear
  trend in ``t``), with a moving-block bootstrap interval.
* AUROC of separating two sets of scores: :func:`auroc_of` (two samples),
  :func:`auroc` (labels and scores, with a percentile bootstrap: :class:`AUROC`),
  :func:`roc_curve`, :func:`tpr_at_fpr` (the true-positive rate at a false-positive rate),
  :func:`metric_interval` (AUROC or TPR with a bootstrap interval over sources) and
  :func:`auroc_difference` (the paired bootstrap of a difference between two scorers).

Used by every chapter through :mod:`mcutils.core.report`; the AUROC helpers by chapter
04 (:mod:`mcutils.detection`, :mod:`mcutils.advbarriers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps

from mcutils.core.checks import ParameterError

__all__ = [
    "interval",
    "bootstrap_ci",
    "paired_difference_ci",
    "grouped_bootstrap_ci",
    "seed_interval",
    "wilcoxon_paired",
    "trend_robust_correlation",
    "Interval",
    "binomial_interval",
    "fraction_interval",
    "hierarchical_bootstrap_ci",
    "seed_rate_interval",
    "format_interval",
    "interval_word",
    "AUROC",
    "auroc",
    "auroc_difference",
    "auroc_of",
    "metric_interval",
    "roc_curve",
    "tpr_at_fpr",
]

Interval = dict[str, Any]


def interval(estimate: float, lo: float, hi: float, n: int) -> Interval:
    """The book's interval shape ``{"estimate", "ci": [lo, hi], "n"}`` with plain floats."""
    return {"estimate": float(estimate), "ci": [float(lo), float(hi)], "n": int(n)}


def _as_arrays(data: Any) -> tuple[list[np.ndarray], int]:
    """A tuple means several arrays resampled jointly; anything else is one array."""
    arrays = list(data) if isinstance(data, tuple) else [data]
    arrays = [np.asarray(_to_numpy(a)) for a in arrays]
    arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays resampled together must have one length, got "
                         f"{[len(a) for a in arrays]}")
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    return arrays, n


def _to_numpy(a: Any) -> Any:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return a


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    if not isinstance(n_boot, int) or n_boot < 10:
        raise ValueError(f"n_boot={n_boot!r} must be an integer >= 10")


def bootstrap_ci(data: Any, statistic: Callable[..., float] = np.mean, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0, strata: Any = None,
                 vectorized: bool = False) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over independent units.

    Args:
        data: an array of per-unit values, or a *tuple* of arrays of one length that are
            resampled *jointly* (rows are units): ``statistic`` then receives each array
            resampled with the same indices. This is the paired bootstrap when two
            methods are measured on the same units (e.g. two detectors' scores plus the
            labels).
        statistic: maps the (resampled) array(s) to a number; ``np.mean`` by default.
        n_boot: bootstrap resamples.
        level: coverage of the interval.
        seed: seed of the resampling (results repeat exactly).
        strata: optional per-unit labels; units are resampled within each stratum, so
            every resample keeps the strata sizes (use the class labels for AUROC).
        vectorized: ``statistic`` takes a leading resample axis (arrays ``[r, n, ...]``)
            and returns ``r`` values; it is then called on chunks of resamples instead
            of once per resample. The resamples, and so the interval, are the same.

    Returns:
        ``{"estimate": statistic(data), "ci": [lo, hi], "n": number of units}``.
        Resamples on which ``statistic`` is not finite are dropped.
    """
    _check_level(level, n_boot)
    arrays, n = _as_arrays(data)
    est = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    if strata is None:
        idx = rng.integers(0, n, size=(n_boot, n))
    else:
        strata = np.asarray(_to_numpy(strata))
        if len(strata) != n:
            raise ValueError("strata must have one label per unit")
        idx = np.empty((n_boot, n), dtype=np.int64)
        pos = 0
        for s in np.unique(strata):
            members = np.flatnonzero(strata == s)
            idx[:, pos:pos + len(members)] = members[rng.integers(0, len(members),
                                                                  size=(n_boot, len(members)))]
            pos += len(members)
    if vectorized:
        reps = np.concatenate([_batched_stat(statistic, [a[chunk] for a in arrays], len(chunk))
                               for chunk in np.array_split(idx, -(-n_boot // 256))])
    else:
        reps = np.array([statistic(*[a[i] for a in arrays]) for i in idx], dtype=float)
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return interval(est, np.nan, np.nan, n)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return interval(est, lo, hi, n)


def _batched_stat(statistic: Callable[..., Any], arrays: list, r: int) -> np.ndarray:
    out = np.asarray(statistic(*arrays), dtype=float)
    if out.shape != (r,):
        raise ValueError(f"a vectorized statistic must return one value per resample "
                         f"(shape ({r},)), got shape {out.shape}")
    return out


def paired_difference_ci(a: Any, b: Any, statistic: Callable[[np.ndarray], float] = np.mean,
                         n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Paired bootstrap interval of ``statistic(a) - statistic(b)``.

    ``a[i]`` and ``b[i]`` are two measurements of the same unit ``i``; the units are
    resampled jointly, so the interval accounts for what the two share.
    """
    return bootstrap_ci((np.asarray(_to_numpy(a), float), np.asarray(_to_numpy(b), float)),
                        lambda x, y: statistic(x) - statistic(y), n_boot=n_boot, level=level,
                        seed=seed)


def grouped_bootstrap_ci(values: Any, groups: Any,
                         statistic: Callable[[np.ndarray], float] = np.mean,
                         n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Cluster bootstrap: resample whole groups with replacement, keep their units together.

    Use it when units within a group are dependent (pairs sharing a source image, points
    of one grid). ``n`` in the result is the number of groups.
    """
    _check_level(level, n_boot)
    values = np.asarray(_to_numpy(values), dtype=float)
    groups = np.asarray(_to_numpy(groups))
    if len(values) != len(groups) or len(values) == 0:
        raise ValueError("values and groups must be non-empty and of one length")
    labels = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in labels]
    est = float(statistic(values))
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(labels), size=len(labels))
        reps.append(statistic(values[np.concatenate([members[k] for k in pick])]))
    reps = np.asarray(reps, dtype=float)
    reps = reps[np.isfinite(reps)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan)
    return interval(est, lo, hi, len(labels))


def seed_interval(estimates: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean over seeds: ``mean +- t_{n-1} * sd / sqrt(n)``.

    The right interval for a handful (3-10) of independent seeds. With one seed the
    interval is ``[nan, nan]``: one run says nothing about its spread, and a claim on it
    is inconclusive.
    """
    x = np.asarray(_to_numpy(estimates), dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise ValueError("seed_interval needs at least one finite estimate")
    mean = float(x.mean())
    if len(x) == 1:
        return interval(mean, np.nan, np.nan, 1)
    half = _sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return interval(mean, mean - half, mean + half, len(x))


def wilcoxon_paired(a: Any, b: Any, alternative: str = "two-sided") -> dict[str, float]:
    """Wilcoxon signed-rank test of paired samples ``a[i]`` vs ``b[i]`` (scipy).

    Returns:
        ``{"statistic", "pvalue", "n", "median_difference"}``; ``alternative`` is
        ``"two-sided"``, ``"greater"`` (a > b) or ``"less"``. Pairs with a zero
        difference are dropped (scipy's ``zero_method="wilcox"``).
    """
    a = np.asarray(_to_numpy(a), dtype=float)
    b = np.asarray(_to_numpy(b), dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError("a and b must be 1-D arrays of one non-zero length")
    d = a - b
    if np.all(d == 0):
        return {"statistic": 0.0, "pvalue": 1.0, "n": int(len(a)), "median_difference": 0.0}
    res = _sps.wilcoxon(a, b, alternative=alternative)
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "n": int(len(a)),
            "median_difference": float(np.median(d))}


def _block_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
    return np.concatenate([np.arange(s, s + block) for s in starts])[:n]


def trend_robust_correlation(x: Any, y: Any, t: Any = None, method: str = "diff",
                             block: int | None = None, n_boot: int = 2000, level: float = 0.95,
                             seed: int = 0) -> Interval:
    """Pearson correlation of two series along a path, with their shared trend removed.

    Two series that both rise and fall along ``t`` correlate strongly whatever links
    them; this removes that part before correlating:

    * ``method="diff"``: correlate the step-to-step differences ``x[k+1] - x[k]``;
    * ``method="detrend"``: correlate the residuals after a least-squares line in ``t``.

    The interval is a moving-block bootstrap over the transformed series (blocks of
    ``block`` consecutive points, default ``ceil(sqrt(m))``), which keeps short-range
    dependence along the path.

    Note: removing a linear trend is not enough to make the check fail-safe; two smooth
    single-peaked curves still give high values. Use it as a description; the book's
    checks of a link between two quantities are per-unit correlations at fixed ``t``.

    Returns:
        ``{"estimate", "ci", "n"}`` with ``n`` the number of transformed points.
    """
    x = np.asarray(_to_numpy(x), dtype=float)
    y = np.asarray(_to_numpy(y), dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 4:
        raise ValueError("x and y must be 1-D series of one length >= 4")
    if method == "diff":
        u, v = np.diff(x), np.diff(y)
    elif method == "detrend":
        tt = np.arange(len(x), dtype=float) if t is None else np.asarray(_to_numpy(t), float)
        if tt.shape != x.shape:
            raise ValueError("t must have the length of x")
        design = np.stack([np.ones_like(tt), tt], 1)
        u = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
        v = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    else:
        raise ValueError(f"method={method!r} is not known; valid values: diff, detrend")
    _check_level(level, n_boot)
    m = len(u)
    block = block or int(np.ceil(np.sqrt(m)))
    if not 1 <= block <= m:
        raise ValueError(f"block={block} must be in [1, {m}]")

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        if a.std() == 0 or b.std() == 0:
            return np.nan
        return float(np.corrcoef(a, b)[0, 1])

    est = corr(u, v)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        i = _block_indices(m, block, rng)
        reps.append(corr(u[i], v[i]))
    reps = np.asarray(reps)
    reps = reps[np.isfinite(reps)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan)
    return interval(est, lo, hi, m)


def binomial_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval of a fraction of independent successes.

    The right interval for "k of n pairs are connected": it never collapses to a point
    (40/40 gives [0.912, 1], 0/40 gives [0, 0.088]), where a percentile bootstrap of an
    all-or-nothing sample is [1, 1] at any n. Its coverage is at least ``level``.

    Args:
        successes: number of successes ``k`` (``0 <= k <= n``).
        n: number of independent trials (> 0).
        level: coverage.
    """
    if isinstance(successes, bool) or isinstance(n, bool):
        raise ValueError("successes and n must be integers, not booleans")
    k, n = int(successes), int(n)
    if k != successes or n != n or n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need integers 0 <= successes <= n and n > 0, got {successes}/{n}")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(_sps.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(_sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return interval(k / n, lo, hi, n)


def fraction_interval(outcomes: Any, level: float = 0.95) -> Interval:
    """:func:`binomial_interval` of a boolean (0/1) array of independent outcomes."""
    x = np.asarray(_to_numpy(outcomes))
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("outcomes must be a non-empty 1-D array of 0/1 or booleans")
    if not np.isin(x, (0, 1)).all():
        raise ValueError("outcomes must be 0/1 or booleans")
    return binomial_interval(int(x.sum()), len(x), level)


def hierarchical_bootstrap_ci(values: Any, levels: Sequence[Any],
                              statistic: Callable[[np.ndarray], float] = np.mean,
                              n_boot: int = 2000, level: float = 0.95,
                              seed: int = 0) -> Interval:
    """Bootstrap of nested units (seed -> class -> pair): resample the top level with
    replacement, then within each drawn unit the next level, down to the values.

    A strong effect of the top level (seeds that differ) widens the interval, as it
    should; a flat bootstrap over all values treats them as independent and is too
    narrow. ``n`` in the result is the number of top-level units.

    Args:
        values: ``[N]`` one value per bottom-level unit.
        levels: labels from the top level down, each ``[N]`` (``[seed]`` or
            ``[seed, class]``); units are nested, so a class label counts within its seed.
        statistic: applied to the resampled values.
    """
    _check_level(level, n_boot)
    vals = np.asarray(_to_numpy(values), dtype=float)
    labs = [np.asarray(_to_numpy(lab)) for lab in levels]
    if len(vals) == 0 or not labs or any(len(lab) != len(vals) for lab in labs):
        raise ValueError("values and every level's labels must be non-empty and of one length")

    def tree(idx: np.ndarray, depth: int):
        if depth == len(labs):
            return idx
        groups = [idx[labs[depth][idx] == g] for g in np.unique(labs[depth][idx])]
        return [tree(g, depth + 1) for g in groups]

    root = tree(np.arange(len(vals)), 0)
    rng = np.random.default_rng(seed)

    def draw(node) -> np.ndarray:
        if isinstance(node, np.ndarray):
            return node[rng.integers(0, len(node), size=len(node))]
        pick = rng.integers(0, len(node), size=len(node))
        return np.concatenate([draw(node[k]) for k in pick])

    reps = np.asarray([statistic(vals[draw(root)]) for _ in range(n_boot)], dtype=float)
    reps = reps[np.isfinite(reps)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha]) if len(reps) else (np.nan, np.nan)
    return interval(float(statistic(vals)), lo, hi, len(root))


def seed_rate_interval(successes: Sequence[int], totals: Sequence[int],
                       level: float = 0.95) -> Interval:
    """A rate (accuracy, attack success) measured on a few seeds, with an interval that
    stays inside [0, 1] and never collapses to a point.

    Over two or more seeds: a Student-t interval over the seeds on the logit scale, mapped
    back (each seed's rate is ``(k + 0.5) / (n + 1)`` on the logit scale, so 0 and 1 are
    finite), widened where needed to the exact binomial interval of the pooled counts, so
    seeds that agree exactly still carry the uncertainty of their images. With one seed,
    the exact binomial interval alone. The estimate is the pooled rate ``sum k / sum n``;
    ``per_seed`` lists each seed's rate (a handful of seeds should be shown, not only
    summarised).
    """
    k = np.asarray(_to_numpy(successes), dtype=float)
    n = np.asarray(_to_numpy(totals), dtype=float)
    if k.shape != n.shape or k.ndim != 1 or len(k) == 0 or (n <= 0).any() \
            or (k < 0).any() or (k > n).any() or (k != np.rint(k)).any() \
            or (n != np.rint(n)).any():
        raise ValueError("need one integer count of successes and one positive integer total "
                         "per seed, with 0 <= successes <= total")
    pooled = binomial_interval(int(k.sum()), int(n.sum()), level)
    out = interval(pooled["estimate"], *pooled["ci"], len(k))
    if len(k) > 1:
        z = np.log((k + 0.5) / (n - k + 0.5))
        half = _sps.t.ppf(0.5 + level / 2, len(z) - 1) * z.std(ddof=1) / np.sqrt(len(z))
        lo, hi = (float(1 / (1 + np.exp(-v))) for v in (z.mean() - half, z.mean() + half))
        out["ci"] = [min(lo, pooled["ci"][0]), max(hi, pooled["ci"][1])]
    out["per_seed"] = [float(v) for v in k / n]
    return out


def format_interval(iv: Mapping[str, Any], digits: int = 2) -> str:
    """``"0.81 [0.79, 0.83]"``: an interval as prose quotes it (``n/a`` for a missing end)."""
    def f(v: float) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"

    return f"{f(iv['estimate'])} [{f(iv['ci'][0])}, {f(iv['ci'][1])}]"


def interval_word(iv: Mapping[str, Any], above: str, below: str, neither: str,
                  threshold: float = 0.0) -> str:
    """A qualitative word computed from an interval: ``above`` when the whole 95% interval
    lies above ``threshold``, ``below`` when wholly below, else ``neither``."""
    lo, hi = (float(v) for v in iv["ci"])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return neither
    return above if lo > threshold else below if hi < threshold else neither


# ----------------------------------------------------------------------------- AUROC
def auroc_of(negative: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of separating ``positive`` (label 1) from ``negative`` scores: the
    Mann-Whitney statistic with ties counted one half (NaN when a side is empty)."""
    from scipy.stats import rankdata

    negative, positive = np.asarray(negative, float), np.asarray(positive, float)
    n0, n1 = len(negative), len(positive)
    if n0 == 0 or n1 == 0:
        return float("nan")
    ranks = rankdata(np.r_[negative, positive])
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve (higher score = adversarial)."""
    from sklearn.metrics import roc_curve as _roc

    fpr, tpr, _ = _roc(np.asarray(labels), np.asarray(scores))
    return fpr, tpr


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney) identity, ties counted one half."""
    from scipy.stats import rankdata

    pos = labels == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass
class AUROC:
    """Area under the ROC curve with a bootstrap confidence interval."""

    auc: float
    low: float
    high: float

    def __float__(self) -> float:
        return self.auc


def auroc(labels: np.ndarray, scores: np.ndarray, num_boot: int = 1000, level: float = 0.95,
          seed: int = 0, groups: np.ndarray | None = None) -> AUROC:
    """AUROC and a percentile bootstrap interval.

    Args:
        labels: ``[N]`` 0/1 (1 = adversarial); scores: ``[N]`` (higher = adversarial).
        num_boot: bootstrap resamples (0: no interval, ``low = high = auc``).
        level: confidence level.
        seed: bootstrap seed.
        groups: optional source ids; resampling whole groups keeps paired real and
            adversarial rows together.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or set(np.unique(labels).tolist()) != {0, 1}:
        raise ParameterError("labels (both 0 and 1 present) and scores must have the same shape")
    if not 0 < level < 1:
        raise ParameterError(f"level={level} must be in (0, 1)")
    auc = _auc(labels, scores)
    if num_boot <= 0:
        return AUROC(auc, auc, auc)
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(len(labels))]
    else:
        groups = np.asarray(groups)
        units = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    boots = []
    for _ in range(num_boot):
        pick = rng.integers(0, len(units), len(units))
        idx = np.concatenate([units[i] for i in pick])
        lab = labels[idx]
        if lab.min() == lab.max():
            continue
        boots.append(_auc(lab, scores[idx]))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots else (auc, auc)
    return AUROC(auc, float(lo), float(hi))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> float:
    """True-positive rate at the lowest threshold whose false-positive rate is at most
    ``fpr`` (inputs with a score at or above the threshold are flagged), as read off the
    empirical ROC curve: with ``k = floor(fpr * negatives)`` the threshold lies just above
    the ``(k + 1)``-th highest negative score."""
    if not 0 <= fpr <= 1:
        raise ParameterError(f"fpr={fpr!r} must be in [0, 1]")
    labels, scores = _check_labels_scores(labels, scores)
    neg = np.sort(scores[labels == 0])[::-1]
    pos = scores[labels == 1]
    k = int(np.floor(fpr * len(neg) + 1e-9))
    if k >= len(neg):
        return 1.0
    return float((pos > neg[k]).mean())


def _metric(name: str, fpr: float = 0.05):
    if name == "auroc":
        return lambda y, s: _auc(y, s)
    if name == "tpr":
        return lambda y, s: tpr_at_fpr(y, s, fpr)
    raise ParameterError(f"metric={name!r} is not known; valid values: auroc, tpr")


def _group_units(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ParameterError("one group per row is needed")
    _, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def metric_interval(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None,
                    metric: str = "auroc", fpr: float = 0.05, n_boot: int = 1000,
                    seed: int = 0) -> dict:
    """A detection metric with a bootstrap interval over sources.

    Whole groups (a source image with the adversarial examples made from it) are
    resampled, so rows that share a source stay together
    (:func:`bootstrap_ci` over group indices). Resamples holding one
    label only are dropped.

    Args:
        labels: ``[N]`` 0/1 (1 = adversarial); scores: ``[N]`` (higher = adversarial).
        groups: ``[N]`` source ids (``None``: every row is its own unit).
        metric: ``"auroc"`` or ``"tpr"`` (true-positive rate at ``fpr``).
        fpr: the false-positive rate of ``"tpr"``.
        n_boot, seed: bootstrap resamples and seed.

    Returns:
        ``{"estimate", "ci", "n"}`` with ``n`` the number of groups.
    """
    labels, scores = _check_labels_scores(labels, scores)
    fn = _metric(metric, fpr)
    return _group_bootstrap(labels, groups, lambda lab, rows: fn(lab, scores[rows]),
                            n_boot, seed)


def auroc_difference(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                     groups: np.ndarray | None = None, metric: str = "auroc", fpr: float = 0.05,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of ``metric(a) - metric(b)`` for two detectors scored on the same
    rows: each resample of sources is used for both, so what they share cancels.

    Returns:
        ``{"estimate", "ci", "n"}`` (``n``: groups).
    """
    labels, scores_a = _check_labels_scores(labels, scores_a)
    _, scores_b = _check_labels_scores(labels, scores_b)
    fn = _metric(metric, fpr)
    return _group_bootstrap(
        labels, groups, lambda lab, rows: fn(lab, scores_a[rows]) - fn(lab, scores_b[rows]),
        n_boot, seed)


def _group_bootstrap(labels: np.ndarray, groups: np.ndarray | None,
                     value: Callable[[np.ndarray, np.ndarray], float], n_boot: int,
                     seed: int) -> dict:
    """Bootstrap over groups (sources) of ``value(labels of the rows, rows)``; a resample
    with one class only gives nan."""
    units = _group_units(groups, len(labels))

    def stat(idx: np.ndarray) -> float:
        rows = np.concatenate([units[i] for i in idx])
        lab = labels[rows]
        if lab.min() == lab.max():
            return float("nan")
        return value(lab, rows)

    return bootstrap_ci(np.arange(len(units)), stat, n_boot=n_boot, seed=seed)


def _check_labels_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1 or \
            set(np.unique(labels).tolist()) != {0, 1}:
        raise ParameterError("labels (both 0 and 1 present) and scores must be 1-D and of one "
                             "length")
    return labels, scores
