"""Scalar fields on small grids: connection and spanning onsets, correlation, null models.

A *field* assigns a number to every cell of a grid of shape ``(n,) * d``; lower means
more inside (for a network: the loss of the class of interest). The cells whose rank is
at most ``p * N`` (``N`` cells) form the *open set at level p*. Sweeping ``p`` from 0 to
1 opens the cells one by one, so every question "from which ``p`` on are these two
cells joined?" has one exact answer per field, found here with a minimum spanning tree
(the largest rank along the tree path is the smallest level at which the path exists,
Kruskal's algorithm being exactly the Newman-Ziff sweep):

* :func:`onsets`: per field, the level ``p_conn`` at which two anchor cells, counted
  as open, are joined; the level ``p_in`` at which both anchors are open by their own
  value; and the level ``p_span`` at which an open cluster joins the two faces of axis 0;
* :func:`lag_correlation`: the lag-1 correlation of a field's normal scores along the
  grid axes, and :func:`match_correlation_length`, the length of a Gaussian random field
  with the same lag-1 correlation on the same grid;
* null fields on the identical grid (:func:`null_fields`): independent sites (site
  percolation), a Gaussian random field with a given correlation length
  (:func:`gaussian_field`, sampled exactly through the Kronecker structure of the
  Gaussian covariance on a product grid) and a convex set (a ball, whose open set at
  every level is the set of cells nearest to a centre).

A ball's cells are lattice-connected, so a ball null joins two anchors at the very level
at which both are inside (``p_conn <= p_in``): the property a convex class region has.
Used by chapter 02.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
from scipy.special import ndtri

from mcutils.core.checks import ParameterError

#: A seed, a sequence of seeds or a generator.
RNG = int | Sequence[int] | np.random.Generator | None

__all__ = [
    "NULLS",
    "gaussian_field",
    "lag_correlation",
    "match_correlation_length",
    "null_fields",
    "onsets",
    "ranks",
]

#: Null models of a class region on a grid (see :func:`null_fields`).
NULLS = ("independent", "correlated", "convex")


def _rng(rng: RNG) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 2 for s in shape):
        raise ParameterError(f"shape={shape!r} needs at least one axis, each of length >= 2")
    return shape


def ranks(fields: np.ndarray, rng: RNG = 0) -> np.ndarray:
    """Ranks ``1..N`` of each field's cells (batched over a leading axis), ties at random.

    Args:
        fields: ``[F, *shape]`` values (lower = opens first).
        rng: seed or generator for breaking ties.

    Returns:
        int64 array of the same shape.
    """
    arr = np.asarray(fields, dtype=float)
    flat = arr.reshape(len(arr), -1)
    gen = _rng(rng)
    out = np.empty(flat.shape, np.int64)
    for i, row in enumerate(flat):
        order = np.lexsort((gen.random(len(row)), row))
        out[i, order] = np.arange(1, len(row) + 1)
    return out.reshape(arr.shape)


@functools.lru_cache(maxsize=16)
def _edges(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    src, dst = [], []
    for ax, size in enumerate(shape):
        src.append(np.take(idx, np.arange(size - 1), axis=ax).ravel())
        dst.append(np.take(idx, np.arange(1, size), axis=ax).ravel())
    return np.concatenate(src), np.concatenate(dst)


def _bottleneck(rank: np.ndarray, shape: tuple[int, ...], source: np.ndarray,
                target: np.ndarray) -> int:
    """Smallest ``k`` such that the cells of rank ``<= k`` join a cell of ``source`` to one
    of ``target`` (both sets of flat indices; their own ranks count)."""
    n = rank.size
    src, dst = _edges(shape)
    w = np.maximum(rank[src], rank[dst])
    s_node, t_node = n, n + 1
    rows = np.concatenate([src, np.full(len(source), s_node), np.full(len(target), t_node)])
    cols = np.concatenate([dst, source, target])
    wts = np.concatenate([w, rank[source], rank[target]]).astype(float)
    graph = coo_matrix((wts, (rows, cols)), shape=(n + 2, n + 2)).tocsr()
    tree = minimum_spanning_tree(graph)
    _, pred = breadth_first_order(tree, s_node, directed=False, return_predecessors=True)
    best, node = 0, pred[t_node]
    while node != s_node and node >= 0:
        best = max(best, int(rank[node]))
        node = pred[node]
    if node < 0:
        raise RuntimeError("source and target are not connected in the full grid")
    return best


def onsets(fields: np.ndarray, anchors: Sequence[Sequence[int]] | None = None,
           span: bool = True, rng: RNG = 0) -> dict[str, np.ndarray]:
    """Exact levels at which anchors connect and the grid spans, one value per field.

    The open set at level ``p`` is the ``round(p * N)`` lowest cells (nearest-neighbour
    connectivity, free boundaries).

    Args:
        fields: ``[F, *shape]`` (lower = opens first).
        anchors: two cells ``(a, b)`` (index tuples) or None.
        span: also compute the spanning level along axis 0.
        rng: tie-breaking seed or generator (see :func:`ranks`).

    Returns:
        dict of ``[F]`` arrays: ``p_conn`` (the smallest level at which ``a`` and ``b``,
        counted as open whatever their own value, lie in one cluster; 0 for adjacent
        anchors), ``p_in`` (the level at which both anchors are open by their own value)
        and ``p_span`` (the smallest level at which one open cluster touches the first
        and the last layer of axis 0); NaN where not asked for.
    """
    arr = np.asarray(fields, dtype=float)
    if anchors is None and not span:
        raise ParameterError("nothing to compute: give anchors or span=True")
    shape = _check_shape(arr.shape[1:])
    n = int(np.prod(shape))
    rk = ranks(arr, rng).reshape(len(arr), -1)
    count = len(arr)
    p_conn = np.full(count, np.nan)
    p_in = np.full(count, np.nan)
    p_span = np.full(count, np.nan)
    if anchors is not None:
        a, b = (tuple(int(v) for v in c) for c in anchors)
        if len(a) != len(shape) or len(b) != len(shape) or a == b:
            raise ParameterError(f"anchors={anchors!r} must be two distinct cells of {shape}")
        ia = int(np.ravel_multi_index(a, shape))
        ib = int(np.ravel_multi_index(b, shape))
    idx = np.arange(n).reshape(shape)
    first, last = idx[0].ravel(), idx[-1].ravel()
    for i in range(count):
        r = rk[i]
        if anchors is not None:
            p_in[i] = max(r[ia], r[ib]) / n
            forced = r.copy()
            forced[[ia, ib]] = 0
            p_conn[i] = _bottleneck(forced + 1, shape, np.array([ia]), np.array([ib])) - 1
            p_conn[i] = max(p_conn[i], 0) / n
        if span:
            p_span[i] = _bottleneck(r, shape, first, last) / n
    return {"p_conn": p_conn, "p_in": p_in, "p_span": p_span}


def lag_correlation(fields: np.ndarray) -> np.ndarray:
    """Lag-1 correlation of each field's normal scores, pooled over the grid axes.

    The field is replaced by the normal quantiles of its ranks (so any monotone change
    of the field, such as loss against probability, gives the same value), then the
    Pearson correlation of all pairs of neighbouring cells is taken.

    Args:
        fields: ``[F, *shape]``.

    Returns:
        ``[F]`` correlations in ``[-1, 1]``.
    """
    arr = np.asarray(fields, dtype=float)
    shape = _check_shape(arr.shape[1:])
    n = int(np.prod(shape))
    z = ndtri((ranks(arr, 0).reshape(len(arr), -1) - 0.5) / n)
    src, dst = _edges(shape)
    u, v = z[:, src], z[:, dst]
    u = u - u.mean(1, keepdims=True)
    v = v - v.mean(1, keepdims=True)
    return (u * v).sum(1) / np.sqrt((u * u).sum(1) * (v * v).sum(1))


def _root_cov(n: int, ell: float) -> np.ndarray:
    k = np.arange(n)
    cov = np.exp(-((k[:, None] - k[None, :]) ** 2) / (2.0 * ell * ell))
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def gaussian_field(shape: Sequence[int], ell: float, count: int, rng: RNG = 0) -> np.ndarray:
    """Samples of a stationary Gaussian random field with covariance ``exp(-r^2 / (2 ell^2))``.

    ``r`` is measured in grid steps. On a product grid the covariance is the Kronecker
    product of the per-axis covariances, so ``f = (S_1 x ... x S_d) z`` with ``S_j`` the
    symmetric square root of the axis covariance and ``z`` white noise is an exact
    sample (no boundary effects, no truncated spectrum).

    Args:
        shape: grid shape.
        ell: correlation length in grid steps (> 0).
        count: number of fields.
        rng: seed or generator.

    Returns:
        ``[count, *shape]`` float64.
    """
    shape = _check_shape(shape)
    if not ell > 0:
        raise ParameterError(f"ell={ell!r} must be positive")
    f = _rng(rng).standard_normal((int(count),) + shape)
    for ax, size in enumerate(shape):
        root = _root_cov(size, float(ell))
        f = np.moveaxis(np.tensordot(root, f, axes=([1], [ax + 1])), 0, ax + 1)
    return f


def match_correlation_length(target: float, shape: Sequence[int], count: int | None = None,
                             rng: RNG = 0, bounds: tuple[float, float] = (0.05, 200.0),
                             steps: int = 12) -> float:
    """The ``ell`` of :func:`gaussian_field` whose mean :func:`lag_correlation` on this grid
    equals ``target`` (bisection in ``log ell`` with common random numbers).

    The finite grid makes the measured correlation of a smooth field lower than its
    covariance at lag 1, so the length is matched on the identical grid with the same
    estimator rather than read off the formula. Targets outside what ``bounds`` can
    reach return the nearest bound.

    Args:
        target: the lag-1 correlation to match.
        shape: grid shape.
        count: fields averaged per trial length (default: about 2**16 cells in all,
            8 to 256 fields).
        rng: seed or generator of the common white noise.
        bounds: the range of lengths searched (grid steps).
        steps: bisection steps (12 resolve ``log ell`` to about 2e-3).
    """
    shape = _check_shape(shape)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    if count is None:
        count = int(np.clip(2**16 // int(np.prod(shape)), 8, 256))
    noise = _rng(rng).standard_normal((int(count),) + shape)

    def measured(log_ell: float) -> float:
        f = noise
        for ax, size in enumerate(shape):
            root = _root_cov(size, float(np.exp(log_ell)))
            f = np.moveaxis(np.tensordot(root, f, axes=([1], [ax + 1])), 0, ax + 1)
        return float(np.mean(lag_correlation(f)))

    if measured(lo) >= target:
        return float(bounds[0])
    if measured(hi) <= target:
        return float(bounds[1])
    for _ in range(steps):
        mid = (lo + hi) / 2
        if measured(mid) < target:
            lo = mid
        else:
            hi = mid
    return float(np.exp((lo + hi) / 2))


def null_fields(kind: str, shape: Sequence[int], count: int, rng: RNG = 0,
                ell: float | None = None,
                centre: str | Sequence[Sequence[int]] = "box") -> np.ndarray:
    """Fields of a null model on the grid (lower = opens first).

    Args:
        kind: ``"independent"`` (i.i.d. uniform values: site percolation),
            ``"correlated"`` (:func:`gaussian_field` with length ``ell``) or ``"convex"``
            (squared distance to a random centre: the open set at every level is a ball).
        shape: grid shape.
        count: number of fields.
        rng: seed or generator.
        ell: correlation length for ``"correlated"`` (grid steps).
        centre: for ``"convex"``: ``"box"`` (uniform in the grid's bounding box) or two
            cells ``(a, b)`` (uniform on the segment between them).

    Returns:
        ``[count, *shape]`` float64.
    """
    shape = _check_shape(shape)
    gen = _rng(rng)
    count = int(count)
    if kind == "independent":
        return gen.random((count,) + shape)
    if kind == "correlated":
        if ell is None:
            raise ParameterError("the correlated null needs ell (its correlation length)")
        return gaussian_field(shape, ell, count, gen)
    if kind == "convex":
        if isinstance(centre, str):
            if centre != "box":
                raise ParameterError(f"centre={centre!r} must be 'box' or two cells")
            c = gen.random((count, len(shape))) * (np.array(shape) - 1)
        else:
            a, b = (np.asarray(v, float) for v in centre)
            c = a + gen.random((count, 1)) * (b - a)
        grids = np.indices(shape).reshape(len(shape), -1).T.astype(float)
        dist = ((grids[None, :, :] - c[:, None, :]) ** 2).sum(-1)
        return dist.reshape((count,) + shape)
    raise ParameterError(f"kind={kind!r} is not known; valid values: {', '.join(NULLS)}")
