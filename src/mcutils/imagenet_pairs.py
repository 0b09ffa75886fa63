"""The input-space paper's own ImageNet pairs, run again and compared row by row.

:func:`run_pair_list` takes rows of :func:`mcutils.data.imagenet.paper_pair_list` and a
model and redoes what the paper's ``sec4_2_adversarial_attacks.py`` did for them:

* ``within`` rows (chapter 01's paper protocol): the straight path from ``Image1`` (A) to
  ``Image2`` (B) of the same class;
* ``adversarial`` rows (chapter 04's): the paper's attack
  (:func:`mcutils.attacks.optimization_attack`, its settings
  :data:`mcutils.advbarriers.PAPER_ATTACK`) turns ``Image2`` (K, another class) towards
  the class of A and stops once its loss is below A's own (``Loss1``); then the path from
  A to the result K'.

Every path is evaluated at ``num_points`` points (the paper: 250) with
:func:`mcutils.inputspace.loss_profiles`; each output row holds our ``loss1``, ``loss2``,
``max`` and ``gap`` beside the paper's (``paper_*``). :func:`compare_with_paper` sums the
comparison up per kind (medians of the gap, the fraction of gaps above ``ln 2``, the rank
correlation of the barrier max) and :func:`pair_scatter` plots ours against theirs.

The images are the reader's (:func:`mcutils.data.imagenet.check_imagenet` checks them
first); the book's own build has not run this on ImageNet. Used by chapters 01 and 04.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from mcutils import attacks
from mcutils.advbarriers import PAPER_ATTACK, class_loss
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import model_device as _model_device
from mcutils.data.imagenet import check_imagenet, load_val_images
from mcutils.inputspace import barrier, loss_profiles

__all__ = ["KINDS", "PAPER_COLUMNS", "compare_with_paper", "pair_scatter", "run_pair_list"]

KINDS = ("within", "adversarial")
#: The paper's numbers in a pair list, renamed ``paper_<name>`` in the results.
PAPER_COLUMNS = ("loss1", "loss2", "max", "gap")


def run_pair_list(model: nn.Module, pairs: pd.DataFrame, kind: str,
                  root: str | Path | None = None, attack: Mapping[str, Any] | None = None,
                  num_points: int = 250, batch: int = 8, progress: bool = True
                  ) -> pd.DataFrame:
    """Redo the paper's pairs ``pairs`` (rows of
    :func:`~mcutils.data.imagenet.paper_pair_list`) of ``kind`` with ``model``.

    Args:
        model: a classifier on ``[0, 1]`` pixels with ImageNet's 1000 classes.
        pairs: the rows (``cls``, ``image1``, ``image2`` and the paper's numbers).
        kind: ``"within"`` or ``"adversarial"``.
        root: the data root holding ``imagenet/val`` (default ``$MCUTILS_DATA``).
        attack: overrides of :data:`~mcutils.advbarriers.PAPER_ATTACK` (adversarial rows).
        num_points: points per path, ends included.
        batch: pairs per chunk (memory).
        progress: a progress bar over chunks.

    Returns:
        The rows with ``loss1``, ``loss2``, ``max``, ``gap`` (ours) and ``paper_loss1``,
        ``paper_loss2``, ``paper_max``, ``paper_gap``; adversarial rows also ``steps``
        (the attack's updates) and ``l2`` (its pixel L2 size).
    """
    if kind not in KINDS:
        raise ParameterError(f"kind={kind!r} is not known; valid values: {KINDS}")
    if len(pairs) == 0:
        raise ParameterError("no pairs to run")
    names = list(dict.fromkeys([*pairs.image1, *pairs.image2]))
    paths = dict(zip(names, check_imagenet(names, root)))  # every file, before any work
    settings = dict(PAPER_ATTACK)
    settings.update(attack or {})
    stop_mode = settings.pop("stop")
    dev = _model_device(model)
    out = []
    chunks = range(0, len(pairs), batch)
    for start in tqdm(chunks, desc=f"{kind} pairs", disable=not progress):
        rows = pairs.iloc[start:start + batch]
        a = load_val_images([paths[n] for n in rows.image1]).to(dev)
        end = load_val_images([paths[n] for n in rows.image2]).to(dev)
        cls = torch.tensor(rows.cls.to_numpy().copy(), dtype=torch.long, device=dev)
        extra: dict[str, Any] = {}
        if kind == "adversarial":
            loss1 = class_loss(model, a, cls)
            stop = loss1 if stop_mode == "matched" else stop_mode
            adv, steps = attacks.optimization_attack(model, end, cls, stop_loss=stop,
                                                     return_steps=True, **settings)
            extra = {"steps": steps.numpy(),
                     "l2": (adv - end).flatten(1).norm(dim=1).cpu().numpy()}
            end = adv
        prof = loss_profiles(model, a, end, cls, num_points=num_points).cpu()
        base = rows.rename(columns={c: f"paper_{c}" for c in PAPER_COLUMNS})
        out.append(base.assign(loss1=prof[:, 0].numpy(), loss2=prof[:, -1].numpy(),
                               max=barrier(prof, "max").numpy(),
                               gap=barrier(prof, "gap").numpy(), **extra))
    return pd.concat(out, ignore_index=True).assign(kind=kind)


def compare_with_paper(rows: pd.DataFrame, threshold: float = math.log(2)) -> pd.DataFrame:
    """One row per kind of path of :func:`run_pair_list` output (concatenated): the
    number of pairs, the median gap ours and the paper's, the fraction of gaps above
    ``threshold`` ours and the paper's, and the Spearman correlation of the barrier max
    (ours against the paper's, pair by pair)."""
    from scipy.stats import spearmanr

    need = {"kind", "gap", "max", "paper_gap", "paper_max"}
    if not need <= set(rows.columns):
        raise ParameterError(f"rows lack the columns {sorted(need - set(rows.columns))}")
    out = []
    for kind, g in rows.groupby("kind", sort=False):
        rho = (float(spearmanr(g["max"], g["paper_max"]).statistic) if len(g) > 2
               and g["max"].nunique() > 1 and g["paper_max"].nunique() > 1 else float("nan"))
        out.append({"kind": kind, "pairs": len(g),
                    "median gap (ours)": float(g.gap.median()),
                    "median gap (paper)": float(g.paper_gap.median()),
                    "fraction gap > ln 2 (ours)": float((g.gap > threshold).mean()),
                    "fraction gap > ln 2 (paper)": float((g.paper_gap > threshold).mean()),
                    "Spearman of the barrier max": rho})
    return pd.DataFrame(out)


def pair_scatter(rows: pd.DataFrame, model_name: str = ""):
    """Our barrier max against the paper's, one point per pair, coloured by kind, with
    the diagonal (equal numbers)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for kind, g in rows.groupby("kind", sort=False):
        ax.scatter(g.paper_max, g["max"], s=10, alpha=0.7,
                   label={"within": "within-class", "adversarial": "real-adversarial"}
                   .get(str(kind), str(kind)))
    lim = [0, float(np.nanmax([rows["max"].max(), rows.paper_max.max(), 1.0])) * 1.05]
    ax.plot(lim, lim, color="grey", lw=0.8, ls="--", label="equal")
    ax.set_xlabel("paper's barrier max (nats)")
    ax.set_ylabel(f"our barrier max (nats){', ' + model_name if model_name else ''}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
