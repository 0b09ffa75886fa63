"""How far a piecewise-linear path is from the straight line.

Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mcutils.core.checks import ParameterError
from mcutils.core.tensors import flat_norm as _flat_norm
from mcutils.inputspace._common import _check_pairs

__all__ = ["path_length", "relative_path_length", "detour_angle", "chord_deviation", "relative_deviation",
           "random_bend"]


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


def random_bend(vertices: Sequence[torch.Tensor],
                generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Each path bent by the same distances in a random direction.

    Every interior vertex ``V`` of a path from ``A`` to ``C`` is written as its foot on
    the chord, ``A + s (C - A) / |C - A|``, plus an offset ``o`` orthogonal to the chord;
    the bent path keeps every foot and every offset length ``|o|`` but points all offsets
    along one random unit direction ``u`` orthogonal to the chord (one ``u`` per path,
    uniform on that sphere). The ends, the positions along the chord and the distances
    from it are unchanged, so :func:`chord_deviation` is the same; only the direction of
    the bend is random. A straight path (two vertices) is returned as it is.

    Returns:
        The bent paths, one ``[V_i, C, H, W]`` tensor per path.
    """
    out = []
    for v in vertices:
        if v.dim() < 2 or len(v) < 2:
            raise ParameterError("every path needs at least two vertices")
        if len(v) == 2:
            out.append(v.clone())
            continue
        a = v[0].flatten()
        chord = v[-1].flatten() - a
        length = chord.norm()
        if float(length) == 0:
            raise ParameterError("a path with equal ends has no chord to bend away from")
        e = chord / length
        rel = (v[1:-1].flatten(1) - a)
        along = rel @ e
        offset = (rel - along[:, None] * e).norm(dim=1)
        u = torch.randn(a.shape, generator=generator, dtype=v.dtype)
        u = u - (u @ e) * e
        u = u / u.norm().clamp_min(1e-12)
        inner = a + along[:, None] * e + offset[:, None] * u
        out.append(torch.cat([v[:1], inner.view(-1, *v.shape[1:]), v[-1:]]))
    return out
