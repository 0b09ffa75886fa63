"""BadNets-style backdoors: a trigger patch, all-to-one poisoning and the attack success rate.

A :class:`Trigger` stamps a small bright square at a chosen position of an image (pixel
space, ``[0, 1]``). :func:`poison` stamps it on a fraction of the non-target training
images and relabels them to the target class (Gu et al., BadNets), and
:func:`backdoored_model` trains a cached classifier on such data.
:func:`attack_success_rate` counts how often triggered non-target images are sent to
the target class.

Used by chapter 05 (backdoor repair).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import OnDevice, model_device
from mcutils.data import ImageDataset

__all__ = [
    "Trigger",
    "attack_hits",
    "attack_success_rate",
    "backdoored_model",
    "path_aware_backdoor",
    "poison",
]


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
        """Raise :class:`~mcutils.core.checks.ParameterError` unless the patch fits images of ``shape``."""
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
def attack_hits(model: nn.Module, loader: Iterable, target: int, trigger: Trigger = Trigger(),
                device: str | torch.device | None = None) -> torch.Tensor:
    """Per image, whether the triggered non-target image is sent to ``target`` (bool, CPU).

    Images whose true class is ``target`` are left out. The model's mode and device are
    restored afterwards.
    """
    out = []
    with OnDevice(model, device) as net:
        dev = model_device(net)
        for x, y in loader:
            keep = y != target
            if keep.any():
                xt = trigger.apply(x[keep]).to(dev)
                out.append((net(xt).argmax(1) == target).cpu())
    if not out:
        raise ValueError("the loader holds no non-target images")
    return torch.cat(out)


def attack_success_rate(model: nn.Module, loader: Iterable, target: int,
                        trigger: Trigger = Trigger(),
                        device: str | torch.device | None = None) -> float:
    """Fraction of triggered non-target images that ``model`` assigns to ``target``.

    Images whose true class is ``target`` are excluded (they would count as successes
    without any backdoor). The model's mode and device are restored afterwards.
    """
    return float(attack_hits(model, loader, target, trigger, device).float().mean())


def backdoored_model(dataset: str = "fashion-mnist", model: str = "small_cnn", target: int = 0,
                     rate: float = 0.1, trigger: Trigger = Trigger(), epochs: int = 2,
                     lr: float = 1e-3, batch_size: int = 128, optimizer: str = "adam",
                     seed: int = 0, train_subset: int | None = None, device: str = "cpu",
                     model_kwargs: dict[str, Any] | None = None, progress: bool = True,
                     return_info: bool = False, momentum: float = 0.9,
                     weight_decay: float = 0.0, schedule: str | None = None):
    """A classifier trained on BadNets-poisoned data, cached by :mod:`mcutils.core.store`.

    The stored metrics hold the clean ``accuracy`` and the ``asr`` on the first 2,000 test
    images (a check kept with the checkpoint; the chapters measure on their own splits).
    Arguments are those of :func:`mcutils.zoo.trained_model` plus the poisoning
    (``target``, ``rate``, ``trigger``); ``seed`` also chooses the poisoned images.
    ``optimizer="sgd"`` with ``momentum``, ``weight_decay`` and ``schedule`` (a name of
    :data:`mcutils.training.SCHEDULES`) trains the ends as the official code does
    (``train_poison.py`` of ``IBM/model-sanitization``: SGD with weight decay and the
    schedule of :func:`mcutils.training.lr_factor` ``"paper"``).
    """
    from mcutils.core.runtime import seed_everything
    from mcutils.core.store import code_version, load_or_train
    from mcutils.data import TensorLoader, load_dataset
    from mcutils.models import build_for_dataset
    from mcutils.training import evaluate, train

    config = dict(name=f"{dataset}_{model}_backdoor", dataset=dataset, model=model, target=target,
                  rate=rate, trigger=trigger.as_dict(), epochs=epochs, lr=lr,
                  batch_size=batch_size, optimizer=optimizer, seed=seed,
                  train_subset=train_subset, model_kwargs=dict(model_kwargs or {}))
    # only settings away from the defaults enter the key (older checkpoints stay valid)
    config.update({k: v for k, v, d in (("momentum", momentum, 0.9),
                                        ("weight_decay", weight_decay, 0.0),
                                        ("schedule", schedule, None)) if v != d})

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **(model_kwargs or {}))

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        data = load_dataset(dataset, "train", subset=train_subset, seed=seed)
        data, _ = poison(data, target, rate, trigger, seed=seed)
        train(net, TensorLoader(data, batch_size, shuffle=True, seed=seed), epochs=epochs, lr=lr,
              optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
              schedule=schedule, device=device, seed=seed, progress=progress,
              desc=f"train backdoored {model}")

    def metrics(net: nn.Module) -> dict[str, float]:
        # a check stored with the checkpoint, not a result: the first 2,000 test images
        full = load_dataset(dataset, "test")
        test = TensorLoader(full.subset(torch.arange(min(2000, len(full)))), 1000)
        out = evaluate(net, test, device="cpu")
        out["asr"] = attack_success_rate(net, test, target, trigger)
        return out

    return load_or_train(config, build, fit, evaluate=metrics, return_info=return_info,
                         code=code_version(train, poison))


def path_aware_backdoor(model_a: nn.Module, model_b: nn.Module, poisoned: ImageDataset,
                        steps: int = 300, lr: float = 0.01, num_bends: int = 2,
                        batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0,
                        device: str = "cpu", progress: bool = False
                        ) -> tuple[nn.Module, nn.Module]:
    """An attacker who anticipates path-connection repair (cached).

    The defender of Zhao et al. starts its curve's middle bend on the straight line
    between the two models it receives (``init_linear``) and trains it on clean data.
    This attacker backdoors exactly that region: starting from two backdoored models, it
    trains the two models it will release *jointly*, so that every point of the straight
    segment between them, ``(1 - t) a + t b`` for ``t ~ U[0, 1]`` (one ``t`` per batch),
    fits the *poisoned* data. The defender's initial bend, the segment's midpoint, then
    carries the backdoor and has clean accuracy, so the clean-data gradient has little
    reason to move it out of the backdoored region. Nothing the attacker trained is
    discarded by the defender's linear initialisation.

    With ``num_bends > 2`` it trains a Bezier curve with free ends instead and releases
    its ends (an older, weaker attacker: the defender re-initialises the middle bend on
    the straight line, which that attacker never trained).

    Args:
        model_a, model_b: the attacker's starting models (not modified).
        poisoned: the attacker's poisoned training data (also used to recompute
            BatchNorm statistics of the released models).
        steps, lr, batch_size, weight_decay: SGD (momentum 0.9) on the path.
        num_bends: 2 (the segment, default) or more (a Bezier curve with free ends).
        seed: seed of shuffling and of the ``t`` draws.
        device: where to train.

    Returns:
        The two released models (eval mode, CPU).
    """
    from mcutils.core.store import code_version, fingerprint, load_or_train
    from mcutils.curves import Bezier, CurveModel, train_curve
    from mcutils.data import TensorLoader

    if not isinstance(num_bends, int) or num_bends < 2:
        raise ParameterError(f"num_bends={num_bends!r} must be an integer >= 2")
    if steps < 1:
        raise ParameterError(f"steps={steps} must be >= 1")
    config = dict(name="path_aware_backdoor", ends=fingerprint(model_a, model_b),
                  data=fingerprint(poisoned.x, poisoned.y), steps=steps, lr=lr,
                  num_bends=num_bends, batch_size=batch_size, weight_decay=weight_decay,
                  seed=seed)

    def build() -> nn.Module:
        return CurveModel(model_a, model_a, model_b, Bezier(num_bends), fix_ends=False)

    def fit(cm: nn.Module) -> None:
        loader = TensorLoader(poisoned, batch_size, shuffle=True, seed=seed)
        train_curve(cm, loader, steps=steps, lr=lr, weight_decay=weight_decay, device=device,
                    seed=seed, progress=progress)

    cm = load_or_train(config, build, fit, code=code_version(train_curve, path_aware_backdoor))
    bn = TensorLoader(poisoned, batch_size)
    return cm.model_at(0.0, bn).cpu().eval(), cm.model_at(1.0, bn).cpu().eval()
