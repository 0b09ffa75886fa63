"""Device choice, seeding, determinism and parameter validation.

Everything random in the book is seeded through :func:`seed_everything`, and every
notebook calls :func:`validate_params` right after its ``parameters`` cell so that a
bad name or value fails in seconds with one message, before any heavy work.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ParameterError",
    "get_device",
    "seed_everything",
    "set_deterministic",
    "validate_params",
    "repo_root",
    "profile_names",
]


class ParameterError(ValueError):
    """Raised when a notebook or function parameter is invalid."""


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


def repo_root() -> Path:
    """The repository root (the folder holding ``profiles/``), or the cwd if unknown."""
    env = os.environ.get("MCUTILS_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        if (parent / "profiles").is_dir() and (parent / "notebooks").is_dir():
            return parent
    return Path.cwd()


def profile_names() -> list[str]:
    """Names of the papermill profiles in ``profiles/`` (``smoke``, ``cpu``, ``gpu`` ...)."""
    folder = repo_root() / "profiles"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _known_choices() -> dict[str, list[str]]:
    # imported lazily: data and models import this module
    from mcutils import data, models

    return {
        "dataset": list(data.DATASETS),
        "model": list(models.MODELS) + ["torchvision:<name>"],
        "profile": profile_names(),
    }


def _check_choice(name: str, value: Any, valid: list[str]) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if name == "model" and isinstance(v, str) and v.startswith("torchvision:"):
            from mcutils import models

            try:
                models.check_model_name(v)
            except ParameterError as exc:
                return str(exc)
            continue
        if v not in valid:
            return f"{name}={v!r} is not known; valid values: {', '.join(map(str, valid))}"
    return None


def _check_range(name: str, value: Any, bounds: tuple) -> str | None:
    low, high = bounds[0], bounds[1]
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return f"{name}={v!r} must be a number"
        if (low is not None and v < low) or (high is not None and v > high):
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            return f"{name}={v!r} is out of range; valid range: [{lo}, {hi}]"
    return None


def validate_params(
    params: Mapping[str, Any],
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    choices: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """Check a notebook's parameters and raise one clear error listing every problem.

    Names with a registry are checked automatically: ``dataset`` and
    ``*_dataset`` against :data:`mcutils.data.DATASETS`, ``model`` and ``*_model``
    (or lists of them) against :data:`mcutils.models.MODELS`, ``profile`` against
    ``profiles/*.yaml`` and ``device`` by :func:`get_device`.

    Args:
        params: parameter name -> value (typically ``dict(dataset=dataset, ...)``).
        ranges: name -> ``(low, high)`` inclusive bounds (``None`` for open);
            lists of numbers are checked element-wise.
        choices: name -> iterable of valid values for other names.

    Raises:
        ParameterError: naming each bad parameter with its valid values or range.
    """
    known = _known_choices()
    problems: list[str] = []
    for name, value in params.items():
        base = name.rsplit("_", 1)[-1] if name.endswith(("_dataset", "_model")) else name
        if base in ("models", "datasets"):
            base = base[:-1]
        if base in known:
            msg = _check_choice(name if base == name else base, value, known[base])
            if msg:
                problems.append(msg.replace(f"{base}=", f"{name}=", 1))
        elif name == "device":
            try:
                get_device(value)
            except ParameterError as exc:
                problems.append(str(exc))
    for name, valid in (choices or {}).items():
        if name not in params:
            raise KeyError(f"choices given for {name!r}, which is not among params")
        msg = _check_choice(name, params[name], list(valid))
        if msg:
            problems.append(msg)
    for name, bounds in (ranges or {}).items():
        if name not in params:
            raise KeyError(f"range given for {name!r}, which is not among params")
        msg = _check_range(name, params[name], bounds)
        if msg:
            problems.append(msg)
    if problems:
        raise ParameterError("invalid parameters:\n  " + "\n  ".join(problems))
