"""Removing barriers: bypass points in the hyperplane orthogonal to a segment, and
recursive piecewise-linear paths (:func:`connect`).

Used by chapters 01 and 03.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_nonneg as _check_nonneg
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import FrozenEval as _FrozenEval
from mcutils.core.runtime import model_device as _model_device
from mcutils.core.tensors import bview as _bview
from mcutils.core.tensors import flat_norm as _flat_norm
from mcutils.inputspace._common import DEFAULT_BATCH_SIZE, _check_pairs
from mcutils.inputspace.paths import find_barrier, interpolate, loss_profiles, segment_losses
from mcutils.inputspace.synthesis import _check_box, _Space, total_variation
from mcutils.training import MaskedAdam

__all__ = ["project_to_hyperplane", "bypass_barrier", "ConnectResult", "connect", "path_profiles",
           "path_barriers", "BYPASS_PAPER", "FREE_PAPER", "PROJECTIONS"]


def project_to_hyperplane(x: torch.Tensor, point: torch.Tensor, normal: torch.Tensor,
                          box: tuple[float | torch.Tensor, float | torch.Tensor] | None = None,
                          iters: int = 40) -> torch.Tensor:
    """Project each ``x[i]`` onto ``{z : <z - point[i], normal[i]> = 0}`` (within a box).

    Without ``box`` this is the orthogonal projection. With ``box = (lo, hi)`` it is
    the Euclidean projection onto the intersection of the hyperplane and the box,
    ``clip(x - lam * n, lo, hi)`` with ``lam`` found by bisection (the constraint is
    monotone in ``lam``); ``point`` must itself lie in the box. ``lo`` and ``hi`` may be
    numbers or tensors that broadcast against ``x`` (per-channel bounds, as a pixel box
    becomes in normalised units).

    Returns:
        The projected ``[N, ...]`` tensor.
    """
    n = normal / _bview(_flat_norm(normal).clamp_min(1e-12), normal)
    if box is None:
        dot = ((x - point) * n).flatten(1).sum(1)
        return x - _bview(dot, x) * n
    lo, hi = box

    def clip(z: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(z, torch.as_tensor(hi, dtype=z.dtype, device=z.device)),
                             torch.as_tensor(lo, dtype=z.dtype, device=z.device))

    def offset(lam: torch.Tensor) -> torch.Tensor:
        z = clip(x - _bview(lam, x) * n)
        return ((z - point) * n).flatten(1).sum(1)

    # offset(lam) is non-increasing in lam; bracket the root
    width = float(torch.as_tensor(hi).max() - torch.as_tensor(lo).min())
    span = width * math.sqrt(x[0].numel()) + 1.0
    low = torch.full((x.shape[0],), -span, dtype=x.dtype, device=x.device)
    high = -low
    for _ in range(iters):
        mid = (low + high) / 2
        pos = offset(mid) > 0
        low = torch.where(pos, mid, low)
        high = torch.where(pos, high, mid)
    lam = (low + high) / 2
    z = clip(x - _bview(lam, x) * n)
    # remove the tiny residual along n on coordinates that are not at the box faces
    free = (z > torch.as_tensor(lo, device=z.device)) & (z < torch.as_tensor(hi, device=z.device))
    resid = ((z - point) * n).flatten(1).sum(1)
    nf = n * free
    denom = (nf * n).flatten(1).sum(1).clamp_min(1e-12)
    return z - _bview(resid / denom, z) * nf


#: The paper's bypass of a barrier point in a trained network (``utils.bypass_barrier``,
#: section 4.1), in normalised units: 1024 Adam steps with learning rate 0.005 on
#: ``CE + 0.1 * mean((B' - B)^2) + 1e-8 * sum|neighbour differences of B' - B|``, the
#: gradient projected orthogonally to ``C - A`` before each step (Adam's per-element
#: scaling then moves the point slightly off the hyperplane), no early stop, no pixel box.
BYPASS_PAPER: dict = dict(steps=1024, lr=0.005, deviation_weight=0.1, tv_weight=1e-8,
                          tv_reduction="sum", stop_loss=None, box=None, constrain=True,
                          projection="gradient", space="normalized", weight_decay=0.0)

#: The paper's free optimisation of a barrier point in an untrained network
#: (``utils.optimize_point``, section 4.3), in normalised units: up to 4096 Adam steps
#: with learning rate 0.05 and weight decay 1e-7 on the class loss alone, stopping once it
#: is below 0.0005; no hyperplane, no pixel box.
FREE_PAPER: dict = dict(steps=4096, lr=0.05, deviation_weight=0.0, tv_weight=0.0,
                        tv_reduction="sum", stop_loss=5e-4, box=None, constrain=False,
                        projection="gradient", space="normalized", weight_decay=1e-7)

PROJECTIONS = ("iterate", "gradient")


def bypass_barrier(model: nn.Module, a: torch.Tensor, c: torch.Tensor, b: torch.Tensor,
                   targets: torch.Tensor, steps: int = 100, lr: float = 0.01,
                   deviation_weight: float = 1.0, tv_weight: float = 0.1,
                   stop_loss: float | torch.Tensor | None = None,
                   box: tuple[float, float] | None = (0.0, 1.0),
                   progress: bool = False, constrain: bool = True, space: str = "pixel",
                   projection: str = "iterate", weight_decay: float = 0.0,
                   tv_reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Move barrier points ``B`` off the straight path, inside their hyperplanes.

    For every pair at once, minimises

    ``CE(model(B'), target) + deviation_weight * mean((B' - B)^2) + tv_weight * TV(B' - B)``

    by Adam steps whose gradient is projected onto the hyperplane through ``B``
    orthogonal to ``C - A``. With ``projection="iterate"`` (default) ``B'`` is also
    projected back onto that hyperplane after each step (intersected with ``box``, the
    valid pixel range), so ``<B' - B, C - A> = 0`` holds throughout; with
    ``"gradient"`` only the gradient is projected, as in the paper's code, and Adam's
    per-element scaling lets ``B'`` drift slightly along ``C - A``. The pairs do not
    interact (eval mode, per-element Adam), so the result equals running each pair
    alone; only pairs still active are evaluated at each step. The weights take the
    memory format of the machine's speed plan for the duration
    (:func:`mcutils.core.runtime.prepare`), which changes results at float rounding only.

    Args:
        model: the classifier.
        a, c: ``[pairs, C, H, W]`` segment ends (only ``C - A`` is used).
        b: ``[pairs, C, H, W]`` barrier points (typically on the segment).
        targets: ``[pairs]`` classes.
        steps: optimisation steps.
        lr: Adam learning rate (units of ``space`` per step).
        deviation_weight: weight of the mean squared deviation ``B' - B``.
        tv_weight: weight of the total variation of ``B' - B``.
        stop_loss: a pair stops moving once its cross-entropy is below this (a number,
            or a ``[pairs]`` tensor with one threshold per pair).
        box: pixel range kept (``None``: unconstrained).
        progress: show a tqdm bar.
        constrain: keep ``B'`` in the hyperplane (default). ``False``: free
            optimisation of ``B'`` (only ``box`` applies), as the paper does for
            untrained networks.
        space: ``"pixel"`` or ``"normalized"``: the units in which ``B'`` is optimised
            and the deviation, total variation, weight decay and hyperplane are
            measured (see :mod:`mcutils.inputspace.synthesis`).
        projection: ``"iterate"`` or ``"gradient"`` (see above).
        weight_decay: Adam's L2 weight decay on the optimised point.
        tv_reduction: ``"mean"`` or ``"sum"`` (see :func:`~mcutils.inputspace.total_variation`).

    Returns:
        ``(b_prime [pairs, C, H, W], history [steps, pairs])``: the moved points (pixel
        space; CPU if the inputs were) and the cross-entropy of each pair at every step.
    """
    _check_pairs(a, c, targets)
    _check_pairs(a, b)
    if not isinstance(steps, int) or steps < 0:
        raise ParameterError(f"steps={steps!r} must be a non-negative integer")
    _check_positive(lr=lr)
    _check_nonneg(deviation_weight=deviation_weight, tv_weight=tv_weight,
                  weight_decay=weight_decay)
    if projection not in PROJECTIONS:
        raise ParameterError(f"projection={projection!r} is not known; valid values: "
                             f"{', '.join(PROJECTIONS)}")
    if tv_reduction not in ("mean", "sum"):
        raise ParameterError(f"tv_reduction={tv_reduction!r}: use 'mean' or 'sum'")
    box = _check_box(box)
    device = _model_device(model)
    out_device = b.device
    sp = _Space(model, space, device)
    z0 = sp.from_pixel(b.detach().to(device).float())
    normal = sp.from_pixel(c.detach().to(device).float()) - sp.from_pixel(a.detach().to(device).float())
    n = normal / _bview(_flat_norm(normal).clamp_min(1e-12), normal)
    zbox = None if box is None else (sp.from_pixel(torch.tensor(box[0], device=device)),
                                     sp.from_pixel(torch.tensor(box[1], device=device)))
    tgt = torch.as_tensor(targets).to(device)
    p = z0.shape[0]
    if stop_loss is not None:
        stop_loss = torch.as_tensor(stop_loss, dtype=torch.float32).to(device)
        if stop_loss.dim() not in (0, 1) or (stop_loss.dim() == 1 and len(stop_loss) != p):
            raise ParameterError("stop_loss must be a number or a [pairs] tensor")
        stop_loss = stop_loss.expand(p)
    z = z0.clone()
    adam = MaskedAdam(z, lr)
    active = torch.ones(p, dtype=torch.bool, device=device)
    last = torch.full((p,), math.nan)
    history = torch.empty(steps, p)
    with _FrozenEval(model, example=z0), torch.enable_grad():
        for step in tqdm(range(steps), desc="bypass", disable=not progress, leave=False):
            idx = active.nonzero().flatten()
            za = z.index_select(0, idx).requires_grad_(True)
            ce = F.cross_entropy(model(sp.to_pixel(za)).float(), tgt.index_select(0, idx),
                                 reduction="none")
            d = za - z0.index_select(0, idx)
            obj = ce
            if deviation_weight:
                obj = obj + deviation_weight * d.pow(2).flatten(1).mean(1)
            if tv_weight:
                obj = obj + tv_weight * total_variation(d, tv_reduction)
            (ga,) = torch.autograd.grad(obj.sum(), za)
            ce = ce.detach()
            last[idx.cpu()] = ce.cpu()
            history[step] = last
            if stop_loss is not None:
                done = ce < stop_loss.index_select(0, idx)
                if done.any():
                    active[idx[done]] = False
                    keep = ~done
                    idx, ga = idx[keep], ga[keep]
                if not active.any():
                    history[step + 1:] = history[step]
                    break
            g = torch.zeros_like(z)
            g[idx] = ga
            if weight_decay:
                g[idx] += weight_decay * z.index_select(0, idx)
            if constrain:
                g = g - _bview((g * n).flatten(1).sum(1), g) * n
            z = adam.step(z, g, active)
            if constrain and projection == "iterate":
                z = project_to_hyperplane(z, z0, normal, box=zbox)
            elif box is not None:
                z = sp.clamp(z, box)
    return sp.to_pixel(z).detach().to(out_device), history


@dataclass
class ConnectResult:
    """Result of :func:`connect`.

    Attributes:
        vertices: per pair, the path's vertices ``[V, C, H, W]`` (first ``A``, last ``C``).
        profile: ``[pairs, num_points]`` loss along the final path at evenly spaced
            arc-length positions (:func:`path_profiles`), or ``None`` if not asked for.
        barriers: ``[pairs]`` final path barrier: highest loss on any segment minus
            the larger endpoint loss (from :func:`~mcutils.inputspace.find_barrier`).
        connected: ``[pairs]`` whether the final barrier is below ``tol``.
        connected_by_round: fraction of pairs connected after 0, 1, ... ``max_rounds``
            rounds (round 0 is the straight line).
        rounds_needed: ``[pairs]`` first round after which the pair was connected
            (-1: never).
        linear_barriers: ``[pairs]`` barrier of the straight path.
        first_bypass: ``(pair_index, B, B')`` of the first round, for figures.
        forward_passes: inputs evaluated by the barrier searches (bypass steps and
            the final profile not included).
        bypass_history: mean cross-entropy of the bypassed points per step, per round.
        barriers_by_round: ``[pairs]`` path barriers after round 0 (straight
            path), 1, ... ``max_rounds`` (for :func:`~mcutils.inputspace.connected_fraction` at other
            tolerances: a path found with a small ``tol`` is a witness for any larger one).
    """

    vertices: list[torch.Tensor]
    profile: torch.Tensor | None
    barriers: torch.Tensor
    connected: torch.Tensor
    connected_by_round: list[float]
    rounds_needed: torch.Tensor
    linear_barriers: torch.Tensor
    first_bypass: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    forward_passes: int = 0
    bypass_history: list[torch.Tensor] = field(default_factory=list)
    barriers_by_round: list[torch.Tensor] = field(default_factory=list)


def _segments(vertices: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    starts = torch.cat([v[:-1] for v in vertices])
    ends = torch.cat([v[1:] for v in vertices])
    owner = torch.cat([torch.full((len(v) - 1,), i, dtype=torch.long)
                       for i, v in enumerate(vertices)])
    return starts, ends, owner


def _segment_search(model: nn.Module, starts: torch.Tensor, ends: torch.Tensor,
                    targets: torch.Tensor, end_loss: torch.Tensor,
                    search: dict) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per segment: excess of its highest loss over its pair's worse endpoint loss, and where."""
    seg_max, t_max, passes = find_barrier(model, starts, ends, targets, kind="max", **search)
    return (seg_max - end_loss).clamp_min(0), t_max, passes


def connect(model: nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
            max_rounds: int = 3, tol: float = 0.1, steps: int = 100, lr: float = 0.01,
            deviation_weight: float = 1.0, tv_weight: float = 0.1,
            stop_loss: float | str | None = "auto", box: tuple[float, float] | None = (0.0, 1.0),
            num_points: int | None = 100, search: dict | None = None,
            batch_size: int | None = DEFAULT_BATCH_SIZE, progress: bool = False,
            constrain: bool = True, space: str = "pixel", projection: str = "iterate",
            weight_decay: float = 0.0, tv_reduction: str = "mean",
            bypass_all: bool = False) -> ConnectResult:
    """Recursive piecewise-linear paths between every pair.

    Round 0 is the straight path. In each round, every segment whose highest loss
    exceeds the pair's worse endpoint loss by ``tol`` or more is split at its highest
    point ``B`` (found by :func:`~mcutils.inputspace.find_barrier`), and ``B`` is replaced by the bypass
    ``B'`` of :func:`bypass_barrier` in the hyperplane orthogonal to that segment. A
    pair is *connected* when no segment of its path has such an excess. All bad
    segments of all pairs are handled in one batch per round, and only the new
    segments are searched again.

    Args:
        model, a, c, targets: as in :func:`~mcutils.inputspace.loss_profiles`.
        max_rounds: bypass rounds.
        tol: barrier tolerance (loss units) for a segment to count as flat.
        steps, lr, deviation_weight, tv_weight, stop_loss, box: passed to
            :func:`bypass_barrier`; ``stop_loss="auto"`` stops each bypass point once
            its loss is below its pair's worse endpoint loss plus ``tol / 2`` (the
            smallest move that can make the point flat, so the least deviation).
        num_points: points of the returned final profile (``None``: skip it, saving
            ``pairs x num_points`` forward passes; ``profile`` is then ``None``).
        search: keyword arguments for :func:`~mcutils.inputspace.find_barrier` (default ``tol=tol/10``).
        batch_size: points per forward pass (``None``: the speed plan's).
        progress: show a progress bar over rounds.
        constrain: bypass inside the hyperplane (default) or, with ``False``, by
            free optimisation of the barrier point (see :func:`bypass_barrier`).
        space, projection, weight_decay, tv_reduction: passed to
            :func:`bypass_barrier` (:data:`BYPASS_PAPER` and :data:`FREE_PAPER` hold the
            paper's settings).
        bypass_all: split and bypass *every* segment in every round at its highest
            point, whatever its barrier, as the paper's code does for untrained networks
            (``sec4_3_untrained_model.py``: round 1 on ``A-C``, round 2 on both ``A-B'``
            and ``B'-C``), so every path ends with ``2 ** max_rounds`` segments. The
            connected criterion (``tol``) is unchanged.

    Returns:
        A :class:`ConnectResult` (tensors on the CPU).
    """
    _check_pairs(a, c, targets)
    _check_positive(tol=tol)
    if not isinstance(max_rounds, int) or max_rounds < 0:
        raise ParameterError(f"max_rounds={max_rounds!r} must be a non-negative integer")
    if isinstance(stop_loss, str) and stop_loss != "auto":
        raise ParameterError(f"stop_loss={stop_loss!r}: use a number, None or 'auto'")
    search = dict(dict(tol=tol / 10, batch_size=batch_size), **(search or {}))
    targets = torch.as_tensor(targets).cpu()
    a, c = a.detach().cpu().float(), c.detach().cpu().float()
    p = a.shape[0]
    end_loss = loss_profiles(model, a, c, targets, num_points=2,
                             batch_size=batch_size).max(dim=1).values
    passes = 2 * p
    vertices = [torch.stack([a[i], c[i]]) for i in range(p)]
    exc, tm, more = _segment_search(model, a, c, targets, end_loss, search)
    passes += more
    seg_excess = [exc[i:i + 1] for i in range(p)]
    seg_t = [tm[i:i + 1] for i in range(p)]
    linear = exc.clone()
    connected = linear < tol
    rounds_needed = torch.where(connected, 0, -1)
    by_round = [connected.float().mean().item()]
    barriers_by_round = [linear.clone()]
    first = None
    histories = []
    for rnd in tqdm(range(1, max_rounds + 1), desc="connect", disable=not progress, leave=False):
        bad = [(i, k) for i in range(p)
               for k in (range(len(seg_excess[i])) if bypass_all
                         else (seg_excess[i] >= tol).nonzero().flatten().tolist())]
        if bad:
            owner = torch.tensor([i for i, _ in bad])
            s = torch.stack([vertices[i][k] for i, k in bad])
            e = torch.stack([vertices[i][k + 1] for i, k in bad])
            bpts = interpolate(s, e, torch.stack([seg_t[i][k] for i, k in bad]))
            b_prime, hist = bypass_barrier(model, s, e, bpts, targets[owner], steps=steps, lr=lr,
                                           deviation_weight=deviation_weight, tv_weight=tv_weight,
                                           stop_loss=(end_loss[owner] + tol / 2
                                                      if stop_loss == "auto" else stop_loss),
                                           box=box, constrain=constrain, space=space,
                                           projection=projection, weight_decay=weight_decay,
                                           tv_reduction=tv_reduction)
            histories.append(hist.mean(dim=1))
            if first is None:
                first = (owner, bpts, b_prime)
            n = len(bad)
            exc, tm, more = _segment_search(model, torch.cat([s, b_prime]), torch.cat([b_prime, e]),
                                            targets[owner].repeat(2), end_loss[owner].repeat(2),
                                            search)
            passes += more
            new = {(i, k): j for j, (i, k) in enumerate(bad)}
            for i in owner.unique().tolist():
                verts, ex, ts = [vertices[i][:1]], [], []
                for k in range(len(vertices[i]) - 1):
                    j = new.get((i, k))
                    if j is None:
                        ex.append(seg_excess[i][k:k + 1])
                        ts.append(seg_t[i][k:k + 1])
                    else:
                        verts.append(b_prime[j:j + 1])
                        ex += [exc[j:j + 1], exc[n + j:n + j + 1]]
                        ts += [tm[j:j + 1], tm[n + j:n + j + 1]]
                    verts.append(vertices[i][k + 1:k + 2])
                vertices[i] = torch.cat(verts)
                seg_excess[i] = torch.cat(ex)
                seg_t[i] = torch.cat(ts)
        connected = torch.stack([ex.max() < tol for ex in seg_excess])
        rounds_needed = torch.where((rounds_needed < 0) & connected, rnd, rounds_needed)
        by_round.append(connected.float().mean().item())
        barriers_by_round.append(torch.stack([ex.max() for ex in seg_excess]))
    barriers = torch.stack([ex.max() for ex in seg_excess])
    profile = None
    if num_points is not None:
        profile = path_profiles(model, vertices, targets, num_points=num_points,
                                batch_size=batch_size)
    return ConnectResult(vertices=vertices, profile=profile, barriers=barriers,
                         connected=connected, connected_by_round=by_round,
                         rounds_needed=rounds_needed, linear_barriers=linear,
                         first_bypass=first, forward_passes=passes, bypass_history=histories,
                         barriers_by_round=barriers_by_round)


def path_profiles(model: nn.Module, vertices: Sequence[torch.Tensor], targets: torch.Tensor,
                  num_points: int = 100, batch_size: int | None = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Loss along piecewise-linear paths at evenly spaced arc-length positions.

    Args:
        model: the classifier.
        vertices: per pair, ``[V_i, C, H, W]`` vertices (``V_i >= 2``).
        targets: ``[pairs]`` classes.
        num_points: points per path (both ends included).
        batch_size: points per forward pass (``None``: the speed plan's).

    Returns:
        ``[pairs, num_points]`` losses.
    """
    if not isinstance(num_points, int) or num_points < 2:
        raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
    if any(len(v) < 2 for v in vertices):
        raise ParameterError("every path needs at least two vertices")
    starts, ends, owner = _segments(list(vertices))
    seg_len = _flat_norm(ends - starts)
    s = torch.linspace(0, 1, num_points)
    seg_index, local_t = [], []
    offset = 0
    for v in vertices:
        k = len(v) - 1
        lens = seg_len[offset:offset + k]
        total = lens.sum().clamp_min(1e-12)
        cum = torch.cat([torch.zeros(1), lens.cumsum(0) / total])
        j = (torch.searchsorted(cum, s, right=True) - 1).clamp(0, k - 1)
        width = (cum[j + 1] - cum[j]).clamp_min(1e-12)
        local_t.append(((s - cum[j]) / width).clamp(0, 1))
        seg_index.append(j + offset)
        offset += k
    seg_index_t = torch.cat(seg_index)
    flat = segment_losses(model, starts, ends, torch.as_tensor(targets)[owner], seg_index_t,
                          torch.cat(local_t), batch_size=batch_size)
    return flat.view(len(vertices), num_points)


def path_barriers(model: nn.Module, vertices: Sequence[torch.Tensor], targets: torch.Tensor,
                  points_per_segment: int = 1000,
                  batch_size: int | None = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """The barrier of each piecewise-linear path on a dense grid of every segment.

    Each segment of each path is evaluated at ``points_per_segment`` evenly spaced points
    (both ends included), as the paper evaluates its straight lines (1,000 points); the
    barrier is the highest loss on the path minus the larger of the two endpoint losses
    (``"gap"``, clamped at 0), the quantity :func:`connect` estimates with the adaptive
    :func:`~mcutils.inputspace.find_barrier`. Used to check the adaptive search on bent
    paths.

    Args:
        model: the classifier.
        vertices: per pair, ``[V_i, C, H, W]`` vertices (``V_i >= 2``).
        targets: ``[pairs]`` classes.
        points_per_segment: grid points per segment (>= 2).
        batch_size: points per forward pass (``None``: the speed plan's).

    Returns:
        ``[pairs]`` barriers (float32, CPU).
    """
    if not isinstance(points_per_segment, int) or points_per_segment < 2:
        raise ParameterError(f"points_per_segment={points_per_segment!r} must be an integer >= 2")
    if not len(vertices) or any(len(v) < 2 for v in vertices):
        raise ParameterError("every path needs at least two vertices")
    targets = torch.as_tensor(targets)
    if len(targets) != len(vertices):
        raise ParameterError("one target per path")
    starts, ends, owner = _segments([v.detach().cpu().float() for v in vertices])
    k = points_per_segment
    t = torch.linspace(0, 1, k).repeat(len(starts))
    seg = torch.arange(len(starts)).repeat_interleave(k)
    loss = segment_losses(model, starts, ends, targets[owner], seg, t,
                          batch_size=batch_size).view(len(starts), k)
    top = torch.full((len(vertices),), -math.inf).scatter_reduce(
        0, owner, loss.max(dim=1).values, "amax")
    first = torch.tensor([int((owner == i).nonzero()[0]) for i in range(len(vertices))])
    last = torch.tensor([int((owner == i).nonzero()[-1]) for i in range(len(vertices))])
    ends_loss = torch.maximum(loss[first, 0], loss[last, -1])
    return (top - ends_loss).clamp_min(0)
