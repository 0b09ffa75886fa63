"""BadNets-style backdoors: a trigger patch, all-to-one poisoning and the attack success rate.

A :class:`Trigger` stamps a small bright square at a chosen position of an image (pixel
space, ``[0, 1]``). :func:`poison` stamps it on a fraction of the non-target training
images and relabels them to the target class (Gu et al., BadNets), and
:func:`backdoored_model` trains a cached classifier on such data.
:func:`attack_success_rate` counts how often triggered non-target images are sent to
the target class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mcutils.data import ImageDataset
from mcutils.runtime import ParameterError, get_device

__all__ = ["Trigger", "poison", "attack_success_rate", "backdoored_model", "path_aware_backdoor"]


@dataclass(frozen=True)
class Trigger:
    """A square patch of constant value.

    Args:
        size: side of the square in pixels.
        row, col: top-left corner (rows/cols ``row .. row + size - 1``).
        value: pixel value of the patch (1.0 = white).
    """

    size: int = 3
    row: int = 24
    col: int = 24
    value: float = 1.0

    def check(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`ParameterError` unless the patch fits images of ``shape``."""
        h, w = shape[-2], shape[-1]
        if self.size < 1 or self.row < 0 or self.col < 0 or self.row + self.size > h \
                or self.col + self.size > w:
            raise ParameterError(f"trigger {self} does not fit images of size {h}x{w}")
        if not 0.0 <= self.value <= 1.0:
            raise ParameterError(f"trigger value={self.value} must lie in [0, 1]")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of images ``x`` (``[N, C, H, W]`` or ``[C, H, W]``) with the patch stamped."""
        self.check(tuple(x.shape))
        out = x.clone()
        out[..., self.row:self.row + self.size, self.col:self.col + self.size] = self.value
        return out

    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A boolean mask of the patch for images of ``shape`` (``[..., H, W]``)."""
        self.check(shape)
        m = torch.zeros(shape[-2:], dtype=torch.bool)
        m[self.row:self.row + self.size, self.col:self.col + self.size] = True
        return m

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for cache keys)."""
        return asdict(self)


def poison(dataset: ImageDataset, target: int, rate: float, trigger: Trigger = Trigger(),
           seed: int = 0) -> tuple[ImageDataset, torch.Tensor]:
    """All-to-one poisoning: stamp the trigger on a fraction of non-target images.

    Args:
        dataset: the clean training set.
        target: the target class.
        rate: fraction of the non-target images that are poisoned (in place of the
            clean copies, so the size of the set does not change).
        trigger: the patch.
        seed: which images are poisoned.

    Returns:
        The poisoned dataset and the indices of the poisoned images.
    """
    num_classes = len(dataset.classes)
    if not 0 <= target < num_classes:
        raise ParameterError(f"target={target} must lie in [0, {num_classes - 1}]")
    if not 0.0 <= rate <= 1.0:
        raise ParameterError(f"rate={rate} must lie in [0, 1]")
    trigger.check(tuple(dataset.x.shape))
    candidates = (dataset.y != target).nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=gen)[:round(rate * len(candidates))]]
    chosen = chosen.sort().values
    x, y = dataset.x.clone(), dataset.y.clone()
    x[chosen] = trigger.apply(x[chosen])
    y[chosen] = target
    return ImageDataset(x, y, dataset.info, dataset.split), chosen


@torch.inference_mode()
def attack_success_rate(model: nn.Module, loader: Iterable, target: int,
                        trigger: Trigger = Trigger(),
                        device: str | torch.device | None = None) -> float:
    """Fraction of triggered non-target images that ``model`` assigns to ``target``.

    Images whose true class is ``target`` are excluded (they would count as successes
    without any backdoor).
    """
    device = get_device(device) if device is not None else next(model.parameters()).device
    model.eval()
    hits, count = 0, 0
    for x, y in loader:
        keep = y != target
        if not keep.any():
            continue
        xt = trigger.apply(x[keep]).to(device)
        hits += int((model(xt).argmax(1) == target).sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("the loader holds no non-target images")
    return hits / count


def backdoored_model(dataset: str = "fashion-mnist", model: str = "small_cnn", target: int = 0,
                     rate: float = 0.1, trigger: Trigger = Trigger(), epochs: int = 2,
                     lr: float = 1e-3, batch_size: int = 128, optimizer: str = "adam",
                     seed: int = 0, train_subset: int | None = None, device: str = "cpu",
                     model_kwargs: dict[str, Any] | None = None, progress: bool = True,
                     return_info: bool = False):
    """A classifier trained on BadNets-poisoned data, cached by :mod:`mcutils.store`.

    The stored metrics hold the clean test ``accuracy`` and the test ``asr``.
    Arguments are those of :func:`mcutils.training.trained_model` plus the poisoning
    (``target``, ``rate``, ``trigger``); ``seed`` also chooses the poisoned images.
    """
    from mcutils.data import TensorLoader, load_dataset
    from mcutils.models import build_for_dataset
    from mcutils.runtime import seed_everything
    from mcutils.store import code_version, load_or_train
    from mcutils.training import evaluate, train

    config = dict(name=f"{dataset}_{model}_backdoor", dataset=dataset, model=model, target=target,
                  rate=rate, trigger=trigger.as_dict(), epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, seed=seed,
                  train_subset=train_subset, model_kwargs=dict(model_kwargs or {}))

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **(model_kwargs or {}))

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        data = load_dataset(dataset, "train", subset=train_subset, seed=seed)
        data, _ = poison(data, target, rate, trigger, seed=seed)
        train(net, TensorLoader(data, batch_size, shuffle=True, seed=seed), epochs=epochs, lr=lr,
              optimizer=optimizer, device=device, seed=seed, progress=progress,
              desc=f"train backdoored {model}")

    def metrics(net: nn.Module) -> dict[str, float]:
        test = TensorLoader(load_dataset(dataset, "test"), 1000)
        out = evaluate(net, test, device="cpu")
        out["asr"] = attack_success_rate(net, test, target, trigger)
        return out

    return load_or_train(config, build, fit, evaluate=metrics, return_info=return_info,
                         code=code_version(train, poison))


def path_aware_backdoor(model_a: nn.Module, model_b: nn.Module, poisoned: ImageDataset,
                        steps: int = 300, lr: float = 0.01, num_bends: int = 3,
                        batch_size: int = 128, seed: int = 0, device: str = "cpu",
                        progress: bool = False) -> tuple[nn.Module, nn.Module]:
    """An adaptive attacker who expects path-connection repair (cached).

    The attacker trains a Bezier curve between two backdoored models on *poisoned*
    data with free endpoints, so that the ends and the whole path between them carry
    the backdoor, and releases the two ends. A defender who later connects them with
    a curve trained on clean data starts from a backdoored path instead of a
    backdoored pair of points.

    Returns:
        The two released models (eval mode, CPU).
    """
    from mcutils.curves import CurveModel, train_curve
    from mcutils.data import TensorLoader
    from mcutils.store import code_version, fingerprint, load_or_train

    config = dict(name="path_aware_backdoor", ends=fingerprint(model_a, model_b),
                  data=fingerprint(poisoned.x, poisoned.y), steps=steps, lr=lr,
                  num_bends=num_bends, batch_size=batch_size, seed=seed)

    def build() -> nn.Module:
        return CurveModel(model_a, model_a, model_b, "bezier", fix_ends=False, num_bends=num_bends)

    def fit(cm: nn.Module) -> None:
        loader = TensorLoader(poisoned, batch_size, shuffle=True, seed=seed)
        train_curve(cm, loader, steps=steps, lr=lr, device=device, seed=seed, progress=progress)

    cm = load_or_train(config, build, fit, code=code_version(train_curve))
    return cm.model_at(0.0).cpu().eval(), cm.model_at(1.0).cpu().eval()
