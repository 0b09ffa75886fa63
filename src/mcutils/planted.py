"""Hand-built classifiers with known input-space geometry, for negative controls.

A check of a claim is only worth something if it can fail. These models make the
claim true or false by construction, so a chapter (or a test) can run its check on them:

* :class:`Bump`: two classes; class 0's loss is a Gaussian bump around one point. A
  straight path through the bump has a barrier that a detour removes, so
  :func:`mcutils.inputspace.connect` must connect the pairs of :func:`bump_pairs`.
* :class:`TwoBalls`: class 0 is the union of two disjoint balls; outside them class 1
  wins. Any path between the balls leaves class 0, so no bypass can connect a pair of
  :func:`two_ball_pairs`, and ``connect`` must say "not connected". :func:`one_ball_pairs`
  puts both ends of every pair in one ball instead: a convex region, whose straight
  paths have no barrier at all (the loss is convex along any segment inside it).
* :func:`detour_pairs`: many pairs whose chords all pass next to one :class:`Bump`, so
  wide that every connecting path must leave the chord by a known distance: a claim that
  connecting paths are nearly straight is false on them by construction
  (:func:`detour_min_length`).
* :class:`PlantedBarrier`: any classifier with a known barrier planted on given straight
  paths: the logit of each path's class is lowered by a Gaussian bump at the path's
  midpoint, so the path rises over a barrier of about ``height`` nats while its ends
  keep their loss. :func:`midpoint_barrier` plants one on the paths ``a -> c``.

Used by the negative controls of connectivity, barriers and straightness (chapters 01
and 03), chapter 02's control of the one-patch check
(:mod:`mcutils.chapters.ch02_percolation_checks`), chapter 04's control of flat
within-class paths, and by the tests of the input-space paths.
"""

from __future__ import annotations

import torch
from torch import nn

from mcutils.core.checks import check_positive

__all__ = ["Bump", "PlantedBarrier", "TwoBalls", "bump_pairs", "midpoint_barrier",
           "one_ball_pairs", "two_ball_pairs", "detour_pairs", "detour_min_length"]


class Bump(nn.Module):
    """Two classes; the loss of class 0 is a Gaussian bump of height ``height`` around
    ``m`` (logits ``[0, bump - 3]``), low everywhere else."""

    def __init__(self, m: torch.Tensor, width: float = 0.3, height: float = 6.0):
        super().__init__()
        check_positive(width=width, height=height)
        self.register_buffer("m", m)
        self.width, self.height = width, height
        self.dummy = nn.Parameter(torch.zeros(1))  # so the model has a parameter/device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d2 = (x - self.m).flatten(1).pow(2).sum(1)
        bump = self.height * torch.exp(-d2 / (2 * self.width ** 2)) + 0 * self.dummy
        return torch.stack([torch.zeros_like(bump), bump - 3.0], dim=1)


def bump_pairs() -> tuple[Bump, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A :class:`Bump` with its barrier planted near (not on) the middle of each of three
    pairs' segments, and the pairs ``(model, a, c, targets)`` (1x4x4 images, class 0)."""
    d = (1, 4, 4)
    a = torch.full((3, *d), 0.2)
    c = torch.full((3, *d), 0.8)
    a[1] += 0.05 * torch.arange(16).view(1, 4, 4) / 16
    m = 0.5 * (a[0] + c[0])
    off = torch.zeros(d)
    off[0, 0, 0], off[0, 0, 1] = 0.05, -0.05  # orthogonal to c - a (a constant image)
    return Bump(m + off), a, c, torch.zeros(3, dtype=torch.long)


class TwoBalls(nn.Module):
    """Class 0 inside either of two balls (centres ``p``, ``q``, radius ``radius``),
    class 1 outside: logits ``[sharpness * (radius - distance to the nearer centre), 0]``.
    The class-0 region has two components, so any path between them crosses class 1."""

    def __init__(self, p: torch.Tensor, q: torch.Tensor, radius: float = 0.4,
                 sharpness: float = 20.0):
        super().__init__()
        check_positive(radius=radius, sharpness=sharpness)
        if p.shape != q.shape:
            raise ValueError("the two centres must have one shape")
        if float((p - q).norm()) <= 2 * radius:
            raise ValueError("the balls overlap: the region would be connected")
        self.register_buffer("p", p)
        self.register_buffer("q", q)
        self.radius, self.sharpness = radius, sharpness
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dp = (x - self.p).flatten(1).norm(dim=1)
        dq = (x - self.q).flatten(1).norm(dim=1)
        s = self.sharpness * (self.radius - torch.minimum(dp, dq)) + 0 * self.dummy
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def two_ball_pairs(num_pairs: int = 4, seed: int = 0
                   ) -> tuple[TwoBalls, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A :class:`TwoBalls` on 1x4x4 images and ``num_pairs`` pairs of class 0 with one
    end in each ball (inside the pixel box), as ``(model, a, c, targets)``."""
    if not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs={num_pairs!r} must be a positive integer")
    d = (1, 4, 4)
    p, q = torch.full(d, 0.2), torch.full(d, 0.8)
    gen = torch.Generator().manual_seed(seed)
    def jitter() -> torch.Tensor:  # noqa: E306
        u = torch.randn(num_pairs, *d, generator=gen)
        return 0.15 * u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    return (TwoBalls(p, q), p + jitter(), q + jitter(),
            torch.zeros(num_pairs, dtype=torch.long))


def detour_pairs(num_pairs: int = 20, seed: int = 0, offset: float = 0.05
                 ) -> tuple[Bump, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A :class:`Bump` (default width and height) and ``num_pairs`` pairs of class 0 on
    1x4x4 images whose chords all have their midpoint at the same point, next to (not on)
    the bump's centre, as ``(model, a, c, targets)``.

    The ends are ``p + u`` and ``q - u`` with constant images ``p = 0.2``, ``q = 0.8`` and
    a random zero-mean ``u`` of norm 0.15 per pair, so every chord's midpoint is
    ``(p + q) / 2``; the bump sits at distance ``offset * sqrt(2)`` from it (default 0.05).
    A path whose loss stays within ``tol`` of its worse end must avoid a ball around the
    bump, so its length is at least :func:`detour_min_length` times the chord's. With a
    small ``offset`` the bump is almost centred on every chord, so every direction
    orthogonal to the chord leads out of it alike: a bend in a random direction clears it
    as well as the best bend of the same length.
    """
    if not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs={num_pairs!r} must be a positive integer")
    d = (1, 4, 4)
    p, q = torch.full(d, 0.2), torch.full(d, 0.8)
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(num_pairs, *d, generator=gen)
    u = u - u.mean(dim=(1, 2, 3), keepdim=True)
    u = 0.15 * u / u.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    check_positive(offset=offset)
    off = torch.zeros(d)
    off[0, 0, 0], off[0, 0, 1] = offset, -offset
    return Bump(0.5 * (p + q) + off), p + u, q - u, torch.zeros(num_pairs, dtype=torch.long)


def detour_min_length(model: Bump, a: torch.Tensor, c: torch.Tensor, tol: float) -> torch.Tensor:
    """A lower bound on ``path length / |C - A|`` of any path from ``a[i]`` to ``c[i]`` whose
    class-0 loss stays below the worse end's plus ``tol`` (a *connected* path).

    Such a path avoids the ball around the bump's centre ``m`` where the loss is at least
    that high (radius ``r``, from the bump's formula). It crosses the hyperplane through
    the chord's midpoint ``M`` orthogonal to the chord at a point ``X`` with
    ``|X - M| >= h = r - |m - M|``, so its length is at least
    ``|X - A| + |C - X| >= 2 sqrt((L / 2)^2 + h^2)`` with ``L = |C - A|``.

    Returns:
        ``[pairs]`` the bound (1 where the ball does not reach the chord's midpoint).
    """
    with torch.no_grad():
        end = torch.stack([_class0_loss(model, a), _class0_loss(model, c)]).max(0).values
        # class-0 loss is softplus(bump - 3); it reaches end + tol where bump >= b_tol
        b_tol = 3.0 + torch.log(torch.expm1(end + tol))
        ratio = (b_tol / model.height).clamp(1e-12, 1.0)
        r = model.width * torch.sqrt(-2 * torch.log(ratio))
        mid = 0.5 * (a + c)
        h = (r - (mid - model.m).flatten(1).norm(dim=1)).clamp_min(0)
        half = 0.5 * (c - a).flatten(1).norm(dim=1)
    return torch.sqrt(1 + (h / half) ** 2)


def _class0_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of class 0 for each input (the loss the bypass lowers)."""
    logits = model(x)
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


def one_ball_pairs(num_pairs: int = 4, seed: int = 0
                   ) -> tuple[TwoBalls, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The :class:`TwoBalls` of :func:`two_ball_pairs` with ``num_pairs`` pairs of class 0
    whose two ends lie in the *same* ball, ``(model, a, c, targets)``.

    Inside one ball the class-0 loss ``softplus(sharpness * (|x - p| - radius))`` is a
    convex function of ``x`` (a convex increasing function of a convex one), so along
    the straight segment between two such points it never exceeds the worse endpoint:
    the straight path has no barrier, by construction.
    """
    model, a, _, t = two_ball_pairs(2 * num_pairs, seed)
    return model, a[:num_pairs], a[num_pairs:], t[:num_pairs]


class PlantedBarrier(nn.Module):
    """``model`` with Gaussian bumps subtracted from chosen logits: around each centre
    ``centres[i]`` the logit of class ``classes[i]`` is lowered by
    ``height * exp(-||x - centres[i]||^2 / (2 widths[i]^2))``.

    A straight path through a centre then has a barrier in the loss of that class (at
    least ``height`` minus the model's own logit margin there), while inputs a few widths
    away from every centre are scored as by ``model``.
    """

    def __init__(self, model: nn.Module, centres: torch.Tensor, widths: torch.Tensor,
                 classes: torch.Tensor, height: float = 50.0):
        super().__init__()
        check_positive(height=height)
        widths = torch.as_tensor(widths, dtype=torch.float32)
        classes = torch.as_tensor(classes, dtype=torch.long)
        if not (len(centres) == len(widths) == len(classes)) or len(centres) == 0:
            raise ValueError("need one width and one class per centre, and a centre")
        if (widths <= 0).any():
            raise ValueError("widths must be positive")
        self.model = model
        self.register_buffer("centres", centres.detach().reshape(len(centres), -1).clone())
        self.register_buffer("widths", widths.clone())
        self.register_buffer("classes", classes.clone())
        self.height = float(height)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        flat = x.reshape(len(x), -1).to(self.centres.dtype)
        d2 = torch.cdist(flat, self.centres).pow(2)  # [batch, centres]
        bumps = self.height * torch.exp(-d2 / (2 * self.widths.pow(2)))
        onehot = nn.functional.one_hot(self.classes, z.shape[1]).to(z.dtype)
        return z - bumps.to(z.dtype) @ onehot


def midpoint_barrier(model: nn.Module, a: torch.Tensor, c: torch.Tensor,
                     classes: torch.Tensor, height: float = 50.0,
                     relative_width: float = 0.1) -> PlantedBarrier:
    """:class:`PlantedBarrier` with a bump at the midpoint of every path ``a[i] -> c[i]``
    in the logit of ``classes[i]``, of width ``relative_width`` times the path's length
    (the ends are ``0.5 / relative_width`` widths away, so their loss is unchanged)."""
    check_positive(relative_width=relative_width)
    if a.shape != c.shape or len(a) != len(classes):
        raise ValueError("a and c must have one shape, with one class per path")
    length = (c - a).reshape(len(a), -1).norm(dim=1)
    if (length <= 0).any():
        raise ValueError("every path needs two distinct ends")
    return PlantedBarrier(model, 0.5 * (a + c), relative_width * length, classes, height)
