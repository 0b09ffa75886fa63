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

import pandas as pd
import torch
from torch import nn

from mcutils import advbarriers, attacks, inputspace, zoo
from mcutils.advbarriers import PairSet
from mcutils.chapters import ch04_adaptive, ch04_controls, ch04_imagenet
from mcutils.chapters.ch04_figures import (DETECTOR_LABELS, adaptive_figure, barrier_boxes,
                                           detector_figure, path_profiles, sweep_figure)
from mcutils.chapters.ch04_parts import (adaptive_part, attack_part, paper_attack,
                                         protocol_part, setup_model)
from mcutils.chapters.ch04_parts import pool_parts as _pool_parts
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.report import ChapterReport, verdict
from mcutils.core.stats import format_interval
from mcutils.params import Param, ParameterSchema

__all__ = [
    "AUROC_TARGET",
    "CLAIMS",
    "DETECTION_CLAIMS",
    "DETECTOR_LABELS",
    "EXPECTED",
    "EXTENSION",
    "GPU_SENTENCE",
    "NOTES",
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
    "adaptive_part",
    "attack_part",
    "check_seeds",
    "claim_results",
    "detector_figure",
    "findings",
    "gain_table",
    "interval_table",
    "paper_attack",
    "path_profiles",
    "pool_parts",
    "protocol_part",
    "protocol_table",
    "record_path_comparison",
    "record_protocol",
    "record_rho_trend",
    "setup_model",
    "sweep_figure",
    "sweep_table",
]

#: What the paper column says of the detection claims: they are this book's own.
EXTENSION = "not in the paper: the book's own extension"

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
     "paper": EXTENSION + "; the paper suggests barriers could reveal adversarial inputs",
     "threshold": 0.9, "direction": ">=", "expected": False},
    {"id": "profile_adds",
     "statement": "loss profiles add to the logits on the paper's attack: paired AUROC "
                  "difference > 0",
     "paper": EXTENSION,
     "threshold": 0.0, "direction": ">", "expected": False},
    {"id": "ensemble_detects",
     "statement": "the Mahalanobis layer ensemble with input pre-processing (Lee et al. "
                  "2018, tuned inside the folds) detects the paper's attack: AUROC >= 0.9",
     "paper": EXTENSION,
     "threshold": 0.9, "direction": ">=", "expected": False},
    {"id": "profile_beats_ensemble",
     "statement": "the loss-profile detector (profile + logits) beats the Mahalanobis layer "
                  "ensemble on the paper's attack: paired AUROC difference > 0",
     "paper": EXTENSION,
     "threshold": 0.0, "direction": ">", "expected": False},
    {"id": "adaptive_evades",
     "statement": "an adaptive attack brings the deployed detector to AUROC <= 0.6 "
                  "(the attacker's strongest weight, chosen on the training half; test half)",
     "paper": EXTENSION + "; not tested in the paper",
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
    "ensemble_detects": "bootstrap over sources of the out-of-fold AUROC (the noise "
                        "magnitude and the layer weights fitted on each fold's training "
                        "sources only)",
    "profile_beats_ensemble": "paired bootstrap over sources (both detectors on the same "
                              "out-of-fold rows)",
    "adaptive_evades": "bootstrap over the test half's sources",
}

#: The claims whose control relabels real inputs as adversarial
#: (:func:`mcutils.chapters.ch04_controls.detection_controls`).
DETECTION_CLAIMS = ("barrier_detects", "profile_adds", "ensemble_detects",
                    "profile_beats_ensemble")


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
    "num_inputs": Param(300, "correctly classified test images attacked in section 3",
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
    "lid_refs": Param(100, "defender's images each LID is estimated against (Ma et al.: "
                      "minibatches of 100)", range=(41, None)),
    "mc_samples": Param(50, "Monte-Carlo dropout samples of BU (Feinman et al.: 50)",
                        range=(2, None)),
    "adaptive_inputs": Param(60, "sources of the adaptive study (half train, half test; "
                             "gpu: 500)", range=(8, None)),
    "adaptive_steps": Param(64, "Adam steps at most of the adaptive attack (gpu: 512, "
                            "Tramer et al.)", range=(1, None)),
    "adaptive_penalties": Param([0.0, 1.0, 3.0], "weights of the detector term (0: the "
                                "paper's attack)", range=(0, None)),
    "adaptive_detector": Param("profile_logits", "the deployed detector, fixed before any "
                               "result", choices=ADAPTIVE_DETECTORS),
    "eot_draws": Param(2, "reference sets the attacker draws per step (expectation over "
                       "them; gpu: 16)", range=(1, 100)),
    "extra_datasets": Param([], 'e.g. [["cifar10", "preresnet20"]]: the protocol on other '
                            "data", group="gpu profile only"),
    "imagenet_models": Param([], "the paper's own ImageNet pairs through these models "
                             "(gpu-imagenet profile; needs $MCUTILS_DATA/imagenet/val)",
                             choices=zoo.IMAGENET_MODELS),
    "imagenet_pairs": Param(None, "pairs per kind from the paper's CSVs (None: all)",
                            range=(1, None), nullable=True),
}, checks=[check_seeds, check_drop, check_num_inputs, check_adaptive_inputs,
           ch04_imagenet.check_imagenet_params])


# ----------------------------------------------------------------------------- claims
def claim_results(summary: Mapping[str, Any], detection: Mapping[str, Mapping[str, Any]],
                  adaptive: pd.DataFrame) -> dict[str, Mapping[str, Any]]:
    """Each claim's interval: from the paper protocol's ``summary``
    (:func:`mcutils.advbarriers.protocol_summary`), the ``detection`` intervals on the
    paper's attack (claim id -> interval, :data:`DETECTION_CLAIMS`), and the deployed
    detector's AUROC at the attacker's strongest weight of the ``adaptive`` study
    (:func:`mcutils.chapters.ch04_adaptive.strongest`)."""
    missing = [c for c in DETECTION_CLAIMS if c not in detection]
    if missing:
        raise ValueError(f"no detection result for {missing}")
    return {"within_low": summary["median_gap_real"], "adv_gap_higher": summary["auroc_gap"],
            "adv_gap_high": summary["median_gap_adv"], "adv_max_higher": summary["auroc_max"],
            **{c: detection[c] for c in DETECTION_CLAIMS},
            "adaptive_evades": ch04_adaptive.strongest(adaptive).auroc_deployed}


#: Why a claim can come out other than reproduced, from the chapter's design (shown
#: only for claims that are not reproduced).
NOTES = {
    "adv_gap_high": "the paper's attack stops at a matched loss after a small perturbation "
                    "of a 28x28 image; section 2 measures how the gap moves with the "
                    "perturbation size and the input dimension",
    "adv_max_higher": "the barrier max includes the end losses, which the paper's stop "
                      "rule matches",
    "barrier_detects": "one number per input; section 3's table compares it with the whole "
                       "profile and the established detectors on the same sources",
    "profile_adds": "read as a paired difference on the same out-of-fold rows; the AUROC "
                    "table gives both detectors",
    "ensemble_detects": "read against a fixed target; the AUROC table gives every attack",
    "profile_beats_ensemble": "the ensemble reads every hidden layer, the profile only the "
                              "loss of one class along paths",
    "adaptive_evades": "the cpu profile cuts Tramer et al.'s attack (fewer sources, steps "
                       "and draws); the gpu profile runs their setting",
}


def check_claims(chapter: ChapterReport, results: Mapping[str, Mapping[str, Any]],
                 controls: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add every claim of :data:`CLAIMS` to ``chapter`` with its interval from
    ``results`` (claim id -> interval, as :func:`claim_results` gives), the interval's
    method (its ``"method"``, else :data:`METHODS`), for the claims in ``controls``
    (:func:`mcutils.chapters.ch04_controls.negative_controls`,
    :func:`~mcutils.chapters.ch04_controls.detection_controls`) the negative control,
    and, for a claim that is not reproduced, its reason from :data:`NOTES`."""
    missing = [c["id"] for c in CLAIMS if c["id"] not in results]
    if missing:
        raise ValueError(f"no result for the claims {missing}")
    controls = controls or {}
    for c in CLAIMS:
        res = results[c["id"]]
        held = verdict(res["ci"], c["threshold"], c["direction"]) == "reproduced"
        chapter.claim(c["id"], c["statement"], c["paper"], res, threshold=c["threshold"],
                      direction=c["direction"], method=res.get("method") or METHODS.get(c["id"]),
                      control=controls.get(c["id"]), note=None if held else NOTES.get(c["id"]))


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Section 3's attacks and adaptive weights as parts of the runner's worker pool
    (:func:`mcutils.chapters.ch04_parts.pool_parts`; the functions :func:`attack_part`
    and :func:`adaptive_part`)."""
    return _pool_parts(params)


# ----------------------------------------------------------------------------- setup and records
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


#: What the gpu profile changes, for the chapter's summary.
GPU_SENTENCE = ("five seeds, all 7 pairs per class in the sweeps, inputs up to 112 pixels, "
                "PreResNet-20 among the networks, 1000 sources per attack, more references "
                "and path points, the adaptive attack on 500 sources, and the protocol on "
                "CIFAR-10; the gpu-imagenet profile runs the paper's own ImageNet pairs for "
                "readers who have ImageNet (not run for this book).")


def findings(chapter: ChapterReport, params: Mapping[str, Any], *, summary: Mapping[str, Any],
             detection: Mapping[str, Mapping[str, Any]], adaptive: pd.DataFrame,
             controls: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Add the chapter's claims (:data:`CLAIMS`) to ``chapter``: the paper protocol's
    ``summary``, the ``detection`` intervals on the paper's attack, the ``adaptive``
    study, with their negative ``controls``; glue the deviations table
    (:func:`mcutils.chapters.ch04_controls.deviations`) and the chapter's summary
    (``ch04_summary``, returned). ``params`` is taken for the chapters' common
    signature."""
    check_claims(chapter, claim_results(summary, detection, adaptive), controls)
    ch04_controls.deviations(chapter)
    return chapter.summary(GPU_SENTENCE)


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


def wide_table(table: pd.DataFrame, column: str, detectors: Sequence[str]) -> pd.DataFrame:
    """One row per attack, one column per detector (its label), the ``column`` intervals
    of a :func:`~mcutils.chapters.ch04_detectors.detector_table`."""
    wide = table.pivot(index="attack", columns="detector", values=column)
    wide = wide.loc[list(dict.fromkeys(table.attack)), list(detectors)]
    return wide.rename(columns=lambda d: DETECTOR_LABELS.get(d, d)).reset_index()


def auroc_record(table: pd.DataFrame, detectors: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{attack: {detector: AUROC interval}}`` for the glue ``ch04_auroc_table``."""
    return {a: {d: table[(table.attack == a) & (table.detector == d)].auroc.iloc[0]
                for d in detectors}
            for a in dict.fromkeys(table.attack)}


def attack_view(attack_table: pd.DataFrame) -> pd.DataFrame:
    """The attacks' success and size, for the reader."""
    return attack_table.rename(columns={"success": "success rate", "linf": "median L-inf",
                                        "l2": "median L2 (pixels)", "n": "successful"})
