"""Straight paths between inputs, their loss profiles and barriers, batched over pairs.

Used by chapters 01, 03 and 04.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import planned_inference as _planned_inference
from mcutils.core.tensors import bview as _bview
from mcutils.inputspace._common import BARRIER_KINDS, DEFAULT_BATCH_SIZE, _check_pairs

__all__ = ["interpolate", "linear_path", "interpolated_inputs", "segment_losses", "loss_profiles", "barrier", "find_barrier", "connected_fraction", "rounds_needed", "class_reference_loss", "BarrierRecorder"]


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


def segment_losses(model: nn.Module, starts: torch.Tensor, ends: torch.Tensor,
                   targets: torch.Tensor, seg_index: torch.Tensor, t: torch.Tensor,
                   batch_size: int | None = DEFAULT_BATCH_SIZE,
                   channels_last: bool | None = None) -> torch.Tensor:
    """Cross-entropy at arbitrary points of many segments, in flattened batches.

    Point ``k`` is ``starts[seg_index[k]] + t[k] (ends - starts)[seg_index[k]]`` with
    target ``targets[seg_index[k]]``. Only one batch of points exists at a time.
    This is the engine under :func:`loss_profiles`, :func:`find_barrier` and
    :func:`path_profiles`. It runs under the machine's speed plan
    (:func:`mcutils.core.runtime.prepare`: memory format and batch size); the model's
    train/eval mode, device and weight layout are restored afterwards.

    Args:
        model: the classifier.
        starts, ends: ``[segments, C, H, W]``.
        targets: ``[segments]`` class indices.
        seg_index: ``[K]`` segment of each point.
        t: ``[K]`` position of each point on its segment.
        batch_size: points per forward pass (``None``: the plan's batch size).
        channels_last: memory format (``None``: the plan's).

    Returns:
        ``[K]`` losses (float32, on the CPU).
    """
    _check_pairs(starts, ends, targets)
    if seg_index.shape != t.shape or seg_index.dim() != 1:
        raise ParameterError("seg_index and t must be 1-D tensors of the same length")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise ParameterError(f"batch_size={batch_size!r} must be a positive integer")
    out = torch.empty(len(t), dtype=torch.float32)
    with _planned_inference(model, starts, batch_size,
                            channels_last=channels_last) as plan:
        device, bs = plan.device, plan.batch_size
        starts = starts.to(device)
        delta = ends.to(device) - starts
        targets = torch.as_tensor(targets).to(device)
        seg_index = seg_index.to(device)
        t = t.to(device=device, dtype=starts.dtype)
        for lo in range(0, len(t), bs):
            idx = seg_index[lo:lo + bs]
            tb = t[lo:lo + bs]
            x = torch.addcmul(starts.index_select(0, idx), _bview(tb, delta),
                              delta.index_select(0, idx))
            logits = model(plan.input(x))
            out[lo:lo + len(idx)] = F.cross_entropy(logits.float(), targets.index_select(0, idx),
                                                    reduction="none").cpu()
    return out


def loss_profiles(model: nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                  num_points: int = 100, batch_size: int | None = DEFAULT_BATCH_SIZE,
                  ts: torch.Tensor | None = None,
                  channels_last: bool | None = None) -> torch.Tensor:
    """Cross-entropy of the target class along the straight paths ``a -> c``.

    All ``pairs x points`` inputs are evaluated in flattened batches under
    :func:`torch.inference_mode` and the machine's speed plan (see
    :func:`segment_losses`; the model's mode, device and layout are restored).

    Args:
        model: the classifier (pixel-space input).
        a, c: ``[pairs, C, H, W]`` endpoints.
        targets: ``[pairs]`` target class of each pair.
        num_points: evenly spaced points in ``[0, 1]``, both ends included.
        batch_size: points per forward pass (``None``: the plan's batch size).
        ts: optional positions instead of the even grid: ``[points]`` (shared) or
            ``[pairs, points]``.
        channels_last: memory format (``None``: the plan's).

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
                          batch_size=batch_size, channels_last=channels_last)
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
                 batch_size: int | None = DEFAULT_BATCH_SIZE
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
        batch_size: points per forward pass (``None``: the speed plan's).

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


def class_reference_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         num_classes: int | None = None,
                         batch_size: int | None = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Median cross-entropy of the correctly classified inputs of each class.

    A loss scale for barrier tolerances: a barrier below it is smaller than the loss
    the model typically has on a real input it gets right.

    Args:
        model: the classifier (evaluated in eval mode under the speed plan; its mode,
            device and layout are restored).
        x: ``[N, C, H, W]`` inputs; y: ``[N]`` labels.
        num_classes: length of the result (default ``y.max() + 1``).
        batch_size: inputs per forward pass (``None``: the plan's batch size).

    Returns:
        ``[num_classes]`` medians (``nan`` for a class without a correct input).
    """
    if len(x) != len(y) or len(x) == 0:
        raise ParameterError("x and y must be non-empty and of the same length")
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    losses, correct = [], []
    with _planned_inference(model, x, batch_size) as plan:
        bs = plan.batch_size
        for lo in range(0, len(x), bs):
            logits = model(plan.input(x[lo:lo + bs])).float().cpu()
            yb = y[lo:lo + bs].cpu()
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
        batch_size: points per forward pass (``None``: the speed plan's).

    Attributes:
        steps: recorded steps; ``barriers``, ``peaks``, ``end_losses``: one ``[pairs]``
            tensor per recorded step (see :meth:`as_tensors`).
    """

    def __init__(self, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                 num_points: int = 33, every: int = 1, max_step: int | None = None,
                 batch_size: int | None = DEFAULT_BATCH_SIZE):
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
