"""The chapter notebooks stay thin: prose, the parameters cell, one validation call,
library calls and figures. No definitions, no code cell over 25 lines (the parameters
cell aside), and the findings recorded by one hidden call into the chapter module."""

from __future__ import annotations

import ast

import pytest

from mcutils.chapters import MODULES
from mcutils.tooling import notebooks

MAX_LINES = 25


def _cells(chapter):
    return notebooks.notebook_cells(notebooks.chapters()[chapter])


def thin_problems(cells) -> list[str]:
    """What makes a notebook's code cells other than thin (empty when thin)."""
    problems = []
    for i, cell in enumerate(cells):
        if "parameters" in cell["tags"]:
            continue
        lines = len(cell["source"].splitlines())
        if lines > MAX_LINES:
            problems.append(f"code cell {i} has {lines} lines")
        for node in ast.walk(ast.parse(cell["source"])):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                problems.append(f"code cell {i} defines {type(node).__name__}")
    findings = [c for c in cells if ".findings(" in c["source"]]
    if len(findings) != 1:
        problems.append(f"{len(findings)} cells call the chapter's findings(...), not one")
    elif not {"remove-input", "remove-cell"} & set(findings[0]["tags"]):
        problems.append("the findings cell is shown to the reader")
    return problems


def test_thin_check_catches_definitions_long_cells_and_shown_findings():
    cells = [{"source": "x = 1", "tags": ["parameters"]},
             {"source": "def f():\n    return 1", "tags": []},
             {"source": "\n".join(f"a{i} = {i}" for i in range(MAX_LINES + 1)), "tags": []},
             {"source": "ch.findings(chapter)", "tags": []}]
    problems = thin_problems(cells)
    assert any("defines FunctionDef" in p for p in problems)
    assert any(f"{MAX_LINES + 1} lines" in p for p in problems)
    assert any("shown to the reader" in p for p in problems)
    cells[3]["tags"] = ["remove-input"]
    assert thin_problems(cells[:1] + cells[3:]) == []


@pytest.mark.parametrize("chapter", sorted(MODULES))
def test_notebook_is_thin(chapter):
    assert thin_problems(_cells(chapter)) == []
