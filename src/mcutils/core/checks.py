"""The library's parameter error and the argument checks every layer uses.

Used by every module that checks its arguments before heavy work (a bad value fails in
milliseconds with a message naming it), and by every chapter through
:func:`mcutils.params.validate_params`.
"""

from __future__ import annotations

__all__ = ["ParameterError", "check_positive", "check_nonneg"]


class ParameterError(ValueError):
    """Raised when a notebook or function parameter is invalid."""


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
