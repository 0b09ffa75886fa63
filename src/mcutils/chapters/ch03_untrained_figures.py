"""Chapter 03's figures: the synthetic pairs of an untrained network, the barrier after
each bypass round with the tolerance curves, the path lengths, the width/steps sweep of
the narrow ResNet, and the barrier's evolution in the first training batches.

* :func:`plot_synthetic_pairs`: one synthetic pair per class, each image on its own scale;
* :func:`plot_rounds`: barriers per round, and the connected fraction against the tolerance;
* :func:`plot_path_lengths`: the relative length of every connecting path, per model;
* :func:`plot_sweep`: the sweep's tolerance curves per cell and its synthesis losses;
* :func:`plot_evolution`: highest straight-path loss and worse endpoint loss per batch.

Each returns the figure; the notebook shows it. Used by chapter 03.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from mcutils import plotting
from mcutils.chapters.ch01_input_space import round_columns
from mcutils.chapters.ch03_sweep import label_cells
from mcutils.inputspace.synthesis import SyntheticPairs

__all__ = ["plot_synthetic_pairs", "plot_rounds", "plot_path_lengths", "plot_sweep",
           "plot_evolution"]


def plot_synthetic_pairs(pairs: SyntheticPairs, class_names: Sequence[str], model: str,
                         seed: int) -> plt.Figure:
    """The first synthetic pair of every class in ``pairs`` (``A`` above ``C``), each image
    scaled to its own range (they may leave the pixel range)."""
    shown = torch.cat([(pairs.targets == k).nonzero().flatten()[:1]
                       for k in pairs.targets.unique()])
    names = [class_names[k] for k in pairs.targets[shown].tolist()]
    fig = plotting.image_grid(torch.cat([pairs.a[shown], pairs.c[shown]]),
                              [f"A {n}" for n in names] + [f"C {n}" for n in names],
                              ncols=len(shown), vmin=None, vmax=None)
    fig.suptitle(f"synthetic pairs of an untrained {model} (seed {seed}; each image scaled "
                 "to its own range)", fontsize=9, y=1.02)
    return fig


def plot_rounds(both: pd.DataFrame, curve: pd.DataFrame, tol: float, max_rounds: int,
                model: str) -> plt.Figure:
    """Left: the barrier of every pair after each round, per model (dashed: ``tol``).
    Right: the fraction connected against the tolerance per model and round
    (``curve``, a :func:`~mcutils.chapters.ch01_input_space.tolerance_curve`), solid for
    the untrained ``model``, dotted for the others, with 95% intervals."""
    rcols = round_columns(both)
    long = both.melt(id_vars=["model", "seed", "pair"], value_vars=rcols, var_name="round",
                     value_name="barrier")
    long["round"] = long["round"].str.slice(6).astype(int)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sns.boxplot(data=long, x="round", y="barrier", hue="model", ax=axes[0], fliersize=2)
    axes[0].set_yscale("symlog", linthresh=1e-4)
    axes[0].set_ylim(bottom=0)
    axes[0].axhline(tol, color="k", ls="--", lw=1)
    axes[0].set_ylabel("barrier (nats)")
    axes[0].set_title(f"barrier after each round (dashed: tol = {tol:g})")
    palette = sns.color_palette("viridis", max_rounds + 1)
    for (name, r), sub in curve.groupby(["model", "round"]):
        ls = "-" if name == model else ":"
        axes[1].plot(sub["tol"], sub["estimate"], ls=ls, marker="o", ms=3, color=palette[r],
                     label=f"{name}, round {r}")
        axes[1].fill_between(sub["tol"], sub["lo"], sub["hi"], color=palette[r], alpha=0.1)
    axes[1].set_xscale("log")
    axes[1].axvline(tol, color="k", ls="--", lw=1)
    axes[1].set_xlabel("tolerance (nats)")
    axes[1].set_ylabel("fraction connected")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_path_lengths(both: pd.DataFrame) -> plt.Figure:
    """The connecting path's length relative to ``|C - A|`` of every pair, per model."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    sns.stripplot(data=both, x="rel_length", y="model", ax=ax, size=4, alpha=0.7)
    ax.set_xlabel("path length / |C - A|")
    ax.set_title("how far the connecting paths are from straight lines")
    return fig


def plot_sweep(sweep: pd.DataFrame, cell_curve: pd.DataFrame, tol: float, max_rounds: int,
               stop_loss: float) -> plt.Figure:
    """Left: the fraction connected after the last round against the tolerance, per cell
    of the sweep (``cell_curve``, from
    :func:`~mcutils.chapters.ch03_sweep.cell_tolerance_curve`). Right: the class loss
    of the worse synthetic input of every pair, per cell (dotted: ``stop_loss``)."""
    cells = label_cells(sweep)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for name, sub in cell_curve.groupby("cell", sort=False):
        axes[0].plot(sub["tol"], sub["estimate"], marker="o", ms=3, label=name)
        axes[0].fill_between(sub["tol"], sub["lo"], sub["hi"], alpha=0.15)
    axes[0].set_xscale("log")
    axes[0].axvline(tol, color="k", ls="--", lw=1)
    axes[0].set_xlabel("tolerance (nats)")
    axes[0].set_ylabel(f"fraction connected after round {max_rounds}")
    axes[0].legend(fontsize=8)
    sns.stripplot(data=cells, x="end_loss_worse", y="cell", ax=axes[1], size=4, alpha=0.7)
    axes[1].set_xscale("log")
    axes[1].axvline(stop_loss, color="k", ls=":", lw=1)
    axes[1].set_xlabel("class loss of the worse synthetic input of a pair (nats)")
    axes[1].set_ylabel("")
    fig.tight_layout()
    return fig


def plot_evolution(evo: Mapping[str, pd.DataFrame], num_runs: int) -> plt.Figure:
    """The barrier evolution per protocol against the training batches: the highest loss
    on the straight path (left) and the worse endpoint loss (right), from
    :func:`~mcutils.chapters.ch03_untrained.evolution_summary` of ``max_loss`` and
    ``end_loss``, with 95% intervals over ``num_runs`` runs (log scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, (metric, summ) in zip(axes, evo.items()):
        for proto, sub in summ.groupby("protocol"):
            ax.plot(sub["step"], sub["estimate"], marker="o", ms=3, label=proto)
            ax.fill_between(sub["step"], sub["lo"].clip(lower=sub["estimate"].min() / 10),
                            sub["hi"], alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("training batches")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("highest loss on the straight path (nats)")
    axes[0].set_title(f"mean over pairs; 95% interval over {num_runs} runs")
    axes[1].set_ylabel("worse endpoint loss (nats)")
    fig.tight_layout()
    return fig
