"""Parameter validation for chapters and the runner.

Every notebook calls :func:`validate_params` right after its ``parameters`` cell, so a
bad name or value fails within seconds with one message naming each bad parameter and
its valid values or range, before any heavy work. Registry names (datasets, models,
profiles) are checked against :data:`mcutils.data.registry.DATASETS`, :data:`mcutils.models.MODELS`
and ``profiles/*.yaml``. Used by every chapter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from mcutils import data, models
from mcutils.core.checks import ParameterError
from mcutils.core.profiles import profile_names
from mcutils.core.runtime import get_device

__all__ = ["ParameterError", "validate_params"]


def _known_choices() -> dict[str, list[str]]:
    return {
        "dataset": list(data.DATASETS),
        "model": list(models.MODELS) + ["torchvision:<name>"],
        "profile": profile_names(),
    }


def _check_choice(name: str, value: Any, valid: list[str]) -> str | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if name == "model" and isinstance(v, str) and v.startswith("torchvision:"):
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
    allow_none: Iterable[str] = (),
) -> None:
    """Check a notebook's parameters and raise one clear error listing every problem.

    Names with a registry are checked automatically: ``dataset`` and
    ``*_dataset`` against :data:`mcutils.data.registry.DATASETS`, ``model`` and ``*_model``
    (or lists of them) against :data:`mcutils.models.MODELS`, ``profile`` against
    ``profiles/*.yaml`` and ``device`` by :func:`~mcutils.core.runtime.get_device`.

    Args:
        params: parameter name -> value (typically ``dict(dataset=dataset, ...)``).
        ranges: name -> ``(low, high)`` inclusive bounds (``None`` for open);
            lists of numbers are checked element-wise.
        choices: name -> iterable of valid values for other names.
        allow_none: names whose value may be ``None`` (for example ``train_subset``,
            where ``None`` means the whole split); their other checks apply only to
            values other than ``None``. A ``None`` elsewhere is an error.

    Raises:
        ParameterError: naming each bad parameter with its valid values or range.
    """
    known = _known_choices()
    nullable = set(allow_none)
    unknown_nullable = sorted(nullable - set(params))
    if unknown_nullable:
        raise KeyError(f"allow_none names {unknown_nullable}, which are not among params")
    problems: list[str] = []
    for name, value in params.items():
        if value is None and name in nullable:
            continue
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
        if params[name] is None and name in nullable:
            continue
        msg = _check_choice(name, params[name], list(valid))
        if msg:
            problems.append(msg)
    for name, bounds in (ranges or {}).items():
        if name not in params:
            raise KeyError(f"range given for {name!r}, which is not among params")
        if params[name] is None and name in nullable:
            continue
        msg = _check_range(name, params[name], bounds)
        if msg:
            problems.append(msg)
    if problems:
        raise ParameterError("invalid parameters:\n  " + "\n  ".join(problems))
