"""Chapter 01's figures; each returns the figure (``None`` where there is nothing to draw).

* :func:`plot_straight_paths`: loss profiles of the real pairs and their barriers by class;
* :func:`plot_synthetic_examples`: one synthetic pair per class;
* :func:`plot_tolerance_curves`: the connected fraction against the tolerance, per round;
* :func:`plot_one_bypass`: the real pair with the highest barrier and its first bypass;
* :func:`plot_path_geometry`: relative length and chord deviation of bypassed paths.

Used by chapter 01.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import nn

from mcutils import plotting
from mcutils.chapters.ch01_input_space import PairSet
from mcutils.inputspace.bypass import ConnectResult, path_profiles
from mcutils.inputspace.paths import loss_profiles
from mcutils.inputspace.synthesis import SyntheticPairs

__all__ = ["plot_straight_paths", "plot_synthetic_examples", "plot_tolerance_curves",
           "plot_one_bypass", "plot_path_geometry", "plot_random_bends"]


def plot_straight_paths(profiles: torch.Tensor, barriers: torch.Tensor, targets: torch.Tensor,
                        class_names: Sequence[str], tol: float) -> plt.Figure:
    """Left: the loss profiles ``[pairs, points]`` of the real pairs (log scale) with their
    median; right: each pair's straight-path barrier by class, with ``tol`` dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.8))
    plotting.profile_plot(profiles, ax=axes[0], alpha=0.15, label="median over pairs")
    axes[0].set_yscale("log")
    axes[0].set_title(f"{len(profiles)} real same-class pairs", fontsize=10)
    axes[0].set_xlabel("position t on the straight path")
    axes[0].set_ylabel("class loss (nats)")
    axes[0].legend(fontsize=8)
    frame = pd.DataFrame({"class": [class_names[int(k)] for k in targets],
                          "barrier": barriers.numpy()})
    sns.stripplot(data=frame, x="barrier", y="class", ax=axes[1], size=3, alpha=0.6, jitter=0.25)
    axes[1].set_xscale("symlog", linthresh=1e-3)
    axes[1].set_xlim(left=0)
    axes[1].axvline(tol, color="k", ls="--", lw=1, label=f"tolerance ({tol:g} nats)")
    axes[1].set_title("barrier by class", fontsize=10)
    axes[1].set_xlabel("straight-path barrier (nats)")
    axes[1].set_ylabel("")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_synthetic_examples(pairs: SyntheticPairs, class_names: Sequence[str]) -> plt.Figure:
    """The first synthetic pair of each class: ``A`` in the top row, ``C`` below (clipped
    to ``[0, 1]`` for display), one class per column, at most ``plotting.MAX_WIDTH`` wide."""
    shown = torch.cat([(pairs.targets == k).nonzero().flatten()[:1] for k in pairs.targets.unique()])
    names = [class_names[int(k)] for k in pairs.targets[shown]]
    fig = plotting.image_grid(torch.cat([pairs.a[shown], pairs.c[shown]]).clamp(0, 1),
                              names + [""] * len(names), ncols=len(shown),
                              size=min(1.3, (plotting.MAX_WIDTH - 0.3) / len(shown)))
    for ax, row in zip(fig.axes[::len(shown)], ["A", "C"]):
        ax.text(-0.08, 0.5, row, transform=ax.transAxes, ha="right", va="center", fontsize=10)
    fig.tight_layout()
    return fig


def plot_tolerance_curves(curve: pd.DataFrame, kinds: Sequence[str], max_rounds: int,
                          tol: float) -> plt.Figure:
    """One panel per kind of pair: the connected fraction against the tolerance (log
    scale) after each round ``0..max_rounds``, with its interval shaded and ``tol``
    dashed (``curve`` from :func:`~mcutils.chapters.ch01_input_space.tolerance_curve`);
    two panels per row, at most ``plotting.MAX_WIDTH`` wide."""
    ncols = min(2, len(kinds))
    nrows = -(-len(kinds) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(plotting.MAX_WIDTH * ncols / 2, 3.0 * nrows),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(kinds):]:
        fig.delaxes(ax)
    axes = axes.flatten()[:len(kinds)]
    palette = sns.color_palette("viridis", max_rounds + 1)
    for i, (ax, kind) in enumerate(zip(axes, kinds)):
        for r in range(max_rounds + 1):
            sub = curve[(curve["kind"] == kind) & (curve["round"] == r)]
            ax.plot(sub["tol"], sub["estimate"], marker="o", ms=3, color=palette[r],
                    label="straight line (round 0)" if r == 0 else f"after round {r}")
            ax.fill_between(sub["tol"], sub["lo"], sub["hi"], color=palette[r], alpha=0.15)
        ax.axvline(tol, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(f"{kind} pairs", fontsize=10)
        ax.set_xlabel("tolerance (nats)")
        if i % ncols == 0:
            ax.set_ylabel("fraction of pairs connected")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_one_bypass(model: nn.Module, pairs: PairSet, result: ConnectResult,
                    num_points: int) -> plt.Figure | None:
    """The pair of ``pairs`` with the highest straight-path barrier among those bypassed in
    the first round of ``result``: ``A``, the barrier point ``B``, its bypass ``B'``,
    ``C``, the change ``B' - B`` scaled to ``[-1, 1]``, and the loss along the straight
    line and along the final path (``num_points`` each). ``None`` without any bypass."""
    if result.first_bypass is None:
        return None
    owner, b_pts, b_new = result.first_bypass
    k = int(result.linear_barriers[owner].argmax())
    p = int(owner[k])
    diff = b_new[k] - b_pts[k]
    diff = diff / diff.abs().max().clamp_min(1e-12)
    fig = plt.figure(figsize=(plotting.MAX_WIDTH, 5.0))
    grid = fig.add_gridspec(2, 5, height_ratios=[1, 1.25])
    axes = [fig.add_subplot(grid[0, i]) for i in range(5)] + [fig.add_subplot(grid[1, :])]
    for ax, img, title in zip(axes, [pairs.a[p], b_pts[k], b_new[k], pairs.c[p]],
                              ["A", "B (barrier)", "B' (bypass)", "C"]):
        ax.imshow(img.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0,
                  vmax=1)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    axes[4].imshow(diff.mean(0).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    axes[4].set_title("change B' - B\n(scaled to [-1, 1])", fontsize=10)
    axes[4].axis("off")
    one = slice(p, p + 1)
    before = loss_profiles(model, pairs.a[one], pairs.c[one], pairs.targets[one],
                           num_points=num_points)
    after = path_profiles(model, [result.vertices[p]], pairs.targets[one], num_points=num_points)
    ts = np.linspace(0, 1, num_points)
    axes[5].plot(ts, before[0], label="straight line from A to C")
    axes[5].plot(ts, after[0], label=f"final path ({len(result.vertices[p]) - 2} bypass points)")
    axes[5].set_yscale("log")
    axes[5].set_xlabel("position along the path (fraction of its arc length)")
    axes[5].set_ylabel("class loss (nats)")
    axes[5].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_path_geometry(bent: pd.DataFrame) -> plt.Figure:
    """Relative path length and chord deviation of the bypassed pairs ``bent`` (rows of a
    pair table), by kind."""
    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.2), sharey=True)
    sns.stripplot(data=bent, x="rel_length", y="kind", ax=axes[0], size=4, alpha=0.7)
    axes[0].set_xlabel("path length relative to |C - A|")
    axes[0].set_ylabel("kind of pair")
    sns.stripplot(data=bent, x="chord_deviation", y="kind", ax=axes[1], size=4, alpha=0.7)
    axes[1].set_xlabel("chord deviation relative to |C - A|")
    axes[1].set_ylabel("")
    fig.tight_layout()
    return fig


def plot_random_bends(bends: pd.DataFrame, tol: float, floor: float = 1e-5) -> plt.Figure:
    """The null of "nearly straight": for each bypassed real pair, the barrier of its own
    path against the mean barrier of the same bend in random directions (log scales,
    values below ``floor`` drawn at it), with the tolerance dashed on both axes."""
    fig, ax = plt.subplots(figsize=(min(plotting.MAX_WIDTH, 4.8), 4.0))
    x = bends["found"].clip(lower=floor)
    y = bends["null"].clip(lower=floor)
    ax.scatter(x, y, s=14, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(tol, color="k", ls="--", lw=1)
    ax.axhline(tol, color="k", ls="--", lw=1, label=f"tolerance ({tol:g} nats)")
    ax.set_xlabel("barrier of the bypassed path (nats)")
    ax.set_ylabel("barrier of random bends, same size (nats)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
