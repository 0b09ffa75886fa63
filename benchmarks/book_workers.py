"""The book itself with one 2-thread worker against two 1-thread workers, idle and busy.

``benchmarks/workers.py`` measures the worker layouts on a training loop; this script
measures them on the book: ``python -m mcutils.book execute`` of a profile's chapters
(default: the smoke profile, every chapter), each run from an empty checkpoint cache
with the fixed speed plan, as

* ``1x2``: ``--workers 1`` with 2 threads per worker (``$MCUTILS_CPU_THREADS=2``, a
  benchmark-only setting that the provenance records);
* ``2x1``: ``--workers 2`` with 1 thread each (the book's default on this machine);

first on the idle machine, then beside a competitor (the 2-thread torch loop of
``benchmarks/workers.py``, which stops by itself). It prints each wall time, the ratio
1x2 / 2x1 (above 1: the single-thread workers are faster) and the load. The two layouts
alternate within each condition. One run each by default: a smoke run takes minutes.

Usage: python benchmarks/book_workers.py [--profile smoke] [--chapters 00 01 ...]
       [--repeats 1] [--skip-busy]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workers import COMPETITOR  # noqa: E402  (the same competitor as the loop benchmark)

ROOT = Path(__file__).resolve().parents[1]


def run_book(layout: str, profile: str, chapters: list[str] | None, scratch: Path) -> float:
    """Wall seconds of one ``execute`` from an empty cache in layout ``1x2`` or ``2x1``."""
    workers, threads = {"1x2": (1, 2), "2x1": (2, 1)}[layout]
    out = scratch / f"{layout}-{time.monotonic_ns()}"
    env = dict(os.environ, MCUTILS_CACHE=str(out / "cache"), MCUTILS_CALIBRATE="0",
               MCUTILS_CPU_THREADS=str(threads))
    cmd = [sys.executable, "-m", "mcutils.book", "execute", "--profile", profile,
           "--output", str(out / "chapters"), "--workers", str(workers)]
    if chapters:
        cmd += ["--chapters", *chapters]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode not in (0, 1):  # 1: a claim not reproduced, still a complete run
        raise RuntimeError(f"{layout} failed ({res.returncode}): {res.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def measure(profile: str, chapters: list[str] | None, repeats: int,
            scratch: Path) -> dict[str, float]:
    """Best wall time of each layout over ``repeats`` alternating runs."""
    best: dict[str, float] = {}
    for r in range(repeats):
        for layout in (("1x2", "2x1") if r % 2 == 0 else ("2x1", "1x2")):
            s = run_book(layout, profile, chapters, scratch)
            print(f"  {layout}: {s:7.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
            best[layout] = min(best.get(layout, s), s)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--chapters", nargs="*", default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--competitor-seconds", type=float, default=3600.0)
    ap.add_argument("--skip-busy", action="store_true", help="the idle machine only")
    args = ap.parse_args()
    what = f"profile {args.profile}, chapters {' '.join(args.chapters or ['all'])}"
    print(f"{what}; load before {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="book-workers-") as tmp:
        scratch = Path(tmp)
        print("idle:", flush=True)
        idle = measure(args.profile, args.chapters, args.repeats, scratch)
        print(f"idle: 1x2 {idle['1x2']:.1f} s, 2x1 {idle['2x1']:.1f} s, "
              f"ratio 1x2/2x1 {idle['1x2'] / idle['2x1']:.2f}", flush=True)
        if args.skip_busy:
            return
        env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
        comp = subprocess.Popen([sys.executable, "-c", COMPETITOR,
                                 str(args.competitor_seconds)], env=env)
        try:
            time.sleep(2)
            print("with a 2-thread competitor:", flush=True)
            busy = measure(args.profile, args.chapters, args.repeats, scratch)
        finally:
            comp.terminate()
            comp.wait()
        print(f"with competitor: 1x2 {busy['1x2']:.1f} s, 2x1 {busy['2x1']:.1f} s, "
              f"ratio 1x2/2x1 {busy['1x2'] / busy['2x1']:.2f}; "
              f"load after {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
