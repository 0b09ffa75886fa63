"""Weight-space curves between two trained models (Garipov et al. 2018). Used by chapters 05 and 06.

A curve is ``w(t) = sum_k c_k(t) theta_k`` for ``t`` in ``[0, 1]``: fixed coefficient
functions ``c_k`` (:class:`Bezier` or :class:`PolyChain`) and bends ``theta_k``, of
which the first and last are the two endpoint models. :class:`CurveModel` holds the
bends for ANY ``nn.Module`` and evaluates the network at ``w(t)`` with
:func:`torch.func.functional_call`, so no architecture needs a second "curve" copy.

* :func:`train_curve` minimises ``E_{t ~ U[0,1]} [loss(w(t)) + wd/2 ||w(t)||^2]`` with
  one ``t`` per batch;
* :func:`evaluate_curve` exports the plain model at each ``t``, recomputes BatchNorm
  statistics on a loader (:func:`torch.optim.swa_utils.update_bn`) and evaluates it;
* :func:`linear_path` is the untrained baseline: the straight line between the ends.

Buffers (``Normalize`` statistics, BatchNorm running statistics) are not part of the
curve: they are linearly interpolated between the endpoints when a model is exported.
BatchNorm statistics of an inner point are meaningless until recomputed, so for a model
with BatchNorm :meth:`CurveModel.model_at` refuses to export an inner point without data
for the recomputation, and :func:`evaluate_curve` recomputes them at every ``t`` (on
every path, the straight line included), as Garipov et al.'s ``update_bn`` does.

The learning-rate schedules are the one table of :mod:`mcutils.training`
(:data:`~mcutils.training.SCHEDULES`, :func:`~mcutils.training.lr_factor`), shared with
the baselines of :mod:`mcutils.repair`, so every method of chapter 05 trains alike.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device, model_device, prepare
from mcutils.training import SCHEDULES, lr_factor, make_optimizer

__all__ = [
    "CURVES",
    "Bezier",
    "CurveModel",
    "PolyChain",
    "evaluate_curve",
    "has_batchnorm",
    "interpolate_states",
    "linear_path",
    "recompute_bn",
    "train_curve",
]

class Bezier(nn.Module):
    """Bezier coefficients ``c_k(t) = C(n, k) t^k (1 - t)^(n - k)``, ``n = num_bends - 1``.

    ``num_bends`` counts the endpoints: 2 is the straight line, 3 the quadratic curve
    of the papers.
    """

    def __init__(self, num_bends: int = 3):
        super().__init__()
        if not isinstance(num_bends, int) or num_bends < 2:
            raise ParameterError(f"num_bends={num_bends!r} must be an integer >= 2")
        self.num_bends = num_bends
        n = num_bends - 1
        self.register_buffer("binom", torch.tensor([float(math.comb(n, k)) for k in range(num_bends)]),
                             persistent=False)
        self.register_buffer("powers", torch.arange(num_bends, dtype=torch.float32),
                             persistent=False)

    def forward(self, t: float | torch.Tensor) -> torch.Tensor:
        """The ``num_bends`` coefficients at ``t`` (they sum to one)."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.binom.device)
        n = self.num_bends - 1
        return self.binom * t.pow(self.powers) * (1 - t).pow(n - self.powers)


class PolyChain(nn.Module):
    """Piecewise-linear coefficients through ``num_bends`` equally spaced knots in ``t``."""

    def __init__(self, num_bends: int = 3):
        super().__init__()
        if not isinstance(num_bends, int) or num_bends < 2:
            raise ParameterError(f"num_bends={num_bends!r} must be an integer >= 2")
        self.num_bends = num_bends
        self.register_buffer("knots", torch.arange(num_bends, dtype=torch.float32),
                             persistent=False)

    def forward(self, t: float | torch.Tensor) -> torch.Tensor:
        """The ``num_bends`` hat-function coefficients at ``t`` (they sum to one)."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.knots.device)
        return torch.clamp(1 - (t * (self.num_bends - 1) - self.knots).abs(), min=0)


CURVES: dict[str, type[nn.Module]] = {"bezier": Bezier, "polychain": PolyChain}


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers (whose statistics depend on the weights)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def interpolate_states(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                       t: float) -> dict[str, torch.Tensor]:
    """``(1 - t) a + t b`` for floating-point entries; other entries (counters) from ``a``."""
    if set(state_a) != set(state_b):
        raise ParameterError("the two state dicts have different keys")
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        if a.shape != b.shape:
            raise ParameterError(f"state entry {k!r} has shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if not a.is_floating_point() or t == 0:
            out[k] = a.clone()
        elif t == 1:
            out[k] = b.to(a).clone()
        else:
            out[k] = torch.lerp(a, b.to(a), float(t))
    return out


def _state_of(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = obj.state_dict() if isinstance(obj, nn.Module) else dict(obj)
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _fresh_states(model: nn.Module, count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``count`` random initialisations of ``model``'s architecture (every submodule's
    ``reset_parameters``), seeded by ``seed``, without touching the global RNG."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(count):
            net = copy.deepcopy(model)
            for mod in net.modules():
                if hasattr(mod, "reset_parameters") and mod is not net:
                    mod.reset_parameters()
            out.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return out


class CurveModel(nn.Module):
    """A parametric curve of weights between two models of the same architecture.

    Args:
        base_model: the architecture (any ``nn.Module``; it is copied, not modified).
        start_state, end_state: the endpoints, as models or state dicts of ``base_model``.
        curve: a :class:`Bezier` or :class:`PolyChain` instance, or ``"bezier"`` /
            ``"polychain"`` (then with ``num_bends``).
        fix_ends: keep the endpoints fixed (only the inner bends are trained).
        init: ``"linear"`` puts the inner bends on the straight line between the ends
            (so the untrained curve is the straight line; the official code's default,
            ``init_linear``); ``"random"`` starts each inner bend at a fresh random
            initialisation of the architecture (its ``reset_parameters``, seeded by
            ``init_seed``), as the official code does with ``--init_linear_off``.
        init_seed: seed of the ``"random"`` start.
        num_bends: number of bends when ``curve`` is a name (3 = quadratic Bezier).

    ``forward(x, t)`` evaluates the network at ``w(t)``; ``state_at(t)`` and
    ``model_at(t)`` export a plain state dict / model of the base architecture.
    """

    def __init__(self, base_model: nn.Module, start_state: nn.Module | Mapping[str, torch.Tensor],
                 end_state: nn.Module | Mapping[str, torch.Tensor],
                 curve: nn.Module | str = "bezier", fix_ends: bool = True, init: str = "linear",
                 num_bends: int = 3, init_seed: int = 0):
        super().__init__()
        if isinstance(curve, str):
            if curve not in CURVES:
                raise ParameterError(f"curve={curve!r} is not known; valid values: {', '.join(CURVES)}")
            curve = CURVES[curve](num_bends)
        if not isinstance(curve, (Bezier, PolyChain)):
            raise ParameterError("curve must be a Bezier or PolyChain instance or a name")
        if init not in ("linear", "random"):
            raise ParameterError(f"init={init!r} is not known; valid values: linear, random")
        start, end = _state_of(start_state), _state_of(end_state)
        template = copy.deepcopy(base_model).cpu()
        expected = template.state_dict()
        for name, st in (("start_state", start), ("end_state", end)):
            if set(st) != set(expected) or any(st[k].shape != expected[k].shape for k in expected):
                raise ParameterError(f"{name} does not match the architecture of base_model")
        self.curve = curve
        self.fix_ends = bool(fix_ends)
        self.num_bends = curve.num_bends
        self.param_names = [n for n, _ in template.named_parameters()]
        pset = set(self.param_names)
        # buffers (Normalize constants, BN statistics) of the two ends, for export
        self._buffer_ends = ({k: v for k, v in start.items() if k not in pset},
                             {k: v for k, v in end.items() if k not in pset})
        template.load_state_dict(start)
        self._template = [template]  # a plain list: not a registered submodule
        # the network evaluated by functional_call: its parameters become buffers so
        # that they are neither trained nor listed by .parameters()
        net = copy.deepcopy(template)
        for name in self.param_names:
            mod_name, _, attr = name.rpartition(".")
            mod = net.get_submodule(mod_name) if mod_name else net
            value = mod._parameters.pop(attr).detach()
            mod.register_buffer(attr, value, persistent=False)
        self.net = net
        n = self.num_bends
        inner = [k / (n - 1) for k in range(1, n - 1)]
        fresh = _fresh_states(template, len(inner), init_seed) if init == "random" else None
        self.bends = nn.ParameterList()
        for i, name in enumerate(self.param_names):
            a, b = start[name].float(), end[name].float()
            points = ([f[name].float() for f in fresh] if fresh is not None
                      else [torch.lerp(a, b, s) for s in inner])
            if self.fix_ends:
                self.register_buffer(f"start_{i}", a.clone())
                self.register_buffer(f"end_{i}", b.clone())
                stacked = torch.stack(points) if points else a.new_zeros((0, *a.shape))
            else:
                stacked = torch.stack([a, *points, b])
            self.bends.append(nn.Parameter(stacked))
        self._channels_last = False

    @property
    def channels_last(self) -> bool:
        """Whether 4-D (conv) weights are stored and assembled in ``channels_last``."""
        return self._channels_last

    def set_channels_last(self, enabled: bool) -> None:
        """Store the ends and bends of 4-D (conv) weights so that ``w(t)`` comes out in
        ``channels_last`` (``True``) or in the default layout (``False``).

        Values are unchanged: only the layout in memory moves. With ``True``,
        :meth:`weights` assembles 4-D weights by elementwise sums, which keep the layout
        (one free bend: the same values bit for bit; more: the same sum in another
        order), and gives single-channel kernels explicit ``channels_last`` strides, so
        that the convolutions run in that format (``benchmarks/curves.py`` times it
        against the default layout). Call it before the optimiser holds state: the
        parameter objects are kept, their storage is replaced.
        """
        enabled = bool(enabled)
        for i in range(len(self.param_names)):
            bend = self.bends[i]
            if bend.dim() != 5:
                continue
            with torch.no_grad():
                if enabled:  # per-slice NHWC strides, explicit even for one input channel
                    bend.data = bend.data.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
                else:  # standard strides (.contiguous() would keep NHWC-like ones)
                    bend.data = bend.data.clone(memory_format=torch.contiguous_format)
                if self.fix_ends:
                    for key in (f"start_{i}", f"end_{i}"):
                        value = getattr(self, key)
                        setattr(self, key, value.to(memory_format=torch.channels_last) if enabled
                                else value.clone(memory_format=torch.contiguous_format))
        self._channels_last = enabled

    def weights(self, t: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameter dict ``w(t)`` (differentiable with respect to the free bends)."""
        c = self.curve(t)
        out = {}
        for i, name in enumerate(self.param_names):
            free, coeffs, w = self.bends[i], c, None
            if self.fix_ends:
                w = c[0] * getattr(self, f"start_{i}") + c[-1] * getattr(self, f"end_{i}")
                coeffs = c[1:-1]
            if self._channels_last and free.dim() == 5:
                # elementwise sums keep the bends' NHWC strides (tensordot would not)
                for k in range(free.shape[0]):
                    term = coeffs[k] * free[k]
                    w = term if w is None else w + term
                w = w.to(memory_format=torch.channels_last)
            elif free.shape[0]:
                part = torch.tensordot(coeffs, free, dims=1)
                w = part if w is None else w + part
            out[name] = w
        return out

    def forward_with(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The network's output on ``x`` with the given parameter dict."""
        return functional_call(self.net, dict(weights), (x,))

    def forward(self, x: torch.Tensor, t: float | torch.Tensor = 0.5) -> torch.Tensor:
        """The network at ``w(t)`` applied to ``x``."""
        return self.forward_with(x, self.weights(t))

    def bend_state(self, k: int) -> dict[str, torch.Tensor]:
        """The parameters of bend ``k`` (0 = start, ``num_bends - 1`` = end) as a dict."""
        if not 0 <= k < self.num_bends:
            raise ParameterError(f"bend {k} does not exist (num_bends={self.num_bends})")
        out = {}
        for i, name in enumerate(self.param_names):
            if self.fix_ends and k == 0:
                out[name] = getattr(self, f"start_{i}").detach().clone()
            elif self.fix_ends and k == self.num_bends - 1:
                out[name] = getattr(self, f"end_{i}").detach().clone()
            else:
                out[name] = self.bends[i][k - 1 if self.fix_ends else k].detach().clone()
        return out

    @torch.no_grad()
    def state_at(self, t: float) -> dict[str, torch.Tensor]:
        """A state dict of the base architecture at ``t`` (on the CPU).

        Parameters are ``w(t)``; buffers are interpolated linearly between the ends
        (BatchNorm statistics should then be recomputed, see :func:`recompute_bn`).
        """
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise ParameterError(f"t={t} must lie in [0, 1]")
        state = {k: v.detach().cpu().clone() for k, v in self.weights(t).items()}
        state.update(interpolate_states(*self._buffer_ends, t))
        return state

    def _export(self, t: float) -> nn.Module:
        """The plain model at ``t`` with interpolated buffers (no BatchNorm check)."""
        model = copy.deepcopy(self._template[0])
        model.load_state_dict(self.state_at(t))
        return model.to(self.bends[0].device).eval()

    def model_at(self, t: float, bn_loader: Iterable | None = None) -> nn.Module:
        """A plain copy of the base model at ``w(t)``, in eval mode, on the curve's device.

        With ``bn_loader``, BatchNorm statistics are recomputed on it. A model with
        BatchNorm needs ``bn_loader`` at every ``t`` except at a fixed endpoint (whose
        statistics are the endpoint model's own): interpolated statistics do not describe
        the weights at ``t``, so an export without them raises :class:`~mcutils.core.checks.ParameterError`.
        """
        t = float(t)
        exact_end = self.fix_ends and t in (0.0, 1.0)
        if bn_loader is None and not exact_end and has_batchnorm(self.net):
            raise ParameterError("the model has BatchNorm: pass bn_loader (training batches) "
                                 f"so that its statistics are recomputed at t={t}")
        model = self._export(t)
        if bn_loader is not None:
            recompute_bn(model, bn_loader, self.bends[0].device)
        return model


def recompute_bn(model: nn.Module, loader: Iterable, device: str | torch.device | None = None
                 ) -> nn.Module:
    """Recompute BatchNorm running statistics of ``model`` on ``loader`` (in place).

    A thin wrapper over :func:`torch.optim.swa_utils.update_bn` (a cumulative average
    over the loader's batches, like Garipov et al.'s ``update_bn``) that leaves the model
    in eval mode; models without BatchNorm are returned unchanged (in eval mode).
    """
    if has_batchnorm(model):
        device = get_device(device) if device is not None else model_device(model)
        torch.optim.swa_utils.update_bn(loader, model, device=device)
    return model.eval()


def linear_path(model_a: nn.Module, model_b: nn.Module) -> CurveModel:
    """The straight line between two models, as an untrained :class:`CurveModel`."""
    return CurveModel(model_a, model_a, model_b, Bezier(2), fix_ends=True)


def train_curve(curve_model: CurveModel, loader: Iterable, epochs: int = 1, lr: float = 0.01,
                weight_decay: float = 0.0, momentum: float = 0.9, optimizer: str = "sgd",
                schedule: str | None = None, steps: int | None = None,
                device: str | torch.device = "cpu", seed: int = 0,
                transform: Callable[[nn.Module, torch.Tensor, torch.Tensor],
                                    tuple[torch.Tensor, torch.Tensor]] | None = None,
                progress: bool = True, channels_last: bool | None = None,
                objective: Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor,
                                     torch.Tensor], torch.Tensor] | None = None,
                callback: Callable[[int, CurveModel], None] | None = None
                ) -> dict[str, list[float]]:
    """Fit the free bends: minimise ``E_t[CE(w(t)) + weight_decay/2 ||w(t)||^2]``.

    One ``t ~ U[0, 1]`` is drawn per batch (from a generator seeded by ``seed``).

    Args:
        curve_model: the curve (trained in place).
        loader: ``(x, y)`` batches, re-iterated each epoch.
        epochs: passes over ``loader`` (ignored when ``steps`` is given).
        lr: learning rate.
        weight_decay: coefficient of the L2 penalty on ``w(t)`` (not on the bends).
        momentum: SGD momentum.
        optimizer: ``"sgd"`` or ``"adam"``.
        schedule: a name in :data:`mcutils.training.SCHEDULES` (see
            :func:`mcutils.training.lr_factor`), applied per step.
        steps: train for exactly this many batches (cycling through ``loader``).
        device: where to train.
        seed: seed of the ``t`` draws.
        transform: optional per-batch ``(model_at_t, x, y) -> (x, y)`` hook, called
            with a plain module evaluating the curve at the batch's ``t``.
        progress: show a tqdm bar.
        channels_last: memory format of the conv weights and batches during training
            (default: the machine's training plan for the base architecture at the
            loader's batch size, :func:`mcutils.core.runtime.prepare`, chosen at the first
            batch as :func:`mcutils.training.train` does); the curve is returned in the
            default layout. The format changes results at float rounding only.
        objective: ``(forward, x, y) -> loss`` in place of the cross-entropy, with
            ``forward`` the network at the batch's ``t`` (e.g.
            :func:`mcutils.attacks.gradient_penalty_objective`: a path trained on the
            robust loss, as Zhao et al.'s ``train_robust_connection.py``); the
            ``weight_decay`` penalty is added to it.
        callback: ``(step, curve_model)`` after each optimiser step (``step`` counts from
            1), e.g. to keep snapshots of the bends.

    Returns:
        History with per-step ``loss`` (cross-entropy, or the objective) and ``t``.
    """
    if optimizer not in ("sgd", "adam"):
        raise ParameterError(f"optimizer={optimizer!r} is not known; valid values: sgd, adam")
    if schedule not in SCHEDULES:
        raise ParameterError(f"schedule={schedule!r} is not known; valid values: {SCHEDULES}")
    if lr <= 0 or weight_decay < 0 or epochs < 0 or (steps is not None and steps < 0):
        raise ParameterError(f"need lr > 0, weight_decay >= 0, epochs >= 0, steps >= 0 "
                             f"(got {lr}, {weight_decay}, {epochs}, {steps})")
    device = get_device(device)
    curve_model.to(device)
    params = [p for p in curve_model.parameters() if p.requires_grad and p.numel()]
    if not params:
        raise ParameterError("the curve has no free bends to train (num_bends=2 with fixed ends)")
    opt = make_optimizer(params, optimizer, lr, momentum)
    total = steps if steps is not None else epochs * len(loader)  # type: ignore[arg-type]
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(schedule, k, max(total, 1)))
             if schedule else None)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"loss": [], "t": []}
    bar = tqdm(total=total, desc="train curve", disable=not progress, leave=False)
    curve_model.train()
    step = 0
    plan = None
    try:
        while step < total:
            for x, y in loader:
                if step >= total:
                    break
                if plan is None:  # at the first batch, as in mcutils.training.train
                    plan = prepare(curve_model._template[0], x, device,
                                   channels_last=channels_last, purpose="train")
                    curve_model.set_channels_last(plan.channels_last)
                x, y = plan.input(x), y.to(device)
                t = float(torch.rand((), generator=gen))
                if transform is not None:
                    plain = _CurveAt(curve_model, t).eval()
                    x, y = transform(plain, x, y)
                    curve_model.train()
                w = curve_model.weights(t)
                if objective is None:
                    loss = F.cross_entropy(curve_model.forward_with(x, w), y)
                else:
                    loss = objective(lambda inp, w=w: curve_model.forward_with(inp, w), x, y)
                total_loss = loss
                if weight_decay:
                    total_loss = loss + 0.5 * weight_decay * sum((v * v).sum() for v in w.values())
                opt.zero_grad(set_to_none=True)
                total_loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                history["loss"].append(loss.item())
                history["t"].append(t)
                step += 1
                bar.update(1)
                if callback is not None:
                    callback(step, curve_model)
    finally:
        curve_model.set_channels_last(False)
        bar.close()
    curve_model.eval()
    return history


class _CurveAt(nn.Module):
    """A module view of a curve at a fixed ``t`` (for attack transforms)."""

    def __init__(self, curve_model: CurveModel, t: float):
        super().__init__()
        self.curve_model = curve_model
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.curve_model(x, self.t)


def evaluate_curve(curve_model: CurveModel, ts: Sequence[float] | torch.Tensor | int,
                   eval_loader: Iterable, bn_loader: Iterable | None = None,
                   extra: Mapping[str, Callable[[nn.Module], float]] | None = None,
                   device: str | torch.device | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Loss and accuracy of the exported model at each ``t``.

    For models with BatchNorm the running statistics are recomputed at each ``t`` on
    ``bn_loader`` (required then) with :func:`torch.optim.swa_utils.update_bn`.

    Args:
        curve_model: the curve (or :func:`linear_path`).
        ts: the points, or an integer ``n`` for ``n`` equally spaced points in [0, 1].
        eval_loader: ``(x, y)`` batches to evaluate on.
        bn_loader: batches (training data) for the BatchNorm statistics.
        extra: more metrics, name -> ``f(model) -> float`` (e.g. an attack success rate).
        device: where to evaluate (default: the curve's device).
        progress: show a tqdm bar over ``ts``.

    Returns:
        A DataFrame with columns ``t``, ``loss``, ``accuracy`` and one per ``extra``.
    """
    from mcutils.training import evaluate

    if isinstance(ts, int):
        if ts < 2:
            raise ParameterError(f"ts={ts} points: need at least 2")
        ts = torch.linspace(0, 1, ts).tolist()
    ts = [float(t) for t in (ts.tolist() if isinstance(ts, torch.Tensor) else ts)]
    if any(not 0 <= t <= 1 for t in ts):
        raise ParameterError("every t must lie in [0, 1]")
    if has_batchnorm(curve_model.net) and bn_loader is None:
        raise ParameterError("the model has BatchNorm: pass bn_loader (training batches) so "
                             "that its statistics can be recomputed at each t")
    device = get_device(device) if device is not None else curve_model.bends[0].device
    rows: list[dict[str, Any]] = []
    for t in tqdm(ts, desc="evaluate curve", disable=not progress, leave=False):
        model = curve_model._export(t).to(device)
        if bn_loader is not None:
            recompute_bn(model, bn_loader, device)
        row: dict[str, Any] = {"t": t, **evaluate(model, eval_loader, device=device)}
        for name, fn in (extra or {}).items():
            row[name] = float(fn(model))
        rows.append(row)
    return pd.DataFrame(rows)
