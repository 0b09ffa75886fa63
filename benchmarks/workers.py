"""One 2-thread process against two 1-thread processes, idle and beside a competitor.

The book's runner executes CPU chapters in single-thread worker processes, one per core
(mcutils.tooling.runner). This script measures why, on a chapter-like workload: two
tasks of ``--steps`` small-CNN training steps at batch 64 each (the shape of chapter 00's
training), run

* ``1x2``: one process with 2 torch threads, the two tasks one after the other;
* ``2x1``: two processes with 1 thread each, one task each, at the same time;

first on the idle machine, then beside a *competitor*: a 2-thread torch loop (matrix
products) that stops by itself after ``--competitor-seconds``. It prints the wall time of
each and the ratio 1x2 / 2x1 (above 1: the single-thread workers are faster). The two
layouts alternate, best of ``--repeats``; note the load printed with the result.

Usage: python benchmarks/workers.py [--steps 150] [--repeats 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

TASK = r"""
import sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
from mcutils.models import build_model
torch.manual_seed(0)
for _ in range(int(sys.argv[3])):
    net = build_model("small_cnn")
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for _ in range(int(sys.argv[2])):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
"""

COMPETITOR = r"""
import sys, time, torch
torch.set_num_threads(2)
a = torch.rand(512, 512)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    a = (a @ a).tanh()
"""


def _env(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def one_by_two(steps: int) -> float:
    """Wall seconds of one 2-thread process running both tasks."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", TASK, "2", str(steps), "2"], env=_env(2), check=True)
    return time.perf_counter() - t0


def two_by_one(steps: int) -> float:
    """Wall seconds of two 1-thread processes running one task each, together."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", TASK, "1", str(steps), "1"], env=_env(1))
             for _ in range(2)]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("a worker failed")
    return time.perf_counter() - t0


def measure(steps: int, repeats: int) -> tuple[float, float]:
    a, b = [], []
    for r in range(repeats):
        order = (one_by_two, two_by_one) if r % 2 == 0 else (two_by_one, one_by_two)
        for f in order:
            (a if f is one_by_two else b).append(f(steps))
    return min(a), min(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--competitor-seconds", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true", help="30 steps, one repeat")
    args = ap.parse_args()
    steps, repeats = (30, 1) if args.quick else (args.steps, args.repeats)
    print(f"load before: {os.getloadavg()[0]:.2f}; {steps} steps x 2 tasks, best of {repeats}")
    idle = measure(steps, repeats)
    print(f"idle:            1x2 {idle[0]:6.1f} s   2x1 {idle[1]:6.1f} s   "
          f"ratio 1x2/2x1 {idle[0] / idle[1]:.2f}", flush=True)
    comp = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(args.competitor_seconds)],
                            env=_env(2))
    try:
        time.sleep(2)
        busy = measure(steps, repeats)
    finally:
        comp.terminate()
        comp.wait()
    print(f"with competitor: 1x2 {busy[0]:6.1f} s   2x1 {busy[1]:6.1f} s   "
          f"ratio 1x2/2x1 {busy[0] / busy[1]:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
