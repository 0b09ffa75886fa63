"""Readers of the datasets' on-disk formats: IDX (MNIST, Fashion-MNIST), CIFAR-10's python
batches, SVHN's ``.mat`` files, scikit-learn's digits, and folders of images.

Used by :func:`mcutils.data.loading.load_dataset` (every chapter) and, for ImageNet images under
the gpu profile, by chapter 01 (:func:`load_image_folder`).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mcutils.core.checks import ParameterError

__all__ = ["read_idx", "load_image_folder"]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtype_code, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{dtype_code:02x}")
    dims = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({data.size} of {np.prod(dims)} values)")
    return data.reshape(dims)


_IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _idx_folders(root: Path, tv_name: str) -> list[Path]:
    return [root, root / "raw", root / tv_name / "raw", root / tv_name]


def _load_idx_dataset(name: str, split: str, folders: list[Path]):
    img_stem, lbl_stem = _IDX_STEMS[split]
    img, lbl = _find_file(folders, img_stem), _find_file(folders, lbl_stem)
    if img is None or lbl is None:
        return None
    x = read_idx(img).astype(np.float32)[:, None] / 255.0
    y = read_idx(lbl).astype(np.int64)
    return x, y


def _load_cifar10(split: str, folders: list[Path]):
    for folder in folders:
        base = folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder
        files = [base / f"data_batch_{i}" for i in range(1, 6)] if split == "train" \
            else [base / "test_batch"]
        if all(f.is_file() for f in files):
            xs, ys = [], []
            for f in files:
                with open(f, "rb") as fh:
                    entry = pickle.load(fh, encoding="bytes")
                xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry[b"labels"], dtype=np.int64))
            return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)
    return None


def _load_svhn(split: str, folders: list[Path]):
    from scipy.io import loadmat

    for folder in folders:
        f = folder / f"{split}_32x32.mat"
        if f.is_file():
            mat = loadmat(f)
            x = np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.float32) / 255.0
            y = mat["y"].astype(np.int64).reshape(-1)
            y[y == 10] = 0
            return x, y
    return None


def _load_digits(split: str):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    n_train = int(0.8 * len(y))
    idx = perm[:n_train] if split == "train" else perm[n_train:]
    return x[idx], y[idx]


def load_image_folder(root: str, size: int = 224, categories: Sequence[str] | None = None,
                      max_per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                   list[str]]:
    """Images from ``root/<class>/*.{png,jpg,jpeg}``, resized and centre-cropped.

    This is the paper's ImageNet setting: a user-given folder of images per class,
    evaluated by a pretrained torchvision model. A sub-folder name is either an
    integer class index or a name in ``categories`` (for example
    ``weights.meta["categories"]`` of the torchvision model).

    Args:
        root: the folder.
        size: output side (resize the short side to ``size``, then centre-crop).
        categories: class names indexed by label.
        max_per_class: keep at most this many images per class (sorted by file name).

    Returns:
        ``(x [N, 3, size, size] in [0, 1], y [N], class_names)``.

    Raises:
        ParameterError: missing folder, unknown class names or no images.
    """
    from PIL import Image
    from torchvision.transforms import functional as TF

    folder = Path(root)
    if not folder.is_dir():
        raise ParameterError(f"image_folder={str(root)!r} is not a folder; it must hold one "
                             "sub-folder of images per class")
    xs, ys, names = [], [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.isdigit():
            label = int(sub.name)
        elif categories is not None and sub.name in categories:
            label = list(categories).index(sub.name)
        else:
            raise ParameterError(f"class folder {sub.name!r} is neither a class index nor a "
                                 "known category name")
        files = sorted(f for f in sub.iterdir()
                       if f.suffix.lower() in (".png", ".jpg", ".jpeg"))[:max_per_class]
        for f in files:
            img = Image.open(f).convert("RGB")
            img = TF.center_crop(TF.resize(img, size), [size, size])
            xs.append(TF.to_tensor(img))
            ys.append(label)
        names.append(sub.name)
    if not xs:
        raise ParameterError(f"no .png/.jpg images found under {str(root)!r}")
    return torch.stack(xs), torch.tensor(ys), names
