"""Site percolation on finite d-dimensional lattices (cluster labelling, spanning).

* lattices and clusters: :func:`random_lattice`, :func:`clusters` (nearest-neighbour
  connectivity; ``scipy.ndimage.label`` or a sparse-graph union of neighbour pairs,
  both batched over trials and with optional periodic axes), :func:`largest_cluster`;
* observables: :func:`spans`, :func:`spanning_probability`,
  :func:`connection_probability`, :func:`anchor_connection_probability`;
* the spanning estimator of ``p_c``: :func:`spanning_thresholds` (the exact occupation
  at which each sample starts to span, found by bisection on a shared random field)
  and :func:`estimate_threshold` (where the spanning curves of two sizes cross, with a
  bootstrap uncertainty). It is kept for low dimensions and for comparison: in small
  high-dimensional boxes the spanning probability at ``p_c`` grows with the side, so
  the crossing is biased low (chapter 02 uses :mod:`mcutils.percolation.growth`).

Randomness always comes from an explicit ``rng`` (a seed or a
:class:`numpy.random.Generator`). Used by chapter 02 (pictures, connection curves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mcutils.core.checks import ParameterError

__all__ = [
    "BOUNDARIES",
    "METHODS",
    "anchor_connection_probability",
    "clusters",
    "connection_curves",
    "connection_probability",
    "estimate_threshold",
    "largest_cluster",
    "random_lattice",
    "spanning_probability",
    "spanning_thresholds",
    "spans",
]

#: Cluster-labelling back ends: ``scipy.ndimage.label`` and a sparse neighbour graph
#: solved by ``scipy.sparse.csgraph.connected_components``. Every function also
#: accepts ``"auto"`` (the default): ``ndimage`` up to 5 array axes (batch axis
#: included), ``csgraph`` above, where ``ndimage`` slows down with the ``3**axes``
#: structuring element (see benchmarks/percolation.py).
METHODS = ("ndimage", "csgraph")
_AUTO_MAX_AXES = 5
#: Boundary conditions: ``free`` (open box) or ``cylinder`` (periodic along every axis
#: except the first, the axis along which spanning is measured).
BOUNDARIES = ("free", "cylinder")

def _rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_ps(p) -> np.ndarray:
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    if ps.ndim != 1 or np.any(~np.isfinite(ps)) or np.any((ps < 0) | (ps > 1)):
        raise ParameterError(f"p={p!r} must be a probability (or a list of them) in [0, 1]")
    return ps


#: The shortest periodic axis a spanning estimate accepts. Along a periodic axis of
#: length 3 each site's two neighbours are the two other sites (the axis is a triangle,
#: not a piece of a lattice), and at length 2 they coincide; such "cylinders" connect far
#: more easily than the lattice and bias thresholds low.
MIN_PERIODIC_SIDE = 4


def _check_boundary(boundary: str, shape: Sequence[int] = ()) -> None:
    """Check the boundary name and, for cylinders, the periodic sides (all but the first)."""
    if boundary not in BOUNDARIES:
        raise ParameterError(f"boundary={boundary!r} is not known; valid values: "
                             f"{', '.join(BOUNDARIES)}")
    if boundary == "cylinder" and any(s < MIN_PERIODIC_SIDE for s in list(shape)[1:]):
        raise ParameterError(
            f"a cylinder needs periodic sides >= {MIN_PERIODIC_SIDE}, got shape "
            f"{tuple(shape)}: on a periodic axis of length 3 every site neighbours every "
            "other site; use boundary='free' for such small lattices")


def _batch_size(sites: int, max_sites: int) -> int:
    return max(1, max_sites // max(sites, 1))


def random_lattice(d: int, L: int, p: float, rng: int | np.random.Generator | None = None,
                   trials: int | None = None) -> np.ndarray:
    """A random site lattice: each of the ``L**d`` sites is open with probability ``p``.

    Args:
        d: dimension (>= 1).
        L: side length (>= 1).
        p: occupation probability in [0, 1].
        rng: seed or generator.
        trials: if given, a batch of independent lattices along a leading axis.

    Returns:
        Boolean array of shape ``(L,) * d`` (or ``(trials,) + (L,) * d``).
    """
    d, L = _check_int("d", d, 1), _check_int("L", L, 1)
    p = float(_check_ps(p)[0])
    shape = (L,) * d if trials is None else (_check_int("trials", trials, 1),) + (L,) * d
    return _rng(rng).random(shape, dtype=np.float32) < p


def _periodic_axes(periodic: bool | Sequence[bool], k: int) -> list[bool]:
    if isinstance(periodic, (bool, np.bool_)):
        return [bool(periodic)] * k
    periodic = [bool(v) for v in periodic]
    if len(periodic) != k:
        raise ParameterError(f"periodic has {len(periodic)} entries; the lattice has {k} axes")
    return periodic


def _merge_labels(labels: np.ndarray, n: int, a: np.ndarray, b: np.ndarray
                  ) -> tuple[np.ndarray, int]:
    """Join the clusters with labels ``a[i]`` and ``b[i]`` (all > 0) and renumber 1..n'."""
    if len(a) == 0 or n == 0:
        return labels, n
    graph = coo_matrix((np.ones(len(a), np.int8), (a - 1, b - 1)), shape=(n, n))
    n_new, comp = connected_components(graph, directed=False)
    lookup = np.concatenate([[0], comp + 1]).astype(labels.dtype)
    return lookup[labels], int(n_new)


def clusters(lattice: np.ndarray, periodic: bool | Sequence[bool] = False,
             batched: bool = False, method: str = "auto") -> tuple[np.ndarray, int]:
    """Label the nearest-neighbour clusters of open sites.

    Two open sites are connected when they differ by one step along one axis (and,
    along a periodic axis, the first and last layers are neighbours).

    Args:
        lattice: boolean array; with ``batched`` the first axis holds independent
            lattices that never connect to each other.
        periodic: one flag for all lattice axes or one per axis.
        batched: treat the first axis as a batch of trials.
        method: ``"ndimage"`` (``scipy.ndimage.label``, then periodic joins),
            ``"csgraph"`` (connected components of the sparse neighbour graph) or
            ``"auto"`` (``ndimage`` up to 5 array axes, ``csgraph`` above).

    Returns:
        ``(labels, n)``: integer labels (0 on closed sites, 1..n on clusters, unique
        across the batch) and the number of clusters.
    """
    lattice = np.asarray(lattice, dtype=bool)
    if method == "auto":
        method = "ndimage" if lattice.ndim <= _AUTO_MAX_AXES else "csgraph"
    if method not in METHODS:
        raise ParameterError(f"method={method!r} is not known; valid values: auto, {', '.join(METHODS)}")
    k = lattice.ndim - int(batched)
    if k < 1:
        raise ParameterError("the lattice needs at least one axis besides the batch axis")
    per = _periodic_axes(periodic, k)
    off = int(batched)
    if method == "ndimage":
        struct = ndimage.generate_binary_structure(k, 1)
        if batched:
            full = np.zeros((3,) + struct.shape, bool)
            full[1] = struct
            struct = full
        labels, n = ndimage.label(lattice, structure=struct)
        a_list, b_list = [], []
        for axis, wrap in enumerate(per):
            if wrap and lattice.shape[axis + off] > 2:
                first = np.take(labels, 0, axis=axis + off).ravel()
                last = np.take(labels, -1, axis=axis + off).ravel()
                both = (first > 0) & (last > 0)
                a_list.append(first[both])
                b_list.append(last[both])
        if a_list:
            labels, n = _merge_labels(labels, n, np.concatenate(a_list), np.concatenate(b_list))
        return labels, int(n)
    # csgraph: compact index of the open sites, edges between open neighbours
    flat = lattice.ravel()
    n_open = int(flat.sum())
    labels = np.zeros(lattice.shape, np.int64)
    if n_open == 0:
        return labels, 0
    index = np.full(lattice.shape, -1, np.int64)
    index[lattice] = np.arange(n_open)
    src, dst = [], []
    for axis, wrap in enumerate(per):
        ax = axis + off
        size = lattice.shape[ax]
        if size < 2:
            continue
        if wrap and size > 2:
            a, b = index, np.roll(index, -1, axis=ax)
        else:
            a = np.take(index, np.arange(size - 1), axis=ax)
            b = np.take(index, np.arange(1, size), axis=ax)
        both = (a >= 0) & (b >= 0)
        src.append(a[both])
        dst.append(b[both])
    src_all = np.concatenate(src) if src else np.empty(0, np.int64)
    dst_all = np.concatenate(dst) if dst else np.empty(0, np.int64)
    graph = coo_matrix((np.ones(len(src_all), np.int8), (src_all, dst_all)),
                       shape=(n_open, n_open))
    n, comp = connected_components(graph, directed=False)
    labels[lattice] = comp + 1
    return labels, int(n)


def largest_cluster(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest cluster in a label array (all False if none)."""
    counts = np.bincount(np.asarray(labels).ravel())
    if len(counts) < 2 or counts[1:].max() == 0:
        return np.zeros(np.shape(labels), bool)
    return labels == (1 + int(np.argmax(counts[1:])))


def spans(lattices: np.ndarray, boundary: str = "cylinder", method: str = "auto"
          ) -> np.ndarray:
    """Whether each lattice of a batch has an open cluster joining the two faces of axis 1.

    Args:
        lattices: boolean ``[trials, L, ..., L]``.
        boundary: ``"free"`` or ``"cylinder"`` (periodic across the other axes).
        method: cluster-labelling back end (see :func:`clusters`).

    Returns:
        Boolean ``[trials]``.
    """
    lattices = np.asarray(lattices, dtype=bool)
    _check_boundary(boundary, lattices.shape[1:])
    k = lattices.ndim - 1
    periodic = [False] + [boundary == "cylinder"] * (k - 1)
    labels, _ = clusters(lattices, periodic=periodic, batched=True, method=method)
    trials = lattices.shape[0]
    first = labels[:, 0].reshape(trials, -1)
    last = labels[:, -1].reshape(trials, -1)
    common = np.intersect1d(first[first > 0], last[last > 0])
    return np.isin(last, common).any(axis=1)


def spanning_probability(d: int, L: int, p: float | Sequence[float], trials: int,
                         rng: int | np.random.Generator | None = None,
                         boundary: str = "cylinder", method: str = "auto",
                         max_sites: int = 2**22) -> float | np.ndarray:
    """Fraction of ``trials`` random lattices with an open cluster joining two opposite faces.

    All values of ``p`` share the same random fields (site ``i`` is open when its
    uniform number is below ``p``), so the estimated curve is monotone in ``p``.

    Args:
        d, L: dimension and side.
        p: one probability or a sequence of them.
        trials: number of lattices.
        rng: seed or generator.
        boundary: ``"free"`` or ``"cylinder"``.
        method: cluster-labelling back end.
        max_sites: sites labelled per batch (memory bound).

    Returns:
        A float for a scalar ``p``, else an array with one value per ``p``.
    """
    d, L, trials = _check_int("d", d, 1), _check_int("L", L, 1), _check_int("trials", trials, 1)
    ps = _check_ps(p)
    _check_boundary(boundary, (L,) * d)
    gen = _rng(rng)
    hits = np.zeros(len(ps))
    batch = _batch_size(L**d, max_sites)
    for start in range(0, trials, batch):
        u = gen.random((min(batch, trials - start),) + (L,) * d, dtype=np.float32)
        for i, pi in enumerate(ps):
            hits[i] += spans(u < pi, boundary, method).sum()
    out = hits / trials
    return float(out[0]) if np.ndim(p) == 0 else out


def connection_probability(d: int, L: int, p: float | Sequence[float], trials: int,
                           rng: int | np.random.Generator | None = None,
                           boundary: str = "free", method: str = "auto",
                           max_sites: int = 2**22) -> float | np.ndarray:
    """Probability that two distinct random open sites of a lattice lie in one cluster.

    Computed exactly per lattice as ``sum_c s_c (s_c - 1) / (n (n - 1))`` (cluster
    sizes ``s_c``, ``n`` open sites) and pooled over trials (weighted by pairs).

    Returns:
        A float for a scalar ``p``, else an array with one value per ``p``
        (0 where no lattice had two open sites).
    """
    d, L, trials = _check_int("d", d, 1), _check_int("L", L, 1), _check_int("trials", trials, 1)
    ps = _check_ps(p)
    _check_boundary(boundary, (L,) * d)
    gen = _rng(rng)
    periodic = [False] + [boundary == "cylinder"] * (d - 1)
    same = np.zeros(len(ps))
    pairs = np.zeros(len(ps))
    batch = _batch_size(L**d, max_sites)
    for start in range(0, trials, batch):
        u = gen.random((min(batch, trials - start),) + (L,) * d, dtype=np.float32)
        for i, pi in enumerate(ps):
            lat = u < pi
            labels, _ = clusters(lat, periodic=periodic, batched=True, method=method)
            sizes = np.bincount(labels.ravel())[1:].astype(float)
            n_t = lat.reshape(len(lat), -1).sum(1).astype(float)
            same[i] += float((sizes * (sizes - 1)).sum())
            pairs[i] += float((n_t * (n_t - 1)).sum())
    out = np.divide(same, pairs, out=np.zeros_like(same), where=pairs > 0)
    return float(out[0]) if np.ndim(p) == 0 else out


def connection_curves(dims: Sequence[int], pcs: Sequence[float], sites: int, trials: int,
                      rel_p: Sequence[float] = tuple(np.linspace(0.4, 2.2, 13)),
                      seed: int = 0, method: str = "auto") -> pd.DataFrame:
    """:func:`connection_probability` against ``p / p_c`` for several dimensions.

    Dimension ``d`` uses a free-boundary lattice of side ``round(sites ** (1/d))`` and
    the seed ``[seed, d]``.

    Args:
        dims: dimensions.
        pcs: the threshold used to scale ``p`` in each dimension.
        sites: about this many sites per lattice.
        trials: lattices per point.
        rel_p: values of ``p / p_c`` (clipped so that ``p <= 1``).
        seed: seed.
        method: cluster-labelling back end.

    Returns:
        DataFrame with ``d``, ``L``, ``p``, ``p_rel`` and ``connection``.
    """
    if len(pcs) != len(dims):
        raise ParameterError(f"pcs has {len(pcs)} entries for {len(dims)} dimensions")
    rows = []
    for d, pc in zip(dims, pcs):
        d = _check_int("d", d, 1)
        side = max(2, round(sites ** (1 / d)))
        ps = np.clip(float(pc) * np.asarray(rel_p, float), 0, 1)
        conn = connection_probability(d, side, ps, trials, np.random.default_rng([seed, d]),
                                      method=method)
        rows += [{"d": d, "L": side, "p": float(p), "p_rel": float(p) / float(pc),
                  "connection": float(c)} for p, c in zip(ps, np.atleast_1d(conn))]
    return pd.DataFrame(rows)


def anchor_connection_probability(shape: Sequence[int], a: Sequence[int], b: Sequence[int],
                                  p: float, trials: int,
                                  rng: int | np.random.Generator | None = None,
                                  method: str = "auto") -> float:
    """Probability that two given sites, both forced open, are connected in a random lattice.

    The reference for a network grid: if the grid cells of one class were placed at
    random with the same density ``p``, how often would the two anchors be joined?

    Args:
        shape: lattice shape (free boundaries).
        a, b: the two anchor sites (index tuples).
        p: occupation probability of the other sites.
        trials: number of random lattices.
        rng: seed or generator.
        method: cluster-labelling back end.
    """
    shape = tuple(int(s) for s in shape)
    trials = _check_int("trials", trials, 1)
    pi = float(_check_ps(p)[0])
    a, b = tuple(int(v) for v in a), tuple(int(v) for v in b)
    lat = _rng(rng).random((trials,) + shape, dtype=np.float32) < pi
    lat[(slice(None),) + a] = True
    lat[(slice(None),) + b] = True
    labels, _ = clusters(lat, batched=True, method=method)
    return float(np.mean(labels[(slice(None),) + a] == labels[(slice(None),) + b]))


def spanning_thresholds(d: int, L: int, trials: int, rng: int | np.random.Generator | None = None,
                        boundary: str = "cylinder", method: str = "auto",
                        max_sites: int = 2**22, progress: bool = False) -> np.ndarray:
    """The occupation at which each random sample starts to span, one value per trial.

    Each trial draws one uniform field ``u``; the lattice at occupation ``p`` is
    ``u < p``, so spanning is monotone in ``p`` and changes only when ``p`` passes one
    of the sample's own values. The sample's threshold ``p*`` is therefore one of them,
    found exactly by bisection over the *sorted values* (batched over trials), not over
    ``[0, 1]``: about ``log2(L**d)`` labellings and no resolution to choose. The
    spanning probability of size ``L`` is the distribution function of ``p*``.

    Returns:
        Array ``[trials]`` of per-sample thresholds (the value of the site whose opening
        makes the sample span).
    """
    d, L, trials = _check_int("d", d, 1), _check_int("L", L, 1), _check_int("trials", trials, 1)
    _check_boundary(boundary, (L,) * d)
    gen = _rng(rng)
    batch = _batch_size(L**d, max_sites)
    out = []
    starts = range(0, trials, batch)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"p* d={d} L={L}", leave=False)
    for start in starts:
        t = min(batch, trials - start)
        u = gen.random((t,) + (L,) * d, dtype=np.float32)
        values = np.sort(u.reshape(t, -1), axis=1)
        lo = np.full(t, -1)  # index of a level that does not span (-1: nothing open)
        hi = np.full(t, L**d - 1)  # index of a level that spans (everything open)
        while np.any(hi - lo > 1):
            mid = (lo + hi) // 2
            level = values[np.arange(t), np.maximum(mid, 0)]
            ok = spans(u <= level.reshape((t,) + (1,) * d), boundary, method) & (mid >= 0)
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
        out.append(values[np.arange(t), hi].astype(float))
    return np.concatenate(out)


def _crossing(m1: float, s1: float, m2: float, s2: float) -> float:
    """Where two normal distribution functions cross (the larger size is steeper)."""
    if s1 - s2 <= 1e-12 * max(s1, 1e-12):
        return float(min(max(m2, 0.0), 1.0))  # no crossing: fall back to the larger size
    return float(np.clip((m2 * s1 - m1 * s2) / (s1 - s2), 0.0, 1.0))


def estimate_threshold(d: int, sizes: Sequence[int], trials: int,
                       rng: int | np.random.Generator | None = None, boundary: str = "cylinder",
                       bootstrap: int = 400, method: str = "auto",
                       progress: bool = False) -> dict:
    """Estimate ``p_c(d)`` from where the spanning curves of two sizes cross.

    For each size the per-sample thresholds (:func:`spanning_thresholds`) give the
    spanning curve; it is summarised by a normal distribution function with the
    samples' mean and standard deviation. Curves of consecutive sizes cross where
    their z-scores agree; the estimate is the crossing of the two largest sizes.
    Its uncertainty combines a bootstrap over trials (statistical) with half the
    gap between the last two crossings when three or more sizes are given
    (finite-size drift).

    Returns:
        dict with ``pc``, ``err``, ``stat_err``, ``sys_err``, ``sizes``, per-size
        ``mean`` and ``std`` of the sample thresholds, the ``crossings`` of
        consecutive sizes, and the raw ``thresholds`` (size -> array).
    """
    d, trials = _check_int("d", d, 1), _check_int("trials", trials, 2)
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or sorted(set(sizes)) != sizes or sizes[0] < 2:
        raise ParameterError(f"sizes={sizes!r} must be two or more increasing sides >= 2")
    gen = _rng(rng)
    thr = {L: spanning_thresholds(d, L, trials, gen, boundary, method, progress=progress)
           for L in sizes}
    mean = [float(thr[L].mean()) for L in sizes]
    std = [float(thr[L].std(ddof=1)) for L in sizes]
    cross = [_crossing(mean[i], std[i], mean[i + 1], std[i + 1]) for i in range(len(sizes) - 1)]
    a, b = thr[sizes[-2]], thr[sizes[-1]]
    boots = np.empty(bootstrap)
    for i in range(bootstrap):
        ra = a[gen.integers(0, len(a), len(a))]
        rb = b[gen.integers(0, len(b), len(b))]
        boots[i] = _crossing(ra.mean(), ra.std(ddof=1), rb.mean(), rb.std(ddof=1))
    stat = float(boots.std(ddof=1)) if bootstrap > 1 else 0.0
    sys = abs(cross[-1] - cross[-2]) / 2 if len(cross) >= 2 else 0.0
    return {"pc": cross[-1], "err": float(math.hypot(stat, sys)), "stat_err": stat, "sys_err": sys,
                "sizes": sizes, "mean": mean, "std": std, "crossings": cross, "thresholds": thr}
