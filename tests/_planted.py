"""A hand-built model with a planted input-space barrier, shared by the inputspace tests."""

from __future__ import annotations

import torch
from torch import nn


class Bump(nn.Module):
    """Two classes; the loss of class 0 is a Gaussian bump of height ``h`` around ``m``."""

    def __init__(self, m: torch.Tensor, width: float = 0.3, height: float = 6.0):
        super().__init__()
        self.register_buffer("m", m)
        self.width, self.height = width, height
        self.dummy = nn.Parameter(torch.zeros(1))  # so the model has a parameter/device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d2 = (x - self.m).flatten(1).pow(2).sum(1)
        bump = self.height * torch.exp(-d2 / (2 * self.width ** 2)) + 0 * self.dummy
        return torch.stack([torch.zeros_like(bump), bump - 3.0], dim=1)


def planted():
    """A model with a barrier planted near (not on) the middle of every pair's segment."""
    d = (1, 4, 4)
    a = torch.full((3, *d), 0.2)
    c = torch.full((3, *d), 0.8)
    a[1] += 0.05 * torch.arange(16).view(1, 4, 4) / 16
    m = 0.5 * (a[0] + c[0])
    off = torch.zeros(d)
    off[0, 0, 0], off[0, 0, 1] = 0.05, -0.05  # orthogonal to c - a (a constant image)
    model = Bump(m + off)
    return model, a, c, torch.zeros(3, dtype=torch.long)
