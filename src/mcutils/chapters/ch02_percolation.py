"""Chapter 02's study and claims: network slices against the null models, and the
percolation-threshold checks, as the chapter runs and reports them.

* :func:`slices_vs_nulls` runs the slice study of every network and the nulls on the
  identical grids (:mod:`mcutils.percolation.networks`, :mod:`mcutils.percolation.fields`);
* :func:`slice_claims`, :func:`threshold_claims` build the chapter's claims, ready for
  :meth:`mcutils.core.report.ChapterReport.claim`; :func:`slice_summary`,
  :func:`threshold_summary` the numbers it glues; :func:`onset_table`,
  :func:`match_table` its tables.

Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils.core.stats import bootstrap_ci, grouped_bootstrap_ci, interval
from mcutils.percolation.networks import (NULL_NAMES, fraction_intervals, joined_when_inside,
                                          match_nulls, matched_lengths, null_study,
                                          onset_intervals, slice_study)
from mcutils.percolation.thresholds import (asymptotic_threshold, deviation_interval,
                                            falling_interval)

__all__ = ["slices_vs_nulls", "slice_claims", "slice_summary", "onset_table", "match_table",
           "threshold_claims", "threshold_summary"]


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
    out["line"] = {name: bootstrap_ci(part["line_in_class"].to_numpy(float), seed=seed)
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
    * ``convex_<model>``: the anchors are joined as soon as both are inside, in at least
      ``joined_min`` of the anchored slices (``d`` as in the matching) whose anchors are
      inside early (column ``early``: before the independent-site onset); a cluster
      bootstrap over pairs, whose slices at different ``d`` share their anchors;
    * ``null_onset_falls``: the independent-site onset falls with every added
      dimension on the identical grids.

    Returns:
        A list of dicts with ``claim_id``, ``statement``, ``paper``, ``result``,
        ``threshold`` and ``direction``.
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
            "direction": "<="})
        part = slices[(slices.model == name) & (slices.kind == "anchored")
                      & slices.d.isin(dims) & slices.early]
        flag = joined_when_inside(part)
        ok = ~np.isnan(flag)
        if ok.sum() >= 2:
            res = grouped_bootstrap_ci(flag[ok], part["unit"].to_numpy()[ok])
            out.append({
                "claim_id": f"convex_{name}",
                "statement": f"{name} network: two same-class images are joined as soon as "
                             f"both are inside their low-loss set, as for a convex class "
                             f"region (fraction of the slices, d = {dims[0]}..{dims[-1]}, whose "
                             f"images are inside before the independent-site onset)",
                "paper": "alternative to percolation raised in issue 13 (not a claim of the "
                         "paper)",
                "result": res, "threshold": joined_min, "direction": ">="})
    nulls = study["nulls"]
    ind = nulls[(nulls["null"] == "independent") & nulls["p_conn"].notna()]
    dims = sorted(int(d) for d in ind["d"].unique())
    if len(dims) >= 2 and dims == list(range(dims[0], dims[-1] + 1)):
        from mcutils.percolation.thresholds import falling_interval

        out.append({
            "claim_id": "null_onset_falls",
            "statement": "on the identical grids, the independent-site onset (median p at which "
                         f"the anchors join) falls with every added dimension, d = "
                         f"{dims[0]}..{dims[-1]} (smallest drop, bootstrap over null fields)",
            "paper": "the finite-size reference of issue 13 (not a claim of the paper)",
            "result": falling_interval({d: g["p_conn"].to_numpy(float)
                                        for d, g in ind.groupby("d")}, statistic=np.median),
            "threshold": 0.0, "direction": ">"})
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


def threshold_claims(table: pd.DataFrame, tol: float = 0.01) -> list[dict]:
    """The chapter's threshold claims, ready for :meth:`mcutils.core.report.ChapterReport.claim`.

    * ``pc_d<d>`` for every dimension with a published value: the 95% interval of the
      estimate lies within ``tol`` (relative) of it (:func:`~mcutils.percolation.deviation_interval`, ``<=``);
    * ``pc_falls``: the threshold falls with every added dimension
      (:func:`~mcutils.percolation.falling_interval` over the growth runs, ``>= 0``), when the table has at
      least two consecutive dimensions with runs.

    Returns:
        A list of dicts with ``claim_id``, ``statement``, ``paper``, ``result``,
        ``threshold`` and ``direction``.
    """
    out = []
    for d, row in table.iterrows():
        if np.isnan(row["published"]):
            continue
        res = interval(row["estimate"], row["ci_lo"], row["ci_hi"], row["n"])
        how = ("independent growth runs" if row["estimator"] == "growth"
               else "spanning crossing")
        out.append({
            "claim_id": f"pc_d{d}",
            "statement": f"our p_c({d}) is within {tol:.0%} of the published value "
                         f"(|relative deviation|, 95% interval over {how})",
            "paper": f"{row['published']:.7g} ({row['ref']})",
            "result": deviation_interval(res, row["published"]),
            "threshold": tol, "direction": "<="})
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
            "threshold": 0.0, "direction": ">"})
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
