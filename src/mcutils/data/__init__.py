"""Datasets: Fashion-MNIST (default), MNIST, CIFAR-10, SVHN, digits and synthetic-cifar10.

Every loader returns an :class:`~mcutils.data.registry.ImageDataset` holding the whole split as tensors: images
as float32 in ``[0, 1]`` with shape ``[N, C, H, W]`` and integer labels. Normalisation
lives inside the models (:class:`mcutils.models.Normalize`), so attacks and interpolation
work in pixel space. Nothing in the default path downloads.

The package's modules, one concept each (their public names are also this package's):

* :mod:`~mcutils.data.registry`: :data:`DATASETS` and the in-memory containers;
* :mod:`~mcutils.data.formats`: the on-disk format readers;
* :mod:`~mcutils.data.synthetic`: CIFAR-shaped data written in CIFAR-10's format;
* :mod:`~mcutils.data.download`: fetching with checksums; pretrained weights;
* :mod:`~mcutils.data.loading`: :func:`~mcutils.data.loading.load_dataset` and pairs of images.

Used by every chapter (00-06).
"""

from mcutils.data.download import (DownloadError, RemoteFile, ensure_dataset, ensure_datasets,
                                   fetch_file, pretrained_weights_file, remote_files)
from mcutils.data.formats import load_image_folder, read_idx
from mcutils.data.loading import class_pairs, load_dataset, matched_pairs
from mcutils.data.registry import (DATASETS, FASHION_SYSTEM_DIR, SPLITS, DatasetInfo,
                                   DatasetNotFoundError, ImageDataset, TensorLoader,
                                   dataset_info)
from mcutils.data.synthetic import write_cifar10_batches

__all__ = [
    "DATASETS", "FASHION_SYSTEM_DIR", "SPLITS", "DatasetInfo", "DatasetNotFoundError",
    "DownloadError", "ImageDataset", "RemoteFile", "TensorLoader", "class_pairs",
    "dataset_info", "ensure_dataset", "ensure_datasets", "fetch_file", "load_dataset",
    "load_image_folder", "matched_pairs", "pretrained_weights_file", "read_idx",
    "remote_files", "write_cifar10_batches",
]
