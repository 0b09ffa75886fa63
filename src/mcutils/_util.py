"""Private helpers shared by the library's modules (one home for each).

* argument checks (:func:`check_positive`, :func:`check_nonneg`);
* per-row norms and broadcasting (:func:`flat_norm`, :func:`bview`);
* the caller's model: :func:`model_device`, :class:`EvalMode` (eval mode, previous mode
  restored), :class:`OnDevice` (eval mode on a device, previous mode and device restored),
  :class:`FrozenEval` (also freezes the weights while inputs are optimised),
  :func:`planned_inference` (batched evaluation under the machine's speed plan);
* :class:`MaskedAdam`: per-sample Adam on a batch of inputs in which finished rows stop.

Nothing here is part of the public API; the modules that use these helpers are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from mcutils.runtime import ParameterError, Plan, prepare, prepared

NORMS = ("linf", "l2")


def check_positive(**values: float) -> None:
    """Raise :class:`ParameterError` unless every value is a number > 0."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ParameterError(f"{name}={v!r} must be a positive number")


def check_nonneg(**values: float) -> None:
    """Raise :class:`ParameterError` unless every value is a number >= 0."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ParameterError(f"{name}={v!r} must be a non-negative number")


def flat_norm(x: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """Per-row norm of ``x [N, ...]``: ``"l2"`` (default) or ``"linf"``."""
    flat = x.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(dim=1)
    raise ParameterError(f"norm={norm!r} is not known; valid values: {NORMS}")


def bview(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-row vector ``[N]`` to broadcast against ``like`` ``[N, ...]``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); CPU for a stateless model."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


class EvalMode:
    """Context manager: put a model in eval mode, restore its previous mode after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


class OnDevice(EvalMode):
    """Eval mode on ``device`` (default: where the model is); on exit the model goes back
    to its previous device and mode."""

    def __init__(self, model: nn.Module, device: str | torch.device | None = None):
        super().__init__(model)
        self.device = device

    def __enter__(self) -> nn.Module:
        from mcutils.runtime import get_device

        self.home = model_device(self.model)
        self.target = get_device(self.device) if self.device is not None else self.home
        if self.target != self.home:
            self.model.to(self.target)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        if self.target != self.home:
            self.model.to(self.home)
        super().__exit__(*exc)


@contextlib.contextmanager
def planned_inference(model: nn.Module, example: torch.Tensor, batch_size: int | None = None,
                      device: str | torch.device | None = None,
                      channels_last: bool | None = None) -> Iterator[Plan]:
    """Evaluate ``model`` under the machine's speed plan for inputs like ``example``.

    Inside the block the model is in eval mode, on the plan's device and in its memory
    format, under :func:`torch.inference_mode` (and bf16 autocast only if the plan asks
    for it); afterwards its mode, device and weight layout are restored. Yields the
    :class:`~mcutils.runtime.Plan`: feed inputs through ``plan.input`` in chunks of
    ``plan.batch_size``. An explicit ``batch_size`` or ``channels_last`` wins.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ParameterError(f"batch_size={batch_size!r} must be a positive integer")
    plan = prepare(model, example[:2], device, batch_size=batch_size, channels_last=channels_last)
    with prepared(model, plan), EvalMode(model), torch.inference_mode(), \
            plan.autocast_context():
        yield plan


class FrozenEval(EvalMode):
    """Eval mode with the weights' ``requires_grad`` off (inputs are optimised, not
    weights); both are restored on exit.

    With ``example`` (a batch like the inputs), the weights also take the memory format of
    the machine's speed plan for such inputs (:func:`mcutils.runtime.prepare`; the batch
    size stays the caller's) for the duration, and get their exact strides back on exit
    (:func:`mcutils.runtime.prepared`). The format changes results at float rounding
    only, which a loop with a stopping rule can carry into another step count.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None):
        super().__init__(model)
        self.example = example
        self._layout: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> nn.Module:
        if self.example is not None:  # first, so that a bad example leaves nothing changed
            plan = prepare(self.model, self.example[:2])
            self._layout = prepared(self.model, plan)
            self._layout.__enter__()
        self.requires = [p.requires_grad for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        for p, req in zip(self.model.parameters(), self.requires):
            p.requires_grad_(req)
        if self._layout is not None:
            self._layout.__exit__(*exc)
            self._layout = None
        super().__exit__(*exc)


class MaskedAdam:
    """Adam on a batch of inputs, one independent problem per row, with a row mask.

    Each element has its own first and second moments (as in ``torch.optim.Adam``,
    which is element-wise), and the bias correction uses the number of steps taken so
    far. Rows whose ``active`` flag is off do not move; their moments still see the
    gradient passed in (pass zeros to freeze them), exactly as the loops this class
    replaced did. Because Adam is element-wise, a row's trajectory equals running that
    row alone.

    Args:
        x: ``[N, ...]`` the starting point (only its shape, dtype and device are used).
        lr: step size, in the units of ``x``.
        betas: Adam's moment decay rates.
        eps: Adam's denominator offset.
    """

    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        check_positive(lr=lr)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, x: torch.Tensor, grad: torch.Tensor,
             active: torch.Tensor | None = None) -> torch.Tensor:
        """One step: returns ``x - lr * m_hat / (sqrt(v_hat) + eps)`` on the active rows."""
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        mhat = self.m / (1 - b1 ** self.t)
        vhat = self.v / (1 - b2 ** self.t)
        upd = self.lr * mhat / (vhat.sqrt() + self.eps)
        if active is not None:
            upd = upd * bview(active.to(x.dtype), x)
        return x.detach() - upd
