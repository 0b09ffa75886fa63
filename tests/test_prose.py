"""No typed results: every decimal number in a chapter's prose is glued or allowed.

The scanner is :func:`mcutils.tooling.prose.untyped_numbers`; the allow-list is
``book/allowed_numbers.yml`` (paper values and parameter defaults, each with its source).
"""

from __future__ import annotations

import pytest

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.tooling import notebooks, prose

CHAPTERS = notebooks.chapters()
ALLOWED = prose.load_allowed_numbers()


def _notebook(*markdown: str, code: str = "x = 0.5") -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": m} for m in markdown]
    cells.append({"cell_type": "code", "metadata": {}, "source": code, "outputs": [],
                  "execution_count": None})
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("text, numbers", [
    ("The accuracy is 0.88 on the test set.", ["0.88"]),
    ("Inline maths $p_c(2) \\approx 0.5927$ and $\\alpha=.5$.", ["0.5927", ".5"]),
    ("$$\\lambda = 1e-3,\\quad \\beta=2.5E+4$$", ["1e-3", "2.5E+4"]),
    ("a gain of 12.5% (from 1,234.5 s), torch 2.14.1", ["12.5", "1,234.5", "2.14.1"]),
    ("set `eps=0.05` or -0.5", ["0.05", "0.5"]),
    ("| model | acc |\n|---|---|\n| cnn | 0.91 |", ["0.91"]),
    ("```bash\npython run.py -p lr 0.01\n```", ["0.01"]),
])
def test_typed_decimals_are_found(text, numbers):
    assert [n for _, n in prose.markdown_numbers(text)] == numbers


@pytest.mark.parametrize("text", [
    "The accuracy is {glue:text}`ch00_test_accuracy:.3f` on 10,000 images.",
    "Quoted {glue}`ch04_auroc` and {glue:md}`ch01_table` and {glue:any}`ch02_x`.",
    "```{glue} ch04_claims_table\n:doc: chapters/04_x.ipynb 0.5\n```",
    ":::{glue:figure} ch05_fig\nCaption 0.5\n:::",
    "See {cite}`vrabel2025input` and {doc}`/book/api` and {py:func}`mcutils.x1.f`.",
    "The paper [arXiv](https://arxiv.org/abs/2409.05800) and <https://x.org/v1.2>.",
    "Integers: 60,000 images, 28x28, 10^{-3}, 88%, 3 seeds, ch04_auroc.",
    "A comment <!-- 0.5 is hidden --> is not prose.",
    "",
])
def test_glue_references_and_integers_are_not_flagged(text):
    assert prose.markdown_numbers(text) == []


def test_line_numbers_survive_removed_multiline_blocks():
    text = "```{glue} ch01_a\n:doc: x.ipynb\n```\nline four has 0.3\n<!--\n0.4\n-->\nand 0.7"
    assert prose.markdown_numbers(text) == [(4, "0.3"), (8, "0.7")]


def test_untyped_numbers_negative_control():
    """A typed result is reported with its cell and line; gluing or allowing it clears it."""
    nb = _notebook("# Title\n", "We measured\nan AUROC of 0.93 [0.90, 0.95].")
    hits = prose.untyped_numbers(nb)
    assert [(h.cell, h.line, h.number) for h in hits] == [(1, 2, "0.93"), (1, 2, "0.90"),
                                                          (1, 2, "0.95")]
    assert "AUROC of 0.93" in hits[0].text
    assert [h.number for h in prose.untyped_numbers(nb, allowed=["0.90", "0.95"])] == ["0.93"]
    glued = _notebook("# Title\n", "an AUROC of {glue:text}`ch04_auroc:.2f` "
                      "({glue:text}`ch04_auroc_ci`).")
    assert prose.untyped_numbers(glued) == []
    # code cells are not prose
    assert prose.untyped_numbers(_notebook(code="lr = 0.001")) == []


def test_untyped_numbers_reads_files(tmp_path):
    import json

    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(_notebook(["split ", "into 0.25 lines"])))
    assert [h.number for h in prose.untyped_numbers(path)] == ["0.25"]


def test_allow_list_format_is_checked(tmp_path):
    path = tmp_path / "allowed.yml"
    path.write_text('"04":\n  "5.45": "paper, table 1"\n4:\n  "0.10": "default eps"\n')
    with pytest.raises(ParameterError, match="twice"):
        prose.load_allowed_numbers(path)
    path.write_text('4:\n  "0.10": "default eps"\n')
    assert prose.load_allowed_numbers(path) == {"04": {"0.10": "default eps"}}
    path.write_text('"04":\n  0.10: "default eps"\n')
    with pytest.raises(ParameterError, match="quote"):
        prose.load_allowed_numbers(path)
    path.write_text('"04":\n  "0.1": ""\n')
    with pytest.raises(ParameterError, match="source"):
        prose.load_allowed_numbers(path)
    path.write_text('"ch4":\n  "0.1": "x"\n')
    with pytest.raises(ParameterError, match="two-digit"):
        prose.load_allowed_numbers(path)
    path.write_text('"04":\n  "5.45": "paper, table 1"\n')
    assert prose.load_allowed_numbers(path) == {"04": {"5.45": "paper, table 1"}}
    assert prose.load_allowed_numbers(tmp_path / "missing.yml") == {}


def test_allow_list_names_existing_chapters():
    assert (repo_root() / "book" / "allowed_numbers.yml").is_file()
    assert set(ALLOWED) <= set(CHAPTERS)


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_prose_has_no_typed_numbers(chapter):
    hits = prose.untyped_numbers(CHAPTERS[chapter], ALLOWED.get(chapter, {}))
    listing = "\n".join(f"  cell {h.cell} line {h.line}: {h.number}  | {h.text}" for h in hits)
    assert not hits, (f"chapter {chapter} types {len(hits)} decimal number(s) into its prose; "
                      f"glue them, or list paper values and parameter defaults with their "
                      f"source in book/allowed_numbers.yml:\n{listing}")


@pytest.mark.parametrize("chapter", sorted(ALLOWED))
def test_allow_list_has_no_stale_entries(chapter):
    used = {h.number for h in prose.untyped_numbers(CHAPTERS[chapter])}
    stale = sorted(set(ALLOWED[chapter]) - used)
    assert not stale, f"book/allowed_numbers.yml, chapter {chapter}: {stale} no longer in the prose"
