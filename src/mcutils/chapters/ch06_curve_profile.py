"""One curve of chapter 06 measured along ``t``: robustness loss, curvature and their
controls per input and per point.

* :func:`profile_curve` evaluates one curve on a grid of ``t``: per input (robustness
  loss, clean loss, top input-Hessian eigenvalue, input-gradient norm, the second-order
  bound of the L-inf ball) and per point (their means, accuracies, the weight norm and,
  optionally, the paper's batch-level Hessian quantity), with BatchNorm statistics
  recomputed at each ``t``;
* :func:`weight_norm` is ``||w(t)||`` of a curve at one ``t``.

Used by chapter 06 (through :mod:`mcutils.chapters.ch06_robust_path`, which re-exports
both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device, prepare, prepared

if TYPE_CHECKING:
    from mcutils.curves import CurveModel

__all__ = ["profile_curve", "weight_norm"]


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
                              batch_size=batch_size, channels_last=plan.channels_last)
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
                        curvature=sub, channels_last=plan.channels_last)
                    bounds.append(pd.DataFrame({"t": t, "norm": "l2", "eps": float(radius),
                                                "input": np.arange(n_path),
                                                "robust_loss": res["robust_loss"].numpy(),
                                                "bound": res["bound"].numpy()}))
    return {"samples": pd.concat(samples, ignore_index=True),
            "path": pd.DataFrame(points),
            "bound": pd.concat(bounds, ignore_index=True)}
