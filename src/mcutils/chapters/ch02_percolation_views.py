"""Chapter 02's tables as the reader sees them, each a :class:`pandas.DataFrame` with words
for columns for :func:`mcutils.core.report.table_view`: the threshold table
(:func:`threshold_view`), the extrapolated thresholds (:func:`extrapolated_view`), the
onsets of the slice study (:func:`onset_view`), which null each network follows
(:func:`match_view`) and the matched correlation lengths (:func:`matched_length_view`).

Tested in ``tests/test_ch02_percolation.py``. Used by chapter 02.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mcutils.chapters.ch02_percolation import (INPUT_DIMS, extrapolated_thresholds,
                                               match_table, onset_table)
from mcutils.percolation.networks import NULL_NAMES

__all__ = ["threshold_view", "extrapolated_view", "onset_view", "match_view",
           "matched_length_view"]


def threshold_view(table: pd.DataFrame) -> pd.DataFrame:
    """The threshold table as the chapter shows it (through
    :func:`mcutils.core.report.table_view`): one row per dimension, the estimate with its
    interval, the published value and source, the relative deviation, the series and the
    Bethe value."""
    rows = []
    for d, r in table.iterrows():
        rows.append({"d": int(d), "estimator": r["estimator"],
                     "estimate [95% interval]": {"estimate": r["estimate"],
                                                 "ci": [r["ci_lo"], r["ci_hi"]]},
                     "published": r["published"],
                     "relative deviation": (f"{r['rel_dev']:+.2%}" if np.isfinite(r["rel_dev"])
                                            else "n/a"),
                     "source": r["ref"], "series": r["series"], "Bethe": r["bethe"]})
    return pd.DataFrame(rows)


def extrapolated_view(input_dims: Mapping[str, int] = INPUT_DIMS) -> pd.DataFrame:
    """:func:`extrapolated_thresholds` with words for columns, for
    :func:`mcutils.core.report.table_view`."""
    ext = extrapolated_thresholds(input_dims)
    return pd.DataFrame({"input": list(ext.index), "dimension d": ext["d"].astype(int).to_numpy(),
                         "series p_c(d)": ext["series"].to_numpy(float),
                         "Bethe 1/(2d - 1)": ext["bethe"].to_numpy(float)})


def matched_length_view(study: Mapping) -> pd.DataFrame:
    """The matched correlation lengths as a table: network, kind of slice, ``d``, the
    lag-one correlation and the length in grid steps."""
    return pd.DataFrame([{"network": m, "slices": kind, "d": int(d),
                          "lag-one correlation": v["rho"], "length (grid steps)": v["ell"]}
                         for (m, kind, d), v in study["lengths"].items()])


def onset_view(study: Mapping) -> pd.DataFrame:
    """Median anchor-connection onsets with their intervals, one row per source (network
    or null) and one column per slice dimension."""
    tab = onset_table(study)
    rows = []
    for source, sub in tab.groupby("source", sort=False):
        row: dict[str, Any] = {"source": NULL_NAMES.get(source, source)}
        for _, r in sub.sort_values("d").iterrows():
            row[f"d = {int(r['d'])}"] = {"estimate": r["onset"], "ci": [r["lo"], r["hi"]]}
        rows.append(row)
    return pd.DataFrame(rows)


def match_view(study: Mapping) -> pd.DataFrame:
    """:func:`match_table` for the reader: network, null, the distance with its interval,
    whether it is the closest, and the onset ratios per ``d``."""
    tab = match_table(study).reset_index()
    return pd.DataFrame([{"network": r["model"], "null": NULL_NAMES.get(r["null"], r["null"]),
                          "mean |log ratio| [95% interval]": {"estimate": r["distance"],
                                                              "ci": [r["lo"], r["hi"]]},
                          "closest": "yes" if r["best"] else "",
                          "onset ratio by d": ", ".join(f"{d}: {v:.2f}"
                                                        for d, v in r["ratios"].items())}
                         for _, r in tab.iterrows()])
