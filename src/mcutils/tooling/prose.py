"""Numbers typed into a chapter's prose instead of quoted from the executed code.

:func:`untyped_numbers` lists decimal numbers in a chapter's markdown cells that are not
inside a ``{glue}`` role, except the paper values and parameter defaults allowed in
``book/allowed_numbers.yml`` (:func:`load_allowed_numbers`). ``make test`` runs it
through ``tests/test_prose.py``; ``python -m mcutils.book prose`` lists offenders.

It reads every chapter, and is not used by the chapters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.tooling.notebooks import _read_notebook, _source

__all__ = ["UntypedNumber", "markdown_numbers", "untyped_numbers", "load_allowed_numbers"]


class UntypedNumber(NamedTuple):
    """A decimal number typed into a chapter's prose (see :func:`untyped_numbers`)."""

    cell: int
    """Index of the markdown cell in the notebook (0-based, counting every cell)."""
    line: int
    """Line in that cell (1-based)."""
    number: str
    """The number as written (the key to use in ``book/allowed_numbers.yml``)."""
    text: str
    """The whole line, for context."""


# What is *not* prose: quoted glue, references, link targets, comments.
_GLUE_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{glue(?::[\w-]+)?\}.*?^(?P=fence)[ \t]*$",
                         re.MULTILINE | re.DOTALL)


_GLUE_ROLE = re.compile(r"\{glue(?::[\w-]+)?\}`[^`]*`")


_REF_ROLE = re.compile(r"\{(?:cite(?::[\w-]+)?|doc|ref|numref|eq|download|term|"
                       r"py:[\w-]+)\}`[^`]*`")


_LINK_TARGET = re.compile(r"(?<=\])\([^)\s]*(?:\s+\"[^\"]*\")?\)|<https?://[^>]*>|https?://\S+")


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


# A decimal number: digits.digits (thousands separators and dotted versions kept in one
# token, e.g. 1,234.5 and 2.14.1), a leading-dot .5, or scientific 1e-3 / 2.5E+4.
_DECIMAL = re.compile(
    r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)+|\d+(?:\.\d+)+|\.\d+)(?:[eE][-+]?\d+)?"
    r"|(?<![\w.])\d+[eE][-+]?\d+(?!\w)")


def _blank(match: re.Match) -> str:
    """Replace a match by spaces, keeping its newlines (so line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def markdown_numbers(text: str) -> list[tuple[int, str]]:
    """Decimal numbers typed into a piece of MyST markdown, as ``(line, number)`` pairs.

    What counts as a decimal number: ``digits.digits`` (``0.88``, ``12.5%``, the
    ``1,234.5`` of a thousands separator, a dotted version ``2.14.1`` as one token), a
    leading-dot ``.5``, and scientific notation (``1e-3``, ``2.5E+4``), wherever they
    stand: in sentences, ``$math$`` and ``$$math$$``, inline code, code fences and
    tables. A sign is not part of the token (``-0.5`` is reported as ``0.5``).
    Integers (``60,000``, ``10^{-3}``, ``88%``) are not decimal numbers.

    What is not prose and so not scanned: the content of ``{glue}`` roles and
    ``{glue}`` directives (quoted from the executed code, e.g.
    ``{glue:text}`ch04_auroc:.2f` ``), of reference roles (``{cite}``, ``{doc}``,
    ``{ref}``, ``{numref}``, ``{eq}``, ``{download}``, ``{term}``, ``{py:...}``), link
    targets and URLs, and HTML comments.
    """
    for pattern in (_GLUE_FENCE, _GLUE_ROLE, _REF_ROLE, _LINK_TARGET, _COMMENT):
        text = pattern.sub(_blank, text)
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        out.extend((lineno, m.group(0)) for m in _DECIMAL.finditer(line))
    return out


def untyped_numbers(notebook: str | Path | Mapping[str, Any],
                    allowed: Iterable[str] = ()) -> list[UntypedNumber]:
    """Decimal numbers typed into a chapter's markdown cells instead of glued.

    Every measured result in prose is quoted from the executed code through a
    ``{glue:text}`` role, so a re-run with other parameters describes itself correctly.
    This lists what breaks that rule; see :func:`markdown_numbers` for what counts as a
    decimal number and what is skipped.

    Args:
        notebook: a path to an ``.ipynb`` file, or the notebook as a JSON mapping.
        allowed: numbers that may be typed, exactly as written (the chapter's section of
            ``book/allowed_numbers.yml``: paper values and parameter defaults).

    Returns:
        One :class:`UntypedNumber` per occurrence, in reading order; empty when the
        prose is clean.
    """
    allowed = {str(a) for a in allowed}
    nb = _read_notebook(notebook)
    out = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        source = _source(cell)
        lines = source.splitlines()
        for lineno, number in markdown_numbers(source):
            if number not in allowed:
                out.append(UntypedNumber(index, lineno, number, lines[lineno - 1].strip()))
    return out


def load_allowed_numbers(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """Read the allow-list of typed numbers, ``book/allowed_numbers.yml``.

    Format: one section per chapter (a quoted two-digit number), mapping each allowed
    number, written exactly as in the prose and quoted, to its source::

        "04":
          "5.45": "median barrier gap real-adversarial, ImageNet, paper's committed CSV"
          "0.1": "parameter default eps_linf (L-inf radius, pixel units)"

    Args:
        path: the file (default ``book/allowed_numbers.yml`` in the repository).

    Returns:
        ``{chapter: {number: source}}`` (chapters without a section are absent).

    Raises:
        ParameterError: an unquoted number (YAML would turn ``0.10`` into ``0.1``), a
            chapter key that is not two digits, or a missing source.
    """
    path = Path(path) if path is not None else repo_root() / "book" / "allowed_numbers.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    out: dict[str, dict[str, str]] = {}
    for chapter, entries in (data or {}).items():
        key = str(chapter).zfill(2)
        if not re.fullmatch(r"\d\d", key):
            raise ParameterError(f"{path}: section {chapter!r} is not a two-digit chapter")
        if key in out:
            raise ParameterError(f"{path}: chapter {key} has a section twice")
        out[key] = {}
        for number, source in (entries or {}).items():
            if not isinstance(number, str):
                raise ParameterError(f"{path}: chapter {key}: quote the number {number!r} "
                                     "(write it exactly as the prose does)")
            if not isinstance(source, str) or not source.strip():
                raise ParameterError(f"{path}: chapter {key}: {number!r} needs its source")
            out[key][number] = source
    return out
