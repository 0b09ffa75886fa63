"""Connectivity-based adversarial detection: barrier features and detectors.

An input ``x`` predicted as class ``c`` is joined by straight paths to ``K`` real
reference images of class ``c``; the loss profiles of these paths (cross-entropy of
``c`` along each path, from :func:`mcutils.inputspace.loss_profiles`) are the raw
material. The input-space paper suggests that real images sit in one connected,
low-loss region per class while adversarial examples are separated from it by
barriers.

* :func:`barrier_features` computes the profiles for many inputs at once (all inputs x
  references x points in flattened batches), :func:`logit_features` the logit baselines
  and, with a fitted :class:`Mahalanobis` (Lee et al. 2018, on
  :func:`penultimate_features`), a Mahalanobis score; :func:`connectivity_features`
  does both for inputs against a reference pool; :func:`feature_matrix` turns them into
  detector inputs.
* :func:`cross_val_scores` fits scikit-learn detectors in folds disjoint by source image
  (:func:`source_folds`); :func:`evaluate_detectors` and :func:`transfer_matrix` score
  them. The AUROC and interval statistics they report are in :mod:`mcutils.core.stats`
  (:func:`~mcutils.core.stats.auroc`, :func:`~mcutils.core.stats.metric_interval`,
  :func:`~mcutils.core.stats.auroc_difference`), and the adaptive attack's penalty on a
  fitted detector is :class:`mcutils.adaptive.DetectorPenalty`.

Every function that receives a model evaluates it in eval mode and restores the caller's
mode; none moves the model. Used by chapter 04.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.core.checks import check_positive as _check_positive
from mcutils.core.runtime import planned_inference as _planned_inference
from mcutils.inputspace import DEFAULT_BATCH_SIZE, barrier, loss_profiles

__all__ = [
    "CLASSIFIERS",
    "DETECTORS",
    "BarrierFeatures",
    "LogitFeatures",
    "Mahalanobis",
    "barrier_features",
    "barrier_features_loop",
    "connectivity_features",
    "cross_val_scores",
    "detector_scores",
    "evaluate_detectors",
    "feature_matrix",
    "fit_detector",
    "local_maxima",
    "logit_features",
    "make_classifier",
    "penultimate_features",
    "reference_indices",
    "source_folds",
    "stack_groups",
    "transfer_matrix",
]

DETECTORS = ("barrier", "barrier_max", "profile", "profile_logits", "msp", "margin", "logits",
             "mahalanobis")
CLASSIFIERS = ("logistic", "boosting")


# ----------------------------------------------------------------------------- features
@dataclass
class BarrierFeatures:
    """Loss-profile features of ``N`` inputs against ``K`` references each.

    Attributes:
        profiles: ``[N, K, P]`` cross-entropy of the predicted class along each path
            (column 0 at the input, the last column at the reference).
        gap: ``[N, K]`` barrier heights (highest loss minus larger endpoint loss).
        max: ``[N, K]`` raw maxima of the profiles.
        maxima: ``[N, K]`` number of interior local maxima of each profile.
    """

    profiles: torch.Tensor
    gap: torch.Tensor
    max: torch.Tensor
    maxima: torch.Tensor

    def __len__(self) -> int:
        return self.profiles.shape[0]

    def first_references(self, k: int) -> BarrierFeatures:
        """The same features restricted to the first ``k`` references."""
        if not 1 <= k <= self.profiles.shape[1]:
            raise ParameterError(f"k={k} must be in [1, {self.profiles.shape[1]}]")
        return BarrierFeatures(self.profiles[:, :k], self.gap[:, :k], self.max[:, :k],
                               self.maxima[:, :k])

    def select(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> BarrierFeatures:
        """The features of a subset of inputs."""
        idx = torch.as_tensor(index)
        return BarrierFeatures(self.profiles[idx], self.gap[idx], self.max[idx],
                               self.maxima[idx])


@dataclass
class LogitFeatures:
    """Baseline features of ``N`` inputs: logits sorted in decreasing order (``[N, C]``),
    maximum softmax probability and top-1 minus top-2 logit margin (``[N]``), the
    Mahalanobis score of :class:`Mahalanobis` (``[N]``, ``None`` when no detector was
    given) and the predicted class (``[N]``)."""

    sorted_logits: torch.Tensor
    msp: torch.Tensor
    margin: torch.Tensor
    mahalanobis: torch.Tensor | None = None
    predicted: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.sorted_logits.shape[0]

    def select(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> LogitFeatures:
        """The features of a subset of inputs."""
        idx = torch.as_tensor(index)
        maha = None if self.mahalanobis is None else self.mahalanobis[idx]
        pred = None if self.predicted is None else self.predicted[idx]
        return LogitFeatures(self.sorted_logits[idx], self.msp[idx], self.margin[idx], maha,
                             pred)


def reference_indices(pool_labels: torch.Tensor, classes: torch.Tensor, k: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """For each requested class, ``k`` distinct random pool indices of that class.

    Args:
        pool_labels: ``[M]`` labels of the reference pool (real images, disjoint from
            the inputs to be tested).
        classes: ``[N]`` class of each input (its predicted class).
        k: references per input.
        generator: seeded randomness.

    Returns:
        ``[N, k]`` indices into the pool.

    Raises:
        ParameterError: when a class has fewer than ``k`` pool images.
    """
    if not isinstance(k, int) or k < 1:
        raise ParameterError(f"k={k!r} must be a positive integer")
    classes = torch.as_tensor(classes)
    out = torch.empty(len(classes), k, dtype=torch.long)
    for c in classes.unique().tolist():
        members = (pool_labels == c).nonzero().flatten()
        if len(members) < k:
            raise ParameterError(f"class {c} has {len(members)} pool images, fewer than k={k}")
        rows = (classes == c).nonzero().flatten()
        # an independent random choice of k distinct members per input
        scores = torch.rand(len(rows), len(members), generator=generator)
        out[rows] = members[scores.argsort(dim=1)[:, :k]]
    return out


def local_maxima(profiles: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """Number of interior strict local maxima of each profile rising more than ``tol``
    above both neighbours' running minima (small wiggles are not counted).

    Args:
        profiles: ``[..., P]`` losses along paths.
        tol: minimum rise over the lowest point on each side.

    Returns:
        ``[...]`` integer counts.
    """
    if profiles.shape[-1] < 3:
        return torch.zeros(profiles.shape[:-1], dtype=torch.long)
    mid = profiles[..., 1:-1]
    peak = (mid > profiles[..., :-2]) & (mid >= profiles[..., 2:])
    # prominence on each side: rise above the lowest point between the peak and the
    # nearest higher point would be exact; the running minima to the ends are a cheap
    # lower bound that ignores tiny ripples
    left_min = torch.cummin(profiles, dim=-1).values[..., :-2]
    right_min = torch.cummin(profiles.flip(-1), dim=-1).values.flip(-1)[..., 2:]
    prominent = (mid - torch.maximum(left_min, right_min)) > tol
    return (peak & prominent).sum(-1)


def barrier_features(model: nn.Module, x: torch.Tensor, predicted: torch.Tensor,
                     references: torch.Tensor, num_points: int = 64,
                     batch_size: int | None = DEFAULT_BATCH_SIZE, tol: float = 1e-3
                     ) -> BarrierFeatures:
    """Loss profiles of every input against each of its references, batched.

    All ``N x K`` straight paths are evaluated by one call to
    :func:`mcutils.inputspace.loss_profiles` (flattened batches of points).

    Args:
        model: the classifier.
        x: ``[N, C, H, W]`` inputs (real or adversarial).
        predicted: ``[N]`` the class the model predicts for each input; the profiles
            are the cross-entropy of this class.
        references: ``[N, K, C, H, W]`` real images of each input's predicted class.
        num_points: points per path, both ends included.
        batch_size: points per forward pass (``None``: the machine's speed plan's).
        tol: prominence threshold of :func:`local_maxima`.

    Returns:
        The :class:`BarrierFeatures`.
    """
    predicted = torch.as_tensor(predicted)
    if x.dim() < 2 or predicted.shape != (len(x),):
        raise ParameterError("predicted must be [N] for x of shape [N, ...]")
    if references.dim() != x.dim() + 1 or references.shape[0] != len(x) \
            or references.shape[2:] != x.shape[1:]:
        raise ParameterError(f"references must be [N, K, ...] with N={len(x)} and image shape "
                             f"{tuple(x.shape[1:])}, got {tuple(references.shape)}")
    n, k = references.shape[:2]
    a = x.unsqueeze(1).expand(n, k, *x.shape[1:]).reshape(n * k, *x.shape[1:])
    c = references.reshape(n * k, *x.shape[1:])
    targets = predicted.view(n, 1).expand(n, k).reshape(-1)
    prof = loss_profiles(model, a, c, targets, num_points=num_points, batch_size=batch_size)
    gap = barrier(prof, "gap").view(n, k)
    top = barrier(prof, "max").view(n, k)
    prof = prof.view(n, k, -1)
    return BarrierFeatures(prof, gap, top, local_maxima(prof, tol))


def barrier_features_loop(model: nn.Module, x: torch.Tensor, predicted: torch.Tensor,
                          references: torch.Tensor, num_points: int = 64,
                          tol: float = 1e-3) -> BarrierFeatures:
    """Reference implementation of :func:`barrier_features`: one input at a time (its
    ``K`` paths in one small batch). Used by the tests and the benchmark."""
    parts = [barrier_features(model, x[i:i + 1], torch.as_tensor(predicted)[i:i + 1],
                              references[i:i + 1], num_points=num_points, tol=tol)
             for i in range(len(x))]
    return BarrierFeatures(*(torch.cat([getattr(p, f) for p in parts])
                             for f in ("profiles", "gap", "max", "maxima")))


def _last_linear(model: nn.Module) -> nn.Linear:
    """The model's last :class:`torch.nn.Linear` layer (its input: the penultimate features)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ParameterError("the model has no nn.Linear layer to take features from")
    return last


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int | None = None
                         ) -> torch.Tensor:
    """The input of the model's last :class:`torch.nn.Linear` layer (its penultimate
    features), batched, in eval mode under the machine's speed plan (``batch_size=None``:
    the plan's; the caller's mode, device and weight layout are kept).

    Returns:
        ``[N, D]`` float32 features on the CPU.
    """
    last = _last_linear(model)
    feats: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inp, _out: feats.append(inp[0].detach()))
    if batch_size is not None:
        _check_positive(batch_size=batch_size)
    try:
        if len(x):
            with _planned_inference(model, x, batch_size) as plan:
                for i in range(0, len(x), plan.batch_size):
                    model(plan.input(x[i:i + plan.batch_size]))
    finally:
        hook.remove()
    return torch.cat([f.flatten(1).float().cpu() for f in feats]) if feats else torch.empty(0)


class Mahalanobis:
    """The Mahalanobis-distance detector of Lee et al. (2018) on penultimate features.

    Fitted on real training images: one mean per class and one covariance shared by all
    classes (with ``ridge`` times the mean variance added to its diagonal). The score of
    an input is its smallest Mahalanobis distance to a class mean (higher = farther from
    every class = more likely adversarial). This is the paper's score at the last
    hidden layer, without its input pre-processing or its ensemble over layers.

    Args:
        ridge: relative diagonal regularisation of the shared covariance.
    """

    def __init__(self, ridge: float = 1e-3):
        if not ridge >= 0:
            raise ParameterError(f"ridge={ridge!r} must be >= 0")
        self.ridge = ridge
        self.means: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> Mahalanobis:
        """Class means and the shared precision matrix from ``[N, D]`` features."""
        f = torch.as_tensor(features, dtype=torch.float64)
        labels = torch.as_tensor(labels)
        if f.dim() != 2 or len(f) != len(labels):
            raise ParameterError("features must be [N, D] with one label per row")
        classes = labels.unique()
        means = torch.stack([f[labels == c].mean(0) for c in classes])
        centred = f - means[torch.searchsorted(classes, labels)]
        cov = centred.T @ centred / max(len(f) - len(classes), 1)
        cov += self.ridge * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.classes, self.means = classes, means
        self.precision = torch.linalg.inv(cov)
        return self

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """``[N]`` smallest Mahalanobis distance to a class mean."""
        if self.means is None or self.precision is None:
            raise RuntimeError("fit the detector first")
        f = torch.as_tensor(features, dtype=torch.float64)
        d = f[:, None, :] - self.means[None]
        m2 = torch.einsum("ncd,de,nce->nc", d, self.precision, d)
        return m2.clamp_min(0).sqrt().amin(1).float()


def logit_features(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
                   mahalanobis: Mahalanobis | None = None) -> LogitFeatures:
    """Logit-based baseline features (sorted logits, max softmax probability, margin) and,
    with a fitted :class:`Mahalanobis`, its score.

    The model is evaluated in eval mode on its own device under the machine's speed plan
    (``batch_size=None``: the plan's); the caller's mode, device and weight layout are
    unchanged afterwards. Features come back on the CPU.
    """
    if batch_size is not None:
        _check_positive(batch_size=batch_size)
    if len(x) == 0:
        raise ParameterError("logit_features needs at least one input")
    with _planned_inference(model, x, batch_size) as plan:
        logits = torch.cat([model(plan.input(x[i:i + plan.batch_size])).float().cpu()
                            for i in range(0, len(x), plan.batch_size)])
    s = logits.sort(dim=1, descending=True).values
    maha = None
    if mahalanobis is not None:
        maha = mahalanobis.score(penultimate_features(model, x, batch_size))
    return LogitFeatures(s, logits.softmax(1).amax(1), s[:, 0] - s[:, 1], maha,
                         logits.argmax(1))


def feature_matrix(detector: str, barriers: BarrierFeatures | None = None,
                   logits: LogitFeatures | None = None) -> np.ndarray:
    """The input matrix ``[N, F]`` of one detector.

    Detectors:
        * ``barrier``: mean gap barrier over the references (1 feature);
        * ``barrier_max``: mean raw maximum of the profiles (1 feature);
        * ``profile``: the mean profile over references, its standard deviation over
          references and the mean number of local maxima (``2P + 1`` features);
        * ``profile_logits``: ``profile`` plus the sorted logits;
        * ``msp``: maximum softmax probability; ``margin``: top-1 minus top-2 logit;
        * ``logits``: the sorted logits;
        * ``mahalanobis``: the :class:`Mahalanobis` score (Lee et al. 2018).
    """
    if detector not in DETECTORS:
        raise ParameterError(f"detector={detector!r} is not known; valid values: {DETECTORS}")
    needs_barriers = detector in ("barrier", "barrier_max", "profile", "profile_logits")
    needs_logits = detector in ("profile_logits", "msp", "margin", "logits", "mahalanobis")
    if needs_barriers and barriers is None:
        raise ParameterError(f"detector {detector!r} needs barrier features")
    if needs_logits and logits is None:
        raise ParameterError(f"detector {detector!r} needs logit features")
    if needs_barriers and needs_logits and len(barriers) != len(logits):  # type: ignore[arg-type]
        raise ParameterError("barrier and logit features describe different numbers of inputs")
    if detector == "barrier":
        m = barriers.gap.mean(1, keepdim=True)  # type: ignore[union-attr]
    elif detector == "barrier_max":
        m = barriers.max.mean(1, keepdim=True)  # type: ignore[union-attr]
    elif detector in ("profile", "profile_logits"):
        p = barriers.profiles  # type: ignore[union-attr]
        std = p.std(1) if p.shape[1] > 1 else torch.zeros_like(p[:, 0])
        m = torch.cat([p.mean(1), std, barriers.maxima.float().mean(1, keepdim=True)], 1)  # type: ignore[union-attr]
        if detector == "profile_logits":
            m = torch.cat([m, logits.sorted_logits], 1)  # type: ignore[union-attr]
    elif detector == "msp":
        m = logits.msp[:, None]  # type: ignore[union-attr]
    elif detector == "margin":
        m = logits.margin[:, None]  # type: ignore[union-attr]
    elif detector == "mahalanobis":
        if logits.mahalanobis is None:  # type: ignore[union-attr]
            raise ParameterError("detector 'mahalanobis' needs logit features computed with "
                                 "a fitted Mahalanobis detector")
        m = logits.mahalanobis[:, None]  # type: ignore[union-attr]
    else:
        m = logits.sorted_logits  # type: ignore[union-attr]
    return m.double().numpy()


def stack_groups(negative: np.ndarray, positive: np.ndarray,
                 negative_groups: np.ndarray | Sequence[int],
                 positive_groups: np.ndarray | Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack real (label 0) and adversarial (label 1) feature rows with their groups.

    Groups name the source image of each row (a real image and the adversarial
    examples made from it share a group), so cross-validation folds never split them.

    Returns:
        ``(X, labels, groups)``.
    """
    negative, positive = np.asarray(negative), np.asarray(positive)
    if negative.ndim != 2 or positive.ndim != 2 or negative.shape[1] != positive.shape[1]:
        raise ParameterError("feature matrices must be 2-D with the same number of columns")
    ng, pg = np.asarray(negative_groups), np.asarray(positive_groups)
    if len(ng) != len(negative) or len(pg) != len(positive):
        raise ParameterError("one group per feature row is needed")
    x = np.concatenate([negative, positive])
    y = np.concatenate([np.zeros(len(negative), int), np.ones(len(positive), int)])
    return x, y, np.concatenate([ng, pg])


# ----------------------------------------------------------------------------- detectors
def make_classifier(method: str = "logistic", seed: int = 0):
    """An unfitted scikit-learn detector.

    ``logistic``: standardisation + L2-regularised logistic regression (liblinear);
    ``boosting``: gradient boosting (100 depth-3 trees; the exact single-threaded
    variant, faster than the histogram one on the few hundred rows used here).
    """
    if method not in CLASSIFIERS:
        raise ParameterError(f"method={method!r} is not known; valid values: {CLASSIFIERS}")
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method == "logistic":
        return make_pipeline(StandardScaler(),
                             LogisticRegression(C=1.0, solver="liblinear", max_iter=1000))
    return GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.1,
                                      random_state=seed)


def _check_xy(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, labels = np.asarray(x, dtype=float), np.asarray(labels)
    if x.ndim != 2 or len(x) != len(labels):
        raise ParameterError("X must be [N, F] with one label per row")
    if set(np.unique(labels).tolist()) != {0, 1}:
        raise ParameterError("labels must contain both classes 0 (real) and 1 (adversarial)")
    return x, labels


def source_folds(labels: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0
                 ) -> np.ndarray:
    """A fold number for every row such that all rows of a group (a source image and
    the adversarial examples made from it) fall in one fold.

    Groups are shuffled (seeded), ordered by their number of adversarial rows (so each
    fold gets a similar share of both labels) and dealt to the folds in turn.

    Returns:
        ``[N]`` integers in ``[0, folds)``.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ParameterError("labels and groups must be 1-D and of one length")
    ids, inverse = np.unique(groups, return_inverse=True)
    if not isinstance(folds, int) or folds < 2 or len(ids) < folds:
        raise ParameterError(f"folds={folds!r} must be >= 2 and at most the number of groups "
                             f"({len(ids)})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    positives = np.bincount(inverse, weights=(labels == 1).astype(float), minlength=len(ids))
    order = perm[np.argsort(-positives[perm], kind="stable")]
    fold_of_group = np.empty(len(ids), dtype=int)
    fold_of_group[order] = np.arange(len(ids)) % folds
    return fold_of_group[inverse]


def cross_val_scores(x: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                     method: str = "logistic", folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold detector scores (probability of "adversarial") for every row.

    Folds come from :func:`source_folds`: a real image and the adversarial examples
    made from it are never split between training and testing.

    Args:
        x: ``[N, F]`` features; labels: ``[N]`` 0/1; groups: ``[N]`` source ids.
        method: ``"logistic"`` or ``"boosting"``.
        folds: number of folds.
        seed: fold assignment and classifier seed.

    Returns:
        ``[N]`` scores, each from a detector that did not see its group.
    """
    from sklearn.base import clone

    x, labels = _check_xy(x, labels)
    groups = np.asarray(groups)
    if len(groups) != len(x):
        raise ParameterError("one group per row is needed")
    fold = source_folds(labels, groups, folds, seed)
    base = make_classifier(method, seed)
    scores = np.empty(len(x))
    for f in range(folds):
        test = fold == f
        train = ~test
        if len(np.unique(labels[train])) < 2:
            raise ParameterError(f"fold {f}: the training rows hold only one label; use "
                                 "fewer folds or more rows")
        clf = clone(base).fit(x[train], labels[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
    return scores


def fit_detector(x: np.ndarray, labels: np.ndarray, method: str = "logistic", seed: int = 0):
    """Fit a detector on all rows (for transfer: train on one attack, score another)."""
    x, labels = _check_xy(x, labels)
    return make_classifier(method, seed).fit(x, labels)


def detector_scores(detector, x: np.ndarray) -> np.ndarray:
    """Probability of "adversarial" from a fitted detector."""
    return detector.predict_proba(np.asarray(x, dtype=float))[:, 1]


def evaluate_detectors(barriers_real: BarrierFeatures, logits_real: LogitFeatures,
                       barriers_adv: BarrierFeatures, logits_adv: LogitFeatures,
                       groups_real: np.ndarray | Sequence[int],
                       groups_adv: np.ndarray | Sequence[int],
                       detectors: Sequence[str] | None = None, method: str = "logistic",
                       folds: int = 5, seed: int = 0,
                       num_boot: int = 0) -> Mapping[str, stats.AUROC]:
    """Cross-validated AUROC of several detectors on one real-vs-adversarial set.

    ``detectors=None`` takes every detector whose inputs are present (``mahalanobis``
    only when the logit features carry its score).

    Returns:
        detector -> :class:`~mcutils.core.stats.AUROC` (bootstrap over groups when
        ``num_boot > 0``).
    """
    if detectors is None:
        has_maha = logits_real.mahalanobis is not None and logits_adv.mahalanobis is not None
        detectors = [d for d in DETECTORS if d != "mahalanobis" or has_maha]
    out = {}
    for det in detectors:
        neg = feature_matrix(det, barriers_real, logits_real)
        pos = feature_matrix(det, barriers_adv, logits_adv)
        x, y, g = stack_groups(neg, pos, groups_real, groups_adv)
        s = cross_val_scores(x, y, g, method=method, folds=folds, seed=seed)
        out[det] = stats.auroc(y, s, num_boot=num_boot, seed=seed, groups=g)
    return out


def connectivity_features(model: nn.Module, x: torch.Tensor, pool_x: torch.Tensor,
                          pool_y: torch.Tensor, num_refs: int = 5, num_points: int = 64,
                          seed: int = 0, batch_size: int | None = DEFAULT_BATCH_SIZE,
                          mahalanobis: Mahalanobis | None = None
                          ) -> tuple[BarrierFeatures, LogitFeatures, torch.Tensor]:
    """Everything a detector sees about inputs ``x``: the model's prediction, ``num_refs``
    random real references of the predicted class drawn from ``(pool_x, pool_y)`` (the
    defender's pool; seeded by ``seed``), the barrier features against them and the
    logit features (with the Mahalanobis score when a fitted detector is given).

    Returns:
        ``(barrier features, logit features, predicted classes)``.
    """
    lf = logit_features(model, x, mahalanobis=mahalanobis)
    pred = lf.predicted
    idx = reference_indices(pool_y, pred, num_refs, torch.Generator().manual_seed(seed))
    bf = barrier_features(model, x, pred, pool_x[idx], num_points=num_points,
                          batch_size=batch_size)
    return bf, lf, pred


def transfer_matrix(real: np.ndarray, adversarial: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    real_groups: np.ndarray, method: str = "logistic", seed: int = 0,
                    ) -> dict[str, dict[str, float]]:
    """AUROC of a detector trained on one attack and tested on another.

    Source images are split in two halves at random: the detector is fitted on the real
    images of the first half and the adversarial examples (of the training attack) made
    from them, and scored on the second half (real images and the test attack's
    adversarial examples), so no source image is seen on both sides.

    Args:
        real: ``[N, F]`` features of the real images.
        adversarial: attack -> ``(features [M, F], groups [M])`` (group = source index
            into the real rows' groups).
        real_groups: ``[N]`` source ids of the real rows.
        method: classifier.
        seed: seed of the split.

    Returns:
        ``{train_attack: {test_attack: AUROC}}`` (NaN where a half holds no
        adversarial example of an attack).
    """
    real_groups = np.asarray(real_groups)
    rng = np.random.default_rng(seed)
    ids = np.unique(real_groups)
    first = set(rng.permutation(ids)[: len(ids) // 2].tolist())
    in_first = np.array([g in first for g in real_groups])
    out: dict[str, dict[str, float]] = {}
    for a, (xa, ga) in adversarial.items():
        ma = np.array([g in first for g in np.asarray(ga)])
        out[a] = {}
        if ma.sum() == 0 or in_first.sum() == 0:
            out[a] = {b: float("nan") for b in adversarial}
            continue
        x, y, _ = stack_groups(real[in_first], xa[ma], real_groups[in_first], np.asarray(ga)[ma])
        det = fit_detector(x, y, method, seed)
        for b, (xb, gb) in adversarial.items():
            mb = ~np.array([g in first for g in np.asarray(gb)])
            if mb.sum() == 0 or (~in_first).sum() == 0:
                out[a][b] = float("nan")
                continue
            xt, yt, _ = stack_groups(real[~in_first], xb[mb], real_groups[~in_first],
                                     np.asarray(gb)[mb])
            out[a][b] = stats.auroc(yt, detector_scores(det, xt), num_boot=0).auc
    return out
