"""Read what executed chapters glued: compare two runs, and count the verdicts.

* :func:`glued` reads every glued name and its text from an executed notebook;
* :func:`compare` pairs two runs' glued values (how a change that should alter only
  structure or speed is checked: identical numbers, identical verdicts);
* :func:`verdict_totals` and :func:`totals_markdown` count the claims' verdicts over the
  executed chapters, for the top of the results page (``python -m mcutils.book totals``
  writes ``book/_generated/results_totals.md`` before the HTML is built);
* :func:`headline_failures` and :func:`failures_markdown` list the claims not reproduced,
  each with the chapter's one-line reason and a link to its summary
  (``book/_generated/results_failures.md``), with the chapter titles of
  :func:`chapter_links`.

Used by the tooling (``python -m mcutils.book glue-diff``, ``totals``, the Makefile and
``benchmarks/glue_diff.py``) for every chapter (00-07), not by the chapters.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["glued", "compare", "verdict_totals", "totals_markdown", "chapter_links",
           "headline_failures", "failures_markdown", "NUMBER"]

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


def glued(notebook: Path) -> dict[str, str]:
    """Glued name -> its text/plain value, from an executed notebook."""
    out = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                data = o.get("data", {})
                text = data.get(meta["mime_prefix"] + "text/plain", "")
                out[meta["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def _skipped(name: str) -> bool:
    return "seconds" in name or "provenance" in name


def compare(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """Identical count, largest number difference, names differing in words, names in one
    run only. Wall times and provenance (names with ``seconds`` or ``provenance``) are
    skipped: they differ between any two runs."""
    same, worst, worst_name, words = 0, 0.0, None, []
    for name in sorted(set(before) & set(after)):
        if _skipped(name):
            continue
        a, b = before[name], after[name]
        if a == b:
            same += 1
            continue
        if NUMBER.sub("#", a) != NUMBER.sub("#", b):
            words.append(name)
            continue
        for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
            d = abs(float(x) - float(y))
            if d > worst or worst_name is None:
                worst, worst_name = d, name
    compared = [k for k in set(before) & set(after) if not _skipped(k)]
    return dict(same=same, compared=len(compared), worst=worst, worst_name=worst_name,
                words=words, only_before=sorted(set(before) - set(after)),
                only_after=sorted(set(after) - set(before)))


def _literal(text: str) -> Any:
    """A glued value's text read back as a Python literal, ``nan`` and ``inf`` included."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        for name, child in ast.iter_fields(node):
            values = child if isinstance(child, list) else [child]
            for i, v in enumerate(values):
                if isinstance(v, ast.Name) and v.id in ("nan", "inf"):
                    new = ast.Constant(float(v.id))
                    if isinstance(child, list):
                        child[i] = new
                    else:
                        setattr(node, name, new)
    return ast.literal_eval(tree)


def verdict_totals(folder: Path) -> dict[str, dict[str, int]]:
    """Per executed chapter in ``folder`` (``NN_*.ipynb``): how many claims got each
    verdict, how many are asserted, and how many asserted ones carry a negative control."""
    totals = {}
    for nb in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        chapter = nb.name[:2]
        text = glued(nb).get(f"ch{chapter}_claims")
        if text is None:
            continue
        claims = _literal(text)
        row = {v: sum(c["verdict"] == v for c in claims.values()) for v in VERDICTS}
        asserted = [c for c in claims.values() if c.get("expected")]
        row["asserted"] = len(asserted)
        row["asserted with a control"] = sum("control" in c for c in asserted)
        totals[chapter] = row
    return totals


def chapter_links(folder: Path) -> dict[str, dict[str, str]]:
    """Per executed chapter in ``folder``: its title (the first Markdown heading), a MyST
    link to it (``{doc}``, relative to ``book/results.md``), and a link to its summary
    section (``{ref}`` to the label ``chNN-summary`` where the chapter defines it, else
    the chapter link)."""
    out = {}
    for nb in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        chapter = nb.name[:2]
        cells = json.loads(nb.read_text()).get("cells", [])
        text = "\n".join("".join(c.get("source", "")) for c in cells
                         if c.get("cell_type") == "markdown")
        heading = re.search(r"^# +(.+)$", text, re.M)
        title = heading.group(1).strip() if heading else f"Chapter {chapter}"
        doc = f"{{doc}}`{title} <chapters/{nb.stem}>`"
        label = f"ch{chapter}-summary"
        summary = (f"{{ref}}`summary <{label}>`" if f"({label})=" in text
                   else f"{{doc}}`chapter <chapters/{nb.stem}>`")
        out[chapter] = {"title": title, "doc": doc, "summary": summary}
    return out


def headline_failures(folder: Path) -> list[dict[str, Any]]:
    """The claims of the executed chapters in ``folder`` that were *not reproduced*, in
    chapter order: chapter, claim id, statement, estimate, interval, test and the
    chapter's one-line reason (the claim's ``note``, where it gives one)."""
    from mcutils.core.report import format_number

    rows = []
    for nb in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        chapter = nb.name[:2]
        text = glued(nb).get(f"ch{chapter}_claims")
        if text is None:
            continue
        for cid, c in _literal(text).items():
            if c["verdict"] == "not reproduced":
                rows.append({"chapter": chapter, "claim": cid, "statement": c["statement"],
                             "estimate": c["estimate"], "ci": c["ci"],
                             "test": f"{c['direction']} {format_number(c['threshold'])}",
                             "reason": c.get("note")})
    return rows


def failures_markdown(failures: list[dict[str, Any]],
                      links: dict[str, dict[str, str]] | None = None) -> str:
    """The headline failures as a Markdown list: each claim with its numbers, the
    chapter's reason and a link to the chapter's summary."""
    from mcutils.core.report import format_number

    if not failures:
        return "*No claim was found not reproduced in the executed chapters.*\n"
    links = links or {}
    lines = []
    for f in failures:
        where = links.get(f["chapter"], {})
        reason = f["reason"] or "the chapter gives no one-line reason"
        lines.append(
            f"- **Chapter {f['chapter']}**, `{f['claim']}`: {f['statement']} "
            f"{format_number({'estimate': f['estimate'], 'ci': f['ci']})} against "
            f"{f['test']}. *Why:* {reason} "
            f"({where.get('summary', 'see chapter ' + f['chapter'])})")
    return "\n".join(lines) + "\n"


def totals_markdown(totals: dict[str, dict[str, int]],
                    links: dict[str, dict[str, str]] | None = None) -> str:
    """The verdict counts as a Markdown table, one row per chapter (its title linked,
    where ``links`` has it) and a total row."""
    if not totals:
        return "*No executed chapter was found: run `make book` first.*\n"
    links = links or {}
    cols = [*VERDICTS, "asserted", "asserted with a control"]
    lines = ["| chapter | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for chapter, row in totals.items():
        name = f"{chapter} {links[chapter]['doc']}" if chapter in links else chapter
        lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in cols) + " |")
    lines.append("| **all** | " + " | ".join(
        f"**{sum(r[c] for r in totals.values())}**" for c in cols) + " |")
    return "\n".join(lines) + "\n"
