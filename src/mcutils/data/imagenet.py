"""ILSVRC-2012 validation images, for the input-space paper's own pairs.

The paper's Figure 6 numbers come from pairs of ImageNet validation images listed by file
name in its repository's CSVs (``data_sel/interpolation_processed.csv``: within-class
pairs; ``data_sel/cross_class_interpolation_processed.csv``: a real image and the source
image of its adversarial example). :func:`paper_pair_list` reads them: the rows of classes
0-9 ship with this package (``mcutils/data/paper_pairs/``, copied from
JVrabel/input_space_mode_connectivity at commit 1a34232), and the complete files are read
instead when a reader puts them in ``$MCUTILS_DATA/imagenet/paper_csv/``.

The images are not shipped and cannot be downloaded: a reader with ImageNet points
``$MCUTILS_DATA`` (or ``root``) at a folder holding ``imagenet/val`` in one of two layouts
(:data:`LAYOUT`). :func:`check_imagenet` says, before any work, which folder it searched and
which files are missing; :func:`load_val_images` reads files with torchvision's standard
evaluation transform (resize 256, centre crop 224, as the paper's ``utils.py``).

Used by chapters 01 and 04 (their ImageNet sections, gpu profile only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from mcutils.core.checks import ParameterError
from mcutils.data.registry import DatasetNotFoundError, _default_root

__all__ = [
    "LAYOUT",
    "PAIR_LISTS",
    "PAIR_SOURCE",
    "check_imagenet",
    "devkit_labels",
    "imagenet_root",
    "load_val_images",
    "paper_pair_list",
    "val_path",
]

#: The two folder layouts :func:`val_path` reads, in words (quoted by every error).
LAYOUT = ("<root>/imagenet/val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG (one folder per "
          "class, as torchvision's ImageNet or `valprep.sh` leave it), or all files flat in "
          "<root>/imagenet/val/ with the devkit's labels in <root>/imagenet/"
          "ILSVRC2012_devkit_t12/data/ (ILSVRC2012_validation_ground_truth.txt and meta.mat)")

#: The paper's pair lists: kind -> file name in its ``data_sel`` folder.
PAIR_LISTS = {"within": "interpolation_processed.csv",
              "adversarial": "cross_class_interpolation_processed.csv"}
#: Where the shipped rows come from.
PAIR_SOURCE = ("JVrabel/input_space_mode_connectivity, commit 1a342322ed87964ce32f8f9659fc4eb0"
               "786d45d4, data_sel/")

_NAME = re.compile(r"^(ILSVRC2012_val_\d{8})_(n\d{8})\.JPEG$")


def imagenet_root(root: str | Path | None = None) -> Path:
    """``<root>/imagenet`` (default root: ``$MCUTILS_DATA``)."""
    return Path(root) / "imagenet" if root is not None else _default_root() / "imagenet"


def paper_pair_list(kind: str, root: str | Path | None = None,
                    classes: Sequence[int] | None = None) -> pd.DataFrame:
    """The paper's pairs of one ``kind`` (``"within"`` or ``"adversarial"``).

    Reads ``<root>/imagenet/paper_csv/<file>`` when a reader placed the complete CSV there,
    else the rows shipped with the package (classes 0-9). Columns: ``cls``, ``image1``,
    ``image2`` (the CSVs' names, ``ILSVRC2012_val_<n>_<wnid>.JPEG``), ``wnid1``, ``wnid2``,
    and the paper's ``loss1``, ``loss2``, ``max`` and ``gap`` (max minus the larger end
    loss, as its ``plot_statistics``), plus ``source`` (the file read).
    """
    if kind not in PAIR_LISTS:
        raise ParameterError(f"kind={kind!r} is not known; valid values: {tuple(PAIR_LISTS)}")
    full = imagenet_root(root) / "paper_csv" / PAIR_LISTS[kind]
    path = full if full.is_file() else Path(__file__).parent / "paper_pairs" / PAIR_LISTS[kind]
    raw = pd.read_csv(path)
    df = pd.DataFrame({"cls": raw["Class"].astype(int), "image1": raw["Image1"],
                       "image2": raw["Image2"], "loss1": raw["Loss1"], "loss2": raw["Loss2"],
                       "max": raw["Max Interpolated Loss"]})
    df["gap"] = df["max"] - df[["loss1", "loss2"]].max(axis=1)
    for col in ("image1", "image2"):
        bad = [n for n in df[col] if not _NAME.match(n)]
        if bad:
            raise ParameterError(f"{path}: {col} {bad[:3]} do not read "
                                 "ILSVRC2012_val_<8 digits>_<wnid>.JPEG")
        df["wnid" + col[-1]] = [_NAME.match(n).group(2) for n in df[col]]  # type: ignore[union-attr]
    if classes is not None:
        df = df[df.cls.isin(list(classes))].reset_index(drop=True)
    return df.assign(source=str(path))


def devkit_labels(root: str | Path | None = None) -> dict[str, str]:
    """Validation file stem -> wnid, from the devkit's ground truth and ``meta.mat``."""
    data = imagenet_root(root) / "ILSVRC2012_devkit_t12" / "data"
    truth, meta = data / "ILSVRC2012_validation_ground_truth.txt", data / "meta.mat"
    if not truth.is_file() or not meta.is_file():
        raise DatasetNotFoundError(f"the devkit labels are not in {data}: expected {truth.name} "
                                   f"and {meta.name}; layout: {LAYOUT}")
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    ids = [int(line) for line in truth.read_text().split()]
    return {f"ILSVRC2012_val_{i + 1:08d}": wnid[c] for i, c in enumerate(ids)}


def val_path(name: str, root: str | Path | None = None,
             labels: dict[str, str] | None = None) -> Path:
    """The file of a CSV name ``ILSVRC2012_val_<n>_<wnid>.JPEG``: ``val/<wnid>/
    ILSVRC2012_val_<n>.JPEG``, or ``val/ILSVRC2012_val_<n>.JPEG`` in the flat layout
    (whose devkit ``labels`` must give the same wnid). Raises DatasetNotFoundError when
    neither is there."""
    m = _NAME.match(name)
    if not m:
        raise ParameterError(f"{name!r} does not read ILSVRC2012_val_<8 digits>_<wnid>.JPEG")
    stem, wnid = m.groups()
    val = imagenet_root(root) / "val"
    nested = val / wnid / f"{stem}.JPEG"
    if nested.is_file():
        return nested
    flat = val / f"{stem}.JPEG"
    if flat.is_file():
        if labels is not None and labels.get(stem) != wnid:
            raise ParameterError(f"{flat}: the devkit labels it {labels.get(stem)!r}, the "
                                 f"paper's CSV {wnid!r}")
        return flat
    raise DatasetNotFoundError(f"ImageNet image {stem}.JPEG (class {wnid}) is not in {val}; "
                               f"layout: {LAYOUT}")


def check_imagenet(names: Sequence[str], root: str | Path | None = None) -> list[Path]:
    """The files of the CSV ``names``, checked before any work: a clear
    DatasetNotFoundError naming the folder, the layout and the first missing files."""
    base = imagenet_root(root)
    val = base / "val"
    if not val.is_dir():
        hint = ("" if os.environ.get("MCUTILS_DATA") or root is not None
                else " (set MCUTILS_DATA to the folder that holds imagenet/)")
        raise DatasetNotFoundError(
            f"ImageNet's validation images are not in {val}{hint}. This book cannot download "
            f"them; expected layout: {LAYOUT}. Chapters 01 and 04 need only the files their "
            "pair lists name (mcutils.data.imagenet.paper_pair_list).")
    flat = any(p.suffix == ".JPEG" for p in val.iterdir())
    labels = devkit_labels(root) if flat else None
    paths, missing = [], []
    for n in names:
        try:
            paths.append(val_path(n, root, labels))
        except DatasetNotFoundError:
            missing.append(n)
    if missing:
        raise DatasetNotFoundError(f"{len(missing)} of the {len(names)} ImageNet images the "
                                   f"pairs need are not in {val}, e.g. {missing[:3]}; layout: "
                                   f"{LAYOUT}")
    return paths


def load_val_images(paths: Sequence[str | Path], size: int = 224) -> torch.Tensor:
    """``[N, 3, size, size]`` pixels in ``[0, 1]``: RGB, short side resized to ``256/224 x
    size``, centre crop (torchvision's evaluation transform; the paper's ``utils.py``)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    out = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        img = TF.center_crop(TF.resize(img, round(size * 256 / 224)), [size, size])
        out.append(TF.to_tensor(img))
    if not out:
        raise ParameterError("no image paths given")
    return torch.stack(out)
