"""Tiny models and data shared by the tests of the repair methods and of chapter 05."""

import torch

from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=3, in_channels=1, input_size=8, width=4,
                       hidden=16).eval()


def _preresnet(seed=0):
    torch.manual_seed(seed)
    return build_model("preresnet20", num_classes=3, in_channels=1, input_size=8, width=4).eval()


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long() + (x.mean((1, 2, 3)) > 0.5)
    return ImageDataset(x, y, dataset_info("digits"), "train")


def _loader(n=96):
    return TensorLoader(_data(n), 32, shuffle=True)
