"""Parameter validation for chapters and the runner.

Each chapter declares its parameters once, as a :class:`ParameterSchema` in its
chapter module: defaults, help, ranges and cross-checks. The notebook's ``parameters``
cell is rendered from it, and the hidden cell after it is one call of
:meth:`ParameterSchema.validate` (which uses :func:`validate_params`), so a bad name or
value fails within seconds with one message naming each bad parameter and its valid
values or range, before any heavy work. Registry names (datasets, models,
profiles) are checked against :data:`mcutils.data.registry.DATASETS`, :data:`mcutils.models.MODELS`
and ``profiles/*.yaml``. Used by every chapter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcutils import data, models
from mcutils.core.checks import ParameterError
from mcutils.core.profiles import profile_names
from mcutils.core.runtime import get_device

__all__ = ["Param", "ParameterError", "ParameterSchema", "validate_params"]


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


def _literal(value: Any) -> str:
    """A default as the notebook writes it: strings in double quotes, containers spelled out."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass(frozen=True)
class Param:
    """One parameter of a chapter: its default, one line of help, and what is valid.

    Args:
        default: the cpu profile's value, written into the notebook's ``parameters`` cell.
        help: the comment shown after the assignment in that cell.
        range: inclusive ``(low, high)`` bounds (``None`` for open), element-wise for lists.
        choices: the valid values, for names without a registry.
        nullable: ``None`` is valid (for example "the whole split").
        group: a comment line printed above the first parameter of each group.
    """

    default: Any
    help: str = ""
    range: tuple[float | None, float | None] | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    group: str | None = None


Check = Callable[[Mapping[str, Any]], "str | None"]


class ParameterSchema:
    """A chapter's parameters, declared once: defaults, help, ranges and cross-checks.

    The notebook's ``parameters`` cell is :meth:`cell_source` (a test keeps them equal;
    ``python -m mcutils.book params --write`` rewrites the cells), and its hidden
    validation cell is the one call :meth:`validate`. Profiles are checked against the
    same schema before any chapter runs.

    Args:
        chapter: the chapter's two-digit number.
        params: name -> :class:`Param`, in the order of the cell.
        checks: functions of the validated parameters that return a message for a
            combination that is invalid (``None`` when it is fine).
    """

    def __init__(self, chapter: str, params: Mapping[str, Param],
                 checks: Sequence[Check] = ()) -> None:
        if not params:
            raise ValueError("a schema needs at least one parameter")
        for name in params:
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a Python name")
        self.chapter = chapter
        self.params = dict(params)
        self.checks = tuple(checks)

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def cell_source(self) -> str:
        """The source of the notebook's ``parameters`` cell: one commented assignment per
        parameter, grouped as declared."""
        lines = []
        for name, p in self.params.items():
            if p.group:
                lines.append(f"# {p.group}")
            line = f"{name} = {_literal(p.default)}"
            lines.append(f"{line}  # {p.help}" if p.help else line)
        return "\n".join(lines)

    def validate(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """Check the chapter's parameters as they stand in ``namespace`` (the notebook's
        globals after papermill's injection) and return them as a dict.

        Raises:
            ParameterError: one message naming every bad parameter with its valid values
                or range, and every failed cross-check.
        """
        missing = [n for n in self.params if n not in namespace]
        if missing:
            raise ParameterError(f"chapter {self.chapter}: parameters not set: {', '.join(missing)}")
        values = {n: namespace[n] for n in self.params}
        nullable = [n for n, p in self.params.items() if p.nullable]
        problems: list[str] = []
        for n, p in self.params.items():
            if values[n] is None and not p.nullable:
                problems.append(f"{n}=None is not allowed")
        try:
            validate_params(
                {n: v for n, v in values.items() if v is not None or n in nullable},
                ranges={n: p.range for n, p in self.params.items()
                        if p.range is not None and (values[n] is not None or p.nullable)},
                choices={n: p.choices for n, p in self.params.items()
                         if p.choices is not None and (values[n] is not None or p.nullable)},
                allow_none=[n for n in nullable],
            )
        except ParameterError as exc:
            problems.extend(str(exc).split("\n  ")[1:])
        if not problems:
            for check in self.checks:
                msg = check(values)
                if msg:
                    problems.append(msg)
        if problems:
            raise ParameterError(f"chapter {self.chapter}: invalid parameters:\n  "
                                 + "\n  ".join(problems))
        return values
