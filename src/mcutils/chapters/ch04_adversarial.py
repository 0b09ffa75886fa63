"""Chapter 04, adversarial examples and input-space barriers: its parameters, claims,
records, tables and figures.

:data:`PARAMETERS` is the chapter's parameter schema (its cross-checks
:func:`check_seeds`, :func:`check_drop`, :func:`check_num_inputs`,
:func:`check_adaptive_inputs`). :func:`setup_model` loads the chapter's network and
:func:`paper_attack` reads the paper's attack settings from the parameters;
:func:`record_protocol`, :func:`record_path_comparison` and :func:`record_rho_trend` glue
what sections 1 and 2 compute. The chapter's claims and the paper's numbers they are read
against are data (:data:`CLAIMS`, :data:`EXPECTED`); :func:`claim_results` picks each
claim's interval from the chapter's results, :func:`check_claims` adds them to the
chapter's report (with the negative controls of
:mod:`mcutils.chapters.ch04_controls`) and :func:`findings` does both, glues the deviations
table and prints the key numbers. The tables
(:func:`interval_table`, :func:`protocol_table`, :func:`sweep_table`, :func:`gain_table`,
:func:`adaptive_table`) and figures (:func:`barrier_boxes`, :func:`path_profiles`,
:func:`sweep_figure`, :func:`detector_figure`, :func:`adaptive_figure`) are what the
notebook shows. The orchestration is in :mod:`mcutils.chapters.ch04_sweep` (sections 1
and 2: the protocol over seeds, the attack and network sweeps) and
:mod:`mcutils.chapters.ch04_detectors` (section 3: the detectors and the adaptive
attack); the statistic itself in :mod:`mcutils.advbarriers`.

Used by chapter 04.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mcutils import advbarriers, attacks, inputspace, plotting, zoo
from mcutils.advbarriers import PairSet
from mcutils.chapters import ch04_controls
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.report import ChapterReport
from mcutils.core.runtime import get_device
from mcutils.core.stats import format_interval
from mcutils.params import Param, ParameterSchema

__all__ = [
    "AUROC_TARGET",
    "CLAIMS",
    "DETECTOR_LABELS",
    "EXPECTED",
    "METHODS",
    "PAPER_KEYS",
    "PARAMETERS",
    "TREND_WORDS",
    "adaptive_figure",
    "adaptive_table",
    "barrier_boxes",
    "check_adaptive_inputs",
    "check_claims",
    "check_drop",
    "check_num_inputs",
    "check_seeds",
    "claim_results",
    "detector_figure",
    "findings",
    "gain_table",
    "interval_table",
    "paper_attack",
    "path_profiles",
    "protocol_table",
    "record_path_comparison",
    "record_protocol",
    "record_rho_trend",
    "setup_model",
    "sweep_figure",
    "sweep_table",
]

#: The chapter's claims, in the order of its claims table: the statement (with its
#: statistic), the paper's number or word it is read against, the threshold and the side
#: of it the claim is on, and whether the chapter expects it to hold at this scale.
CLAIMS: list[dict[str, Any]] = [
    {"id": "within_low",
     "statement": "within-class paths are nearly flat: median barrier gap <= ln 2 "
                  "(paper protocol, mean over seeds)",
     "paper": "0.36, median within-class gap, ImageNet/GoogLeNet, paper's committed CSV",
     "threshold": math.log(2), "direction": "<=", "expected": True},
    {"id": "adv_gap_higher",
     "statement": "the gap tells real-adversarial from within-class paths of the same real "
                  "image: AUROC > 0.5 (paper protocol)",
     "paper": "medians 5.45 vs 0.36 (real-adversarial vs within-class gap), paper's "
              "committed CSVs",
     "threshold": 0.5, "direction": ">", "expected": True},
    {"id": "adv_gap_high",
     "statement": "real-adversarial barriers are high: median gap >= ln 2 (paper protocol)",
     "paper": "5.45, median real-adversarial gap, paper's committed CSV",
     "threshold": math.log(2), "direction": ">=", "expected": False},
    {"id": "adv_max_higher",
     "statement": "the barrier max also separates the two kinds of paths: AUROC > 0.5 "
                  "(paper protocol)",
     "paper": "Figure 6, barrier max boxes (no number in the text)",
     "threshold": 0.5, "direction": ">", "expected": False},
    {"id": "barrier_detects",
     "statement": "barrier height detects the paper's attack: AUROC >= 0.9 "
                  "(cross-validated, by source)",
     "paper": "suggested, no detector in the paper",
     "threshold": 0.9, "direction": ">=", "expected": False},
    {"id": "profile_adds",
     "statement": "loss profiles add to the logits on the paper's attack: paired AUROC "
                  "difference > 0",
     "paper": "implicit in the suggestion",
     "threshold": 0.0, "direction": ">", "expected": False},
    {"id": "adaptive_evades",
     "statement": "an adaptive attack brings the deployed detector to AUROC <= 0.6 "
                  "(largest penalty, test half)",
     "paper": "not tested in the paper",
     "threshold": 0.6, "direction": "<=", "expected": False},
]

#: The claims the chapter expects to hold at this scale (its report checks them).
EXPECTED = [c["id"] for c in CLAIMS if c["expected"]]

#: How the intervals of the detection claims are formed (the protocol's intervals carry
#: their method, :func:`mcutils.advbarriers.protocol_summary` with ``"hierarchical"``).
METHODS = {
    "barrier_detects": "bootstrap over sources of the out-of-fold AUROC (cross-validation "
                       "folds disjoint by source; a source keeps its adversarial examples)",
    "profile_adds": "paired bootstrap over sources (both detectors on the same out-of-fold "
                    "rows)",
    "adaptive_evades": "bootstrap over the test half's sources",
}


# ----------------------------------------------------------------------------- parameters
#: Detectors the adaptive attack may be run against (fixed before any result).
ADAPTIVE_DETECTORS = ("barrier", "barrier_max", "profile", "profile_logits", "logits", "msp",
                      "margin")
#: Networks the model sweep may add besides the small CNN.
SWEEP_NETWORKS = ("wide", "mlp", "untrained", "preresnet20")


def _out_of_range(name: str, value: Any, low: float, high: float | None) -> str | None:
    if value < low or (high is not None and value > high):
        upper = "inf" if high is None else high
        return f"{name}={value!r} is out of range; valid range: [{low}, {upper}]"
    return None


def check_drop(p: Mapping[str, Any]) -> str | None:
    """At least one pair per class is kept: ``drop <= pairs_per_class - 1``."""
    return _out_of_range("drop", p["drop"], 0, p["pairs_per_class"] - 1)


def check_num_inputs(p: Mapping[str, Any]) -> str | None:
    """Every fold has sources of both halves: ``num_inputs >= 4 * folds``."""
    return _out_of_range("num_inputs", p["num_inputs"], 4 * p["folds"], None)


def check_adaptive_inputs(p: Mapping[str, Any]) -> str | None:
    """The adaptive study's sources are among the attacked ones: ``adaptive_inputs <=
    num_inputs``."""
    return _out_of_range("adaptive_inputs", p["adaptive_inputs"], 8, p["num_inputs"])


def check_seeds(p: Mapping[str, Any]) -> str | None:
    """``seeds`` is a non-empty list of distinct seeds."""
    seeds = p["seeds"]
    if not seeds or len(set(seeds)) != len(seeds):
        return f"seeds={seeds!r} must be a non-empty list of distinct seeds"
    return None


PARAMETERS = ParameterSchema("04", {
    **model_params(),
    "seeds": Param([0, 1, 2], "independent draws of the pairs and of the attacked classes",
                   range=(0, None), group="1. the paper's protocol (its "
                   "sec4_2_adversarial_attacks.py), normalised input units"),
    "pairs_per_class": Param(7, "the paper: 7 pairs per class", range=(1, 500)),
    "num_points": Param(250, "points per straight path, ends included (the paper: 250)",
                        range=(3, 10000)),
    "attack_steps": Param(512, "Adam steps at most (the paper: 512)", range=(1, None)),
    "attack_lr": Param(0.005, "Adam learning rate, normalised units (the paper: 0.005)",
                       range=(1e-8, 10)),
    "mse_weight": Param(0.1, "λ, weight of the mean squared deviation, normalised units "
                        "(the paper: 0.1)", range=(0, None)),
    "hf_weight": Param(1e-8, "weight of the high-frequency penalty on x - carrier "
                       "(the paper: 1e-8)", range=(0, None)),
    "warmup": Param(32, "no stop before step 33 (the paper: i > 32)", range=(0, None)),
    "drop": Param(2, "pairs per class dropped for the largest |Loss1 - Loss2| "
                  "(the paper: 2 of 7)", range=(0, None)),
    "num_boot": Param(1000, "bootstrap resamples of every interval", range=(10, 100000)),
    "sweep_pairs_per_class": Param(2, "pairs per class of the sweeps", range=(1, 500),
                                   group="2. where does it hold (one set of pairs, drawn "
                                   "with `seed`)"),
    "sweep_points": Param(100, "points per path of the sweeps", range=(3, 10000)),
    "rho_mse_weights": Param([10.0, 100.0], "λ values of the rho sweep (besides the "
                             "paper's 0.1)", range=(0, None)),
    "rho_stop_scales": Param([10.0, 0.3], "stop below s * Loss1 instead of Loss1",
                             range=(1e-6, 1e6)),
    "rho_lr_scales": Param([4.0, 10.0], "multiples of the paper's Adam step (larger "
                           "perturbations)", range=(1e-3, 1e3)),
    "sweep_sizes": Param([28, 42, 56], "input sizes: the same images upsampled, a network "
                         "per size", range=(8, 512)),
    "sweep_networks": Param(["wide", "mlp", "untrained"], "besides small_cnn (gpu adds "
                            "preresnet20)", choices=SWEEP_NETWORKS),
    "sweep_epochs": Param(2, "training epochs of every sweep network", range=(1, None)),
    "sweep_subset": Param(5000, "training images of every sweep network", range=(100, None),
                          nullable=True),
    "num_inputs": Param(100, "correctly classified test images attacked in section 3",
                        range=(8, None), group="3. detectors and the adaptive attack"),
    "num_refs": Param(3, "K real references per input", range=(1, 50)),
    "det_points": Param(8, "points per path of the detector's profiles", range=(3, 1000)),
    "ref_pool": Param(4000, "training images: the first half is the defender's, the rest "
                      "the attacker's", range=(200, None)),
    "eps_linf": Param(0.1, "FGSM and PGD L-inf radius (pixels)", range=(1e-4, 1)),
    "eps_l2": Param(2.0, "PGD L2 radius (pixels)", range=(1e-3, 100)),
    "pgd_steps": Param(20, "PGD steps", range=(1, None)),
    "cw_steps": Param(50, "Carlini-Wagner steps", range=(1, None)),
    "folds": Param(5, "cross-validation folds, disjoint by source", range=(2, 20)),
    "fpr": Param(0.05, "false-positive rate of the TPR column", range=(0, 1)),
    "adaptive_inputs": Param(40, "sources of the adaptive study (half train, half test)",
                             range=(8, None)),
    "adaptive_steps": Param(64, "Adam steps of the adaptive attack", range=(1, None)),
    "adaptive_penalties": Param([0.0, 0.1, 1.0], "weights of the detector term (0: the "
                                "paper's attack)", range=(0, None)),
    "adaptive_detector": Param("profile_logits", "the deployed detector, fixed before any "
                               "result", choices=ADAPTIVE_DETECTORS),
    "eot_draws": Param(1, "reference sets the attacker draws per step (expectation over "
                       "them)", range=(1, 100)),
    "extra_datasets": Param([], 'e.g. [["cifar10", "preresnet20"]]: the protocol on other '
                            "data", group="gpu profile only"),
}, checks=[check_seeds, check_drop, check_num_inputs, check_adaptive_inputs])


# ----------------------------------------------------------------------------- claims
def claim_results(summary: Mapping[str, Any], barrier_auroc: Mapping[str, Any],
                  profile_gain: Mapping[str, Any], adaptive: pd.DataFrame
                  ) -> dict[str, Mapping[str, Any]]:
    """Each claim's interval: from the paper protocol's ``summary``
    (:func:`mcutils.advbarriers.protocol_summary`), the barrier detector's AUROC on the
    paper's attack, the paired profile-minus-logits gain, and the deployed detector's
    AUROC under the largest penalty of the ``adaptive`` study."""
    return {"within_low": summary["median_gap_real"], "adv_gap_higher": summary["auroc_gap"],
            "adv_gap_high": summary["median_gap_adv"], "adv_max_higher": summary["auroc_max"],
            "barrier_detects": barrier_auroc, "profile_adds": profile_gain,
            "adaptive_evades": adaptive.iloc[-1].auroc_deployed}


def check_claims(chapter: ChapterReport, results: Mapping[str, Mapping[str, Any]],
                 controls: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add every claim of :data:`CLAIMS` to ``chapter`` with its interval from
    ``results`` (claim id -> interval, as :func:`claim_results` gives), the interval's
    method (its ``"method"``, else :data:`METHODS`) and, for the claims in ``controls``
    (:func:`mcutils.chapters.ch04_controls.negative_controls`), the negative control."""
    missing = [c["id"] for c in CLAIMS if c["id"] not in results]
    if missing:
        raise ValueError(f"no result for the claims {missing}")
    controls = controls or {}
    for c in CLAIMS:
        res = results[c["id"]]
        chapter.claim(c["id"], c["statement"], c["paper"], res,
                      threshold=c["threshold"], direction=c["direction"],
                      method=res.get("method") or METHODS.get(c["id"]),
                      control=controls.get(c["id"]))


# ----------------------------------------------------------------------------- setup and records
def setup_model(params: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The chapter's network, the default model (chapter 00's checkpoint, loaded from the
    cache or trained), on the chapter's device, and its training info."""
    net, info = zoo.trained_model(
        dataset=params["dataset"], model=params["model"], epochs=params["num_epochs"],
        lr=params["lr"], batch_size=params["batch_size"], train_subset=params["train_subset"],
        seed=params["seed"], device=params["device"], return_info=True)
    return net.to(get_device(params["device"])), info


def paper_attack(params: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's attack settings (normalised input units) from the chapter's parameters."""
    return dict(steps=params["attack_steps"], lr=params["attack_lr"],
                mse_weight=params["mse_weight"], hf_weight=params["hf_weight"],
                warmup=params["warmup"])


#: The statistics of the paper protocol the chapter glues (with and without the drop).
PAPER_KEYS = ("median_gap_real", "median_gap_adv", "auroc_gap", "rho_median")


def record_protocol(chapter: ChapterReport, params: Mapping[str, Any], model: nn.Module,
                    protocol: pd.DataFrame, summary: Mapping[str, Any],
                    summary_all: Mapping[str, Any]) -> None:
    """Glue section 1's settings (in the paper's units and in pixel units, read from the
    model's first layer) and the attack's behaviour on the ``protocol`` rows
    (:func:`mcutils.chapters.ch04_sweep.run_protocol`), with the paper's statistics after
    its drop (``summary``) and over all pairs (``summary_all``)."""
    p = params
    std = float(attacks.input_normalization(model)[1].flatten()[0])
    pixel = attacks.pixel_units(std, p["attack_lr"], p["mse_weight"], p["hf_weight"])
    adv_rows = protocol[protocol.kind == "adversarial"]
    for name, value in dict(
            last_pair=p["pairs_per_class"] - 1, attack_lr=p["attack_lr"],
            mse_weight=p["mse_weight"], hf_weight=f"{p['hf_weight']:g}", norm_std=round(std, 3),
            pixel_lr=round(pixel["lr"], 5), pixel_mse_weight=round(pixel["mse_weight"], 3),
            pixel_hf_weight=f"{pixel['hf_weight']:.2g}", attack_steps=p["attack_steps"],
            warmup=p["warmup"], num_points=p["num_points"], drop=p["drop"],
            num_seeds=len(p["seeds"]), pairs_per_seed=int(adv_rows.seed.eq(p["seeds"][0]).sum()),
            steps_median=float(adv_rows.steps.median()),
            stopped_frac=float((adv_rows.steps < p["attack_steps"]).mean()),
            out_of_box=float(adv_rows.out_of_box.median())).items():
        chapter.record(f"ch04_{name}", value, digits=3)
    chapter.record("ch04_paper_protocol", {k: summary[k] for k in PAPER_KEYS})
    chapter.record("ch04_paper_protocol_nodrop", {k: summary_all[k] for k in PAPER_KEYS})


def record_path_comparison(chapter: ChapterReport, params: Mapping[str, Any], model: nn.Module,
                           x: torch.Tensor, y: torch.Tensor, protocol: pd.DataFrame,
                           summary: Mapping[str, Any], summary_all: Mapping[str, Any]
                           ) -> PairSet:
    """Glue the comparison of section 1: the paired Wilcoxon test of the gap of ``A -> K'``
    against that of ``A -> B`` (all seeds), the median barrier max of the path to the
    clean source ``K`` against the path to ``K'`` (first seed), and the paper's statistics
    as text, with whether the AUROCs' intervals lie above chance (``ch04_auroc_gap_word``,
    ``ch04_auroc_max_word``). Returns the first seed's pairs (drawn from the test images ``x``, ``y``)."""
    p = params
    first = p["seeds"][0]
    both = protocol.pivot_table(index=["seed", "unit"], columns="kind", values="gap")
    wil = stats.wilcoxon_paired(both["adversarial"].to_numpy(), both["within"].to_numpy(),
                                alternative="greater")
    pairs0 = advbarriers.paper_pairs(x, y, p["pairs_per_class"], seed=first)
    clean_prof = inputspace.loss_profiles(model, pairs0.a, pairs0.k, pairs0.cls,
                                          num_points=p["num_points"])
    adv0 = protocol[(protocol.kind == "adversarial") & (protocol.seed == first)]
    chapter.record("ch04_clean_max", float(inputspace.barrier(clean_prof, "max").median()))
    chapter.record("ch04_adv_max", float(adv0["max"].median()))
    chapter.record("ch04_wilcoxon_p", float(f"{wil['pvalue']:.3g}"), digits=None)
    for name, key, summ in (("gap_real", "median_gap_real", summary),
                            ("gap_adv", "median_gap_adv", summary),
                            ("auroc_gap", "auroc_gap", summary),
                            ("auroc_gap_all", "auroc_gap", summary_all),
                            ("auroc_max", "auroc_max", summary), ("rho", "rho_median", summary)):
        chapter.record(f"ch04_{name}_text", format_interval(summ[key], 3))
    for name, key in (("auroc_gap", "auroc_gap"), ("auroc_max", "auroc_max")):
        chapter.record(f"ch04_{name}_word", stats.interval_word(
            summary[key], "lies above", "lies below", "includes", threshold=0.5))
    return pairs0


#: How a paired difference of AUROCs is put in words: above, below, or across 0.
TREND_WORDS = ("higher", "lower", "not clearly different")
#: The AUROC the rho sweep is read against (the band of its figure).
AUROC_TARGET = 0.9


def record_rho_trend(chapter: ChapterReport, params: Mapping[str, Any], rho_df: pd.DataFrame,
                     rho_sweep: Sequence[Mapping[str, Any]]) -> None:
    """Glue what the rho sweep shows: the paired AUROC difference of the setting with the
    smallest rho (``rho_sweep``, :func:`mcutils.advbarriers.rho_curve`) and of the
    over-confident setting against the paper's (rows ``rho_df``), and whether any setting
    reaches :data:`AUROC_TARGET` with its whole interval."""
    n_boot, seed = params["num_boot"], params["seed"]
    smallest = rho_sweep[0]["setting"]
    trend = advbarriers.setting_difference(rho_df, smallest, "paper", n_boot=n_boot, seed=seed)
    conf = advbarriers.setting_difference(rho_df, "over-confident", "paper", n_boot=n_boot,
                                          seed=seed)
    reaches = any(e["auroc"]["ci"][0] >= AUROC_TARGET for e in rho_sweep)
    for name, value in dict(rho_trend=trend, rho_smallest=smallest,
                            rho_trend_text=format_interval(trend),
                            rho_trend_word=stats.interval_word(trend, *TREND_WORDS),
                            confidence_diff_text=format_interval(conf),
                            confidence_word=stats.interval_word(conf, *TREND_WORDS),
                            reaches_09="reaches" if reaches else "does not reach",
                            auroc_target=AUROC_TARGET).items():
        chapter.record(f"ch04_{name}", value)


def findings(chapter: ChapterReport, params: Mapping[str, Any], *, summary: Mapping[str, Any],
             rho_summary: Sequence[Mapping[str, Any]],
             model_summary: Sequence[Mapping[str, Any]], adaptive: pd.DataFrame,
             barrier_auroc: Mapping[str, Any], profile_gain: Mapping[str, Any],
             controls: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Print the chapter's key numbers (rounded) and add its claims (:data:`CLAIMS`) to
    ``chapter``: the paper protocol's ``summary``, the rho and network sweeps' summaries,
    the ``adaptive`` study, the barrier detector's AUROC and the profile's gain over the
    logits on the paper's attack, with the asserted claims' negative ``controls``
    (:func:`mcutils.chapters.ch04_controls.negative_controls`); glue the deviations table
    (:func:`mcutils.chapters.ch04_controls.deviations`). ``params`` (the chapter's
    parameters) is taken for the common signature of the chapters' ``findings``; every
    number here is in the results."""

    r3 = {k: round(summary[k]["estimate"], 3) for k in advbarriers.STATISTICS}
    print("paper protocol (drop 2 of 7):", r3)
    print("rho sweep:", [(e["setting"], round(e["rho"]["estimate"], 3),
                          round(e["auroc"]["estimate"], 3)) for e in rho_summary])
    print("networks:", [(e["network"], round(e["auroc"]["estimate"], 3)) for e in model_summary])
    print("adaptive:", [(row.penalty, round(row.auroc_deployed["estimate"], 3))
                        for row in adaptive.itertuples()])
    check_claims(chapter, claim_results(summary, barrier_auroc, profile_gain, adaptive),
                 controls)
    ch04_controls.deviations(chapter)


# ----------------------------------------------------------------------------- tables
def interval_table(entries: Sequence[Mapping[str, Any]], keys: Sequence[str],
                   label: str, digits: int = 3,
                   extra: Mapping[str, Mapping[Any, Any]] | None = None) -> pd.DataFrame:
    """One row per entry (a :func:`~mcutils.advbarriers.sweep_summary` entry, say): its
    ``label`` column, the columns of ``extra`` (column -> {label value: cell}) and the
    intervals ``keys`` as text."""
    extra = extra or {}
    return pd.DataFrame([{label: e[label], **{c: v[e[label]] for c, v in extra.items()},
                          **{k: format_interval(e[k], digits) for k in keys}}
                         for e in entries])


def protocol_table(summaries: Mapping[str, Mapping[str, Any]], digits: int = 3
                   ) -> pd.DataFrame:
    """Statistics (rows) by summary (columns, e.g. pooled and over seeds), as text."""
    return pd.DataFrame({label: {k: format_interval(v, digits) for k, v in summ.items()}
                         for label, summ in summaries.items()})


SWEEP_COLUMNS = ("rho", "median_gap", "median_gap_real", "auroc", "success")


def sweep_table(summary: Sequence[Mapping[str, Any]], by: str = "setting",
                accuracy: Mapping[str, float] | None = None) -> pd.DataFrame:
    """A sweep's summary as text, one row per setting (or network, with its test
    accuracy)."""
    extra = None
    if accuracy is not None:
        extra = {"test accuracy": {k: round(float(v), 3) for k, v in accuracy.items()}}
    return interval_table(summary, SWEEP_COLUMNS, by, extra=extra)


def gain_table(gains: Mapping[str, Mapping[str, Any]], wilcoxon_p: pd.Series) -> pd.DataFrame:
    """Per attack: the paired AUROC gain of profile+logits over logits and the Wilcoxon
    p-value of the adversarial gap against its source's."""
    return pd.DataFrame({"profile+logits minus logits (AUROC)":
                         {a: format_interval(g, 3) for a, g in gains.items()},
                         "Wilcoxon p (adversarial gap > its source's)":
                         wilcoxon_p.map("{:.2g}".format)})


ADAPTIVE_INTERVALS = ("success", "l2", "auroc_deployed", "auroc_retrained", "difference")


def adaptive_table(adaptive: pd.DataFrame) -> pd.DataFrame:
    """The adaptive study's rows with its intervals as text."""
    return adaptive.assign(**{c: adaptive[c].map(format_interval) for c in ADAPTIVE_INTERVALS})


# ----------------------------------------------------------------------------- figures
def _errorbars(ax, x: np.ndarray, entries: Sequence[Mapping[str, Any]], key: str, **kw):
    est = np.array([e[key]["estimate"] for e in entries])
    lo = np.array([e[key]["ci"][0] for e in entries])
    hi = np.array([e[key]["ci"][1] for e in entries])
    ax.errorbar(x, est, yerr=[est - lo, hi - est], capsize=3, **kw)
    return est


def barrier_boxes(kept: pd.DataFrame):
    """The chapter's version of the paper's Figure 6: boxes of the barrier max and gap of
    within-class and real-adversarial paths (rows of
    :func:`~mcutils.advbarriers.drop_unmatched`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = kept.melt(id_vars=["kind"], value_vars=["max", "gap"], var_name="statistic",
                     value_name="loss")
    long["statistic"] = long.statistic.map({"max": "barrier max", "gap": "barrier gap"})
    long["kind"] = long.kind.map({"within": "within-class paths",
                                  "adversarial": "real-adversarial paths"})
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.boxplot(data=long, x="statistic", y="loss", hue="kind", ax=ax, fliersize=2)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("")
    ax.set_ylabel("cross-entropy of the class (nats)")
    ax.legend(title="")
    fig.tight_layout()
    return fig


def path_profiles(model: nn.Module, pairs: PairSet, k_adv: torch.Tensor, pairs_per_class: int,
                  num_points: int):
    """Loss of the class of ``A`` along ``A -> B``, ``A -> K'`` and ``A -> K`` for pair 0
    of every class."""
    import matplotlib.pyplot as plt

    show = torch.arange(0, len(pairs), pairs_per_class)  # pair 0 of every class
    ends = {"A to B (within-class)": pairs.b[show], "A to K' (real-adversarial)": k_adv[show],
            "A to K (clean source)": pairs.k[show]}
    fig, axes = plt.subplots(1, 3, figsize=(plotting.MAX_WIDTH, 3.2), sharey=True)
    for ax, (title, end) in zip(axes, ends.items()):
        prof = inputspace.loss_profiles(model, pairs.a[show], end, pairs.cls[show],
                                        num_points=num_points)
        plotting.profile_plot(prof, ax=ax)
        ax.set_title(title, fontsize="small")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_xlabel("position on the path (0: A)")
        ax.set_ylabel("")
    axes[0].set_ylabel("loss of the class of A (nats)")
    fig.tight_layout()
    return fig


def sweep_figure(entries: Sequence[Mapping[str, Any]], x: Sequence[float], xlabel: str,
                 annotate: str | None = None, target: float = 0.9,
                 size: tuple = (plotting.MAX_WIDTH, 3.4)):
    """Median real-adversarial gap and AUROC of the gap against ``x`` (log scale), with
    95% intervals; points labelled by their ``annotate`` entry; the band where the AUROC
    reaches ``target``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=size)
    x = np.asarray(x)
    for ax, key, label in ((axes[0], "median_gap", "median real-adversarial gap (nats)"),
                           (axes[1], "auroc", "AUROC of the gap")):
        est = _errorbars(ax, x, entries, key, fmt="o-")
        if annotate:
            for e, x_, y_ in zip(entries, x, est):
                ax.annotate(e[annotate], (x_, y_), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
    axes[1].axhspan(target, 1.0, color="tab:green", alpha=0.15, label=f"AUROC ≥ {target:g}")
    axes[1].axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    axes[1].legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


#: Legend entries of :func:`detector_figure`: each detector's features, in words.
DETECTOR_LABELS = {
    "barrier": "barrier gap",
    "barrier_max": "barrier max",
    "profile": "loss profile",
    "profile_logits": "loss profile + logits",
    "msp": "max. softmax probability",
    "margin": "logit margin",
    "logits": "sorted logits",
    "mahalanobis": "Mahalanobis score",
}


def detector_figure(table: pd.DataFrame, detectors: Sequence[str], target: float = 0.9):
    """AUROC with 95% intervals of every detector (colours) on every attack."""
    import matplotlib.pyplot as plt

    plot_df = table.assign(est=[v["estimate"] for v in table.auroc],
                           lo=[v["ci"][0] for v in table.auroc],
                           hi=[v["ci"][1] for v in table.auroc])
    fig, ax = plt.subplots(figsize=(plotting.MAX_WIDTH, 4.6))
    attacks_order = list(dict.fromkeys(plot_df.attack))
    width = 0.8 / len(detectors)
    for j, det in enumerate(detectors):
        sub = plot_df[plot_df.detector == det].set_index("attack").loc[attacks_order]
        xs = np.arange(len(attacks_order)) - 0.4 + (j + 0.5) * width
        ax.errorbar(xs, sub.est, yerr=[sub.est - sub.lo, sub.hi - sub.est], fmt="o", ms=3,
                    capsize=2, label=DETECTOR_LABELS.get(det, det))
    ax.set_xticks(range(len(attacks_order)), attacks_order, rotation=15, fontsize="small")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.axhspan(target, 1.0, color="tab:green", alpha=0.1)
    ax.set_ylabel("AUROC (cross-validated by source)")
    ax.legend(ncol=4, fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.22),
              frameon=False)
    fig.tight_layout()
    return fig


def adaptive_figure(adaptive: pd.DataFrame):
    """The adaptive study against the perturbation size: AUROC of the deployed and the
    retrained detector (left), the attack's success (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.4))
    rows = adaptive.to_dict("records")
    l2 = np.array([v["estimate"] for v in adaptive.l2])
    for key, label in (("auroc_deployed", "deployed detector"),
                       ("auroc_retrained", "retrained detector")):
        _errorbars(axes[0], l2, rows, key, fmt="o-", label=label)
    for x_, w in zip(l2, adaptive.penalty):
        axes[0].annotate(f"w={w:g}", (x_, 0.5), fontsize=7, xytext=(3, -10),
                         textcoords="offset points")
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].set_xlabel("median L2 perturbation (pixels)")
    axes[0].set_ylabel("AUROC on the test half")
    axes[0].legend(fontsize="small")
    succ = np.array([v["estimate"] for v in adaptive.success])
    axes[1].plot(l2, succ, "o-")
    axes[1].set_xlabel("median L2 perturbation (pixels)")
    axes[1].set_ylabel("fraction reaching the target")
    axes[1].set_ylim(0, 1.05)
    fig.tight_layout()
    return fig
