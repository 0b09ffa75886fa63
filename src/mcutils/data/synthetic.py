"""``synthetic-cifar10``: CIFAR-shaped data (3x32x32, ten classes a network can learn)
written in CIFAR-10's on-disk format, so the CIFAR loading path and 32x32 colour models run
with no download. Its numbers mean nothing about CIFAR-10.

Used by the ``gpu-smoke`` profile (every chapter's CUDA path) and by the tests of the
CIFAR reader; not by the chapters' science.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from mcutils.data.registry import DATASETS

from mcutils.core.checks import ParameterError

__all__ = ["write_cifar10_batches"]


def _synthetic_folder(root: Path) -> Path:
    return Path(root) / "synthetic-cifar10"


def write_cifar10_batches(folder: str | Path, n_train: int = 6000, n_test: int = 2000,
                          seed: int = 0) -> Path:
    """Write CIFAR-shaped data with ten learnable classes in CIFAR-10's on-disk format.

    Each class has a smooth random colour template; an image is its class template plus
    smooth and pixel noise, so a small network learns the classes within an epoch. The
    files are CIFAR-10's python pickles (``data_batch_1`` ... ``data_batch_5``,
    ``test_batch``, ``batches.meta`` in ``cifar-10-batches-py/``), written to a temporary
    folder and renamed into place, so concurrent writers never expose half a dataset.

    Args:
        folder: where ``cifar-10-batches-py/`` goes.
        n_train: training images (split over five batches; a multiple of 5).
        n_test: test images.
        seed: seed of the templates and the noise.

    Returns:
        ``folder``.
    """
    if n_train < 5 or n_train % 5 or n_test < 1:
        raise ParameterError(f"need n_train a positive multiple of 5 and n_test >= 1 "
                             f"(got {n_train}, {n_test})")
    folder = Path(folder)
    final = folder / "cifar-10-batches-py"
    if final.is_dir():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def smooth(n: int, scale: float) -> np.ndarray:
        coarse = torch.from_numpy(rng.normal(0, scale, (n, 3, 4, 4)).astype(np.float32))
        return torch.nn.functional.interpolate(coarse, size=32, mode="bilinear",
                                               align_corners=False).numpy()

    templates = smooth(10, 1.0)

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, n)
        x = 0.5 + 0.1 * templates[labels] + smooth(n, 0.15) + rng.normal(0, 0.1, (n, 3, 32, 32))
        return (np.clip(x, 0, 1) * 255).round().astype(np.uint8).reshape(n, 3072), labels.tolist()

    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".cifar-10-batches-py."))
    try:
        per = n_train // 5
        for i in range(1, 6):
            x, y = images(per)
            with open(tmp / f"data_batch_{i}", "wb") as f:
                pickle.dump({b"batch_label": f"synthetic batch {i} of 5".encode(),
                             b"labels": y, b"data": x}, f)
        x, y = images(n_test)
        with open(tmp / "test_batch", "wb") as f:
            pickle.dump({b"batch_label": b"synthetic test batch", b"labels": y, b"data": x}, f)
        with open(tmp / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [c.encode() for c in DATASETS["cifar10"].classes],
                         b"num_vis": 3072}, f)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
