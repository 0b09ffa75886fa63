"""Dataset registry: Fashion-MNIST (default), MNIST, CIFAR-10, SVHN and digits.

Every loader returns an :class:`ImageDataset` holding the whole split as tensors:
images as float32 in ``[0, 1]`` with shape ``[N, C, H, W]`` and integer labels.
Normalisation lives inside the models (:class:`mcutils.models.Normalize`), so attacks
and interpolation work in pixel space.

Where the files come from, in order: the system folder (Fashion-MNIST only: Debian's
``dataset-fashion-mnist`` package puts the IDX files in
``/usr/share/datasets/fashion-mnist``), ``root`` (or ``$MCUTILS_DATA``), and, only
with ``download=True``, the original files at torchvision's published addresses
(:func:`ensure_dataset`): each file's MD5 is verified, a corrupt file is removed and
fetched again, and without a network the error names the folder and the files to place
there. Nothing in the default path downloads.

``synthetic-cifar10`` is CIFAR-shaped data (3x32x32, ten classes that a network can learn)
written by :func:`write_cifar10_batches` in CIFAR-10's on-disk format, so the CIFAR
loading path and 32x32 colour models run with no download (the ``gpu-smoke`` profile
uses it). Its numbers mean nothing about CIFAR-10. :func:`pretrained_weights_file`
checks where the ImageNet weights of a torchvision model are (chapters 01 and 04).

Used by every chapter (00-06), which loads its splits with :func:`load_dataset` and
validates its ``dataset`` parameter against :data:`DATASETS`; chapters 01 and 03 draw
same-class pairs with :func:`class_pairs`, chapters 03 and 05 batch with
:class:`TensorLoader`, and chapter 01 reads ImageNet images with
:func:`load_image_folder` under the gpu profile.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tempfile
import warnings
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
    "DownloadError",
    "ImageDataset",
    "RemoteFile",
    "TensorLoader",
    "class_pairs",
    "dataset_info",
    "ensure_dataset",
    "ensure_datasets",
    "fetch_file",
    "load_dataset",
    "load_image_folder",
    "matched_pairs",
    "pretrained_weights_file",
    "read_idx",
    "remote_files",
    "write_cifar10_batches",
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
    "synthetic-cifar10": DatasetInfo(
        "synthetic-cifar10", 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
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
            ``svhn``, ``digits``, ``synthetic-cifar10``; the last is written on first use).
        split: ``"train"`` or ``"test"``.
        root: a folder with the dataset's files in their original format (IDX for
            MNIST/Fashion-MNIST, the python pickle batches for CIFAR-10, ``.mat``
            for SVHN); defaults to ``$MCUTILS_DATA`` or ``~/.cache/mcutils-data``.
        download: fetch the original files into ``root`` if they are missing
            (:func:`ensure_dataset`: checksums verified, short network time-outs).
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
        if name == "synthetic-cifar10":
            return _load_cifar10(split, [_synthetic_folder(root_path)])
        return _load_svhn(split, [root_path])

    arrays = attempt()
    if arrays is None and (download or name == "synthetic-cifar10"):
        ensure_dataset(name, root_path, download=True, splits=(split,))
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


# ---------------------------------------------------------------- downloads and checksums


class DownloadError(DatasetNotFoundError):
    """A file could not be fetched (no network, HTTP error, or a checksum that never matched)."""

    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True)
class RemoteFile:
    """One original file of a dataset (or of model weights) and how to check it.

    Attributes:
        urls: addresses tried in turn (mirrors).
        path: where it goes, relative to the data root (``MNIST/raw/...``).
        checksum: the expected hex digest (``algorithm`` ``md5``) or its leading digits
            (``sha256``, as in torchvision's weight file names).
        algorithm: ``"md5"`` or ``"sha256"``.
        splits: the splits this file holds.
        members: for an archive, the files it holds once extracted, as
            ``(path relative to the root, md5)``; they are checked after extraction.
    """

    urls: tuple[str, ...]
    path: str
    checksum: str
    algorithm: str = "md5"
    splits: tuple[str, ...] = SPLITS
    members: tuple[tuple[str, str], ...] = ()

    @property
    def filename(self) -> str:
        return Path(self.path).name


def _registry() -> dict[str, list[RemoteFile]]:
    """The original files of each downloadable dataset, with torchvision's addresses and MD5s."""
    import torchvision.datasets as tvd

    def idx(cls, folder: str) -> list[RemoteFile]:
        return [RemoteFile(tuple(m + fname for m in cls.mirrors), f"{folder}/raw/{fname}", md5,
                           splits=("train",) if fname.startswith("train") else ("test",))
                for fname, md5 in cls.resources]

    base = tvd.CIFAR10.base_folder
    members = tuple((f"{base}/{n}", m) for n, m in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list)
    return {
        "mnist": idx(tvd.MNIST, "MNIST"),
        "fashion-mnist": idx(tvd.FashionMNIST, "FashionMNIST"),
        "cifar10": [RemoteFile((tvd.CIFAR10.url,), tvd.CIFAR10.filename, tvd.CIFAR10.tgz_md5,
                               members=members)],
        "svhn": [RemoteFile((url,), fname, md5, splits=(split,))
                 for split, (url, fname, md5) in tvd.SVHN.split_list.items() if split in SPLITS],
    }


def remote_files(name: str, splits: Sequence[str] = SPLITS) -> list[RemoteFile]:
    """The original files of a dataset that hold ``splits`` (torchvision's addresses and MD5s).

    Raises:
        ParameterError: an unknown dataset, or one that is never downloaded (``digits``
            comes with scikit-learn, ``synthetic-cifar10`` is written locally).
    """
    dataset_info(name)
    reg = _registry()
    if name not in reg:
        raise ParameterError(f"dataset {name!r} is never downloaded; downloadable: "
                             f"{', '.join(reg)}")
    return [f for f in reg[name] if set(f.splits) & set(splits)]


def _digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, remote: RemoteFile) -> bool:
    return _digest(path, remote.algorithm).startswith(remote.checksum.lower())


def _download_to(url: str, target: Path, algorithm: str, timeout: float) -> str:
    """Stream ``url`` into a temporary file beside ``target``; return (temp path, digest)."""
    import urllib.request

    h = hashlib.new(algorithm)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "mcutils"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp, h.hexdigest()


def fetch_file(remote: RemoteFile, root: str | Path, timeout: float = 10.0,
               attempts: int = 2) -> Path:
    """Make sure ``root / remote.path`` exists with the right checksum, downloading it if not.

    A file already there with a wrong checksum is removed (with a warning) and fetched
    again; a download whose checksum does not match is discarded and tried again, up
    to ``attempts`` times per address. A file is only ever moved into place whole
    (written beside it, then :func:`os.replace`).

    Args:
        remote: the file (see :func:`remote_files`).
        root: the data root.
        timeout: seconds to wait for a connection or for data before giving up.
        attempts: downloads per address when the checksum does not match.

    Returns:
        The verified file's path.

    Raises:
        DownloadError: every address failed; ``offline`` is True when the failures were
            network errors (no connection, no name resolution, time-out).
    """
    from urllib.error import HTTPError, URLError

    if attempts < 1 or timeout <= 0:
        raise ParameterError(f"need attempts >= 1 and timeout > 0 (got {attempts}, {timeout})")
    target = Path(root) / remote.path
    if target.is_file():
        if _matches(target, remote):
            return target
        warnings.warn(f"{target} fails its {remote.algorithm} check (expected "
                      f"{remote.checksum}); removing it and fetching it again",
                      RuntimeWarning, stacklevel=2)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    network_only = True
    for url in remote.urls:
        for _ in range(attempts):
            try:
                tmp, digest = _download_to(url, target, remote.algorithm, timeout)
            except HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                network_only = False
                break
            except (URLError, OSError) as exc:  # no route, no DNS, refused, time-out
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                break
            if digest.startswith(remote.checksum.lower()):
                os.replace(tmp, target)
                return target
            os.unlink(tmp)
            network_only = False
            errors.append(f"{url}: {remote.algorithm} {digest} does not match {remote.checksum}")
    raise DownloadError(f"could not fetch {remote.filename}: " + "; ".join(errors),
                        offline=network_only)


def _extract(archive: Path, root: Path) -> None:
    import tarfile

    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            tar.extractall(root)


def _present(name: str, root: Path, splits: Sequence[str]) -> bool:
    """Whether the loader would find every split (no checksums: the default path is fast)."""
    for split in splits:
        if name in ("mnist", "fashion-mnist"):
            folders = _idx_folders(root, "MNIST" if name == "mnist" else "FashionMNIST")
            if name == "fashion-mnist":
                folders = [FASHION_SYSTEM_DIR, *folders]
            if any(_find_file(folders, stem) is None for stem in _IDX_STEMS[split]):
                return False
        elif name in ("cifar10", "synthetic-cifar10"):
            folder = _synthetic_folder(root) if name == "synthetic-cifar10" else root
            names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
            if not any(all((base / n).is_file() for n in names)
                       for base in (folder / "cifar-10-batches-py", folder)):
                return False
        elif name == "svhn" and not (root / f"{split}_32x32.mat").is_file():
            return False
    return True


def _placement_hint(name: str, root: Path, splits: Sequence[str]) -> str:
    files = []
    for f in remote_files(name, splits):
        extra = ""
        if f.members:
            folder = f.members[0][0].split("/")[0]
            extra = f", or the extracted folder {folder}/ ({', '.join(Path(m).name for m, _ in f.members)})"
        files.append(f"{f.path} ({f.algorithm} {f.checksum}; from {f.urls[0]}){extra}")
    return f"place these files in {root}: " + "; ".join(files)


def ensure_dataset(name: str, root: str | Path | None = None, download: bool = False,
                   splits: Sequence[str] = SPLITS, timeout: float = 10.0) -> Path:
    """Make sure a dataset's files are on disk; download and verify them if asked.

    With ``download=True``, files at their original paths are checked against
    torchvision's MD5s (a corrupt one is removed and fetched again), missing ones are
    fetched, an archive is extracted and its members are checked. Without it, only
    their presence is checked (no hashing in the default path). ``synthetic-cifar10``
    is written locally (:func:`write_cifar10_batches`); ``digits`` needs no files.

    Args:
        name: a registered dataset.
        root: the data root (default ``$MCUTILS_DATA`` or ``~/.cache/mcutils-data``).
        download: fetch missing or corrupt files.
        splits: the splits needed.
        timeout: network time-out in seconds per connection.

    Returns:
        The data root.

    Raises:
        DatasetNotFoundError: the files are missing and could not be fetched; the
            message names the folder and the files to place there (a
            :class:`DownloadError` with ``offline=True`` when the network was unreachable).
    """
    dataset_info(name)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ParameterError(f"split(s) {bad} not known; valid values: {', '.join(SPLITS)}")
    root_path = Path(root) if root is not None else _default_root()
    if name == "digits":
        return root_path
    if name == "synthetic-cifar10":
        if not _present(name, root_path, splits):
            write_cifar10_batches(_synthetic_folder(root_path))
        return root_path
    present = _present(name, root_path, splits)
    if not download:
        if present:
            return root_path
        raise DatasetNotFoundError(f"dataset {name!r} is not in {root_path}; "
                                   + _placement_hint(name, root_path, splits)
                                   + " (or let the gpu profile download them with internet access)")
    try:
        for remote in remote_files(name, splits):
            if remote.members:
                if all((root_path / m).is_file() and _digest(root_path / m) == md5
                       for m, md5 in remote.members):
                    continue
                archive = fetch_file(remote, root_path, timeout=timeout)
                _extract(archive, root_path)
                wrong = [m for m, md5 in remote.members
                         if not (root_path / m).is_file() or _digest(root_path / m) != md5]
                if wrong:
                    archive.unlink()
                    raise DownloadError(f"{archive.name} extracted, but {wrong} fail their MD5 "
                                        "check; the archive was removed")
            elif present and not (root_path / remote.path).is_file():
                continue  # the loader finds the split elsewhere (e.g. uncompressed IDX files)
            else:
                fetch_file(remote, root_path, timeout=timeout)
    except DownloadError as exc:
        raise DownloadError(f"dataset {name!r} is not complete in {root_path} and could not be "
                            f"downloaded ({exc}). Without internet, "
                            + _placement_hint(name, root_path, splits), offline=exc.offline
                            ) from exc
    return root_path


def ensure_datasets(names: Sequence[str], root: str | Path | None = None,
                    download: bool = False, timeout: float = 10.0) -> Path:
    """:func:`ensure_dataset` for several datasets, failing once with every problem listed.

    After the first network failure no further download is tried (the machine is taken
    to be offline), so an offline run fails within seconds.
    """
    problems: list[str] = []
    root_path = Path(root) if root is not None else _default_root()
    for name in dict.fromkeys(names):
        try:
            ensure_dataset(name, root_path, download=download, timeout=timeout)
        except DownloadError as exc:
            problems.append(str(exc))
            if exc.offline:
                download = False
        except DatasetNotFoundError as exc:
            problems.append(str(exc))
    if problems:
        raise DatasetNotFoundError("\n".join(problems))
    return root_path


# ---------------------------------------------------------------- CIFAR-shaped data


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


# ---------------------------------------------------------------- pretrained weights


def pretrained_weights_file(arch: str, download: bool = False, timeout: float = 10.0) -> Path:
    """Where torchvision keeps the ImageNet weights of ``arch``; check they are there.

    The weights live in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``) under
    the file name of torchvision's address, whose digits are the leading SHA-256 digits
    of the file. Chapters 01 and 04 need them for ``model: torchvision:<arch>`` with
    ``pretrained: true``; the runner calls this before any chapter starts.

    Args:
        arch: a torchvision classification architecture (``googlenet``, ``resnet18``).
        download: fetch them (SHA-256 prefix checked) if they are missing.
        timeout: network time-out in seconds.

    Returns:
        The weights file.

    Raises:
        ParameterError: torchvision has no weights for ``arch``.
        DatasetNotFoundError: the file is missing (the message names the folder, the
            file and its address).
    """
    import re

    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ParameterError(f"torchvision has no pretrained weights for {arch!r} ({exc})") from exc
    url = weights.url
    filename = url.rsplit("/", 1)[-1]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / filename
    if target.is_file():
        return target
    if download:
        match = re.search(r"-([a-f0-9]{6,})\.", filename)
        remote = RemoteFile((url,), filename, match.group(1) if match else "", "sha256")
        try:
            return fetch_file(remote, folder, timeout=timeout)
        except DownloadError as exc:
            raise DownloadError(f"ImageNet weights of torchvision:{arch} are not in {folder} and "
                                f"could not be downloaded ({exc}); place {filename} (from {url}) "
                                "there", offline=exc.offline) from exc
    raise DatasetNotFoundError(
        f"ImageNet weights of torchvision:{arch} are not in {folder}: place {filename} (from "
        f"{url}) there, or set TORCH_HOME to a folder whose hub/checkpoints holds it, or use "
        "pretrained=False")
