"""Chapter 03's figures: the synthetic pairs of an untrained network, the barrier after
each bypass round with the tolerance curves, the path lengths, the width/steps sweep of
the narrow ResNet, the budget curve, and the barrier's evolution in the first training
batches.

* :func:`plot_synthetic_pairs`: one synthetic pair per class, each image on its own scale;
* :func:`plot_rounds`: barriers per round, and the connected fraction against the tolerance;
* :func:`plot_path_lengths`: the relative length of every connecting path, per model;
* :func:`plot_sweep`: the sweep's tolerance curves per cell and its synthesis losses;
* :func:`plot_evolution`: highest straight-path loss and worse endpoint loss per batch;
* :func:`plot_budget_curve`: the connected fraction under both criteria against the step
  budget, and how deep the endpoints get.

Each returns the figure, at most :data:`mcutils.plotting.MAX_WIDTH` wide (two-panel
figures stack their panels); the notebook glues it for a numbered caption. Used by
chapter 03.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import pandas as pd
import seaborn as sns
import torch

from mcutils import plotting
from mcutils.chapters.ch01_input_space import round_columns
from mcutils.chapters.ch03_sweep import label_cells
from mcutils.inputspace.synthesis import SyntheticPairs

__all__ = ["plot_synthetic_pairs", "plot_rounds", "plot_path_lengths", "plot_sweep",
           "plot_evolution", "plot_budget_curve"]

#: legend entries of the protocols of :func:`~mcutils.chapters.ch03_evolution.barrier_evolution`
_PROTOCOL_LABELS = {"re-synthesised": "pairs synthesised anew at each checkpoint",
                    "fixed at init": "pairs fixed at initialisation"}


def plot_synthetic_pairs(pairs: SyntheticPairs, class_names: Sequence[str], model: str,
                         seed: int, per_row: int = 5) -> plt.Figure:
    """The first synthetic pair of every class in ``pairs`` (``A`` above ``C``), each image
    scaled to its own range (they may leave the pixel range); at most ``per_row`` classes
    side by side, further classes in another block of two rows."""
    shown = torch.cat([(pairs.targets == k).nonzero().flatten()[:1]
                       for k in pairs.targets.unique()])
    names = [class_names[k] for k in pairs.targets[shown].tolist()]
    ncols = min(per_row, len(shown))
    blocks = -(-len(shown) // ncols)
    size = plotting.MAX_WIDTH / max(per_row, ncols)
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(size * ncols, (size + 0.3) * 2 * blocks),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (k, name) in enumerate(zip(shown.tolist(), names)):
        block, col = divmod(i, ncols)
        for row, (tag, images) in enumerate((("A", pairs.a), ("C", pairs.c))):
            ax = axes[2 * block + row, col]
            ax.imshow(plotting._to_image(images[k]), cmap="gray")  # its own range
            ax.set_title(f"{tag}: {name}", fontsize=9)
    fig.suptitle(f"untrained {model}, seed {seed}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_rounds(both: pd.DataFrame, curve: pd.DataFrame, tol: float, max_rounds: int,
                model: str) -> plt.Figure:
    """Top: the barrier of every pair after each round, per model (dashed: ``tol``).
    Bottom: the fraction connected against the tolerance per model and round
    (``curve``, a :func:`~mcutils.chapters.ch01_input_space.tolerance_curve`), solid for
    the untrained ``model``, dotted for the others, with 95% intervals."""
    rcols = round_columns(both)
    long = both.melt(id_vars=["model", "seed", "pair"], value_vars=rcols, var_name="round",
                     value_name="barrier")
    long["round"] = long["round"].str.slice(6).astype(int)
    long["model"] = long["model"].replace({model: f"untrained {model}"})
    fig, axes = plt.subplots(2, 1, figsize=(plotting.MAX_WIDTH, 7.2))
    sns.boxplot(data=long, x="round", y="barrier", hue="model", ax=axes[0], fliersize=2)
    axes[0].set_yscale("symlog", linthresh=1e-4)
    axes[0].set_ylim(bottom=0)
    axes[0].axhline(tol, color="k", ls="--", lw=1)
    axes[0].set_xlabel("bypass round (0: the straight line)")
    axes[0].set_ylabel("barrier (nats)")
    axes[0].set_title(f"barrier after each round (dashed: main tolerance, {tol:g} nats)")
    axes[0].legend(title="network", fontsize=8)
    palette = sns.color_palette("viridis", max_rounds + 1)
    for (name, r), sub in curve.groupby(["model", "round"]):
        ls = "-" if name == model else ":"
        label = f"untrained {name}" if name == model else name
        axes[1].plot(sub["tol"], sub["estimate"], ls=ls, marker="o", ms=3, color=palette[r],
                     label=f"{label}, round {r}")
        axes[1].fill_between(sub["tol"], sub["lo"], sub["hi"], color=palette[r], alpha=0.1)
    axes[1].set_xscale("log")
    axes[1].axvline(tol, color="k", ls="--", lw=1)
    axes[1].set_xlabel("tolerance (nats)")
    axes[1].set_ylabel("fraction of pairs connected")
    axes[1].set_title("solid: untrained network; dotted: the others")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def plot_path_lengths(both: pd.DataFrame, model: str | None = None) -> plt.Figure:
    """The connecting path's length relative to ``|C - A|`` of every pair, per model
    (``model``, if given, labelled as the untrained one)."""
    if model is not None:
        both = both.assign(model=both["model"].replace({model: f"untrained {model}"}))
    fig, ax = plt.subplots(figsize=(plotting.MAX_WIDTH, 3.2))
    sns.stripplot(data=both, x="rel_length", y="model", ax=ax, size=4, alpha=0.7)
    ax.set_xlabel("path length relative to the straight line |C - A|")
    ax.set_ylabel("network")
    ax.set_title("how far the connecting paths are from straight lines")
    return fig


def plot_sweep(sweep: pd.DataFrame, cell_curve: pd.DataFrame, tol: float, max_rounds: int,
               stop_loss: float) -> plt.Figure:
    """Top: the fraction connected after the last round against the tolerance, per cell
    of the sweep (``cell_curve``, from
    :func:`~mcutils.chapters.ch03_sweep.cell_tolerance_curve`). Bottom: the class loss
    of the worse synthetic input of every pair, per cell (dotted: ``stop_loss``)."""
    cells = label_cells(sweep)
    fig, axes = plt.subplots(2, 1, figsize=(plotting.MAX_WIDTH, 7.0))
    for name, sub in cell_curve.groupby("cell", sort=False):
        axes[0].plot(sub["tol"], sub["estimate"], marker="o", ms=3, label=name)
        axes[0].fill_between(sub["tol"], sub["lo"], sub["hi"], alpha=0.15)
    axes[0].set_xscale("log")
    axes[0].axvline(tol, color="k", ls="--", lw=1)
    axes[0].set_xlabel("tolerance (nats)")
    axes[0].set_ylabel(f"fraction connected after round {max_rounds}")
    axes[0].legend(title="cell of the sweep", fontsize=8)
    sns.stripplot(data=cells, x="end_loss_worse", y="cell", ax=axes[1], size=4, alpha=0.7)
    axes[1].set_xscale("log")
    axes[1].axvline(stop_loss, color="k", ls=":", lw=1)
    axes[1].set_xlabel("class loss of the worse synthetic input of a pair (nats)")
    axes[1].set_ylabel("cell of the sweep")
    axes[1].set_title(f"dotted: the stopping loss, {stop_loss:g} nats")
    fig.tight_layout()
    return fig


def plot_evolution(evo: Mapping[str, pd.DataFrame], num_runs: int) -> plt.Figure:
    """The barrier evolution per protocol against the training batches: the highest loss
    on the straight path (top) and the worse endpoint loss (bottom), from
    :func:`~mcutils.chapters.ch03_evolution.evolution_summary` of ``max_loss`` and
    ``end_loss``, with 95% intervals over ``num_runs`` runs (log scale)."""
    fig, axes = plt.subplots(2, 1, figsize=(plotting.MAX_WIDTH, 7.0), sharex=True)
    for ax, (metric, summ) in zip(axes, evo.items()):
        for proto, sub in summ.groupby("protocol"):
            ax.plot(sub["step"], sub["estimate"], marker="o", ms=3,
                    label=_PROTOCOL_LABELS.get(proto, proto))
            ax.fill_between(sub["step"], sub["lo"].clip(lower=sub["estimate"].min() / 10),
                            sub["hi"], alpha=0.15)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    axes[1].set_xlabel("training batches")
    axes[0].set_ylabel("highest straight-path\nloss (nats)")
    axes[0].set_title(f"mean over pairs; 95% interval over {num_runs} runs")
    axes[1].set_ylabel("worse endpoint\nloss (nats)")
    fig.tight_layout()
    return fig


def plot_budget_curve(curve: pd.DataFrame, tol: float, abs_tol: float) -> plt.Figure:
    """Top: the fraction of pairs connected against the synthesis step budget (the bypass
    budget scales with it), under the gap criterion (``tol`` over the worse endpoint) and
    the absolute one (the whole path below ``abs_tol``), with exact 95% intervals. Bottom:
    the median class loss of the worse synthetic input of a pair. ``curve`` is a
    :func:`~mcutils.chapters.ch03_findings.budget_curve`."""
    fig, axes = plt.subplots(2, 1, figsize=(plotting.MAX_WIDTH, 6.4), sharex=True)
    x = curve["synth_steps"].to_numpy(float)
    for key, label in (("gap", f"gap criterion: below the worse endpoint + {tol:g} nats"),
                       ("abs", f"absolute criterion: the whole path below {abs_tol:g} nats")):
        est = [iv["estimate"] for iv in curve[key]]
        lo = [iv["ci"][0] for iv in curve[key]]
        hi = [iv["ci"][1] for iv in curve[key]]
        axes[0].plot(x, est, marker="o", label=label)
        axes[0].fill_between(x, lo, hi, alpha=0.15)
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("fraction of pairs connected")
    axes[0].legend(fontsize=8)
    axes[1].plot(x, curve["worse_end_loss"], marker="o", color="k")
    axes[1].set_yscale("log")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("synthesis steps (the bypass steps scale with them)")
    axes[1].set_ylabel("median loss of the\nworse endpoint (nats)")
    fig.tight_layout()
    return fig
