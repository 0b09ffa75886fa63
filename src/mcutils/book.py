"""Execute the chapter notebooks with a parameter profile (a thin layer over papermill).

Usage::

    python -m mcutils.book execute --profile cpu [--chapters 01 04] [--output book/chapters]
    python -m mcutils.book execute --profile gpu --chapters 05 -p bonafide_sizes "[50, 100]"
    python -m mcutils.book execute --profile gpu --jobs 4
    python -m mcutils.book list

A profile is ``profiles/NAME.yaml`` with a ``defaults`` section (applied to every
chapter that declares the parameter) and a ``chapters`` section with one mapping of
parameters per chapter number. A parameter that a chapter's ``parameters`` cell does
not declare is an error, so a typo in a profile cannot pass silently. ``-p NAME VALUE``
and ``-y YAML`` override single parameters on top of the profile.

A profile may start from another one: ``extends: smoke`` takes that profile's
``defaults`` and chapter sections and sets its own values over them, key by key (so
``gpu-smoke`` keeps smoke's sizes as chapters change them). ``download`` lists datasets
to fetch (with checksums) before any chapter starts, when they are missing.

Before any kernel starts, :func:`mcutils.gpucheck.preflight` stops a profile that asks
for CUDA on a machine without it, and checks that the chapters' data and pretrained
weights are there. ``--jobs N`` runs chapters in N worker processes at once, one chapter
per visible GPU (``CUDA_VISIBLE_DEVICES`` is set per worker), each with its log and its
time in its own file under ``<output>/logs/``.

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


PROFILE_KEYS = ("defaults", "chapters", "description", "extends", "download")


def load_profile(name: str, root: Path | None = None, _seen: tuple[str, ...] = ()
                 ) -> dict[str, Any]:
    """Read ``profiles/<name>.yaml``; an unknown name lists the valid ones.

    With ``extends: BASE`` the base profile is read first and this one's ``defaults``
    and chapter sections are set over it key by key; ``download`` and ``description``
    are taken from this profile when it sets them. The result records the chain in
    ``extends`` (nearest first).
    """
    root = root or repo_root()
    path = root / "profiles" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ParameterError(f"profile={name!r} is not known; valid values: {', '.join(valid)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ParameterError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                             f"valid: {', '.join(PROFILE_KEYS)}")
    data.setdefault("defaults", {})
    data["defaults"] = dict(data["defaults"] or {})
    data["chapters"] = {str(k).zfill(2): (v or {}) for k, v in (data.get("chapters") or {}).items()}
    base_name = data.pop("extends", None)
    if base_name is None:
        data["extends"] = []
        return data
    if not isinstance(base_name, str):
        raise ParameterError(f"{path}: extends must name one profile, got {base_name!r}")
    if base_name in (*_seen, name):
        raise ParameterError(f"{path}: profiles extend each other in a cycle: "
                             f"{' -> '.join((*_seen, name, base_name))}")
    base = load_profile(base_name, root, (*_seen, name))
    merged = {**base, **{k: v for k, v in data.items() if k not in ("defaults", "chapters")}}
    merged["defaults"] = {**base["defaults"], **data["defaults"]}
    merged["chapters"] = {c: {**base["chapters"].get(c, {}), **data["chapters"].get(c, {})}
                          for c in dict.fromkeys([*base["chapters"], *data["chapters"]])}
    merged["extends"] = [base_name, *base["extends"]]
    return merged


def _declared(notebook: Path) -> dict[str, Any]:
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def chapter_parameters(profile: dict[str, Any], chapter: str, notebook: Path,
                       profile_name: str | None = None,
                       declared: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters one chapter gets from a profile (checked against its declaration).

    ``declared`` (the notebook's parameter names) is read with papermill when not given.
    """
    if declared is None:
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
          root: Path, declare: Any = None) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Chapter -> notebook and chapter -> parameters; ``declare(notebook)`` lists a
    notebook's parameters (papermill's reading by default; :mod:`mcutils.gpucheck` passes
    its own, which needs no papermill)."""
    declare = declare or _declared
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
    declared = {c: declare(available[c]) for c in selected}
    plan = {c: chapter_parameters(prof, c, available[c], profile, declared[c]) for c in selected}
    if overrides:
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
            jobs: int = 1) -> dict[str, Any]:
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
        jobs: chapters run at once, each in its own worker process; with CUDA, at most
            one per visible GPU. Each chapter's log and time go to ``<output>/logs/``.

    Returns:
        ``{"timings": {chapter: seconds}, "errors": {chapter: message},
        "failed_claims": {chapter: [messages]}}``.

    Raises:
        ParameterError: unknown profile, chapter or parameter, or CUDA asked for on a
            machine without it (before any kernel starts).
        DatasetNotFoundError: data or pretrained weights missing (before any kernel starts).
    """
    import papermill as pm

    from mcutils.gpucheck import preflight

    if not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"jobs={jobs!r} must be a positive integer")
    # figures must render inline in the executed notebooks: a non-interactive backend
    # inherited from the shell (MPLBACKEND=Agg) would silently drop every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    root = root or repo_root()
    available, plan = _plan(profile, selected, dict(overrides or {}), root)
    preflight(load_profile(profile, root), plan, profile, available)
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
    if jobs > 1 and len(plan) > 1:
        try:
            for chapter in plan:
                (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
            timings, errors = _execute_parallel(plan, available, out_dir, claims_dir, root,
                                                jobs, profile)
        finally:
            os.environ.pop(CLAIMS_DIR_ENV, None)
        for chapter in plan:
            result = claims_dir / f"ch{chapter}.json"
            fails = json.loads(result.read_text()).get("failed", []) if result.exists() else []
            if fails:
                failed[chapter] = fails
        (out_dir / f"timings-{profile}.json").write_text(json.dumps(timings, indent=2))
        return {"timings": timings, "errors": errors, "failed_claims": failed}
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


# ---------------------------------------------------------------- --jobs N


def _gpu_slots(plan: dict[str, dict[str, Any]], jobs: int) -> list[str | None]:
    """One ``CUDA_VISIBLE_DEVICES`` value per worker (None: leave the environment alone)."""
    from mcutils.gpucheck import cuda_chapters

    jobs = min(jobs, len(plan))
    if not cuda_chapters(plan):
        return [None] * jobs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if jobs > len(ids):
        print(f"[mcutils.book] --jobs {jobs}, but {len(ids)} GPU(s) are visible: running "
              f"{len(ids)} chapter(s) at a time, one per GPU", flush=True)
    return list(ids[:jobs])


def _execute_parallel(plan: dict[str, dict[str, Any]], available: dict[str, Path],
                      out_dir: Path, claims_dir: Path, root: Path, jobs: int, profile: str
                      ) -> tuple[dict[str, float], dict[str, str]]:
    """Run chapters in worker processes, ``jobs`` at a time, one per GPU slot."""
    import queue
    import subprocess
    import threading

    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    todo: queue.Queue[str] = queue.Queue()
    for chapter in plan:
        todo.put(chapter)
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    src = str(Path(__file__).resolve().parents[1])

    def slot(gpu: str | None) -> None:
        while True:
            try:
                chapter = todo.get_nowait()
            except queue.Empty:
                return
            nb = available[chapter]
            spec, result, log = (logs / f"{nb.stem}.spec.yaml", logs / f"{nb.stem}.json",
                                 logs / f"{nb.stem}.log")
            result.unlink(missing_ok=True)
            spec.write_text(yaml.safe_dump({
                "chapter": chapter, "notebook": str(nb), "target": str(out_dir / nb.name),
                "params": plan[chapter], "root": str(root), "result": str(result),
                "gpu": gpu}))
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (src, os.environ.get("PYTHONPATH")) if p))
            env[CLAIMS_DIR_ENV] = str(claims_dir)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            where = f", GPU {gpu}" if gpu is not None else ""
            print(f"[mcutils.book] {nb.name} (profile {profile}{where}) -> {log}", flush=True)
            start = time.perf_counter()
            with open(log, "w") as fh:
                rc = subprocess.call(
                    [sys.executable, "-c", _WORKER_CODE, str(spec)],
                    stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(root))
            wall = time.perf_counter() - start
            if result.exists():
                res = json.loads(result.read_text())
            else:
                res = {"seconds": round(wall, 1),
                       "error": f"worker exited with code {rc} before finishing; see {log}"}
            timings[chapter] = res["seconds"]
            if res["error"]:
                errors[chapter] = res["error"]
            status = "FAILED" if res["error"] else "done"
            print(f"[mcutils.book] {nb.name}: {res['seconds']:.1f} s, {status} (log: {log})",
                  flush=True)

    threads = [threading.Thread(target=slot, args=(g,), daemon=True)
               for g in _gpu_slots(plan, jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {c: timings[c] for c in plan if c in timings}, errors


_WORKER_CODE = ("import sys; from mcutils.book import _chapter_worker; "
                "sys.exit(_chapter_worker(sys.argv[1]))")


def _chapter_worker(spec_path: str) -> int:
    """Run one chapter with papermill in this process (a ``--jobs`` worker); write its time
    and error to the result file named in the spec. Cell output goes to stdout (the log)."""
    import logging

    import papermill as pm

    spec = yaml.safe_load(Path(spec_path).read_text())
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(spec["notebook"], spec["target"], parameters=spec["params"],
                            cwd=spec["root"], progress_bar=False, log_output=True,
                            kernel_name="python3")
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
        print(f"[mcutils.book] {Path(spec['notebook']).name} failed:\n{exc}", flush=True)
    seconds = round(time.perf_counter() - start, 1)
    if Path(spec["target"]).exists():
        _hide_injected_cell(Path(spec["target"]))
    Path(spec["result"]).write_text(json.dumps(
        {"chapter": spec["chapter"], "seconds": seconds, "error": error, "gpu": spec["gpu"],
         "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))
    return 0 if error is None else 1


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
    ex.add_argument("--jobs", type=int, default=1,
                    help="chapters run at once (one per visible GPU with CUDA)")
    ex.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="override one parameter on top of the profile (VALUE is YAML)")
    ex.add_argument("-y", "--yaml", action="append", metavar="YAML",
                    help="override parameters with a YAML mapping")
    sub.add_parser("list", help="list chapters and profiles")
    args = parser.parse_args(argv)
    from mcutils.data import DatasetNotFoundError

    if args.command == "list":
        for c, nb in chapters().items():
            print(c, nb.name)
        print("profiles:", ", ".join(profile_names()))
        return 0
    try:
        overrides = parse_overrides(args.parameter, args.yaml)
        result = execute(args.profile, args.chapters, args.output, log_output=args.log_output,
                         overrides=overrides, jobs=args.jobs)
    except (ParameterError, DatasetNotFoundError, yaml.YAMLError) as exc:
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
