"""Run the chapters without Jupyter: the quick GPU check, and the checks made before any run.

A GPU machine may have PyTorch but not the book's tools (papermill, Jupyter). This
driver needs only PyTorch, the project's own code, NumPy, matplotlib and PyYAML. It reads
the same profile as :mod:`mcutils.tooling.runner` (``profiles/gpu-smoke.yaml`` by default) and runs
the same chapter code: it takes each notebook's code cells from its JSON, runs the
``parameters`` cell, sets the profile's values over it (as papermill's injected cell
does), and executes the cells in order in one namespace per chapter, with matplotlib's
Agg backend. Each chapter's output goes to its own log; a table of chapter, time and
status is printed and written as JSON::

    python -m mcutils.gpucheck                          # gpu-smoke, every chapter
    python -m mcutils.gpucheck --chapters 05 06
    python -m mcutils.gpucheck --profile smoke --device cpu --chapters 00   # on a CPU

Without IPython, the few display objects the chapters use (``IPython.display.HTML``)
come from a small stand-in, and nothing is glued (:mod:`mcutils.core.report` glues only in
a kernel). Expected claims that fail are reported as by the book runner.

:func:`~mcutils.tooling.preflight.preflight` holds the checks both drivers make before any chapter starts: a profile
that asks for CUDA on a machine without it stops at once; the datasets the chapters
name are on disk, or are downloaded (when the profile lists them under ``download``) with
checksums verified (:func:`mcutils.data.download.ensure_datasets`); ImageNet-pretrained
torchvision weights are where torchvision looks for them
(:func:`mcutils.data.download.pretrained_weights_file`); image folders exist.

Used by the runner (:mod:`mcutils.tooling.runner`) and on GPU machines, not by the chapters: it
runs every chapter (00-06) from outside.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
import traceback
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.core.profiles import load_profile
from mcutils.tooling.notebooks import (chapter_plan, notebook_cells, notebook_defaults,
                                       restore_environ, set_environ)
from mcutils.tooling.preflight import preflight

__all__ = ["run_chapter", "run", "format_table", "main"]


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


def _machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda_build": torch.version.cuda, "host": platform.node(),
                            "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["gpus"] = []
    return info


def run(profile: str = "gpu-smoke", selected: Sequence[str] | None = None,
        device: str | None = None, overrides: Mapping[str, Any] | None = None,
        output: str | Path = "build/gpucheck", root: Path | None = None) -> dict[str, Any]:
    """Run chapters with a profile, without papermill; print and return a table.

    Args:
        profile: profile name (``profiles/<profile>.yaml``; ``extends`` is followed).
        selected: chapter numbers (default: all).
        device: set every chapter's ``device`` (``"cpu"`` tries the check on a CPU).
        overrides: other parameters set on top of the profile.
        output: folder for the logs (``logs/NN.log``), the claims and
            ``gpucheck-<profile>.json``.
        root: repository root.

    Returns:
        A dict with ``profile``, ``device``, ``machine``, ``total_seconds`` and
        ``chapters`` (chapter number -> ``seconds``, ``status``, ``error``,
        ``failed_claims``, ``peak_gpu_mib``).

    Raises:
        ParameterError: unknown profile, chapter or parameter, or CUDA asked for and
            absent (before anything runs).
        DatasetNotFoundError: data or weights missing (before anything runs).
    """
    from mcutils.core.report import CLAIMS_DIR_ENV

    root = root or repo_root()
    over = dict(overrides or {})
    if device is not None:
        over["device"] = device
    prof = load_profile(profile, root)
    available, plan = chapter_plan(profile, selected, over, root, declare=notebook_defaults)
    preflight(prof, plan, profile, available)
    out_dir = Path(output)
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    claims_dir = out_dir / f"claims-{profile}"
    claims_dir.mkdir(exist_ok=True)
    saved_env = set_environ({CLAIMS_DIR_ENV: str(claims_dir), "MPLBACKEND": "Agg"})
    result: dict[str, Any] = {"profile": profile, "device": device, "machine": _machine(),
                              "chapters": {}}
    start = time.perf_counter()
    try:
        for chapter, params in plan.items():
            nb = available[chapter]
            (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
            print(f"[mcutils.gpucheck] {nb.name} (profile {profile}, device "
                  f"{params.get('device', '-')}) ...", flush=True)
            res = run_chapter(nb, params, log=out_dir / "logs" / f"{chapter}.log", cwd=root)
            claims = claims_dir / f"ch{chapter}.json"
            failed = json.loads(claims.read_text()).get("failed", []) if claims.exists() else []
            res["status"] = ("FAILED" if res["error"] else
                             "claims not reproduced" if failed else "ok")
            res["failed_claims"] = failed
            result["chapters"][chapter] = res
            print(f"[mcutils.gpucheck] {nb.name}: {res['seconds']:.1f} s, {res['status']}"
                  + (f" ({res['error']})" if res["error"] else ""), flush=True)
    finally:
        restore_environ(saved_env)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / f"gpucheck-{profile}.json").write_text(json.dumps(result, indent=2))
    print(format_table(result))
    return result


def format_table(result: Mapping[str, Any]) -> str:
    """The chapter / seconds / peak GPU memory / status table of a :func:`run` result."""
    lines = [f"{'chapter':<8}{'seconds':>9}{'peak GPU MiB':>14}  status"]
    for chapter, r in result["chapters"].items():
        peak = "-" if r.get("peak_gpu_mib") is None else f"{r['peak_gpu_mib']:.0f}"
        lines.append(f"{chapter:<8}{r['seconds']:>9.1f}{peak:>14}  {r['status']}")
    m = result["machine"]
    gpus = ", ".join(m["gpus"]) if m["gpus"] else "no CUDA GPU"
    lines.append(f"total {result['total_seconds']:.1f} s on {gpus}; torch {m['torch']} "
                 f"(CUDA build {m['cuda_build']}), profile {result['profile']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; exits 1 when a chapter failed or an expected claim did not hold, 2 for
    bad arguments, a missing GPU or missing data."""
    from mcutils.core.profiles import parse_overrides
    from mcutils.data import DatasetNotFoundError

    parser = argparse.ArgumentParser(prog="python -m mcutils.gpucheck",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="gpu-smoke")
    parser.add_argument("--chapters", nargs="*", default=None)
    parser.add_argument("--device", default=None, help="set every chapter's device (e.g. cpu)")
    parser.add_argument("--output", default="build/gpucheck")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"))
    parser.add_argument("-y", "--yaml", action="append", metavar="YAML")
    args = parser.parse_args(argv)
    try:
        result = run(args.profile, args.chapters, args.device,
                     parse_overrides(args.parameter, args.yaml), args.output)
    except (ParameterError, DatasetNotFoundError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = [c for c, r in result["chapters"].items() if r["status"] != "ok"]
    for c in bad:
        r = result["chapters"][c]
        print(f"error: chapter {c}: {r['error'] or '; '.join(r['failed_claims'])}",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
