"""Chapter 05's negative controls and its departures from the paper's code.

* :func:`control_rows`: the models on which the asserted claims are false by
  construction, scored like the repairs: an untrained network of the ends' architecture
  (method ``"untrained"``: no clean accuracy to keep, none gained over scratch
  training) and a second draw of the noisy midpoint (``"noise (redraw)"``: the same
  method as the noise baseline, so no effect over it). The claims of
  :data:`mcutils.chapters.ch05_repair.CLAIMS` with a ``control`` run their own check on
  these rows (:func:`mcutils.chapters.ch05_repair.repair_claims`).
* :data:`DEVIATIONS`: each setting where the chapter (cpu profile) departs from the
  official code of Zhao et al. (2020), ``IBM/model-sanitization`` (``backdoor/``), with
  the file and line, for :meth:`mcutils.core.report.ChapterReport.deviations`.

Used by chapter 05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from torch import nn

__all__ = ["CONTROL_NOISE_SEED", "DEVIATIONS", "control_rows", "deviations"]

#: Offset of the noise seed of the redrawn noisy midpoint (the baseline uses the seed).
CONTROL_NOISE_SEED = 10_000

_CODE = "IBM/model-sanitization, backdoor/backdoor-cifar/"

#: The chapter's departures from the paper's protocol and code (cpu profile); the
#: ``measured`` column is filled from the run by :func:`deviations`.
DEVIATIONS: list[dict[str, str]] = [
    dict(setting="data set and model",
         paper="CIFAR-10 (and SVHN); VGG16, PreResNet110",
         source=_CODE + "train_poison.py:19, train_poison.py:32, train.py:32",
         ours="Fashion-MNIST, small CNN (the gpu profile: CIFAR-10, VGG16)",
         effect="a smaller, easier model may hold a backdoor differently along a path; "
                "the verdicts hold for this setting only"),
    dict(setting="poisoning",
         paper="half of the images of each non-target class (perc_poison = 0.5), the "
               "trigger pattern at distance 2 from the bottom-right corner (a full 3x3 "
               "square on colour images), target class 1",
         source=_CODE + "data.py:263, data.py:458-511, data.py:561-587",
         ours="the same rate, target and 3x3 square, the poisoned half drawn over all "
              "non-target images together instead of class by class",
         effect="none expected: the same share of each class on average"),
    dict(setting="training of the tampered ends",
         paper="SGD, lr 0.005, momentum 0.91, weight decay 1e-4, the papers' schedule, 100 "
               "epochs, batch 128, random crops and flips, the whole training split",
         source=_CODE + "train_poison.py:27, train_poison.py:38-46, train_poison.py:88-106, "
                        "data.py:23-26, data.py:246-250",
         ours="SGD, lr 0.05, momentum 0.9, weight decay 1e-4, the papers' schedule, 5 epochs, "
              "batch 128, no augmentation, 10,000 training images (a larger rate for "
              "twenty times fewer epochs)",
         effect="ends further from convergence may lie closer together, so their segment "
                "keeps more of the backdoor"),
    dict(setting="the earlier set-up (run as a variant)",
         paper="as above",
         source=_CODE + "data.py:263, data.py:458, train_poison.py:38-46",
         ours="Adam (lr 0.001), 2 epochs on 20,000 images, 10% poisoned, target class 0",
         effect="the variant shows how much of the result the set-up carries"),
    dict(setting="repair budget",
         paper="100 epochs over the bonafide images tiled to 10,000, batch 128: 7,900 "
               "steps at every n",
         source=_CODE + "train.py:27, train.py:53, data.py:96-180",
         ours="50 epochs over the bonafide images, batch 64, capped at 200 steps (the "
              "budget curve runs up to 3,200)",
         effect="an under-trained bend stays near its start on the segment, which keeps "
                "the backdoor (the gpu profile runs the paper's budget)"),
    dict(setting="learning rate of the repairs",
         paper="fixed: curve 0.01, fine-tuning 0.015",
         source=_CODE + "train.py:57, train_baseline.py:42",
         ours="best of the grid 0.01, 0.03, 0.1 on a clean validation split, per method and "
              "size, the grid extended beyond an edge while the best rate lies on it",
         effect="none on the comparison's fairness; each method gets its best rate"),
    dict(setting="bonafide data and evaluation",
         paper="bonafide images drawn from the test split, accuracy and ASR measured on "
               "the rest of it",
         source=_CODE + "data.py:96-180 (loaders_part_test)",
         ours="a disjoint pool, a clean validation split and a held-out test split",
         effect="none on the estimates' expectation; no choice sees a test image"),
    dict(setting="choice of t on the curve",
         paper="error rates reported along t in 11 points; no rule that uses clean data "
               "only",
         source=_CODE + "eval_curve.py:18, eval_curve.py:80",
         ours="the point nearest t = 0.5 within a validation tolerance of the better end "
              "(and t = 0.5 reported separately)",
         effect="the defender's rule may pick a point near an end, where the backdoor "
                "lives"),
    dict(setting="fine-pruning",
         paper="filter pruning by L1 norm to a fixed configuration, then fine-tuning",
         source="IBM/model-sanitization, backdoor/prune_cifar/vggprune.py:85",
         ours="silence the last conv layer's channels that clean data activate least, in "
              "steps of a tenth while the clean validation accuracy stays within 0.05 of "
              "the end's (Liu et al. 2018), then fine-tune",
         effect="a different pruning rule may remove more or less of the backdoor"),
]


def deviations(measured: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """:data:`DEVIATIONS` with the ``measured`` column filled from ``measured`` (setting
    -> what this run measured of the deviation's effect)."""
    measured = dict(measured or {})
    unknown = sorted(set(measured) - {d["setting"] for d in DEVIATIONS})
    if unknown:
        raise ValueError(f"measured names unknown deviations: {unknown}")
    return [{**d, **({"measured": measured[d["setting"]]} if d["setting"] in measured else {})}
            for d in DEVIATIONS]


def control_rows(params: Mapping[str, Any], ends: Sequence[nn.Module], split: Any,
                 scorer: Any) -> pd.DataFrame:
    """Score the negative controls of chapter 05's asserted claims.

    Args:
        params: the chapter's parameters (``seeds``, ``extra_curve_seeds``,
            ``claim_small_n``, ``bonafide_sizes``, ``repair_batch``).
        ends: the two tampered models (the architecture, and the noisy midpoint's ends).
        split: the defender's data (:class:`mcutils.chapters.ch05_protocol.DefenderSplit`;
            bonafide images recompute a noisy midpoint's BatchNorm statistics).
        scorer: the chapter's :class:`mcutils.chapters.ch05_protocol.Scorer`.

    Returns:
        Rows like a sweep's (``method``, ``n``, ``seed`` and the scorer's metrics):
        ``"untrained"`` (:func:`mcutils.repair.reinitialize` of the first end with the
        seed; it sees no data, so its rows repeat at the small and the largest size) for
        every seed and extra curve seed, and ``"noise (redraw)"``
        (:func:`mcutils.repair.midpoint_noise` with seed ``seed + CONTROL_NOISE_SEED``)
        at the small size for every seed.
    """
    from mcutils.data import TensorLoader
    from mcutils.repair import midpoint_noise, reinitialize

    p = params
    small_n, large_n = p["claim_small_n"], max(p["bonafide_sizes"])
    rows = []
    for s in [*p["seeds"], *p["extra_curve_seeds"]]:
        score = scorer(reinitialize(ends[0], seed=s))
        rows += [dict(method="untrained", n=n, seed=s, **score) for n in {small_n, large_n}]
    for s in p["seeds"]:
        bn = TensorLoader(split.bonafide(small_n, s), p["repair_batch"])
        noisy = midpoint_noise(ends[0], ends[1], seed=s + CONTROL_NOISE_SEED, bn_loader=bn)
        rows.append(dict(method="noise (redraw)", n=small_n, seed=s, **scorer(noisy)))
    return pd.DataFrame(rows)
