"""Chapter 00: the data, the default model and its accuracy claim.

* :data:`PARAMETERS` is the chapter's parameter schema;
* :func:`accuracy_control` is the negative control of the accuracy claim: the same
  check on an untrained network of the same architecture;
* :func:`setup_view` is the table of the data and the model the reader sees;
* :func:`findings` records what the chapter glues, its one claim and the deviations of
  the book's default set-up from the papers' (:data:`DEVIATIONS`).

Used by chapter 00.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mcutils.chapters.common import model_params
from mcutils.core.report import ChapterReport
from mcutils.core.stats import Interval, fraction_interval
from mcutils.models import build_for_dataset
from mcutils.params import ParameterSchema
from mcutils.training import predict

__all__ = ["PARAMETERS", "EXPECTED", "ACCURACY_TARGET", "DEVIATIONS", "accuracy_control",
           "setup_view", "findings", "GPU_NOTE"]

PARAMETERS = ParameterSchema("00", model_params(seed_help="seed of the training run"))
EXPECTED = ["accuracy"]
ACCURACY_TARGET = 0.88

#: where the book's default data and model depart from the papers' (every chapter uses
#: them; each chapter's own table lists its protocol's departures)
DEVIATIONS = [
    {"setting": "dataset",
     "paper": "ImageNet validation images (input-space paper); CIFAR-10 and SVHN "
              "(weight-space paper)",
     "source": "JVrabel/input_space_mode_connectivity data_sel/*.csv (ImageNet file names); "
               "IBM/model-sanitization backdoor/backdoor-cifar, backdoor/backdoor-svhn",
     "ours": "Fashion-MNIST, 28x28 grey, in the cpu profile; CIFAR-10 in the gpu profile",
     "effect": "ten simple classes at low resolution: class regions, barriers and backdoors "
               "may behave otherwise than on ImageNet or colour images"},
    {"setting": "model",
     "paper": "ImageNet-pretrained GoogLeNet, ResNet-18, ViT-B/16 (input-space paper); "
              "VGG and PreResNet trained with SGD for many epochs (weight-space paper)",
     "source": "input-space paper, experiments on ImageNet; IBM/model-sanitization "
               "backdoor/backdoor-svhn/models/vgg.py, models/preresnet.py",
     "ours": "the small CNN of mcutils.models, trained 2 epochs with Adam",
     "effect": "a shallow, briefly trained network: smoother decision regions, so "
               "connectivity may come easier and robustness differ"},
]


#: what the gpu profile changes in this chapter (its summary's last line)
GPU_NOTE = ("the same Fashion-MNIST pipeline trains 10 epochs at batch 256 on the GPU; "
            "chapters that the papers ran on CIFAR-10 switch dataset and model themselves.")


def setup_view(train_set: Any, test_set: Any, net: torch.nn.Module,
               info: Mapping[str, Any]) -> Any:
    """The data and the default model as the HTML table the chapter shows: images per
    split, classes, image shape, the model's parameters and whether it came from the
    checkpoint cache."""
    from mcutils.core.report import table_view
    import pandas as pd

    if len(train_set.x) == 0 or len(test_set.x) == 0:
        raise ValueError("both splits must hold images")
    rows = [("training images", len(train_set.x)), ("test images", len(test_set.x)),
            ("classes", len(test_set.classes)),
            ("image shape (channels, height, width)", " x ".join(map(str, test_set.x.shape[1:]))),
            ("model parameters", f"{sum(p.numel() for p in net.parameters()):,}"),
            ("model loaded from the checkpoint cache", "yes" if info.get("cached") else "no")]
    return table_view(pd.DataFrame(rows, columns=["", "value"]))


def accuracy_control(model: str, dataset: str, x: torch.Tensor, y: torch.Tensor,
                     seed: int = 0) -> Interval:
    """The accuracy check on data where it must fail: an untrained network of the same
    architecture (initialised from ``seed`` without touching the global random state),
    scored on the same test images; an exact binomial interval."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_for_dataset(model, dataset).eval()
    correct = (predict(net, x).argmax(1) == y).float()
    return fraction_interval(correct.numpy())


def findings(chapter: ChapterReport, params: Mapping[str, Any], pred: torch.Tensor,
             labels: torch.Tensor, train_seconds: float, control: Interval) -> Interval:
    """Record chapter 00's glued numbers, its claim and the deviations table.

    The claim is the test accuracy of the default model, a fraction of independent test
    images with an exact binomial interval (a design target of the cpu profile, not a
    paper claim); its negative control is ``control`` (:func:`accuracy_control`).
    Returns the accuracy interval."""
    if pred.shape != labels.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)}, labels {tuple(labels.shape)}")
    accuracy = fraction_interval((pred == labels).float().numpy())
    chapter.record("ch00_test_accuracy", accuracy["estimate"])
    chapter.record("ch00_test_accuracy_ci", accuracy["ci"])
    chapter.record("ch00_control_accuracy", control["estimate"])
    chapter.record("ch00_train_seconds", train_seconds, digits=1)
    chapter.record("ch00_num_epochs", params["num_epochs"])
    chapter.claim("accuracy", f"the default model's test accuracy is at least {ACCURACY_TARGET}",
                  "design target of the cpu profile, not a paper claim",
                  accuracy, threshold=ACCURACY_TARGET, direction=">=",
                  method=f"exact binomial (Clopper-Pearson) over {accuracy['n']} test images",
                  control={"statement": "an untrained network of the same architecture",
                           "result": control})
    chapter.deviations(DEVIATIONS)
    chapter.summary(GPU_NOTE, notes={"accuracy": "two epochs of Adam do not reach the "
                                     f"target accuracy {ACCURACY_TARGET} on this run"}
                    if chapter.claims["accuracy"]["verdict"] != "reproduced" else None)
    return accuracy
