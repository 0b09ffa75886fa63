"""Thresholds from cluster growth on unbounded lattices (Leath / Grassberger epidemic growth).

A cluster is grown from an open origin one *generation* at a time: generation ``t`` holds
the open sites at chemical distance ``t`` from the origin (the length of the shortest
path through open sites). ``N(t)``, the number of such sites averaged over many clusters,
tells which side of the threshold ``p`` is on without any box, so the finite-size bias
of spanning estimates in small high-dimensional lattices does not arise:

* below ``p_c`` it decays exponentially (``log N`` bends down against ``log t``);
* above ``p_c`` it grows faster than any power (it bends up);
* at ``p_c`` it is a power law ``t**x`` for ``d < 6``, a power law with logarithmic
  corrections at ``d = 6`` and flat (``x = 0``) for ``d > 6`` and on trees
  (Grassberger 2003).

:func:`growth_threshold` brackets ``p_c`` by bisection on the sign of that bending: the
*curvature* of ``log N`` against ``log t`` over three octaves of ``t`` (``d <= 6``) or,
where the critical profile is known to be flat, its *slope* over the last two octaves
(``d > 6``, Bethe lattices), which is less noisy. Every independent run uses its own
random field and its own clusters; the spread of the runs' roots gives the error bar.

Implementation. Sites are never stored in a box: a site is a 64-bit key, a random
linear code of its coordinates (``key + A_j`` is the neighbour along axis ``j``), and
whether it is open is a hash of its key compared with ``p`` (splitmix64), so the random
field is fixed in advance, shared by every ``p`` of one run (larger ``p`` only opens
sites), and nothing but the last two generations is kept: on a lattice the open
neighbours of generation ``t`` lie in generations ``t - 1``, ``t`` or ``t + 1``. The
lowest 8 bits of a key carry the run, so all runs grow together in the same NumPy
arrays. A pair of distinct sites shares a key with probability about ``2**-56`` per
comparison, which is negligible at the sizes used here. Used by chapter 02.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mcutils.core.checks import ParameterError

__all__ = [
    "CRITERIA",
    "Lattice",
    "bending_statistic",
    "bethe",
    "growth_profile",
    "growth_threshold",
    "hypercubic",
]

#: Bending criteria: ``curvature`` (second difference of ``log N`` over three octaves of
#: ``t``; zero for any power law), ``slope`` (first difference over the last two octaves;
#: zero for a flat profile) and ``auto`` (``slope`` above six dimensions and on Bethe
#: lattices, ``curvature`` otherwise).
CRITERIA = ("auto", "curvature", "slope")

_RUN_BITS = 8
_MAX_RUNS = 1 << _RUN_BITS
_LOW = np.uint64(_MAX_RUNS - 1)
_SHIFT = np.uint64(_RUN_BITS)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@dataclass(frozen=True)
class Lattice:
    """A lattice to grow clusters on: ``hypercubic`` (``Z^d``, coordination ``2d``) or
    ``bethe`` (the infinite tree in which every site has ``z`` neighbours)."""

    kind: str
    d: int
    z: int

    @property
    def name(self) -> str:
        """A short label (``"Z^3"``, ``"Bethe z=4"``)."""
        return f"Z^{self.d}" if self.kind == "hypercubic" else f"Bethe z={self.z}"

    @property
    def flat_at_pc(self) -> bool:
        """Whether ``N(t)`` is flat at ``p_c`` (trees and ``d > 6``)."""
        return self.kind == "bethe" or self.d > 6


def hypercubic(d: int) -> Lattice:
    """The simple hypercubic lattice ``Z^d`` (each site has ``2d`` neighbours)."""
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ParameterError(f"d={d!r} must be an integer >= 1")
    return Lattice("hypercubic", int(d), 2 * int(d))


def bethe(z: int) -> Lattice:
    """The Bethe lattice (infinite tree) with coordination ``z >= 2``; ``p_c = 1/(z - 1)``."""
    if isinstance(z, bool) or not isinstance(z, (int, np.integer)) or z < 2:
        raise ParameterError(f"z={z!r} must be an integer >= 2")
    return Lattice("bethe", 0, int(z))


def _as_lattice(lattice: int | Lattice) -> Lattice:
    if isinstance(lattice, Lattice):
        return lattice
    return hypercubic(lattice)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective hash of uint64 keys to uniform uint64 values."""
    z = z ^ (z >> _S30)
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def _mix_inplace(z: np.ndarray, tmp: np.ndarray) -> None:
    """:func:`_mix` in place, with a scratch array of the same size."""
    np.right_shift(z, _S30, out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, _S27, out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, _S31, out=tmp)
    z ^= tmp


_BLOCK = 1 << 15


def _open_neighbours(front: np.ndarray, offsets: np.ndarray, salt: np.uint64,
                     thr: np.ndarray) -> np.ndarray:
    """The open neighbours (with repeats) of the sites ``front`` on ``Z^d``.

    Works in blocks that stay in the CPU cache: the neighbour keys, their hashes and
    the comparison with each run's threshold never leave it, which is 2-3 times faster
    than the same NumPy expression on whole arrays.
    """
    k = len(offsets)
    rows = max(1, _BLOCK // k)
    size = rows * k
    z, tmp, low = (np.empty(size, np.uint64) for _ in range(3))
    keep = np.empty(size, bool)
    out = []
    for s in range(0, len(front), rows):
        f = front[s:s + rows]
        m = len(f) * k
        cand = np.add(f[:, None], offsets[None, :]).ravel()
        zz, tt, ll, kk = z[:m], tmp[:m], low[:m], keep[:m]
        np.bitwise_xor(cand, salt, out=zz)
        _mix_inplace(zz, tt)
        np.bitwise_and(cand, _LOW, out=ll)
        np.less(zz, np.take(thr, ll.view(np.int64)), out=kk)
        out.append(cand[kk])
    return np.concatenate(out) if out else np.empty(0, np.uint64)


def _member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``x in sorted_set`` element-wise, for a sorted array."""
    if len(sorted_set) == 0 or len(x) == 0:
        return np.zeros(len(x), bool)
    i = np.searchsorted(sorted_set, x)
    i[i == len(sorted_set)] = 0
    return sorted_set[i] == x


def _thresholds(p: np.ndarray) -> np.ndarray:
    """Per-run uint64 thresholds: a site is open when its hash is below ``p * 2**64``."""
    out = np.zeros(_MAX_RUNS, np.uint64)
    for r, pr in enumerate(p):
        out[r] = np.uint64(min(int(pr * 2.0**64), 2**64 - 1))
    return out


def _odd_constants(rng: np.random.Generator, k: int) -> np.ndarray:
    return (rng.integers(0, 2**54, k, dtype=np.uint64) * np.uint64(2) + np.uint64(1)) << _SHIFT


def _grow(lat: Lattice, p: np.ndarray, clusters: int, t_max: int, seed: int | Sequence[int],
          cap_factor: float, criterion: str | None = None,
          min_front: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Grow ``clusters`` clusters for each run ``r`` at occupation ``p[r]``.

    With a ``criterion``, a run stops as soon as its bending statistic is certain to
    come out positive: from ``t = T/2`` on, once the partial sum of the last window
    exceeds what the statistic needs (``W2**2 / W1`` or ``W2`` times the window's
    length, and ``min_front`` times it), no later generation can undo it (``N >= 0``).
    Decisions are therefore the same as with full growth, at a fraction of the cost of
    the supercritical runs.

    Returns ``(n, stopped)``: ``n[r, t]`` the mean number of sites at chemical distance
    ``t`` (NaN from the generation at which run ``r`` was capped or decided) and
    ``stopped[r]``.
    """
    runs = len(p)
    rng = np.random.default_rng(seed)
    thr = _thresholds(p)
    salt = rng.integers(0, 2**63, dtype=np.uint64)
    base = _odd_constants(rng, 1)[0]
    with np.errstate(over="ignore"):
        origins = (np.arange(clusters, dtype=np.uint64)[None, :] * base
                   + np.arange(runs, dtype=np.uint64)[:, None]).ravel()
        if lat.kind == "hypercubic":
            steps = _odd_constants(rng, lat.d)
            offsets = np.concatenate([steps, np.uint64(0) - steps])
        else:
            children = rng.integers(0, 2**63, lat.z, dtype=np.uint64)
    front = np.sort(origins)
    prev = np.empty(0, np.uint64)
    n = np.zeros((runs, t_max + 1))
    n[:, 0] = 1.0
    capped = np.zeros(runs, bool)
    with np.errstate(over="ignore"):
        for t in range(1, t_max + 1):
            if lat.kind == "hypercubic":
                cand = _open_neighbours(front, offsets, salt, thr)
            else:
                k = lat.z if t == 1 else lat.z - 1
                low = front & _LOW
                cand = (((_mix(front[:, None] + children[None, :k]) >> _SHIFT) << _SHIFT)
                        | low[:, None]).ravel()
                cand = cand[_mix(cand ^ salt) < thr[(cand & _LOW).astype(np.intp)]]
            if len(cand):
                cand.sort()
                keep = np.empty(len(cand), bool)
                keep[0] = True
                np.not_equal(cand[1:], cand[:-1], out=keep[1:])
                cand = cand[keep]
            if lat.kind == "hypercubic" and len(cand):
                cand = cand[~(_member(cand, front) | _member(cand, prev))]
            counts = np.bincount((cand & _LOW).astype(np.intp), minlength=runs)[:runs]
            over = (counts > cap_factor * clusters * (t + 1)) & ~capped
            if criterion is not None and t >= t_max // 2:
                n[~capped, t] = counts[~capped] / clusters
                w1 = n[:, t_max // 8:t_max // 4].mean(1)
                w2 = n[:, t_max // 4:t_max // 2].mean(1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    need = w2 * w2 / w1 if criterion == "curvature" else w2
                need = np.maximum(np.nan_to_num(need, nan=np.inf), min_front)
                part = n[:, t_max // 2:t + 1].sum(1)
                over |= (part > need * (t_max + 1 - t_max // 2)) & ~capped
            if over.any():
                capped |= over
                n[over, t:] = np.nan
                cand = cand[~capped[(cand & _LOW).astype(np.intp)]]
            live = ~capped
            n[live, t] = counts[live] / clusters
            prev, front = front, cand
            if len(front) == 0:
                break
    return n, capped


def _check_growth_args(clusters: int, t_max: int, cap_factor: float) -> None:
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise ParameterError(f"clusters={clusters!r} must be an integer >= 1")
    if isinstance(t_max, bool) or not isinstance(t_max, (int, np.integer)) or t_max < 16:
        raise ParameterError(f"t_max={t_max!r} must be an integer >= 16 (three octaves of t)")
    if not cap_factor > 0:
        raise ParameterError(f"cap_factor={cap_factor!r} must be positive")


def growth_profile(lattice: int | Lattice, p: float | Sequence[float], clusters: int,
                   t_max: int, seed: int | Sequence[int] = 0, cap_factor: float = 8.0) -> dict:
    """Mean number of sites at chemical distance ``t`` from the origin, ``t = 0..t_max``.

    Args:
        lattice: a dimension ``d`` (the hypercubic lattice ``Z^d``) or a :class:`Lattice`.
        p: occupation probability, or one per independent run (at most 256).
        clusters: clusters grown per run, each from its own open origin.
        t_max: last generation (>= 16).
        seed: seed (int or sequence) of the random field, the lattice code and the salt.
        cap_factor: a run whose total front exceeds ``cap_factor * clusters * (t + 1)``
            is stopped (it is clearly supercritical); its profile is NaN from there.

    Returns:
        dict with ``t`` (``[t_max + 1]``), ``n`` (``[t_max + 1]`` for a scalar ``p``,
        else ``[runs, t_max + 1]``; ``n[0] = 1``) and ``capped`` (bool, or one per run).
    """
    lat = _as_lattice(lattice)
    _check_growth_args(clusters, t_max, cap_factor)
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    if ps.ndim != 1 or len(ps) > _MAX_RUNS or np.any(~np.isfinite(ps)) or np.any(
            (ps < 0) | (ps > 1)):
        raise ParameterError(f"p={p!r} must be a probability or up to {_MAX_RUNS} of them")
    n, capped = _grow(lat, ps, int(clusters), int(t_max), seed, cap_factor)
    if np.ndim(p) == 0:
        return {"t": np.arange(t_max + 1), "n": n[0], "capped": bool(capped[0])}
    return {"t": np.arange(t_max + 1), "n": n, "capped": capped}


def _criterion(lat: Lattice, criterion: str) -> str:
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion={criterion!r} is not known; valid values: "
                             f"{', '.join(CRITERIA)}")
    if criterion == "auto":
        return "slope" if lat.flat_at_pc else "curvature"
    return criterion


def bending_statistic(n: np.ndarray, criterion: str = "curvature",
                      min_front: float = 0.0) -> np.ndarray | float:
    """How ``log N(t)`` bends against ``log t``: positive above ``p_c``, negative below.

    With ``T = len(n) - 1`` and window means ``W1 = mean n[T/8 : T/4]``,
    ``W2 = mean n[T/4 : T/2]``, ``W3 = mean n[T/2 : T + 1]`` (octaves of ``t``):

    * ``curvature``: ``log W3 - 2 log W2 + log W1``, zero for any power law ``t**x``;
    * ``slope``: ``log W3 - log W2``, zero for a flat profile.

    A profile with NaN (a capped, exploding run) gives ``+inf``; one whose last window
    holds fewer than ``min_front`` sites per cluster and generation (it died out or
    nearly so) gives ``-inf``. The guard matters only far below ``p_c``, where a lone
    surviving cluster makes the ratio of window means meaningless: at ``p_c`` on ``Z^d``
    (``d >= 2``) and on trees ``N(t)`` does not decay, so it stays near ``N(1) >= 1``.

    Args:
        n: ``[T + 1]`` or ``[runs, T + 1]`` profiles from :func:`growth_profile`.
        criterion: ``"curvature"`` or ``"slope"``.
        min_front: the guard above (0 turns it off).
    """
    if criterion not in ("curvature", "slope"):
        raise ParameterError(f"criterion={criterion!r} must be 'curvature' or 'slope'")
    arr = np.atleast_2d(np.asarray(n, dtype=float))
    T = arr.shape[1] - 1
    if T < 16:
        raise ParameterError(f"the profile needs t_max >= 16, got {T}")
    w1 = arr[:, T // 8:T // 4].mean(1)
    w2 = arr[:, T // 4:T // 2].mean(1)
    w3 = arr[:, T // 2:].mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if criterion == "curvature":
            stat = np.log(w3) - 2 * np.log(w2) + np.log(w1)
        else:
            stat = np.log(w3) - np.log(w2)
    stat = np.where(np.isnan(arr).any(1), np.inf, stat)
    stat = np.where(~np.isnan(arr).any(1) & ((w3 <= 0) | (w3 < min_front)), -np.inf, stat)
    stat = np.where(np.isnan(stat), -np.inf, stat)
    return float(stat[0]) if np.ndim(n) == 1 else stat


def default_bracket(lattice: int | Lattice) -> tuple[float, float]:
    """A bracket that holds ``p_c``: ``[1/(z - 1), min(1, 2/(z - 1))]`` on ``Z^d``.

    ``1/(z - 1)`` is a rigorous lower bound of the site threshold of any lattice of
    coordination ``z`` (it is the tree's value, and a lattice has fewer self-avoiding
    paths than the tree); on ``Z^d`` the threshold is below twice that for every ``d``
    (``d = 2``: 0.593 against 2/3). A Bethe lattice sits *at* the bound, so its bracket
    is ``[1/(2(z - 1)), min(1, 2/(z - 1))]``.
    """
    lat = _as_lattice(lattice)
    lo = 1.0 / (lat.z - 1)
    if lat.kind == "bethe":
        lo = lo / 2
    hi = min(1.0, 2.0 / (lat.z - 1))
    if lat.z == 2:  # d = 1 or the two-neighbour chain: p_c = 1 at the top of [0, 1]
        lo = 0.5
    return lo, hi


def _seed_list(seed: int | Sequence[int]) -> list[int]:
    return [int(v) for v in np.atleast_1d(np.asarray(seed, dtype=np.int64))]


def _fit_roots(p: np.ndarray, stat: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per-run roots of lines with one common slope through the finite ``(p, stat)`` points.

    ``p`` and ``stat`` are ``[steps, runs]``. The slope is the pooled within-run
    least-squares slope (run-specific intercepts), so it rests on every run's points;
    run ``r``'s root is ``mean(p_r) - mean(stat_r) / slope``. Runs with fewer than two
    finite points, or all runs when the pooled slope is not positive, keep ``fallback``.
    """
    ok = np.isfinite(stat)
    use = ok.sum(0) >= 2
    if not use.any():
        return fallback.copy()
    xm = np.array([p[ok[:, r], r].mean() if use[r] else np.nan for r in range(p.shape[1])])
    ym = np.array([stat[ok[:, r], r].mean() if use[r] else np.nan for r in range(p.shape[1])])
    dx = np.where(ok, p - xm, 0.0)
    dy = np.where(ok, stat - ym, 0.0)
    sxx = float((dx[:, use] ** 2).sum())
    if sxx <= 0:
        return fallback.copy()
    slope = float((dx[:, use] * dy[:, use]).sum()) / sxx
    if not slope > 0:
        return fallback.copy()
    return np.where(use, xm - ym / slope, fallback)


def _next_point(p: np.ndarray, stat: np.ndarray, est: np.ndarray, fitted: np.ndarray,
                span: np.ndarray, lo0: float, hi0: float) -> np.ndarray:
    """The next point of the fit stage for every run (``p``, ``stat``: ``[steps, runs]``).

    A run with a fitted root goes to it. A run without one (fewer than two finite
    statistics: its points died out or exploded, typically after a wrong bisection
    decision caused by one exceptional cluster) steps one bracket width beyond its
    highest point if all its statistics are negative, below its lowest if all are
    positive, and otherwise halfway between its highest negative and lowest positive
    point. Everything stays within the initial bracket.
    """
    out = est.copy()
    for r in np.flatnonzero(~fitted):
        neg, pos = p[stat[:, r] < 0, r], p[stat[:, r] > 0, r]
        if len(pos) == 0:
            out[r] = p[:, r].max() + span[r]
        elif len(neg) == 0:
            out[r] = p[:, r].min() - span[r]
        else:
            out[r] = (neg.max() + pos.min()) / 2
    return np.clip(out, lo0, hi0)


def growth_threshold(lattice: int | Lattice, runs: int = 8, clusters: int = 300,
                     t_max: int = 64, seed: int | Sequence[int] = 0,
                     bracket: Sequence[float] | None = None,
                     fit_width: float = 0.04, fit_steps: int = 6, criterion: str = "auto",
                     cap_factor: float = 8.0, min_front: float = 0.1,
                     progress: bool = False) -> dict:
    """Estimate ``p_c`` by bisection on the bending of ``N(t)``, over independent runs.

    Every run has its own random fields (fresh clusters at every step) and goes
    through two stages; all runs step together in one vectorised growth.

    1. *Bracket by bisection*: grow ``clusters`` clusters to ``t_max`` at the bracket's
       midpoint and keep the half that :func:`bending_statistic` points to (positive:
       ``p`` is above ``p_c``), until the bracket is narrower than ``fit_width`` times
       its lower end. A run stops growing as soon as its sign is certain.
    2. *Fit*: near ``p_c`` the sign is noisy but the statistic is close to linear in
       ``p``, so its values are used, not only their signs. The run evaluates the two
       ends of its bracket, then ``fit_steps - 2`` times the current root estimate;
       after each step a straight line with one slope shared by all runs and one
       intercept per run is fitted to the stage's finite points, and the run's root is
       where its line crosses zero. A run whose points all died out (or all exploded)
       steps outwards until it has finite points on the line. A wrong bisection
       decision, which one exceptionally large cluster can cause, is thus corrected
       instead of frozen; a run that never gets two finite points keeps its midpoint
       (``fitted`` is then False).

    The runs' estimates are independent but for the shared slope, whose error moves a
    root by ``(mean(p_r) - root_r) * error / slope``, a small fraction of the roots'
    spread because the points gather around the root. The chapter's interval is a
    Student-t interval over the runs (:func:`mcutils.core.stats.seed_interval`).

    Args:
        lattice: a dimension ``d`` or a :class:`Lattice`.
        runs: independent runs (2..256).
        clusters: clusters per run and step.
        t_max: generations grown (>= 16).
        seed: seed (int or sequence); step ``k`` uses the seed ``[*seed, k]``.
        bracket: initial ``[lo, hi]``; default :func:`default_bracket` (never ``[0, 1]``).
        fit_width: relative bracket width at which the bisection hands over to the fit.
        fit_steps: evaluations in the fit stage (>= 2; 0 skips the fit and returns the
            final bracket's midpoints, bisecting ``fit_steps``-free down to
            ``fit_width / 16``).
        criterion: ``"auto"``, ``"curvature"`` or ``"slope"`` (see :data:`CRITERIA`).
        cap_factor: see :func:`growth_profile`.
        min_front: see :func:`bending_statistic`.
        progress: show a tqdm bar over steps.

    Returns:
        dict with ``estimates`` (``[runs]``), ``fitted`` (``[runs]``: the estimate is a
        fitted root, not the fallback midpoint), ``estimate`` (their mean), ``sigma``
        (standard error of the mean), ``midpoints`` (``[runs]`` midpoints of the
        bisection's final brackets), ``runs``, ``criterion``, ``bracket``, ``steps``
        (bisection steps), ``fit_steps``, ``at_edge`` (``[runs]``: the estimate lies
        within one final bracket width of an end of the initial bracket, which then may
        not hold ``p_c``), ``history`` and ``statistics`` (``[steps + fit_steps, runs]``
        points tried and their bending statistics) and ``seconds``.
    """
    lat = _as_lattice(lattice)
    _check_growth_args(clusters, t_max, cap_factor)
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or not (
            2 <= runs <= _MAX_RUNS):
        raise ParameterError(f"runs={runs!r} must be an integer in [2, {_MAX_RUNS}]")
    crit = _criterion(lat, criterion)
    lo0, hi0 = default_bracket(lat) if bracket is None else (float(bracket[0]),
                                                             float(bracket[1]))
    if not 0 < lo0 < hi0 <= 1:
        raise ParameterError(f"bracket={bracket!r} must satisfy 0 < lo < hi <= 1")
    if not 0 < fit_width < 1:
        raise ParameterError(f"fit_width={fit_width!r} must lie in (0, 1)")
    if isinstance(fit_steps, bool) or not isinstance(fit_steps, (int, np.integer)) or (
            fit_steps == 1 or fit_steps < 0):
        raise ParameterError(f"fit_steps={fit_steps!r} must be 0 or an integer >= 2")
    width = fit_width if fit_steps else fit_width / 16
    steps = max(1, math.ceil(math.log2((hi0 - lo0) / (width * lo0))))
    base = _seed_list(seed)
    lo, hi = np.full(runs, lo0), np.full(runs, hi0)
    total = steps + int(fit_steps)
    history = np.full((total, runs), np.nan)
    stats = np.full((total, runs), np.nan)
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"p_c {lat.name}", leave=False)

    def evaluate(k: int, p: np.ndarray, early: str | None) -> np.ndarray:
        history[k] = p
        n, _ = _grow(lat, p, int(clusters), int(t_max), [*base, k], cap_factor, early,
                     min_front)
        stats[k] = bending_statistic(n, crit, min_front)
        if bar is not None:
            bar.update()
        return stats[k]

    for k in range(steps):
        mid = (lo + hi) / 2
        up = evaluate(k, mid, crit) > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    midpoints = (lo + hi) / 2
    est = midpoints.copy()
    span = hi - lo
    fitted = np.zeros(runs, bool)
    for i in range(int(fit_steps)):
        k = steps + i
        if i == 0:
            p = lo.copy()
        elif i == 1:
            p = hi.copy()
        else:
            p = _next_point(history[steps:k], stats[steps:k], est, fitted, span, lo0, hi0)
        evaluate(k, p, None)
        if i >= 1:
            est = _fit_roots(history[steps:k + 1], stats[steps:k + 1], np.full(runs, np.nan))
            fitted = np.isfinite(est)
            est = np.where(fitted, est, midpoints)
    if bar is not None:
        bar.close()
    at_edge = (est - lo0 < span) | (hi0 - est < span)
    if not fit_steps:
        fitted = np.zeros(runs, bool)
    return {"estimates": est, "estimate": float(est.mean()), "fitted": fitted,
            "sigma": float(est.std(ddof=1) / math.sqrt(runs)), "midpoints": midpoints,
            "runs": int(runs), "criterion": crit, "bracket": (lo0, hi0), "steps": steps,
            "fit_steps": int(fit_steps), "at_edge": at_edge, "history": history,
            "statistics": stats, "seconds": time.perf_counter() - start,
            "lattice": lat.name, "clusters": int(clusters), "t_max": int(t_max)}
