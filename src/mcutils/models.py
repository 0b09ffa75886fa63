"""Model registry.

``build_model(name, ...)`` builds every architecture the book uses. Each model starts
with a :class:`Normalize` layer, so it takes images in pixel space ``[0, 1]``.

Registered names:

* ``small_cnn`` (default): two conv blocks and two linear layers, no BatchNorm;
  about 90% on Fashion-MNIST after two epochs on a CPU.
* ``mlp``: a two-hidden-layer perceptron (tiny, for tests and untrained-network studies).
* ``vgg16``: VGG-16 without BatchNorm for 32x32 inputs, as in the weight-space paper.
* ``preresnet20``: pre-activation ResNet-20 with BatchNorm (CIFAR style).
* ``resnet18_cifar``: ResNet-18 with a 3x3 stem for 32x32 inputs, with BatchNorm.
* ``torchvision:<name>``: any torchvision classification architecture (for example
  ``torchvision:googlenet``); ImageNet weights only with ``pretrained=True``.

Used by every chapter: chapters 00-06 validate their ``model`` parameter against
:data:`MODELS` and get trained models through :func:`mcutils.zoo.trained_model`;
chapters 02 and 03 build untrained networks with :func:`build_for_dataset`, and chapter
01 builds torchvision classifiers with :func:`build_model` under the gpu profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mcutils.core.checks import ParameterError

__all__ = ["MODELS", "Normalize", "build_model", "build_for_dataset", "check_model_name",
           "count_parameters"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer of every model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """conv(w)-pool-conv(2w)-pool-fc(hidden)-fc(classes), ReLU, no BatchNorm."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 width: int = 32, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = input_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Flatten and two hidden ReLU layers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * input_size * input_size, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"]


class VGG16(nn.Module):
    """VGG-16 for 32x32 inputs without BatchNorm (the weight-space paper's CIFAR model)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        side = max(input_size // 32, 1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(512 * side * side, 512), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreResNet(nn.Module):
    """Pre-activation ResNet (6n+2 layers) for 32x32 inputs, with BatchNorm."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ParameterError(f"PreResNet depth={depth} must be 6n+2")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        c = width
        for stage, w in enumerate([width, 2 * width, 4 * width]):
            for i in range(n):
                blocks.append(_PreActBlock(c, w, 2 if (i == 0 and stage > 0) else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.conv(x))
        out = torch.relu(self.bn(out))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18CIFAR(nn.Module):
    """ResNet-18 with a 3x3 stem and no max-pool, for 32x32 inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        c = width
        for stage, w in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for i in range(2):
                layers.append(_BasicBlock(c, w, 2 if (i == 0 and stage > 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


_Builder = Callable[..., nn.Module]

MODELS: dict[str, _Builder] = {
    "small_cnn": SmallCNN,
    "mlp": MLP,
    "vgg16": VGG16,
    "preresnet20": lambda **kw: PreResNet(depth=20, **kw),
    "resnet18_cifar": ResNet18CIFAR,
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def check_model_name(name: str) -> None:
    """Raise :class:`~mcutils.core.checks.ParameterError` unless ``name`` is registered or ``torchvision:<arch>``."""
    if not isinstance(name, str):
        raise ParameterError(f"model={name!r} must be a string")
    if name.startswith("torchvision:"):
        import torchvision.models as tvm

        arch = name.split(":", 1)[1]
        valid = tvm.list_models(module=tvm)
        if arch not in valid:
            raise ParameterError(
                f"model={name!r}: torchvision has no classification model {arch!r}; "
                f"valid values include: {', '.join(valid[:12])}, ... ({len(valid)} in all)"
            )
        return
    if name not in MODELS:
        raise ParameterError(
            f"model={name!r} is not known; valid values: {', '.join(MODELS)}, torchvision:<name>"
        )


def _torchvision(arch: str, num_classes: int, pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    if pretrained:
        try:
            net = tvm.get_model(arch, weights="DEFAULT")
        except Exception as exc:  # network errors come in many types
            raise RuntimeError(
                f"could not load ImageNet weights for torchvision:{arch} ({exc}). They are "
                "downloaded on first use and need internet access; place them in "
                "$TORCH_HOME/hub/checkpoints or use pretrained=False."
            ) from exc
        if num_classes != 1000:
            raise ParameterError("pretrained torchvision models keep their 1000 ImageNet classes")
        return net
    kwargs = {"num_classes": num_classes}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    return tvm.get_model(arch, weights=None, **kwargs)


def build_model(name: str = "small_cnn", num_classes: int = 10, in_channels: int = 1,
                input_size: int = 28, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, pretrained: bool = False,
                **kwargs) -> nn.Module:
    """Build a registered model, wrapped as ``nn.Sequential(Normalize, net)``.

    Args:
        name: a key of :data:`MODELS` or ``torchvision:<arch>``.
        num_classes: number of outputs.
        in_channels: input channels.
        input_size: input height (= width).
        mean, std: per-channel normalisation (defaults: 0.5 / 0.5, or ImageNet's for
            torchvision models).
        pretrained: torchvision models only: load ImageNet weights (needs them on
            disk or internet access; a clear error otherwise).
        **kwargs: architecture options (``width``, ``hidden``, ``dropout``...).

    Returns:
        The model, in train mode, on the CPU.
    """
    check_model_name(name)
    if name.startswith("torchvision:"):
        net = _torchvision(name.split(":", 1)[1], num_classes, pretrained)
        mean = mean or _IMAGENET_MEAN
        std = std or _IMAGENET_STD
    else:
        if pretrained:
            raise ParameterError(f"pretrained weights exist only for torchvision models, not {name!r}")
        net = MODELS[name](num_classes=num_classes, in_channels=in_channels,
                           input_size=input_size, **kwargs)
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.5,) * in_channels
    if len(mean) not in (1, in_channels) or len(std) not in (1, in_channels):
        raise ParameterError("mean/std need one value per input channel")
    return nn.Sequential(Normalize(mean, std), net)


def build_for_dataset(name: str, dataset: str = "fashion-mnist", **kwargs) -> nn.Module:
    """:func:`build_model` with the shape, classes and statistics of a registered dataset."""
    from mcutils.data import dataset_info

    info = dataset_info(dataset)
    params = dict(num_classes=info.num_classes, in_channels=info.in_channels,
                  input_size=info.input_size, mean=info.mean, std=info.std)
    params.update(kwargs)
    return build_model(name, **params)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
