"""Speed of connectivity features (mcutils.detection.barrier_features).

Features of ``--inputs`` inputs (default 1,000) against K = 5 references each, 64 points
per path, computed

* batched: :func:`mcutils.detection.barrier_features` (all inputs x references x points
  in flattened batches of 512 points through ``inputspace.loss_profiles``), versus
* a loop over inputs: :func:`mcutils.detection.barrier_features_loop` (one input's
  K x 64 = 320 points per forward pass).

Both run side by side in one process on the default ``small_cnn`` (untrained weights:
the cost does not depend on them) with Fashion-MNIST-sized random inputs, alternating,
and the median of ``--repeats`` runs is reported with the ratio. The loop is timed on a
subset (``--loop-inputs``) and scaled linearly (it is linear in the number of inputs).
Results agree to 1e-5.

Usage: python benchmarks/detection.py [--inputs 1000] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mcutils import detection
from mcutils.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--loop-inputs", type=int, default=200)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    g = torch.Generator().manual_seed(0)
    n, k = args.inputs, args.refs
    x = torch.rand(n, 1, 28, 28, generator=g)
    refs = torch.rand(n, k, 1, 28, 28, generator=g)
    pred = torch.randint(0, 10, (n,), generator=g)
    m = min(args.loop_inputs, n)

    batched_t, loop_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fb = detection.barrier_features(model, x, pred, refs, num_points=args.points)
        batched_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        fl = detection.barrier_features_loop(model, x[:m], pred[:m], refs[:m],
                                             num_points=args.points)
        loop_t.append((time.perf_counter() - t) * n / m)
    assert torch.allclose(fb.profiles[:m], fl.profiles, atol=1e-5)
    b, lp = statistics.median(batched_t), statistics.median(loop_t)
    points = n * k * args.points
    print(f"features: {n} inputs x K={k} references x {args.points} points "
          f"= {points:,} forward images, torch threads={torch.get_num_threads()}")
    print("| method | seconds | images/s |")
    print("|---|---|---|")
    print(f"| batched (barrier_features) | {b:.2f} | {points / b:,.0f} |")
    print(f"| loop over inputs (scaled from {m}) | {lp:.2f} | {points / lp:,.0f} |")
    print(f"speed-up batched / loop: {lp / b:.2f}x")


if __name__ == "__main__":
    main()
