"""Where and how a model runs: device, seeds, the speed plan and execution contexts.

Everything random in the book is seeded through :func:`seed_everything`. Speed plans
(:func:`prepare`, :func:`prepared`) choose the memory format and inference batch size
for a model on this machine; every batched evaluation and training loop uses them
(:func:`planned_inference` for evaluation, :class:`FrozenEval` for loops that optimise
inputs). :class:`EvalMode` and :class:`OnDevice` run a caller's model and give it back
as it was. Parameter validation lives in :mod:`mcutils.params`.

Used by every chapter (00-06): each seeds its randomness once with
:func:`seed_everything` right after its imports, and chapters 01, 02 and 04 resolve their
``device`` parameter with :func:`get_device`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.paths import cache_dir

__all__ = [
    "ParameterError",
    "get_device",
    "seed_everything",
    "set_deterministic",
    "Plan",
    "prepare",
    "prepared",
    "layout_hazards",
    "stored_plans",
    "forget_plans",
    "model_device",
    "EvalMode",
    "OnDevice",
    "planned_inference",
    "FrozenEval",
]


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def get_device(spec: str | torch.device = "auto") -> torch.device:
    """Resolve a device specification.

    Args:
        spec: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``; a :class:`torch.device` is returned as is.

    Returns:
        The :class:`torch.device`.

    Raises:
        ParameterError: for an unknown specification, or when CUDA is asked for on
            a machine without it (or with fewer GPUs than the index).
    """
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str) or not _DEVICE_RE.match(spec):
        raise ParameterError(
            f"device={spec!r} is not valid; use one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"
        )
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ParameterError(
                f"device={spec!r} was requested but CUDA is not available on this machine; "
                "use device='cpu' or device='auto'"
            )
        if ":" in spec:
            index = int(spec.split(":")[1])
            if index >= torch.cuda.device_count():
                raise ParameterError(
                    f"device={spec!r}: only {torch.cuda.device_count()} CUDA device(s) present"
                )
    if spec == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        raise ParameterError("device='mps' was requested but MPS is not available")
    return torch.device(spec)


def set_deterministic(enabled: bool = True) -> None:
    """Switch torch to deterministic algorithms (CPU results repeat bit for bit).

    On CUDA this also sets ``CUBLAS_WORKSPACE_CONFIG``; operations without a
    deterministic implementation warn instead of failing.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) in one place.

    Args:
        seed: the seed.
        deterministic: also call :func:`set_deterministic`.

    Returns:
        A CPU :class:`torch.Generator` seeded with ``seed`` for code that wants
        an explicit generator.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed={seed!r} must be a non-negative integer")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        set_deterministic(True)
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- speed plans
CALIBRATE_ENV = "MCUTILS_CALIBRATE"
FIXED_BATCH_SIZE = 128
BATCH_CANDIDATES = (64, 128, 256, 512)


@dataclass(frozen=True)
class Plan:
    """How to run a model fast on this machine: memory format and inference batch size.

    Made by :func:`prepare`. ``channels_last`` applies to 4-D inputs of conv nets; the
    batch size is the inference chunk (training batch sizes are hyperparameters and are
    never changed). ``autocast`` (bf16, CUDA only) is off unless asked for.
    """

    device: torch.device
    channels_last: bool
    batch_size: int
    autocast: bool = False
    source: str = "fixed"

    @property
    def memory_format(self) -> torch.memory_format:
        """The torch memory format of the plan."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the plan's device, in its memory format (4-D inputs only)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast_context(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when the plan asks for it, else a no-op."""
        if self.autocast and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _machine_key() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()}|{cpu}|{os.cpu_count()}"


def _architecture_key(model: nn.Module) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)}".encode())
    return h.hexdigest()[:16]


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def layout_hazards(model: nn.Module) -> list[str]:
    """Names of the convolutions whose weight gradient oneDNN computes wrongly in
    ``channels_last`` (an upstream bug of PyTorch 2.14's CPU kernels, see below).

    The rule, derived from ``benchmarks/layout_crash.py``: a ``Conv2d`` with a 1x1
    kernel, a stride above 1 and 2 to 7 input channels per group. On a CPU whose oneDNN
    runs its AVX2 kernels (any AVX2 machine without AVX-512, or ``ONEDNN_MAX_CPU_ISA=AVX2``),
    the weight gradient of such a layer in ``channels_last`` is wrong at two threads and
    corrupts the heap at one (``free(): invalid pointer``, bus errors). Its forward pass
    and input gradient are exact, and every other kernel size, stride and channel count
    measured agrees with the default layout. The narrow residual nets (``preresnet20``
    and ``resnet18_cifar`` at width 4) have such shortcuts.

    Returns:
        The module names (as in ``named_modules``), empty when the model is safe.
    """
    bad = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) \
                and tuple(m.stride) != (1, 1) and 2 <= m.in_channels // m.groups <= 7:
            bad.append(name)
    return bad


def _plans_file() -> Path:
    return cache_dir() / "runtime-plans.json"


def stored_plans() -> dict[str, list]:
    """The speed plans calibrated on this machine so far: key -> ``[channels_last,
    batch_size]``. The key holds the purpose, machine (host, CPU model, cores), thread
    count, torch version, device, architecture and input shape, so a plan is measured
    again whenever one of them changes."""
    path = _plans_file()
    return json.loads(path.read_text()) if path.exists() else {}


def forget_plans() -> int:
    """Delete the stored speed plans (they are measured again on next use, for example
    after a calibration taken while the machine was busy); returns how many there were."""
    from filelock import FileLock

    path = _plans_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        n = len(json.loads(path.read_text())) if path.exists() else 0
        path.unlink(missing_ok=True)
    return n


def _time_inference(model: nn.Module, example: torch.Tensor, device: torch.device,
                    channels_last: bool, batch_size: int, reps: int = 1) -> float:
    """Images per second of ``model`` on random inputs shaped like ``example``.

    Two batches (at least 256 images) per repetition: :func:`_calibrate` already takes
    the best of two interleaved rounds, and a longer timing made a cold calibration cost
    18-44 s per model and input size on 2 cores (small_cnn at 28-56 pixels)."""
    n = max(2 * batch_size, 256)
    x = torch.rand(n, *example.shape[1:], device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    best = math.inf
    with torch.inference_mode():
        model(x[:batch_size])  # warm-up
        for _ in range(reps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for i in range(0, n, batch_size):
                model(x[i:i + batch_size])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    return n / best


def _time_training(model: nn.Module, example: torch.Tensor, device: torch.device,
                   channels_last: bool, steps: int = 4) -> float:
    """Training steps per second (SGD on random data) at the example's batch size."""
    import torch.nn.functional as F

    x = torch.rand(*example.shape, device=device)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        num_classes = model(x[:1]).shape[1]
    y = torch.randint(0, num_classes, (len(x),), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - start)


def _calibrate(model: nn.Module, example: torch.Tensor, device: torch.device, conv: bool,
               purpose: str) -> tuple[bool, int]:
    """The fastest (channels_last, batch_size), measured in two interleaved rounds (the
    second in reverse order, to even out drifts in machine load)."""
    import copy

    probe = copy.deepcopy(model).to(device).eval()
    layouts = (False, True) if conv else (False,)
    sizes = BATCH_CANDIDATES if purpose == "inference" else (len(example),)
    configs = [(cl, bs) for cl in layouts for bs in sizes]
    scores: dict[tuple[bool, int], float] = {}
    for order in (configs, configs[::-1]):
        for cl, bs in order:
            net = probe.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            if purpose == "inference":
                rate = _time_inference(net, example, device, cl, bs)
            else:
                rate = _time_training(net, example, device, cl)
            scores[(cl, bs)] = max(scores.get((cl, bs), 0.0), rate)
    return max(scores, key=scores.get)


def prepare(model: nn.Module, example: torch.Tensor, device: str | torch.device | None = None,
            batch_size: int | None = None, channels_last: bool | None = None,
            autocast: bool = False, calibrate: bool | None = None,
            purpose: str = "inference") -> Plan:
    """The speed plan for running ``model`` on inputs like ``example`` on this machine.

    Chooses the memory format (``channels_last`` for conv nets on 4-D inputs) and the
    inference batch size by a short calibration (about a second or two for the small
    CNN), measured once per machine, thread count, torch version, device, architecture
    and input shape, and stored in the checkpoint cache (``runtime-plans.json``) so
    later runs on the machine make the same choices and repeat bit for bit. The
    measurement runs on a forked random stream, so a cold plan file and a stored plan
    leave the caller's draws the same. With
    ``calibrate=False`` (or the environment variable ``MCUTILS_CALIBRATE=0``, which the
    smoke profile sets) the fixed choices are used: ``channels_last`` for conv nets and
    batch size 128. An explicit ``batch_size`` or ``channels_last`` always wins, except
    that a training plan on a CPU never uses ``channels_last`` for a model with
    :func:`layout_hazards` (an explicit request raises :class:`~mcutils.core.checks.ParameterError`).

    The model is not modified; use :func:`prepared` to run it under the plan.

    Args:
        model: the model.
        example: one batch ``[N, ...]`` of inputs (only its shape is used).
        device: where it runs (default: the model's device).
        batch_size: inference batch size to use instead of the calibrated one.
        channels_last: memory format to use instead of the calibrated one.
        autocast: bf16 autocast on CUDA (keep it off where reported numbers are small
            differences, such as barrier gaps near 1e-3).
        calibrate: measure (default: unless ``MCUTILS_CALIBRATE=0``).
        purpose: ``"inference"`` (batch size and memory format are chosen) or
            ``"train"`` (only the memory format, measured with training steps at the
            example's batch size, which is the caller's hyperparameter).

    Returns:
        A :class:`Plan`.
    """
    dev = get_device(device) if device is not None else model_device(model)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ParameterError(f"batch_size={batch_size!r} must be a positive integer")
    if not isinstance(example, torch.Tensor) or example.dim() < 2:
        raise ParameterError("example must be a batch of inputs [N, ...]")
    if purpose not in ("inference", "train"):
        raise ParameterError(f"purpose={purpose!r} must be 'inference' or 'train'")
    conv = _has_conv(model) and example.dim() == 4
    # never train in channels_last where oneDNN's weight gradient is wrong
    unsafe = purpose == "train" and dev.type == "cpu" and conv and bool(layout_hazards(model))
    if unsafe:
        if channels_last:
            raise ParameterError(
                "channels_last training on a CPU is refused for this model: oneDNN computes "
                "wrong weight gradients (and corrupts memory at one thread) for its 1x1 "
                f"strided convolutions with 2-7 input channels {layout_hazards(model)}; "
                "see mcutils.core.runtime.layout_hazards")
        conv = False
    if calibrate is None:
        calibrate = os.environ.get(CALIBRATE_ENV, "1") != "0"
    fixed_bs = FIXED_BATCH_SIZE if purpose == "inference" else len(example)
    choice, source = (conv, fixed_bs), "fixed"
    if calibrate and (batch_size is None or channels_last is None):
        shape = tuple(example.shape[1:]) if purpose == "inference" else tuple(example.shape)
        key = "|".join([purpose, _machine_key(), str(torch.get_num_threads()),
                        torch.__version__, str(dev), _architecture_key(model), str(shape)])
        path = _plans_file()
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            plans = json.loads(path.read_text()) if path.exists() else {}
            if key in plans:
                choice, source = (bool(plans[key][0]), int(plans[key][1])), "stored"
            else:
                # measured on random inputs: the caller's random stream must not move,
                # or a cold plan file would change what the run draws afterwards
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    choice = _calibrate(model, example, dev, conv, purpose)
                source = "calibrated"
                plans[key] = [choice[0], choice[1]]
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(plans, indent=1, sort_keys=True))
                os.replace(tmp, path)
    cl = not unsafe and (choice[0] if channels_last is None else bool(channels_last))
    bs = choice[1] if batch_size is None else batch_size
    return Plan(device=dev, channels_last=cl and example.dim() == 4, batch_size=bs,
                autocast=bool(autocast) and dev.type == "cuda", source=source)


@contextlib.contextmanager
def prepared(model: nn.Module, plan: Plan) -> Iterator[nn.Module]:
    """Run ``model`` under ``plan``: its weights in the plan's memory format and on its
    device for the duration, then each parameter's original device and exact strides
    restored (values the block changed, as in training, are kept).

    Exact strides matter for kernels with one input channel: both layouts describe the
    same bytes, ``Tensor.contiguous`` keeps whichever strides it finds, and the strides
    decide which convolution kernel PyTorch runs later on the caller's model."""
    tensors = list(model.parameters()) + list(model.buffers())
    before = [(t.device, t.stride()) for t in tensors]
    # the copies are made outside inference mode, even when the caller is inside it:
    # weights made there would be inference tensors, unusable for training afterwards
    with torch.inference_mode(False):
        model.to(plan.device)
        if plan.channels_last:
            model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        with torch.inference_mode(False):
            for t, (dev, stride) in zip(list(model.parameters()) + list(model.buffers()),
                                        before):
                data = t.data.to(dev)
                if data.stride() != stride:
                    restored = torch.empty_strided(data.shape, stride, dtype=data.dtype,
                                                   device=data.device)
                    restored.copy_(data)
                    data = restored
                t.data = data


# ----------------------------------------------------------------------------- execution contexts
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
        from mcutils.core.runtime import get_device

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
    :class:`~mcutils.core.runtime.Plan`: feed inputs through ``plan.input`` in chunks of
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
    the machine's speed plan for such inputs (:func:`mcutils.core.runtime.prepare`; the batch
    size stays the caller's) for the duration, and get their exact strides back on exit
    (:func:`mcutils.core.runtime.prepared`). The format changes results at float rounding
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
