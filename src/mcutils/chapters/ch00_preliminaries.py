"""Chapter 00: the data, the default model and its accuracy claim.

* :data:`PARAMETERS` is the chapter's parameter schema;
* :func:`findings` records what the chapter glues and its one claim.

Used by chapter 00.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mcutils.chapters.common import model_params
from mcutils.core.report import ChapterReport
from mcutils.core.stats import bootstrap_ci
from mcutils.params import ParameterSchema

__all__ = ["PARAMETERS", "EXPECTED", "ACCURACY_TARGET", "findings"]

PARAMETERS = ParameterSchema("00", model_params(seed_help="seed of the training run"))
EXPECTED = ["accuracy"]
ACCURACY_TARGET = 0.88


def findings(chapter: ChapterReport, params: Mapping[str, Any], pred: torch.Tensor,
             labels: torch.Tensor, train_seconds: float) -> dict:
    """Record chapter 00's glued numbers and its claim: the test accuracy of the default
    model with a bootstrap interval over test images (a design target of the cpu profile,
    not a paper claim). Returns the accuracy interval."""
    if pred.shape != labels.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)}, labels {tuple(labels.shape)}")
    correct = (pred == labels).float()
    accuracy = bootstrap_ci(correct.numpy(), seed=params["seed"])
    chapter.record("ch00_test_accuracy", accuracy["estimate"])
    chapter.record("ch00_test_accuracy_ci", accuracy["ci"])
    chapter.record("ch00_train_seconds", train_seconds, digits=1)
    chapter.record("ch00_num_epochs", params["num_epochs"])
    chapter.claim("accuracy", f"the default model's test accuracy is at least {ACCURACY_TARGET} "
                  "(bootstrap over test images)",
                  "design target of the cpu profile, not a paper claim",
                  accuracy, threshold=ACCURACY_TARGET, direction=">=")
    return accuracy
