"""Scripts, style sheets and frames that the built pages would load over the network.

``make html`` ends with this check, so the book (maths included) renders offline;
``python -m mcutils.book offline _build/html`` lists offenders.

Used by the tooling, not by the chapters.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from mcutils.core.checks import ParameterError

__all__ = ["RemoteAsset", "remote_assets"]


class RemoteAsset(NamedTuple):
    """Something a built page would fetch from the network (see :func:`remote_assets`)."""

    page: str
    """The page, relative to the HTML folder."""
    tag: str
    """``script``, ``link`` or ``iframe`` (``script (inline)`` for a URL in script text)."""
    url: str


_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)


_INLINE_URL = re.compile(r"""["'`]((?:https?:)?//[^"'`\s]+)["'`]""", re.IGNORECASE)


_LOADED_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "import"}


def _page_assets(text: str) -> list[tuple[str, str]]:
    from html.parser import HTMLParser

    found: list[tuple[str, str]] = []

    class Parser(HTMLParser):
        in_script = False

        def handle_starttag(self, tag, attrs):
            a = {k.lower(): (v or "") for k, v in attrs}
            if tag == "script":
                self.in_script = not a.get("src")
                kind = a.get("type", "text/javascript").lower()
                if a.get("src") and _REMOTE.match(a["src"]):
                    found.append(("script", a["src"]))
                elif "json" in kind or "x-thebe" in kind or "math/" in kind:
                    self.in_script = False  # data, not code
            elif tag == "link" and _REMOTE.match(a.get("href", "")):
                if _LOADED_RELS & set(a.get("rel", "").lower().split()):
                    found.append(("link", a["href"]))
            elif tag == "iframe" and _REMOTE.match(a.get("src", "")):
                found.append(("iframe", a["src"]))

        def handle_endtag(self, tag):
            if tag == "script":
                self.in_script = False

        def handle_data(self, data):
            if self.in_script:
                found.extend(("script (inline)", m.group(1))
                             for m in _INLINE_URL.finditer(data))

    Parser(convert_charrefs=True).feed(text)
    return found


def remote_assets(html_dir: str | Path) -> list[RemoteAsset]:
    """Scripts, style sheets and frames that built pages would load over the network.

    Scans every ``.html`` file under ``html_dir`` for ``<script src>``, ``<link href>``
    (style sheets, preloads) and ``<iframe src>`` that start with ``http:``, ``https:`` or
    ``//``, and for such URLs quoted in inline scripts (a script that loads another,
    e.g. a ``require.js`` configuration). JSON and other data blocks are skipped. The
    book must render offline, maths included, so ``make html`` fails unless this is
    empty.

    Args:
        html_dir: the built site (``_build/html``).

    Returns:
        One :class:`RemoteAsset` per occurrence, sorted by page.

    Raises:
        ParameterError: the folder has no HTML page.
    """
    root = Path(html_dir)
    pages = sorted(root.rglob("*.html"))
    if not pages:
        raise ParameterError(f"{root}: no built HTML pages (run `make html` first)")
    out = []
    for page in pages:
        for tag, url in _page_assets(page.read_text(encoding="utf-8", errors="replace")):
            out.append(RemoteAsset(str(page.relative_to(root)), tag, url))
    return out
