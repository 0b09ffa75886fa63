"""Learned curves between inputs: the weight-space papers' curve fitting, in input space.

Garipov et al. join two *models* by a curve ``w(t) = sum_k c_k(t) theta_k`` whose inner
bends minimise the expected loss ``E_{t ~ U[0,1]} L(w(t))``. :func:`learn_input_curve`
does the same between two *inputs* ``a`` and ``c`` of one class: the points
``x(t) = sum_k c_k(t) theta_k`` (``theta_0 = a``, ``theta_last = c`` fixed) are trained to
minimise ``E_t CE(model(x(t)), target)``, with the coefficient functions of
:mod:`mcutils.curves` (:class:`~mcutils.curves.Bezier`, :class:`~mcutils.curves.PolyChain`;
no second implementation). Units and the pixel box are handled as in the greedy bypass
(:func:`~mcutils.inputspace.bypass_barrier`): ``space="normalized"`` optimises the bends in
the model's normalised units (the paper's), ``box`` keeps every inner bend inside the
pixel range, and then the whole curve, a convex combination of its bends, stays inside.

* :func:`learn_input_curve` trains the curves of many pairs at once (the pairs do not
  interact: per-element Adam and a loss summed over pairs) and returns an
  :class:`InputCurve`, with snapshots of the bends at chosen step counts;
* :func:`curve_points` and :func:`curve_profiles` evaluate a curve on a dense grid of
  ``t`` (the book checks barriers at 1,000 points);
* :func:`curve_geometry` measures its length and its largest distance from the chord,
  both relative to ``|c - a|``, on the polyline through the grid points.

Used by chapter 07.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import FrozenEval as _FrozenEval
from mcutils.core.runtime import model_device as _model_device
from mcutils.inputspace._common import DEFAULT_BATCH_SIZE, _check_pairs
from mcutils.inputspace.geometry import chord_deviation, relative_path_length
from mcutils.inputspace.paths import loss_profiles
from mcutils.inputspace.synthesis import _check_box, _Space

__all__ = ["InputCurve", "learn_input_curve", "curve_points", "curve_profiles",
           "curve_geometry"]


@dataclass
class InputCurve:
    """Learned curves between the inputs of many pairs.

    Attributes:
        bends: ``[pairs, num_bends, C, H, W]`` all bends in pixel space, the two ends
            included (``bends[:, 0] = a``, ``bends[:, -1] = c``).
        curve: ``"bezier"`` or ``"polychain"``.
        targets: ``[pairs]`` classes.
        history: ``[steps]`` mean cross-entropy over pairs and samples at each step.
        passes: forward plus backward passes spent per pair (a gradient evaluation of one
            input counts two).
        snapshots: ``{step: bends}`` at the requested step counts (the final bends under
            the last step count).
    """

    bends: torch.Tensor
    curve: str
    targets: torch.Tensor
    history: torch.Tensor
    passes: int
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)

    def at(self, step: int) -> InputCurve:
        """The curve as it was after ``step`` steps (a snapshot)."""
        if step not in self.snapshots:
            raise ParameterError(f"no snapshot at step {step}; have {sorted(self.snapshots)}")
        passes = self.passes * step // max(len(self.history), 1)
        return InputCurve(self.snapshots[step], self.curve, self.targets,
                          self.history[:step], passes, {step: self.snapshots[step]})


def _coefficients(curve: str, num_bends: int) -> nn.Module:
    from mcutils.curves import CURVES

    if curve not in CURVES:
        raise ParameterError(f"curve={curve!r} is not known; valid values: {', '.join(CURVES)}")
    return CURVES[curve](num_bends)


def learn_input_curve(model: nn.Module, a: torch.Tensor, c: torch.Tensor,
                      targets: torch.Tensor, curve: str = "bezier", num_bends: int = 3,
                      steps: int = 1024, lr: float = 0.005, samples: int = 1,
                      space: str = "normalized", box: tuple[float, float] | None = None,
                      seed: int = 0, snapshots: Sequence[int] = (),
                      progress: bool = False) -> InputCurve:
    """Fit a curve between every pair ``a[i] -> c[i]`` by minimising the expected loss.

    Each step draws ``samples`` values ``t ~ U[0, 1]`` per pair (seeded), evaluates the
    cross-entropy of the pair's class at ``x(t)`` and takes one Adam step on the inner
    bends, which start on the straight line (``init="linear"`` as in
    :class:`mcutils.curves.CurveModel`, so the untrained curve is the straight path).

    Args:
        model: the classifier (pixel-space input, eval mode is used; weights frozen).
        a, c: ``[pairs, C, H, W]`` the fixed ends (pixel space).
        targets: ``[pairs]`` classes.
        curve: ``"bezier"`` or ``"polychain"`` (:data:`mcutils.curves.CURVES`).
        num_bends: bends including the ends (3: one free bend).
        steps: Adam steps; lr: its learning rate (units of ``space`` per step).
        samples: ``t`` draws per pair and step.
        space: ``"normalized"`` (the paper's units) or ``"pixel"``.
        box: pixel range for the inner bends (``None``: unconstrained, as the paper's
            bypass); the ends must lie inside it.
        seed: seed of the ``t`` draws.
        snapshots: step counts at which the bends are also kept (for budget curves).
        progress: show a tqdm bar.

    Returns:
        An :class:`InputCurve` (CPU tensors).
    """
    _check_pairs(a, c, targets)
    coef = _coefficients(curve, num_bends)
    if num_bends < 3:
        raise ParameterError(f"num_bends={num_bends}: a learned curve needs a free bend (>= 3)")
    for name, v in (("steps", steps), ("samples", samples)):
        if not isinstance(v, int) or v < 1:
            raise ParameterError(f"{name}={v!r} must be a positive integer")
    _check_positive(lr=lr)
    snaps = sorted({int(s) for s in snapshots})
    if any(not 1 <= s <= steps for s in snaps):
        raise ParameterError(f"snapshots={list(snapshots)} must lie in [1, steps={steps}]")
    box = _check_box(box)
    if box is not None and (float(torch.minimum(a, c).min()) < box[0]
                            or float(torch.maximum(a, c).max()) > box[1]):
        raise ParameterError(f"the ends must lie inside box={box}")
    device = _model_device(model)
    sp = _Space(model, space, device)
    za = sp.from_pixel(a.detach().to(device).float())
    zc = sp.from_pixel(c.detach().to(device).float())
    p = za.shape[0]
    inner = torch.tensor([k / (num_bends - 1) for k in range(1, num_bends - 1)], device=device)
    free = torch.stack([torch.lerp(za, zc, float(s)) for s in inner], dim=1)  # [p, K-2, ...]
    free = nn.Parameter(free.clone())
    opt = torch.optim.Adam([free], lr=lr)
    coef = coef.to(device)
    tgt = torch.as_tensor(targets).to(device).repeat_interleave(samples)
    gen = torch.Generator().manual_seed(seed)
    history = torch.empty(steps)
    kept: dict[int, torch.Tensor] = {}
    view = (-1,) + (1,) * (za.dim() - 1)

    def full(z_free: torch.Tensor) -> torch.Tensor:
        return torch.cat([za.unsqueeze(1), z_free, zc.unsqueeze(1)], dim=1)

    with _FrozenEval(model, example=za), torch.enable_grad():
        for step in tqdm(range(steps), desc="learn input curve", disable=not progress,
                         leave=False):
            t = torch.rand(p * samples, generator=gen).to(device)
            cf = coef(t.unsqueeze(1))  # [p*samples, K]
            bends = full(free).repeat_interleave(samples, dim=0)  # [p*samples, K, ...]
            z = (cf.view(*cf.shape, *view[1:]) * bends).sum(1)
            ce = F.cross_entropy(model(sp.to_pixel(z)).float(), tgt, reduction="none")
            loss = ce.view(p, samples).mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if box is not None:
                with torch.no_grad():
                    free.copy_(sp.clamp(free.flatten(0, 1), box).view_as(free))
            history[step] = ce.detach().mean().cpu()
            if step + 1 in snaps:
                kept[step + 1] = sp.to_pixel(full(free.detach()).flatten(0, 1)) \
                    .view(p, num_bends, *za.shape[1:]).cpu()
    bends = sp.to_pixel(full(free.detach()).flatten(0, 1)).view(p, num_bends, *za.shape[1:]).cpu()
    bends[:, 0], bends[:, -1] = a.detach().cpu().float(), c.detach().cpu().float()
    for s in kept:
        kept[s][:, 0], kept[s][:, -1] = bends[:, 0], bends[:, -1]
    kept[steps] = bends
    return InputCurve(bends, curve, torch.as_tensor(targets).cpu(), history,
                      2 * steps * samples, kept)


def curve_points(curve: InputCurve, ts: torch.Tensor | int = 1000) -> torch.Tensor:
    """``[pairs, len(ts), C, H, W]``: the points ``x(t)`` of every curve (pixel space);
    an integer ``ts`` is that many equally spaced points, ends included."""
    if isinstance(ts, int):
        if ts < 2:
            raise ParameterError(f"ts={ts}: need at least 2 points")
        ts = torch.linspace(0, 1, ts)
    ts = torch.as_tensor(ts, dtype=torch.float32)
    if ts.dim() != 1 or (ts < 0).any() or (ts > 1).any():
        raise ParameterError("ts must be a 1-D tensor of values in [0, 1]")
    cf = _coefficients(curve.curve, curve.bends.shape[1])(ts.unsqueeze(1))  # [T, K]
    return torch.einsum("tk,pk...->pt...", cf, curve.bends)


def curve_profiles(model: nn.Module, curve: InputCurve, num_points: int = 1000,
                   batch_size: int | None = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """``[pairs, num_points]`` cross-entropy of each pair's class at equally spaced ``t``
    (ends included), evaluated pair by pair in batches."""
    if not isinstance(num_points, int) or num_points < 2:
        raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
    rows = []
    for i in range(len(curve.targets)):
        one = InputCurve(curve.bends[i:i + 1], curve.curve, curve.targets[i:i + 1],
                         curve.history, curve.passes)
        pts = curve_points(one, num_points)[0]
        tg = curve.targets[i].repeat(num_points)
        rows.append(loss_profiles(model, pts, pts, tg, ts=torch.zeros(1),
                                  batch_size=batch_size)[:, 0])
    return torch.stack(rows)


def curve_geometry(curve: InputCurve, num_points: int = 1000) -> dict[str, torch.Tensor]:
    """Per pair: ``relative_length`` (length / ``|c - a|``) and ``chord_deviation`` (largest
    distance from the line through ``a`` and ``c``, / ``|c - a|``) of the polyline through
    ``num_points`` equally spaced points of the curve."""
    pts = curve_points(curve, num_points)
    verts = list(pts)
    return {"relative_length": relative_path_length(verts),
            "chord_deviation": chord_deviation(verts)}
