"""Execute the chapter notebooks with a parameter profile (a thin layer over papermill).

Usage::

    python -m mcutils.book execute --profile cpu [--chapters 01 04] [--output book/chapters]
    python -m mcutils.book execute --profile gpu --chapters 05 -p bonafide_sizes "[50, 100]"
    python -m mcutils.book execute --profile gpu --jobs 4
    python -m mcutils.book list
    python -m mcutils.book prose [--chapters 04]
    python -m mcutils.book offline _build/html

A profile is ``profiles/NAME.yaml`` with a ``defaults`` section (applied to every
chapter that declares the parameter) and a ``chapters`` section with one mapping of
parameters per chapter number. A parameter that a chapter's ``parameters`` cell does
not declare is an error, so a typo in a profile cannot pass silently. ``-p NAME VALUE``
and ``-y YAML`` override single parameters on top of the profile.

A profile may start from another one: ``extends: smoke`` takes that profile's
``defaults`` and chapter sections and sets its own values over them, key by key (so
``gpu-smoke`` keeps smoke's sizes as chapters change them). ``download`` lists datasets
to fetch (with checksums) before any chapter starts, when they are missing.

Before any kernel starts, :func:`mcutils.tooling.preflight.preflight` stops a profile that asks
for CUDA on a machine without it, and checks that the chapters' data and pretrained
weights are there. ``--jobs N`` runs chapters in N worker processes at once, one chapter
per visible GPU (``CUDA_VISIBLE_DEVICES`` is set per worker), each with its log and its
time in its own file under ``<output>/logs/``.

Every selected chapter runs even if an earlier one fails. At the end the runner lists
each chapter that raised and each expected claim that was not reproduced (see
:mod:`mcutils.core.report`), and exits non-zero, so ``make book`` and CI fail while a long
GPU run keeps everything it computed.

Two checks keep the notebooks honest (``make test`` runs both through ``tests/``):

* :func:`~mcutils.tooling.prose.untyped_numbers` lists decimal numbers typed into a chapter's prose instead of
  quoted from the executed code with a ``{glue:text}`` role, except the paper values and
  parameter defaults allowed in ``book/allowed_numbers.yml`` (:func:`~mcutils.tooling.prose.load_allowed_numbers`);
* :func:`~mcutils.tooling.notebooks.notebook_defaults` reads a notebook's parameter defaults, which must equal the
  chapter's settings in ``profiles/cpu.yaml``.

A third, :func:`~mcutils.tooling.offline.remote_assets`, runs after ``make html``: the built pages must load no
script or style sheet over the network, so the book (maths included) renders offline.

Used by the Makefile and the tests, not by the chapters.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.core.profiles import load_profile, parse_overrides, profile_names
from mcutils.core.report import CLAIMS_DIR_ENV
from mcutils.tooling.notebooks import chapter_plan, chapters, restore_environ, set_environ
from mcutils.tooling.offline import remote_assets
from mcutils.tooling.prose import load_allowed_numbers, untyped_numbers

__all__ = ["execute", "main"]


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


def execute(profile: str = "cpu", selected: Sequence[str] | None = None,
            output: str | Path = "book/chapters", root: Path | None = None,
            log_output: bool = False, overrides: dict[str, Any] | None = None,
            jobs: int | None = None) -> dict[str, Any]:
    """Execute chapters with papermill, then report what failed.

    Every selected chapter runs, even when an earlier one failed: a chapter whose code
    raised, or whose expected claims were not reproduced (collected through
    ``MCUTILS_CLAIMS_DIR``, see :mod:`mcutils.core.report`), is listed in the result.

    Args:
        profile: profile name (``profiles/<profile>.yaml``).
        selected: chapter numbers (default: all).
        output: folder for the executed notebooks.
        root: repository root.
        log_output: stream the cells' output.
        overrides: parameters set on top of the profile (each must be declared by at
            least one selected chapter).
        jobs: worker processes (``--workers``/``--jobs``), each running one chapter at a
            time; default: one per CPU core, or with CUDA one per visible GPU (at most one
            per GPU). On a CPU every chapter runs single-threaded
            (:data:`SINGLE_THREAD_ENV`, set before torch loads in the kernel), whatever the
            number of workers, so its numbers repeat on any core count. Chapter 00 runs
            first (the others read its model); the rest start longest first, by their
            last recorded wall times. Each worker's log and time go to ``<output>/logs/``.

    Returns:
        A dict with ``"timings"`` (chapter -> seconds), ``"errors"`` (chapter -> message)
        and ``"failed_claims"`` (chapter -> list of messages).

    Raises:
        ParameterError: unknown profile, chapter or parameter, or CUDA asked for on a
            machine without it (before any kernel starts).
        DatasetNotFoundError: data or pretrained weights missing (before any kernel starts).
    """
    from mcutils.tooling.preflight import cuda_chapters, preflight

    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ParameterError(f"jobs={jobs!r} must be a positive integer")
    # figures must render inline in the executed notebooks: a non-interactive backend
    # inherited from the shell (MPLBACKEND=Agg) would silently drop every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    root = root or repo_root()
    available, plan = chapter_plan(profile, selected, dict(overrides or {}), root)
    preflight(load_profile(profile, root), plan, profile, available)
    out_dir = Path(output)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    claims_dir = out_dir / f"claims-{profile}"
    claims_dir.mkdir(exist_ok=True)
    os.environ[CLAIMS_DIR_ENV] = str(claims_dir)
    on_cpu = not cuda_chapters(plan)
    if jobs is None:
        jobs = (os.cpu_count() or 1) if on_cpu else max(1, len(_gpu_slots(plan, len(plan))))
    plan = _ordered(plan, out_dir / f"timings-{profile}.json")
    # inherited by every kernel and worker started below
    saved_env = set_environ(SINGLE_THREAD_ENV if on_cpu else {})
    try:
        return _run(plan, available, out_dir, claims_dir, root, jobs, profile, log_output)
    finally:
        restore_environ(saved_env)


def _ordered(plan: dict[str, dict[str, Any]], timings_file: Path) -> dict[str, dict[str, Any]]:
    """Chapter 00 first (the others read its model), then the longest chapters first by
    their last recorded wall times (unknown ones first, in chapter order)."""
    last = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    rest = sorted((c for c in plan if c != "00"),
                  key=lambda c: (-float(last.get(c, float("inf"))), c))
    return {c: plan[c] for c in (["00"] if "00" in plan else []) + rest}


def _run(plan: dict[str, dict[str, Any]], available: dict[str, Path], out_dir: Path,
         claims_dir: Path, root: Path, jobs: int, profile: str, log_output: bool
         ) -> dict[str, Any]:
    """Run the ordered plan: in worker processes when ``jobs > 1``, else in this one."""
    import papermill as pm

    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    failed: dict[str, list[str]] = {}
    if jobs > 1 and len(plan) > 1:
        try:
            for chapter in plan:
                (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
            # chapter 00 alone first: the other chapters read the model it trains
            for part in ([c for c in plan if c == "00"], [c for c in plan if c != "00"]):
                if part:
                    t, e = _execute_parallel({c: plan[c] for c in part}, available, out_dir,
                                             claims_dir, root, jobs, profile)
                    timings.update(t)
                    errors.update(e)
        finally:
            os.environ.pop(CLAIMS_DIR_ENV, None)
        for chapter in plan:
            result = claims_dir / f"ch{chapter}.json"
            fails = json.loads(result.read_text()).get("failed", []) if result.exists() else []
            if fails:
                failed[chapter] = fails
        _save_timings(out_dir / f"timings-{profile}.json", timings)
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
    _save_timings(out_dir / f"timings-{profile}.json", timings)
    return {"timings": timings, "errors": errors, "failed_claims": failed}


def _save_timings(path: Path, timings: dict[str, float]) -> None:
    """This run's wall times over the recorded ones (chapters not run keep theirs)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **timings}, indent=2, sort_keys=True))


#: The environment of every CPU kernel: one thread for torch's OpenMP and MKL pools.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _gpu_slots(plan: dict[str, dict[str, Any]], jobs: int) -> list[str | None]:
    """One ``CUDA_VISIBLE_DEVICES`` value per worker (None: leave the environment alone)."""
    from mcutils.tooling.preflight import cuda_chapters

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
            running[chapter] = (start, log)
            with open(log, "w") as fh:
                rc = subprocess.call(
                    [sys.executable, "-c", _WORKER_CODE, str(spec)],
                    stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(root))
            running.pop(chapter, None)
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

    running: dict[str, tuple[float, Path]] = {}
    finished = threading.Event()

    def monitor() -> None:  # one status line for all running chapters, not their output
        while not finished.wait(STATUS_SECONDS):
            line = status_line(dict(running))
            if line:
                print(f"[mcutils.book] running: {line}", flush=True)

    threads = [threading.Thread(target=slot, args=(g,), daemon=True)
               for g in _gpu_slots(plan, jobs)]
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finished.set()
    watcher.join()
    return {c: timings[c] for c in plan if c in timings}, errors


#: Seconds between the status lines of a run with several workers.
STATUS_SECONDS = 60.0
_CELL = re.compile(r"Executing Cell (\d+)")


def status_line(running: dict[str, tuple[float, Path]], now: float | None = None) -> str:
    """``"05 62 s (cell 12), 03 9 s"``: each running chapter, its elapsed time and the last
    cell its log says it started (papermill logs ``Executing Cell N``)."""
    now = time.perf_counter() if now is None else now
    parts = []
    for chapter, (start, log) in sorted(running.items()):
        cells = _CELL.findall(log.read_text(errors="replace")[-20000:]) if log.exists() else []
        parts.append(f"{chapter} {now - start:.0f} s" + (f" (cell {cells[-1]})" if cells else ""))
    return ", ".join(parts)


_WORKER_CODE = ("import sys; from mcutils.tooling.runner import _chapter_worker; "
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
    ex.add_argument("--workers", "--jobs", dest="jobs", type=int, default=None,
                    help="worker processes, one chapter each at a time (default: one per "
                         "CPU core, single-threaded; with CUDA one per visible GPU)")
    ex.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="override one parameter on top of the profile (VALUE is YAML)")
    ex.add_argument("-y", "--yaml", action="append", metavar="YAML",
                    help="override parameters with a YAML mapping")
    sub.add_parser("list", help="list chapters and profiles")
    pl = sub.add_parser("plan", help="show the speed plans calibrated on this machine")
    pl.add_argument("--recalibrate", action="store_true",
                    help="forget them: each is measured again on its next use")
    pa = sub.add_parser("params", help="check each parameters cell against its chapter's schema")
    pa.add_argument("--write", action="store_true", help="rewrite the cells that differ")
    pa.add_argument("--chapters", nargs="*", default=None, help="chapter numbers (default: all)")
    pr = sub.add_parser("prose", help="list numbers typed into the chapters' prose")
    pr.add_argument("--chapters", nargs="*", default=None, help="chapter numbers (default: all)")
    off = sub.add_parser("offline", help="list scripts built pages load from the network")
    off.add_argument("html_dir", nargs="?", default="_build/html")
    args = parser.parse_args(argv)
    from mcutils.data import DatasetNotFoundError

    if args.command == "offline":
        try:
            hits = remote_assets(args.html_dir)
        except ParameterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for hit in hits:
            print(f"{hit.page}: {hit.tag} {hit.url}")
        print(f"{len(hits)} remote script(s) or style sheet(s) in {args.html_dir}")
        return 1 if hits else 0
    if args.command == "plan":
        from mcutils.core.runtime import forget_plans, stored_plans

        if args.recalibrate:
            print(f"forgot {forget_plans()} stored plan(s); each is measured again on next use")
            return 0
        plans = stored_plans()
        for key, (cl, bs) in sorted(plans.items()):
            parts = key.split("|")  # purpose, machine (3 fields), threads, torch, device,
            purpose, threads, dev, arch, shape = (parts[0], parts[-5], parts[-3], parts[-2],
                                                  parts[-1])  # architecture, shape
            print(f"{purpose:9} threads={threads} {dev} arch={arch} shape={shape}: "
                  f"{'channels_last' if cl else 'default layout'}, batch {bs}")
        print(f"{len(plans)} stored plan(s)")
        return 0
    if args.command == "params":
        from mcutils.tooling.notebooks import parameter_cell_drift

        drift = parameter_cell_drift(write=args.write, selected=None if args.chapters is None
                                     else [str(c).zfill(2) for c in args.chapters])
        for chapter, name in drift.items():
            print(f"{name}: parameters cell {'rewritten from' if args.write else 'differs from'} "
                  f"the schema of chapter {chapter}")
        return 1 if drift and not args.write else 0
    if args.command == "list":
        for c, nb in chapters().items():
            print(c, nb.name)
        print("profiles:", ", ".join(profile_names()))
        return 0
    if args.command == "prose":
        allowed = load_allowed_numbers()
        found = 0
        for c, nb in chapters().items():
            if args.chapters and c not in [str(a).zfill(2) for a in args.chapters]:
                continue
            for hit in untyped_numbers(nb, allowed.get(c, {})):
                found += 1
                print(f"{nb.name} cell {hit.cell} line {hit.line}: {hit.number}   | {hit.text}")
        print(f"{found} typed number(s); glue them, or allow paper values and parameter "
              "defaults in book/allowed_numbers.yml")
        return 1 if found else 0
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
