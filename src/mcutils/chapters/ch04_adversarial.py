"""Chapter 04, adversarial examples and input-space barriers: its claims, tables and
figures.

The chapter's claims and the paper's numbers they are read against are data
(:data:`CLAIMS`, near the top); :func:`claim_results` picks each claim's interval from
the chapter's results and :func:`check_claims` adds them to the chapter's report. The
tables (:func:`interval_table`, :func:`protocol_table`, :func:`sweep_table`,
:func:`gain_table`, :func:`adaptive_table`) and figures (:func:`barrier_boxes`,
:func:`path_profiles`, :func:`sweep_figure`, :func:`detector_figure`,
:func:`adaptive_figure`) are what the notebook shows. The orchestration is in
:mod:`mcutils.chapters.ch04_sweep` (sections 1 and 2: the protocol over seeds, the
attack and network sweeps) and :mod:`mcutils.chapters.ch04_detectors` (section 3: the
detectors and the adaptive attack); the statistic itself in :mod:`mcutils.advbarriers`.

Used by chapter 04.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import inputspace, plotting
from mcutils.advbarriers import PairSet
from mcutils.core.report import ChapterReport
from mcutils.core.stats import format_interval

__all__ = [
    "CLAIMS",
    "EXPECTED",
    "adaptive_figure",
    "adaptive_table",
    "barrier_boxes",
    "check_claims",
    "claim_results",
    "detector_figure",
    "gain_table",
    "interval_table",
    "path_profiles",
    "protocol_table",
    "sweep_figure",
    "sweep_table",
]

#: The chapter's claims, in the order of its claims table: the statement (with its
#: statistic), the paper's number or word it is read against, the threshold and the side
#: of it the claim is on, and whether the chapter expects it to hold at this scale.
CLAIMS: list[dict[str, Any]] = [
    {"id": "within_low",
     "statement": "within-class paths are nearly flat: median barrier gap <= ln 2 "
                  "(paper protocol, mean over seeds)",
     "paper": "0.36, median within-class gap, ImageNet/GoogLeNet, paper's committed CSV",
     "threshold": math.log(2), "direction": "<=", "expected": True},
    {"id": "adv_gap_higher",
     "statement": "the gap tells real-adversarial from within-class paths of the same real "
                  "image: AUROC > 0.5 (paper protocol)",
     "paper": "medians 5.45 vs 0.36 (real-adversarial vs within-class gap), paper's "
              "committed CSVs",
     "threshold": 0.5, "direction": ">", "expected": True},
    {"id": "adv_gap_high",
     "statement": "real-adversarial barriers are high: median gap >= ln 2 (paper protocol)",
     "paper": "5.45, median real-adversarial gap, paper's committed CSV",
     "threshold": math.log(2), "direction": ">=", "expected": False},
    {"id": "adv_max_higher",
     "statement": "the barrier max also separates the two kinds of paths: AUROC > 0.5 "
                  "(paper protocol)",
     "paper": "Figure 6, barrier max boxes (no number in the text)",
     "threshold": 0.5, "direction": ">", "expected": False},
    {"id": "barrier_detects",
     "statement": "barrier height detects the paper's attack: AUROC >= 0.9 "
                  "(cross-validated, by source)",
     "paper": "suggested, no detector in the paper",
     "threshold": 0.9, "direction": ">=", "expected": False},
    {"id": "profile_adds",
     "statement": "loss profiles add to the logits on the paper's attack: paired AUROC "
                  "difference > 0",
     "paper": "implicit in the suggestion",
     "threshold": 0.0, "direction": ">", "expected": False},
    {"id": "adaptive_evades",
     "statement": "an adaptive attack brings the deployed detector to AUROC <= 0.6 "
                  "(largest penalty, test half)",
     "paper": "not tested in the paper",
     "threshold": 0.6, "direction": "<=", "expected": False},
]

#: The claims the chapter expects to hold at this scale (its report checks them).
EXPECTED = [c["id"] for c in CLAIMS if c["expected"]]


# ----------------------------------------------------------------------------- claims
def claim_results(summary: Mapping[str, Any], barrier_auroc: Mapping[str, Any],
                  profile_gain: Mapping[str, Any], adaptive: pd.DataFrame
                  ) -> dict[str, Mapping[str, Any]]:
    """Each claim's interval: from the paper protocol's ``summary``
    (:func:`mcutils.advbarriers.protocol_summary`), the barrier detector's AUROC on the
    paper's attack, the paired profile-minus-logits gain, and the deployed detector's
    AUROC under the largest penalty of the ``adaptive`` study."""
    return {"within_low": summary["median_gap_real"], "adv_gap_higher": summary["auroc_gap"],
            "adv_gap_high": summary["median_gap_adv"], "adv_max_higher": summary["auroc_max"],
            "barrier_detects": barrier_auroc, "profile_adds": profile_gain,
            "adaptive_evades": adaptive.iloc[-1].auroc_deployed}


def check_claims(chapter: ChapterReport, results: Mapping[str, Mapping[str, Any]]) -> None:
    """Add every claim of :data:`CLAIMS` to ``chapter`` with its interval from
    ``results`` (claim id -> interval, as :func:`claim_results` gives)."""
    missing = [c["id"] for c in CLAIMS if c["id"] not in results]
    if missing:
        raise ValueError(f"no result for the claims {missing}")
    for c in CLAIMS:
        chapter.claim(c["id"], c["statement"], c["paper"], results[c["id"]],
                      threshold=c["threshold"], direction=c["direction"])


# ----------------------------------------------------------------------------- tables
def interval_table(entries: Sequence[Mapping[str, Any]], keys: Sequence[str],
                   label: str, digits: int = 3,
                   extra: Mapping[str, Mapping[Any, Any]] | None = None) -> pd.DataFrame:
    """One row per entry (a :func:`~mcutils.advbarriers.sweep_summary` entry, say): its
    ``label`` column, the columns of ``extra`` (column -> {label value: cell}) and the
    intervals ``keys`` as text."""
    extra = extra or {}
    return pd.DataFrame([{label: e[label], **{c: v[e[label]] for c, v in extra.items()},
                          **{k: format_interval(e[k], digits) for k in keys}}
                         for e in entries])


def protocol_table(summaries: Mapping[str, Mapping[str, Any]], digits: int = 3
                   ) -> pd.DataFrame:
    """Statistics (rows) by summary (columns, e.g. pooled and over seeds), as text."""
    return pd.DataFrame({label: {k: format_interval(v, digits) for k, v in summ.items()}
                         for label, summ in summaries.items()})


SWEEP_COLUMNS = ("rho", "median_gap", "median_gap_real", "auroc", "success")


def sweep_table(summary: Sequence[Mapping[str, Any]], by: str = "setting",
                accuracy: Mapping[str, float] | None = None) -> pd.DataFrame:
    """A sweep's summary as text, one row per setting (or network, with its test
    accuracy)."""
    extra = None
    if accuracy is not None:
        extra = {"test accuracy": {k: round(float(v), 3) for k, v in accuracy.items()}}
    return interval_table(summary, SWEEP_COLUMNS, by, extra=extra)


def gain_table(gains: Mapping[str, Mapping[str, Any]], wilcoxon_p: pd.Series) -> pd.DataFrame:
    """Per attack: the paired AUROC gain of profile+logits over logits and the Wilcoxon
    p-value of the adversarial gap against its source's."""
    return pd.DataFrame({"profile+logits minus logits (AUROC)":
                         {a: format_interval(g, 3) for a, g in gains.items()},
                         "Wilcoxon p (adversarial gap > its source's)":
                         wilcoxon_p.map("{:.2g}".format)})


ADAPTIVE_INTERVALS = ("success", "l2", "auroc_deployed", "auroc_retrained", "difference")


def adaptive_table(adaptive: pd.DataFrame) -> pd.DataFrame:
    """The adaptive study's rows with its intervals as text."""
    return adaptive.assign(**{c: adaptive[c].map(format_interval) for c in ADAPTIVE_INTERVALS})


# ----------------------------------------------------------------------------- figures
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
    long["kind"] = long.kind.map({"within": "within-class", "adversarial": "real-adversarial"})
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
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), sharey=True)
    for ax, (title, end) in zip(axes, ends.items()):
        prof = inputspace.loss_profiles(model, pairs.a[show], end, pairs.cls[show],
                                        num_points=num_points)
        plotting.profile_plot(prof, ax=ax)
        ax.set_title(title)
        ax.set_yscale("symlog", linthresh=1e-2)
    axes[0].set_ylabel("loss of the class of A")
    fig.tight_layout()
    return fig


def sweep_figure(entries: Sequence[Mapping[str, Any]], x: Sequence[float], xlabel: str,
                 annotate: str | None = None, target: float = 0.9, size: tuple = (11, 3.8)):
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
    axes[1].axhspan(target, 1.0, color="tab:green", alpha=0.15, label=f"AUROC >= {target:g}")
    axes[1].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].legend(loc="lower left")
    fig.tight_layout()
    return fig


def detector_figure(table: pd.DataFrame, detectors: Sequence[str], target: float = 0.9):
    """AUROC with 95% intervals of every detector (colours) on every attack."""
    import matplotlib.pyplot as plt

    plot_df = table.assign(est=[v["estimate"] for v in table.auroc],
                           lo=[v["ci"][0] for v in table.auroc],
                           hi=[v["ci"][1] for v in table.auroc])
    fig, ax = plt.subplots(figsize=(11, 3.8))
    attacks_order = list(dict.fromkeys(plot_df.attack))
    width = 0.8 / len(detectors)
    for j, det in enumerate(detectors):
        sub = plot_df[plot_df.detector == det].set_index("attack").loc[attacks_order]
        xs = np.arange(len(attacks_order)) - 0.4 + (j + 0.5) * width
        ax.errorbar(xs, sub.est, yerr=[sub.est - sub.lo, sub.hi - sub.est], fmt="o", ms=3,
                    capsize=2, label=det)
    ax.set_xticks(range(len(attacks_order)), attacks_order, rotation=15)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.axhspan(target, 1.0, color="tab:green", alpha=0.1)
    ax.set_ylabel("AUROC (5-fold, by source)")
    ax.legend(ncol=4, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def adaptive_figure(adaptive: pd.DataFrame):
    """The adaptive study against the perturbation size: AUROC of the deployed and the
    retrained detector (left), the attack's success (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    rows = adaptive.to_dict("records")
    l2 = np.array([v["estimate"] for v in adaptive.l2])
    for key, label in (("auroc_deployed", "deployed"), ("auroc_retrained", "retrained")):
        _errorbars(axes[0], l2, rows, key, fmt="o-", label=label)
    for x_, w in zip(l2, adaptive.penalty):
        axes[0].annotate(f"w={w:g}", (x_, 0.5), fontsize=7)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("median L2 perturbation (pixels)")
    axes[0].set_ylabel("AUROC on the test half")
    axes[0].legend()
    succ = np.array([v["estimate"] for v in adaptive.success])
    axes[1].plot(l2, succ, "o-")
    axes[1].set_xlabel("median L2 perturbation (pixels)")
    axes[1].set_ylabel("attack success (target reached)")
    axes[1].set_ylim(0, 1.05)
    fig.tight_layout()
    return fig
