"""Robustness along a weight-space path between a regular and a robust model.

Chapter 06's orchestration (tested at tiny sizes in ``tests/test_ch06_robust_path.py``), after
Zhao et al.'s evasion-attack study: a curve trained on the standard loss joins a
regular model (``t = 0``) and an adversarially trained one (``t = 1``); along it the
PGD robustness loss and the largest eigenvalue of the input Hessian are measured.

* :func:`profile_curve` evaluates one curve on a grid of ``t``: per input (robustness
  loss, clean loss, top input-Hessian eigenvalue, input-gradient norm) and per point
  (their means, accuracies, the weight norm ``||w(t)||`` and, optionally, the paper's
  batch-level Hessian quantity), with BatchNorm statistics recomputed at each ``t``;
* :func:`path_study` trains one curve per seed (curve seed = attack seed) and profiles it;
* the analysis functions turn the tables into the book's intervals: barrier heights
  (:func:`barrier_interval`), per-input correlations at fixed ``t``
  (:func:`per_sample_correlations`), the comparison with controls that share the path's
  trend (:func:`control_comparison`), peak coincidence (:func:`peak_coincidence`),
  the along-path correlation kept as a description (:func:`along_path_correlation`)
  and the share of inputs within the second-order bound (:func:`bound_share`);
* :func:`claims` assembles the chapter's claims (statement, paper value, interval,
  threshold, direction) so that their negative controls are unit tests.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats as _sps
from torch import nn
from tqdm.auto import tqdm

from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device, prepare, prepared

if TYPE_CHECKING:
    from mcutils.curves import CurveModel
    from mcutils.data import ImageDataset

__all__ = [
    "CONTROLS",
    "THRESHOLDS",
    "accuracy_interval",
    "along_path_correlation",
    "barrier_heights",
    "barrier_interval",
    "bound_share",
    "claims",
    "control_comparison",
    "path_study",
    "peak_coincidence",
    "per_sample_correlation",
    "per_sample_correlations",
    "profile_curve",
    "weight_norm",
]

THRESHOLDS = {
    "standard_tol": 0.1,
    "robust_accuracy": 0.5,
    "barrier_margin": 0.1,
    "correlation": 0.5,
    "bound_share": 0.95,
    "along_path": 0.5,
}
"""The chapter's claim thresholds, fixed before any run: a standard-loss "barrier" of at
most 10% of the worse end counts as none; the robust end must keep half of its inputs
under attack; a robustness-loss barrier must rise at least 10% above the worse end; a
"high" correlation is at least 0.5; the bound must hold on 95% of inputs. The peak
tolerance is one step of the grid (set by :func:`claims`)."""

CONTROLS = ("loss", "grad_norm", "weight_norm")
"""Quantities that share the path's trend; the eigenvalue must track the robustness
loss better than each of them (``weight_norm`` exists per point only)."""


def weight_norm(curve: CurveModel, t: float) -> float:
    """``||w(t)||_2`` over all parameters of the curve at ``t`` (as the papers' L2 penalty)."""
    with torch.no_grad():
        return float(torch.sqrt(sum((w.double() ** 2).sum() for w in curve.weights(float(t)).values())))


def _batched_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _check_grid(ts: Sequence[float] | int, sample_ts: Sequence[float]
                ) -> tuple[list[float], list[float]]:
    """The grid (an int ``n``: ``n`` equally spaced points) rounded to 10 decimals, and
    ``sample_ts`` snapped to its points."""
    if isinstance(ts, int) and not isinstance(ts, bool):
        ts = np.linspace(0.0, 1.0, ts).tolist() if ts >= 3 else [0.0]
    grid = [round(float(t), 10) for t in ts]
    if len(grid) < 3 or any(not 0.0 <= t <= 1.0 for t in grid) or grid != sorted(set(grid)):
        raise ParameterError(f"ts={grid} must be >= 3 increasing values in [0, 1]")
    picked, missing = [], []
    for t in sample_ts:
        near = [g for g in grid if abs(float(t) - g) < 1e-6]
        (picked if near else missing).append(near[0] if near else float(t))
    if missing:
        raise ParameterError(f"sample_ts {missing} are not points of the grid ts={grid}")
    return grid, picked


def check_settings(num_ts: int, sample_ts: Sequence[float], eval_size: int, path_size: int,
                   paper_batch: int | None = None) -> list[float]:
    """Check the chapter's grid and sizes before any training; return the grid.

    Raises :class:`~mcutils.core.checks.ParameterError` naming every problem: ``sample_ts`` not on the grid of
    ``num_ts`` equally spaced points, ``path_size > eval_size``, ``paper_batch >
    path_size``.
    """
    problems = []
    grid: list[float] = []
    try:
        grid, _ = _check_grid(int(num_ts), sample_ts)
    except ParameterError as exc:
        problems.append(str(exc))
    if path_size > eval_size:
        problems.append(f"path_size={path_size} must be <= eval_size={eval_size}")
    if paper_batch is not None and paper_batch > path_size:
        problems.append(f"paper_batch={paper_batch} must be <= path_size={path_size} (the "
                        "paper's code skips incomplete batches)")
    if problems:
        raise ParameterError("invalid parameters:\n  " + "\n  ".join(problems))
    return grid


def profile_curve(curve: CurveModel, ts: Sequence[float] | int, x: torch.Tensor, y: torch.Tensor,
                  eps: float, attack_steps: int = 10, step_size: float | None = None,
                  sample_ts: Sequence[float] = (), path_size: int | None = None,
                  bn_loader: Iterable | None = None, attack_seed: int = 0,
                  batch_size: int = 128, paper_batch: int | None = None,
                  paper_iters: int = 10, paper_tol: float = 1e-2,
                  bound_eps_l2: Sequence[float] = (), progress: bool = False,
                  channels_last: bool | None = None) -> dict[str, pd.DataFrame]:
    """Robustness loss, curvature and controls at each ``t`` of a curve.

    At every ``t`` the plain model ``w(t)`` is exported with
    :meth:`~mcutils.curves.CurveModel.model_at`, its BatchNorm statistics recomputed on
    ``bn_loader`` (required for models with BatchNorm, as in the paper's
    ``utils.update_bn``). Per input: the cross-entropy at an L-inf PGD example
    (:func:`mcutils.attacks.pgd`, random start seeded by ``attack_seed``, the same at
    every ``t``), the clean cross-entropy, the top input-Hessian eigenvalue and the
    input-gradient norm (:func:`mcutils.hessian.closed_form_curvature`, exact for
    piecewise-linear networks), and the second-order bound of the L-inf ball
    (:func:`mcutils.hessian.robust_loss_bound`'s formula) next to the robustness loss.

    Inputs: the first ``path_size`` rows of ``x`` at every ``t`` (the per-point means
    use exactly these), all rows at the ``t`` in ``sample_ts`` (the per-input
    correlations).

    Args:
        curve: a trained :class:`~mcutils.curves.CurveModel`.
        ts: the grid (increasing, in [0, 1]; include 0 and 1 for barriers), or an
            integer ``n`` for ``n`` equally spaced points (the papers' ``linspace``).
        x, y: evaluation inputs in pixel space and labels.
        eps: L-inf radius of the attack (pixel units).
        attack_steps, step_size: PGD settings (default step ``2.5 eps / steps``: the
            paper's 2/255 for 8/255 and 10 steps).
        sample_ts: points of ``ts`` evaluated on all inputs.
        path_size: inputs at the other points (default: all).
        bn_loader: training batches for BatchNorm statistics.
        attack_seed: seed of PGD's random start.
        batch_size: inputs per batch.
        paper_batch: if set, also the paper's batch-level quantity
            (:func:`mcutils.hessian.paper_input_eigenvalue` with batches of this size,
            ``paper_iters``, ``paper_tol``) on the ``path_size`` inputs.
        bound_eps_l2: L2 radii at which the second-order bound is also checked, at the
            ``sample_ts`` on the ``path_size`` inputs (one L2 PGD attack each).
        progress: show a tqdm bar over ``ts``.
        channels_last: memory format of the exported model and the inputs for the
            attacks and curvature (default: the machine's training plan for the
            architecture at ``batch_size``, :func:`mcutils.core.runtime.prepare`: these are
            forward and backward passes, like a training step). The format changes
            results at float rounding only; a signed PGD step can turn on a gradient
            component that rounds to the other side of zero.

    Returns:
        ``{"samples": per input and t, "path": per t, "bound": per input, t and ball}``.
    """
    from mcutils import attacks, hessian
    from mcutils.curves import has_batchnorm

    grid, picked = _check_grid(ts, sample_ts)
    if len(x) != len(y) or len(x) < 2:
        raise ParameterError("x and y must hold the same number (>= 2) of inputs")
    n_path = len(x) if path_size is None else int(path_size)
    if not 2 <= n_path <= len(x):
        raise ParameterError(f"path_size={path_size} must lie in [2, {len(x)}]")
    if paper_batch is not None and not 1 <= paper_batch <= n_path:
        raise ParameterError(f"paper_batch={paper_batch} must lie in [1, path_size={n_path}]")
    if not eps > 0 or any(not e > 0 for e in bound_eps_l2):
        raise ParameterError(f"radii must be > 0 (eps={eps}, bound_eps_l2={list(bound_eps_l2)})")
    if has_batchnorm(curve.net) and bn_loader is None:
        raise ParameterError("the model has BatchNorm: pass bn_loader (training batches) so "
                             "that its statistics are recomputed at each t")
    dim = x[0].numel()
    samples, points, bounds = [], [], []
    for t in tqdm(grid, desc="along the curve", disable=not progress, leave=False):
        model = curve.model_at(t, bn_loader) if bn_loader is not None else curve.model_at(t)
        model.eval()
        dev = model_device(model)
        full = any(abs(t - s) < 1e-9 for s in picked)
        n = len(x) if full else n_path
        plan = prepare(model, x[:min(batch_size, n)], dev, channels_last=channels_last,
                       purpose="train")
        with prepared(model, plan):
            xs, ys = plan.input(x[:n]), y[:n].to(dev)
            curv = hessian.closed_form_curvature(model, xs, ys, batch_size=batch_size)
            clean = _batched_logits(model, xs, batch_size)
            adv = attacks.pgd(model, xs, ys, eps=eps, steps=attack_steps, step_size=step_size,
                              norm="linf", generator=torch.Generator().manual_seed(attack_seed),
                              batch_size=batch_size)
            adv_logits = _batched_logits(model, adv, batch_size)
            robust = F.cross_entropy(adv_logits, ys, reduction="none").cpu().double()
            lam = curv["top_eig"].double()
            table = pd.DataFrame({
                "t": t, "input": np.arange(n),
                "robust_loss": robust.numpy(),
                "robust_correct": (adv_logits.argmax(1) == ys).cpu().numpy(),
                "loss": curv["loss"].double().numpy(),
                "correct": (clean.argmax(1) == ys).cpu().numpy(),
                "top_eig": lam.numpy(),
                "grad_norm": curv["grad_l2"].double().numpy(),
                "bound_linf": (curv["loss"].double() + eps * curv["grad_l1"].double()
                               + 0.5 * eps ** 2 * dim * lam).numpy(),
            })
            samples.append(table)
            head = table.iloc[:n_path]
            row: dict[str, Any] = {
                "t": t, "weight_norm": weight_norm(curve, t),
                "loss": head["loss"].mean(), "accuracy": head["correct"].mean(),
                "robust_loss": head["robust_loss"].mean(),
                "robust_accuracy": head["robust_correct"].mean(),
                "top_eig": head["top_eig"].mean(), "grad_norm": head["grad_norm"].mean(),
            }
            if paper_batch is not None:
                val, info = hessian.paper_input_eigenvalue(
                    model, xs[:n_path], ys[:n_path], batch_size=paper_batch, iters=paper_iters,
                    tol=paper_tol, generator=torch.Generator().manual_seed(attack_seed),
                    return_info=True)
                row.update(paper_eig=val, paper_iterations=info["iterations"])
            points.append(row)
            bounds.append(pd.DataFrame({"t": t, "norm": "linf", "eps": eps, "input": np.arange(n),
                                        "robust_loss": table["robust_loss"],
                                        "bound": table["bound_linf"]}))
            if full:
                for radius in bound_eps_l2:
                    sub = {k: v[:n_path] for k, v in curv.items()}
                    res = hessian.robust_loss_bound(
                        model, xs[:n_path], ys[:n_path], eps=float(radius), norm="l2",
                        pgd_steps=attack_steps, seed=attack_seed, batch_size=batch_size,
                        curvature=sub)
                    bounds.append(pd.DataFrame({"t": t, "norm": "l2", "eps": float(radius),
                                                "input": np.arange(n_path),
                                                "robust_loss": res["robust_loss"].numpy(),
                                                "bound": res["bound"].numpy()}))
    return {"samples": pd.concat(samples, ignore_index=True),
            "path": pd.DataFrame(points),
            "bound": pd.concat(bounds, ignore_index=True)}


def path_study(regular: nn.Module, robust: nn.Module, train_set: ImageDataset,
               x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
               ts: Sequence[float] | int,
               eps: float, curve_steps: int, curve_lr: float = 0.05,
               curve_weight_decay: float = 1e-4, curve_schedule: str | None = "cosine",
               batch_size: int = 128, bn_size: int = 2000, device: str = "cpu",
               bound_seeds: int = 1, bound_eps_l2: Sequence[float] = (),
               progress: bool = True, **profile_kwargs: Any) -> dict[str, pd.DataFrame]:
    """Train one curve per seed between ``regular`` and ``robust`` and profile each.

    The curve is a quadratic Bezier curve with fixed ends, its bend initialised on the
    segment and trained on ``train_set`` with SGD (momentum 0.9), one ``t ~ U[0, 1]``
    per batch, standard cross-entropy plus ``curve_weight_decay / 2 * ||w(t)||^2`` (the
    paper's ``l2_regularizer`` with ``wd = 1e-4``), cached by
    :func:`mcutils.repair.cached_curve`. Seed ``s`` seeds the curve's batches and ``t``
    draws and the attack's random start.

    Args:
        regular, robust: the two ends (same architecture).
        train_set: the curve's training data; its first ``bn_size`` images also serve
            for the BatchNorm statistics.
        x, y: evaluation inputs (test split) and labels.
        seeds: one curve (and attack) per seed.
        ts: the grid of :func:`profile_curve`.
        eps: L-inf attack radius.
        curve_steps, curve_lr, curve_weight_decay, curve_schedule: curve training.
        batch_size: training and evaluation batch size.
        bn_size: images for BatchNorm statistics.
        device: where to train and evaluate.
        bound_seeds: the L2 bound check runs for the first ``bound_seeds`` seeds only.
        bound_eps_l2: see :func:`profile_curve`.
        progress: show progress bars.
        **profile_kwargs: passed to :func:`profile_curve` (``sample_ts``,
            ``path_size``, ``attack_steps``, ``paper_batch`` ...).

    Returns:
        The three tables of :func:`profile_curve` with a ``seed`` column, plus
        ``"training"`` (per seed: the final curve-training loss).
    """
    from mcutils.data import TensorLoader
    from mcutils.repair import cached_curve

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ParameterError(f"seeds={seeds} must be a non-empty list of distinct integers")
    if bn_size < 1:
        raise ParameterError(f"bn_size={bn_size} must be >= 1")
    _check_grid(ts, profile_kwargs.get("sample_ts", ()))
    bn_data = train_set.subset(torch.arange(min(bn_size, len(train_set))))
    bn_loader = TensorLoader(bn_data, batch_size)
    out: dict[str, list[pd.DataFrame]] = {"samples": [], "path": [], "bound": []}
    training = []
    for i, s in enumerate(tqdm(seeds, desc="seeds", disable=not progress, leave=False)):
        curve, info = cached_curve(regular, robust, train_set, steps=curve_steps, lr=curve_lr,
                                   weight_decay=curve_weight_decay, schedule=curve_schedule,
                                   batch_size=batch_size, seed=s, device=device,
                                   progress=progress, return_info=True)
        prof = profile_curve(curve.to(device), ts, x, y, eps=eps, bn_loader=bn_loader,
                             attack_seed=s, batch_size=batch_size,
                             bound_eps_l2=bound_eps_l2 if i < bound_seeds else (),
                             progress=progress, **profile_kwargs)
        for key, table in prof.items():
            out[key].append(table.assign(seed=s))
        training.append({"seed": s, "cached": info["cached"],
                         "train_seconds": info["train_seconds"]})
    result = {k: pd.concat(v, ignore_index=True) for k, v in out.items()}
    result["training"] = pd.DataFrame(training)
    return result


# ----------------------------------------------------------------------------- analysis
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


def accuracy_interval(samples: pd.DataFrame, t: float, column: str = "robust_correct",
                      n_boot: int = 2000, seed: int = 0) -> stats.Interval:
    """Accuracy (or robust accuracy) at ``t``, averaged over seeds, bootstrapped over inputs."""
    m = _matrix(samples, column, [t])
    if m.size == 0:
        raise ParameterError(f"no per-input {column!r} at t={t}")
    return stats.bootstrap_ci(m, lambda z: float(z.mean()), n_boot=n_boot, seed=seed)


def claims(study: Mapping[str, pd.DataFrame], sample_ts: Sequence[float], eps: float,
           thresholds: Mapping[str, float] | None = None, n_boot: int = 2000,
           seed: int = 0) -> list[dict[str, Any]]:
    """The chapter's claims, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    Args:
        study: :func:`path_study`'s tables.
        sample_ts: the ``t`` of the per-input correlations.
        eps: the attack radius (for the bound rows).
        thresholds: overrides of :data:`THRESHOLDS` (``standard_tol``,
            ``robust_accuracy``, ``barrier_margin``, ``correlation``, ``bound_share``,
            ``along_path``) and ``peak_distance`` (default: the largest step of the grid).
        n_boot, seed: bootstrap settings.

    Returns:
        A list of dicts with ``claim_id, statement, paper, result, threshold, direction``.
    """
    samples, path, bound = study["samples"], study["path"], study["bound"]
    grid = np.unique(path["t"].to_numpy(float))
    th = {**THRESHOLDS, "peak_distance": float(np.diff(grid).max()), **(thresholds or {})}
    unknown = set(th) - set(THRESHOLDS) - {"peak_distance"}
    if unknown:
        raise ParameterError(f"unknown thresholds {sorted(unknown)}; valid: "
                             f"{sorted([*THRESHOLDS, 'peak_distance'])}")
    controls = control_comparison(samples, path, sample_ts)
    worst = min(controls, key=lambda c: controls[c]["path"]["estimate"])
    per_image = {c: v["per_sample"] for c, v in controls.items() if v["per_sample"] is not None}
    worst_image = min(per_image, key=lambda c: per_image[c]["estimate"])
    peak = peak_coincidence(path)
    rows = [
        ("standard_no_barrier",
         ("precondition: no standard-loss barrier on the path (largest clean test loss "
         "inside the path minus the worse end, relative to it; t-interval over seeds)"),
         "no standard-loss barrier on any of its paths (Fig. 4, CIFAR-10 VGG)",
         barrier_interval(path, "loss", relative=True), th["standard_tol"], "<="),
        ("robust_end",
         ("the adversarially trained end is robust: its PGD robust accuracy (bootstrap over "
         "test inputs, the attacks of all seeds averaged)"),
         "robust end: PGD adversarial training (the paper's setup)",
         accuracy_interval(samples, 1.0, n_boot=n_boot, seed=seed),
         th["robust_accuracy"], ">="),
        ("robust_barrier",
         ("a robustness-loss barrier: the largest PGD loss inside the path exceeds the worse "
         "end by a margin (relative to it; t-interval over seeds)"),
         "robustness-loss barrier between regular and robust models (Fig. 4)",
         barrier_interval(path, "robust_loss", relative=True), th["barrier_margin"], ">="),
        ("per_sample_correlation",
         ("per input at fixed t, the robustness loss rises with the top input-Hessian "
         "eigenvalue (Spearman, mean over the sampled t and seeds; bootstrap over inputs)"),
         "high correlation along the path (PCC, Fig. 4); per input: not tested there",
         per_sample_correlation(samples, sample_ts, n_boot=n_boot, seed=seed),
         th["correlation"], ">="),
        ("beats_controls_path",
         (f"along the path the eigenvalue tracks the robustness loss better than every "
         f"control sharing the path's trend (weakest margin: {worst}; r(eigenvalue) - "
         f"|r(control)|, t-interval over seeds)"),
         "not tested in the paper (it reports the eigenvalue's PCC only)",
         controls[worst]["path"], 0.0, ">"),
        ("beats_controls_per_input",
         (f"per input the eigenvalue ranks robustness losses better than the clean loss "
         f"and the input-gradient norm (weakest margin: {worst_image}; rho(eigenvalue) - "
         f"|rho(control)|, t-interval over seeds)"),
         "not tested in the paper",
         per_image[worst_image], 0.0, ">"),
        ("peak_coincidence",
         ("the robustness loss and the eigenvalue peak at the same t (|difference of the "
         "argmax t|; t-interval over seeds)"),
         "the eigenvalue follows the robustness-loss barrier (Fig. 4)",
         peak["distance"], th["peak_distance"], "<="),
        ("along_path_pcc",
         ("description, not a test: Pearson r of robustness loss and mean top eigenvalue "
         "over the points of the path (t-interval over seeds)"),
         "PCC in the titles of Fig. 4 (CIFAR-10 VGG)",
         along_path_correlation(path), th["along_path"], ">="),
        ("second_order_bound",
         (f"the paper's second-order bound holds on the PGD robustness loss (L-inf ball, "
         f"eps={eps:g}; share of inputs, cluster bootstrap over inputs)"),
         ("second-order bound of the robustness loss by the top eigenvalue (its theoretical "
         "justification)"),
         bound_share(bound, "linf", eps, n_boot=n_boot, seed=seed), th["bound_share"], ">="),
    ]
    keys = ("claim_id", "statement", "paper", "result", "threshold", "direction")
    return [dict(zip(keys, row, strict=True)) for row in rows]


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
