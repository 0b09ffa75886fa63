"""What a reader must never see on a chapter page, checked on the built HTML.

:func:`chapter_page_problems` reads each built chapter page (``book/chapters/NN_*.html``
under the HTML folder) and lists:

* plumbing shown to the reader: a ``.record(`` call or ``NBVAL_CHECK_OUTPUT``;
* a page without a numbered figure caption (``<figcaption>``);
* a page whose claims are not shown as the HTML claims table.

:func:`bounded_interval_problems` reads the executed notebooks' glued claims and lists
every claim of a rate, fraction, accuracy or AUROC whose interval leaves [0, 1].

``make html`` runs both (``python -m mcutils.book pages _build/html``).

Used by the tooling for every chapter (00-07), not by the chapters.
"""

from __future__ import annotations

import re
from pathlib import Path

from mcutils.core.checks import ParameterError
from mcutils.tooling.glue import _literal, glued

__all__ = ["chapter_page_problems", "bounded_interval_problems"]

_BOUNDED = re.compile(r"\b(fraction|rate|accuracy|ASR|AUROC|binomial|connected)\b", re.IGNORECASE)
# a difference of two bounded statistics lies in [-1, 1], not [0, 1]
_DIFFERENCE = re.compile(r"\b(difference|minus|loses|than|against)\b", re.IGNORECASE)


def chapter_page_problems(html_dir: str | Path, figures: bool = True) -> list[str]:
    """Problems of the built chapter pages, one message each (empty: all fine).

    Args:
        html_dir: the built site (``_build/html``).
        figures: require a ``<figcaption>`` on every chapter page.

    Raises:
        ParameterError: no chapter page under ``html_dir``.
    """
    pages = sorted(Path(html_dir).glob("book/chapters/[0-9][0-9]_*.html"))
    if not pages:
        raise ParameterError(f"no built chapter page under {html_dir}/book/chapters: build "
                             "the book first (make book)")
    problems = []
    for page in pages:
        text = page.read_text(errors="replace")
        for needle in (".record(", "NBVAL_CHECK_OUTPUT"):
            if needle in text:
                problems.append(f"{page.name}: shows {needle!r} to the reader")
        if figures and "<figcaption" not in text:
            problems.append(f"{page.name}: no figure has a caption")
        if "mcutils-claims" not in text:
            problems.append(f"{page.name}: no HTML claims table")
    return problems


def bounded_interval_problems(chapters_dir: str | Path) -> list[str]:
    """Claims of a bounded statistic (a rate, fraction, accuracy or AUROC, by their
    statement or method) whose estimate or interval leaves [0, 1], in the executed
    notebooks of ``chapters_dir``."""
    problems = []
    for nb in sorted(Path(chapters_dir).glob("[0-9][0-9]_*.ipynb")):
        text = glued(nb).get(f"ch{nb.name[:2]}_claims")
        if text is None:
            continue
        for cid, c in _literal(text).items():
            words = f"{c.get('statement', '')} {c.get('method', '')}"
            if not _BOUNDED.search(words):
                continue
            low = -1.0 if _DIFFERENCE.search(words) else 0.0
            values = [c["estimate"], *c["ci"]]
            if any(v == v and not low <= v <= 1 for v in values):  # v == v: not NaN
                problems.append(f"{nb.name}: {cid} is bounded, but its interval "
                                f"{c['estimate']} {c['ci']} leaves [{low:g}, 1]")
    return problems
