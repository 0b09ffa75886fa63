"""Input-space mode connectivity: paths between inputs, loss profiles, barriers, bypasses.

Everything here works on *batches of pairs* of inputs ``a, c`` of shape
``[pairs, C, H, W]`` in pixel space (normalisation is the model's first layer), with
one target class per pair, on whatever device the model lives on.

* :func:`linear_path`, :func:`interpolate`: points on straight paths.
* :func:`loss_profiles`: cross-entropy of the target class at evenly spaced points of
  every straight path, all pairs x points evaluated in large flattened batches.
* :func:`barrier`: the barrier of a profile (``"gap"``: the highest loss on the path
  minus the larger endpoint loss; ``"max"``: the highest loss itself).
* :func:`find_barrier`: the same barrier from an adaptive search (a coarse grid, then
  refinement around the highest local maxima) with far fewer forward passes.
* :func:`bypass_barrier`: moves barrier points ``B`` of all pairs at once inside the
  hyperplane through ``B`` orthogonal to ``C - A`` to lower their loss.
* :func:`connect`: recursive piecewise-linear paths (find the highest point of every
  bad segment, bypass it, repeat) and :func:`path_profiles` for their loss.
* :func:`synthesize`: synthetic inputs of given classes by feature visualisation.
* :func:`path_length`, :func:`relative_path_length`, :func:`detour_angle`,
  :func:`chord_deviation`: how far a piecewise path is from the straight line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.runtime import ParameterError

__all__ = [
    "interpolate",
    "linear_path",
    "interpolated_inputs",
    "loss_profiles",
    "segment_losses",
    "barrier",
    "find_barrier",
    "project_to_hyperplane",
    "total_variation",
    "bypass_barrier",
    "ConnectResult",
    "connect",
    "path_profiles",
    "synthesize",
    "path_length",
    "relative_path_length",
    "detour_angle",
    "chord_deviation",
    "relative_deviation",
    "matched_pairs",
    "load_image_folder",
    "BARRIER_KINDS",
    "connected_fraction",
    "rounds_needed",
    "class_reference_loss",
    "BarrierRecorder",
]

BARRIER_KINDS = ("gap", "max")
DEFAULT_BATCH_SIZE = 256


# ----------------------------------------------------------------------------- helpers
def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class _EvalMode:
    """Context manager: put a model in eval mode, restore its previous mode after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


class _FrozenEval(_EvalMode):
    """Eval mode with the weights' ``requires_grad`` off (inputs are optimised, not
    weights); both are restored on exit."""

    def __enter__(self) -> nn.Module:
        self.requires = [p.requires_grad for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        for p, req in zip(self.model.parameters(), self.requires):
            p.requires_grad_(req)
        super().__exit__(*exc)


def _check_pairs(a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor | None = None) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(c, torch.Tensor):
        raise ParameterError("a and c must be tensors of shape [pairs, C, H, W]")
    if a.shape != c.shape:
        raise ParameterError(f"a and c must have the same shape, got {tuple(a.shape)} and "
                             f"{tuple(c.shape)}")
    if a.dim() < 2:
        raise ParameterError(f"a and c need a leading pairs dimension, got shape {tuple(a.shape)}")
    if targets is not None:
        targets = torch.as_tensor(targets)
        if targets.shape != (a.shape[0],):
            raise ParameterError(f"targets must have shape [{a.shape[0]}] (one class per pair), "
                                 f"got {tuple(targets.shape)}")


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ParameterError(f"{name}={v!r} must be a positive number")


def _check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ParameterError(f"{name}={v!r} must be a non-negative number")


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)


def _bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-row vector ``[N]`` to broadcast against ``like`` ``[N, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


# ----------------------------------------------------------------------------- paths
def interpolate(a: torch.Tensor, c: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Points ``(1 - t) a + t c`` on the straight paths from ``a`` to ``c``.

    Args:
        a, c: ``[pairs, ...]`` endpoints.
        t: a number, a ``[pairs]`` tensor (one t per pair) or a ``[pairs, points]``
            tensor (several points per pair).

    Returns:
        ``[pairs, ...]`` for a scalar or per-pair ``t``; ``[pairs, points, ...]`` for
        a 2-D ``t``.
    """
    _check_pairs(a, c)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() == 0:
        return torch.lerp(a, c, t)
    if t.dim() == 1:
        return a + _bview(t, a) * (c - a)
    if t.dim() == 2 and t.shape[0] == a.shape[0]:
        tt = t.view(*t.shape, *([1] * (a.dim() - 1)))
        return a.unsqueeze(1) + tt * (c - a).unsqueeze(1)
    raise ParameterError(f"t must be a scalar, [pairs] or [pairs, points]; got {tuple(t.shape)}")


def linear_path(a: torch.Tensor, c: torch.Tensor, num_points: int = 100) -> torch.Tensor:
    """All ``num_points`` evenly spaced points (ends included) of every straight path.

    This materialises ``pairs x num_points`` images; :func:`loss_profiles` never does
    (it builds one batch of points at a time).

    Returns:
        ``[pairs, num_points, C, H, W]``.
    """
    if not isinstance(num_points, int) or num_points < 2:
        raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
    t = torch.linspace(0, 1, num_points, dtype=a.dtype, device=a.device)
    return interpolate(a, c, t.expand(a.shape[0], -1))


def interpolated_inputs(a: torch.Tensor, c: torch.Tensor, low: float = 0.25, high: float = 0.75,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolated inputs: one random point per pair on the straight path ``a -> c``.

    Used as endpoints that are neither real images nor synthetic ones (the paper's
    "interpolated" inputs). Whether the model still predicts the class at these points
    is for the caller to check.

    Args:
        a, c: ``[pairs, ...]`` real images (typically of the same class).
        low, high: t is drawn uniformly from ``[low, high]``.
        generator: seeded randomness.

    Returns:
        ``(points [pairs, ...], t [pairs])``.
    """
    _check_pairs(a, c)
    if not 0 <= low <= high <= 1:
        raise ParameterError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    t = low + (high - low) * torch.rand(a.shape[0], generator=generator)
    t = t.to(dtype=a.dtype, device=a.device)
    return interpolate(a, c, t), t


# ----------------------------------------------------------------------------- profiles
def segment_losses(model: nn.Module, starts: torch.Tensor, ends: torch.Tensor,
                   targets: torch.Tensor, seg_index: torch.Tensor, t: torch.Tensor,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Cross-entropy at arbitrary points of many segments, in flattened batches.

    Point ``k`` is ``starts[seg_index[k]] + t[k] (ends - starts)[seg_index[k]]`` with
    target ``targets[seg_index[k]]``. Only one batch of points exists at a time.
    This is the engine under :func:`loss_profiles`, :func:`find_barrier` and
    :func:`path_profiles`.

    Args:
        model: the classifier (evaluated in eval mode, mode restored after).
        starts, ends: ``[segments, C, H, W]``.
        targets: ``[segments]`` class indices.
        seg_index: ``[K]`` segment of each point.
        t: ``[K]`` position of each point on its segment.
        batch_size: points per forward pass.

    Returns:
        ``[K]`` losses (float32, on the CPU).
    """
    _check_pairs(starts, ends, targets)
    if seg_index.shape != t.shape or seg_index.dim() != 1:
        raise ParameterError("seg_index and t must be 1-D tensors of the same length")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size={batch_size!r} must be a positive integer")
    device = _model_device(model)
    starts = starts.to(device)
    delta = ends.to(device) - starts
    targets = torch.as_tensor(targets).to(device)
    seg_index = seg_index.to(device)
    t = t.to(device=device, dtype=starts.dtype)
    out = torch.empty(len(t), dtype=torch.float32)
    with _EvalMode(model), torch.inference_mode():
        for lo in range(0, len(t), batch_size):
            idx = seg_index[lo:lo + batch_size]
            tb = t[lo:lo + batch_size]
            x = torch.addcmul(starts.index_select(0, idx), _bview(tb, delta),
                              delta.index_select(0, idx))
            logits = model(x)
            out[lo:lo + len(idx)] = F.cross_entropy(logits.float(), targets.index_select(0, idx),
                                                    reduction="none").cpu()
    return out


def loss_profiles(model: nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                  num_points: int = 100, batch_size: int = DEFAULT_BATCH_SIZE,
                  ts: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the target class along the straight paths ``a -> c``.

    All ``pairs x points`` inputs are evaluated in large flattened batches under
    :func:`torch.inference_mode` (the model is put in eval mode and restored).

    Args:
        model: the classifier (pixel-space input).
        a, c: ``[pairs, C, H, W]`` endpoints.
        targets: ``[pairs]`` target class of each pair.
        num_points: evenly spaced points in ``[0, 1]``, both ends included.
        batch_size: points per forward pass.
        ts: optional positions instead of the even grid: ``[points]`` (shared) or
            ``[pairs, points]``.

    Returns:
        ``[pairs, points]`` losses (float32, CPU); column 0 is the loss at ``a`` and
        the last column the loss at ``c`` when the grid includes the ends.
    """
    _check_pairs(a, c, targets)
    p = a.shape[0]
    if ts is None:
        if not isinstance(num_points, int) or num_points < 2:
            raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
        ts = torch.linspace(0, 1, num_points)
    ts = torch.as_tensor(ts, dtype=torch.float32)
    if ts.dim() == 1:
        ts = ts.expand(p, -1)
    if ts.dim() != 2 or ts.shape[0] != p:
        raise ParameterError(f"ts must be [points] or [pairs, points], got {tuple(ts.shape)}")
    m = ts.shape[1]
    seg = torch.arange(p).repeat_interleave(m)
    flat = segment_losses(model, a, c, torch.as_tensor(targets), seg, ts.reshape(-1),
                          batch_size=batch_size)
    return flat.view(p, m)


def barrier(profiles: torch.Tensor, kind: str = "gap") -> torch.Tensor:
    """The barrier of each loss profile.

    Args:
        profiles: ``[pairs, points]`` losses along paths, first and last column at
            the endpoints.
        kind: ``"gap"`` (default): the highest loss on the path minus the larger of
            the two endpoint losses, so 0 means the path never rises above its worse
            end; ``"max"``: the highest loss on the path itself.

    Returns:
        ``[pairs]`` barriers (``"gap"`` is always >= 0).
    """
    if kind not in BARRIER_KINDS:
        raise ParameterError(f"kind={kind!r} is not known; valid values: {', '.join(BARRIER_KINDS)}")
    if profiles.dim() != 2 or profiles.shape[1] < 2:
        raise ParameterError(f"profiles must be [pairs, points>=2], got {tuple(profiles.shape)}")
    top = profiles.max(dim=1).values
    if kind == "max":
        return top
    ends = torch.maximum(profiles[:, 0], profiles[:, -1])
    return (top - ends).clamp_min(0)


def _local_peaks(t: torch.Tensor, loss: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                        torch.Tensor]:
    """For each row (sorted by t): brackets ``[t_left, t_right]`` around the k highest
    interior local maxima (fewer maxima: the highest ones are repeated)."""
    order = t.argsort(dim=1)
    ts = t.gather(1, order)
    ls = loss.gather(1, order)
    inner = ls[:, 1:-1]
    is_peak = (inner >= ls[:, :-2]) & (inner >= ls[:, 2:])
    score = torch.where(is_peak, inner, torch.full_like(inner, -math.inf))
    kk = min(k, inner.shape[1])
    top = score.topk(kk, dim=1).indices + 1  # index into sorted arrays
    # rows without any interior peak: fall back to the interior max
    none = ~is_peak.any(dim=1)
    if none.any():
        top[none] = (inner[none].argmax(dim=1, keepdim=True) + 1).expand(-1, kk)
    # where fewer than kk peaks exist, topk returns -inf entries: replace by the best
    valid = score.gather(1, top - 1) > -math.inf
    valid |= none.unsqueeze(1)
    top = torch.where(valid, top, top[:, :1].expand_as(top))
    return ts.gather(1, top - 1), ts.gather(1, top + 1), ts.gather(1, top)


def find_barrier(model: nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                 tol: float = 0.01, coarse_points: int = 17, refine_points: int = 4,
                 num_peaks: int = 2, max_rounds: int = 4, kind: str = "gap",
                 batch_size: int = DEFAULT_BATCH_SIZE
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Adaptive barrier search: a coarse grid, then refinement around the highest peaks.

    Round 0 evaluates ``coarse_points`` evenly spaced points (ends included). Each
    refinement round takes, for every pair still active, the ``num_peaks`` highest
    local maxima of all points evaluated so far and evaluates ``refine_points`` new
    points evenly inside the bracket between each maximum's two neighbours. A pair
    stops when a round raises its maximum by less than ``tol / 4``; the search stops
    after ``max_rounds`` rounds. Barriers that are narrower than the coarse spacing
    and lower than a neighbouring peak can be missed; the benchmark checks agreement
    with a 1,000-point grid.

    Args:
        model, a, c, targets: as in :func:`loss_profiles`.
        tol: the accuracy wanted for the barrier (loss units).
        coarse_points: size of the initial grid (>= 3).
        refine_points: new points per peak per round.
        num_peaks: local maxima refined per pair and round.
        max_rounds: refinement rounds.
        kind: ``"gap"`` or ``"max"`` (see :func:`barrier`).
        batch_size: points per forward pass.

    Returns:
        ``(barriers [pairs], t_max [pairs], forward_passes)``: the barrier, where on
        the path (t in [0, 1]) the highest loss was found, and the number of inputs
        evaluated in all.
    """
    _check_pairs(a, c, targets)
    if kind not in BARRIER_KINDS:
        raise ParameterError(f"kind={kind!r} is not known; valid values: {', '.join(BARRIER_KINDS)}")
    _check_positive(tol=tol)
    for name, v, low in (("coarse_points", coarse_points, 3), ("refine_points", refine_points, 1),
                         ("num_peaks", num_peaks, 1), ("max_rounds", max_rounds, 0)):
        if not isinstance(v, int) or v < low:
            raise ParameterError(f"{name}={v!r} must be an integer >= {low}")
    p = a.shape[0]
    targets = torch.as_tensor(targets)
    t = torch.linspace(0, 1, coarse_points).expand(p, -1).contiguous()
    loss = loss_profiles(model, a, c, targets, ts=t, batch_size=batch_size)
    passes = p * coarse_points
    active = torch.ones(p, dtype=torch.bool)
    best = loss.max(dim=1).values
    frac = torch.arange(1, refine_points + 1, dtype=torch.float32) / (refine_points + 1)
    for _ in range(max_rounds):
        if not active.any():
            break
        left, right, _ = _local_peaks(t, loss, num_peaks)
        new_t = (left.unsqueeze(2) + (right - left).unsqueeze(2) * frac).flatten(1)  # [p, k*r]
        idx = active.nonzero().flatten()
        new_loss = torch.empty_like(new_t)
        new_loss[idx] = loss_profiles(model, a[idx], c[idx], targets[idx], ts=new_t[idx],
                                      batch_size=batch_size)
        passes += len(idx) * new_t.shape[1]
        # inactive rows: pad with copies of their current best point (changes nothing)
        rest = (~active).nonzero().flatten()
        if len(rest):
            arg = loss[rest].argmax(dim=1, keepdim=True)
            new_t[rest] = t[rest].gather(1, arg).expand(-1, new_t.shape[1])
            new_loss[rest] = loss[rest].gather(1, arg).expand(-1, new_t.shape[1])
        t = torch.cat([t, new_t], dim=1)
        loss = torch.cat([loss, new_loss], dim=1)
        now = loss.max(dim=1).values
        active &= (now - best) >= tol / 4
        best = now
    top, arg = loss.max(dim=1)
    t_max = t.gather(1, arg.unsqueeze(1)).squeeze(1)
    if kind == "max":
        return top, t_max, passes
    ends = torch.maximum(loss[:, 0], loss[:, coarse_points - 1])
    return (top - ends).clamp_min(0), t_max, passes


# ----------------------------------------------------------------------------- bypass
def project_to_hyperplane(x: torch.Tensor, point: torch.Tensor, normal: torch.Tensor,
                          box: tuple[float, float] | None = None, iters: int = 40) -> torch.Tensor:
    """Project each ``x[i]`` onto ``{z : <z - point[i], normal[i]> = 0}`` (within a box).

    Without ``box`` this is the orthogonal projection. With ``box = (lo, hi)`` it is
    the Euclidean projection onto the intersection of the hyperplane and the box,
    ``clip(x - lam * n, lo, hi)`` with ``lam`` found by bisection (the constraint is
    monotone in ``lam``); ``point`` must itself lie in the box.

    Returns:
        The projected ``[N, ...]`` tensor.
    """
    n = normal / _bview(_flat_norm(normal).clamp_min(1e-12), normal)
    if box is None:
        dot = ((x - point) * n).flatten(1).sum(1)
        return x - _bview(dot, x) * n
    lo, hi = box

    def offset(lam: torch.Tensor) -> torch.Tensor:
        z = (x - _bview(lam, x) * n).clamp(lo, hi)
        return ((z - point) * n).flatten(1).sum(1)

    # offset(lam) is non-increasing in lam; bracket the root
    span = (hi - lo) * math.sqrt(x[0].numel()) + 1.0
    low = torch.full((x.shape[0],), -span, dtype=x.dtype, device=x.device)
    high = -low
    for _ in range(iters):
        mid = (low + high) / 2
        pos = offset(mid) > 0
        low = torch.where(pos, mid, low)
        high = torch.where(pos, high, mid)
    lam = (low + high) / 2
    z = (x - _bview(lam, x) * n).clamp(lo, hi)
    # remove the tiny residual along n on coordinates that are not at the box faces
    free = (z > lo) & (z < hi)
    resid = ((z - point) * n).flatten(1).sum(1)
    nf = n * free
    denom = (nf * n).flatten(1).sum(1).clamp_min(1e-12)
    return z - _bview(resid / denom, z) * nf


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image (mean absolute neighbour difference).

    Args:
        x: ``[N, C, H, W]``.

    Returns:
        ``[N]``.
    """
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def bypass_barrier(model: nn.Module, a: torch.Tensor, c: torch.Tensor, b: torch.Tensor,
                   targets: torch.Tensor, steps: int = 100, lr: float = 0.01,
                   deviation_weight: float = 1.0, tv_weight: float = 0.1,
                   stop_loss: float | torch.Tensor | None = None,
                   box: tuple[float, float] | None = (0.0, 1.0),
                   progress: bool = False, constrain: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Move barrier points ``B`` off the straight path, inside their hyperplanes.

    For every pair at once, minimises

    ``CE(model(B'), target) + deviation_weight * mean((B' - B)^2) + tv_weight * TV(B' - B)``

    by Adam steps whose gradient is projected onto the hyperplane through ``B``
    orthogonal to ``C - A``; after each step ``B'`` is projected back onto that
    hyperplane (intersected with ``box``, the valid pixel range), so
    ``<B' - B, C - A> = 0`` holds throughout. The pairs do not interact (eval mode,
    per-element Adam), so the result equals running each pair alone.

    Args:
        model: the classifier.
        a, c: ``[pairs, C, H, W]`` segment ends (only ``C - A`` is used).
        b: ``[pairs, C, H, W]`` barrier points (typically on the segment).
        targets: ``[pairs]`` classes.
        steps: optimisation steps.
        lr: Adam learning rate (pixel units per step).
        deviation_weight: weight of the mean squared deviation ``B' - B``.
        tv_weight: weight of the total variation of ``B' - B``.
        stop_loss: a pair stops moving once its cross-entropy is below this (a number,
            or a ``[pairs]`` tensor with one threshold per pair).
        box: pixel range kept (``None``: unconstrained).
        progress: show a tqdm bar.
        constrain: keep ``B'`` in the hyperplane (default). ``False``: free
            optimisation of ``B'`` (only ``box`` applies), as the paper does for
            untrained networks.

    Returns:
        ``(b_prime [pairs, C, H, W], history [steps, pairs])``: the moved points (CPU
        if the inputs were) and the cross-entropy of each pair at every step.
    """
    _check_pairs(a, c, targets)
    _check_pairs(a, b)
    if not isinstance(steps, int) or steps < 0:
        raise ParameterError(f"steps={steps!r} must be a non-negative integer")
    _check_positive(lr=lr)
    _check_nonneg(deviation_weight=deviation_weight, tv_weight=tv_weight)
    device = _model_device(model)
    out_device = b.device
    b0 = b.detach().to(device).float()
    normal = (c - a).detach().to(device).float()
    n = normal / _bview(_flat_norm(normal).clamp_min(1e-12), normal)
    tgt = torch.as_tensor(targets).to(device)
    if stop_loss is not None:
        stop_loss = torch.as_tensor(stop_loss, dtype=torch.float32).to(device)
        if stop_loss.dim() not in (0, 1) or (stop_loss.dim() == 1 and len(stop_loss) != len(b)):
            raise ParameterError("stop_loss must be a number or a [pairs] tensor")
    x = b0.clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    active = torch.ones(x.shape[0], dtype=torch.bool, device=device)
    history = torch.empty(steps, x.shape[0])
    with _FrozenEval(model), torch.enable_grad():
        for step in tqdm(range(steps), desc="bypass", disable=not progress, leave=False):
            x.requires_grad_(True)
            ce = F.cross_entropy(model(x).float(), tgt, reduction="none")
            d = x - b0
            obj = ce + deviation_weight * d.pow(2).flatten(1).mean(1) \
                + tv_weight * total_variation(d)
            (g,) = torch.autograd.grad(obj.sum(), x)
            x = x.detach()
            history[step] = ce.detach().cpu()
            if stop_loss is not None:
                active &= ce.detach() >= stop_loss
                if not active.any():
                    history[step + 1:] = history[step]
                    break
            if constrain:
                g = g - _bview((g * n).flatten(1).sum(1), g) * n
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            mhat = m / (1 - beta1 ** (step + 1))
            vhat = v / (1 - beta2 ** (step + 1))
            upd = lr * mhat / (vhat.sqrt() + eps)
            x = x - upd * _bview(active.to(x.dtype), x)
            if constrain:
                x = project_to_hyperplane(x, b0, normal, box=box)
            elif box is not None:
                x = x.clamp(box[0], box[1])
    return x.detach().to(out_device), history


# ----------------------------------------------------------------------------- connect
@dataclass
class ConnectResult:
    """Result of :func:`connect`.

    Attributes:
        vertices: per pair, the path's vertices ``[V, C, H, W]`` (first ``A``, last ``C``).
        profile: ``[pairs, num_points]`` loss along the final path at evenly spaced
            arc-length positions (:func:`path_profiles`), or ``None`` if not asked for.
        barriers: ``[pairs]`` final path barrier: highest loss on any segment minus
            the larger endpoint loss (from :func:`find_barrier`).
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
            path), 1, ... ``max_rounds`` (for :func:`connected_fraction` at other
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
            batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
            constrain: bool = True) -> ConnectResult:
    """Recursive piecewise-linear paths between every pair.

    Round 0 is the straight path. In each round, every segment whose highest loss
    exceeds the pair's worse endpoint loss by ``tol`` or more is split at its highest
    point ``B`` (found by :func:`find_barrier`), and ``B`` is replaced by the bypass
    ``B'`` of :func:`bypass_barrier` in the hyperplane orthogonal to that segment. A
    pair is *connected* when no segment of its path has such an excess. All bad
    segments of all pairs are handled in one batch per round, and only the new
    segments are searched again.

    Args:
        model, a, c, targets: as in :func:`loss_profiles`.
        max_rounds: bypass rounds.
        tol: barrier tolerance (loss units) for a segment to count as flat.
        steps, lr, deviation_weight, tv_weight, stop_loss, box: passed to
            :func:`bypass_barrier`; ``stop_loss="auto"`` stops each bypass point once
            its loss is below its pair's worse endpoint loss plus ``tol / 2`` (the
            smallest move that can make the point flat, so the least deviation).
        num_points: points of the returned final profile (``None``: skip it, saving
            ``pairs x num_points`` forward passes; ``profile`` is then ``None``).
        search: keyword arguments for :func:`find_barrier` (default ``tol=tol/10``).
        batch_size: points per forward pass.
        progress: show a progress bar over rounds.
        constrain: bypass inside the hyperplane (default) or, with ``False``, by
            free optimisation of the barrier point (see :func:`bypass_barrier`).

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
        bad = [(i, k) for i in range(p) for k in (seg_excess[i] >= tol).nonzero().flatten().tolist()]
        if bad:
            owner = torch.tensor([i for i, _ in bad])
            s = torch.stack([vertices[i][k] for i, k in bad])
            e = torch.stack([vertices[i][k + 1] for i, k in bad])
            bpts = interpolate(s, e, torch.stack([seg_t[i][k] for i, k in bad]))
            b_prime, hist = bypass_barrier(model, s, e, bpts, targets[owner], steps=steps, lr=lr,
                                           deviation_weight=deviation_weight, tv_weight=tv_weight,
                                           stop_loss=(end_loss[owner] + tol / 2
                                                      if stop_loss == "auto" else stop_loss),
                                           box=box, constrain=constrain)
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
                  num_points: int = 100, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Loss along piecewise-linear paths at evenly spaced arc-length positions.

    Args:
        model: the classifier.
        vertices: per pair, ``[V_i, C, H, W]`` vertices (``V_i >= 2``).
        targets: ``[pairs]`` classes.
        num_points: points per path (both ends included).
        batch_size: points per forward pass.

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


# ----------------------------------------------------------------------------- geometry
def path_length(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean length of each piecewise-linear path (``[pairs]``)."""
    return torch.stack([_flat_norm(v[1:] - v[:-1]).sum() for v in vertices])


def relative_path_length(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Path length divided by the straight distance ``|C - A|`` (1 = a straight path)."""
    chord = torch.stack([(v[-1] - v[0]).norm() for v in vertices]).clamp_min(1e-12)
    return path_length(vertices) / chord


def detour_angle(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Largest angle (degrees) seen from ``A`` between ``C - A`` and ``V - A`` over vertices.

    0 for a straight path; for one bypass vertex ``B'`` it is the angle by which the
    path turns away from the chord at ``A``.
    """
    out = []
    for v in vertices:
        chord = (v[-1] - v[0]).flatten()
        if len(v) <= 2:
            out.append(torch.tensor(0.0))
            continue
        rel = (v[1:-1] - v[0]).flatten(1)
        cos = (rel @ chord) / (rel.norm(dim=1) * chord.norm()).clamp_min(1e-12)
        out.append(torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).max())
    return torch.stack(out)


def chord_deviation(vertices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Largest distance of a vertex from the straight line ``A C``, relative to ``|C - A|``."""
    out = []
    for v in vertices:
        chord = (v[-1] - v[0]).flatten()
        length = chord.norm().clamp_min(1e-12)
        rel = (v - v[0]).flatten(1)
        along = (rel @ chord) / length
        perp = (rel.pow(2).sum(1) - along.pow(2)).clamp_min(0).sqrt()
        out.append(perp.max() / length)
    return torch.stack(out)


def relative_deviation(b: torch.Tensor, b_prime: torch.Tensor, norm: str = "max") -> torch.Tensor:
    """Size of each bypass ``B' - B`` relative to the image ``B`` (``[N]``).

    Args:
        b, b_prime: ``[N, C, H, W]`` barrier points and their bypasses.
        norm: ``"max"`` (``max|B' - B| / max|B|``) or ``"l2"`` (``|B' - B| / |B|``).
    """
    _check_pairs(b, b_prime)
    d = (b_prime - b).flatten(1)
    if norm == "max":
        return d.abs().max(1).values / b.flatten(1).abs().max(1).values.clamp_min(1e-12)
    if norm == "l2":
        return d.norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-12)
    raise ParameterError(f"norm={norm!r} is not known; valid values: max, l2")


def matched_pairs(labels_a: torch.Tensor, labels_b: torch.Tensor, pairs_per_class: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs ``(i, j)`` across two sets with ``labels_a[i] == labels_b[j]``.

    Pairs real images with interpolated or synthetic ones of the same class (within
    one set, use :func:`mcutils.data.class_pairs`). Classes missing from either set
    are skipped.

    Returns:
        ``(i, j)``: ``[P]`` indices into the first and the second set.
    """
    if not isinstance(pairs_per_class, int) or pairs_per_class < 1:
        raise ParameterError(f"pairs_per_class={pairs_per_class!r} must be a positive integer")
    gen = torch.Generator().manual_seed(seed)
    labels_a, labels_b = torch.as_tensor(labels_a), torch.as_tensor(labels_b)
    first, second = [], []
    for cls in sorted(set(labels_a.tolist()) & set(labels_b.tolist())):
        ia = (labels_a == cls).nonzero().flatten()
        ib = (labels_b == cls).nonzero().flatten()
        first.append(ia[torch.randint(len(ia), (pairs_per_class,), generator=gen)])
        second.append(ib[torch.randint(len(ib), (pairs_per_class,), generator=gen)])
    if not first:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(first), torch.cat(second)


def load_image_folder(root: str, size: int = 224, categories: Sequence[str] | None = None,
                      max_per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                   list[str]]:
    """Images from ``root/<class>/*.{png,jpg,jpeg}``, resized and centre-cropped.

    This is the paper's ImageNet setting: a user-given folder of images per class,
    evaluated by a pretrained torchvision model. A sub-folder name is either an
    integer class index or a name in ``categories`` (for example
    ``weights.meta["categories"]`` of the torchvision model).

    Args:
        root: the folder.
        size: output side (resize the short side to ``size``, then centre-crop).
        categories: class names indexed by label.
        max_per_class: keep at most this many images per class (sorted by file name).

    Returns:
        ``(x [N, 3, size, size] in [0, 1], y [N], class_names)``.

    Raises:
        ParameterError: missing folder, unknown class names or no images.
    """
    from pathlib import Path

    from PIL import Image
    from torchvision.transforms import functional as TF

    folder = Path(root)
    if not folder.is_dir():
        raise ParameterError(f"image_folder={str(root)!r} is not a folder; it must hold one "
                             "sub-folder of images per class")
    xs, ys, names = [], [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.isdigit():
            label = int(sub.name)
        elif categories is not None and sub.name in categories:
            label = list(categories).index(sub.name)
        else:
            raise ParameterError(f"class folder {sub.name!r} is neither a class index nor a "
                                 "known category name")
        files = sorted(f for f in sub.iterdir()
                       if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[:max_per_class]
        for f in files:
            img = Image.open(f).convert("RGB")
            img = TF.center_crop(TF.resize(img, size), [size, size])
            xs.append(TF.to_tensor(img))
            ys.append(label)
        names.append(sub.name)
    if not xs:
        raise ParameterError(f"no .png/.jpg images found under {str(root)!r}")
    return torch.stack(xs), torch.tensor(ys), names


# ----------------------------------------------------------------------------- synthesis
def synthesize(model: nn.Module, targets: torch.Tensor, shape: Sequence[int], steps: int = 200,
               lr: float = 0.05, tv_weight: float = 0.0, stop_loss: float | None = 0.01,
               init_std: float = 0.1, generator: torch.Generator | None = None,
               box: tuple[float, float] = (0.0, 1.0), progress: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic inputs by feature visualisation, batched over many targets.

    Starts from noise ``0.5 + init_std * N(0, 1)`` (clipped to ``box``) and runs Adam
    on ``CE(model(x), target) + tv_weight * TV(x)``, clipping to ``box`` after each
    step. Each input stops once its cross-entropy falls below ``stop_loss``, and the
    input with the lowest cross-entropy seen is kept.

    Args:
        model: the classifier.
        targets: ``[N]`` classes to synthesise.
        shape: ``(C, H, W)`` of one input.
        steps: maximum number of steps.
        lr: Adam learning rate (pixel units).
        tv_weight: weight of the total-variation penalty (smoother images).
        stop_loss: early-stopping threshold per input (``None``: run all steps).
        init_std: standard deviation of the initial noise.
        generator: seeded randomness for the initial noise.
        box: pixel range.
        progress: show a tqdm bar.

    Returns:
        ``(x [N, C, H, W], loss [N])``: the best inputs (CPU) and their cross-entropy.
    """
    targets = torch.as_tensor(targets, dtype=torch.long)
    if targets.dim() != 1 or len(targets) == 0:
        raise ParameterError("targets must be a non-empty 1-D tensor of classes")
    if len(shape) != 3:
        raise ParameterError(f"shape must be (C, H, W), got {tuple(shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps={steps!r} must be a positive integer")
    _check_positive(lr=lr)
    _check_nonneg(tv_weight=tv_weight, init_std=init_std)
    device = _model_device(model)
    lo, hi = box
    x0 = 0.5 + init_std * torch.randn(len(targets), *shape, generator=generator)
    x = x0.clamp(lo, hi).to(device)
    tgt = targets.to(device)
    best = x.clone()
    best_loss = torch.full((len(targets),), math.inf, device=device)
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    active = torch.ones(len(targets), dtype=torch.bool, device=device)
    with _FrozenEval(model), torch.enable_grad():
        for step in tqdm(range(steps), desc="synthesize", disable=not progress, leave=False):
            x.requires_grad_(True)
            ce = F.cross_entropy(model(x).float(), tgt, reduction="none")
            obj = ce + tv_weight * total_variation(x) if tv_weight else ce
            (g,) = torch.autograd.grad(obj.sum(), x)
            x = x.detach()
            ce = ce.detach()
            improved = ce < best_loss
            best = torch.where(_bview(improved, x), x, best)
            best_loss = torch.where(improved, ce, best_loss)
            if stop_loss is not None:
                active &= ce >= stop_loss
                if not active.any():
                    break
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            upd = lr * (m / (1 - 0.9 ** (step + 1))) / ((v / (1 - 0.999 ** (step + 1))).sqrt()
                                                         + 1e-8)
            x = (x - upd * _bview(active.to(x.dtype), x)).clamp(lo, hi)
        with torch.inference_mode():
            ce = F.cross_entropy(model(x).float(), tgt, reduction="none")
        improved = ce < best_loss
        best = torch.where(_bview(improved, x), x, best)
        best_loss = torch.where(improved, ce, best_loss)
    return best.cpu(), best_loss.cpu()


# ----------------------------------------------------------------------------- connectivity summaries
def connected_fraction(barriers: torch.Tensor | Sequence[torch.Tensor],
                       tol: float | torch.Tensor) -> torch.Tensor:
    """Fraction of pairs whose path barrier is below a tolerance, per round.

    A pair counts as connected when its barrier is below ``tol`` or exactly 0 (a path
    that never rises above its worse end is connected under any tolerance, including a
    per-pair tolerance of 0).

    Args:
        barriers: ``[pairs]``, or ``[rounds, pairs]`` (a tensor or a list of ``[pairs]``
            tensors such as :attr:`ConnectResult.barriers_by_round`).
        tol: one tolerance (loss units), or a ``[pairs]`` tensor with one per pair
            (for example ``0.1 * linear_barriers`` for "at least 90% lower than the
            straight path").

    Returns:
        A 0-d tensor for ``[pairs]`` input, else ``[rounds]`` fractions.
    """
    b = torch.stack(list(barriers)) if not isinstance(barriers, torch.Tensor) else barriers
    if b.dim() not in (1, 2) or b.shape[-1] == 0:
        raise ParameterError(f"barriers must be [pairs] or [rounds, pairs], got {tuple(b.shape)}")
    tol_t = torch.as_tensor(tol, dtype=b.dtype)
    if tol_t.dim() == 1 and tol_t.shape[0] != b.shape[-1]:
        raise ParameterError(f"a per-pair tol needs {b.shape[-1]} values, got {tol_t.shape[0]}")
    if tol_t.dim() > 1 or bool((tol_t < 0).any()):
        raise ParameterError("tol must be a non-negative number or a [pairs] tensor")
    ok = (b < tol_t) | (b == 0)
    return ok.float().mean(dim=-1)


def rounds_needed(barriers: torch.Tensor | Sequence[torch.Tensor],
                  tol: float | torch.Tensor) -> torch.Tensor:
    """First round after which each pair is connected (as in :func:`connected_fraction`).

    Args:
        barriers: ``[rounds, pairs]`` barriers after round 0 (straight path), 1, ...
        tol: a number or a ``[pairs]`` tensor.

    Returns:
        ``[pairs]`` long tensor: the first connected round, ``-1`` if none.
    """
    b = torch.stack(list(barriers)) if not isinstance(barriers, torch.Tensor) else barriers
    if b.dim() != 2:
        raise ParameterError(f"barriers must be [rounds, pairs], got {tuple(b.shape)}")
    tol_t = torch.as_tensor(tol, dtype=b.dtype)
    ok = (b < tol_t) | (b == 0)
    first = ok.float().argmax(dim=0)
    return torch.where(ok.any(dim=0), first, torch.full_like(first, -1))


@torch.inference_mode()
def class_reference_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         num_classes: int | None = None,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Median cross-entropy of the correctly classified inputs of each class.

    A loss scale for barrier tolerances: a barrier below it is smaller than the loss
    the model typically has on a real input it gets right.

    Args:
        model: the classifier (evaluated in eval mode, mode restored).
        x: ``[N, C, H, W]`` inputs; y: ``[N]`` labels.
        num_classes: length of the result (default ``y.max() + 1``).
        batch_size: inputs per forward pass.

    Returns:
        ``[num_classes]`` medians (``nan`` for a class without a correct input).
    """
    if len(x) != len(y) or len(x) == 0:
        raise ParameterError("x and y must be non-empty and of the same length")
    device = _model_device(model)
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    losses, correct = [], []
    with _EvalMode(model):
        for lo in range(0, len(x), batch_size):
            logits = model(x[lo:lo + batch_size].to(device)).float().cpu()
            yb = y[lo:lo + batch_size].cpu()
            losses.append(F.cross_entropy(logits, yb, reduction="none"))
            correct.append(logits.argmax(1) == yb)
    loss, ok, y = torch.cat(losses), torch.cat(correct), y.cpu()
    out = torch.full((k,), math.nan)
    for cls in range(k):
        sel = loss[ok & (y == cls)]
        if len(sel):
            out[cls] = sel.median()
    return out


class BarrierRecorder:
    """A ``callback(step, model)`` for :func:`mcutils.training.train` that follows the
    barriers of fixed pairs during training.

    Every ``every`` steps it evaluates the straight-path loss profiles of the pairs
    (:func:`loss_profiles`, ``num_points`` points) and stores, per pair, the barrier
    (``"gap"``: highest loss minus the worse endpoint), the highest loss (``"max"``) and
    the worse endpoint loss. Call it once with step 0 before training to include the
    initial network.

    Args:
        a, c: ``[pairs, C, H, W]`` fixed endpoints.
        targets: ``[pairs]`` classes.
        num_points: points per straight path.
        every: record every ``every``-th step (step 0 always).
        max_step: ignore steps after this one (``None``: all).
        batch_size: points per forward pass.

    Attributes:
        steps: recorded steps; ``barriers``, ``peaks``, ``end_losses``: one ``[pairs]``
            tensor per recorded step (see :meth:`as_tensors`).
    """

    def __init__(self, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                 num_points: int = 33, every: int = 1, max_step: int | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        _check_pairs(a, c, targets)
        if not isinstance(num_points, int) or num_points < 2:
            raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
        if not isinstance(every, int) or every < 1:
            raise ParameterError(f"every={every!r} must be a positive integer")
        self.a, self.c = a.detach().cpu(), c.detach().cpu()
        self.targets = torch.as_tensor(targets).cpu()
        self.num_points, self.every, self.max_step = num_points, every, max_step
        self.batch_size = batch_size
        self.steps: list[int] = []
        self.barriers: list[torch.Tensor] = []
        self.peaks: list[torch.Tensor] = []
        self.end_losses: list[torch.Tensor] = []

    def __call__(self, step: int, model: nn.Module) -> None:
        """Record the pairs' barriers under ``model`` if ``step`` is due."""
        if step % self.every != 0 or (self.max_step is not None and step > self.max_step):
            return
        prof = loss_profiles(model, self.a, self.c, self.targets, num_points=self.num_points,
                             batch_size=self.batch_size)
        self.steps.append(int(step))
        self.barriers.append(barrier(prof, "gap"))
        self.peaks.append(barrier(prof, "max"))
        self.end_losses.append(torch.maximum(prof[:, 0], prof[:, -1]))

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """``steps [S]`` and ``barriers``, ``peaks``, ``end_losses`` as ``[S, pairs]``."""
        if not self.steps:
            raise RuntimeError("nothing recorded yet")
        return dict(steps=torch.tensor(self.steps), barriers=torch.stack(self.barriers),
                    peaks=torch.stack(self.peaks), end_losses=torch.stack(self.end_losses))
