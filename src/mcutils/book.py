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

Before any kernel starts, :func:`mcutils.gpucheck.preflight` stops a profile that asks
for CUDA on a machine without it, and checks that the chapters' data and pretrained
weights are there. ``--jobs N`` runs chapters in N worker processes at once, one chapter
per visible GPU (``CUDA_VISIBLE_DEVICES`` is set per worker), each with its log and its
time in its own file under ``<output>/logs/``.

Every selected chapter runs even if an earlier one fails. At the end the runner lists
each chapter that raised and each expected claim that was not reproduced (see
:mod:`mcutils.report`), and exits non-zero, so ``make book`` and CI fail while a long
GPU run keeps everything it computed.

Two checks keep the notebooks honest (``make test`` runs both through ``tests/``):

* :func:`untyped_numbers` lists decimal numbers typed into a chapter's prose instead of
  quoted from the executed code with a ``{glue:text}`` role, except the paper values and
  parameter defaults allowed in ``book/allowed_numbers.yml`` (:func:`load_allowed_numbers`);
* :func:`notebook_defaults` reads a notebook's parameter defaults, which must equal the
  chapter's settings in ``profiles/cpu.yaml``.

A third, :func:`remote_assets`, runs after ``make html``: the built pages must load no
script or style sheet over the network, so the book (maths included) renders offline.

Used by the Makefile and the tests, not by the chapters.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mcutils.report import CLAIMS_DIR_ENV
from mcutils.runtime import ParameterError, profile_names, repo_root

__all__ = [
    "chapters",
    "load_profile",
    "chapter_parameters",
    "parse_overrides",
    "execute",
    "notebook_defaults",
    "markdown_numbers",
    "untyped_numbers",
    "load_allowed_numbers",
    "UntypedNumber",
    "remote_assets",
    "RemoteAsset",
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
    :func:`notebook_defaults`, which needs no papermill)."""
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
        A dict with ``"timings"`` (chapter -> seconds), ``"errors"`` (chapter -> message)
        and ``"failed_claims"`` (chapter -> list of messages).

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
def _read_notebook(notebook: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(notebook, Mapping):
        return dict(notebook)
    return json.loads(Path(notebook).read_text(encoding="utf-8"))


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def notebook_defaults(notebook: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The parameter defaults of a notebook: the assignments of its ``parameters`` cell.

    Each top-level assignment ``name = <literal>`` of the cell tagged ``parameters`` is
    read with :func:`ast.literal_eval` (nothing is executed).

    Args:
        notebook: a path to an ``.ipynb`` file, or the notebook as a JSON mapping.

    Returns:
        ``{name: value}`` in the cell's order.

    Raises:
        ParameterError: no ``parameters`` cell, or a default that is not a literal.
    """
    nb = _read_notebook(notebook)
    cells = [c for c in nb.get("cells", [])
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ParameterError(f"{notebook}: no cell is tagged 'parameters'")
    out: dict[str, Any] = {}
    for node in ast.parse(_source(cells[0])).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            try:
                out[target.id] = ast.literal_eval(node.value)
            except ValueError as exc:
                raise ParameterError(
                    f"{notebook}: the default of {target.id!r} is not a literal "
                    f"({ast.unparse(node.value)}); profiles and tests need literals") from exc
    return out


class UntypedNumber(NamedTuple):
    """A decimal number typed into a chapter's prose (see :func:`untyped_numbers`)."""

    cell: int
    """Index of the markdown cell in the notebook (0-based, counting every cell)."""
    line: int
    """Line in that cell (1-based)."""
    number: str
    """The number as written (the key to use in ``book/allowed_numbers.yml``)."""
    text: str
    """The whole line, for context."""


# What is *not* prose: quoted glue, references, link targets, comments.
_GLUE_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{glue(?::[\w-]+)?\}.*?^(?P=fence)[ \t]*$",
                         re.MULTILINE | re.DOTALL)
_GLUE_ROLE = re.compile(r"\{glue(?::[\w-]+)?\}`[^`]*`")
_REF_ROLE = re.compile(r"\{(?:cite(?::[\w-]+)?|doc|ref|numref|eq|download|term|"
                       r"py:[\w-]+)\}`[^`]*`")
_LINK_TARGET = re.compile(r"(?<=\])\([^)\s]*(?:\s+\"[^\"]*\")?\)|<https?://[^>]*>|https?://\S+")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# A decimal number: digits.digits (thousands separators and dotted versions kept in one
# token, e.g. 1,234.5 and 2.14.1), a leading-dot .5, or scientific 1e-3 / 2.5E+4.
_DECIMAL = re.compile(
    r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)+|\d+(?:\.\d+)+|\.\d+)(?:[eE][-+]?\d+)?"
    r"|(?<![\w.])\d+[eE][-+]?\d+(?!\w)")


def _blank(match: re.Match) -> str:
    """Replace a match by spaces, keeping its newlines (so line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def markdown_numbers(text: str) -> list[tuple[int, str]]:
    """Decimal numbers typed into a piece of MyST markdown, as ``(line, number)`` pairs.

    What counts as a decimal number: ``digits.digits`` (``0.88``, ``12.5%``, the
    ``1,234.5`` of a thousands separator, a dotted version ``2.14.1`` as one token), a
    leading-dot ``.5``, and scientific notation (``1e-3``, ``2.5E+4``), wherever they
    stand: in sentences, ``$math$`` and ``$$math$$``, inline code, code fences and
    tables. A sign is not part of the token (``-0.5`` is reported as ``0.5``).
    Integers (``60,000``, ``10^{-3}``, ``88%``) are not decimal numbers.

    What is not prose and so not scanned: the content of ``{glue}`` roles and
    ``{glue}`` directives (quoted from the executed code, e.g.
    ``{glue:text}`ch04_auroc:.2f` ``), of reference roles (``{cite}``, ``{doc}``,
    ``{ref}``, ``{numref}``, ``{eq}``, ``{download}``, ``{term}``, ``{py:...}``), link
    targets and URLs, and HTML comments.
    """
    for pattern in (_GLUE_FENCE, _GLUE_ROLE, _REF_ROLE, _LINK_TARGET, _COMMENT):
        text = pattern.sub(_blank, text)
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        out.extend((lineno, m.group(0)) for m in _DECIMAL.finditer(line))
    return out


def untyped_numbers(notebook: str | Path | Mapping[str, Any],
                    allowed: Iterable[str] = ()) -> list[UntypedNumber]:
    """Decimal numbers typed into a chapter's markdown cells instead of glued.

    Every measured result in prose is quoted from the executed code through a
    ``{glue:text}`` role, so a re-run with other parameters describes itself correctly.
    This lists what breaks that rule; see :func:`markdown_numbers` for what counts as a
    decimal number and what is skipped.

    Args:
        notebook: a path to an ``.ipynb`` file, or the notebook as a JSON mapping.
        allowed: numbers that may be typed, exactly as written (the chapter's section of
            ``book/allowed_numbers.yml``: paper values and parameter defaults).

    Returns:
        One :class:`UntypedNumber` per occurrence, in reading order; empty when the
        prose is clean.
    """
    allowed = {str(a) for a in allowed}
    nb = _read_notebook(notebook)
    out = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        source = _source(cell)
        lines = source.splitlines()
        for lineno, number in markdown_numbers(source):
            if number not in allowed:
                out.append(UntypedNumber(index, lineno, number, lines[lineno - 1].strip()))
    return out


def load_allowed_numbers(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """Read the allow-list of typed numbers, ``book/allowed_numbers.yml``.

    Format: one section per chapter (a quoted two-digit number), mapping each allowed
    number, written exactly as in the prose and quoted, to its source::

        "04":
          "5.45": "median barrier gap real-adversarial, ImageNet, paper's committed CSV"
          "0.1": "parameter default eps_linf (L-inf radius, pixel units)"

    Args:
        path: the file (default ``book/allowed_numbers.yml`` in the repository).

    Returns:
        ``{chapter: {number: source}}`` (chapters without a section are absent).

    Raises:
        ParameterError: an unquoted number (YAML would turn ``0.10`` into ``0.1``), a
            chapter key that is not two digits, or a missing source.
    """
    path = Path(path) if path is not None else repo_root() / "book" / "allowed_numbers.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    out: dict[str, dict[str, str]] = {}
    for chapter, entries in (data or {}).items():
        key = str(chapter).zfill(2)
        if not re.fullmatch(r"\d\d", key):
            raise ParameterError(f"{path}: section {chapter!r} is not a two-digit chapter")
        if key in out:
            raise ParameterError(f"{path}: chapter {key} has a section twice")
        out[key] = {}
        for number, source in (entries or {}).items():
            if not isinstance(number, str):
                raise ParameterError(f"{path}: chapter {key}: quote the number {number!r} "
                                     "(write it exactly as the prose does)")
            if not isinstance(source, str) or not source.strip():
                raise ParameterError(f"{path}: chapter {key}: {number!r} needs its source")
            out[key][number] = source
    return out


class RemoteAsset(NamedTuple):
    """Something a built page would fetch from the network (see :func:`remote_assets`)."""

    page: str
    """The page, relative to the HTML folder."""
    tag: str
    """``script``, ``link`` or ``iframe`` (``script (inline)`` for a URL in script text)."""
    url: str


_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_INLINE_URL = re.compile(r"""["'`]((?:https?:)?//[^"'`\s]+)["'`]""", re.IGNORECASE)
_LOADED_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "import"}


def _page_assets(text: str) -> list[tuple[str, str]]:
    from html.parser import HTMLParser

    found: list[tuple[str, str]] = []

    class Parser(HTMLParser):
        in_script = False

        def handle_starttag(self, tag, attrs):
            a = {k.lower(): (v or "") for k, v in attrs}
            if tag == "script":
                self.in_script = not a.get("src")
                kind = a.get("type", "text/javascript").lower()
                if a.get("src") and _REMOTE.match(a["src"]):
                    found.append(("script", a["src"]))
                elif "json" in kind or "x-thebe" in kind or "math/" in kind:
                    self.in_script = False  # data, not code
            elif tag == "link" and _REMOTE.match(a.get("href", "")):
                if _LOADED_RELS & set(a.get("rel", "").lower().split()):
                    found.append(("link", a["href"]))
            elif tag == "iframe" and _REMOTE.match(a.get("src", "")):
                found.append(("iframe", a["src"]))

        def handle_endtag(self, tag):
            if tag == "script":
                self.in_script = False

        def handle_data(self, data):
            if self.in_script:
                found.extend(("script (inline)", m.group(1))
                             for m in _INLINE_URL.finditer(data))

    Parser(convert_charrefs=True).feed(text)
    return found


def remote_assets(html_dir: str | Path) -> list[RemoteAsset]:
    """Scripts, style sheets and frames that built pages would load over the network.

    Scans every ``.html`` file under ``html_dir`` for ``<script src>``, ``<link href>``
    (style sheets, preloads) and ``<iframe src>`` that start with ``http:``, ``https:`` or
    ``//``, and for such URLs quoted in inline scripts (a script that loads another,
    e.g. a ``require.js`` configuration). JSON and other data blocks are skipped. The
    book must render offline, maths included, so ``make html`` fails unless this is
    empty.

    Args:
        html_dir: the built site (``_build/html``).

    Returns:
        One :class:`RemoteAsset` per occurrence, sorted by page.

    Raises:
        ParameterError: the folder has no HTML page.
    """
    root = Path(html_dir)
    pages = sorted(root.rglob("*.html"))
    if not pages:
        raise ParameterError(f"{root}: no built HTML pages (run `make html` first)")
    out = []
    for page in pages:
        for tag, url in _page_assets(page.read_text(encoding="utf-8", errors="replace")):
            out.append(RemoteAsset(str(page.relative_to(root)), tag, url))
    return out


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
