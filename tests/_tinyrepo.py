"""A repository layout with tiny chapters, written as plain notebook JSON (no nbformat)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def tiny_repo(root: Path, cells_by_chapter: dict[str, list[tuple[str, list[str]]]],
              profiles: dict[str, dict] | None = None) -> Path:
    """``{"01": [(source, tags), ...]}`` -> ``root/notebooks/01_tiny.ipynb`` and
    ``root/profiles/<name>.yaml`` (default: ``tiny`` with ``x: 1`` for every chapter)."""
    (root / "profiles").mkdir(parents=True)
    (root / "notebooks").mkdir()
    profiles = profiles or {"tiny": {"defaults": {"x": 1},
                                     "chapters": {c: {} for c in cells_by_chapter}}}
    for name, prof in profiles.items():
        (root / "profiles" / f"{name}.yaml").write_text(yaml.safe_dump(prof))
    for chapter, cells in cells_by_chapter.items():
        nb = {"nbformat": 4, "nbformat_minor": 5,
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                          "language": "python"},
                           "language_info": {"name": "python"}},
              "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags},
                         "source": src, "outputs": [], "execution_count": None}
                        for i, (src, tags) in enumerate(cells)]}
        (root / "notebooks" / f"{chapter}_tiny.ipynb").write_text(json.dumps(nb))
    return root
