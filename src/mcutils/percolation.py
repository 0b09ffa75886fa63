"""Site percolation on d-dimensional lattices, threshold estimation, and network grids.

The input-space connectivity paper argues that same-class regions of a classifier are
connected for a geometric reason: in high dimension, a random set that fills even a
small fraction ``p`` of space percolates, because the site-percolation threshold
``p_c(d)`` of the hypercubic lattice falls like ``1 / (2d - 1)``. This module makes the
argument quantitative:

* lattices and clusters: :func:`random_lattice`, :func:`clusters` (nearest-neighbour
  connectivity; ``scipy.ndimage.label`` or a sparse-graph union of neighbour pairs,
  both batched over trials and with optional periodic axes), :func:`largest_cluster`;
* observables: :func:`spans`, :func:`spanning_probability`,
  :func:`connection_probability`, :func:`anchor_connection_probability`;
* thresholds: :func:`spanning_thresholds` (the exact occupation at which each sample
  starts to span, found by bisection on a shared random field) and
  :func:`estimate_threshold` (where the spanning curves of two sizes cross, with a
  bootstrap uncertainty); the literature values :data:`PUBLISHED_THRESHOLDS`, the
  Bethe value :func:`bethe_threshold` and the series :func:`asymptotic_threshold`;
* networks: :func:`grid_points` (a regular grid in a random d-dimensional affine
  subspace through two inputs), :func:`label_grid` (batched predictions under
  ``torch.inference_mode``), :func:`grid_connectivity`, :func:`network_grid_study`
  and :func:`plane_predictions` (a 2-D slice through three inputs).

Randomness always comes from an explicit ``rng`` (a seed or a
:class:`numpy.random.Generator`) or a :class:`torch.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import nn

from mcutils.runtime import ParameterError

__all__ = [
    "BOUNDARIES",
    "METHODS",
    "PUBLISHED_THRESHOLDS",
    "Grid",
    "anchor_connection_probability",
    "asymptotic_threshold",
    "bethe_threshold",
    "clusters",
    "connection_probability",
    "estimate_threshold",
    "grid_connectivity",
    "grid_points",
    "grid_size",
    "label_grid",
    "largest_cluster",
    "network_grid_study",
    "plane_predictions",
    "random_lattice",
    "same_class_pairs",
    "spanning_probability",
    "spanning_thresholds",
    "spans",
    "threshold_table",
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

#: Published site-percolation thresholds of the simple hypercubic lattice:
#: d -> (p_c, bibliography key). d = 2: Newman and Ziff (2000); d = 3: Wang et al.
#: (2013); d = 4..8: Grassberger (2003).
PUBLISHED_THRESHOLDS: dict[int, tuple[float, str]] = {
    2: (0.592746, "newman2000efficient"),
    3: (0.3116077, "wang2013bond"),
    4: (0.196889, "grassberger2003critical"),
    5: (0.14081, "grassberger2003critical"),
    6: (0.109017, "grassberger2003critical"),
    7: (0.0889511, "grassberger2003critical"),
    8: (0.0752101, "grassberger2003critical"),
}

# coefficients of p_c = sum_k a_k sigma^-k, sigma = 2d - 1 (Gaunt, Sykes and Ruskin 1976)
_SERIES = (1.0, 1.5, 3.75, 20.75)


def _rng(rng: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _check_ps(p) -> np.ndarray:
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    if ps.ndim != 1 or np.any(~np.isfinite(ps)) or np.any((ps < 0) | (ps > 1)):
        raise ParameterError(f"p={p!r} must be a probability (or a list of them) in [0, 1]")
    return ps


def _check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise ParameterError(f"boundary={boundary!r} is not known; valid values: "
                             f"{', '.join(BOUNDARIES)}")


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
    _check_boundary(boundary)
    lattices = np.asarray(lattices, dtype=bool)
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
    _check_boundary(boundary)
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
    _check_boundary(boundary)
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
                        resolution: float = 2e-4, boundary: str = "cylinder",
                        method: str = "auto", max_sites: int = 2**22,
                        progress: bool = False) -> np.ndarray:
    """The occupation at which each random sample starts to span, one value per trial.

    Each trial draws one uniform field ``u``; the lattice at occupation ``p`` is
    ``u < p``, so spanning is monotone in ``p`` and the sample's threshold ``p*`` is
    found by bisection (batched over trials) to within ``resolution``. The spanning
    probability of size ``L`` is the distribution function of ``p*``.

    Returns:
        Array ``[trials]`` of per-sample thresholds (bisection midpoints).
    """
    d, L, trials = _check_int("d", d, 1), _check_int("L", L, 1), _check_int("trials", trials, 1)
    if not 0 < resolution < 0.5:
        raise ParameterError(f"resolution={resolution!r} must lie in (0, 0.5)")
    _check_boundary(boundary)
    gen = _rng(rng)
    steps = math.ceil(math.log2(1.0 / resolution))
    batch = _batch_size(L**d, max_sites)
    out = []
    starts = range(0, trials, batch)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"p* d={d} L={L}", leave=False)
    for start in starts:
        t = min(batch, trials - start)
        u = gen.random((t,) + (L,) * d, dtype=np.float32)
        lo, hi = np.zeros(t), np.ones(t)
        for _ in range(steps):
            mid = (lo + hi) / 2
            ok = spans(u < mid.reshape((t,) + (1,) * d).astype(np.float32), boundary, method)
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
        out.append((lo + hi) / 2)
    return np.concatenate(out)


def _crossing(m1: float, s1: float, m2: float, s2: float) -> float:
    """Where two normal distribution functions cross (the larger size is steeper)."""
    if s1 - s2 <= 1e-12 * max(s1, 1e-12):
        return float(min(max(m2, 0.0), 1.0))  # no crossing: fall back to the larger size
    return float(np.clip((m2 * s1 - m1 * s2) / (s1 - s2), 0.0, 1.0))


def estimate_threshold(d: int, sizes: Sequence[int], trials: int,
                       rng: int | np.random.Generator | None = None,
                       resolution: float = 2e-4, boundary: str = "cylinder",
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
    thr = {L: spanning_thresholds(d, L, trials, gen, resolution, boundary, method,
                                  progress=progress) for L in sizes}
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
    return dict(pc=cross[-1], err=float(math.hypot(stat, sys)), stat_err=stat, sys_err=sys,
                sizes=sizes, mean=mean, std=std, crossings=cross, thresholds=thr)


def threshold_table(dims: Sequence[int], sizes: Sequence[Sequence[int]], trials: int,
                    seed: int = 0, boundary: str = "cylinder", progress: bool = False
                    ) -> pd.DataFrame:
    """Estimate ``p_c(d)`` for several dimensions beside the published and series values.

    Args:
        dims: dimensions.
        sizes: one list of sides per dimension (see :func:`estimate_threshold`).
        trials: samples per size.
        seed: dimension ``d`` uses ``numpy.random.default_rng([seed, d])``, so a
            dimension's estimate does not depend on which others are listed.
        boundary: ``"free"`` or ``"cylinder"``.

    Returns:
        DataFrame indexed by ``d`` with ``pc``, ``err``, ``sizes``, ``published`` (NaN
        where unknown), ``ref`` (bibliography key), ``bethe`` and ``series``;
        ``attrs["thresholds"]`` keeps the per-sample thresholds (d -> size -> array).
    """
    dims = [_check_int("d", d, 1) for d in dims]
    if len(sizes) != len(dims):
        raise ParameterError(f"sizes has {len(sizes)} entries for {len(dims)} dimensions")
    rows, samples = [], {}
    for d, sz in zip(dims, sizes):
        est = estimate_threshold(d, sz, trials, np.random.default_rng([seed, d]),
                                 boundary=boundary, progress=progress)
        samples[d] = est["thresholds"]
        pub, ref = PUBLISHED_THRESHOLDS.get(d, (float("nan"), ""))
        rows.append(dict(d=d, pc=est["pc"], err=est["err"], sizes=list(sz), published=pub,
                         ref=ref, bethe=bethe_threshold(d), series=asymptotic_threshold(d)))
    table = pd.DataFrame(rows).set_index("d")
    table.attrs["thresholds"] = samples
    return table


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


# ---------------------------------------------------------------------------- networks


@dataclass
class Grid:
    """A regular grid of ``n**d`` points in an affine subspace of input space.

    Point with index ``k`` is ``origin + sum_j coords[k_j] * directions[j]`` where the
    first axis uses ``coords0`` (``x_a`` at 0, ``x_b`` at 1) and the others ``coords``.
    """

    origin: torch.Tensor
    directions: torch.Tensor
    coords0: torch.Tensor
    coords: torch.Tensor
    anchor_a: tuple[int, ...]
    anchor_b: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(n,) * d``."""
        return (len(self.coords0),) * self.directions.shape[0]

    def points(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Input points with flat indices in ``[start, stop)``, shaped like the inputs."""
        total = int(np.prod(self.shape))
        stop = total if stop is None else min(stop, total)
        idx = np.unravel_index(np.arange(start, stop), self.shape)
        c = torch.stack([self.coords0[torch.from_numpy(idx[0])]]
                        + [self.coords[torch.from_numpy(i)] for i in idx[1:]], 1)
        flat = self.origin.flatten() + c @ self.directions
        return flat.view(-1, *self.origin.shape)


def grid_size(d: int, max_cells: int) -> int:
    """The largest odd ``n >= 3`` with ``n**d <= max_cells`` (3 if even that is too many)."""
    n = 3
    while (n + 2) ** d <= max_cells:
        n += 2
    return n


def grid_points(x_a: torch.Tensor, x_b: torch.Tensor, d: int, n: int,
                generator: torch.Generator | None = None) -> Grid:
    """A grid through ``x_a`` and ``x_b`` in a random ``d``-dimensional affine subspace.

    Axis 0 runs along ``x_b - x_a`` with step ``h = 1 / (n - 1 - 2q)``, ``q = (n - 1) // 4``
    points of margin on each side (``x_a`` at index ``q``, ``x_b`` at ``n - 1 - q``;
    for ``n = 5``: -0.5, 0, 0.5, 1, 1.5). The other ``d - 1`` axes follow random
    directions orthogonal to it and to each other, with the same length, centred on
    ``x_a`` with the same step. Both inputs are grid points.

    Args:
        x_a, x_b: two inputs of the same shape (pixel space).
        d: grid dimension (>= 1).
        n: points per axis, odd and >= 3.
        generator: torch generator for the random directions.
    """
    d = _check_int("d", d, 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 3 or n % 2 == 0:
        raise ParameterError(f"n={n!r} must be an odd integer >= 3")
    if x_a.shape != x_b.shape:
        raise ParameterError("x_a and x_b must have the same shape")
    v = (x_b - x_a).flatten().double()
    dim = v.numel()
    if d > dim:
        raise ParameterError(f"d={d} exceeds the input dimension {dim}")
    norm = v.norm()
    if norm == 0:
        raise ParameterError("x_a and x_b are identical")
    rand = torch.randn(d - 1, dim, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.cat([v[None], rand]).T)
    dirs = q.T * norm
    dirs[0] = v
    margin = (n - 1) // 4
    h = 1.0 / (n - 1 - 2 * margin)
    c = (n - 1) // 2
    k = torch.arange(n, dtype=torch.float32)
    return Grid(origin=x_a.detach().float().cpu(), directions=dirs.float(),
                coords0=(k - margin) * h, coords=(k - c) * h,
                anchor_a=(margin,) + (c,) * (d - 1), anchor_b=(n - 1 - margin,) + (c,) * (d - 1))


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def label_grid(model: nn.Module, grid: Grid, batch_size: int = 512) -> np.ndarray:
    """The model's predicted class at every grid point (batched, inference mode).

    Returns:
        Integer array of shape ``grid.shape``.
    """
    device = _device_of(model)
    model.eval()
    total = int(np.prod(grid.shape))
    out = []
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            x = grid.points(start, start + batch_size).to(device)
            out.append(model(x).argmax(1).cpu())
    return torch.cat(out).numpy().reshape(grid.shape)


def grid_connectivity(labels: np.ndarray, cls: int, a: Sequence[int], b: Sequence[int]
                      ) -> tuple[float, bool]:
    """Fraction ``p`` of grid cells labelled ``cls`` and whether ``a`` and ``b`` share a cluster.

    Clusters use nearest-neighbour connectivity with free boundaries.
    """
    mask = np.asarray(labels) == cls
    frac = float(mask.mean())
    a, b = tuple(a), tuple(b)
    if not (mask[a] and mask[b]):
        return frac, False
    lab, _ = clusters(mask)
    return frac, bool(lab[a] == lab[b])


def same_class_pairs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_pairs: int,
                     seed: int = 0, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of inputs with the same label that ``model`` classifies correctly.

    Both inputs of a pair thus lie in the model's region of their class. Pairs are
    spread over the classes round-robin (classes with fewer than two correct inputs
    are skipped), drawn with :func:`mcutils.data.class_pairs`.

    Returns:
        ``(i, j)``: index tensors into ``x`` of length ``<= num_pairs``.
    """
    from mcutils.data import class_pairs

    num_pairs = _check_int("num_pairs", num_pairs, 1)
    model.eval()
    device = _device_of(model)
    with torch.inference_mode():
        pred = torch.cat([model(x[s:s + batch_size].to(device)).argmax(1).cpu()
                          for s in range(0, len(x), batch_size)])
    ok = (pred == y).nonzero().flatten()
    labels = y[ok]
    counts = torch.bincount(labels)
    k = int((counts >= 2).sum())
    if k == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    per = -(-num_pairs // k)
    i, j = class_pairs(labels, per, seed=seed)
    order = torch.arange(len(i)).view(k, per).T.flatten()  # round-robin over classes
    i, j = i[order][:num_pairs], j[order][:num_pairs]
    return ok[i], ok[j]


def network_grid_study(model: nn.Module, x: torch.Tensor,
                       pairs: tuple[torch.Tensor, torch.Tensor], dims: Sequence[int] = (2, 3, 4),
                       max_cells: int = 729, seed: int = 0, random_trials: int = 64,
                       batch_size: int = 512, progress: bool = False) -> pd.DataFrame:
    """Label random grids through input pairs and compare with random site percolation.

    For each pair ``(x[i], x[j])`` and each ``d`` in ``dims``, a grid of ``n**d`` cells
    (``n`` from :func:`grid_size`: the largest odd ``n`` with ``n**d <= max_cells``) is laid through both inputs (:func:`grid_points`)
    and labelled by the model. The class of the grid is the model's prediction at
    ``x[i]``. Recorded: the fraction ``p`` of cells of that class, whether both inputs
    lie in one cluster of it, and ``random_connect``, the probability of that event if
    the same fraction of cells were open at random (:func:`anchor_connection_probability`).

    Returns:
        DataFrame with columns pair, d, n, cls, p, connected, random_connect.
    """
    i_idx, j_idx = (torch.as_tensor(t).long() for t in pairs)
    dims = [_check_int("d", v, 1) for v in dims]
    rows = []
    jobs = [(k, d) for k in range(len(i_idx)) for d in dims]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc="network grids", leave=False)
    for k, d in jobs:
        n = grid_size(d, max_cells)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k * 101 + d)
        grid = grid_points(x[i_idx[k]], x[j_idx[k]], d, n, gen)
        labels = label_grid(model, grid, batch_size)
        cls = int(labels[grid.anchor_a])
        frac, connected = grid_connectivity(labels, cls, grid.anchor_a, grid.anchor_b)
        ref = anchor_connection_probability(grid.shape, grid.anchor_a, grid.anchor_b, frac,
                                            random_trials, np.random.default_rng([seed, k, d]))
        rows.append(dict(pair=k, d=d, n=n, cls=cls, p=frac, connected=connected,
                         random_connect=ref))
    return pd.DataFrame(rows)


def plane_predictions(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor,
                      n: int = 101, margin: float = 0.5, batch_size: int = 2048) -> dict:
    """Predicted classes on the plane ``x1 + a (x2 - x1) + b (x3 - x1)``.

    Args:
        x1, x2, x3: three inputs of the same shape.
        n: points per axis; ``a`` and ``b`` run from ``-margin`` to ``1 + margin``.

    Returns:
        dict with ``labels`` (``[n, n]``, row = ``b``, column = ``a``), ``coords``
        (the values of ``a`` and ``b``) and ``anchors`` (the three inputs' ``(a, b)``).
    """
    if n < 2:
        raise ParameterError(f"n={n!r} must be >= 2")
    coords = torch.linspace(-margin, 1 + margin, n)
    bb, aa = torch.meshgrid(coords, coords, indexing="ij")
    u = (x2 - x1).flatten().float()
    w = (x3 - x1).flatten().float()
    base = x1.flatten().float()
    ab = torch.stack([aa.flatten(), bb.flatten()], 1)
    device = _device_of(model)
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(ab), batch_size):
            c = ab[s:s + batch_size]
            pts = (base + c[:, :1] * u + c[:, 1:] * w).view(-1, *x1.shape)
            out.append(model(pts.to(device)).argmax(1).cpu())
    labels = torch.cat(out).numpy().reshape(n, n)
    return dict(labels=labels, coords=coords.numpy(), anchors=[(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
