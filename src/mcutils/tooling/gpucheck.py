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
runs every chapter (00-07) from outside.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.core.profiles import load_profile
from mcutils.tooling.executor import Task, execute_tasks, gpu_slots
from mcutils.tooling.headless import _cuda_in_use, run_chapter  # noqa: F401 - run_chapter is re-exported
from mcutils.tooling.notebooks import (chapter_plan, notebook_defaults,
                                       restore_environ, set_environ)
from mcutils.tooling.preflight import preflight

__all__ = ["run_chapter", "run", "format_table", "main"]


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
        output: str | Path = "build/gpucheck", root: Path | None = None,
        jobs: int | None = None) -> dict[str, Any]:
    """Run chapters with a profile, without papermill, in the worker processes of
    :func:`mcutils.tooling.executor.execute_tasks` (one chapter per fresh process); print
    and return a table.

    Args:
        profile: profile name (``profiles/<profile>.yaml``; ``extends`` is followed).
        selected: chapter numbers (default: all).
        device: set every chapter's ``device`` (``"cpu"`` tries the check on a CPU).
        overrides: other parameters set on top of the profile.
        output: folder for the logs (``logs/NN.log``), the claims and
            ``gpucheck-<profile>.json``.
        root: repository root.
        jobs: chapters at once (default: one per visible GPU when the chapters use CUDA,
            else one).

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

    def task(chapter: str) -> Task:
        return Task(chapter=chapter, notebook=available[chapter], params=plan[chapter],
                    cwd=root, log=out_dir / "logs" / f"{chapter}.log",
                    result=out_dir / "logs" / f"{chapter}.json", engine="headless")

    def done(t: Task, res: dict[str, Any]) -> None:
        claims = claims_dir / f"ch{t.chapter}.json"
        failed = json.loads(claims.read_text()).get("failed", []) if claims.exists() else []
        res["status"] = "FAILED" if res["error"] else "claims not reproduced" if failed else "ok"
        res["failed_claims"] = failed
        seconds = "?" if res["seconds"] is None else f"{res['seconds']:.1f}"
        print(f"[mcutils.gpucheck] {t.notebook.name}: {seconds} s, {res['status']}"
              + (f" ({res['error']})" if res["error"] else ""), flush=True)

    for chapter in plan:
        (claims_dir / f"ch{chapter}.json").unlink(missing_ok=True)
    cuda = any(_cuda_in_use(p) for p in plan.values())
    jobs = jobs or (len(gpu_slots(True, len(plan))) if cuda else 1)
    slots = gpu_slots(cuda, jobs)
    try:
        # chapter 00 alone first: the other chapters read the model it trains
        for part in ([c for c in plan if c == "00"], [c for c in plan if c != "00"]):
            result["chapters"].update(execute_tasks([task(c) for c in part], jobs, slots,
                                                    label="mcutils.gpucheck", on_done=done))
    finally:
        restore_environ(saved_env)
    result["chapters"] = {c: result["chapters"][c] for c in plan if c in result["chapters"]}
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
    parser.add_argument("--workers", type=int, default=None,
                        help="chapters at once (default: one per visible GPU, else one)")
    args = parser.parse_args(argv)
    try:
        result = run(args.profile, args.chapters, args.device,
                     parse_overrides(args.parameter, args.yaml), args.output, jobs=args.workers)
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
