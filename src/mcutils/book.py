"""Execute the chapter notebooks with a parameter profile (a thin layer over papermill).

Usage::

    python -m mcutils.book execute --profile cpu [--chapters 01 04] [--output book/chapters]
    python -m mcutils.book list

A profile is ``profiles/NAME.yaml`` with a ``defaults`` section (applied to every
chapter that declares the parameter) and a ``chapters`` section with one mapping of
parameters per chapter number. A parameter that a chapter's ``parameters`` cell does
not declare is an error, so a typo in a profile cannot pass silently.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.runtime import ParameterError, profile_names, repo_root

__all__ = ["chapters", "load_profile", "chapter_parameters", "execute", "main"]


def chapters(root: Path | None = None) -> dict[str, Path]:
    """Chapter number (``"00"``, ``"01"`` ...) -> notebook path, from ``notebooks/NN_*.ipynb``."""
    folder = (root or repo_root()) / "notebooks"
    found = {}
    for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        found[nb.name[:2]] = nb
    return found


def load_profile(name: str, root: Path | None = None) -> dict[str, Any]:
    """Read ``profiles/<name>.yaml``; an unknown name lists the valid ones."""
    root = root or repo_root()
    path = root / "profiles" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ParameterError(f"profile={name!r} is not known; valid values: {', '.join(valid)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"defaults", "chapters", "description"}
    if unknown:
        raise ParameterError(f"{path}: unknown top-level keys {sorted(unknown)}")
    data.setdefault("defaults", {})
    data["chapters"] = {str(k).zfill(2): (v or {}) for k, v in (data.get("chapters") or {}).items()}
    return data


def _declared(notebook: Path) -> dict[str, Any]:
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def chapter_parameters(profile: dict[str, Any], chapter: str, notebook: Path,
                       profile_name: str | None = None) -> dict[str, Any]:
    """The parameters one chapter gets from a profile (checked against its declaration)."""
    declared = _declared(notebook)
    params = {k: v for k, v in profile["defaults"].items() if k in declared}
    section = profile["chapters"].get(chapter, {})
    unknown = sorted(set(section) - set(declared))
    if unknown:
        raise ParameterError(
            f"profile section for chapter {chapter} sets {unknown}, which {notebook.name} does "
            f"not declare; its parameters are: {', '.join(declared)}"
        )
    params.update(section)
    if profile_name is not None and "profile" in declared:
        params["profile"] = profile_name
    return params


def execute(profile: str = "cpu", selected: Sequence[str] | None = None,
            output: str | Path = "book/chapters", root: Path | None = None,
            log_output: bool = False) -> dict[str, float]:
    """Execute chapters with papermill; returns chapter -> seconds.

    Raises:
        ParameterError: unknown profile or chapter (before anything runs).
    """
    import papermill as pm

    # figures must render inline in the executed notebooks: a non-interactive backend
    # inherited from the shell (MPLBACKEND=Agg) would silently drop every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    root = root or repo_root()
    prof = load_profile(profile, root)
    available = chapters(root)
    selected = [str(c).zfill(2) for c in (selected or available)]
    bad = [c for c in selected if c not in available]
    if bad:
        raise ParameterError(
            f"chapter(s) {bad} not found; valid values: {', '.join(available)}"
        )
    unknown_sections = sorted(set(prof["chapters"]) - set(available))
    if unknown_sections:
        raise ParameterError(f"profile {profile!r} has sections for missing chapters "
                             f"{unknown_sections}; valid: {', '.join(available)}")
    out_dir = Path(output)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = {c: chapter_parameters(prof, c, available[c], profile) for c in selected}
    timings: dict[str, float] = {}
    for chapter, params in plan.items():
        nb = available[chapter]
        print(f"[mcutils.book] {nb.name} (profile {profile}) ...", flush=True)
        start = time.perf_counter()
        pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params,
                            cwd=str(root), progress_bar=False, log_output=log_output,
                            kernel_name="python3")
        timings[chapter] = round(time.perf_counter() - start, 1)
        print(f"[mcutils.book] {nb.name}: {timings[chapter]:.1f} s", flush=True)
    (out_dir / f"timings-{profile}.json").write_text(json.dumps(timings, indent=2))
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m mcutils.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute chapters with a profile")
    ex.add_argument("--profile", default="cpu", help=f"one of {', '.join(profile_names())}")
    ex.add_argument("--chapters", nargs="*", default=None, help="chapter numbers (default: all)")
    ex.add_argument("--output", default="book/chapters", help="folder for executed notebooks")
    ex.add_argument("--log-output", action="store_true", help="stream cell output")
    sub.add_parser("list", help="list chapters and profiles")
    args = parser.parse_args(argv)
    if args.command == "list":
        for c, nb in chapters().items():
            print(c, nb.name)
        print("profiles:", ", ".join(profile_names()))
        return 0
    try:
        execute(args.profile, args.chapters, args.output, log_output=args.log_output)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
