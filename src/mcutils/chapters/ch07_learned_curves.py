"""Chapter 07: learned curves in both spaces, where neither paper went.

The input-space paper bends straight lines greedily, one bypass point at a time; the
weight-space paper learns a whole curve by minimising the expected loss along it. This
chapter asks two questions the book's own experiments can answer:

* is a learned curve in *input* space any better than the greedy bypass, and does a
  real-to-adversarial pair, whose straight path has a barrier, have a low-loss learned
  curve at all (:mod:`mcutils.chapters.ch07_input_study`)?
* does the backdoor of chapter 05 live in the permutation of hidden units: does aligning
  the ends by weight matching (:mod:`mcutils.alignment`) change the straight path's
  barrier, its midpoint's attack success, the regular-to-robust path of chapter 06, and
  what the repaired curve removes (:mod:`mcutils.chapters.ch07_weight_study`)?

This module holds the schema (:data:`PARAMETERS`), the claims stated before any run
(:data:`CLAIMS`, :data:`CONTROL_STATEMENTS`, :data:`EXPECTED`, :data:`THRESHOLDS`), the
pool parts that train the models the chapter needs (:func:`pool_parts`), the claims'
computation (:func:`claims`), the deviations table (:data:`DEVIATIONS`) and
:func:`findings`. Used by chapter 07.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mcutils.chapters import ch07_weight_study as weights
from mcutils.chapters.common import model_params
from mcutils.core import stats
from mcutils.core.report import ChapterReport
from mcutils.params import Param, ParameterSchema

__all__ = ["CLAIMS", "CONTROL_STATEMENTS", "DEVIATIONS", "EXPECTED", "GPU_NOTE", "PARAMETERS",
           "THRESHOLDS", "claim_notes", "claims", "connected_interval", "findings", "pool_parts",
           "train_backdoored", "train_clean", "train_robust"]

THRESHOLDS = {"connected_share": 0.8, "asr_backdoored": 0.9, "asr_removed": 0.1}
"""Fixed before any run: a learned curve "connects" a set of pairs when at least 80% of
them have a barrier below ``tol`` at the dense check (30 of 30 pairs give an exact
binomial lower bound of 0.88, so 0.9 could not be reached with the cpu profile's pairs); a midpoint is "still backdoored"
when its attack success is at least 0.9; a repair removes the backdoor when the attack
success is at most 0.1 (chapter 05's ``asr_max``)."""


def _budgets(p: Mapping[str, Any]) -> str | None:
    b = list(p["curve_budgets"])
    if len(b) < 3 or b != sorted(set(b)) or b[-1] < 4 * b[0]:
        return (f"curve_budgets={b} must hold at least 3 increasing step counts, the largest "
                "at least 4x the smallest")
    return None


def _seeds(p: Mapping[str, Any]) -> str | None:
    pairs = [s for s in p["pair_seeds"]]
    ends = {e for s in pairs for e in (s, s + 1)}
    if len(ends) != 2 * len(pairs):
        return f"pair_seeds={pairs}: the pairs (s, s + 1) must not share a model"
    if len(set(p["robust_seeds"])) != len(p["robust_seeds"]):
        return f"robust_seeds={p['robust_seeds']} must be distinct"
    return None


PARAMETERS = ParameterSchema("07", {
    **model_params(seed_help="the default model (chapter 00's), the pairs' draws and the "
                             "curves' t draws"),
    # input space
    "num_test": Param(3000, "test images from which chapter 01's pairs are drawn",
                      range=(20, None), group="input space: pairs"),
    "pairs_per_class": Param(12, "chapter 01's real same-class pairs drawn per class",
                             range=(1, None)),
    "adv_pairs_per_class": Param(3, "chapter 04's triples used per class (of its 7)",
                                 range=(1, 7)),
    "attack_steps": Param(512, "the paper's attack: Adam steps (chapter 04)", range=(1, None)),
    "attack_lr": Param(0.005, "its learning rate (normalised units)", range=(1e-6, 1)),
    "tol": Param(0.01, "barrier tolerance (nats): a straight path with a barrier at least "
                 "this is kept; a path below it is connected", range=(1e-6, None)),
    "max_pairs": Param(30, "at most this many pairs with a barrier per set", range=(1, None)),
    "num_points": Param(1000, "points of the dense check along every path", range=(10, None)),
    "connect_tol": Param(0.001, "the bypass's tolerance (chapter 01)", range=(1e-6, None),
                         group="input space: bypass and curves"),
    "max_rounds": Param(3, "rounds of the recursive bypass", range=(1, 20)),
    "bypass_steps": Param(1024, "Adam steps per bypass point (the paper's)", range=(1, None)),
    "bypass_lr": Param(0.005, "its learning rate (the paper's, normalised units)",
                       range=(1e-8, 10)),
    "curve_budgets": Param([256, 512, 1024], "Adam steps of the learned curves (read at the "
                           "largest; the budget curve at all)", range=(1, None)),
    "curve_lr": Param(0.005, "their learning rate (the bypass's, normalised units)",
                      range=(1e-8, 10)),
    "num_bends": Param(3, "bends of the learned curves, ends included", range=(3, 10)),
    # weight space
    "pair_seeds": Param([0, 2, 4], "backdoored pairs: models s and s + 1 of chapter 05",
                        range=(0, None), group="weight space"),
    "robust_seeds": Param([1, 2, 3], "robust ends of chapter 06 (its robust_seed is 1), "
                          "each paired with the regular end", range=(0, None)),
    "backdoor_subset": Param(10000, "training images of each backdoored model (chapter 05)",
                             range=(1, None), nullable=True),
    "poison_rate": Param(0.5, "chapter 05's poisoning rate (its official set-up)", range=(0, 1)),
    "target_class": Param(1, "chapter 05's target class", range=(0, 9)),
    "trigger_size": Param(3, "chapter 05's trigger side", range=(1, 10)),
    "end_optimizer": Param("sgd", "chapter 05's ends: optimiser", choices=("sgd", "adam")),
    "end_lr": Param(0.05, "chapter 05's ends: learning rate", range=(1e-6, 10)),
    "end_epochs": Param(5, "chapter 05's ends: epochs over backdoor_subset", range=(1, None)),
    "end_weight_decay": Param(0.0001, "chapter 05's ends: weight decay", range=(0, 1)),
    "end_schedule": Param("paper", "chapter 05's ends: schedule", choices=("cosine", "paper"),
                          nullable=True),
    "regular_optimizer": Param("adam", "chapter 06's regular end: adam (chapter 00's model) "
                               "or sgd (official)", choices=("adam", "sgd")),
    "regular_weight_decay": Param(0.0, "chapter 06's regular end's weight decay",
                                  range=(0, 1)),
    "regular_augment": Param(False, "chapter 06's regular end's crops and flips",
                             choices=(True, False)),
    "adv_protocol": Param("official", "chapter 06's robust end: official (1-step PGD + "
                          "gradient penalty) or pgd", choices=("official", "pgd")),
    "adv_eps": Param(0.1, "chapter 06's adversarial radius (pixel units)", range=(1e-4, 1)),
    "adv_steps": Param(3, "chapter 06's PGD training steps", range=(1, 100)),
    "adv_step_size": Param(None, "chapter 06's PGD training step (None: 2.5 * adv_eps / "
                           "adv_steps)", range=(1e-5, 1), nullable=True),
    "adv_epochs": Param(2, "chapter 06's adversarial training epochs", range=(1, None)),
    "adv_subset": Param(20000, "chapter 06's adversarial training images", range=(1, None),
                        nullable=True),
    "pgd_steps": Param(10, "PGD steps of the robustness loss", range=(1, 1000)),
    "robust_eval_size": Param(500, "test images attacked for the robustness loss",
                              range=(10, 10000)),
    "path_points": Param(11, "points of the straight weight-space paths", range=(3, 101)),
    "val_size": Param(500, "chapter 05's defender validation split", range=(10, None)),
    "eval_size": Param(1000, "chapter 05's held-out test images", range=(10, None)),
    "repair_sizes": Param([100, 2500], "bonafide sizes of the repaired curves", range=(1, None)),
    "repair_lrs": Param([0.01, 0.03, 0.1], "chapter 05's learning-rate grid",
                        range=(1e-6, 10)),
    "repair_max_steps": Param(200, "chapter 05's step cap of a repair", range=(1, None)),
    "num_ts": Param(11, "chapter 05's points of a curve scored on the validation split",
                    range=(3, 101)),
    "n_boot": Param(2000, "bootstrap resamples", range=(10, 100000)),
}, checks=[_budgets, _seeds])
"""Chapter 07's parameters: the default model's, the input-space pairs, bypass and curves,
and the weight-space ends (chapter 05's and 06's settings, so their cached models are
reused) and repair."""

EXPECTED = ["learned_connects_real", "aligned_barrier_backdoor"]
"""The claims asserted at the cpu profile's scale, chosen before any run: a curve with the
bypass's budget connects what the bypass connects (chapter 01), and weight matching lowers
the straight-path barrier (Ainsworth et al. 2023)."""

CLAIMS: dict[str, dict[str, str]] = {
    "learned_connects_real": {
        "statement": ("a learned Bezier curve connects chapter 01's same-class pairs whose "
                      "straight path has a barrier: share of pairs with a barrier below tol "
                      "at {num_points} points"),
        "paper": "not tested in either paper (the input-space paper bends greedily)",
    },
    "learned_vs_bypass_real": {
        "statement": ("on those pairs the learned Bezier curve's largest loss is lower than "
                      "the greedy bypass's (mean paired difference, learned minus bypass, "
                      "nats)"),
        "paper": "not tested in either paper",
    },
    "learned_connects_adversarial": {
        "statement": ("a learned Bezier curve connects chapter 04's real-to-adversarial "
                      "pairs whose straight path has a barrier (share below tol)"),
        "paper": ("not tested; the input-space paper reads the straight path's barrier as a "
                  "sign of an adversarial end"),
    },
    "aligned_barrier_backdoor": {
        "statement": ("weight matching lowers the straight-path test-loss barrier between "
                      "chapter 05's backdoored ends (aligned minus unaligned, nats; "
                      "t-interval over pair seeds)"),
        "paper": "Ainsworth et al. 2023: matching removes much of the barrier (other models)",
    },
    "aligned_midpoint_backdoored": {
        "statement": ("the aligned straight path's midpoint is still backdoored (attack "
                      "success over pair seeds)"),
        "paper": "chapter 05 measured ASR 1.00 at the unaligned midpoint",
    },
    "aligned_barrier_robust": {
        "statement": ("weight matching lowers the straight-path test-loss barrier between "
                      "chapter 06's regular and robust ends (aligned minus unaligned, nats; "
                      "t-interval over robust seeds)"),
        "paper": "not tested in either paper",
    },
    "aligned_midpoint_robustness": {
        "statement": ("the aligned midpoint has a lower robustness loss than the unaligned "
                      "one (aligned minus unaligned PGD loss, nats; t-interval over robust "
                      "seeds)"),
        "paper": "Zhao et al. 2020: a robustness-loss barrier on the path (chapter 06)",
    },
    "aligned_repair_small_n": {
        "statement": ("with {n_small} bonafide images the repaired curve between aligned "
                      "ends removes the backdoor (attack success at the chosen t over pair "
                      "seeds)"),
        "paper": "Zhao et al. 2020: the curve repairs with little data (unaligned ends)",
    },
    "aligned_repair_accuracy": {
        "statement": ("with {n_small} bonafide images the repaired curve is more accurate "
                      "between aligned ends than between unaligned ones (aligned minus "
                      "unaligned clean accuracy; t-interval over pair seeds)"),
        "paper": "not tested in either paper",
    },
}
"""The chapter's claims, stated before they are run, in the order of its table."""

CONTROL_STATEMENTS = {
    "learned_connects_real": ("the same curve (same steps, learning rate and check) between "
                              "two disjoint planted class regions (mcutils.planted.two_ball_pairs), "
                              "which no path connects"),
    "learned_vs_bypass_real": "the straight path in place of the learned curve, on the same pairs",
    "learned_connects_adversarial": ("the same curve between two disjoint planted class "
                                     "regions (mcutils.planted.two_ball_pairs)"),
    "aligned_barrier_backdoor": ("a random re-ordering of the hidden units in place of the "
                                 "matched one (random minus unaligned)"),
    "aligned_midpoint_backdoored": ("the aligned midpoint of two clean models of chapter 05 "
                                    "(no backdoor at either end)"),
    "aligned_barrier_robust": ("a random re-ordering in place of the matched one (random "
                               "minus unaligned)"),
    "aligned_repair_small_n": ("the aligned straight path's midpoint before any repair "
                               "(no bonafide image used)"),
}
"""The negative control of each claim that has one: the same check where the claim is
false by construction."""

DEVIATIONS = [
    {"setting": "the whole chapter", "paper": "no such experiment in either paper",
     "source": "Vrabel et al. 2025 (bypass, section 4.1); Zhao et al. 2020 (curves); "
               "Ainsworth et al. 2023 (weight matching)",
     "ours": "the book's own experiments: learned input-space curves against the bypass; "
             "aligned against unaligned weight-space paths and repairs",
     "effect": "no paper value to compare with: every verdict is against a threshold fixed "
               "in THRESHOLDS before the run"},
    {"setting": "learned input-space curve", "paper": "curve fitting in weight space only",
     "source": "Garipov et al. 2018, curves.py (Bezier, PolyChain)",
     "ours": "the same coefficients (mcutils.curves) on inputs, Adam in normalised units "
             "with the bypass's learning rate, one t per step, no regulariser",
     "effect": "another optimiser or learning rate could connect more pairs; the budget curve "
               "shows whether the share has settled"},
    {"setting": "passes of the two input-space methods",
     "paper": "the bypass: 1024 steps per point, no early stop",
     "source": "utils.bypass_barrier (input-space paper's code)",
     "ours": "the learned curve gets 1024 steps (one bypass point's gradient evaluations); "
             "the bypass spends that per point it places, plus its barrier searches",
     "effect": "a pair the bypass connects with one point costs both methods about the same"},
    {"setting": "weight matching", "paper": "Ainsworth et al. 2023: MLPs, VGG, ResNets with "
                                            "wider layers",
     "source": "Git Re-Basin, weight_matching.py",
     "ours": "mcutils.alignment for chain networks (small CNN, VGG16) and the residual "
             "PreResNet20 and ResNet-18, with one permutation per residual stream; the gpu "
             "profile aligns VGG16, the model of chapters 05 and 06's gpu runs",
     "effect": "PreResNet20 (-p model preresnet20) is tested on planted permutations only; "
               "its aligned barriers have not been run"},
    {"setting": "regular-to-robust pairs", "paper": "one regular and one robust model",
     "source": "Zhao et al. 2020, evasion_attack/ (chapter 06)",
     "ours": "chapter 06's regular end paired with robust ends of three seeds (the regular "
             "end is shared by the three pairs)",
     "effect": "the three pairs are not independent in their regular end; the t-interval "
               "over seeds is then too narrow if the regular end matters"},
]
"""Chapter 07's deviations table: these are the book's own experiments."""


# ------------------------------------------------------------------ pool parts
def train_backdoored(params: Mapping[str, Any], seeds: list[int]) -> None:
    """Pool part: train (or load) chapter 05's backdoored models of ``seeds``."""
    for s in seeds:
        weights.backdoored_model(params, s)


def train_clean(params: Mapping[str, Any], seeds: list[int]) -> None:
    """Pool part: train (or load) chapter 05's clean models of ``seeds`` (the control)."""
    for s in seeds:
        weights.clean_model(params, s)


def train_robust(params: Mapping[str, Any], seed: int) -> None:
    """Pool part: train (or load) chapter 06's robust model of ``seed``."""
    weights.robust_model(params, seed)


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The expensive, independent pieces, each trained in its own worker and cached so
    that the notebook loads them: the two backdoored ends of every pair seed, the two
    clean models of the control, and every robust end."""
    p = dict(params)
    parts = [(f"ch07 backdoored pair {s}", "train_backdoored",
              {"params": p, "seeds": [s, s + 1]}) for s in p["pair_seeds"]]
    parts.append(("ch07 clean pair", "train_clean",
                  {"params": p, "seeds": [p["seed"], p["seed"] + 1]}))
    parts += [(f"ch07 robust model {s}", "train_robust", {"params": p, "seed": s})
              for s in p["robust_seeds"]]
    return parts


# ------------------------------------------------------------------ claims
def connected_interval(table: pd.DataFrame, tol: float, kind: str = "bezier"
                       ) -> dict[int, dict[str, Any]]:
    """Share of pairs whose ``kind`` path has a barrier below ``tol``, per budget (exact
    binomial intervals over pairs)."""
    rows = table[table.kind == kind]
    out = {}
    for b, g in rows.groupby("budget"):
        iv = stats.binomial_interval(int((g.barrier < tol).sum()), len(g))
        iv["method"] = f"exact binomial over {len(g)} pairs"
        out[int(b)] = iv
    return out


def _paired(table: pd.DataFrame, kind: str, against: str, n_boot: int, seed: int
            ) -> dict[int, dict[str, Any]]:
    """Mean paired difference of the largest loss, ``kind`` minus ``against``, per budget
    of ``kind`` (bootstrap over pairs)."""
    base = table[table.kind == against].set_index("pair")["max_loss"]
    out = {}
    for b, g in table[table.kind == kind].groupby("budget"):
        g = g.set_index("pair")
        iv = stats.paired_difference_ci(g["max_loss"].to_numpy(), base.loc[g.index].to_numpy(),
                                        n_boot=n_boot, seed=seed)
        iv["method"] = f"paired bootstrap over {len(g)} pairs ({n_boot} resamples)"
        out[int(b)] = iv
    return out


def _seed_diff(rows: pd.DataFrame, key: str, column: str, variant: str, against: str
               ) -> dict[str, Any]:
    iv = stats.seed_interval(weights.seed_values(rows, key, column, variant, against))
    iv["method"] = f"Student-t over {iv['n']} seeds"
    return iv


def _rate(hits: Any, totals: Any) -> dict[str, Any]:
    iv = stats.seed_rate_interval([int(h) for h in hits], [int(t) for t in totals])
    iv["method"] = f"seed-rate interval over {iv['n']} seeds (logit t, at least binomial)"
    return iv


def claims(params: Mapping[str, Any], real: pd.DataFrame, adversarial: pd.DataFrame,
           planted: pd.DataFrame, backdoor: pd.DataFrame, clean_control: Mapping[str, Any],
           robust: pd.DataFrame, repair: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The chapter's claims (:data:`CLAIMS`), ready for :meth:`ChapterReport.claim`.

    Args:
        params: the validated parameters.
        real, adversarial: :attr:`~mcutils.chapters.ch07_input_study.PathComparison.table`
            of chapter 01's and chapter 04's pairs.
        planted: :func:`~mcutils.chapters.ch07_input_study.planted_control`.
        backdoor, clean_control: :func:`~mcutils.chapters.ch07_weight_study.backdoor_study`'s
            rows and control.
        robust: :func:`~mcutils.chapters.ch07_weight_study.robust_study`'s rows.
        repair: :func:`~mcutils.chapters.ch07_weight_study.repair_study` (``None``: the
            repair claims are left out).
    """
    p, th = params, THRESHOLDS
    tol, largest = p["tol"], max(p["curve_budgets"])
    n_small = min(p["repair_sizes"])
    control_conn = connected_interval(planted, tol)[largest]
    straight = real[real.kind == "straight"].assign(budget=largest)
    tests: dict[str, tuple] = {
        "learned_connects_real": (connected_interval(real, tol), th["connected_share"], ">=",
                                  control_conn),
        "learned_vs_bypass_real": (_paired(real, "bezier", "bypass", p["n_boot"], p["seed"]),
                                   0.0, "<",
                                   _paired(pd.concat([straight, real[real.kind == "bypass"]]),
                                           "straight", "bypass", p["n_boot"],
                                           p["seed"])[largest]),
        "learned_connects_adversarial": (connected_interval(adversarial, tol),
                                         th["connected_share"], ">=", control_conn),
        "aligned_barrier_backdoor": (_seed_diff(backdoor, "pair_seed", "barrier", "aligned",
                                                "unaligned"), 0.0, "<",
                                     _seed_diff(backdoor, "pair_seed", "barrier", "random",
                                                "unaligned")),
        "aligned_midpoint_backdoored": (
            _rate(*(backdoor[backdoor.variant == "aligned"][c] for c in ("asr_hits",
                                                                           "asr_total"))),
            th["asr_backdoored"], ">=",
            _rate([clean_control["asr_hits"]], [clean_control["asr_total"]])),
        "aligned_barrier_robust": (_seed_diff(robust, "robust_seed", "barrier", "aligned",
                                              "unaligned"), 0.0, "<",
                                   _seed_diff(robust, "robust_seed", "barrier", "random",
                                              "unaligned")),
        "aligned_midpoint_robustness": (_seed_diff(robust, "robust_seed", "robust_loss",
                                                   "aligned", "unaligned"), 0.0, "<", None),
    }
    if repair is not None:
        chosen = repair[(repair.method == "bezier") & (repair.n == n_small)]
        al = chosen[chosen.variant == "aligned"]
        mid = backdoor[backdoor.variant == "aligned"]
        tests["aligned_repair_small_n"] = (
            _rate((al.asr * al.asr_total).round(), al.asr_total), th["asr_removed"], "<=",
            _rate(mid.asr_hits, mid.asr_total))
        tests["aligned_repair_accuracy"] = (
            _seed_diff(chosen, "pair_seed", "accuracy", "aligned", "unaligned"), 0.0, ">",
            None)
    out = []
    for cid, (res, threshold, direction, control) in tests.items():
        row: dict[str, Any] = {"claim_id": cid, "paper": CLAIMS[cid]["paper"],
                               "statement": CLAIMS[cid]["statement"].format(
                                   num_points=p["num_points"], n_small=n_small),
                               "threshold": threshold, "direction": direction}
        if isinstance(res, dict) and "estimate" not in res:  # a budget curve
            row.update(result=res[largest], budgets=res,
                       method=res[largest]["method"] + f"; read at {largest} steps")
        else:
            row.update(result=res, method=res["method"])
        if control is not None:
            row["control"] = {"statement": CONTROL_STATEMENTS[cid], "result": control}
        out.append(row)
    return out


# ------------------------------------------------------------------ findings
def _text(iv: Mapping[str, Any], digits: int = 3) -> str:
    return f"{stats.format_interval(iv, digits)} (n={iv['n']})"


def findings(chapter: ChapterReport, params: Mapping[str, Any], *, real: Any, adversarial: Any,
             planted: pd.DataFrame, backdoor: pd.DataFrame, clean_control: Mapping[str, Any],
             robust: pd.DataFrame, repair: pd.DataFrame | None) -> None:
    """Record chapter 07's glued numbers, its claims and their verdicts, its deviations and
    its summary.

    Args:
        chapter: the chapter's report.
        params: the validated parameters.
        real, adversarial: the :class:`~mcutils.chapters.ch07_input_study.PathComparison` of
            chapter 01's and chapter 04's pairs.
        planted, backdoor, clean_control, robust, repair: as in :func:`claims`.
    """
    p = params
    largest = max(p["curve_budgets"])
    for name, comp in (("real", real), ("adv", adversarial)):
        t = comp.table
        chapter.record(f"ch07_{name}_pairs", int(t.pair.nunique()))
        last = t[(t.budget == 0) | (t.budget == largest)]
        med = last.groupby("kind")[["max_loss", "relative_length", "chord_deviation",
                                    "passes"]].median()
        chapter.record(f"ch07_{name}_medians", med.round(4).to_dict("index"))
        chapter.record(f"ch07_{name}_geometry_text", "; ".join(
            f"{k}: length {med.loc[k, 'relative_length']:.3f}, chord deviation "
            f"{med.loc[k, 'chord_deviation']:.3f}, {med.loc[k, 'passes']:.0f} passes"
            for k in ("bypass", "bezier", "polychain")))
        chapter.record(f"ch07_{name}_bypass_points", int(np.sum(comp.bypass_rounds)))
    for key in ("tol", "num_points", "bypass_steps", "max_pairs", "pairs_per_class",
                "adv_pairs_per_class", "pair_seeds", "robust_seeds", "repair_sizes"):
        chapter.record(f"ch07_{key}", p[key])
    chapter.record("ch07_curve_budget", largest)
    chapter.record("ch07_barriers_backdoor", backdoor.pivot(
        index="pair_seed", columns="variant", values="barrier").round(4).to_dict("index"))
    chapter.record("ch07_barriers_robust", robust.pivot(
        index="robust_seed", columns="variant", values="barrier").round(4).to_dict("index"))
    chapter.record("ch07_midpoint_asr", backdoor.pivot(
        index="pair_seed", columns="variant", values="asr").round(4).to_dict("index"))
    if repair is not None:
        n_large = max(p["repair_sizes"])
        chosen = repair[(repair.method == "bezier") & (repair.n == n_large)]
        asr = chosen.pivot(index="pair_seed", columns="variant", values="asr")
        diff = _seed_diff(chosen, "pair_seed", "asr", "aligned", "unaligned")
        chapter.record("ch07_repair_n_large", n_large)
        chapter.record("ch07_repair_asr_large", asr.round(4).to_dict("index"))
        chapter.record("ch07_repair_asr_large_text", (
            f"{asr['aligned'].mean():.3f} between aligned ends against "
            f"{asr['unaligned'].mean():.3f} between unaligned ones (mean over pair seeds; "
            f"aligned minus unaligned {_text(diff)}): "
            + stats.interval_word(diff, "higher", "lower", "not distinguishable") + " after "
            "alignment"))
    notes = claim_notes(p, real.table, adversarial.table, backdoor, repair)
    for c in claims(p, real.table, adversarial.table, planted, backdoor, clean_control,
                    robust, repair):
        cid = c.pop("claim_id")
        entry = chapter.claim(cid, **c, note=notes.get(cid))
        chapter.record(f"ch07_verdict_{cid}", entry["verdict"])
        chapter.record(f"ch07_{cid}_text", _text(entry))
        if "control" in entry:
            chapter.record(f"ch07_control_{cid}_text",
                           f"{_text(entry['control'])}, {entry['control']['verdict']}")
    chapter.deviations(DEVIATIONS)
    chapter.summary(GPU_NOTE)


GPU_NOTE = ("the chapter runs on CIFAR-10 with VGG-16 (the models of chapters 05 and 06's gpu "
            "profile, aligned by the same weight matching), with up to 100 pairs per set, "
            "five pair seeds and five robust seeds; weight matching also handles "
            "PreResNet20's residual streams, but the profile does not run it.")
"""What the gpu profile changes, for the chapter's summary."""


def claim_notes(params: Mapping[str, Any], real: pd.DataFrame, adversarial: pd.DataFrame,
                backdoor: pd.DataFrame | None = None, repair: pd.DataFrame | None = None
                ) -> dict[str, str]:
    """One-line reasons computed from the data: where the learned curve and the bypass tie
    (both never rise above the worse end, so their largest losses are that end's loss),
    where too few pairs had a straight-path barrier for the connection claims' binomial
    intervals to clear the threshold, and, for the repair between aligned ends, where its
    curve starts (the aligned midpoint's accuracy and attack success) beside the same
    repair between unaligned ends."""
    largest = max(params["curve_budgets"])
    out = {}
    by = {k: real[(real.kind == k) & real.budget.isin([0, largest])].set_index("pair")
          for k in ("bezier", "bypass")}
    tie = int(np.isclose(by["bezier"].max_loss, by["bypass"].max_loss.loc[by["bezier"].index],
                         rtol=0, atol=1e-6).sum())
    if tie:
        out["learned_vs_bypass_real"] = (
            f"on {tie} of {len(by['bezier'])} pairs both paths stay at or below their worse "
            "end, so their largest losses are the same end loss")
    for cid, table in (("learned_connects_real", real),
                       ("learned_connects_adversarial", adversarial)):
        n = int(table.pair.nunique())
        lo = stats.binomial_interval(n, n)["ci"][0]
        if lo < THRESHOLDS["connected_share"]:
            out[cid] = (f"only {n} pairs had a straight-path barrier: even {n} of {n} "
                        f"connected gives a lower bound of {lo:.2f}")
    if backdoor is not None and repair is not None:
        mid = backdoor[backdoor.variant == "aligned"]
        n_small = min(params["repair_sizes"])
        un = repair[(repair.method == "bezier") & (repair.n == n_small)
                    & (repair.variant == "unaligned")]
        out["aligned_repair_small_n"] = (
            f"the aligned midpoint, where the curve starts, already has accuracy "
            f"{mid.accuracy.mean():.2f} and attack success {mid.asr.mean():.2f}; between "
            f"unaligned ends the same repair ends at attack success {un.asr.mean():.2f}")
    return out
