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
weights are there. Chapters run in the worker processes of
:mod:`mcutils.tooling.executor` (the one executor, shared with the headless GPU check):
``--workers N`` at once (default: one per CPU core, each single-threaded; with CUDA one
per visible GPU, ``CUDA_VISIBLE_DEVICES`` set per worker), each with its log and its
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.core.profiles import load_profile, parse_overrides, profile_names
from mcutils.core.report import CLAIMS_DIR_ENV
from mcutils.tooling.executor import SINGLE_THREAD_ENV, Task, execute_tasks, gpu_slots
from mcutils.tooling.notebooks import chapter_plan, chapters, restore_environ, set_environ
from mcutils.tooling.offline import remote_assets
from mcutils.tooling.prose import load_allowed_numbers, untyped_numbers

__all__ = ["execute", "main"]


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
        jobs = (os.cpu_count() or 1) if on_cpu else max(1, len(gpu_slots(True, len(plan))))
    plan = _ordered(plan, out_dir / f"timings-{profile}.json")
    # inherited by every kernel and worker started below
    saved_env = set_environ(cpu_thread_env() if on_cpu else {})
    try:
        return _run(plan, available, out_dir, claims_dir, root, jobs, profile, log_output)
    finally:
        restore_environ(saved_env)


#: Benchmarks only: threads per CPU worker instead of one (``benchmarks/book_workers.py``
#: compares one 2-thread worker with two 1-thread workers). The provenance records it.
THREADS_ENV = "MCUTILS_CPU_THREADS"


def cpu_thread_env() -> dict[str, str]:
    """The thread variables of every CPU kernel: :data:`SINGLE_THREAD_ENV`, or
    ``$MCUTILS_CPU_THREADS`` threads when a benchmark sets it (a positive integer)."""
    raw = os.environ.get(THREADS_ENV, "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ParameterError(f"{THREADS_ENV}={raw!r} must be a positive integer")
    return {k: raw for k in SINGLE_THREAD_ENV}


def _ordered(plan: dict[str, dict[str, Any]], timings_file: Path) -> dict[str, dict[str, Any]]:
    """Chapter 00 first (the others read its model), then the longest chapters first by
    their last recorded wall times (unknown ones first, in chapter order)."""
    last = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    rest = sorted((c for c in plan if c != "00"),
                  key=lambda c: (-float(last.get(c, float("inf"))), c))
    return {c: plan[c] for c in (["00"] if "00" in plan else []) + rest}


def _part_stem(notebook_stem: str, label: str, taken: set[str]) -> str:
    """A log-file stem for a pool part: the label with every character other than
    letters, digits, ``.``, ``_`` and ``-`` replaced by ``-`` (no spaces in file names),
    made unique among ``taken`` (which it extends)."""
    base = f"{notebook_stem}.part-{re.sub(r'[^A-Za-z0-9._-]+', '-', label).strip('-')}"
    stem, k = base, 2
    while stem in taken:
        stem, k = f"{base}-{k}", k + 1
    taken.add(stem)
    return stem


def _run(plan: dict[str, dict[str, Any]], available: dict[str, Path], out_dir: Path,
         claims_dir: Path, root: Path, jobs: int, profile: str, log_output: bool
         ) -> dict[str, Any]:
    """Run the ordered plan in the executor's worker processes: chapter 00 alone first
    (the other chapters read the model it trains), then the rest, ``jobs`` at a time."""
    from mcutils.tooling.preflight import cuda_chapters

    logs = out_dir / "logs"
    for chapter in plan:
        (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
    slots = gpu_slots(bool(cuda_chapters(plan)), jobs)

    def task(chapter: str) -> Task:
        nb = available[chapter]
        return Task(chapter=chapter, notebook=nb, params=plan[chapter], cwd=root,
                    log=logs / f"{nb.stem}.log", result=logs / f"{nb.stem}.json",
                    engine="papermill", target=out_dir / nb.name,
                    env={CLAIMS_DIR_ENV: str(claims_dir)})

    def done(t: Task, res: dict[str, Any]) -> None:
        status = "FAILED" if res["error"] else "done"
        seconds = "?" if res["seconds"] is None else f"{res['seconds']:.1f}"
        print(f"[mcutils.book] {t.name}: {seconds} s, {status} (log: {t.log})",
              flush=True)

    def part_tasks(chapters: list[str]) -> list[Task]:
        """The chapters' pool parts (:func:`mcutils.chapters.pool_parts`), to run first."""
        from mcutils.chapters import pool_parts

        out: list[Task] = []
        if root.resolve() != repo_root().resolve():
            return out  # another repository's notebooks (a test's): no chapter modules
        stems: set[str] = set()
        for chapter in chapters:
            nb = available[chapter]
            for label, call, kwargs in pool_parts(chapter, plan[chapter]):
                stem = _part_stem(nb.stem, label.split(':', 1)[1], stems)
                out.append(Task(chapter=label, notebook=nb, params={}, cwd=root,
                                log=logs / f"{stem}.log", result=logs / f"{stem}.json",
                                engine="call", call=call, kwargs=kwargs, label=label))
        return out

    results: dict[str, dict[str, Any]] = {}
    try:
        for part in ([c for c in plan if c == "00"], [c for c in plan if c != "00"]):
            # the parts first (longest chapter first, as the plan is ordered), so the
            # pool trains them side by side; each chapter's notebook then finds them cached
            tasks = part_tasks(part) + [task(c) for c in part]
            results.update(execute_tasks(tasks, jobs, slots,
                                         stream=log_output and jobs == 1,
                                         label="mcutils.book", on_done=done))
    finally:
        os.environ.pop(CLAIMS_DIR_ENV, None)
    timings = {c: r["seconds"] for c, r in results.items()
               if r["seconds"] is not None and ":" not in c}
    part_seconds: dict[str, float] = {}
    for c, r in results.items():
        if ":" in c and r["seconds"] is not None:
            chapter = c.split(":", 1)[0]
            part_seconds[chapter] = part_seconds.get(chapter, 0.0) + r["seconds"]
    if part_seconds:
        print("[mcutils.book] pool parts (worker seconds per chapter): "
              + ", ".join(f"{c} {s:.0f} s" for c, s in sorted(part_seconds.items())), flush=True)
    errors = {c: r["error"] for c, r in results.items() if r["error"]}
    failed: dict[str, list[str]] = {}
    for chapter in plan:
        result = claims_dir / f"ch{chapter}.json"
        fails = json.loads(result.read_text()).get("failed", []) if result.exists() else []
        if fails:
            failed[chapter] = fails
    _save_timings(out_dir / f"timings-{profile}.json", timings)
    return {"timings": timings, "errors": errors, "failed_claims": failed}


def _save_timings(path: Path, timings: dict[str, float]) -> None:
    """This run's wall times over the recorded ones (chapters not run keep theirs)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **timings}, indent=2, sort_keys=True))


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
    to = sub.add_parser("totals", help="count the verdicts of the executed chapters for the "
                        "results page")
    to.add_argument("--chapters-dir", default="book/chapters")
    to.add_argument("--output", default="book/_generated/results_totals.md")
    pg = sub.add_parser("pages", help="check the built chapter pages and the claims' bounds")
    pg.add_argument("html_dir", nargs="?", default="_build/html")
    pg.add_argument("--chapters-dir", default="book/chapters")
    pg.add_argument("--no-figures", action="store_true",
                    help="do not require a figure caption on every chapter page")
    gd = sub.add_parser("glue-diff", help="compare the glued values of two runs")
    gd.add_argument("before")
    gd.add_argument("after")
    gd.add_argument("--chapters", nargs="*", default=None)
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
    if args.command == "totals":
        from mcutils.tooling.glue import (chapter_links, failures_markdown, headline_failures,
                                          totals_markdown, verdict_totals)

        root = repo_root()
        folder, out = Path(args.chapters_dir), Path(args.output)
        folder = folder if folder.is_absolute() else root / folder
        out = out if out.is_absolute() else root / out
        out.parent.mkdir(parents=True, exist_ok=True)
        links = chapter_links(folder)
        out.write_text(totals_markdown(verdict_totals(folder), links))
        fails = out.with_name("results_failures.md")
        fails.write_text(failures_markdown(headline_failures(folder), links))
        print(f"verdict counts of {folder} -> {out}; claims not reproduced -> {fails}")
        return 0
    if args.command == "pages":
        from mcutils.tooling.pagecheck import bounded_interval_problems, chapter_page_problems

        try:
            problems = (chapter_page_problems(args.html_dir, figures=not args.no_figures)
                        + bounded_interval_problems(args.chapters_dir))
        except ParameterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) on the chapter pages")
        return 1 if problems else 0
    if args.command == "glue-diff":
        from mcutils.tooling.glue import compare, glued

        chosen = None if args.chapters is None else [str(c).zfill(2) for c in args.chapters]
        for nb in sorted(Path(args.before).glob("[0-9][0-9]_*.ipynb")):
            other = Path(args.after) / nb.name
            if (chosen and nb.name[:2] not in chosen) or not other.exists():
                continue
            r = compare(glued(nb), glued(other))
            print(f"chapter {nb.name[:2]}: {r['same']} of {r['compared']} glued values identical;"
                  f" largest number difference {r['worst']:.3g} ({r['worst_name']}); differing"
                  f" in words: {r['words'] or 'none'}; only before: {r['only_before'] or 'none'};"
                  f" only after: {r['only_after'] or 'none'}")
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
