"""Dataset registry: Fashion-MNIST (default), MNIST, CIFAR-10, SVHN and digits.

Every loader returns an :class:`ImageDataset` holding the whole split as tensors:
images as float32 in ``[0, 1]`` with shape ``[N, C, H, W]`` and integer labels.
Normalisation lives inside the models (:class:`mcutils.models.Normalize`), so attacks
and interpolation work in pixel space.

Where the files come from, in order: the system folder (Fashion-MNIST only: Debian's
``dataset-fashion-mnist`` package puts the IDX files in
``/usr/share/datasets/fashion-mnist``), ``root`` (or ``$MCUTILS_DATA``), and, only
with ``download=True``, torchvision's downloader. Nothing in the default path downloads.

Used by every chapter (00-06), which loads its splits with :func:`load_dataset` and
validates its ``dataset`` parameter against :data:`DATASETS`; chapters 01 and 03 draw
same-class pairs with :func:`class_pairs`, chapters 03 and 05 batch with
:class:`TensorLoader`, and chapter 01 reads ImageNet images with
:func:`load_image_folder` under the gpu profile.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from mcutils.runtime import ParameterError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ImageDataset",
    "TensorLoader",
    "dataset_info",
    "load_dataset",
    "read_idx",
    "class_pairs",
    "matched_pairs",
    "load_image_folder",
]

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


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,), (0.3530,),
    ),
    "mnist": DatasetInfo("mnist", 1, 28, tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "svhn": DatasetInfo(
        "svhn", 3, 32, tuple(str(i) for i in range(10)),
        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
    ),
    "digits": DatasetInfo("digits", 1, 8, tuple(str(i) for i in range(10)), (0.3047,), (0.3773,)),
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


# ---------------------------------------------------------------- file formats


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


def _download(name: str, split: str, root: Path):
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    train = split == "train"
    if name == "fashion-mnist":
        ds = tvd.FashionMNIST(root, train=train, download=True)
    elif name == "mnist":
        ds = tvd.MNIST(root, train=train, download=True)
    elif name == "cifar10":
        ds = tvd.CIFAR10(root, train=train, download=True)
    elif name == "svhn":
        ds = tvd.SVHN(root, split=split, download=True)
    else:  # pragma: no cover - digits never downloads
        raise AssertionError(name)
    del ds


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


def _default_root() -> Path:
    return Path(os.environ.get("MCUTILS_DATA", Path.home() / ".cache" / "mcutils-data"))


def load_dataset(name: str = "fashion-mnist", split: str = "train", root: str | Path | None = None,
                 download: bool = False, subset: int | None = None, seed: int = 0) -> ImageDataset:
    """Load one split of a registered dataset into memory.

    Args:
        name: one of :data:`DATASETS` (``fashion-mnist``, ``mnist``, ``cifar10``,
            ``svhn``, ``digits``).
        split: ``"train"`` or ``"test"``.
        root: a folder with the dataset's files in their original format (IDX for
            MNIST/Fashion-MNIST, the python pickle batches for CIFAR-10, ``.mat``
            for SVHN); defaults to ``$MCUTILS_DATA`` or ``~/.cache/mcutils-data``.
        download: let torchvision download into ``root`` if the files are missing.
        subset: keep a random subset of this size (seeded by ``seed``).
        seed: seed of the subset.

    Returns:
        An :class:`ImageDataset` with pixel values in ``[0, 1]``.

    Raises:
        ParameterError: unknown name or split, bad subset size.
        DatasetNotFoundError: the files are missing; the message says how to get them.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ParameterError(f"split={split!r} is not known; valid values: {', '.join(SPLITS)}")
    if subset is not None and (not isinstance(subset, int) or subset < 1):
        raise ParameterError(f"subset={subset!r} must be a positive integer or None")
    root_path = Path(root) if root is not None else _default_root()

    def attempt():
        if name == "digits":
            return _load_digits(split)
        if name == "fashion-mnist":
            return _load_idx_dataset(name, split, [FASHION_SYSTEM_DIR,
                                                   *_idx_folders(root_path, "FashionMNIST")])
        if name == "mnist":
            return _load_idx_dataset(name, split, _idx_folders(root_path, "MNIST"))
        if name == "cifar10":
            return _load_cifar10(split, [root_path])
        return _load_svhn(split, [root_path])

    arrays = attempt()
    if arrays is None and download:
        _download(name, split, root_path)
        arrays = attempt()
    if arrays is None:
        searched = ([FASHION_SYSTEM_DIR] if name == "fashion-mnist" else []) + [root_path]
        raise _not_found(name, split, searched)
    x, y = arrays
    ds = ImageDataset(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y), info, split)
    if subset is not None and subset < len(ds):
        perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
        ds = ds.subset(perm[:subset].sort().values)
    return ds


def class_pairs(labels: torch.Tensor, pairs_per_class: int, seed: int = 0,
                classes: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs of distinct indices with the same label, balanced over classes.

    Args:
        labels: ``[N]`` labels (e.g. a dataset's ``y`` restricted to correct predictions).
        pairs_per_class: pairs drawn per class (classes with < 2 members are skipped).
        seed: seed of the draw.
        classes: restrict to these classes.

    Returns:
        ``(i, j)``: two ``[P]`` index tensors with ``labels[i] == labels[j]`` and ``i != j``.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    firsts, seconds = [], []
    for c in (classes if classes is not None else sorted(labels.unique().tolist())):
        members = (labels == c).nonzero().flatten()
        if len(members) < 2:
            continue
        a = torch.randint(len(members), (pairs_per_class,), generator=gen)
        shift = torch.randint(1, len(members), (pairs_per_class,), generator=gen)
        firsts.append(members[a])
        seconds.append(members[(a + shift) % len(members)])
    if not firsts:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(firsts), torch.cat(seconds)


def matched_pairs(labels_a: torch.Tensor, labels_b: torch.Tensor, pairs_per_class: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs ``(i, j)`` across two sets with ``labels_a[i] == labels_b[j]``.

    Pairs real images with interpolated or synthetic ones of the same class (within
    one set, use :func:`mcutils.data.class_pairs`). Classes missing from either set
    are skipped.

    Returns:
        ``(i, j)``: ``[P]`` indices into the first and the second set.
    """
    if not isinstance(pairs_per_class, int) or pairs_per_class < 1:
        raise ParameterError(f"pairs_per_class={pairs_per_class!r} must be a positive integer")
    gen = torch.Generator().manual_seed(seed)
    labels_a, labels_b = torch.as_tensor(labels_a), torch.as_tensor(labels_b)
    first, second = [], []
    for cls in sorted(set(labels_a.tolist()) & set(labels_b.tolist())):
        ia = (labels_a == cls).nonzero().flatten()
        ib = (labels_b == cls).nonzero().flatten()
        first.append(ia[torch.randint(len(ia), (pairs_per_class,), generator=gen)])
        second.append(ib[torch.randint(len(ib), (pairs_per_class,), generator=gen)])
    if not first:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(first), torch.cat(second)


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
