"""Weight matching: aligning the hidden units of two networks (Ainsworth et al. 2023).

Two networks trained from different initialisations compute similar functions with their
hidden units in a different order. Permuting the units of a hidden layer (the rows of its
weight and bias, the matching BatchNorm entries, and the columns of the next layer) leaves
the function unchanged, so before a straight path or a curve is drawn between two models
the second can be *aligned* to the first. Weight matching ("Git Re-Basin") chooses, layer
by layer, the permutation that maximises the inner product of the two models' weights,
``<W_a, P W_b P'^T>``, by a linear assignment
(:func:`scipy.optimize.linear_sum_assignment`), and sweeps over the layers in a seeded
random order until no permutation changes.

* :func:`permutation_spec` reads which parameter axes each permutation acts on. A chain
  network (``small_cnn``, ``mlp``, ``vgg16``: convolutions and linear layers in sequence,
  with optional BatchNorm after a layer, element-wise activations, pooling, dropout and
  one flatten between the convolutions and the linear layers) has one group per hidden
  layer. A registry residual network (``preresnet20``, ``resnet18_cifar``) has one group
  per block's inner layer and one per stage's *residual stream*: every layer that writes
  to the stream (the stem, each block's last convolution, a projection shortcut) and
  every layer that reads it share that stream's permutation, because the skip connection
  adds the stream to itself unpermuted; a projection shortcut starts the next stage's
  stream. Any other network with skip connections is refused with a clear error;
* :func:`weight_matching` finds the permutations that align ``model_b`` to ``model_a``;
* :func:`permute` applies permutations to a model (a copy; buffers such as BatchNorm
  running statistics follow their units), :func:`random_permutation` draws random ones
  (a control: an arbitrary re-ordering instead of the matched one);
* :func:`align` = :func:`weight_matching` then :func:`permute`.

Used by chapter 07 (:mod:`mcutils.chapters.ch07_learned_curves`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from mcutils.core.checks import ParameterError

__all__ = ["Axis", "PermutationSpec", "align", "permutation_spec", "permute",
           "random_permutation", "weight_matching"]

_WEIGHTED = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# modules that act on each unit (channel) separately or do not touch the units' order
_EQUIVARIANT = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.MaxPool2d,
                nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity, nn.Flatten)


@dataclass(frozen=True)
class Axis:
    """One axis of one state entry acted on by a permutation.

    ``expand`` > 1 when the axis holds ``expand`` consecutive entries per unit (a linear
    layer after a flattened convolution: its input index is ``channel * expand + pixel``).
    """

    name: str
    axis: int
    group: str
    expand: int = 1


@dataclass
class PermutationSpec:
    """Which axes each permutation group acts on: ``groups`` maps a group to its size,
    ``axes`` lists every permuted axis of the state dict, ``matched`` the entries that
    enter the matching (parameters; buffers are only permuted)."""

    groups: dict[str, int]
    axes: list[Axis] = field(default_factory=list)
    matched: set[str] = field(default_factory=set)

    def axes_of(self, group: str) -> list[Axis]:
        return [a for a in self.axes if a.group == group]

    def entries(self) -> dict[str, list[Axis]]:
        out: dict[str, list[Axis]] = {}
        for a in self.axes:
            out.setdefault(a.name, []).append(a)
        return out


def _chain_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The parametrised layers of a chain network in forward order; refuses anything else."""
    from mcutils.models import MLP, VGG16, Normalize, SmallCNN

    chains = (nn.Sequential, SmallCNN, MLP, VGG16)
    layers = []
    for name, m in model.named_modules():
        if list(m.children()):
            if not isinstance(m, chains):
                raise ParameterError(
                    f"weight matching supports chain networks (small_cnn, mlp, vgg16, "
                    f"nn.Sequential of layers) and the registry's residual networks "
                    f"(preresnet20, resnet18_cifar); {type(m).__name__} at "
                    f"{name or 'the top'!r} may hold skip connections it does not know")
            continue
        if isinstance(m, (*_WEIGHTED, *_NORMS)):
            layers.append((name, m))
        elif not isinstance(m, (*_EQUIVARIANT, Normalize)):
            raise ParameterError(f"weight matching does not know how {type(m).__name__} "
                                 f"({name!r}) treats the order of units")
    return layers


class _SpecBuilder:
    """Adds the axes of one layer at a time to a :class:`PermutationSpec` (residual nets)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.spec = PermutationSpec(groups={})

    def group(self, name: str, size: int) -> str:
        self.spec.groups[name] = size
        return name

    def _size(self, m: nn.Module, out: bool) -> int:
        if isinstance(m, _NORMS):
            return m.num_features
        if isinstance(m, nn.Conv2d):
            return m.out_channels if out else m.in_channels
        return m.out_features if out else m.in_features

    def _check(self, name: str, m: nn.Module, group: str, out: bool) -> str:
        if self._size(m, out) != self.spec.groups[group]:
            raise ParameterError(f"layer {name!r} has {self._size(m, out)} units where its "
                                 f"group {group!r} has {self.spec.groups[group]}")
        return self.prefix + name

    def writes(self, name: str, m: nn.Module, group: str) -> None:
        """A conv or linear layer whose outputs are the units of ``group``."""
        full = self._check(name, m, group, out=True)
        self.spec.axes.append(Axis(full + ".weight", 0, group))
        self.spec.matched.add(full + ".weight")
        if m.bias is not None:
            self.spec.axes.append(Axis(full + ".bias", 0, group))
            self.spec.matched.add(full + ".bias")

    def reads(self, name: str, m: nn.Module, group: str) -> None:
        """A conv or linear layer whose inputs are the units of ``group``."""
        full = self._check(name, m, group, out=False)
        self.spec.axes.append(Axis(full + ".weight", 1, group))
        self.spec.matched.add(full + ".weight")

    def norm(self, name: str, m: nn.Module, group: str) -> None:
        """A BatchNorm acting on the units of ``group`` (running statistics follow them)."""
        full = self._check(name, m, group, out=True)
        for entry in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, entry, None) is not None:
                self.spec.axes.append(Axis(f"{full}.{entry}", 0, group))
        self.spec.matched |= {f"{full}.{e}" for e in ("weight", "bias")
                              if getattr(m, e) is not None}


def _residual_net(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(prefix, net)`` when ``model`` is a registry residual net, bare or after a
    :class:`~mcutils.models.Normalize` in an ``nn.Sequential``; None otherwise."""
    from mcutils.models import Normalize, PreResNet, ResNet18CIFAR

    residual = (PreResNet, ResNet18CIFAR)
    if isinstance(model, residual):
        return "", model
    if isinstance(model, nn.Sequential):
        rest = [(n, m) for n, m in model.named_children() if not isinstance(m, Normalize)]
        if len(rest) == 1 and isinstance(rest[0][1], residual):
            return f"{rest[0][0]}.", rest[0][1]
    return None


def _residual_spec(prefix: str, net: nn.Module) -> PermutationSpec:
    """Groups of a PreResNet (pre-activation blocks) or a ResNet18CIFAR (post-activation
    blocks): one per block's inner layer, one per stage's residual stream."""
    from mcutils.models import PreResNet

    b = _SpecBuilder(prefix)
    pre = isinstance(net, PreResNet)
    stem = net.conv if pre else net.conv1
    stream = b.group("P_stream0", stem.out_channels)
    b.writes("conv" if pre else "conv1", stem, stream)
    if not pre:
        b.norm("bn1", net.bn1, stream)
    blocks = net.blocks if pre else net.layers
    where = "blocks" if pre else "layers"
    for i, blk in enumerate(blocks):
        p = f"{where}.{i}."
        if pre:
            b.norm(p + "bn1", blk.bn1, stream)
        inner = b.group(f"P_{where}.{i}.conv1", blk.conv1.out_channels)
        b.reads(p + "conv1", blk.conv1, stream)
        b.writes(p + "conv1", blk.conv1, inner)
        b.norm(p + ("bn2" if pre else "bn1"), blk.bn2 if pre else blk.bn1, inner)
        b.reads(p + "conv2", blk.conv2, inner)
        projection = blk.shortcut if pre else (blk.shortcut[0] if len(blk.shortcut) else None)
        if projection is not None:
            new = b.group(f"P_stream{len([g for g in b.spec.groups if 'stream' in g])}",
                          blk.conv2.out_channels)
            short = p + ("shortcut" if pre else "shortcut.0")
            b.reads(short, projection, stream)
            b.writes(short, projection, new)
            if not pre:
                b.norm(p + "shortcut.1", blk.shortcut[1], new)
            stream = new
        b.writes(p + "conv2", blk.conv2, stream)
        if not pre:
            b.norm(p + "bn2", blk.bn2, stream)
    if pre:
        b.norm("bn", net.bn, stream)
    b.reads("fc", net.fc, stream)
    return b.spec


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation groups of a network: one per hidden layer's output units for a
    chain network; for the registry's residual networks, one per block's inner layer and
    one per stage's residual stream (see the module's notes).

    Raises:
        ParameterError: a network that is neither a chain of convolutions and linear
            layers (with optional BatchNorm) nor a registry residual net, or whose layer
            sizes do not chain.
    """
    residual = _residual_net(model)
    if residual is not None:
        return _residual_spec(*residual)
    layers = _chain_layers(model)
    weighted = [(n, m) for n, m in layers if isinstance(m, _WEIGHTED)]
    if len(weighted) < 2:
        raise ParameterError("weight matching needs at least two conv or linear layers")
    spec = PermutationSpec(groups={})
    prev: str | None = None  # group of the current hidden representation
    last_weighted = weighted[-1][0]
    for name, m in layers:
        prefix = f"{name}." if name else ""
        if isinstance(m, _NORMS):
            if prev is None or spec.groups[prev] != m.num_features:
                raise ParameterError(f"BatchNorm {name!r} does not follow a hidden layer of "
                                     f"{m.num_features} units")
            for entry in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m, entry, None) is not None:
                    spec.axes.append(Axis(prefix + entry, 0, prev))
            spec.matched |= {prefix + e for e in ("weight", "bias") if getattr(m, e) is not None}
            continue
        n_in = m.in_channels if isinstance(m, nn.Conv2d) else m.in_features
        n_out = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ParameterError(f"grouped convolution {name!r} is not supported")
        if prev is not None:
            size = spec.groups[prev]
            if n_in % size:
                raise ParameterError(f"layer {name!r} takes {n_in} inputs, not a multiple of "
                                     f"the {size} units before it")
            if isinstance(m, nn.Conv2d) and n_in != size:
                raise ParameterError(f"convolution {name!r} takes {n_in} channels after "
                                     f"{size} units")
            spec.axes.append(Axis(prefix + "weight", 1, prev, n_in // size))
        spec.matched.add(prefix + "weight")
        if name == last_weighted:
            break
        group = f"P_{name}"
        spec.groups[group] = n_out
        spec.axes.append(Axis(prefix + "weight", 0, group))
        if m.bias is not None:
            spec.axes.append(Axis(prefix + "bias", 0, group))
            spec.matched.add(prefix + "bias")
        prev = group
    return spec


def _take(w: torch.Tensor, ax: Axis, perm: torch.Tensor) -> torch.Tensor:
    """``w`` with the units of ``ax`` re-ordered: new unit ``i`` is old unit ``perm[i]``."""
    if ax.expand == 1:
        return w.index_select(ax.axis, perm)
    shape = list(w.shape)
    n = shape[ax.axis] // ax.expand
    v = w.reshape(*shape[:ax.axis], n, ax.expand, *shape[ax.axis + 1:])
    return v.index_select(ax.axis, perm).reshape(shape)


def _apply(state: Mapping[str, torch.Tensor], spec: PermutationSpec,
           perms: Mapping[str, torch.Tensor], skip: Axis | None = None) -> dict[str, torch.Tensor]:
    out = dict(state)
    for ax in spec.axes:
        if ax == skip:
            continue
        out[ax.name] = _take(out[ax.name], ax, perms[ax.group])
    return out


def _unit_rows(w: torch.Tensor, ax: Axis) -> torch.Tensor:
    """``w`` as ``[units, rest]`` along the permuted axis (expanded entries in ``rest``)."""
    shape = list(w.shape)
    n = shape[ax.axis] // ax.expand
    v = w.reshape(*shape[:ax.axis], n, ax.expand, *shape[ax.axis + 1:])
    return v.movedim(ax.axis, 0).reshape(n, -1)


def _check_pair(model_a: nn.Module, model_b: nn.Module) -> tuple[PermutationSpec, dict, dict]:
    spec = permutation_spec(model_a)
    sa = {k: v.detach().cpu().double() if v.is_floating_point() else v.detach().cpu()
          for k, v in model_a.state_dict().items()}
    sb = {k: v.detach().cpu().double() if v.is_floating_point() else v.detach().cpu()
          for k, v in model_b.state_dict().items()}
    if set(sa) != set(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        raise ParameterError("the two models do not have the same architecture")
    return spec, sa, sb


def weight_matching(model_a: nn.Module, model_b: nn.Module, max_iter: int = 100,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """Permutations of ``model_b``'s hidden units that align it to ``model_a``.

    Coordinate ascent on ``sum_l <W_a^l, P_l W_b^l P_{l-1}^T>`` (biases and BatchNorm
    weights included): each sweep visits the groups in a random order (seeded) and
    solves one linear assignment per group with the others held fixed; it stops after a
    sweep in which no permutation changed, or after ``max_iter`` sweeps.

    Returns:
        ``{group: perm}`` (:func:`permutation_spec`'s groups); :func:`permute` with them
        re-orders ``model_b`` so that its unit ``i`` is its old unit ``perm[i]``.
    """
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ParameterError(f"max_iter={max_iter!r} must be a positive integer")
    spec, sa, sb = _check_pair(model_a, model_b)
    perms = {g: torch.arange(n) for g, n in spec.groups.items()}
    rng = np.random.default_rng(seed)
    names = list(spec.groups)
    for _ in range(max_iter):
        changed = False
        for g in rng.permutation(names):
            n = spec.groups[g]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for ax in spec.axes_of(g):
                if ax.name not in spec.matched:
                    continue
                wb = _apply({ax.name: sb[ax.name]}, _restrict(spec, ax.name), perms, skip=ax)
                cost += _unit_rows(sa[ax.name], ax) @ _unit_rows(wb[ax.name], ax).T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            old_score = cost[torch.arange(n), perms[g]].sum()
            new_score = cost[torch.arange(n), new].sum()
            if new_score > old_score + 1e-12 * max(1.0, float(old_score.abs())):
                perms[g] = new
                changed = True
        if not changed:
            break
    return perms


def _restrict(spec: PermutationSpec, name: str) -> PermutationSpec:
    return PermutationSpec(spec.groups, [a for a in spec.axes if a.name == name], spec.matched)


def permute(model: nn.Module, perms: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with its hidden units re-ordered by ``perms`` (the same
    function up to float rounding)."""
    spec = permutation_spec(model)
    if set(perms) != set(spec.groups):
        raise ParameterError(f"perms must name the groups {sorted(spec.groups)}")
    for g, n in spec.groups.items():
        p = torch.as_tensor(perms[g])
        if p.shape != (n,) or not torch.equal(p.sort().values, torch.arange(n)):
            raise ParameterError(f"perms[{g!r}] is not a permutation of {n} units")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    new = _apply(state, spec, {g: torch.as_tensor(p, dtype=torch.long) for g, p in perms.items()})
    out = copy.deepcopy(model).cpu()
    out.load_state_dict(new)
    return out.to(next(model.parameters()).device).train(model.training)


def random_permutation(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniformly random permutations of every group of ``model`` (seeded)."""
    spec = permutation_spec(model)
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.randperm(n, generator=gen) for g, n in spec.groups.items()}


def align(model_a: nn.Module, model_b: nn.Module, max_iter: int = 100, seed: int = 0
          ) -> nn.Module:
    """``model_b`` with its hidden units re-ordered to match ``model_a``
    (:func:`weight_matching`, then :func:`permute`)."""
    return permute(model_b, weight_matching(model_a, model_b, max_iter=max_iter, seed=seed))
