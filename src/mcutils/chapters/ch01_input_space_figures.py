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
           "plot_one_bypass", "plot_path_geometry"]


def plot_straight_paths(profiles: torch.Tensor, barriers: torch.Tensor, targets: torch.Tensor,
                        class_names: Sequence[str], tol: float) -> plt.Figure:
    """Left: the loss profiles ``[pairs, points]`` of the real pairs (log scale) with their
    median; right: each pair's straight-path barrier by class, with ``tol`` dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    plotting.profile_plot(profiles, ax=axes[0], alpha=0.15, label="median")
    axes[0].set_yscale("log")
    axes[0].set_title(f"loss profiles of {len(profiles)} real same-class pairs")
    frame = pd.DataFrame({"class": [class_names[int(k)] for k in targets],
                          "barrier": barriers.numpy()})
    sns.stripplot(data=frame, x="barrier", y="class", ax=axes[1], size=3, alpha=0.6, jitter=0.25)
    axes[1].set_xscale("symlog", linthresh=1e-3)
    axes[1].set_xlim(left=0)
    axes[1].axvline(tol, color="k", ls="--", lw=1)
    axes[1].set_title(f"straight-path barrier per class (dashed: tol = {tol:g} nats)")
    fig.tight_layout()
    return fig


def plot_synthetic_examples(pairs: SyntheticPairs, class_names: Sequence[str]) -> plt.Figure:
    """The first synthetic pair of each class: ``A`` in the top row, ``C`` below (clipped
    to ``[0, 1]`` for display)."""
    shown = torch.cat([(pairs.targets == k).nonzero().flatten()[:1] for k in pairs.targets.unique()])
    names = [class_names[int(k)] for k in pairs.targets[shown]]
    return plotting.image_grid(torch.cat([pairs.a[shown], pairs.c[shown]]).clamp(0, 1),
                               [f"A {n}" for n in names] + [f"C {n}" for n in names],
                               ncols=len(shown))


def plot_tolerance_curves(curve: pd.DataFrame, kinds: Sequence[str], max_rounds: int,
                          tol: float) -> plt.Figure:
    """One panel per kind of pair: the connected fraction against the tolerance (log
    scale) after each round ``0..max_rounds``, with its interval shaded and ``tol``
    dashed (``curve`` from :func:`~mcutils.chapters.ch01_input_space.tolerance_curve`)."""
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    palette = sns.color_palette("viridis", max_rounds + 1)
    for ax, kind in zip(axes, kinds):
        for r in range(max_rounds + 1):
            sub = curve[(curve["kind"] == kind) & (curve["round"] == r)]
            ax.plot(sub["tol"], sub["estimate"], marker="o", ms=3, color=palette[r],
                    label=f"round {r}")
            ax.fill_between(sub["tol"], sub["lo"], sub["hi"], color=palette[r], alpha=0.15)
        ax.axvline(tol, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_title(kind)
        ax.set_xlabel("tolerance (nats)")
    axes[0].set_ylabel("fraction connected")
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
    fig, axes = plt.subplots(1, 6, figsize=(15, 2.8),
                             gridspec_kw=dict(width_ratios=[1, 1, 1, 1, 1, 2.2]))
    for ax, img, title in zip(axes, [pairs.a[p], b_pts[k], b_new[k], pairs.c[p]],
                              ["A", "B (barrier)", "B' (bypass)", "C"]):
        ax.imshow(img.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0,
                  vmax=1)
        ax.set_title(title)
        ax.axis("off")
    axes[4].imshow(diff.mean(0).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    axes[4].set_title("(B' - B), normalised")
    axes[4].axis("off")
    one = slice(p, p + 1)
    before = loss_profiles(model, pairs.a[one], pairs.c[one], pairs.targets[one],
                           num_points=num_points)
    after = path_profiles(model, [result.vertices[p]], pairs.targets[one], num_points=num_points)
    ts = np.linspace(0, 1, num_points)
    axes[5].plot(ts, before[0], label="straight A-C")
    axes[5].plot(ts, after[0], label=f"final path, bypass points: {len(result.vertices[p]) - 2}")
    axes[5].set_yscale("log")
    axes[5].set_xlabel("position along the path (arc length)")
    axes[5].set_ylabel("loss")
    axes[5].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_path_geometry(bent: pd.DataFrame, max_rel_length: float) -> plt.Figure:
    """Relative path length (``max_rel_length`` dashed) and chord deviation of the bypassed
    pairs ``bent`` (rows of a pair table), by kind."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    sns.stripplot(data=bent, x="rel_length", y="kind", ax=axes[0], size=4, alpha=0.7)
    axes[0].axvline(max_rel_length, color="k", ls="--", lw=1)
    axes[0].set_xlabel("path length / |C - A|")
    sns.stripplot(data=bent, x="chord_deviation", y="kind", ax=axes[1], size=4, alpha=0.7)
    axes[1].set_xlabel("chord deviation")
    axes[1].set_ylabel("")
    fig.tight_layout()
    return fig
