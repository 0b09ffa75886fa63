"""The one executor of the book's chapters: a pool of worker processes, one chapter each.

Both drivers use it: the papermill runner (:mod:`mcutils.tooling.runner`, engine
``"papermill"``) and the headless GPU check (:mod:`mcutils.tooling.gpucheck`, engine
``"headless"``, which needs no Jupyter). :func:`execute_tasks` runs a list of
:class:`Task` in a :class:`concurrent.futures.ProcessPoolExecutor` whose workers are fresh
interpreters, each used for one chapter only (``max_tasks_per_child=1``): no state, no
torch thread pool and no GPU memory leaks from one chapter into the next. The workers
inherit the caller's environment, so the single-thread settings of a CPU run
(:data:`SINGLE_THREAD_ENV`) reach every kernel. With CUDA each worker takes a free GPU
from a shared queue and sees only it (``CUDA_VISIBLE_DEVICES``).

Each chapter's output goes to its log; the worker writes its result next to it as JSON
(``chapter``, ``seconds``, ``error``, ``gpu``, ``finished`` and the engine's own fields),
and the parent prints one status line for all running chapters every
:data:`STATUS_SECONDS`, not their output.

Used by the tooling (:mod:`mcutils.tooling.runner`, :mod:`mcutils.tooling.gpucheck`) to
run every chapter (00-06), not by the chapters.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mcutils.core.checks import ParameterError

__all__ = ["ENGINES", "SINGLE_THREAD_ENV", "STATUS_SECONDS", "Task", "execute_tasks",
           "gpu_slots", "status_line", "hide_injected_cell"]

ENGINES = ("papermill", "headless", "call")

#: The environment of every CPU kernel: one thread for torch's OpenMP and MKL pools.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: Seconds between the status lines of a run.
STATUS_SECONDS = 60.0
_CELL = re.compile(r"Executing Cell (\d+)|cell (\d+) of")


@dataclass
class Task:
    """One chapter to run.

    Attributes:
        chapter: its number (``"05"``).
        notebook: the source notebook.
        params: the parameters set over the notebook's defaults.
        log: the file that receives the chapter's output.
        result: the JSON file the worker writes when the chapter ends.
        cwd: the working folder of the chapter.
        engine: ``"papermill"`` (writes the executed notebook to ``target``),
            ``"headless"`` (runs the code cells without Jupyter) or ``"call"`` (a pool
            part of the chapter: ``call(**kwargs)``, nothing else).
        target: the executed notebook (papermill only).
        env: extra environment variables for this chapter's worker.
        call: ``"package.module:function"``, the part's function (engine ``"call"``).
        kwargs: its keyword arguments (plain picklable values).
        label: the name printed for the task (default: the notebook's file name).
    """

    chapter: str
    notebook: Path
    params: dict[str, Any]
    log: Path
    result: Path
    cwd: Path
    engine: str = "papermill"
    target: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    call: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ParameterError(f"engine={self.engine!r} is not known; valid values: {ENGINES}")
        if self.engine == "papermill" and self.target is None:
            raise ParameterError("a papermill task needs a target notebook")
        if (self.engine == "call") != (self.call is not None):
            raise ParameterError("engine 'call' and a call 'module:function' go together")
        if self.call is not None and not re.fullmatch(r"[\w.]+:\w+", self.call):
            raise ParameterError(f"call={self.call!r} must read 'package.module:function'")

    @property
    def name(self) -> str:
        """The name printed for this task."""
        return self.label or self.notebook.name


def gpu_slots(cuda: bool, jobs: int) -> list[str | None]:
    """One ``CUDA_VISIBLE_DEVICES`` value per worker, at most one worker per visible GPU
    (``None``: a CPU run, the environment is left alone)."""
    if jobs < 1:
        raise ParameterError(f"jobs={jobs} must be at least 1")
    if not cuda:
        return [None] * jobs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if jobs > len(ids):
        print(f"[mcutils] {jobs} workers asked for, but {len(ids)} GPU(s) are visible: "
              f"running {len(ids)} chapter(s) at a time, one per GPU", flush=True)
    return list(ids[:jobs])


def status_line(running: Mapping[str, tuple[float, Path]], now: float | None = None) -> str:
    """``"05 62 s (cell 12), 03 9 s"``: each running chapter, its elapsed time and the last
    cell its log says it started (papermill logs ``Executing Cell N``, the headless
    engine ``cell N of M``)."""
    now = time.perf_counter() if now is None else now
    parts = []
    for chapter, (start, log) in sorted(running.items()):
        text = log.read_text(errors="replace")[-20000:] if log.exists() else ""
        cells = [a or b for a, b in _CELL.findall(text)]
        parts.append(f"{chapter} {now - start:.0f} s" + (f" (cell {cells[-1]})" if cells else ""))
    return ", ".join(parts)


def hide_injected_cell(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``hide-cell`` (a collapsed toggle)."""
    nb = json.loads(path.read_text())
    changed = False
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
            changed = True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (file descriptors included, so the kernel's
    and papermill's output too) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _run_call(task: Task) -> dict[str, Any]:
    """Run a pool part: import ``module`` and call ``function(**kwargs)``."""
    import importlib

    start = time.perf_counter()
    error = None
    module, function = str(task.call).split(":")
    try:
        getattr(importlib.import_module(module), function)(**task.kwargs)
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
        import traceback

        traceback.print_exc()
    return {"seconds": round(time.perf_counter() - start, 1), "error": error}


def _run_engine(task: Task) -> dict[str, Any]:
    if task.engine == "call":
        return _run_call(task)
    if task.engine == "headless":
        from mcutils.tooling.headless import run_chapter

        return run_chapter(task.notebook, task.params, cwd=task.cwd)
    import logging

    import papermill as pm

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(task.notebook), str(task.target), parameters=task.params,
                            cwd=str(task.cwd), progress_bar=False, log_output=True,
                            kernel_name="python3")
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
        print(f"[mcutils] {task.notebook.name} failed:\n{exc}", flush=True)
    seconds = round(time.perf_counter() - start, 1)
    if task.target is not None and Path(task.target).exists():
        hide_injected_cell(Path(task.target))
    return {"seconds": seconds, "error": error}


def _worker(task_fields: dict[str, Any], gpus: Any, stream: bool) -> dict[str, Any]:
    """Run one task in this (fresh) worker process and write its result file."""
    task = Task(**task_fields)
    gpu = gpus.get() if gpus is not None else None
    try:
        os.environ.update(task.env)
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        if not stream:
            _redirect_output(task.log)
        res = _run_engine(task)
        res.update(chapter=task.chapter, gpu=gpu, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        Path(task.result).write_text(json.dumps(res, indent=2))
        return res
    finally:
        if gpus is not None:
            gpus.put(gpu)


def execute_tasks(tasks: Sequence[Task], jobs: int, slots: Sequence[str | None] | None = None,
                  stream: bool = False, label: str = "mcutils",
                  on_done: Callable[[Task, dict[str, Any]], None] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Run ``tasks`` in at most ``jobs`` worker processes, in the order given.

    Args:
        tasks: the chapters to run.
        jobs: worker processes.
        slots: one ``CUDA_VISIBLE_DEVICES`` value per worker (:func:`gpu_slots`); ``None``
            entries (or ``slots=None``) leave the environment alone.
        stream: the workers write to this process's stdout instead of their logs (for
            one worker: the output arrives live).
        label: the prefix of the lines printed.
        on_done: called in this process with each task and its result as it ends.

    Returns:
        chapter -> result (``seconds``, ``error`` and the engine's fields). A worker that
        died before writing its result gives an error naming its log.
    """
    if jobs < 1:
        raise ParameterError(f"jobs={jobs} must be at least 1")
    if not tasks:
        return {}
    for task in tasks:
        task.log.parent.mkdir(parents=True, exist_ok=True)
        task.result.unlink(missing_ok=True)
        task.log.unlink(missing_ok=True)
    ctx = multiprocessing.get_context("spawn")
    gpu_ids = [s for s in (slots or []) if s is not None]
    workers = min(jobs, len(tasks), len(gpu_ids) or jobs)
    results: dict[str, dict[str, Any]] = {}
    with ctx.Manager() if gpu_ids else _no_manager() as manager:
        gpus = None
        if gpu_ids:
            gpus = manager.Queue()
            for g in gpu_ids[:workers]:
                gpus.put(g)
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                    max_tasks_per_child=1) as pool:
            futures: dict[cf.Future, Task] = {}
            for task in tasks:
                fields = {k: v for k, v in asdict(task).items()}
                futures[pool.submit(_worker, fields, gpus, stream)] = task
            started: dict[str, tuple[float, Path]] = {}
            last_status = time.perf_counter()
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                now = time.perf_counter()
                for fut in pending:
                    task = futures[fut]
                    if (task.chapter not in started and fut.running()
                            and (stream or task.log.exists())):
                        started[task.chapter] = (now, task.log)
                        where = f" -> {task.log}" if not stream else ""
                        print(f"[{label}] {task.name} started{where}", flush=True)
                for fut in done:
                    task = futures[fut]
                    started.pop(task.chapter, None)
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a dead worker is one chapter's error
                        res = {"seconds": None, "error": f"worker failed ({type(exc).__name__}: "
                               f"{exc}); see {task.log}"}
                    results[task.chapter] = res
                    if on_done is not None:
                        on_done(task, res)
                if now - last_status >= STATUS_SECONDS and started:
                    print(f"[{label}] running: {status_line(started, now)}", flush=True)
                    last_status = now
    return {t.chapter: results[t.chapter] for t in tasks if t.chapter in results}


class _no_manager:
    """Stands in for a multiprocessing manager when no GPU queue is needed."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
