"""Loading a split of a registered dataset, and drawing pairs of images from it.

Where the files come from, in order: the system folder (Fashion-MNIST only: Debian's
``dataset-fashion-mnist`` package puts the IDX files in
``/usr/share/datasets/fashion-mnist``), ``root`` (or ``$MCUTILS_DATA``), and, only with
``download=True``, the original files (:func:`mcutils.data.download.ensure_dataset`).

Used by every chapter (00-06), which loads its splits with :func:`load_dataset`; chapters
01 and 03 draw same-class pairs with :func:`class_pairs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mcutils.data.download import ensure_dataset
from mcutils.data.formats import (
    _idx_folders,
    _load_cifar10,
    _load_digits,
    _load_idx_dataset,
    _load_svhn,
)
from mcutils.data.registry import (
    FASHION_SYSTEM_DIR,
    SPLITS,
    ImageDataset,
    _default_root,
    _not_found,
    dataset_info,
)
from mcutils.data.synthetic import _synthetic_folder

from mcutils.core.checks import ParameterError

__all__ = ["load_dataset", "class_pairs", "matched_pairs"]


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
            (:func:`~mcutils.data.download.ensure_dataset`: checksums verified, short network time-outs).
        subset: keep a random subset of this size (seeded by ``seed``).
        seed: seed of the subset.

    Returns:
        An :class:`~mcutils.data.registry.ImageDataset` with pixel values in ``[0, 1]``.

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
    one set, use :func:`mcutils.data.loading.class_pairs`). Classes missing from either set
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
