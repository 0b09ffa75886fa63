"""Chapter 06's figures and tables of the study along the path.

The tables are those of :func:`mcutils.chapters.ch06_robust_path.path_study`
(``samples``: per input and ``t``; ``path``: per ``t``), with a ``seed`` column.

* :func:`path_means` is the per-point means over seeds, as the chapter prints them;
* :func:`plot_path_profiles` draws clean and PGD accuracy, robustness loss and mean top
  eigenvalue along the path, one line per seed, in two rows;
* :func:`plot_per_image_scatter` draws one image per dot at one ``t`` and seed: top
  eigenvalue against robustness loss;
* :func:`plot_hessian_quantities` draws the book's per-image eigenvalue beside the
  paper's batch-level quantity along the path.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["path_means", "plot_hessian_quantities", "plot_path_profiles",
           "plot_per_image_scatter"]

PATH_COLUMNS = ("accuracy", "robust_accuracy", "loss", "robust_loss", "top_eig",
                "weight_norm", "paper_eig")


def path_means(path: pd.DataFrame, columns: Sequence[str] = PATH_COLUMNS,
               digits: int = 4) -> pd.DataFrame:
    """Per ``t``: the mean over seeds of ``columns`` of the path table, rounded."""
    return path.groupby("t")[list(columns)].mean().round(digits)


def plot_path_profiles(path: pd.DataFrame) -> Figure:
    """Four panels along the path in two rows, one line per seed: clean accuracy, PGD
    accuracy, robustness loss (with the mean clean loss dashed) and mean top eigenvalue
    (log), at most :data:`mcutils.plotting.MAX_WIDTH` wide."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mcutils.plotting import MAX_WIDTH

    fig, grid = plt.subplots(2, 2, figsize=(MAX_WIDTH, 6.0), sharex=True)
    axes = list(grid.flat)
    panels = [("accuracy", "clean accuracy"), ("robust_accuracy", "robust accuracy (PGD)"),
              ("robust_loss", "robustness loss (nats)"),
              ("top_eig", "mean top input-Hessian eigenvalue")]
    for ax, (column, label) in zip(axes, panels, strict=True):
        sns.lineplot(path, x="t", y=column, units="seed", estimator=None, hue="seed",
                     palette="deep", marker="o", ax=ax, legend=ax is axes[0])
        ax.set_ylabel(label)
        ax.set_xlabel("position on the curve, t")
    axes[0].legend(title="curve seed")
    axes[2].plot(path.groupby("t")["loss"].mean(), "k--", lw=1,
                 label="clean loss, mean over seeds")
    axes[2].legend()
    axes[3].set_yscale("log")
    fig.tight_layout()
    return fig


def plot_per_image_scatter(samples: pd.DataFrame, t: float, seed: int) -> Figure:
    """One image per dot at ``t`` on the curve of ``seed``: its top input-Hessian
    eigenvalue (log scale) against its robustness loss, coloured by clean correctness."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    mid = samples[(samples["t"] == t) & (samples["seed"] == seed)]
    mid = mid.assign(clean=mid["correct"].map({True: "correct", False: "wrong"}))
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(mid, x="top_eig", y="robust_loss", hue="clean",
                    hue_order=["correct", "wrong"], s=12, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("top input-Hessian eigenvalue (log scale)")
    ax.set_ylabel("robustness loss (nats)")
    ax.legend(title="clean prediction")
    ax.set_title(f"one image per dot, t = {t}, seed {seed}")
    fig.tight_layout()
    return fig


def plot_hessian_quantities(path: pd.DataFrame) -> Figure:
    """Two panels along the path, one line per seed (log scales): the mean per-image top
    eigenvalue of this book and the paper's batch-level quantity (``paper_eig``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mcutils.plotting import MAX_WIDTH

    fig, ax = plt.subplots(1, 2, figsize=(MAX_WIDTH, 3.6))
    sns.lineplot(path, x="t", y="top_eig", units="seed", estimator=None, hue="seed",
                 palette="deep", marker="o", ax=ax[0])
    ax[0].set_title("this book: per image")
    ax[0].set_ylabel("mean top input-Hessian eigenvalue")
    sns.lineplot(path, x="t", y="paper_eig", units="seed", estimator=None, hue="seed",
                 palette="deep", marker="s", ax=ax[1], legend=False)
    ax[1].set_title("the paper: per batch")
    ax[1].set_ylabel("paper's batch-level eigenvalue")
    ax[0].legend(title="curve seed")
    for a in ax:
        a.set_yscale("log")
        a.set_xlabel("position on the curve, t")
    fig.tight_layout()
    return fig
