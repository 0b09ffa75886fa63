"""Device choice, seeding and determinism.

Everything random in the book is seeded through :func:`seed_everything`. Parameter
validation lives in :mod:`mcutils.params` (it needs the dataset and model registries,
which import this module).

Used by every chapter (00-06): each seeds its randomness once with
:func:`seed_everything` right after its imports, and chapters 01, 02 and 04 resolve their
``device`` parameter with :func:`get_device`.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ParameterError",
    "get_device",
    "seed_everything",
    "set_deterministic",
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
