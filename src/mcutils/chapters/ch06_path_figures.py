"""Chapter 06's figures and tables of the study along the path.

The tables are those of :func:`mcutils.chapters.ch06_robust_path.path_study`
(``samples``: per input and ``t``; ``path``: per ``t``), with a ``seed`` column.

* :func:`path_means` is the per-point means over seeds, as the chapter prints them;
* :func:`plot_path_profiles` draws clean and PGD accuracy, robustness loss and mean top
  eigenvalue along the path, one line per seed, in two rows;
* :func:`plot_per_image_scatter` draws one image per dot at one ``t`` and seed: top
  eigenvalue against robustness loss;
* :func:`plot_hessian_quantities` draws the book's per-image eigenvalue beside the
  paper's batch-level quantity along the path;
* :func:`ends_table`, :func:`barrier_table`, :func:`budget_table`, :func:`variant_table`,
  :func:`shared_init_table`, :func:`correlation_table`, :func:`controls_table`,
  :func:`peak_table` and :func:`bound_table` are the chapter's tables, as DataFrames for
  :func:`mcutils.core.report.table_view`.

Used by chapter 06.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["barrier_table", "bound_table", "budget_table", "controls_table",
           "correlation_table", "ends_table", "path_means", "peak_table",
           "plot_hessian_quantities", "plot_path_profiles", "plot_per_image_scatter",
           "shared_init_table", "variant_table"]

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


def ends_table(reg_info: Mapping[str, Any], rob_info: Mapping[str, Any],
               protocol: str) -> pd.DataFrame:
    """The two ends: how each was trained and its clean test accuracy."""
    training = {"official": "1-step PGD + gradient penalty, SGD (the official code)",
                "pgd": "multi-step PGD, Adam (the variant)"}[protocol]
    return pd.DataFrame([
        {"end": "regular, t = 0", "training": "chapter 00's model: clean data, Adam",
         "clean test accuracy": reg_info["metrics"]["accuracy"]},
        {"end": "robust, t = 1", "training": training,
         "clean test accuracy": rob_info["metrics"]["accuracy"]}])


def barrier_table(path: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the relative barriers of the clean and the robustness loss and the
    robust-error barrier (points of error)."""
    from mcutils.chapters.ch06_path_stats import barrier_heights

    err = path.assign(robust_error=1 - path["robust_accuracy"])
    return pd.DataFrame({
        "clean loss (relative)": barrier_heights(path, "loss", relative=True),
        "robustness loss (relative)": barrier_heights(path, "robust_loss", relative=True),
        "robust error (points)": barrier_heights(err, "robust_error")}).rename_axis("seed")


def budget_table(budget: Mapping[str, Mapping[int, Any]]) -> pd.DataFrame:
    """Per curve budget: the three barriers' intervals over seeds."""
    names = {"robust": "robustness-loss barrier (relative)",
             "robust_error": "robust-error barrier (points)",
             "standard": "clean-loss barrier (relative)"}
    return pd.DataFrame({label: dict(budget[key]) for key, label in names.items()}
                        ).rename_axis("curve steps")


def variant_table(variant: Mapping[str, Any] | None,
                  robust_trained: Mapping[str, Any] | None) -> pd.DataFrame:
    """Per path and seed: the barriers towards the variant end (each budget) and along
    the paths trained on the robust loss."""
    from mcutils.chapters.ch06_path_stats import barrier_heights

    rows = []
    for label, study in (("to the multi-step PGD end", variant),
                         ("trained on the robust loss", robust_trained)):
        if study is None:
            continue
        path = study["path"]
        groups = path.groupby("budget") if "budget" in path else [(None, path)]
        for b, g in groups:
            lo = barrier_heights(g, "robust_loss", relative=True)
            er = barrier_heights(g, "robust_error")
            rows += [{"path": label, "curve steps": b if b is not None else "",
                      "seed": s, "robustness-loss barrier (relative)": lo[s],
                      "robust-error barrier (points)": er[s]} for s in lo.index]
    return pd.DataFrame(rows)


def shared_init_table(path: pd.DataFrame, shared: Mapping[str, pd.DataFrame] | None
                      ) -> pd.DataFrame:
    """Mean robustness loss per point for independent ends and, when run, for a robust end
    that shares the regular end's initialisation (empty when skipped)."""
    if shared is None:
        return pd.DataFrame()
    return pd.DataFrame({
        "independent ends": path.groupby("t")["robust_loss"].mean(),
        "shared initialisation": shared["path"].groupby("t")["robust_loss"].mean(),
    }).rename_axis("t").reset_index()


def correlation_table(correlations: Mapping[str, Mapping[float, Any]]) -> pd.DataFrame:
    """Per sampled t: the rank correlations with the robustness loss of the top
    eigenvalue and of its two per-image rivals."""
    return pd.DataFrame({"top eigenvalue": correlations["top_eig"],
                         "clean loss (control)": correlations["loss"],
                         "input-gradient norm (control)": correlations["grad_norm"]}
                        ).rename_axis("t")


def controls_table(controls: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per control: the eigenvalue's margin along the path and per image."""
    return pd.DataFrame([{"control": c, "along the path": v["path"],
                          "per image": v["per_sample"] if v["per_sample"] is not None else "n/a"}
                         for c, v in controls.items()])


def peak_table(peak: Mapping[str, Any]) -> pd.DataFrame:
    """Per seed: where the robustness loss and the eigenvalue peak, then their means over
    seeds with the Student-t intervals."""
    rows = [{"curve seed": r["seed"], "peak of the robustness loss, t": r["robust_loss"],
             "peak of the eigenvalue, t": r["top_eig"],
             "robustness-loss peak inside the path": "yes" if r["interior"] else "no"}
            for r in peak["per_seed"]]
    rows.append({"curve seed": "mean [interval]",
                 "peak of the robustness loss, t": peak["robust_loss"],
                 "peak of the eigenvalue, t": peak["top_eig"],
                 "robustness-loss peak inside the path": f"{peak['interior']:.0%} of seeds"})
    return pd.DataFrame(rows)


def bound_table(bound_rows: Mapping[str, Any]) -> pd.DataFrame:
    """Per ball: the share of images within the second-order bound and their number."""
    return pd.DataFrame([{"ball": k, "share within the bound": v, "images": v["n"]}
                         for k, v in bound_rows.items()])
