"""Chapter 02's figures: lattices, connection curves, growth profiles, thresholds, onsets
and the slices through images.

* :func:`plot_lattices`: three 2-D lattices sharing one random field, the largest
  cluster coloured;
* :func:`plot_connection_curves`: the probability that two open sites are connected,
  against ``p`` and against ``p / p_c(d)``;
* :func:`plot_growth_profiles`: ``N(t)`` of grown clusters just below, at and above
  ``p_c(d)``;
* :func:`plot_thresholds`: the estimated thresholds beside the published values, the
  series and the Bethe bound;
* :func:`plot_onsets`: the onsets of the networks and the nulls against the slice
  dimension;
* :func:`plot_slice_fields`: the loss on a few ``d = 2`` slices with their anchors;
* :func:`plot_trio_plane`: the predicted classes on a plane through three images.

Each returns the figure. Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from mcutils import plotting
from mcutils.chapters.ch02_percolation import onset_table, reference_threshold
from mcutils.percolation.growth import growth_profile
from mcutils.percolation.lattice import clusters, largest_cluster
from mcutils.percolation.thresholds import asymptotic_threshold, bethe_threshold

__all__ = ["plot_lattices", "plot_connection_curves", "plot_growth_profiles",
           "plot_thresholds", "plot_onsets", "plot_slice_fields", "plot_trio_plane"]


def _palette() -> list:
    return sns.color_palette(plotting.PALETTE)


def plot_lattices(side: int, p_c: float, seed: int = 0,
                  ps: Sequence[float | None] = (0.45, None, 0.70)) -> plt.Figure:
    """Square lattices of ``side`` x ``side`` sites that share one uniform random field
    (seeded by ``seed``), opened at each of ``ps`` (``None``: at ``p_c``); open sites
    grey, the largest cluster coloured."""
    field = np.random.default_rng(seed).random((side, side))
    width = min(plotting.MAX_WIDTH, 2.7 * len(ps))
    fig, axes = plt.subplots(1, len(ps), figsize=(width, width / len(ps) + 0.8), squeeze=False)
    cmap = ListedColormap(["white", "0.72", _palette()[3]])
    for ax, p in zip(axes[0], ps):
        p = p_c if p is None else p
        lattice = field < p
        biggest = largest_cluster(clusters(lattice)[0])
        ax.imshow(lattice.astype(int) + biggest, cmap=cmap, vmin=0, vmax=2,
                  interpolation="nearest")
        ax.set_title(f"open with probability p = {p:.3f}\nlargest cluster: "
                     f"{biggest.sum() / lattice.sum():.0%} of open sites", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_connection_curves(connection: pd.DataFrame) -> plt.Figure:
    """The curves of :func:`~mcutils.chapters.ch02_percolation.connection_study`, against
    the occupation ``p`` (left) and against ``p / p_c(d)`` (right), one line per ``d``."""
    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.6), sharey=True)
    for ax, x in zip(axes, ["p", "p_rel"]):
        sns.lineplot(data=connection, x=x, y="connection", hue="d", marker="o",
                     palette="viridis", ax=ax, legend="brief" if ax is axes[1] else False)
    axes[0].set_xlabel("site occupation probability p")
    axes[1].set_xlabel("relative occupation p / p_c(d)")
    axes[1].axvline(1.0, color="k", ls=":", lw=1)
    axes[0].set_ylabel("probability that two open\nsites are connected")
    if axes[1].get_legend() is not None:
        axes[1].get_legend().set_title("dimension d", prop={"size": 9})
    fig.tight_layout()
    return fig


def plot_growth_profiles(dims: Sequence[int], published: Mapping[int, float], clusters: int,
                         t_max: int = 128, seed: int = 0) -> plt.Figure:
    """Log-log ``N(t)`` of ``clusters`` clusters grown at 0.97, 1 and 1.03 times
    ``p_c(d)`` (published, else the series) for each of ``dims``
    (:func:`~mcutils.percolation.growth_profile`, seed ``[seed, d]``)."""
    palette = _palette()
    ncols = min(len(dims), 2)
    nrows = -(-len(dims) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(plotting.MAX_WIDTH if ncols > 1 else 4.8, 3.6 * nrows))
    for ax in axes.flat[len(dims):]:
        ax.set_visible(False)
    for ax, d in zip(axes.flat, dims):
        pc_ref = reference_threshold(d, published)
        prof = growth_profile(d, [pc_ref * 0.97, pc_ref, pc_ref * 1.03], clusters, t_max,
                              seed=[seed, d])
        for k, lab in enumerate(["p = 0.97 p_c(d), below", "p = p_c(d), published",
                                 "p = 1.03 p_c(d), above"]):
            ax.loglog(prof["t"][1:], prof["n"][k, 1:], label=lab, color=palette[k])
        ax.set_xlabel("chemical distance t (generations)")
        ax.set_ylabel("sites in generation t,\nmean per cluster N(t)")
        ax.set_title(f"d = {d}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_thresholds(table: pd.DataFrame, published: Mapping[int, float],
                    max_dim: int = 12) -> plt.Figure:
    """The estimates of a :func:`~mcutils.percolation.threshold_table` with their 95%
    intervals, the published values, the four-term series and ``1/(2d-1)`` for
    ``d = 2..max_dim``, on a log scale."""
    palette = _palette()
    ds = np.arange(2, max_dim + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(ds, bethe_threshold(ds), "--", color="0.5", label="Bethe lattice bound 1/(2d-1)")
    ax.plot(ds, asymptotic_threshold(ds), "-", color="0.3", lw=1,
            label="series expansion, four terms")
    ax.plot(list(published), list(published.values()), "s", mfc="none", ms=9,
            color=palette[1], label="published value")
    ax.errorbar(table.index, table.estimate,
                yerr=[table.estimate - table.ci_lo, table.ci_hi - table.estimate],
                fmt="o", color=palette[0], capsize=3, ms=4,
                label="this chapter's estimate (95% interval)")
    ax.set_yscale("log")
    ax.set_xlabel("lattice dimension d")
    ax.set_ylabel("site-percolation threshold p_c(d)\n(fraction of open sites)")
    ax.legend()
    return fig


def _source_label(source: str) -> str:
    """A legend entry in words for a source of :func:`onset_table` (a network or a null)."""
    names = {"trained": "trained network", "untrained": "untrained network",
             "independent": "null: independent sites", "convex": "null: convex set (ball)"}
    if source in names:
        return names[source]
    if source.startswith("correlated_"):
        return f"null: correlated field, {source[len('correlated_'):]}"
    return source


def plot_onsets(study: Mapping) -> plt.Figure:
    """The median onsets (95% intervals) of a
    :func:`~mcutils.chapters.ch02_percolation.slices_vs_nulls` study against the slice
    dimension: anchors join (left), an unanchored slice spans (right); one line per
    network and null."""
    palette = _palette()
    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 4.6), sharey=True)
    styles = {"trained": (palette[0], "o-"), "untrained": (palette[1], "o-"),
              "independent": ("k", "s--"), "convex": (palette[2], "^--")}
    for ax, kind in zip(axes, ["anchors join", "unanchored slice spans"]):
        table_k = onset_table(study, span=kind != "anchors join")
        for source, part in table_k.groupby("source"):
            color, fmt = styles.get(source, (palette[4] if "untrained" in source
                                             else palette[3], "d:"))
            ax.errorbar(part.d, part.onset, yerr=[part.onset - part.lo, part.hi - part.onset],
                        fmt=fmt, color=color, capsize=3, ms=5, label=_source_label(source))
        ax.set_yscale("log")
        ax.set_xlabel("slice dimension d")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"onset: {kind}", fontsize=11)
    axes[0].set_ylabel("low-loss fraction p at the onset\n(median, 95% interval)")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        order = sorted(range(len(labels)), key=lambda k: (labels[k].startswith("null"), k))
        fig.legend([handles[k] for k in order], [labels[k] for k in order],
                   loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_slice_fields(study: Mapping, per_model: int = 3) -> plt.Figure:
    """``log10`` of the anchors' loss on the first ``per_model`` anchored ``d = 2`` slices
    of each network that kept them (one row per network, one colour scale for all),
    anchors marked (dark: low loss)."""
    shown = [(m, ("anchored", 2, k)) for m in study["fields"] for k in range(per_model)
             if ("anchored", 2, k) in study["fields"][m]]
    logs = [np.log10(study["fields"][m][key]["loss"] + 1e-6).T for m, key in shown]
    ncols = max(min(len(shown), per_model), 1)
    nrows = max(-(-len(shown) // ncols), 1)
    panel = min(2.2, (plotting.MAX_WIDTH - 1.4) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols + 1.4, panel * nrows + 0.7),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    vmin = min((float(v.min()) for v in logs), default=0.0)
    vmax = max((float(v.max()) for v in logs), default=1.0)
    image = None
    for ax, (m, key), values in zip(axes.flat, shown, logs):
        image = ax.imshow(values, origin="lower", cmap="magma_r", vmin=vmin, vmax=vmax)
        for a in study["fields"][m][key]["anchors"]:
            ax.plot(a[0], a[1], "o", mfc="white", mec="k", ms=8)
        ax.set_title(f"{m} network, pair {key[2]}", fontsize=9)
    fig.suptitle("loss of the anchors' class on two-dimensional slices (dark: low)",
                 fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8).set_label(
            "log10 cross-entropy of the\nanchors' class (nats)", fontsize=8)
    return fig


def plot_trio_plane(plane: Mapping[str, Any], trio: Any, classes: Sequence[str]
                    ) -> plt.Figure:
    """One plane of :func:`~mcutils.percolation.trio_study` coloured by the predicted
    class, the three images marked; ``trio`` is its row of the trio table (``cls``,
    ``connected``), ``classes`` the class names."""
    present = sorted(set(plane["labels"].ravel().tolist()))
    colors = sns.color_palette("tab10", 10)
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    c = plane["coords"]
    ax.imshow(plane["labels"], origin="lower", extent=(c[0], c[-1], c[0], c[-1]),
              cmap=ListedColormap(colors), vmin=-0.5, vmax=9.5, interpolation="nearest")
    for a, b in plane["anchors"]:
        ax.plot(a, b, "o", mfc="white", mec="k", ms=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in present]
    ax.legend(handles, [classes[k] for k in present], fontsize=7, loc="upper right")
    ax.grid(False)
    ax.set_xlabel("coefficient of (image 2 - image 1)")
    ax.set_ylabel("coefficient of (image 3 - image 1)")
    ax.set_title(f"three '{classes[int(trio.cls)]}' images: "
                 f"{'one patch' if trio.connected else 'not one patch'}")
    return fig
