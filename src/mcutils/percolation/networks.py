"""Slices of a network's input space, read against null models on the identical grids.

A *slice* is a regular grid of ``n**d`` points (``n >= 9`` per axis, one fixed step) in
a ``d``-dimensional affine subspace of input space (pixel space):

* :func:`anchored_grid` passes through two correctly classified images of one class
  (the *anchors*): axis 0 runs along their difference, with the anchors ``n - 1 - 2m``
  steps apart and ``m`` steps of margin; the other axes follow random orthonormal
  directions with the same step;
* :func:`random_grid` is centred on one image, with ``d`` random orthonormal axes and a
  given step (unanchored).

The network is evaluated once per slice (:func:`grid_losses`: the cross-entropy of the
slice's class at every point). Sweeping a loss threshold afterwards opens the cells in
order of their loss, so the fraction ``p`` of low-loss cells runs from 0 to 1, and
:func:`mcutils.percolation.onsets` gives the exact ``p`` at which the anchors
connect (``p_conn``; anchors counted as members of the class), at which both anchors are
inside by their own loss (``p_in``) and at which the slice spans along axis 0
(``p_span``). :func:`slice_study` runs this over pairs, random centres and dimensions;
:func:`null_study` computes the same onsets for the null models on the identical grids:
independent sites, a Gaussian random field whose correlation length matches the
network's (:func:`matched_lengths`) and a ball (convex). :func:`onset_intervals`
summarises onsets (median over slices, bootstrap interval) and :func:`match_nulls` says
which null the network's onsets follow across dimensions.

Every function that receives a model leaves its train/eval mode and its device as they
were. Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import planned_inference
from mcutils.core.stats import fraction_interval, interval
from mcutils.training import predict
from mcutils.percolation.fields import (
    lag_correlation,
    match_correlation_length,
    null_fields,
    onsets,
)

__all__ = [
    "NULL_NAMES",
    "Grid",
    "anchored_grid",
    "fraction_intervals",
    "grid_losses",
    "joined_when_inside",
    "label_grid",
    "match_nulls",
    "matched_lengths",
    "null_study",
    "onset_intervals",
    "plane_predictions",
    "random_grid",
    "same_class_pairs",
    "same_patch",
    "slice_study",
    "trio_study",
]

#: Readable names of the nulls for prose and tables.
NULL_NAMES = {"independent": "independent sites", "correlated": "correlated random field",
              "convex": "convex set (ball)"}


@dataclass
class Grid:
    """A regular grid in an affine subspace of input space.

    Point ``k = (k_0, ..., k_{d-1})`` is ``origin + sum_j coords[j, k_j] * directions[j]``;
    ``directions[j]`` is one grid step (of pixel-space length ``step``) along axis ``j``.
    """

    origin: torch.Tensor
    directions: torch.Tensor
    coords: torch.Tensor
    step: float
    anchors: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape ``(n,) * d``."""
        return tuple(len(c) for c in self.coords)

    def points(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Input points with flat (C-order) indices in ``[start, stop)``, shaped like inputs."""
        total = int(np.prod(self.shape))
        stop = total if stop is None else min(stop, total)
        idx = np.unravel_index(np.arange(start, stop), self.shape)
        c = torch.stack([self.coords[j][torch.from_numpy(i)] for j, i in enumerate(idx)], 1)
        flat = self.origin.flatten() + c @ self.directions
        return flat.view(-1, *self.origin.shape)


def _check_grid_args(d: int, n: int) -> None:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ParameterError(f"d={d!r} must be an integer >= 1")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ParameterError(f"n={n!r} must be an integer >= 3")


def _orthonormal(first: torch.Tensor | None, k: int, dim: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """``k`` random orthonormal directions in ``R^dim`` (the first along ``first`` if given)."""
    rand = torch.randn(k, dim, generator=generator, dtype=torch.float64)
    if first is not None:
        rand = torch.cat([first.double()[None], rand[1:]])
    q, r = torch.linalg.qr(rand.T)
    q = q * torch.sign(torch.diagonal(r))[None, :]  # keep the first axis pointing along `first`
    return q.T


def anchored_grid(x_a: torch.Tensor, x_b: torch.Tensor, d: int, n: int = 9, margin: int = 2,
                  generator: torch.Generator | None = None) -> Grid:
    """A grid through two inputs in a random ``d``-dimensional affine subspace.

    Axis 0 runs along ``x_b - x_a``: ``x_a`` at index ``margin``, ``x_b`` at
    ``n - 1 - margin``, so the step is ``|x_b - x_a| / (n - 1 - 2 margin)``. The other
    axes follow random directions orthogonal to it and to each other, with the same
    step, and are centred on the anchors (index ``(n - 1) // 2``).

    Args:
        x_a, x_b: two inputs of one shape (pixel space).
        d: slice dimension (>= 1, at most the input dimension).
        n: points per axis (>= 3).
        margin: steps beyond each anchor along axis 0 (``0 <= margin``, ``n - 1 - 2 margin
            >= 1``).
        generator: torch generator for the random directions.
    """
    _check_grid_args(d, n)
    if x_a.shape != x_b.shape:
        raise ParameterError("x_a and x_b must have the same shape")
    gap = n - 1 - 2 * int(margin)
    if margin < 0 or gap < 1:
        raise ParameterError(f"margin={margin!r} leaves no room between the anchors for n={n}")
    v = (x_b - x_a).flatten().double()
    dim = v.numel()
    if d > dim:
        raise ParameterError(f"d={d} exceeds the input dimension {dim}")
    norm = float(v.norm())
    if norm == 0:
        raise ParameterError("x_a and x_b are identical")
    step = norm / gap
    dirs = _orthonormal(v, d, dim, generator) * step
    c = (n - 1) // 2
    k = torch.arange(n, dtype=torch.float32)
    coords = torch.stack([k - margin] + [k - c] * (d - 1))
    anchors = ((int(margin),) + (c,) * (d - 1), (n - 1 - int(margin),) + (c,) * (d - 1))
    return Grid(origin=x_a.detach().float().cpu(), directions=dirs.float(), coords=coords,
                step=step, anchors=anchors)


def random_grid(x0: torch.Tensor, d: int, n: int = 9, step: float = 1.0,
                generator: torch.Generator | None = None) -> Grid:
    """A grid centred on ``x0`` along ``d`` random orthonormal directions, ``step`` apart.

    Args:
        x0: the centre (an input, pixel space).
        d: slice dimension (>= 1).
        n: points per axis (>= 3).
        step: pixel-space length of one step (> 0).
        generator: torch generator for the directions.
    """
    _check_grid_args(d, n)
    if not step > 0:
        raise ParameterError(f"step={step!r} must be positive")
    dim = x0.numel()
    if d > dim:
        raise ParameterError(f"d={d} exceeds the input dimension {dim}")
    dirs = _orthonormal(None, d, dim, generator) * float(step)
    c = (n - 1) // 2
    k = torch.arange(n, dtype=torch.float32) - c
    return Grid(origin=x0.detach().float().cpu(), directions=dirs.float(),
                coords=torch.stack([k] * d), step=float(step), anchors=None)


def grid_losses(model: nn.Module, grid: Grid, cls: int, batch_size: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The cross-entropy of class ``cls`` and the predicted class at every grid point.

    Batched under ``torch.inference_mode`` and the machine's speed plan
    (:func:`mcutils.core.runtime.prepare`; ``batch_size=None``: the plan's batch size); the
    model's mode, device and weight layout are left as they were (inputs go to the
    model's device).

    Returns:
        ``(loss, label)``: float64 and int64 arrays of shape ``grid.shape``.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ParameterError(f"batch_size={batch_size!r} must be >= 1")
    total = int(np.prod(grid.shape))
    losses, labels = [], []
    with planned_inference(model, grid.points(0, 2), batch_size) as plan:
        bs = plan.batch_size
        for start in range(0, total, bs):
            logits = model(plan.input(grid.points(start, start + bs))).float()
            losses.append((torch.logsumexp(logits, 1) - logits[:, cls]).cpu())
            labels.append(logits.argmax(1).cpu())
    loss = torch.cat(losses).double().numpy().reshape(grid.shape)
    return loss, torch.cat(labels).numpy().reshape(grid.shape)


def label_grid(model: nn.Module, grid: Grid, batch_size: int | None = None) -> np.ndarray:
    """The model's predicted class at every grid point (mode and device left unchanged).

    Returns:
        int64 array of shape ``grid.shape``.
    """
    return grid_losses(model, grid, 0, batch_size)[1]


def same_class_pairs(model: nn.Module | None, x: torch.Tensor, y: torch.Tensor, num_pairs: int,
                     seed: int = 0, batch_size: int | None = None, pred: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of inputs with the same label that ``model`` classifies correctly.

    Both inputs of a pair lie in the model's region of their class. Pairs are spread
    over the classes round-robin (classes with fewer than two correct inputs are
    skipped), drawn with :func:`mcutils.data.loading.class_pairs`. The model's mode and device
    are left unchanged.

    Args:
        model: the classifier (unused when ``pred`` is given).
        x, y: inputs and labels.
        num_pairs: pairs wanted.
        seed: seed of the draw.
        batch_size: forward batch size (``None``: the machine's speed plan's).
        pred: the model's predicted classes on ``x``, if already known.

    Returns:
        ``(i, j)``: index tensors into ``x`` of length ``<= num_pairs``.
    """
    from mcutils.data import class_pairs

    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ParameterError(f"num_pairs={num_pairs!r} must be an integer >= 1")
    if pred is None:
        pred = predict(model, x, batch_size).argmax(1)
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


def _per_dim(values: int | Sequence[int], dims: Sequence[int], name: str) -> list[int]:
    if isinstance(values, (int, np.integer)):
        return [int(values)] * len(dims)
    values = [int(v) for v in values]
    if len(values) != len(dims) or any(v < 0 for v in values):
        raise ParameterError(f"{name}={values!r} needs one count >= 0 per dimension {list(dims)}")
    return values


def slice_study(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dims: Sequence[int],
                anchored: int | Sequence[int], unanchored: int | Sequence[int] = 0,
                n: int = 9, margin: int = 2, seed: int = 0, batch_size: int | None = None,
                keep_fields_up_to: int = 2, progress: bool = False) -> pd.DataFrame:
    """Anchored and unanchored slices of one model's input space, and their onsets.

    Anchored slices pass through same-class pairs that the model classifies correctly
    (:func:`same_class_pairs`; pair ``k`` is used for every ``d``, with directions drawn
    for each); unanchored slices are centred on correctly classified inputs with the
    median step of the anchored slices, so both kinds share one fixed spacing. The class
    of a slice is its anchors' (or centre's) label. Each slice is evaluated once; its
    loss field gives the onsets of :func:`mcutils.percolation.onsets`.

    Args:
        model: the classifier (mode and device left unchanged).
        x, y: inputs (pixel space) and labels.
        dims: slice dimensions.
        anchored: anchored slices per dimension (one count, or one per ``d``).
        unanchored: unanchored slices per dimension.
        n, margin: grid size and margin (see :func:`anchored_grid`).
        seed: seeds the pairs, the centres and the directions.
        batch_size: forward batch size (``None``: the machine's speed plan's).
        keep_fields_up_to: keep the loss and label fields of slices with ``d`` up to this
            in ``attrs["fields"]`` (for figures).
        progress: tqdm bar over slices.

    Returns:
        DataFrame, one row per slice: ``kind`` (``anchored``/``random``), ``d``, ``unit``
        (pair or centre number), ``cls``, ``step``, ``p_conn``, ``p_in``, ``p_span``,
        ``rho`` (lag-1 correlation of the loss field, :func:`~mcutils.percolation.lag_correlation`),
        ``class_frac`` (fraction of points predicted as ``cls``) and ``line_in_class``
        (anchored: every point between the anchors on axis 0 is predicted as ``cls``).
    """
    dims = [int(d) for d in dims]
    n_anch = _per_dim(anchored, dims, "anchored")
    n_rand = _per_dim(unanchored, dims, "unanchored")
    if max(n_anch, default=0) + max(n_rand, default=0) == 0:
        raise ParameterError("no slices asked for")
    pred = predict(model, x, batch_size).argmax(1)
    i_idx, j_idx = same_class_pairs(model, x, y, max(max(n_anch, default=0), 1), seed,
                                    batch_size, pred=pred)
    if len(i_idx) == 0:
        raise ParameterError("the model classifies no two inputs of one class correctly")
    steps = torch.stack([(x[j] - x[i]).flatten().norm() for i, j in zip(i_idx, j_idx)])
    fixed_step = float(steps.median()) / (n - 1 - 2 * margin)
    correct = (pred == y).nonzero().flatten()
    centres = correct[torch.randperm(len(correct), generator=torch.Generator().manual_seed(
        seed))[:max(n_rand, default=0)]]
    jobs = [("anchored", d, k) for d, c in zip(dims, n_anch) for k in range(min(c, len(i_idx)))]
    jobs += [("random", d, k) for d, c in zip(dims, n_rand) for k in range(min(c, len(centres)))]
    if progress:
        from tqdm.auto import tqdm
        jobs = tqdm(jobs, desc="slices", leave=False)
    rows, kept = [], {}
    for kind, d, k in jobs:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k * 101 + d * 7
                                            + (kind == "random"))
        if kind == "anchored":
            a, b = x[i_idx[k]], x[j_idx[k]]
            cls = int(y[i_idx[k]])
            grid = anchored_grid(a, b, d, n, margin, gen)
        else:
            cls = int(y[centres[k]])
            grid = random_grid(x[centres[k]], d, n, fixed_step, gen)
        loss, label = grid_losses(model, grid, cls, batch_size)
        on = onsets(loss[None], grid.anchors, span=True, rng=seed + k)
        line = np.nan
        if grid.anchors is not None:
            a_cell, b_cell = grid.anchors
            line = float(np.all(label[(slice(a_cell[0], b_cell[0] + 1),) + a_cell[1:]] == cls))
        rows.append({"kind": kind, "d": d, "unit": k, "cls": cls, "step": grid.step,
                         "p_conn": on["p_conn"][0], "p_in": on["p_in"][0], "p_span": on["p_span"][0],
                         "rho": float(lag_correlation(loss[None])[0]),
                         "class_frac": float(np.mean(label == cls)), "line_in_class": line})
        if d <= keep_fields_up_to:
            kept[(kind, d, k)] = {"loss": loss, "label": label, "anchors": grid.anchors, "cls": cls}
    df = pd.DataFrame(rows)
    df.attrs["fields"] = kept
    df.attrs["step"] = fixed_step
    return df


def matched_lengths(slices: Mapping[str, pd.DataFrame], n: int = 9, seed: int = 0
                    ) -> dict[tuple[str, str, int], dict[str, float]]:
    """The correlation length of a Gaussian random field matched to each model's slices.

    For every model, kind and ``d``, the mean lag-1 correlation of the slices' loss
    fields (column ``rho``) is matched on the identical grid with
    :func:`mcutils.percolation.match_correlation_length`.

    Args:
        slices: model name -> :func:`slice_study` table.
        n: grid points per axis.
        seed: seed of the matching noise.

    Returns:
        ``(model, kind, d) -> {"rho": mean correlation, "ell": length in grid steps}``.
    """
    out = {}
    for name, df in slices.items():
        for (kind, d), part in df.groupby(["kind", "d"]):
            rho = float(part["rho"].mean())
            ell = match_correlation_length(rho, (n,) * int(d), rng=[seed, int(d)])
            out[(name, str(kind), int(d))] = {"rho": rho, "ell": ell}
    return out


def null_study(dims: Sequence[int], count: int | Sequence[int], n: int = 9, margin: int = 2,
               lengths: Mapping[tuple[str, str, int], Mapping[str, float]] | None = None,
               span_dims: Sequence[int] | None = None, seed: int = 0) -> pd.DataFrame:
    """Onsets of the null models on the grids of :func:`anchored_grid` (same shape, anchors).

    * ``independent``: i.i.d. site values; anchor connection and spanning;
    * ``convex``: a ball centred uniformly on the segment between the anchors (anchor
      connection) or in the grid's box (spanning);
    * ``correlated:<model>``: Gaussian random fields with the length matched to that
      model's anchored slices (anchor connection) or random slices (spanning), from
      ``lengths`` (:func:`matched_lengths`).

    Args:
        dims: grid dimensions.
        count: null fields per null and dimension (one count or one per ``d``).
        n, margin: as in :func:`anchored_grid`.
        lengths: matched correlation lengths; without them no correlated null is run.
        span_dims: dimensions for which spanning onsets are computed (default: all).
        seed: seed of the fields.

    Returns:
        DataFrame, one row per field: ``null``, ``d``, ``unit``, ``p_conn``, ``p_in``,
        ``p_span`` (NaN where not computed) and ``ell`` (correlated nulls).
    """
    dims = [int(d) for d in dims]
    counts = _per_dim(count, dims, "count")
    span_dims = set(dims if span_dims is None else [int(d) for d in span_dims])
    c = (n - 1) // 2
    rows = []

    def add(name, d, on, ell=np.nan):
        for u in range(len(on["p_conn"])):
            rows.append({"null": name, "d": d, "unit": u, "p_conn": on["p_conn"][u], "p_in": on["p_in"][u],
                             "p_span": on["p_span"][u], "ell": ell})

    for d, cnt in zip(dims, counts):
        if cnt < 1:
            continue
        shape = (n,) * d
        anchors = ((margin,) + (c,) * (d - 1), (n - 1 - margin,) + (c,) * (d - 1))
        span = d in span_dims
        rng = np.random.default_rng([seed, d])
        add("independent", d, onsets(null_fields("independent", shape, cnt, rng), anchors,
                                     span=span, rng=rng))
        add("convex", d, onsets(null_fields("convex", shape, cnt, rng, centre=anchors), anchors,
                                span=False, rng=rng))
        if span:
            add("convex", d, onsets(null_fields("convex", shape, cnt, rng, centre="box"), None,
                                    span=True, rng=rng))
        for (name, kind, dd), v in sorted((lengths or {}).items()):
            if dd != d or (kind == "random" and not span):
                continue
            fields = null_fields("correlated", shape, cnt, rng, ell=v["ell"])
            on = onsets(fields, anchors if kind == "anchored" else None,
                        span=kind == "random", rng=rng)
            add(f"correlated:{name}", d, on, v["ell"])
    return pd.DataFrame(rows)


def onset_intervals(df: pd.DataFrame, by: str, value: str = "p_conn", seed: int = 0,
                    n_boot: int = 2000) -> dict[str, dict[int, dict]]:
    """Median onset per group and ``d`` with a bootstrap interval over units (slices or
    null fields): ``{group: {d: {"estimate", "ci", "n"}}}``. Rows with NaN are left out."""
    out: dict[str, dict[int, dict]] = {}
    for (g, d), part in df.dropna(subset=[value]).groupby([by, "d"]):
        vals = part[value].to_numpy(float)
        reps = _boot_medians(vals, n_boot, np.random.default_rng(seed))
        lo, hi = np.quantile(reps, [0.025, 0.975])
        out.setdefault(str(g), {})[int(d)] = interval(np.median(vals), lo, hi, len(vals))
    return out


def _boot_medians(vals: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples of ``vals``, drawn at once (the same percentile
    bootstrap as :func:`mcutils.core.stats.bootstrap_ci` with ``np.median``, vectorised:
    that function calls the statistic once per resample, which dominated the
    chapter's run time for thousands of small groups)."""
    idx = rng.integers(0, len(vals), size=(n_boot, len(vals)))
    return np.median(vals[idx], axis=1)


def joined_when_inside(df: pd.DataFrame) -> np.ndarray:
    """Per row: 1 if the anchors are joined by the level at which both are inside
    (``p_conn <= p_in``, the convex-set signature), 0 if not, NaN without anchors."""
    conn, inside = df["p_conn"].to_numpy(float), df["p_in"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        flag = (conn <= inside).astype(float)
    return np.where(np.isnan(conn) | np.isnan(inside), np.nan, flag)


def fraction_intervals(df: pd.DataFrame, by: str, flag: np.ndarray | pd.Series, seed: int = 0
                       ) -> dict[str, dict[int, dict]]:
    """Mean of a 0/1 ``flag`` per group and ``d`` with an exact (Clopper-Pearson)
    interval over units, the slices or fields of one group and ``d`` being independent
    (rows whose flag is NaN are left out; ``seed`` is kept for callers and unused)."""
    tmp = df.assign(_flag=np.asarray(flag, float)).dropna(subset=["_flag"])
    out: dict[str, dict[int, dict]] = {}
    for (g, d), part in tmp.groupby([by, "d"]):
        out.setdefault(str(g), {})[int(d)] = fraction_interval(part["_flag"].to_numpy() > 0.5)
    return out


def match_nulls(model_df: pd.DataFrame, null_df: pd.DataFrame, nulls: Mapping[str, str],
                value: str = "p_conn", dims: Sequence[int] | None = None, seed: int = 0,
                n_boot: int = 1000, floor: float = 1e-3, min_units: int = 1) -> dict:
    """Which null the model's onsets follow across dimensions.

    For each null, the distance is the mean over ``d`` of ``|log(m_d / z_d)|``, with
    ``m_d`` and ``z_d`` the median onsets of the model's slices and of the null's fields
    (both floored at ``floor`` so a zero onset stays finite). Its interval resamples the
    slices and the null fields of every ``d`` independently. The best match is the null
    with the smallest distance; it is *separated* when its interval lies wholly below
    every other null's.

    Args:
        model_df: one model's rows of :func:`slice_study` (one kind).
        null_df: :func:`null_study` rows.
        nulls: label -> null name in ``null_df`` (e.g. ``{"independent": "independent",
            "correlated": "correlated:trained", "convex": "convex"}``).
        value: onset column.
        dims: dimensions to use (default: those present in both).
        seed, n_boot: bootstrap settings.
        floor: lower bound of onsets in the log ratio.
        min_units: dimensions with fewer model slices than this are left out (a median
            over two or three slices would dominate the mean with its noise).

    Returns:
        dict with ``distance`` (label -> interval), ``ratio`` (label -> {d: model / null
        median onsets}), ``best`` (label), ``separated`` (bool) and ``dims``.
    """
    rng = np.random.default_rng(seed)
    m = model_df.dropna(subset=[value])
    counts = m["d"].value_counts()
    have = {int(d) for d in counts.index if counts[d] >= min_units}
    for name in nulls.values():
        have &= set(null_df.loc[(null_df["null"] == name) & null_df[value].notna(), "d"])
    dims = sorted(have if dims is None else {int(d) for d in dims} & have)
    if not dims:
        raise ParameterError("the model and the nulls share no dimension with onsets")
    mv = {d: m.loc[m["d"] == d, value].to_numpy(float) for d in dims}
    dist, ratio = {}, {}
    for label, name in nulls.items():
        z = null_df[(null_df["null"] == name) & null_df[value].notna()]
        zv = {d: z.loc[z["d"] == d, value].to_numpy(float) for d in dims}

        est = float(np.mean([abs(np.log(max(np.median(mv[d]), floor)
                                        / max(np.median(zv[d]), floor))) for d in dims]))
        reps = np.mean([np.abs(np.log(np.maximum(_boot_medians(mv[d], n_boot, rng), floor)
                                      / np.maximum(_boot_medians(zv[d], n_boot, rng), floor)))
                        for d in dims], axis=0)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        dist[label] = interval(est, lo, hi, sum(len(v) for v in mv.values()))
        ratio[label] = {d: float(max(np.median(mv[d]), floor) / max(np.median(zv[d]), floor))
                        for d in dims}
    best = min(dist, key=lambda k: dist[k]["estimate"])
    separated = all(dist[best]["ci"][1] < dist[k]["ci"][0] for k in dist if k != best)
    return {"distance": dist, "ratio": ratio, "best": best, "separated": bool(separated), "dims": dims}


def plane_predictions(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor,
                      n: int = 61, margin: float = 2.0, batch_size: int | None = None) -> dict:
    """Predicted classes on the plane ``x1 + a (x2 - x1) + b (x3 - x1)``.

    Args:
        x1, x2, x3: three inputs of one shape.
        n: points per axis; ``a`` and ``b`` run from ``-margin`` to ``1 + margin``.
        margin: extent beyond the triangle of the three inputs.
        batch_size: forward batch size (``None``: the machine's speed plan's; mode,
            device and layout of the model left unchanged).

    Returns:
        dict with ``labels`` (``[n, n]``, row = ``b``, column = ``a``), ``coords`` (the
        values of ``a`` and ``b``), ``anchors`` (the three inputs' ``(a, b)``) and
        ``cells`` (their nearest grid cells as ``(row, column)``).
    """
    if n < 2:
        raise ParameterError(f"n={n!r} must be >= 2")
    coords = torch.linspace(-margin, 1 + margin, n)
    bb, aa = torch.meshgrid(coords, coords, indexing="ij")
    u = (x2 - x1).flatten().float()
    w = (x3 - x1).flatten().float()
    base = x1.flatten().float()
    ab = torch.stack([aa.flatten(), bb.flatten()], 1)
    out = []
    with planned_inference(model, x1.unsqueeze(0), batch_size) as plan:
        for s in range(0, len(ab), plan.batch_size):
            c = ab[s:s + plan.batch_size]
            pts = (base + c[:, :1] * u + c[:, 1:] * w).view(-1, *x1.shape)
            out.append(model(plan.input(pts)).argmax(1).cpu())
    labels = torch.cat(out).numpy().reshape(n, n)
    anchors = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    cvals = coords.numpy()
    cells = [(int(np.abs(cvals - b).argmin()), int(np.abs(cvals - a).argmin())) for a, b in anchors]
    return {"labels": labels, "coords": cvals, "anchors": anchors, "cells": cells}


def same_patch(labels: np.ndarray, cls: int, cells: Sequence[Sequence[int]]) -> bool:
    """Whether all ``cells`` are labelled ``cls`` and lie in one nearest-neighbour cluster
    of the ``cls`` cells."""
    mask = np.asarray(labels) == cls
    cells = [tuple(int(v) for v in c) for c in cells]
    if not all(mask[c] for c in cells):
        return False
    lab, _ = ndimage.label(mask)
    return len({int(lab[c]) for c in cells}) == 1


def trio_study(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_trios: int,
               n: int = 61, margin: float = 2.0, seed: int = 0, batch_size: int | None = None
               ) -> tuple[pd.DataFrame, list[dict]]:
    """Planes through three correctly classified inputs of one class: one patch or not?

    Trios are drawn round-robin over the classes (three distinct correctly classified
    inputs each); for each, :func:`plane_predictions` and :func:`same_patch`.

    Returns:
        ``(table, planes)``: a DataFrame with ``trio``, ``cls``, ``indices``,
        ``connected`` (the three lie in one patch of their class) and ``class_frac``
        (fraction of the plane in their class), and the planes' dicts.
    """
    if isinstance(num_trios, bool) or not isinstance(num_trios, int) or num_trios < 1:
        raise ParameterError(f"num_trios={num_trios!r} must be an integer >= 1")
    pred = predict(model, x, batch_size).argmax(1)
    gen = torch.Generator().manual_seed(seed)
    by_class = {}
    for c in torch.unique(y).tolist():
        idx = ((pred == y) & (y == c)).nonzero().flatten()
        if len(idx) >= 3:
            by_class[c] = idx[torch.randperm(len(idx), generator=gen)]
    if not by_class:
        raise ParameterError("no class has three correctly classified inputs")
    classes = sorted(by_class)
    rows, planes = [], []
    for t in range(num_trios):
        c = classes[t % len(classes)]
        r = t // len(classes)
        pool = by_class[c]
        if 3 * r + 3 > len(pool):
            continue
        trio = pool[3 * r:3 * r + 3].tolist()
        plane = plane_predictions(model, *(x[k] for k in trio), n=n, margin=margin,
                                  batch_size=batch_size)
        rows.append({"trio": t, "cls": c, "indices": trio,
                         "connected": same_patch(plane["labels"], c, plane["cells"]),
                         "class_frac": float(np.mean(plane["labels"] == c))})
        planes.append(plane)
    return pd.DataFrame(rows), planes
