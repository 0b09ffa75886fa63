"""Chapter 05's claims and statistics: the claims it tests, the intervals, tables and
figures of its repair sweeps.

Used by chapter 05 only (its notebook, :mod:`mcutils.chapters.ch05_study` and
:mod:`mcutils.chapters.ch05_findings`). The sweeps come from
:mod:`mcutils.chapters.ch05_protocol`, the repair methods from :mod:`mcutils.repair`.

* :data:`CLAIMS`: the claims of Zhao et al. (2020) that the chapter tests, as data
  (statement, the paper's finding, what is measured, the threshold and, for an asserted
  claim, its negative control); :func:`repair_claims` measures them on the sweeps' rows
  with an interval that fits the statistic (:func:`claim_interval`);
* :func:`sweep_summary`, :func:`paired_seed_difference`, :func:`middle_gap`: Student-t
  intervals over seeds (comparisons paired by seed: one bonafide draw per seed);
* :func:`interval_table`, :func:`per_image_counts`, :func:`share_text`: a summary as a
  table of quoted intervals, a table of surviving faults and a percentage for prose;
* :func:`plot_frontier`, :func:`plot_vs_n`: the accuracy-ASR frontier and a metric
  against the bonafide size.

Intervals are quoted with :func:`mcutils.core.stats.format_interval` and
:func:`mcutils.core.stats.interval_word`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mcutils.core.checks import ParameterError
from mcutils.core.stats import format_interval, seed_interval, seed_rate_interval

__all__ = [
    "CLAIMS",
    "METHOD_LABELS",
    "PAPER",
    "claim_interval",
    "interval_table",
    "method_label",
    "middle_gap",
    "paired_seed_difference",
    "per_image_counts",
    "plot_frontier",
    "plot_vs_n",
    "repair_claims",
    "share_text",
    "sweep_summary",
]

#: The methods' names in words, for figure legends and panel titles (a name not listed
#: is shown as it is).
METHOD_LABELS = {
    "bezier": "Bezier curve",
    "bezier (middle)": "Bezier curve, middle",
    "polychain": "polygonal chain",
    "polychain (middle)": "polygonal chain, middle",
    "fine_tune": "fine-tuning",
    "fine_prune": "fine-pruning",
    "scratch": "training from scratch",
    "noise": "noisy midpoint",
}


def method_label(method: str) -> str:
    """``method`` in words (:data:`METHOD_LABELS`), for a figure."""
    return METHOD_LABELS.get(method, method)


#: The paper whose claims chapter 05 tests (prefixed to every claim's ``paper``).
PAPER = "Zhao et al. (2020)"

#: The claims of :data:`PAPER` that chapter 05 tests, in the order of its Findings table.
#: Each reads the rows of one sweep (``rows``: ``"sweep"``, the backdoor sweep;
#: ``"faults"``, the error-injection sweep; ``"aware"``, the repair of the path-aware
#: attacker's models; a claim whose rows are not given is skipped) at one bonafide size
#: (``n``: ``"small"``, ``"large"``, or ``"largest"``, the largest size of its rows). It
#: measures either one method's ``metric`` (``method``; minus the better end's clean
#: accuracy when ``relative``) or a difference of two methods paired by seed
#: (``difference``: ``(a, b)`` for ``a - b``). ``threshold`` is a number or the name of a
#: :func:`repair_claims` argument (``"-max_drop"``: its negative). ``statement`` is
#: filled with ``small_n``, ``large_n``, ``n`` (the claim's size), ``asr_max``,
#: ``max_drop`` and ``threshold``. ``control`` (asserted claims) is the same check on rows
#: where the claim is false by construction (:func:`mcutils.chapters.ch05_controls.control_rows`):
#: ``method`` or ``difference`` replaced, with the control's ``statement``.
CLAIMS: list[dict[str, Any]] = [
    dict(claim_id="curve_removes_backdoor", rows="sweep", n="large", method="bezier",
         metric="asr", threshold="asr_max", direction="<=",
         statement="with {large_n} bonafide images the Bezier curve at the defender's t has "
                   "ASR <= {asr_max}",
         paper="attack success near 0 inside the path with 2,500 bonafide images "
               "(CIFAR-10, VGG16)"),
    dict(claim_id="curve_keeps_accuracy", rows="sweep", n="large", method="bezier (middle)",
         metric="accuracy", relative=True, threshold="-max_drop", direction=">=",
         statement="with {large_n} bonafide images the middle of the Bezier curve (t = 1/2) "
                   "loses at most {max_drop} clean accuracy against the better end",
         paper="clean accuracy close to the ends' inside the path",
         control=dict(method="untrained",
                      statement="an untrained network (same architecture, one per seed) "
                                "in place of the curve")),
    dict(claim_id="curve_removes_backdoor_small_n", rows="sweep", n="small", method="bezier",
         metric="asr", threshold="asr_max", direction="<=",
         statement="with {small_n} bonafide images the Bezier curve at the defender's t "
                   "has ASR <= {asr_max}",
         paper="the repair works with limited bonafide data"),
    dict(claim_id="mid_asr", rows="sweep", n="large",
         method="bezier (middle)", metric="asr", threshold="asr_max", direction="<=",
         statement="with {large_n} bonafide images the middle of the Bezier curve "
                   "(t = 0.5, chosen without validation) has ASR <= {asr_max}",
         paper="the attack success is lowest near the middle of the path"),
    dict(claim_id="polychain_removes_backdoor", rows="sweep", n="large", method="polychain",
         metric="asr", threshold="asr_max", direction="<=",
         statement="with {large_n} bonafide images the polygonal chain at the defender's "
                   "t has ASR <= {asr_max}",
         paper="Bezier curves and polygonal chains both repair"),
    dict(claim_id="finetune_keeps_backdoor", rows="sweep", n="small", method="fine_tune",
         metric="asr", threshold=0.5, direction=">=",
         statement="fine-tuning with the same {small_n} images keeps the backdoor "
                   "(ASR >= {threshold})",
         paper="fine-tuning with limited data leaves a high attack success"),
    dict(claim_id="curve_beats_fine_tune", rows="sweep", n="small",
         difference=("fine_tune", "bezier"), metric="asr", threshold=0.0, direction=">",
         statement="with {small_n} bonafide images the Bezier curve has a lower ASR than "
                   "fine-tuning (paired difference > 0)",
         paper="path connection outperforms fine-tune with limited bonafide data"),
    dict(claim_id="curve_beats_fine_prune", rows="sweep", n="small",
         difference=("fine_prune", "bezier"), metric="asr", threshold=0.0, direction=">",
         statement="with {small_n} bonafide images the Bezier curve has a lower ASR than "
                   "fine-pruning (paired difference > 0)",
         paper="path connection outperforms fine-prune with limited bonafide data"),
    dict(claim_id="curve_beats_scratch", rows="sweep", n="small",
         difference=("bezier", "scratch"), metric="accuracy", threshold=0.0, direction=">",
         statement="with {small_n} bonafide images the Bezier curve has a higher clean "
                   "accuracy than training from scratch (paired difference > 0)",
         paper="path connection outperforms scratch with limited bonafide data",
         control=dict(difference=("untrained", "scratch"),
                      statement="an untrained network (same architecture, one per seed) "
                                "in place of the curve, against scratch training")),
    dict(claim_id="curve_beats_noise", rows="sweep", n="small",
         difference=("bezier", "noise"), metric="accuracy", threshold=0.0, direction=">",
         statement="with {small_n} bonafide images the Bezier curve has a higher clean "
                   "accuracy than the noisy midpoint (paired difference > 0)",
         paper="path connection outperforms noise with limited bonafide data",
         control=dict(difference=("noise (redraw)", "noise"),
                      statement="a second draw of the noisy midpoint in place of the curve, "
                                "against the noisy midpoint (no effect by construction)")),
    dict(claim_id="curve_removes_faults", rows="faults", n="largest", method="bezier",
         metric="fault_success", threshold="asr_max", direction="<=",
         statement="with {n} bonafide images the Bezier curve between two faulted models "
                   "leaves fault success <= {asr_max}",
         paper="injected errors are removed inside the path"),
    dict(claim_id="path_aware_repaired", rows="aware", n="largest", method="bezier",
         metric="asr", threshold="asr_max", direction="<=",
         statement="against the path-aware attacker, with {n} bonafide images the Bezier "
                   "repair has ASR <= {asr_max}",
         paper="the repair stays effective against an attacker who knows it"),
]


def claim_interval(values: Any, total: int | None = None, shift: float = 0.0,
                   difference: bool = False) -> dict[str, Any]:
    """The interval of one claim's statistic over seeds, by its kind, with the per-seed
    values (``"per_seed"``) and the method (``"method"``).

    Args:
        values: one value per seed: a rate (accuracy, attack or fault success) measured on
            ``total`` images, or (``difference``) a difference of two such rates paired by
            seed.
        total: images behind each seed's rate; each rate is ``k / total``.
        shift: added to the estimate, the interval and the per-seed values (``-end
            accuracy`` for an accuracy relative to a fixed reference model).
        difference: ``values`` are paired differences in [-1, 1].

    A rate gets :func:`mcutils.core.stats.seed_rate_interval` on the seeds' counts (a
    Student-t interval on the logit scale, inside [0, 1], estimate the pooled rate, at
    least the exact binomial interval of the pooled counts, so that seeds which agree
    exactly, as a defender's rule that picks the same end model every time, still leave
    the test images' uncertainty); a
    paired difference a Student-t interval over seeds
    (:func:`mcutils.core.stats.seed_interval`) clipped to its bounds [-1, 1].
    """
    v = np.asarray(values, dtype=float)
    if difference:
        res = seed_interval(v)
        lo, hi = res["ci"]
        if np.isfinite(lo) and np.isfinite(hi):
            res["ci"] = [max(lo, -1.0), min(hi, 1.0)]
        res["per_seed"] = [float(x) for x in v]
        res["method"] = (f"paired Student-t over {len(v)} seeds of the difference of two "
                         "rates, clipped to [-1, 1]")
        return res
    if total is None or total < 1:
        raise ParameterError(f"a rate needs the number of images behind it (total={total})")
    k = np.clip(np.rint(v * total), 0, total).astype(int)
    res = seed_rate_interval(k, [int(total)] * len(k))  # never narrower than the pooled
    res["estimate"] += shift
    res["ci"] = [c + shift for c in res["ci"]]
    res["per_seed"] = [float(x) + shift for x in res["per_seed"]]
    res["method"] = (f"logit-scale Student-t over {len(k)} seeds of counts on {total} "
                     "images each (pooled rate), at least the exact binomial interval of the "
                     "pooled counts"
                     + (", minus the better end's accuracy" if shift else ""))
    return res


def repair_claims(rows: pd.DataFrame, end_accuracy: float, small_n: int, large_n: int,
                  fault_rows: pd.DataFrame | None = None,
                  aware_rows: pd.DataFrame | None = None, asr_max: float = 0.1,
                  max_drop: float = 0.05, totals: Mapping[str, int] | None = None,
                  control_rows: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The claims of :data:`CLAIMS` measured, as arguments of
    :meth:`mcutils.core.report.ChapterReport.claim` (``claim_id``, ``statement``, ``paper``,
    ``result``, ``threshold``, ``direction``, ``method`` and, where :data:`CLAIMS` gives
    one and ``control_rows`` are given, ``control``). Each interval is formed over seeds
    by :func:`claim_interval`: a rate from the seeds' counts, a comparison between
    methods paired by seed (one bonafide draw per seed).

    Args:
        rows: the backdoor sweep (:attr:`mcutils.chapters.ch05_protocol.SweepResult.rows`).
        end_accuracy: clean test accuracy of the better tampered end (the reference for
            "keeps accuracy").
        small_n, large_n: the sizes at which the claims are read (the paper's regime of
            little data, and the largest set).
        fault_rows: the error-injection sweep (rows with ``fault_success``); its largest
            size is used.
        aware_rows: the repair of the path-aware attacker's models; its largest size.
        asr_max: the attack success (or fault success) below which a tampering counts as
            removed.
        max_drop: the clean accuracy a repair may lose against ``end_accuracy``.
        totals: images behind each seed's rate, per column (``accuracy``, ``asr``,
            ``fault_success``); default 1,000 each.
        control_rows: rows of the negative controls (methods ``"untrained"``, ``"noise
            (redraw)"``: :func:`mcutils.chapters.ch05_controls.control_rows`), read with the
            rows of the claim's sweep.
    """
    frames = {"sweep": rows, "faults": fault_rows, "aware": aware_rows}
    settings = dict(asr_max=asr_max, max_drop=max_drop)
    totals = {"accuracy": 1000, "asr": 1000, "fault_success": 1000, **dict(totals or {})}

    def at(df: pd.DataFrame, method: str, n: int, col: str) -> np.ndarray:
        v = df[(df.method == method) & (df.n == n)][col].to_numpy(float)
        if len(v) == 0:
            raise ParameterError(f"no rows for method {method!r} at n={n}")
        return v

    def measure(df: pd.DataFrame, spec: Mapping[str, Any], n: int) -> dict[str, Any]:
        metric = spec["metric"]
        if "difference" in spec:
            a, b = spec["difference"]
            d = paired_seed_difference(df, a, b, n, metric)
            return claim_interval(d["per_seed"], difference=True)
        shift = -end_accuracy if spec.get("relative") else 0.0
        return claim_interval(at(df, spec["method"], n, metric), totals[metric], shift)

    out = []
    for spec in CLAIMS:
        df = frames[spec["rows"]]
        if df is None:
            continue
        n = {"small": small_n, "large": large_n}.get(spec["n"])
        n = int(df.n.max()) if n is None else n
        threshold = spec["threshold"]
        if isinstance(threshold, str):
            threshold = (-settings[threshold[1:]] if threshold.startswith("-")
                         else settings[threshold])
        result = measure(df, spec, n)
        statement = spec["statement"].format(small_n=small_n, large_n=large_n, n=n,
                                             threshold=threshold, **settings)
        claim = dict(claim_id=spec["claim_id"], statement=statement,
                     paper=f"{PAPER}: {spec['paper']}", result=result,
                     threshold=threshold, direction=spec["direction"],
                     method=result["method"])
        if "control" in spec and control_rows is not None:
            ctrl = {k: v for k, v in spec.items() if k not in ("method", "difference")}
            ctrl.update({k: v for k, v in spec["control"].items() if k != "statement"})
            cres = measure(pd.concat([df, control_rows], ignore_index=True), ctrl, n)
            claim["control"] = {"statement": spec["control"]["statement"], "result": cres}
        out.append(claim)
    return out


def sweep_summary(rows: pd.DataFrame, metrics: Mapping[str, str] | None = None,
                  totals: Mapping[str, int] | None = None
                  ) -> dict[str, dict[int, dict[str, dict[str, Any]]]]:
    """Intervals over seeds: ``{method: {n: {short: interval}}}``.

    Args:
        rows: :attr:`mcutils.chapters.ch05_protocol.SweepResult.rows` (or any frame with
            ``method``, ``n``, ``seed``).
        metrics: short name -> column (default ``{"acc": "accuracy", "asr": "asr"}``,
            the columns present).
        totals: images behind each seed's rate, per column (a
            :attr:`mcutils.chapters.ch05_protocol.Scorer.totals`): such a column gets
            :func:`claim_interval` (inside [0, 1], with the per-seed values); a column
            without a total a Student-t interval over seeds.

    The keys ``n`` are Python ints; ``n`` of each interval is the number of seeds.
    """
    metrics = dict(metrics or {k: v for k, v in (("acc", "accuracy"), ("asr", "asr"))
                               if v in rows.columns})
    missing = [c for c in metrics.values() if c not in rows.columns]
    if missing:
        raise ParameterError(f"rows lack the columns {missing}")
    totals = dict(totals or {})

    def iv(values: np.ndarray, col: str) -> dict[str, Any]:
        return (claim_interval(values, totals[col]) if col in totals
                else seed_interval(values))

    out: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for (method, n), grp in rows.groupby(["method", "n"], sort=False):
        out.setdefault(str(method), {})[int(n)] = {
            short: iv(grp[col].to_numpy(float), col) for short, col in metrics.items()}
    return out


def interval_table(summary: Mapping[str, Mapping[int, Mapping[str, Mapping[str, Any]]]],
                   sizes: Sequence[int], metrics: Sequence[str] = ("acc", "asr")
                   ) -> pd.DataFrame:
    """A :func:`sweep_summary` as the text the chapter prints: one row per method and
    metric (index ``method``, ``metric``), one column per size ``n``, each cell an
    interval quoted by :func:`mcutils.core.stats.format_interval`."""
    table = pd.DataFrame({(m, metric): {n: format_interval(summary[m][n][metric]) for n in sizes}
                          for m in summary for metric in metrics}).T
    table.index.names = ["method", "metric"]
    table.columns.name = "n"
    return table


def paired_seed_difference(rows: pd.DataFrame, method_a: str, method_b: str, n: int,
                           metric: str) -> dict[str, Any]:
    """Student-t interval over seeds of ``metric(a) - metric(b)`` at size ``n``, paired by
    seed (the two methods share each seed's bonafide draw)."""
    sub = rows[rows.n == n]
    a = sub[sub.method == method_a].set_index("seed")[metric]
    b = sub[sub.method == method_b].set_index("seed")[metric]
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ParameterError(f"no common seeds for {method_a!r} and {method_b!r} at n={n}")
    d = (a[common] - b[common]).to_numpy(float)
    return {**seed_interval(d), "per_seed": [float(x) for x in d]}


def plot_frontier(summary: Mapping[str, Mapping[int, Mapping[str, Mapping[str, Any]]]],
                  methods: Sequence[str] | None = None, x: str = "asr", y: str = "acc",
                  floor: float | None = None, ncols: int = 2,
                  xlabel: str = "attack success rate", ylabel: str = "clean test accuracy"):
    """The accuracy-ASR frontier: one panel per ``n``, one point per method with its 95%
    intervals over seeds on both axes (from :func:`sweep_summary`).

    Args:
        summary: ``{method: {n: {"acc": interval, "asr": interval}}}``.
        methods: which methods, in legend order (default: all).
        x, y: the interval names on the axes.
        floor: a vertical line at this ``x`` (the trigger floor: the ASR of clean models).
        ncols: panels per row (the figure is at most
            :data:`mcutils.plotting.MAX_WIDTH` wide whatever ``ncols``).
        xlabel, ylabel: axis labels.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mcutils.plotting import MAX_WIDTH

    methods = list(methods or summary)
    sizes = sorted({n for m in methods for n in summary[m]})
    ncols = min(ncols, len(sizes))
    nrows = math.ceil(len(sizes) / ncols)
    width = min(3.3, MAX_WIDTH / ncols)  # of one panel, in inches
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 0.94 * width * nrows),
                             squeeze=False, sharex=True, sharey=True)
    colors = dict(zip(methods, sns.color_palette("tab10", len(methods))))
    markers = dict(zip(methods, "osD^vP*Xhp<>"))
    for ax, n in zip(axes.flat, sizes):
        for m in methods:
            if n not in summary[m]:
                continue
            px, py = summary[m][n][x], summary[m][n][y]

            def err(iv: Mapping[str, Any]) -> list[list[float]]:
                lo, hi = iv["ci"]
                if not (np.isfinite(lo) and np.isfinite(hi)):
                    return [[0.0], [0.0]]
                return [[iv["estimate"] - lo], [hi - iv["estimate"]]]

            ax.errorbar(px["estimate"], py["estimate"], xerr=err(px), yerr=err(py),
                        fmt=markers[m], color=colors[m], label=method_label(m), capsize=2,
                        ms=5)
        if floor is not None:
            ax.axvline(floor, color="grey", ls=":", lw=1)
        ax.set_title(f"{n} bonafide images")
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in list(axes.flat)[len(sizes):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_cols = min(len(methods), 3)
    fig.legend(handles, labels, loc="upper center", ncol=legend_cols, fontsize=8,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.tight_layout()
    return fig


def middle_gap(profiles: pd.DataFrame, method: str, n: int, t: float = 0.5
               ) -> dict[str, Any]:
    """How far the validation accuracy at ``t`` lies below the better end's, per seed.

    Args:
        profiles: :attr:`mcutils.chapters.ch05_protocol.SweepResult.profiles` (``method``,
            ``n``, ``seed``, ``t``, ``accuracy``).
        method, n: which curves.
        t: the point (default: the middle).

    Returns:
        A Student-t interval over seeds of ``acc(t) - max(acc(0), acc(1))`` (negative:
        the point is less accurate than the better end).
    """
    sub = profiles[(profiles.method == method) & (profiles.n == n)]
    if sub.empty:
        raise ParameterError(f"no profiles for method {method!r} at n={n}")
    p = sub.pivot_table(index="seed", columns="t", values="accuracy")
    cols = {round(float(c), 6): c for c in p.columns}
    if not {0.0, 1.0, round(float(t), 6)} <= set(cols):
        raise ParameterError(f"the profiles lack t=0, t=1 or t={t}")
    gap = p[cols[round(float(t), 6)]] - p[[cols[0.0], cols[1.0]]].max(axis=1)
    return seed_interval(gap.to_numpy(float))


def plot_vs_n(series: Mapping[str, Mapping[int, Mapping[str, Any]]],
              ylabel: str = "attack success rate",
              ax: Any = None, floor: float | None = None):
    """One line per label: an interval (``{"estimate", "ci", "n"}``) at each bonafide size,
    drawn with its 95% interval, sizes on a log axis.

    Args:
        series: ``{label: {n: interval}}``.
        ylabel: the axis label.
        ax: a matplotlib axis (default: a new figure).
        floor: a horizontal line at this value (e.g. the trigger floor).

    Returns:
        The axis.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))  # within mcutils.plotting.MAX_WIDTH
    for label, per_n in series.items():
        ns = sorted(per_n)
        est = np.array([per_n[n]["estimate"] for n in ns], dtype=float)
        lo = np.array([per_n[n]["ci"][0] for n in ns], dtype=float)
        hi = np.array([per_n[n]["ci"][1] for n in ns], dtype=float)
        yerr = np.nan_to_num(np.stack([est - lo, hi - est]), nan=0.0)
        ax.errorbar(ns, est, yerr=yerr, marker="o", capsize=3, label=label)
    if floor is not None:
        ax.axhline(floor, color="grey", ls=":", lw=1, label="trigger floor")
    ax.set_xscale("log")
    ax.set_xlabel("bonafide images (n, log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def share_text(shares: Iterable[float]) -> str:
    """Percentages for prose: ``"2.5%"`` when all shares agree, else ``"0.6% to 2.5%"``
    (smallest to largest, two significant digits)."""
    v = np.asarray(list(shares), dtype=float)
    if v.size == 0 or not np.isfinite(v).all() or (v < 0).any():
        raise ParameterError("shares must be a non-empty list of finite values >= 0")

    def pct(x: float) -> str:
        return f"{float(f'{100 * x:.2g}'):g}%"

    lo, hi = pct(v.min()), pct(v.max())
    return lo if lo == hi else f"{lo} to {hi}"


def per_image_counts(rows: pd.DataFrame, column: str = "fault_hits") -> pd.DataFrame:
    """Per fault image, in how many seeds each method (at each size) left the fault active.

    Args:
        rows: sweep rows holding per-image 0/1 tuples in ``column``.

    Returns:
        A frame indexed by fault image, one column per ``(method, n)``, values the number
        of seeds (out of the seeds in ``rows``) with the fault still active.
    """
    if column not in rows.columns:
        raise ParameterError(f"rows have no column {column!r}")
    out = {}
    for (method, n), grp in rows.groupby(["method", "n"], sort=False):
        out[(method, int(n))] = np.sum(np.stack([np.asarray(h) for h in grp[column]]), axis=0)
    df = pd.DataFrame(out)
    df.index.name = "fault image"
    return df
