"""Chapter 04's ImageNet section (gpu-imagenet profile only): the paper's own pairs.

:func:`imagenet_study` runs the pairs of the paper's committed CSVs
(:func:`mcutils.data.imagenet.paper_pair_list`) through the paper's ImageNet models
(:func:`mcutils.zoo.imagenet_model`) with :func:`mcutils.imagenet_pairs.run_pair_list`:
the within-class rows are chapter 01's paper protocol, the real-adversarial rows chapter
04's. :func:`imagenet_summary` compares them with the CSVs' numbers, model by model.
:func:`check_imagenet_params` is the chapter's parameter check: with ImageNet models
asked for, it names the missing folder or files and the expected layout before any work.

Used by chapter 04 (and by chapter 01 for its within-class rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mcutils import zoo
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device
from mcutils.data.imagenet import check_imagenet, paper_pair_list
from mcutils.data.registry import DatasetNotFoundError
from mcutils.imagenet_pairs import KINDS, compare_with_paper, run_pair_list

__all__ = ["check_imagenet_params", "imagenet_study", "imagenet_summary", "selected_pairs"]


def selected_pairs(kinds: Sequence[str] = KINDS, pairs_per_kind: int | None = None,
                   root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """The CSV rows of each kind, the first ``pairs_per_kind`` (``None``: all)."""
    if pairs_per_kind is not None and pairs_per_kind < 1:
        raise ParameterError(f"pairs_per_kind={pairs_per_kind!r} must be >= 1 or None")
    return {k: paper_pair_list(k, root).iloc[:pairs_per_kind] for k in kinds}


def check_imagenet_params(p: Mapping[str, Any]) -> str | None:
    """With ``imagenet_models`` set, every image the pairs need is on disk (else the
    message of :func:`mcutils.data.imagenet.check_imagenet`)."""
    if not p.get("imagenet_models"):
        return None
    pairs = selected_pairs(pairs_per_kind=p.get("imagenet_pairs"))
    names = list(dict.fromkeys(n for df in pairs.values() for n in [*df.image1, *df.image2]))
    try:
        check_imagenet(names)
    except DatasetNotFoundError as exc:
        return f"imagenet_models={list(p['imagenet_models'])!r}: {exc}"
    return None


def imagenet_study(models: Sequence[str], pairs_per_kind: int | None = None,
                   num_points: int = 250, attack: Mapping[str, Any] | None = None,
                   kinds: Sequence[str] = KINDS, root: str | Path | None = None,
                   pretrained: bool = True, download: bool = False, device: str = "auto",
                   batch: int = 8, progress: bool = True) -> pd.DataFrame:
    """Every model of ``models`` on the paper's pairs (:func:`selected_pairs`): the rows of
    :func:`mcutils.imagenet_pairs.run_pair_list` with a ``model`` column. The images are
    checked before the first model is built; so are the weights (``pretrained``)."""
    if not models:
        return pd.DataFrame()
    pairs = selected_pairs(kinds, pairs_per_kind, root)
    names = list(dict.fromkeys(n for df in pairs.values() for n in [*df.image1, *df.image2]))
    check_imagenet(names, root)
    nets = {m: zoo.imagenet_model(m, pretrained=pretrained, download=download) for m in models}
    dev = get_device(device)
    frames = []
    for name, net in nets.items():
        net = net.to(dev)
        for kind, rows in pairs.items():
            frames.append(run_pair_list(net, rows, kind, root=root, attack=attack,
                                        num_points=num_points, batch=batch,
                                        progress=progress).assign(model=name))
        nets[name] = net.cpu()
    return pd.concat(frames, ignore_index=True)


def imagenet_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`mcutils.imagenet_pairs.compare_with_paper` per model (a ``model`` column
    first)."""
    if len(rows) == 0:
        return pd.DataFrame()
    return pd.concat([compare_with_paper(g).assign(model=m)
                      for m, g in rows.groupby("model", sort=False)], ignore_index=True
                     ).pipe(lambda d: d[["model", *[c for c in d.columns if c != "model"]]])
