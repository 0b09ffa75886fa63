"""Site-percolation thresholds of ``Z^d``: published values, series, and the chapter's table.

* :data:`PUBLISHED_THRESHOLDS`: the literature's values for ``d = 2..8`` with their
  bibliography keys (Newman and Ziff 2000; Wang et al. 2013; Mertens and Moore 2018;
  Grassberger 2003);
* :func:`bethe_threshold` (``1/(2d - 1)``, the tree with the lattice's coordination and
  a rigorous lower bound) and :func:`asymptotic_threshold` (the ``1/(2d - 1)`` series of
  Gaunt, Sykes and Ruskin 1976);
* :func:`threshold_table`: an estimate with its interval for each dimension, the
  estimator being a parameter per dimension (``"growth"``:
  :func:`mcutils.percolation.growth_threshold`; ``"spanning"``: the crossing of
  spanning curves, :func:`mcutils.percolation.estimate_threshold`);
* the checks of the chapter's claims: :func:`deviation_interval` (is an estimate within
  a relative tolerance of the published value?) and :func:`falling_interval` (does the
  threshold fall with ``d``?);
* their negative controls, data on which each check must fail by construction:
  :func:`bethe_control` (the same estimator on the Bethe lattice of the same
  coordination, whose threshold ``1/(2d - 1)`` lies 11 to 44% below the published
  ``p_c(d)`` for ``d = 2..8``) and :func:`shuffled_dims` (the same samples with their
  dimension labels shuffled, so nothing falls with ``d``).

Used by chapter 02.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mcutils.core.checks import ParameterError
from mcutils.core.stats import interval, seed_interval
from mcutils.percolation.growth import bethe, growth_threshold
from mcutils.percolation.lattice import estimate_threshold

__all__ = [
    "ESTIMATORS",
    "PUBLISHED_THRESHOLDS",
    "asymptotic_threshold",
    "bethe_control",
    "bethe_threshold",
    "check_per_dim",
    "deviation_interval",
    "falling_interval",
    "shuffled_dims",
    "threshold_table",
]

#: Threshold estimators accepted per dimension by :func:`threshold_table`.
ESTIMATORS = ("growth", "spanning")

#: Published site-percolation thresholds of the simple hypercubic lattice:
#: d -> (p_c, bibliography key). d = 2: Newman and Ziff (2000); d = 3: Wang et al.
#: (2013); d = 4, 5, 6: Mertens and Moore (2018); d = 7, 8: Grassberger (2003).
PUBLISHED_THRESHOLDS: dict[int, tuple[float, str]] = {
    2: (0.592746, "newman2000efficient"),
    3: (0.3116077, "wang2013bond"),
    4: (0.1968861, "mertens2018percolation"),
    5: (0.1407966, "mertens2018percolation"),
    6: (0.1090178, "mertens2018percolation"),
    7: (0.0889511, "grassberger2003critical"),
    8: (0.0752101, "grassberger2003critical"),
}

# coefficients of p_c = sum_k a_k sigma^-k, sigma = 2d - 1 (Gaunt, Sykes and Ruskin 1976)
_SERIES = (1.0, 1.5, 3.75, 20.75)


def bethe_threshold(d: int | np.ndarray) -> float | np.ndarray:
    """``1 / (2d - 1)``: the threshold of the tree with the lattice's coordination ``2d``."""
    return 1.0 / (2 * np.asarray(d, dtype=float) - 1) if np.ndim(d) else 1.0 / (2 * d - 1)


def asymptotic_threshold(d: int | np.ndarray, order: int = 4) -> float | np.ndarray:
    """The high-dimensional series ``p_c = s^-1 + 3/2 s^-2 + 15/4 s^-3 + 83/4 s^-4``, ``s = 2d - 1``.

    Args:
        d: dimension(s).
        order: number of terms (1 gives the Bethe value).
    """
    if not 1 <= order <= len(_SERIES):
        raise ParameterError(f"order={order!r} must lie in [1, {len(_SERIES)}]")
    s = 2 * np.asarray(d, dtype=float) - 1
    val = sum(c * s ** -(k + 1) for k, c in enumerate(_SERIES[:order]))
    return float(val) if np.ndim(d) == 0 else val


def _per_dim(value, dims: Sequence[int], name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(dims):
            raise ParameterError(f"{name} has {len(value)} entries for {len(dims)} dimensions")
        return list(value)
    return [value] * len(dims)


def check_per_dim(dims: Sequence[int], **values) -> None:
    """Raise one :class:`~mcutils.core.checks.ParameterError` listing every per-dimension list whose length is
    not ``len(dims)`` (scalars are accepted: they apply to every dimension)."""
    bad = [f"{name} has {len(v)} entries for {len(dims)} dimensions {list(dims)}"
           for name, v in values.items() if isinstance(v, (list, tuple)) and len(v) != len(dims)]
    if bad:
        raise ParameterError("invalid parameters:\n  " + "\n  ".join(bad))


def threshold_table(dims: Sequence[int], estimator: str | Sequence[str] = "growth",
                    runs: int = 8, clusters: int | Sequence[int] = 300,
                    t_max: int | Sequence[int] = 64, fit_width: float = 0.04,
                    fit_steps: int = 6,
                    sizes: Sequence[Sequence[int]] | None = None, trials: int = 40,
                    seed: int = 0, workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Estimate ``p_c(d)`` for several dimensions beside the published and series values.

    Args:
        dims: dimensions.
        estimator: ``"growth"`` or ``"spanning"``, one for all or one per dimension.
        runs: independent growth runs (the interval is a Student-t interval over their
            roots, :func:`mcutils.core.stats.seed_interval`).
        clusters, t_max: growth clusters per run and generations (one value or one per
            dimension).
        fit_width, fit_steps: the growth estimator's hand-over from bisection to the fit
            (see :func:`mcutils.percolation.growth_threshold`).
        sizes: spanning estimator: one list of sides per dimension (ignored for growth).
        trials: spanning estimator: samples per size.
        seed: dimension ``d`` uses the seed ``[seed, d]``, so a dimension's estimate does
            not depend on which others are listed.
        workers: dimensions estimated at once in threads (NumPy releases the GIL in the
            sorts and array operations that dominate); results do not depend on it.
        progress: tqdm bar over dimensions.

    Returns:
        DataFrame indexed by ``d`` with ``estimator``, ``estimate``, ``ci_lo``, ``ci_hi``
        (95%), ``sigma`` (standard error), ``n`` (independent runs, or samples per size),
        ``published`` and ``ref`` (NaN and "" where unknown), ``rel_dev``
        (``estimate / published - 1``), ``bethe``, ``series`` and ``seconds``.
        ``attrs["samples"]`` maps ``d`` to the runs' roots (growth) and
        ``attrs["details"]`` to the estimator's full output.
    """
    dims = [int(d) for d in dims]
    if not dims:
        raise ParameterError("dims is empty")
    est_list = _per_dim(estimator, dims, "estimator")
    bad = [e for e in est_list if e not in ESTIMATORS]
    if bad:
        raise ParameterError(f"estimator={bad[0]!r} is not known; valid values: "
                             f"{', '.join(ESTIMATORS)}")
    cl = _per_dim(clusters, dims, "clusters")
    tm = _per_dim(t_max, dims, "t_max")
    if "spanning" in est_list and (sizes is None or len(sizes) != len(dims)):
        raise ParameterError("the spanning estimator needs sizes: one list of sides per dimension")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers={workers!r} must be an integer >= 1")

    def one(k: int) -> tuple[dict, np.ndarray | None, dict]:
        d = dims[k]
        start = time.perf_counter()
        if est_list[k] == "growth":
            res = growth_threshold(d, runs=runs, clusters=int(cl[k]), t_max=int(tm[k]),
                                   seed=[seed, d], fit_width=fit_width, fit_steps=fit_steps)
            iv = seed_interval(res["estimates"])
            sigma = res["sigma"]
            sample = res["estimates"]
        else:
            res = estimate_threshold(d, sizes[k], trials, np.random.default_rng([seed, d]))
            sigma = res["err"]
            iv = interval(res["pc"], res["pc"] - 1.96 * sigma, res["pc"] + 1.96 * sigma, trials)
            sample = None
        pub, ref = PUBLISHED_THRESHOLDS.get(d, (float("nan"), ""))
        row = {"d": d, "estimator": est_list[k], "estimate": iv["estimate"],
               "ci_lo": iv["ci"][0], "ci_hi": iv["ci"][1], "sigma": sigma, "n": iv["n"],
               "published": pub, "ref": ref, "rel_dev": iv["estimate"] / pub - 1,
               "bethe": bethe_threshold(d), "series": asymptotic_threshold(d),
               "seconds": time.perf_counter() - start}
        return row, sample, res

    if workers == 1:
        results_iter = map(one, range(len(dims)))
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=workers)
        results_iter = pool.map(one, range(len(dims)))
    if progress:
        from tqdm.auto import tqdm
        results_iter = tqdm(results_iter, total=len(dims), desc="thresholds", leave=False)
    results = list(results_iter)
    if workers > 1:
        pool.shutdown()
    rows = [r[0] for r in results]
    samples = {r[0]["d"]: r[1] for r in results}
    details = {r[0]["d"]: r[2] for r in results}
    table = pd.DataFrame(rows).set_index("d")
    table.attrs["samples"] = samples
    table.attrs["details"] = details
    return table


def deviation_interval(result: Mapping, published: float) -> dict:
    """The relative deviation ``|estimate / published - 1|`` as an interval.

    Its ``ci`` is the range of ``|x / published - 1|`` over the estimate's interval
    ``[lo, hi]``: from 0 (or the nearer end) to the farther end. A claim "within
    ``tol`` of the published value" is then ``reproduced`` when the whole 95% interval
    of the estimate lies inside ``published * (1 +- tol)``.

    Args:
        result: an interval ``{"estimate", "ci", "n"}`` of the threshold.
        published: the reference value (> 0).
    """
    if not published > 0:
        raise ParameterError(f"published={published!r} must be positive")
    lo, hi = (float(v) / published - 1 for v in result["ci"])
    est = abs(float(result["estimate"]) / published - 1)
    if np.isnan(lo) or np.isnan(hi):
        return interval(est, np.nan, np.nan, result["n"])
    near = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    return interval(est, near, max(abs(lo), abs(hi)), result["n"])


def falling_interval(samples: Mapping[int, np.ndarray], n_boot: int = 2000, seed: int = 0,
                     statistic: Callable[[np.ndarray], float] = np.mean) -> dict:
    """The smallest drop ``min_d (s(d) - s(d + 1))`` over consecutive dimensions.

    ``s(d)`` is ``statistic`` of dimension ``d``'s samples (the mean of a threshold's
    independent runs, or the median onset of null fields). Positive when the quantity
    falls with every added dimension. The interval is a bootstrap over the independent
    samples of each dimension (resampled separately).

    Args:
        samples: ``d -> independent estimates`` for at least two consecutive dimensions.
        n_boot, seed: bootstrap settings.
        statistic: summary of one dimension's samples.
    """
    dims = sorted(int(d) for d in samples)
    if len(dims) < 2 or dims != list(range(dims[0], dims[-1] + 1)):
        raise ParameterError(f"falling_interval needs consecutive dimensions, got {dims}")
    vals = {d: np.asarray(samples[d], float) for d in dims}
    if any(len(v) < 2 for v in vals.values()):
        raise ParameterError("every dimension needs at least two runs")
    means = np.array([statistic(vals[d]) for d in dims])
    est = float(np.min(means[:-1] - means[1:]))
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        m = np.array([statistic(rng.choice(vals[d], len(vals[d]))) for d in dims])
        reps[b] = np.min(m[:-1] - m[1:])
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return interval(est, lo, hi, min(len(v) for v in vals.values()))


def bethe_control(dims: Sequence[int], runs: int = 8, clusters: int | Sequence[int] = 300,
                  t_max: int | Sequence[int] = 64, fit_width: float = 0.04, fit_steps: int = 6,
                  seed: int = 0) -> dict[int, dict]:
    """The negative control of the claim "our ``p_c(d)`` is within a tolerance of the
    published value": the same growth estimator, with the same runs, clusters and
    generations, on the Bethe lattice whose coordination ``2d`` is that of ``Z^d``.

    That tree's threshold is ``1/(2d - 1)`` exactly, below the published ``p_c(d)`` of
    ``Z^d`` by 11% (``d = 8``) to 44% (``d = 2``), so a check of its estimate against the
    published ``p_c(d)`` must fail; one that passed would mean the check, or the
    estimator, cannot tell the two lattices apart.

    Args:
        dims: dimensions ``d`` (coordination ``2d``).
        runs, clusters, t_max, fit_width, fit_steps: as in :func:`threshold_table`
            (``clusters`` and ``t_max``: one value, or one per dimension).
        seed: dimension ``d`` uses the seed ``[seed, d, 1]`` (not the lattice's own).

    Returns:
        ``{d: interval}``: a Student-t interval over the runs' roots
        (:func:`mcutils.core.stats.seed_interval`), as the chapter's estimates.
    """
    dims = [int(d) for d in dims]
    cl, tm = _per_dim(clusters, dims, "clusters"), _per_dim(t_max, dims, "t_max")
    out = {}
    for d, c, t in zip(dims, cl, tm):
        res = growth_threshold(bethe(2 * d), runs=runs, clusters=int(c), t_max=int(t),
                               seed=[seed, d, 1], fit_width=fit_width, fit_steps=fit_steps)
        out[d] = seed_interval(res["estimates"])
    return out


def shuffled_dims(samples: Mapping[int, np.ndarray], seed: int = 0) -> dict[int, np.ndarray]:
    """The negative control of "the quantity falls with every added dimension": the same
    samples pooled and dealt out again at random to the same dimensions, each keeping its
    number of samples. By construction nothing then depends on ``d``, so
    :func:`falling_interval` of the result must not be above zero.

    Args:
        samples: ``d -> independent samples`` (threshold runs or null fields).
        seed: seed of the shuffle.
    """
    dims = sorted(int(d) for d in samples)
    vals = [np.asarray(samples[d], float) for d in dims]
    pool = np.random.default_rng(seed).permutation(np.concatenate(vals))
    cuts = np.cumsum([len(v) for v in vals])[:-1]
    return dict(zip(dims, np.split(pool, cuts)))
