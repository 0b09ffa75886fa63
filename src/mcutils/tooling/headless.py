"""Run a chapter notebook without Jupyter: its code cells in one namespace.

A GPU machine may have PyTorch but not the book's tools (papermill, Jupyter).
:func:`run_chapter` needs only PyTorch, the project's own code, NumPy, matplotlib and
PyYAML: it takes the notebook's code cells from its JSON, runs the ``parameters`` cell,
sets the given values over it (as papermill's injected cell does), and executes the
cells in order with matplotlib's Agg backend. Without IPython, the few display objects
the chapters use (``IPython.display.HTML``) come from a small stand-in, and nothing is
glued (:mod:`mcutils.core.report` glues only in a kernel).

It is the ``"headless"`` engine of :mod:`mcutils.tooling.executor`, which the GPU check
(:mod:`mcutils.tooling.gpucheck`) uses to run every chapter (00-07) from outside; not
used by the chapters.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import traceback
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.tooling.notebooks import notebook_cells

__all__ = ["run_chapter"]


def _ensure_ipython_display() -> None:
    """Put a minimal ``IPython.display`` in place when IPython is not installed."""
    try:
        import IPython.display  # noqa: F401
        return
    except ImportError:
        pass

    class _Shown:
        def __init__(self, data: Any = None, **kwargs: Any):
            self.data = data

        def __repr__(self) -> str:
            return str(self.data)

        def _repr_html_(self) -> str:
            return str(self.data)

    display_mod = types.ModuleType("IPython.display")
    for name in ("HTML", "Markdown", "Image", "SVG", "Latex", "Math"):
        setattr(display_mod, name, type(name, (_Shown,), {}))
    display_mod.display = _display
    ipython = types.ModuleType("IPython")
    ipython.display = display_mod
    ipython.get_ipython = lambda: None
    # libraries that look IPython up in sys.modules (matplotlib) read its version; a
    # recent one makes them take the path that needs no IPython internals
    ipython.version_info = (99, 0, 0, "")
    ipython.__mcutils_stand_in__ = True
    sys.modules["IPython"] = ipython
    sys.modules["IPython.display"] = display_mod


def _display(*objs: Any, **kwargs: Any) -> None:
    """``display`` outside a kernel: print each object's text form."""
    for obj in objs:
        if hasattr(obj, "to_string"):  # pandas
            print(obj.to_string())
        elif isinstance(getattr(obj, "data", None), str):  # IPython's HTML, Markdown ...
            print(obj.data)
        else:
            print(obj)


def _strip_magics(source: str) -> tuple[str, int]:
    """Replace IPython magics and shell lines (``%...``, ``!...``) by ``pass``."""
    lines, n = [], 0
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            lines.append(line[: len(line) - len(stripped)] + "pass  # " + stripped)
            n += 1
        else:
            lines.append(line)
    return "\n".join(lines), n


@contextlib.contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_chapter(notebook: str | Path, params: Mapping[str, Any], log: str | Path | None = None,
                cwd: str | Path | None = None) -> dict[str, Any]:
    """Execute a notebook's code cells in one namespace, with ``params`` set after its
    ``parameters`` cell (as papermill injects them).

    Args:
        notebook: the ``.ipynb`` file.
        params: parameter values set over the defaults.
        log: file that receives the chapter's stdout and stderr (default: inherited).
        cwd: working folder while the chapter runs (default: the repository root).

    Returns:
        A dict with ``seconds``, ``error`` (None, or the failing cell, the exception's
        type and message), ``cells`` (cells run), ``magics`` (IPython lines skipped) and
        ``peak_gpu_mib``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    _ensure_ipython_display()
    cells = notebook_cells(notebook)
    if not any("parameters" in c["tags"] for c in cells):
        raise ParameterError(f"{Path(notebook).name} has no cell tagged 'parameters'")
    cuda = _cuda_in_use(params)
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    namespace: dict[str, Any] = {"__name__": "__main__", "display": _display}
    error, magics, done = None, 0, 0
    log_file = open(log, "w") if log is not None else None  # noqa: SIM115 - closed below
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_cwd(Path(cwd) if cwd else repo_root()))
            if log_file is not None:
                stack.enter_context(contextlib.redirect_stdout(log_file))
                stack.enter_context(contextlib.redirect_stderr(log_file))
            for k, cell in enumerate(cells):
                print(f"[mcutils.gpucheck] cell {k} of {len(cells)}", flush=True)
                source, n = _strip_magics(cell["source"])
                magics += n
                try:
                    code = compile(source, f"<{Path(notebook).name} cell {k}>", "exec")
                    exec(code, namespace)  # noqa: S102 - running the chapter's cells is the point
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    traceback.print_exc()
                    error = f"cell {k}: {type(exc).__name__}: {str(exc).strip()[:500]}"
                    break
                if "parameters" in cell["tags"]:
                    namespace.update(params)
                done += 1
    finally:
        seconds = time.perf_counter() - start
        if log_file is not None:
            log_file.close()
        plt.close("all")
    peak = None
    if cuda:
        import torch

        peak = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    namespace.clear()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {"seconds": round(seconds, 1), "error": error, "cells": done, "magics": magics,
            "peak_gpu_mib": peak}


def _cuda_in_use(params: Mapping[str, Any]) -> bool:
    if not str(params.get("device", "")).startswith("cuda"):
        return False
    import torch

    return torch.cuda.is_available()
