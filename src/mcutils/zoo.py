"""The trained classifiers the chapters share, cached by :mod:`mcutils.core.store`.

:func:`trained_model` trains (or loads) a registry model on a registry dataset with
:func:`mcutils.training.train`, adversarially when asked (:mod:`mcutils.attacks`), so
chapters that use the same settings share one checkpoint. Used by every chapter (00-07); :func:`imagenet_model` by the ImageNet sections of
chapters 01 and 04.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mcutils import attacks
from mcutils.core.runtime import seed_everything
from mcutils.core.store import code_version, load_or_train, partial_path
from mcutils.data import TensorLoader, load_dataset
from mcutils.models import build_for_dataset
from mcutils.training import evaluate, train

__all__ = ["IMAGENET_MODELS", "imagenet_model", "trained_model"]

#: The paper's ImageNet classifiers (torchvision names): GoogLeNet for its Figure 6,
#: ResNet-18 and ViT-B/16 for its other sections.
IMAGENET_MODELS = ("googlenet", "resnet18", "vit_b_16")


def trained_model(dataset: str = "fashion-mnist", model: str = "small_cnn", epochs: int = 2,
                  lr: float = 1e-3, batch_size: int = 128, optimizer: str = "adam",
                  schedule: str | None = None, weight_decay: float = 0.0, seed: int = 0,
                  train_subset: int | None = None, device: str = "cpu",
                  adversarial: Mapping[str, Any] | None = None,
                  model_kwargs: Mapping[str, Any] | None = None, augment: bool = False,
                  data_root: str | None = None, progress: bool = True,
                  return_info: bool = False):
    """A classifier trained on a registered dataset, cached by :mod:`mcutils.core.store`.

    Every chapter asks for its models through this function, so chapters that use
    the same settings share one checkpoint.

    Args:
        dataset, model: registry names.
        epochs, lr, batch_size, optimizer, schedule, weight_decay: training settings.
        seed: seeds initialisation and shuffling.
        train_subset: train on a random subset of this size.
        device: where to train (the returned model is on the CPU).
        adversarial: adversarial training settings passed to
            ``mcutils.attacks.adversarial_transform`` (e.g. ``{"method": "pgd",
            "eps": 0.1, "steps": 5, "step_size": 0.03}``); ``None`` for standard training.
        model_kwargs: architecture options for :func:`mcutils.models.build_model`.
        augment: random flips and crops.
        data_root: where non-system datasets live.
        progress: show progress bars.
        return_info: also return the cache info (``train_seconds``, ``metrics``,
            ``cached``); ``metrics`` holds the test ``accuracy`` and ``loss``.

    Returns:
        The model in eval mode on the CPU (and the info dict if asked).
    """
    config = dict(name=f"{dataset}_{model}", dataset=dataset, model=model, epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                  weight_decay=weight_decay, seed=seed, train_subset=train_subset,
                  adversarial=dict(adversarial) if adversarial else None,
                  model_kwargs=dict(model_kwargs or {}), augment=augment)

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **(model_kwargs or {}))

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        data = load_dataset(dataset, "train", root=data_root, subset=train_subset, seed=seed)
        loader = TensorLoader(data, batch_size, shuffle=True, seed=seed)
        transform = None
        if adversarial:
            transform = attacks.adversarial_transform(**adversarial)
        train(net, loader, epochs=epochs, lr=lr, optimizer=optimizer, schedule=schedule,
              weight_decay=weight_decay, device=device, transform=transform, augment=augment,
              seed=seed, progress=progress, desc=f"train {model}", checkpoint=partial)

    def test_metrics(net: nn.Module) -> dict[str, float]:
        test = load_dataset(dataset, "test", root=data_root)
        return evaluate(net, TensorLoader(test, 1000), device="cpu")

    producers: list = [train]
    if adversarial:
        producers += [attacks.adversarial_transform, attacks.pgd, attacks.fgsm]
    code = code_version(*producers)
    partial = partial_path(config, code=code)  # resumed after an interruption; removed at the end
    return load_or_train(config, build, fit, evaluate=test_metrics, return_info=return_info,
                         code=code)


def imagenet_model(arch: str, pretrained: bool = True, download: bool = False) -> nn.Module:
    """A torchvision ImageNet classifier of :data:`IMAGENET_MODELS`, wrapped with its
    input normalisation (pixel inputs in ``[0, 1]``), in eval mode on the CPU.

    With ``pretrained`` the weights are read from ``$TORCH_HOME/hub/checkpoints``
    (:func:`mcutils.data.pretrained_weights_file` checks they are there *before* any
    model is built, and names the file and its address when they are not); they are
    downloaded only with ``download=True`` on a machine that is online. With
    ``pretrained=False`` the architecture is randomly initialised (the tests).
    """
    from mcutils.core.checks import ParameterError
    from mcutils.data import pretrained_weights_file
    from mcutils.models import build_model

    if arch not in IMAGENET_MODELS:
        raise ParameterError(f"arch={arch!r} is not one of the paper's ImageNet models "
                             f"{IMAGENET_MODELS}")
    if pretrained:
        pretrained_weights_file(arch, download=download)
    net = build_model(f"torchvision:{arch}", num_classes=1000, in_channels=3, input_size=224,
                      pretrained=pretrained)
    return net.eval()
