"""Established adversarial-example detectors at full strength, with their hyper-parameters
tuned on the defender's labelled rows only.

* :class:`MahalanobisEnsemble`: Lee et al. (2018). Class-conditional Gaussians with one
  covariance shared by the classes, fitted on the defender's real images at several
  layers (:func:`default_layers`; convolutional maps averaged over space); each layer's
  score is the smallest Mahalanobis distance to a class mean *after input
  pre-processing*: a signed-gradient step of size ``noise`` (pixel units) that lowers the
  distance to the closest class, as in the paper. :meth:`MahalanobisEnsemble.score_grid`
  gives ``[N, layers, noises]``; the layer weights (a logistic regression) and the noise
  are chosen on validation rows.
* :func:`lid_grid`: Ma et al. (2018). The local intrinsic dimensionality of every
  layer's (flattened) activation, the maximum-likelihood estimate from the ``k`` nearest
  of a batch of the defender's real images, for several ``k``.
* :func:`kd_bu_grid`: Feinman et al. (2017). Kernel density of the last hidden layer
  against the defender's images of the predicted class (Gaussian kernel, several
  bandwidths; its logarithm, for range) and Bayesian uncertainty from Monte-Carlo
  dropout at the input of the last linear layer.
* :func:`tuned_cross_val_scores`: out-of-fold scores of a logistic regression on one
  slice of such a grid, the slice (the noise, ``k`` or bandwidth) chosen per outer fold
  by an inner cross-validation on that fold's training rows, so the scored sources never
  enter any choice. :func:`tuned_fit` does the same on one training set.

Every grid is ``[N, F, G]``: ``N`` inputs, ``F`` features combined by the detector's
logistic regression, ``G`` values of the tuned hyper-parameter. Used by chapter 04.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import EvalMode as _EvalMode
from mcutils.core.runtime import model_device as _model_device
from mcutils.detection import _last_linear, cross_val_scores, make_classifier, source_folds

__all__ = [
    "BASELINES",
    "KD_SCALES",
    "LEE_NOISES",
    "LID_KS",
    "MahalanobisEnsemble",
    "TunedDetector",
    "default_layers",
    "kd_bu_grid",
    "layer_activations",
    "lid_estimates",
    "lid_grid",
    "tuned_cross_val_scores",
    "tuned_fit",
]

#: The detectors of this module, by the names chapter 04's table uses.
BASELINES = ("mahalanobis_ensemble", "lid", "kd_bu")
#: Noise magnitudes of Lee et al.'s input pre-processing (their code's list; here in
#: pixel units of ``[0, 1]`` images).
LEE_NOISES = (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)
#: Neighbour counts tried for LID (Ma et al. use 20 of a minibatch of 100, chosen from a
#: grid).
LID_KS = (10, 20, 30, 40)
#: Kernel bandwidths of KD as multiples of the median distance between the defender's
#: last-layer features (Feinman et al. tune one bandwidth per dataset).
KD_SCALES = (0.1, 0.25, 0.5, 1.0, 2.0)


# ----------------------------------------------------------------------------- activations
def default_layers(model: nn.Module) -> list[str]:
    """The layers the detectors read: the ends of ResNet stages when the model has
    ``layer1``... (torchvision ResNets), else the outputs of every ``nn.ReLU`` module
    (for the book's CNNs and MLPs: each hidden layer, the last one being the
    penultimate features)."""
    names = dict(model.named_modules())
    stages = [n for n in names if n.split(".")[-1] in ("layer1", "layer2", "layer3", "layer4")]
    if stages:
        return stages
    relus = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ParameterError("the model has no nn.ReLU modules; pass layers= explicitly")
    return relus


def _pool(a: torch.Tensor, pooled: bool) -> torch.Tensor:
    if not pooled:
        return a.flatten(1)
    if a.dim() == 4:  # conv maps: mean over space (Lee et al.)
        return a.mean((2, 3))
    if a.dim() == 3:  # tokens: mean over tokens
        return a.mean(1)
    return a.flatten(1)


def _forward_layers(model: nn.Module, x: torch.Tensor, layers: Sequence[str], pooled: bool
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the activations of ``layers`` (with gradients when enabled)."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules]
    if missing:
        raise ParameterError(f"layers {missing} are not modules of the model")
    got: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: got[n].append(out)) for n in layers]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    twice = [n for n, v in got.items() if len(v) != 1]
    if twice:
        raise ParameterError(f"layers {twice} run {[len(got[n]) for n in twice]} times per "
                             "forward pass; name modules that run once (layers=...)")
    return logits, [_pool(got[n][0], pooled) for n in layers]


def layer_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None = None,
                      pooled: bool = True, batch_size: int = 256) -> list[torch.Tensor]:
    """Activations of ``layers`` (default :func:`default_layers`) for inputs ``x``, in
    eval mode, batched: a list of ``[N, D_l]`` float64 CPU tensors (conv maps averaged
    over space when ``pooled``, flattened otherwise)."""
    layers = list(layers or default_layers(model))
    dev = _model_device(model)
    parts: list[list[torch.Tensor]] = [[] for _ in layers]
    with _EvalMode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            _, acts = _forward_layers(model, x[i:i + batch_size].to(dev), layers, pooled)
            for p, a in zip(parts, acts):
                p.append(a.double().cpu())
    return [torch.cat(p) for p in parts]


# ----------------------------------------------------------------------------- Mahalanobis
class MahalanobisEnsemble:
    """Lee et al. (2018): per-layer Mahalanobis scores with input pre-processing.

    Args:
        layers: module names (default :func:`default_layers` of the fitted model).
        ridge: diagonal regularisation of each shared covariance, relative to its mean
            variance (the paper uses the empirical covariance; a small ridge keeps the
            inverse finite when a layer has more units than images).
    """

    def __init__(self, layers: Sequence[str] | None = None, ridge: float = 1e-6):
        if not ridge >= 0:
            raise ParameterError(f"ridge={ridge!r} must be >= 0")
        self.layers = list(layers) if layers else None
        self.ridge = ridge
        self.means: list[torch.Tensor] = []
        self.precisions: list[torch.Tensor] = []

    def fit(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MahalanobisEnsemble:
        """Class means and one shared precision per layer from real images ``x``, ``y``."""
        y = torch.as_tensor(y)
        if len(x) != len(y) or len(x) < 2:
            raise ParameterError("fit needs at least two images with one label each")
        self.layers = self.layers or default_layers(model)
        self.classes = y.unique()
        self.means, self.precisions = [], []
        for f in layer_activations(model, x, self.layers):
            means = torch.stack([f[y == c].mean(0) for c in self.classes])
            centred = f - means[torch.searchsorted(self.classes, y)]
            cov = centred.T @ centred / len(f)
            cov += (self.ridge * cov.diagonal().mean().clamp_min(1e-12)
                    * torch.eye(cov.shape[0], dtype=cov.dtype))
            self.means.append(means)
            self.precisions.append(torch.linalg.pinv(cov, hermitian=True))
        return self

    def _distances(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer ``[n, classes]`` squared Mahalanobis distances."""
        out = []
        for f, mu, prec in zip(feats, self.means, self.precisions):
            d = f.double()[:, None, :] - mu.to(f.device)[None]
            out.append(torch.einsum("ncd,de,nce->nc", d, prec.to(f.device), d))
        return out

    def score_grid(self, model: nn.Module, x: torch.Tensor,
                   noises: Sequence[float] = LEE_NOISES, batch_size: int = 128) -> np.ndarray:
        """``[N, layers, noises]``: for every layer and noise magnitude, the smallest
        Mahalanobis distance to a class mean after the paper's pre-processing (higher:
        farther from every class, more likely adversarial). The step uses the sign of
        the gradient of the distance to the closest class at that layer, in pixel
        units, and does not clip to the pixel box."""
        if not self.means:
            raise RuntimeError("fit the detector first")
        noises = [float(e) for e in noises]
        if not noises or min(noises) < 0:
            raise ParameterError(f"noises={noises!r} must be non-empty and >= 0")
        layers = self.layers or []
        dev = _model_device(model)
        out = np.empty((len(x), len(layers), len(noises)))
        with _EvalMode(model):
            for i in range(0, len(x), batch_size):
                xb = x[i:i + batch_size].to(dev).detach().requires_grad_(True)
                with torch.enable_grad():
                    _, acts = _forward_layers(model, xb, layers, True)
                    dist = self._distances(acts)
                    signs = []
                    for li, d in enumerate(dist):
                        closest = d.min(1).values.sum()
                        (g,) = torch.autograd.grad(closest, xb, retain_graph=li < len(dist) - 1)
                        signs.append(g.sign())
                with torch.no_grad():
                    for gi, eps in enumerate(noises):
                        for li in range(len(layers)):
                            _, acts = _forward_layers(model, xb - eps * signs[li], layers, True)
                            d = self._distances(acts)[li]
                            out[i:i + len(xb), li, gi] = d.min(1).values.clamp_min(0).sqrt().cpu()
        return out


# ----------------------------------------------------------------------------- LID
def lid_estimates(features: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Maximum-likelihood LID of each row of ``features`` ``[N, D]`` from its ``k``
    nearest rows of ``reference`` ``[B, D]`` (Ma et al. 2018:
    ``-(mean_i log(r_i / r_k))^-1``); a reference at distance 0 (the input itself) is
    skipped."""
    if not isinstance(k, int) or k < 2 or k >= len(reference):
        raise ParameterError(f"k={k!r} must be an integer in [2, {len(reference) - 1}]")
    d = torch.cdist(features.double(), reference.double())
    d = torch.where(d <= 1e-12, torch.full_like(d, float("inf")), d)
    r = d.topk(k, dim=1, largest=False).values
    ratio = (r / r[:, -1:]).clamp_min(1e-300).log()
    return -1.0 / ratio.mean(1).clamp_max(-1e-12)


def lid_grid(model: nn.Module, x: torch.Tensor, reference_x: torch.Tensor,
             ks: Sequence[int] = LID_KS, layers: Sequence[str] | None = None,
             batch_size: int = 256) -> np.ndarray:
    """``[N, layers, ks]`` LID of every input at every layer (flattened activations, as
    Ma et al.) against one batch of real reference images ``reference_x`` (the
    defender's; Ma et al. use minibatches of 100)."""
    layers = list(layers or default_layers(model))
    ks = [int(k) for k in ks]
    ref = layer_activations(model, reference_x, layers, pooled=False, batch_size=batch_size)
    act = layer_activations(model, x, layers, pooled=False, batch_size=batch_size)
    out = np.empty((len(x), len(layers), len(ks)))
    for li, (a, r) in enumerate(zip(act, ref)):
        for ki, k in enumerate(ks):
            out[:, li, ki] = lid_estimates(a, r, k).numpy()
    return out


# ----------------------------------------------------------------------------- KD + BU
def _penultimate(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    last = _last_linear(model)
    feats: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inp, _o: feats.append(inp[0].detach()))
    dev = _model_device(model)
    try:
        with _EvalMode(model), torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(dev))
    finally:
        hook.remove()
    return torch.cat([f.flatten(1).double().cpu() for f in feats])


def kd_bu_grid(model: nn.Module, x: torch.Tensor, pool_x: torch.Tensor, pool_y: torch.Tensor,
               scales: Sequence[float] = KD_SCALES, mc_samples: int = 50,
               dropout: float = 0.5, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``[N, 2, scales]``: log kernel density (Feinman et al. 2017) of each input's
    last-hidden-layer features against the defender's images ``pool_x`` of its
    predicted class, with a Gaussian kernel of bandwidth ``scale x`` the median distance
    between pool features; and its Bayesian uncertainty, the variance of ``mc_samples``
    Monte-Carlo dropout predictions (dropout ``p`` at the last linear layer's input,
    ``1/T sum p_t.p_t - |mean p|^2``), the same for every scale."""
    if not 0 < dropout < 1:
        raise ParameterError(f"dropout={dropout!r} must be in (0, 1)")
    if not isinstance(mc_samples, int) or mc_samples < 2:
        raise ParameterError(f"mc_samples={mc_samples!r} must be an integer >= 2")
    scales = [float(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ParameterError(f"scales={scales!r} must be non-empty and > 0")
    pool_y = torch.as_tensor(pool_y)
    fp = _penultimate(model, pool_x, batch_size)
    fx = _penultimate(model, x, batch_size)
    last = _last_linear(model)
    w = last.weight.detach().double().cpu()
    b = (last.bias.detach().double().cpu() if last.bias is not None
         else torch.zeros(w.shape[0], dtype=torch.float64))
    pred = (fx @ w.T + b).argmax(1)
    sub = fp[torch.randperm(len(fp), generator=torch.Generator().manual_seed(seed))[:1000]]
    median = torch.pdist(sub).median().clamp_min(1e-12)
    out = np.empty((len(x), 2, len(scales)))
    for c in pred.unique():
        rows = (pred == c).nonzero().flatten()
        members = fp[pool_y == c]
        if len(members) == 0:
            raise ParameterError(f"the defender's pool has no image of class {int(c)}")
        d2 = torch.cdist(fx[rows], members).pow(2)
        for si, s in enumerate(scales):
            sigma2 = float((s * median) ** 2)
            out[rows.numpy(), 0, si] = (torch.logsumexp(-d2 / sigma2, 1)
                                        - np.log(len(members))).numpy()
    gen = torch.Generator().manual_seed(seed)
    probs = []
    for _ in range(mc_samples):
        keep = (torch.rand(fx.shape, generator=gen) >= dropout).double() / (1 - dropout)
        probs.append(((fx * keep) @ w.T + b).softmax(1))
    p = torch.stack(probs)  # [T, N, C]
    bu = p.pow(2).sum(-1).mean(0) - p.mean(0).pow(2).sum(-1)
    out[:, 1, :] = bu.numpy()[:, None]
    return out


# ----------------------------------------------------------------------------- tuning
def _check_grid(grid: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid, labels = np.asarray(grid, dtype=float), np.asarray(labels)
    if grid.ndim != 3 or len(grid) != len(labels):
        raise ParameterError(f"grid must be [N, F, G] with one label per row, got "
                             f"{grid.shape} and {len(labels)} labels")
    if set(np.unique(labels).tolist()) != {0, 1}:
        raise ParameterError("labels must contain both classes 0 (real) and 1 (adversarial)")
    return grid, labels


def _choose(grid: np.ndarray, labels: np.ndarray, groups: np.ndarray, inner_folds: int,
            seed: int) -> tuple[int, list[float]]:
    """The grid index with the best inner cross-validated AUROC (first on ties)."""
    n_groups = len(np.unique(groups))
    folds = min(inner_folds, n_groups)
    aucs = []
    for g in range(grid.shape[2]):
        x = np.nan_to_num(grid[:, :, g], nan=0.0, posinf=1e6, neginf=-1e6)
        s = cross_val_scores(x, labels, groups, folds=folds, seed=seed)
        aucs.append(float(stats.auroc(labels, s, num_boot=0).auc))
    return int(np.argmax(aucs)), aucs


class TunedDetector:
    """A logistic regression on the grid slice chosen by :func:`tuned_fit`
    (``index``), with the inner AUROC of every slice (``validation``)."""

    def __init__(self, index: int, classifier: Any, validation: list[float]):
        self.index, self.classifier, self.validation = index, classifier, validation

    def scores(self, grid: np.ndarray) -> np.ndarray:
        """Probability of "adversarial" of the rows of a ``[N, F, G]`` grid."""
        x = np.nan_to_num(np.asarray(grid, dtype=float)[:, :, self.index], nan=0.0,
                          posinf=1e6, neginf=-1e6)
        return self.classifier.predict_proba(x)[:, 1]


def tuned_fit(grid: np.ndarray, labels: np.ndarray, groups: np.ndarray, inner_folds: int = 3,
              seed: int = 0) -> TunedDetector:
    """Choose the grid slice by cross-validation (folds disjoint by group) on these
    rows, then fit the logistic regression on all of them at that slice."""
    grid, labels = _check_grid(grid, labels)
    idx, aucs = _choose(grid, labels, np.asarray(groups), inner_folds, seed)
    x = np.nan_to_num(grid[:, :, idx], nan=0.0, posinf=1e6, neginf=-1e6)
    return TunedDetector(idx, make_classifier("logistic", seed).fit(x, labels), aucs)


def tuned_cross_val_scores(grid: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                           folds: int = 5, inner_folds: int = 3, seed: int = 0
                           ) -> tuple[np.ndarray, list[int]]:
    """Out-of-fold scores with the hyper-parameter tuned inside every fold.

    The outer folds are :func:`mcutils.detection.source_folds` (a source and its
    adversarial examples stay together). In each, :func:`tuned_fit` runs on the
    training rows only; the held-out rows are scored by it.

    Returns:
        ``(scores [N], chosen grid index per fold)``.
    """
    grid, labels = _check_grid(grid, labels)
    groups = np.asarray(groups)
    fold = source_folds(labels, groups, folds, seed)
    scores = np.empty(len(labels))
    chosen = []
    for f in range(folds):
        test = fold == f
        if len(np.unique(labels[~test])) < 2:
            raise ParameterError(f"fold {f}: the training rows hold only one label")
        det = tuned_fit(grid[~test], labels[~test], groups[~test], inner_folds, seed)
        scores[test] = det.scores(grid[test])
        chosen.append(det.index)
    return scores, chosen
