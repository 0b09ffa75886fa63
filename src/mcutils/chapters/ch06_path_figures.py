"""Chapter 06's figures and tables of the study along the path.

The tables are those of :func:`mcutils.chapters.ch06_robust_path.path_study`
(``samples``: per input and ``t``; ``path``: per ``t``), with a ``seed`` column.

* :func:`path_means` is the per-point means over seeds, as the chapter prints them;
* :func:`plot_path_profiles` draws clean and PGD accuracy, robustness loss and mean top
  eigenvalue along the path, one line per seed;
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
    """Four panels along the path, one line per seed: clean accuracy, PGD accuracy,
    robustness loss (with the mean clean loss dashed) and mean top eigenvalue (log)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("accuracy", "clean accuracy"), ("robust_accuracy", "PGD accuracy"),
              ("robust_loss", "robustness loss"), ("top_eig", "mean top eigenvalue")]
    for ax, (column, title) in zip(axes, panels, strict=True):
        sns.lineplot(path, x="t", y=column, units="seed", estimator=None, hue="seed",
                     palette="deep", marker="o", ax=ax, legend=ax is axes[0])
        ax.set_title(title)
    axes[2].plot(path.groupby("t")["loss"].mean(), "k--", lw=1, label="clean loss (mean)")
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
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(mid, x="top_eig", y="robust_loss", hue="correct", s=12, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("top eigenvalue of the input Hessian")
    ax.set_ylabel("robustness loss")
    ax.set_title(f"one image per dot, t = {t}, seed {seed}")
    fig.tight_layout()
    return fig


def plot_hessian_quantities(path: pd.DataFrame) -> Figure:
    """Two panels along the path, one line per seed (log scales): the mean per-image top
    eigenvalue of this book and the paper's batch-level quantity (``paper_eig``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    sns.lineplot(path, x="t", y="top_eig", units="seed", estimator=None, hue="seed",
                 palette="deep", marker="o", ax=ax[0])
    ax[0].set_title("mean per-image top eigenvalue (this book)")
    sns.lineplot(path, x="t", y="paper_eig", units="seed", estimator=None, hue="seed",
                 palette="deep", marker="s", ax=ax[1])
    ax[1].set_title("the paper's batch-level quantity")
    for a in ax:
        a.set_yscale("log")
    fig.tight_layout()
    return fig
