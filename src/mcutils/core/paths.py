"""Where things are: the repository root and the checkpoint cache.

``MCUTILS_ROOT`` overrides the repository root (found from the working folder, else from
this file); ``MCUTILS_CACHE`` overrides the cache folder (default ``.cache/mcutils`` in
the repository).

Used by every chapter, through the cache and the profiles.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "cache_dir"]


def repo_root() -> Path:
    """The repository root (the folder holding ``profiles/``), or the cwd if unknown."""
    env = os.environ.get("MCUTILS_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in [Path.cwd(), *Path.cwd().parents, *here.parents]:
        if (parent / "profiles").is_dir() and (parent / "notebooks").is_dir():
            return parent
    return Path.cwd()


def cache_dir() -> Path:
    """The cache folder: ``$MCUTILS_CACHE`` or ``<repo>/.cache/mcutils``."""
    env = os.environ.get("MCUTILS_CACHE")
    return Path(env) if env else repo_root() / ".cache" / "mcutils"
