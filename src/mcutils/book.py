"""Execute the chapter notebooks with a parameter profile (a thin layer over papermill).

Usage::

    python -m mcutils.book execute --profile cpu [--chapters 01 04] [--output book/chapters]
    python -m mcutils.book execute --profile gpu --chapters 05 -p bonafide_sizes "[50, 100]"
    python -m mcutils.book list

A profile is ``profiles/NAME.yaml`` with a ``defaults`` section (applied to every
chapter that declares the parameter) and a ``chapters`` section with one mapping of
parameters per chapter number. A parameter that a chapter's ``parameters`` cell does
not declare is an error, so a typo in a profile cannot pass silently. ``-p NAME VALUE``
and ``-y YAML`` override single parameters on top of the profile.

Every selected chapter runs even if an earlier one fails. At the end the runner lists
each chapter that raised and each expected claim that was not reproduced (see
:mod:`mcutils.report`), and exits non-zero, so ``make book`` and CI fail while a long
GPU run keeps everything it computed.
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

from mcutils.report import CLAIMS_DIR_ENV
from mcutils.runtime import ParameterError, profile_names, repo_root

__all__ = [
    "chapters",
    "load_profile",
    "chapter_parameters",
    "parse_overrides",
    "execute",
    "main",
]


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


def parse_overrides(pairs: Sequence[Sequence[str]] | None = None,
                    yaml_text: Sequence[str] | None = None) -> dict[str, Any]:
    """Parameter overrides from the command line: ``-p NAME VALUE`` pairs (each VALUE read
    as YAML, so ``"[50, 100]"`` is a list and ``null`` is None) and ``-y`` YAML mappings."""
    out: dict[str, Any] = {}
    for text in yaml_text or []:
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ParameterError(f"-y expects a YAML mapping, got {text!r}")
        out.update(data)
    for name, value in pairs or []:
        out[name] = yaml.safe_load(value)
    return out


def _hide_injected_cell(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``hide-cell`` (a collapsed toggle)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
            cell["metadata"]["tags"] = tags
            changed = True
    if changed:
        nbformat.write(nb, path)


def _plan(profile: str, selected: Sequence[str] | None, overrides: dict[str, Any],
          root: Path) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
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
    plan = {c: chapter_parameters(prof, c, available[c], profile) for c in selected}
    if overrides:
        declared = {c: _declared(available[c]) for c in selected}
        unused = sorted(k for k in overrides if not any(k in d for d in declared.values()))
        if unused:
            raise ParameterError(f"override(s) {unused} are declared by none of the chapters "
                                 f"{', '.join(selected)}")
        for c in selected:
            plan[c].update({k: v for k, v in overrides.items() if k in declared[c]})
    return available, plan


def execute(profile: str = "cpu", selected: Sequence[str] | None = None,
            output: str | Path = "book/chapters", root: Path | None = None,
            log_output: bool = False, overrides: dict[str, Any] | None = None,
            ) -> dict[str, Any]:
    """Execute chapters with papermill, then report what failed.

    Every selected chapter runs, even when an earlier one failed: a chapter whose code
    raised, or whose expected claims were not reproduced (collected through
    ``MCUTILS_CLAIMS_DIR``, see :mod:`mcutils.report`), is listed in the result.

    Args:
        profile: profile name (``profiles/<profile>.yaml``).
        selected: chapter numbers (default: all).
        output: folder for the executed notebooks.
        root: repository root.
        log_output: stream the cells' output.
        overrides: parameters set on top of the profile (each must be declared by at
            least one selected chapter).

    Returns:
        ``{"timings": {chapter: seconds}, "errors": {chapter: message},
        "failed_claims": {chapter: [messages]}}``.

    Raises:
        ParameterError: unknown profile, chapter or parameter (before anything runs).
    """
    import papermill as pm

    # figures must render inline in the executed notebooks: a non-interactive backend
    # inherited from the shell (MPLBACKEND=Agg) would silently drop every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    root = root or repo_root()
    available, plan = _plan(profile, selected, dict(overrides or {}), root)
    out_dir = Path(output)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    claims_dir = out_dir / f"claims-{profile}"
    claims_dir.mkdir(exist_ok=True)
    os.environ[CLAIMS_DIR_ENV] = str(claims_dir)
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    failed: dict[str, list[str]] = {}
    try:
        for chapter, params in plan.items():
            nb = available[chapter]
            target = out_dir / nb.name
            (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
            print(f"[mcutils.book] {nb.name} (profile {profile}) ...", flush=True)
            start = time.perf_counter()
            try:
                pm.execute_notebook(str(nb), str(target), parameters=params,
                                    cwd=str(root), progress_bar=False, log_output=log_output,
                                    kernel_name="python3")
            except Exception as exc:  # noqa: BLE001 - reported after the other chapters ran
                errors[chapter] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
            timings[chapter] = round(time.perf_counter() - start, 1)
            if target.exists():
                _hide_injected_cell(target)
            result = claims_dir / f"ch{chapter}.json"
            if result.exists():
                fails = json.loads(result.read_text()).get("failed", [])
                if fails:
                    failed[chapter] = fails
            status = "FAILED" if chapter in errors else (
                "claims not reproduced" if chapter in failed else "ok")
            print(f"[mcutils.book] {nb.name}: {timings[chapter]:.1f} s, {status}", flush=True)
    finally:
        os.environ.pop(CLAIMS_DIR_ENV, None)
    (out_dir / f"timings-{profile}.json").write_text(json.dumps(timings, indent=2))
    return {"timings": timings, "errors": errors, "failed_claims": failed}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exits 1 when a chapter failed or an expected claim did not
    hold, 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m mcutils.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="execute chapters with a profile")
    ex.add_argument("--profile", default="cpu", help=f"one of {', '.join(profile_names())}")
    ex.add_argument("--chapters", nargs="*", default=None, help="chapter numbers (default: all)")
    ex.add_argument("--output", default="book/chapters", help="folder for executed notebooks")
    ex.add_argument("--log-output", action="store_true", help="stream cell output")
    ex.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="override one parameter on top of the profile (VALUE is YAML)")
    ex.add_argument("-y", "--yaml", action="append", metavar="YAML",
                    help="override parameters with a YAML mapping")
    sub.add_parser("list", help="list chapters and profiles")
    args = parser.parse_args(argv)
    if args.command == "list":
        for c, nb in chapters().items():
            print(c, nb.name)
        print("profiles:", ", ".join(profile_names()))
        return 0
    try:
        overrides = parse_overrides(args.parameter, args.yaml)
        result = execute(args.profile, args.chapters, args.output, log_output=args.log_output,
                         overrides=overrides)
    except (ParameterError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for chapter, msg in result["errors"].items():
        print(f"error: chapter {chapter} failed: {msg}", file=sys.stderr)
    for chapter, msgs in result["failed_claims"].items():
        for msg in msgs:
            print(f"error: chapter {chapter}: {msg}", file=sys.stderr)
    return 1 if result["errors"] or result["failed_claims"] else 0


if __name__ == "__main__":
    sys.exit(main())
