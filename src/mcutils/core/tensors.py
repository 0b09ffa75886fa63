"""Per-row norms and broadcasting of batches of inputs ``[N, ...]``.

Used by the attacks and the input-space paths (chapters 01, 03, 04 and 07).
"""

from __future__ import annotations

import torch

from mcutils.core.checks import ParameterError

__all__ = ["NORMS", "flat_norm", "bview"]

NORMS = ("linf", "l2")


def flat_norm(x: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Per-row norm of ``x [N, ...]``: ``"l2"`` (default) or ``"linf"``."""
    flat = x.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(dim=1)
    raise ParameterError(f"norm={norm!r} is not known; valid values: {NORMS}")


def bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-row vector ``[N]`` to broadcast against ``like`` ``[N, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))
