"""Constants and argument checks shared by the inputspace modules."""

from __future__ import annotations

import torch

from mcutils.core.checks import ParameterError

BARRIER_KINDS = ("gap", "max")
# batch size of batched evaluations: None = the machine's speed plan chooses
# (mcutils.core.runtime.prepare); an explicit batch_size always wins
DEFAULT_BATCH_SIZE: int | None = None


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
