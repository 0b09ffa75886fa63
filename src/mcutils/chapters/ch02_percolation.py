"""Chapter 02, the percolation argument: its parameters, its study and claims, and what
it glues.

* :data:`PARAMETERS` is the chapter's parameter schema (with the cross-checks
  :func:`check_threshold_lists` and :func:`check_slice_lists`); :data:`EXPECTED` the
  claims it asserts under the cpu profile and :func:`expected_claims` those of any
  ``threshold_dims``;
* :func:`record_published`, :func:`reference_threshold`, :func:`connection_study`,
  :func:`record_connection`, :func:`threshold_view`, :func:`extrapolated_thresholds`,
  :func:`setup_networks` and :func:`matched_length_summary` are the steps and tables of
  its sections;
* :func:`slices_vs_nulls` runs the slice study of every network and the nulls on the
  identical grids (:mod:`mcutils.percolation.networks`, :mod:`mcutils.percolation.fields`);
* :func:`slice_claims`, :func:`threshold_claims` build the chapter's claims, ready for
  :meth:`mcutils.core.report.ChapterReport.claim`; :func:`slice_summary`,
  :func:`threshold_summary` the numbers it glues; :func:`onset_table`,
  :func:`match_table` its tables;
* :func:`findings` records what the chapter glues, its claims with their negative
  controls and its deviations table (the one-patch claim's words are
  :data:`ONE_PATCH_CLAIM`).

Its figures are in :mod:`mcutils.chapters.ch02_percolation_figures`, its controls and
deviations in :mod:`mcutils.chapters.ch02_percolation_checks`, the tables the reader sees
in :mod:`mcutils.chapters.ch02_percolation_views`. Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import data, models, zoo
from mcutils.chapters.ch02_percolation_checks import deviations, threshold_controls, trio_control
from mcutils.chapters.common import model_params
from mcutils.core import runtime
from mcutils.core.checks import ParameterError
from mcutils.core.report import ChapterReport
from mcutils.core.stats import fraction_interval, interval
from mcutils.params import Param, ParameterSchema
from mcutils.percolation.lattice import connection_curves
from mcutils.percolation.networks import (NULL_NAMES, fraction_intervals, joined_when_inside,
                                          match_nulls, matched_lengths, null_study,
                                          onset_intervals, slice_study)
from mcutils.percolation.thresholds import (ESTIMATORS, PUBLISHED_THRESHOLDS,
                                            asymptotic_threshold, bethe_threshold,
                                            check_per_dim, deviation_interval,
                                            falling_interval, shuffled_dims)

__all__ = ["PARAMETERS", "EXPECTED", "ONE_PATCH_CLAIM", "INPUT_DIMS", "check_threshold_lists",
           "check_slice_lists", "expected_claims", "record_published", "reference_threshold",
           "connection_study", "record_connection", "GPU_NOTE",
           "extrapolated_thresholds", "setup_networks", "matched_length_summary",
           "slices_vs_nulls", "slice_claims", "slice_summary", "onset_table", "match_table",
           "threshold_claims", "threshold_summary", "findings"]


def _per_dim(dims: Sequence[int], **values: Any) -> str | None:
    try:
        check_per_dim(dims, **values)
    except ParameterError as exc:
        return "; ".join(str(exc).split("\n  ")[1:])
    return None


def check_threshold_lists(p: Mapping[str, Any]) -> str | None:
    """The per-dimension lists of the threshold table have one entry per
    ``threshold_dims`` (a scalar applies to every dimension)."""
    return _per_dim(p["threshold_dims"], threshold_estimators=p["threshold_estimators"],
                    growth_clusters=p["growth_clusters"], growth_tmax=p["growth_tmax"],
                    spanning_sizes=p["spanning_sizes"])


def check_slice_lists(p: Mapping[str, Any]) -> str | None:
    """The per-dimension lists of the slice study have one entry per ``slice_dims``."""
    return _per_dim(p["slice_dims"], anchored_slices=p["anchored_slices"],
                    random_slices=p["random_slices"], null_count=p["null_count"])


PARAMETERS = ParameterSchema("02", {
    **model_params(seed_help="seed of the model's training, the lattices and the slices"),
    "lattice_side": Param(128, "side of the 2-D lattices in the first figure", range=(8, 4096)),
    "connection_dims": Param([2, 3, 4, 5], "dimensions of the connection-probability curves",
                             range=(1, 12)),
    "connection_sites": Param(65536, "sites per lattice for those curves", range=(16, None)),
    "connection_trials": Param(6, "lattices per point of those curves", range=(1, None)),
    "profile_dims": Param([2, 7], "dimensions whose growth profiles N(t) are shown",
                          range=(2, 12)),
    "profile_clusters": Param(200, "clusters per profile", range=(1, None)),
    "threshold_dims": Param([2, 3, 4, 5, 6, 7, 8], "dimensions whose threshold is estimated",
                            range=(1, 12)),
    "threshold_estimators": Param("growth", '"growth" or "spanning", one for all or one per '
                                  "dimension", choices=ESTIMATORS),
    "growth_runs": Param(10, "independent runs per dimension (the interval is over them)",
                         range=(2, 256)),
    "growth_clusters": Param([160, 100, 400, 400, 400, 300, 300],
                             "clusters per run and step, per dimension", range=(1, None)),
    "growth_tmax": Param([128, 128, 64, 64, 64, 64, 64], "generations grown, per dimension",
                         range=(16, None)),
    "spanning_sizes": Param([[32, 128], [12, 32], [8, 16], [6, 9], [4, 7], [4, 6], [4, 5]],
                            "spanning only"),
    "spanning_trials": Param(40, "samples per size (spanning estimator only)", range=(2, None)),
    "workers": Param(2, "dimensions estimated at once (threads)", range=(1, 64)),
    "slice_dims": Param([1, 2, 3, 4], "dimensions of the input-space slices", range=(1, 12)),
    "slice_points": Param(9, "grid points per axis of a slice", range=(9, 101)),
    "slice_margin": Param(2, "grid steps beyond each image along the first axis",
                          range=(0, 50)),
    "anchored_slices": Param([24, 24, 24, 24],
                             "slices through image pairs, per dimension and network",
                             range=(0, None)),
    "random_slices": Param([12, 12, 8, 4], "unanchored slices, per dimension and network",
                           range=(0, None)),
    "null_count": Param([200, 200, 200, 100], "null fields per null model and dimension",
                        range=(1, None)),
    "match_min_slices": Param(5, "dimensions with fewer slices are shown but left out of the "
                              "matching", range=(1, None)),
    "eval_subset": Param(2000, "test images from which pairs and centres are drawn",
                         range=(10, None)),
    "num_trios": Param(40, "planes through three same-class images", range=(1, None)),
    "plane_points": Param(41, "points per axis of those planes", range=(3, 1001)),
    "plane_margin": Param(2.0, "the planes extend this far beyond the triangle of the three "
                          "images", range=(0, 100)),
}, checks=[check_threshold_lists, check_slice_lists])


def expected_claims(threshold_dims: Sequence[int]) -> list[str]:
    """The claims the chapter asserts (with ``check_claims``) for these threshold
    dimensions: ``pc_d<d>`` for each one with a published value, and ``pc_falls`` when
    there are at least two."""
    out = [f"pc_d{d}" for d in threshold_dims if d in PUBLISHED_THRESHOLDS]
    return out + ["pc_falls"] * (len(threshold_dims) > 1)


#: the claims asserted under the cpu profile (its ``threshold_dims``)
EXPECTED = expected_claims(PARAMETERS.params["threshold_dims"].default)

#: the one-patch claim's words (its result is the fraction of planes in one patch)
ONE_PATCH_CLAIM = {
    "claim_id": "one_patch",
    "statement": "three correctly classified images of one class lie in one connected "
                 "patch of their class in the plane through them (fraction of planes)",
    "paper": "an earlier version of this chapter said so from one plane; the paper: "
             "same-class inputs are connected",
    "threshold": 0.9, "direction": ">=",
}

#: what the gpu profile changes (the last line of the chapter's summary)
GPU_NOTE = ("longer growth runs, slices up to five dimensions through more pairs (the "
            "forward passes on the GPU) and more null fields; the thresholds run on the CPU "
            "either way.")

#: one-line reasons for the summary, for claims that are not reproduced
_NOTES = {
    "percolation_trained": "independent sites ignore that neighbouring inputs share labels; "
                           "the correlated null is the fair comparison",
    "percolation_untrained": "independent sites ignore that neighbouring inputs share labels; "
                             "the correlated null is the fair comparison",
    "correlated_trained": "the network's onsets differ from a random field of the same "
                          "correlation length by more than a factor 2, or the interval is "
                          "too wide to say",
    "correlated_untrained": "the network's onsets differ from a random field of the same "
                            "correlation length by more than a factor 2, or the interval is "
                            "too wide to say",
    "convex_trained": "in some slices the images are inside before they are joined",
    "convex_untrained": "in some slices the images are inside before they are joined",
    "one_patch": "the exact interval over this many planes does not reach the level",
}

#: input dimensions of image datasets, for the extrapolated thresholds
INPUT_DIMS = {"Fashion-MNIST 28x28x1": 784, "CIFAR-10 32x32x3": 3072,
              "ImageNet crop 224x224x3": 150528}


def record_published(chapter: ChapterReport, threshold_dims: Sequence[int]) -> dict[int, float]:
    """Glue the published thresholds (``ch02_published`` and ``ch02_published_d<d>`` for
    each of ``threshold_dims``, NaN where none is published) and return ``{d: p_c}``."""
    published = {d: v for d, (v, _) in PUBLISHED_THRESHOLDS.items()}
    chapter.record("ch02_published", published, digits=7)
    for d in threshold_dims:
        chapter.record(f"ch02_published_d{d}", published.get(d, float("nan")), digits=7)
    return published


def reference_threshold(d: int, published: Mapping[int, float]) -> float:
    """The published ``p_c(d)``, else the four-term series."""
    return published.get(d, asymptotic_threshold(d))


def connection_study(dims: Sequence[int], published: Mapping[int, float], sites: int,
                     trials: int, seed: int = 0) -> pd.DataFrame:
    """The connection-probability curves of the chapter's second figure:
    :func:`~mcutils.percolation.connection_curves` at ``p / p_c(d)`` from 0.4 to 2.2 (and
    1.1, the value the text quotes), ``p_c(d)`` published or from the series."""
    rel_p = np.sort(np.r_[np.linspace(0.4, 2.2, 13), 1.1])
    return connection_curves(dims, [reference_threshold(d, published) for d in dims], sites,
                             trials, rel_p=rel_p, seed=seed)


def record_connection(chapter: ChapterReport, connection: pd.DataFrame,
                      rel: float = 1.1) -> pd.Series:
    """Glue the connection probability at ``p = rel p_c`` in the lowest and the highest
    dimension (``ch02_conn_rel``, ``ch02_conn_low_d``, ``ch02_conn_low``,
    ``ch02_conn_high_d``, ``ch02_conn_high``); returns it per dimension."""
    just_above = connection[np.isclose(connection.p_rel, rel)].set_index("d").connection
    chapter.record("ch02_conn_rel", rel)
    chapter.record("ch02_conn_low_d", int(just_above.index.min()))
    chapter.record("ch02_conn_low", float(just_above.iloc[0]))
    chapter.record("ch02_conn_high_d", int(just_above.index.max()))
    chapter.record("ch02_conn_high", float(just_above.iloc[-1]))
    return just_above


def extrapolated_thresholds(input_dims: Mapping[str, int] = INPUT_DIMS) -> pd.DataFrame:
    """The series and Bethe thresholds at the input dimensions of image datasets (index:
    the dataset; columns ``d``, ``series``, ``bethe``)."""
    return pd.DataFrame({name: dict(d=d, series=asymptotic_threshold(d),
                                    bethe=bethe_threshold(d))
                         for name, d in input_dims.items()}).T


def setup_networks(params: Mapping[str, Any]) -> tuple[dict[str, nn.Module], Any]:
    """The two networks of the slice study and the images they are probed with.

    The trained one is the default model (:func:`mcutils.zoo.trained_model`, shared with
    the other chapters), the untrained one the same architecture freshly initialised
    after reseeding with ``params["seed"]``; both on ``params["device"]``. The images are
    ``params["eval_subset"]`` test images.

    Returns:
        ``({"trained": net, "untrained": net}, test_set)``.
    """
    p = params
    net = zoo.trained_model(
        dataset=p["dataset"], model=p["model"], epochs=p["num_epochs"], lr=p["lr"],
        batch_size=p["batch_size"], train_subset=p["train_subset"], seed=p["seed"],
        device=p["device"])
    runtime.seed_everything(p["seed"])
    dev = runtime.get_device(p["device"])
    networks = {"trained": net.to(dev),
                "untrained": models.build_for_dataset(p["model"], p["dataset"]).to(dev)}
    test_set = data.load_dataset(p["dataset"], "test", subset=p["eval_subset"], seed=p["seed"])
    return networks, test_set


def matched_length_summary(study: Mapping) -> dict[str, tuple[float, float]]:
    """The correlation lengths matched to the networks' slices: ``"<model> <kind> d=<d>"``
    -> (lag-one correlation, length in grid steps), rounded for display."""
    return {f"{m} {kind} d={d}": (round(v["rho"], 3), round(v["ell"], 2))
            for (m, kind, d), v in study["lengths"].items()}


def _null_key(name: str) -> str:
    return name.replace(":", "_")


def slices_vs_nulls(models: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                    dims: Sequence[int], anchored: int | Sequence[int],
                    unanchored: int | Sequence[int], null_count: int | Sequence[int],
                    n: int = 9, margin: int = 2, seed: int = 0, batch_size: int | None = None,
                    min_units: int = 5, progress: bool = False) -> dict:
    """The chapter's network experiment: slices of each model against the nulls.

    Runs :func:`~mcutils.percolation.slice_study` for every model, matches the correlated null's length to
    each model (:func:`~mcutils.percolation.matched_lengths`), runs :func:`~mcutils.percolation.null_study` on the identical grids
    (spanning only where some model has unanchored slices) and summarises:

    * ``onset``: ``{model: {d: interval}}``, the median anchor-connection onset over
      anchored slices; ``null_onset``: the same for each null (``independent``,
      ``convex``, ``correlated_<model>``) over its fields;
    * ``span_onset`` / ``null_span_onset``: the spanning onsets of unanchored slices
      and of the nulls;
    * ``joined``: ``{model: {d: interval}}``, among the anchored slices whose anchors are
      both inside *early* (``p_in`` below the independent-site null's median onset at
      that ``d``, where independent sites would usually not have joined them yet), the
      fraction whose anchors are joined as soon as both are inside
      (:func:`~mcutils.percolation.joined_when_inside`; a convex region gives 1); ``null_joined`` is the same
      for the nulls' fields. Slices whose anchors enter late are joined by then under
      every model, so they cannot tell the models apart. The column ``early`` of
      ``slices`` marks the slices used;
    * ``line``: ``{model: interval}``, the fraction of pairs whose straight segment is
      predicted in their class at every grid point;
    * ``match`` and ``span_match``: :func:`~mcutils.percolation.match_nulls` per model over ``d >= 2`` with at
      least ``min_units`` slices, for anchor connection and for spanning.

    Returns:
        dict with those entries plus ``slices`` (one table, column ``model``), ``nulls``,
        ``lengths`` and ``fields`` (model -> the kept small fields, for figures).
    """
    tables = {}
    for name, model in models.items():
        tables[name] = slice_study(model, x, y, dims, anchored, unanchored, n=n, margin=margin,
                                   seed=seed, batch_size=batch_size, progress=progress)
    lengths = matched_lengths(tables, n=n, seed=seed)
    span_dims = sorted({int(d) for t in tables.values() for d in t.loc[t.kind == "random", "d"]})
    nulls = null_study(dims, null_count, n=n, margin=margin, lengths=lengths,
                       span_dims=span_dims, seed=seed)
    nulls["null"] = nulls["null"].map(_null_key)
    parts = []
    for name, t in tables.items():
        part = t.assign(model=name)
        part.attrs = {}  # the kept fields stay out of pandas' attrs merging
        parts.append(part)
    slices = pd.concat(parts, ignore_index=True)
    anch = slices[slices.kind == "anchored"]
    rand = slices[slices.kind == "random"]
    out = {"slices": slices, "nulls": nulls, "lengths": lengths,
           "fields": {name: t.attrs["fields"] for name, t in tables.items()}}
    out["onset"] = onset_intervals(anch, "model", "p_conn", seed=seed)
    out["null_onset"] = onset_intervals(nulls, "null", "p_conn", seed=seed)
    out["span_onset"] = onset_intervals(rand, "model", "p_span", seed=seed) if len(rand) else {}
    out["null_span_onset"] = onset_intervals(nulls, "null", "p_span", seed=seed)
    ind = nulls[(nulls["null"] == "independent") & nulls["p_conn"].notna()]
    ind_onset = ind.groupby("d")["p_conn"].median()
    slices["early"] = slices["p_in"] < slices["d"].map(ind_onset)
    nulls["early"] = nulls["p_in"] < nulls["d"].map(ind_onset)
    anch = slices[slices.kind == "anchored"]
    early, nearly = anch[anch.early], nulls[nulls.early]
    out["joined"] = fraction_intervals(early, "model", joined_when_inside(early), seed=seed)
    out["null_joined"] = fraction_intervals(nearly, "null", joined_when_inside(nearly), seed=seed)
    d0 = min(int(d) for d in dims)
    out["line"] = {name: fraction_interval(part["line_in_class"].to_numpy(float) > 0.5)
                   for name, part in anch[anch.d == d0].groupby("model")}
    out["match"], out["span_match"] = {}, {}
    for name in tables:
        nul = {"independent": "independent", "correlated": f"correlated_{name}",
               "convex": "convex"}
        part = anch[(anch.model == name) & (anch.d >= 2)]
        if (part["d"].value_counts() >= min_units).any():
            out["match"][name] = match_nulls(part, nulls, nul, "p_conn", seed=seed,
                                             min_units=min_units)
        part = rand[(rand.model == name) & (rand.d >= 2)]
        if (part["d"].value_counts() >= min_units).any():
            out["span_match"][name] = match_nulls(part, nulls, nul, "p_span", seed=seed,
                                                  min_units=min_units)
    return out


def slice_claims(study: Mapping, log_tol: float = float(np.log(2)), joined_min: float = 0.9
                 ) -> list[dict]:
    """The chapter's claims on slices, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    Per model:

    * ``percolation_<model>``: the model's anchor-connection onset follows the
      independent-site null on the identical grids: the mean over ``d >= 2`` of
      ``|log(onset ratio)|`` is at most ``log_tol`` (a factor 2 by default);
    * ``convex_<model>``: in at least ``joined_min`` of the pairs, every anchored slice
      (``d`` as in the matching) whose anchors are inside early (column ``early``: before
      the independent-site onset) joins them as soon as both are inside. The pair is the
      independent unit (its slices at different ``d`` share their anchors), so the
      interval is exact (Clopper-Pearson) over pairs; its control is the same check on
      the independent-site null's fields, which have no convex structure;
    * ``null_onset_falls``: the independent-site onset falls with every added
      dimension on the identical grids; its control deals the same fields out to the
      dimensions at random (:func:`~mcutils.percolation.shuffled_dims`).

    Returns:
        A list of dicts with ``claim_id``, ``statement``, ``paper``, ``result``,
        ``threshold``, ``direction``, ``method`` and (where there is one) ``control``.
    """
    out = []
    slices = study["slices"]
    for name, match in study["match"].items():
        dims = match["dims"]
        out.append({
            "claim_id": f"percolation_{name}",
            "statement": f"{name} network: the anchor-connection onset follows the "
                         f"independent-site null on identical grids (mean |log ratio| over "
                         f"d = {dims[0]}..{dims[-1]} at most log {np.exp(log_tol):.3g})",
            "paper": "percolation of a random set in high dimension explains the "
                     "connectivity of same-class inputs (Vrabel et al. 2025; no number)",
            "result": match["distance"]["independent"], "threshold": log_tol,
            "direction": "<=",
            "method": "percentile bootstrap over slices and null fields, resampled per d"})
        if "correlated" in match["distance"]:
            out.append({
                "claim_id": f"correlated_{name}",
                "statement": f"{name} network (the decisive comparison): the anchor-connection "
                             f"onset follows a random field with the network's own correlation "
                             f"length on identical grids (mean |log ratio| over d = "
                             f"{dims[0]}..{dims[-1]} at most log {np.exp(log_tol):.3g})",
                "paper": "percolation of a random set explains the connectivity of same-class "
                         "inputs (Vrabel et al. 2025; no number); a correlated set is the "
                         "fair version of that random set",
                "result": match["distance"]["correlated"], "threshold": log_tol,
                "direction": "<=",
                "method": "percentile bootstrap over slices and null fields, resampled per d"})
        part = slices[(slices.model == name) & (slices.kind == "anchored")
                      & slices.d.isin(dims) & slices.early]
        flag = joined_when_inside(part)
        ok = ~np.isnan(flag)
        per_pair = pd.Series(flag[ok]).groupby(part["unit"].to_numpy()[ok]).min()
        if len(per_pair) >= 2:
            nul = study["nulls"]
            nul = nul[(nul["null"] == "independent") & nul.d.isin(dims) & nul.early]
            nflag = joined_when_inside(nul)
            nflag = nflag[~np.isnan(nflag)]
            out.append({
                "claim_id": f"convex_{name}",
                "statement": f"{name} network: two same-class images are joined as soon as "
                             f"both are inside their low-loss set, as for a convex class "
                             f"region (fraction of the pairs whose every slice, d = "
                             f"{dims[0]}..{dims[-1]}, with both images inside before the "
                             f"independent-site onset does so)",
                "paper": "alternative to percolation raised in issue 13 (not a claim of the "
                         "paper)",
                "result": fraction_interval(per_pair.to_numpy() > 0.5),
                "threshold": joined_min, "direction": ">=",
                "method": f"exact binomial (Clopper-Pearson) over {len(per_pair)} pairs",
                "control": {"statement": "independent-site fields on the same grids, anchors "
                                         "inside early (no convex structure)",
                            "result": fraction_interval(nflag > 0.5)} if len(nflag) else None})
    nulls = study["nulls"]
    ind = nulls[(nulls["null"] == "independent") & nulls["p_conn"].notna()]
    dims = sorted(int(d) for d in ind["d"].unique())
    if len(dims) >= 2 and dims == list(range(dims[0], dims[-1] + 1)):
        fields = {d: g["p_conn"].to_numpy(float) for d, g in ind.groupby("d")}
        out.append({
            "claim_id": "null_onset_falls",
            "statement": "on the identical grids, the independent-site onset (median p at which "
                         f"the anchors join) falls with every added dimension, d = "
                         f"{dims[0]}..{dims[-1]} (smallest drop, bootstrap over null fields)",
            "paper": "the finite-size reference of issue 13 (not a claim of the paper)",
            "result": falling_interval(fields, statistic=np.median),
            "threshold": 0.0, "direction": ">",
            "method": "percentile bootstrap over null fields, resampled per d",
            "control": {"statement": "the same fields dealt out to the dimensions at random "
                                     "(no trend by construction)",
                        "result": falling_interval(shuffled_dims(fields),
                                                   statistic=np.median)}})
    return out


def slice_summary(study: Mapping) -> dict:
    """Key numbers of :func:`slices_vs_nulls` for glue (names without the chapter prefix).

    Returns:
        dict with ``onset``, ``nulls`` and ``span_onset`` (intervals per source and
        ``d``), and per model ``match_<model>`` (readable name of the closest null),
        ``match_<model>_sep`` (whether it is separated from the others, in words),
        ``joined_<model>`` (among slices with ``d >= 2`` whose anchors are inside early,
        the fraction joined as soon as both are inside), ``early_<model>`` (how many
        such slices) and ``line_<model>`` (fraction of pairs whose straight segment
        stays in class); ``joined_independent`` for the null.
    """
    out: dict = {"onset": study["onset"], "nulls": study["null_onset"],
                 "span_onset": {**study["span_onset"], **study["null_span_onset"]}}

    for name in sorted(set(study["onset"]) | set(study["match"])):
        match = study["match"].get(name)
        out[f"match_{name}"] = NULL_NAMES.get(match["best"], match["best"]) if match else "n/a"
        out[f"match_{name}_sep"] = ("separated from the other nulls" if match and
                                    match["separated"] else "not separated from every other null")
        rows = study["slices"]
        rows = rows[(rows.model == name) & (rows.kind == "anchored") & (rows.d >= 2)
                    & rows.early]
        flag = joined_when_inside(rows)
        out[f"joined_{name}"] = float(np.nanmean(flag)) if len(rows) else float("nan")
        out[f"early_{name}"] = len(rows)
        out[f"line_{name}"] = (study["line"][name]["estimate"] if name in study["line"]
                               else float("nan"))
    nulls = study["nulls"]
    rows = nulls[(nulls["null"] == "independent") & (nulls.d >= 2) & nulls.early]
    out["joined_independent"] = (float(np.nanmean(joined_when_inside(rows))) if len(rows)
                                 else float("nan"))
    return out


def onset_table(study: Mapping, span: bool = False) -> pd.DataFrame:
    """The onsets of :func:`slices_vs_nulls` as one tidy table (for plots and display).

    Args:
        study: the result of :func:`slices_vs_nulls`.
        span: spanning onsets (unanchored slices) instead of anchor connection.

    Returns:
        DataFrame with ``source`` (a model or a null), ``group`` (``"network"`` or
        ``"null"``), ``d``, ``onset``, ``lo``, ``hi`` and ``n``.
    """
    keys = ("span_onset", "null_span_onset") if span else ("onset", "null_onset")
    rows = []
    for key, group in zip(keys, ("network", "null")):
        for source, per_d in study[key].items():
            for d, iv in sorted(per_d.items()):
                rows.append({"source": source, "group": group, "d": int(d),
                             "onset": iv["estimate"], "lo": iv["ci"][0], "hi": iv["ci"][1],
                             "n": iv["n"]})
    return pd.DataFrame(rows, columns=["source", "group", "d", "onset", "lo", "hi", "n"])


def match_table(study: Mapping, span: bool = False) -> pd.DataFrame:
    """Per model and null, the distance of :func:`~mcutils.percolation.match_nulls` with its interval and the
    onset ratios per ``d`` (model / null), plus which null matches best.

    Returns:
        DataFrame indexed by ``(model, null)`` with ``distance``, ``lo``, ``hi``,
        ``ratios`` (``{d: ratio}``) and ``best`` (bool).
    """
    rows = []
    for model, res in study["span_match" if span else "match"].items():
        for null, iv in res["distance"].items():
            rows.append({"model": model, "null": null, "distance": iv["estimate"],
                         "lo": iv["ci"][0], "hi": iv["ci"][1],
                         "ratios": {d: round(v, 3) for d, v in res["ratio"][null].items()},
                         "best": null == res["best"]})
    return pd.DataFrame(rows).set_index(["model", "null"])


def threshold_claims(table: pd.DataFrame, tol: float = 0.01,
                     controls: Mapping[int, Mapping] | None = None, seed: int = 0) -> list[dict]:
    """The chapter's threshold claims, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    * ``pc_d<d>`` for every dimension with a published value: the 95% interval of the
      estimate lies within ``tol`` (relative) of it (:func:`~mcutils.percolation.deviation_interval`, ``<=``);
      its control is the same check of ``controls[d]``, the estimate on the Bethe
      lattice of the same coordination (:func:`~mcutils.percolation.bethe_control`),
      where there is one;
    * ``pc_falls``: the threshold falls with every added dimension
      (:func:`~mcutils.percolation.falling_interval` over the growth runs, ``> 0``), when the table has at
      least two consecutive dimensions with runs; its control deals the same runs out to
      the dimensions at random (:func:`~mcutils.percolation.shuffled_dims`, ``seed``).

    Returns:
        A list of dicts with ``claim_id``, ``statement``, ``paper``, ``result``,
        ``threshold``, ``direction``, ``method`` and ``control``.
    """
    controls = controls or {}
    out = []
    for d, row in table.iterrows():
        if np.isnan(row["published"]):
            continue
        res = interval(row["estimate"], row["ci_lo"], row["ci_hi"], row["n"])
        how = ("independent growth runs" if row["estimator"] == "growth"
               else "spanning crossing")
        method = (f"Student-t over {int(row['n'])} independent growth runs, as |relative "
                  "deviation|" if row["estimator"] == "growth" else
                  "normal approximation of the spanning crossing, as |relative deviation|")
        control = None
        if d in controls:
            z = 2 * int(d)
            control = {"statement": f"the same estimator and check on the Bethe lattice of "
                                    f"coordination {z} (p_c = 1/{z - 1} by construction)",
                       "result": deviation_interval(controls[d], row["published"])}
        out.append({
            "claim_id": f"pc_d{d}",
            "statement": f"our p_c({d}) is within {tol:.0%} of the published value "
                         f"(|relative deviation|, 95% interval over {how})",
            "paper": f"{row['published']:.7g} ({row['ref']})",
            "result": deviation_interval(res, row["published"]),
            "threshold": tol, "direction": "<=", "method": method, "control": control})
    samples = {d: v for d, v in table.attrs.get("samples", {}).items() if v is not None}
    dims = sorted(samples)
    run = [d for d in dims if d - 1 in samples or d + 1 in samples]
    if len(run) >= 2 and run == list(range(run[0], run[-1] + 1)):
        out.append({
            "claim_id": "pc_falls",
            "statement": f"p_c(d) falls with every added dimension, d = {run[0]}..{run[-1]} "
                         "(smallest drop between consecutive d, bootstrap over runs)",
            "paper": "theory: p_c(d) ~ 1/(2d - 1) for large d (Gaunt, Sykes and Ruskin 1976)",
            "result": falling_interval({d: samples[d] for d in run}),
            "threshold": 0.0, "direction": ">",
            "method": "percentile bootstrap over growth runs, resampled per d",
            "control": {"statement": "the same runs dealt out to the dimensions at random "
                                    "(no trend by construction)",
                        "result": falling_interval(shuffled_dims({d: samples[d] for d in run},
                                                                 seed=seed))}})
    return out


def threshold_summary(table: pd.DataFrame, tol: float = 0.01) -> dict:
    """Key numbers of a :func:`~mcutils.percolation.threshold_table` for glue (names without the chapter prefix).

    Returns:
        dict with ``pc`` (``{d: interval}``), ``pc_d<d>`` (each estimate), ``pc_dmin``,
        ``pc_dmax``, ``pc_count`` (dimensions with a published value), ``pc_max_dev``
        (largest ``|relative deviation|`` of an estimate) and ``pc_within`` (how many of
        them have their whole 95% interval within ``tol``, as the claims test) and
        ``series_dev`` (``|series / published - 1|`` at the largest dimension with a
        published value, :func:`~mcutils.percolation.asymptotic_threshold`).
    """
    out: dict = {"pc": {int(d): interval(r.estimate, r.ci_lo, r.ci_hi, r.n)
                        for d, r in table.iterrows()}}
    for d, iv in out["pc"].items():
        out[f"pc_d{d}"] = iv["estimate"]
    pub = table[table.published.notna()]
    out["pc_dmin"] = int(table.index.min())
    out["pc_dmax"] = int(table.index.max())
    out["pc_count"] = len(pub)
    out["pc_max_dev"] = float(pub.rel_dev.abs().max()) if len(pub) else float("nan")
    out["series_dev"] = (float(abs(asymptotic_threshold(int(pub.index.max()))
                                   / pub.published.loc[pub.index.max()] - 1))
                         if len(pub) else float("nan"))
    out["pc_within"] = int(sum(
        deviation_interval(out["pc"][int(d)], r.published)["ci"][1] <= tol
        for d, r in pub.iterrows()))
    return out


def findings(chapter: ChapterReport, params: Mapping[str, Any], table: pd.DataFrame,
             study: Mapping, trios: pd.DataFrame) -> dict:
    """Record chapter 02's findings: the numbers of :func:`threshold_summary` and
    :func:`slice_summary` (``ch02_<name>``), the threshold and slice claims with their
    negative controls, the fraction of planes in which three same-class images lie in one
    patch (``ch02_one_patch``, ``ch02_num_trios`` and the claim :data:`ONE_PATCH_CLAIM`,
    exact interval over planes, with the planted two-ball planes as its control) and the
    deviations table, and glues the chapter's summary (``ch02_summary``).

    The controls glue ``ch02_control_pc_min_dev`` (the smallest relative deviation of
    a Bethe-lattice estimate from the published ``p_c(d)``) and
    ``ch02_one_patch_control`` (the fraction of two-ball planes in one patch).

    Args:
        chapter: the chapter's report.
        params: the validated parameters (``seed``, ``growth_runs``,
            ``growth_clusters``, ``growth_tmax``, ``plane_points`` and ``plane_margin``).
        table: the threshold table (:func:`~mcutils.percolation.threshold_table`).
        study: the result of :func:`slices_vs_nulls`.
        trios: the table of :func:`~mcutils.percolation.trio_study` (column ``connected``).

    Returns:
        The one-patch interval.
    """
    summary = {**threshold_summary(table), **slice_summary(study)}
    for name, value in summary.items():
        chapter.record(f"ch02_{name}", value, digits=5)
    controls = threshold_controls(table, params)
    claims = threshold_claims(table, controls=controls, seed=params["seed"])
    for claim in claims + slice_claims(study):
        chapter.claim(**claim)
    devs = [c["control"]["result"]["estimate"] for c in claims
            if c["claim_id"].startswith("pc_d") and c["control"]]
    chapter.record("ch02_control_pc_min_dev", min(devs) if devs else float("nan"))
    one_patch = fraction_interval(trios.connected.to_numpy(bool))
    control = trio_control(len(trios), n=params["plane_points"], margin=params["plane_margin"],
                           seed=params["seed"])
    chapter.record("ch02_one_patch", one_patch["estimate"])
    chapter.record("ch02_one_patch_control", control["estimate"])
    chapter.record("ch02_num_trios", len(trios))
    chapter.claim(result=one_patch, **ONE_PATCH_CLAIM,
                  method=f"exact binomial (Clopper-Pearson) over {len(trios)} planes",
                  control={"statement": "planes through a planted class region of two "
                                        "disjoint balls, two images in one ball and one in "
                                        "the other", "result": control})
    deviations(chapter)
    notes = {cid: why for cid, why in _NOTES.items() if cid in chapter.claims
             and chapter.claims[cid]["verdict"] != "reproduced"}
    chapter.summary(GPU_NOTE, notes)
    return one_patch
