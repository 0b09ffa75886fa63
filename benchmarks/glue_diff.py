"""Compare the glued results of two runs of the book, chapter by chapter.

Usage::

    python benchmarks/glue_diff.py BEFORE_DIR AFTER_DIR [--chapters 01 04]

Each folder holds executed notebooks (``book/chapters`` of ``make book``, or the
``--output`` of ``python -m mcutils.book execute``). For every glued name that both runs
record, the numbers in its text are paired in order and compared. The script prints,
per chapter, how many glued values are identical, the largest absolute difference among
the others (and the name it occurs in), the glued names whose text differs in something
other than numbers (a verdict word, say), and the names only one run has. Wall times
and provenance (names containing ``seconds`` or ``provenance``) are skipped: they differ
between any two runs.

It is how a change that should only alter speed (a memory format, a batch size) is
checked against the chapters' numbers: identical verdicts, numbers within float rounding.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf")


def glued(notebook: Path) -> dict[str, str]:
    """Glued name -> its text/plain value, from an executed notebook."""
    out = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                data = o.get("data", {})
                text = data.get(meta["mime_prefix"] + "text/plain", "")
                out[meta["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def _skipped(name: str) -> bool:
    return "seconds" in name or "provenance" in name


def compare(before: dict[str, str], after: dict[str, str]) -> dict:
    """Identical count, largest number difference, names differing in words, names in one run."""
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
    return dict(same=same, worst=worst, worst_name=worst_name, words=words,
                only_before=sorted(set(before) - set(after)),
                only_after=sorted(set(after) - set(before)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--chapters", nargs="*", default=None)
    args = ap.parse_args()
    for nb in sorted(args.before.glob("[0-9][0-9]_*.ipynb")):
        chapter = nb.name[:2]
        other = args.after / nb.name
        if (args.chapters and chapter not in args.chapters) or not other.exists():
            continue
        before, after = glued(nb), glued(other)
        r = compare(before, after)
        n = len([k for k in set(before) & set(after) if not _skipped(k)])
        print(f"chapter {chapter}: {r['same']} of {n} glued values identical; largest number "
              f"difference {r['worst']:.3g} ({r['worst_name']}); differing in words: "
              f"{r['words'] or 'none'}; only before: {r['only_before'] or 'none'}; "
              f"only after: {r['only_after'] or 'none'}")


if __name__ == "__main__":
    main()
