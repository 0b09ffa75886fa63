"""Tiny hand-written classifiers shared by the tests of the percolation study (chapter 02)."""

from __future__ import annotations

import torch
from torch import nn


class Halfspace(nn.Module):
    """Logits (-z, z) with z = first pixel - 0.5: class 1 where the first pixel > 0.5."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        z = (x.flatten(1)[:, :1] - 0.5) * self.scale
        return torch.cat([-z, z], 1)
