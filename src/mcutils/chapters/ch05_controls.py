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

__all__ = ["CONTROL_NOISE_SEED", "DEVIATIONS", "control_rows"]

#: Offset of the noise seed of the redrawn noisy midpoint (the baseline uses the seed).
CONTROL_NOISE_SEED = 10_000

_CODE = "IBM/model-sanitization, backdoor/backdoor-cifar/"

#: The chapter's departures from the paper's protocol and code (cpu profile).
DEVIATIONS: list[dict[str, str]] = [
    dict(setting="data set and model",
         paper="CIFAR-10 (and SVHN); VGG16, PreResNet110",
         source=_CODE + "train.py:19, train.py:32, train_poison.py:32",
         ours="Fashion-MNIST, small CNN (the gpu profile: CIFAR-10, VGG16)",
         effect="a smaller, easier model may hold a backdoor differently along a path; "
                "the verdicts hold for this setting only"),
    dict(setting="poison rate",
         paper="half of each non-target class poisoned (perc_poison = 0.5)",
         source=_CODE + "data.py:263",
         ours="10% of the non-target training images",
         effect="a weaker backdoor might be easier to remove, but here the ends' ASR is "
                "already near 1"),
    dict(setting="target class",
         paper="class 1 (targets=1; class 1 is not a source)",
         source=_CODE + "data.py:458, data.py:489",
         ours="class 0",
         effect="none expected beyond which images carry the trigger"),
    dict(setting="training of the tampered ends",
         paper="SGD (lr 0.005, momentum 0.91, weight decay 1e-4), 100 epochs, batch 128, "
               "the whole poisoned training split",
         source=_CODE + "train_poison.py:38-46, data.py:246",
         ours="Adam (lr 0.001), 2 epochs, batch 128, 20,000 training images",
         effect="ends far from convergence lie closer together; their segment midpoint "
                "keeps the backdoor, and the curve's middle is half that midpoint"),
    dict(setting="repair budget",
         paper="100 epochs over the bonafide images tiled to 10,000, batch 128: 7,900 "
               "steps at every n",
         source=_CODE + "train.py:27, train.py:53, data.py:131-162",
         ours="50 epochs over the bonafide images, batch 64, capped at 200 steps",
         effect="an under-trained bend stays near its start on the segment, which keeps "
                "the backdoor (the gpu profile runs the paper's budget)"),
    dict(setting="learning rate of the repairs",
         paper="fixed: curve 0.01, fine-tuning 0.015",
         source=_CODE + "train.py:57, train_baseline.py:42",
         ours="best of the grid 0.01, 0.03, 0.1 on a clean validation split, per method",
         effect="a rate at the grid's edge may under-train a method"),
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
         ours="silence 50% of the last conv layer's channels that clean data activate "
              "least (Liu et al. 2018), then fine-tune",
         effect="a different pruning rule may remove more or less of the backdoor"),
]


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
