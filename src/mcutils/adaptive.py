"""The adaptive attacker's penalty (Tramer et al. 2020): a fitted detector of
:mod:`mcutils.detection` recomputed as a differentiable function of the input, so that
:func:`mcutils.attacks.optimization_attack` can push its examples past the detector it
attacks (``penalty=``).

Used by chapter 04's adaptive attack (:mod:`mcutils.chapters.ch04_adaptive`).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import EvalMode as _EvalMode
from mcutils.core.runtime import model_device as _model_device
from mcutils.detection import local_maxima, reference_indices

__all__ = ["DetectorPenalty"]


class DetectorPenalty:
    """A fitted detector's verdict as a differentiable function of the input: the
    objective an adaptive attacker adds to :func:`mcutils.attacks.optimization_attack`.

    It recomputes, with gradients, the very features the detector was fitted on
    (:func:`mcutils.detection.feature_matrix` of kind ``detector``): loss profiles of the target class
    along straight paths from the input to ``num_refs`` real references at the
    detector's ``num_points`` points, their mean and spread over references and the
    mean number of local maxima (a count, so it enters without gradient), and the
    sorted logits; then applies the detector's standardisation and logistic weights.
    The attacker does not know which references the defender will draw, so every call
    draws ``draws`` fresh sets from the *attacker's own* pool and averages the decision
    values (expectation over transformation).

    Args:
        model: the classifier.
        detector: a fitted ``mcutils.detection.make_classifier("logistic")`` pipeline.
        kind: the detector's features: one of ``barrier``, ``barrier_max``, ``profile``,
            ``profile_logits``, ``logits``, ``msp``, ``margin``.
        pool_x, pool_y: the attacker's reference pool (disjoint from the defender's).
        targets: ``[N]`` target class of every input the attack will see (the call's
            ``rows`` index into it).
        num_refs, num_points: as the defender's features.
        draws: reference sets per call (EOT samples).
        seed: seed of the draws.
        tol: prominence threshold of :func:`mcutils.detection.local_maxima`.
    """

    KINDS = ("barrier", "barrier_max", "profile", "profile_logits", "logits", "msp", "margin")

    def __init__(self, model: nn.Module, detector, kind: str, pool_x: torch.Tensor,
                 pool_y: torch.Tensor, targets: torch.Tensor, num_refs: int, num_points: int,
                 draws: int = 1, seed: int = 0, tol: float = 1e-3):
        if kind not in self.KINDS:
            raise ParameterError(f"kind={kind!r} is not known; valid values: {self.KINDS}")
        if not isinstance(draws, int) or draws < 1:
            raise ParameterError(f"draws={draws!r} must be a positive integer")
        if not isinstance(num_points, int) or num_points < 2:
            raise ParameterError(f"num_points={num_points!r} must be an integer >= 2")
        steps = dict(getattr(detector, "named_steps", {}))
        scaler, logistic = steps.get("standardscaler"), steps.get("logisticregression")
        if scaler is None or logistic is None:
            raise ParameterError("detector must be a fitted make_classifier('logistic') pipeline")
        dev = _model_device(model)
        self.model, self.kind = model, kind
        self.mu = torch.as_tensor(scaler.mean_, dtype=torch.float32, device=dev)
        self.sd = torch.as_tensor(scaler.scale_, dtype=torch.float32, device=dev)
        self.w = torch.as_tensor(logistic.coef_[0], dtype=torch.float32, device=dev)
        self.b = float(logistic.intercept_[0])
        self.pool_x, self.pool_y = pool_x, torch.as_tensor(pool_y)
        self.targets = torch.as_tensor(targets).cpu()
        self.num_refs, self.num_points, self.draws, self.tol = num_refs, num_points, draws, tol
        self.gen = torch.Generator().manual_seed(seed)
        self.ts = torch.linspace(0, 1, num_points, device=dev)

    def features(self, x: torch.Tensor, targets: torch.Tensor,
                 refs: torch.Tensor | None) -> torch.Tensor:
        """``[n, F]`` the detector's features of ``x`` (differentiable in ``x``)."""
        with _EvalMode(self.model):
            return self._features(x, targets, refs)

    def _features(self, x: torch.Tensor, targets: torch.Tensor,
                  refs: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.kind not in ("logits", "msp", "margin"):
            n, k = refs.shape[:2]  # type: ignore[union-attr]
            t = self.ts.view(1, 1, -1, *([1] * (x.dim() - 1)))
            start = x[:, None, None]
            pts = start + t * (refs[:, :, None] - start)  # type: ignore[index]
            logits = self.model(pts.reshape(-1, *x.shape[1:]))
            tg = targets.view(n, 1, 1).expand(n, k, self.num_points).reshape(-1)
            prof = F.cross_entropy(logits, tg, reduction="none").view(n, k, -1)
            if self.kind == "barrier":
                ends = torch.maximum(prof[..., 0], prof[..., -1])
                parts.append((prof.amax(-1) - ends).clamp_min(0).mean(1, keepdim=True))
            elif self.kind == "barrier_max":
                parts.append(prof.amax(-1).mean(1, keepdim=True))
            else:
                std = prof.std(1) if k > 1 else torch.zeros_like(prof[:, 0])
                maxima = local_maxima(prof.detach(), self.tol).float().mean(1, keepdim=True)
                parts += [prof.mean(1), std, maxima]
        if self.kind in ("profile_logits", "logits", "msp", "margin"):
            z = self.model(x)
            s = z.sort(dim=1, descending=True).values
            if self.kind == "msp":
                parts.append(z.softmax(1).amax(1, keepdim=True))
            elif self.kind == "margin":
                parts.append((s[:, 0] - s[:, 1])[:, None])
            else:
                parts.append(s)
        return torch.cat(parts, 1)

    def decision(self, features: torch.Tensor) -> torch.Tensor:
        """The detector's decision value (log-odds of "adversarial") of feature rows."""
        return ((features - self.mu) / self.sd) @ self.w + self.b

    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``[n]`` the attacker's loss for ``x`` (the inputs ``rows``):
        ``softplus(decision)``, i.e. minus the log-probability that the detector calls
        the input real, averaged over draws of references. It vanishes once the
        detector is sure the input is real; ``log 2`` is the detector's threshold."""
        targets = self.targets[rows.cpu()].to(x.device)
        total = torch.zeros(len(x), device=x.device)
        for _ in range(self.draws):
            refs = None
            if self.kind not in ("logits", "msp", "margin"):
                idx = reference_indices(self.pool_y, targets.cpu(), self.num_refs, self.gen)
                refs = self.pool_x[idx].to(x.device)
            total = total + F.softplus(self.decision(self.features(x, targets, refs)))
        return total / self.draws
