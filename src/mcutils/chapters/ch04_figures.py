"""Chapter 04's figures: the paper's Figure 6 boxes, path profiles, the sweeps, the
detectors and the adaptive attack (all shown through
:mod:`mcutils.chapters.ch04_adversarial`, which re-exports them).

Used by chapter 04.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import inputspace, plotting
from mcutils.advbarriers import PairSet

__all__ = ["DETECTOR_LABELS", "adaptive_figure", "barrier_boxes", "detector_figure",
           "path_profiles", "sweep_figure"]


def _errorbars(ax, x: np.ndarray, entries: Sequence[Mapping[str, Any]], key: str, **kw):
    est = np.array([e[key]["estimate"] for e in entries])
    lo = np.array([e[key]["ci"][0] for e in entries])
    hi = np.array([e[key]["ci"][1] for e in entries])
    ax.errorbar(x, est, yerr=[est - lo, hi - est], capsize=3, **kw)
    return est


def barrier_boxes(kept: pd.DataFrame):
    """The chapter's version of the paper's Figure 6: boxes of the barrier max and gap of
    within-class and real-adversarial paths (rows of
    :func:`~mcutils.advbarriers.drop_unmatched`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = kept.melt(id_vars=["kind"], value_vars=["max", "gap"], var_name="statistic",
                     value_name="loss")
    long["statistic"] = long.statistic.map({"max": "barrier max", "gap": "barrier gap"})
    long["kind"] = long.kind.map({"within": "within-class paths",
                                  "adversarial": "real-adversarial paths"})
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.boxplot(data=long, x="statistic", y="loss", hue="kind", ax=ax, fliersize=2)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("")
    ax.set_ylabel("cross-entropy of the class (nats)")
    ax.legend(title="")
    fig.tight_layout()
    return fig


def path_profiles(model: nn.Module, pairs: PairSet, k_adv: torch.Tensor, pairs_per_class: int,
                  num_points: int):
    """Loss of the class of ``A`` along ``A -> B``, ``A -> K'`` and ``A -> K`` for pair 0
    of every class."""
    import matplotlib.pyplot as plt

    show = torch.arange(0, len(pairs), pairs_per_class)  # pair 0 of every class
    ends = {"A to B (within-class)": pairs.b[show], "A to K' (real-adversarial)": k_adv[show],
            "A to K (clean source)": pairs.k[show]}
    fig, axes = plt.subplots(1, 3, figsize=(plotting.MAX_WIDTH, 3.2), sharey=True)
    for ax, (title, end) in zip(axes, ends.items()):
        prof = inputspace.loss_profiles(model, pairs.a[show], end, pairs.cls[show],
                                        num_points=num_points)
        plotting.profile_plot(prof, ax=ax)
        ax.set_title(title, fontsize="small")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("position on the path (0: A)")
        ax.set_ylabel("")
    axes[0].set_ylabel("loss of the class of A (nats)")
    fig.tight_layout()
    return fig


def sweep_figure(entries: Sequence[Mapping[str, Any]], x: Sequence[float], xlabel: str,
                 annotate: str | None = None, target: float = 0.9,
                 size: tuple = (plotting.MAX_WIDTH, 3.4)):
    """Median real-adversarial gap and AUROC of the gap against ``x`` (log scale), with
    95% intervals; points labelled by their ``annotate`` entry; the band where the AUROC
    reaches ``target``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=size)
    x = np.asarray(x)
    for ax, key, label in ((axes[0], "median_gap", "median real-adversarial gap (nats)"),
                           (axes[1], "auroc", "AUROC of the gap")):
        est = _errorbars(ax, x, entries, key, fmt="o-")
        if annotate:
            for e, x_, y_ in zip(entries, x, est):
                ax.annotate(e[annotate], (x_, y_), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
    axes[1].axhspan(target, 1.0, color="tab:green", alpha=0.15, label=f"AUROC ≥ {target:g}")
    axes[1].axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    axes[1].legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


#: Legend entries of :func:`detector_figure`: each detector's features, in words.
DETECTOR_LABELS = {
    "barrier": "barrier gap",
    "barrier_max": "barrier max",
    "profile": "loss profile",
    "profile_logits": "loss profile + logits",
    "msp": "max. softmax probability",
    "margin": "logit margin",
    "logits": "sorted logits",
    "mahalanobis": "Mahalanobis, last layer",
    "mahalanobis_ensemble": "Mahalanobis ensemble",
    "lid": "LID",
    "kd_bu": "KD+BU",
}


def detector_figure(table: pd.DataFrame, detectors: Sequence[str], target: float = 0.9):
    """AUROC with 95% intervals of every detector (colours) on every attack."""
    import matplotlib.pyplot as plt

    plot_df = table.assign(est=[v["estimate"] for v in table.auroc],
                           lo=[v["ci"][0] for v in table.auroc],
                           hi=[v["ci"][1] for v in table.auroc])
    fig, ax = plt.subplots(figsize=(plotting.MAX_WIDTH, 4.6))
    attacks_order = list(dict.fromkeys(plot_df.attack))
    width = 0.8 / len(detectors)
    for j, det in enumerate(detectors):
        sub = plot_df[plot_df.detector == det].set_index("attack").loc[attacks_order]
        xs = np.arange(len(attacks_order)) - 0.4 + (j + 0.5) * width
        ax.errorbar(xs, sub.est, yerr=[sub.est - sub.lo, sub.hi - sub.est], fmt="o", ms=3,
                    capsize=2, label=DETECTOR_LABELS.get(det, det))
    ax.set_xticks(range(len(attacks_order)), attacks_order, rotation=15, fontsize="small")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.axhspan(target, 1.0, color="tab:green", alpha=0.1)
    ax.set_ylabel("AUROC (cross-validated by source)")
    ax.legend(ncol=4, fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22),
              frameon=False)
    fig.tight_layout()
    return fig


def adaptive_figure(adaptive: pd.DataFrame):
    """The adaptive study against the perturbation size: AUROC of the deployed and the
    retrained detector (left), the attack's success (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.4))
    rows = adaptive.to_dict("records")
    l2 = np.array([v["estimate"] for v in adaptive.l2])
    for key, label in (("auroc_deployed", "deployed detector"),
                       ("auroc_retrained", "retrained detector")):
        _errorbars(axes[0], l2, rows, key, fmt="o", label=label)
    for x_, w in zip(l2, adaptive.penalty):
        axes[0].annotate(f"w={w:g}", (x_, 0.5), fontsize=7, xytext=(3, -10),
                         textcoords="offset points")
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("median L2 perturbation (pixels)")
    axes[0].set_ylabel("AUROC on the test half")
    axes[0].legend(fontsize="small")
    succ = np.array([v["estimate"] for v in adaptive.success])
    axes[1].plot(l2, succ, "o-")
    axes[1].set_xlabel("median L2 perturbation (pixels)")
    axes[1].set_ylabel("fraction reaching the target")
    axes[1].set_ylim(0, 1.05)
    fig.tight_layout()
    return fig
