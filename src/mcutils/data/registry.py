"""The dataset registry: names, shapes, classes and statistics (:data:`DATASETS`), and
the in-memory containers every loader returns (:class:`ImageDataset`, batched by
:class:`TensorLoader`).

Used by every chapter (00-06), which validates its ``dataset`` parameter against
:data:`DATASETS`; chapters 03 and 05 batch with :class:`TensorLoader`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mcutils.core.checks import ParameterError

__all__ = ["FASHION_SYSTEM_DIR", "DATASETS", "SPLITS", "DatasetInfo", "DatasetNotFoundError", "ImageDataset", "TensorLoader", "dataset_info"]


FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on this machine."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: shape, classes and normalisation statistics."""

    name: str
    in_channels: int
    input_size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.input_size, self.input_size)


_CIFAR10 = (("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,), (0.3530,),
    ),
    "mnist": DatasetInfo("mnist", 1, 28, tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo("cifar10", 3, 32, *_CIFAR10),
    "svhn": DatasetInfo(
        "svhn", 3, 32, tuple(str(i) for i in range(10)),
        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
    ),
    "digits": DatasetInfo("digits", 1, 8, tuple(str(i) for i in range(10)), (0.3047,), (0.3773,)),
    # CIFAR-10's class names and statistics, so models built for one fit the other
    "synthetic-cifar10": DatasetInfo("synthetic-cifar10", 3, 32, *_CIFAR10),
}


SPLITS = ("train", "test")


class ImageDataset(TensorDataset):
    """A whole split in memory: ``x`` (float32 in [0,1], ``[N,C,H,W]``) and ``y`` (int64)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo, split: str):
        super().__init__(x, y)
        self.info = info
        self.split = split

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def subset(self, indices: torch.Tensor | np.ndarray | list[int]) -> "ImageDataset":
        """A new dataset with the given rows."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.x[idx], self.y[idx], self.info, self.split)

    def split_off(self, n: int, seed: int = 0) -> tuple["ImageDataset", "ImageDataset"]:
        """Randomly split into two disjoint parts of sizes ``n`` and ``len - n``."""
        if not 0 <= n <= len(self):
            raise ParameterError(f"n={n} must lie in [0, {len(self)}]")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return self.subset(perm[:n]), self.subset(perm[n:])

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)})"


class TensorLoader:
    """A fast loader over in-memory tensors: yields slices, no per-sample collate.

    On a CPU a :class:`torch.utils.data.DataLoader` spends much of its time
    collating single samples; slicing a shuffled index is several times faster.

    Args:
        dataset: an :class:`ImageDataset` or any :class:`TensorDataset`.
        batch_size: batch size.
        shuffle: reshuffle every epoch with a generator seeded by ``seed`` + epoch.
        seed: base seed of the shuffling.
        drop_last: drop a last incomplete batch.
        device: move batches to this device.
    """

    def __init__(self, dataset: TensorDataset, batch_size: int = 128, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, device: torch.device | str | None = None):
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be >= 1")
        self.dataset = dataset
        self.tensors = dataset.tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = None
        self.epoch += 1
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = order[sl] if order is not None else sl
            batch = tuple(t[idx] for t in self.tensors)
            if self.device is not None:
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            yield batch


def dataset_info(name: str) -> DatasetInfo:
    """Facts about a registered dataset; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise ParameterError(
            f"dataset={name!r} is not known; valid values: {', '.join(DATASETS)}"
        )
    return DATASETS[name]


def _default_root() -> Path:
    return Path(os.environ.get("MCUTILS_DATA", Path.home() / ".cache" / "mcutils-data"))


def _not_found(name: str, split: str, searched: list[Path]) -> DatasetNotFoundError:
    where = ", ".join(str(p) for p in searched)
    hint = {
        "fashion-mnist": "install Debian's package (`apt-get update && apt-get install "
                         "dataset-fashion-mnist`, or `make data`), which puts the IDX files in "
                         f"{FASHION_SYSTEM_DIR}; or",
        "mnist": "put the IDX files (train-images-idx3-ubyte[.gz] ...) in `root`; or",
        "cifar10": "put the python batches (cifar-10-batches-py/) in `root`; or",
        "svhn": "put train_32x32.mat / test_32x32.mat in `root`; or",
    }[name]
    return DatasetNotFoundError(
        f"dataset {name!r} ({split}) was not found (searched: {where}). To get it: {hint} "
        f"call load_dataset({name!r}, {split!r}, root=DIR, download=True) on a machine with "
        "internet access to let torchvision download it."
    )
