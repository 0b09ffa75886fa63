"""One seaborn theme for the whole book and the few figure types it repeats.

Used by every chapter (00-06), which calls :func:`set_theme` once; :func:`image_grid`
draws images in chapters 00, 01, 03 and 05, :func:`profile_plot` loss profiles along
paths in chapters 01 and 04, :func:`confusion_matrix` the default model's errors in
chapter 00, and chapter 02 colours its curves with :data:`PALETTE`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

__all__ = ["set_theme", "image_grid", "confusion_matrix", "profile_plot", "PALETTE", "MAX_WIDTH"]

PALETTE = "colorblind"


#: the widest figure, in inches, that the book's text column shows at the theme's font
#: size (about 780 px); wider figures shrink their text below legibility
MAX_WIDTH = 8.0


def set_theme() -> None:
    """Apply the book's seaborn theme (call once at the top of each chapter)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": 100, "savefig.dpi": 150, "figure.figsize": (6.4, 4.0),
                      "axes.titlesize": "medium", "image.cmap": "gray"})


def _to_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
    return arr


def image_grid(images: torch.Tensor | np.ndarray, titles: Sequence[str] | None = None,
               ncols: int = 8, size: float = 1.3, vmin: float | None = 0.0,
               vmax: float | None = 1.0, cmap: str = "gray") -> plt.Figure:
    """Show ``[N, C, H, W]`` images (pixel space) in a grid with optional titles."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.2 * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_image(images[i]), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: torch.Tensor | np.ndarray, y_pred: torch.Tensor | np.ndarray,
                     classes: Sequence[str], normalize: bool = True) -> plt.Figure:
    """A seaborn heat map of the confusion matrix (rows: true class)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    k = len(classes)
    cm = np.zeros((k, k))
    np.add.at(cm, (y_true, y_pred), 1)
    if normalize:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.heatmap(cm, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues",
                xticklabels=classes, yticklabels=classes, ax=ax, cbar=False,
                annot_kws={"fontsize": 7})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def profile_plot(profiles: torch.Tensor | np.ndarray, ts: torch.Tensor | np.ndarray | None = None,
                 label: str | None = None, ax: plt.Axes | None = None, alpha: float = 0.25,
                 color: str | None = None, median: bool = True) -> plt.Axes:
    """Loss profiles ``[pairs, points]`` against t in [0, 1], faint, with their median bold."""
    prof = profiles.detach().cpu().numpy() if isinstance(profiles, torch.Tensor) \
        else np.asarray(profiles)
    t = np.linspace(0, 1, prof.shape[1]) if ts is None else np.asarray(ts)
    if ax is None:
        _, ax = plt.subplots()
    color = color or sns.color_palette(PALETTE)[0]
    for row in prof:
        ax.plot(t, row, color=color, alpha=alpha, lw=0.7)
    if median:
        ax.plot(t, np.median(prof, 0), color=color, lw=2.2, label=label)
    ax.set_xlabel("t")
    ax.set_ylabel("loss")
    return ax
