"""Cost of curve training, curve evaluation and BatchNorm recomputation (mcutils.curves).

Measured side by side in one process, so that a shared, noisy machine hurts both sides
alike:

* training: ``steps`` SGD steps of ``train_curve`` (quadratic Bezier, one t per batch, the
  L2 penalty on w(t)) against the same number of plain SGD steps (momentum, the same
  weight decay) of the same architecture on the same batches, both in the default memory
  format; and the curve steps in the default format against ``channels_last`` (the
  layout the machine's training plan chooses for these models here);
* evaluation: ``evaluate_curve`` at ``points`` values of t against as many plain
  evaluations of one fixed model;
* a repair baseline: ``fine_tune`` in the default memory format against channels_last,
  the layout the machine's training plan chooses here;
* BatchNorm: recomputing the statistics of preresnet20 on ``bn_images`` images
  (:func:`mcutils.curves.recompute_bn`) against one evaluation pass over the same images,
  and ``evaluate_curve`` with the recomputation against the plain evaluations.

Protocol: every task is run once to warm up (not timed), then ``--repeats`` rounds in which
the two sides alternate and swap order every round (plain-curve, curve-plain, ...); the
best (minimum) time of each side is reported, since on a loaded machine the minimum is the
least disturbed run. Inputs are random pixels (the cost does not depend on the values).

Usage: python benchmarks/curves.py [--repeats 3] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from mcutils import curves
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model
from mcutils.training import evaluate


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_alternating(a, b, repeats: int) -> tuple[float, float]:
    """Warm both up, then alternate a/b (order swapped each round); best time of each."""
    a()
    b()
    ta, tb = [], []
    for r in range(repeats):
        if r % 2 == 0:
            ta.append(_timed(a))
            tb.append(_timed(b))
        else:
            tb.append(_timed(b))
            ta.append(_timed(a))
    return min(ta), min(tb)


def _data(channels: int, size: int, n: int, seed: int = 0) -> ImageDataset:
    info = dataset_info("cifar10" if channels == 3 else "fashion-mnist")
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.rand(n, channels, size, size, generator=g),
                        torch.randint(0, 10, (n,), generator=g), info, "train")


def bench_training_and_eval(name: str, channels: int, size: int, steps: int, batch: int,
                            eval_n: int, points: int, repeats: int, wd: float = 1e-4
                            ) -> list[tuple[str, float, float]]:
    ds = _data(channels, size, steps * batch)
    ev = TensorLoader(_data(channels, size, eval_n, seed=1), 128)
    batches = list(TensorLoader(ds, batch, shuffle=True))
    torch.manual_seed(0)
    a = build_model(name, in_channels=channels, input_size=size)
    b = build_model(name, in_channels=channels, input_size=size)
    plain = build_model(name, in_channels=channels, input_size=size)
    opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, weight_decay=wd)
    cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)

    def plain_steps():
        plain.train()
        for x, y in batches:
            loss = F.cross_entropy(plain(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def curve_steps(cl: bool = False):
        curves.train_curve(cm, batches, steps=len(batches), lr=0.01, weight_decay=wd,
                           progress=False, channels_last=cl)

    pt, ct = _best_alternating(plain_steps, curve_steps, repeats)
    dt, lt = _best_alternating(curve_steps, lambda: curve_steps(True), repeats)
    plain.eval()
    pe, ce = _best_alternating(lambda: [evaluate(plain, ev) for _ in range(points)],
                               lambda: curves.evaluate_curve(cm, points, ev), repeats)
    return [(f"{name}: {steps} training steps (batch {batch})", pt, ct),
            (f"{name}: {steps} curve steps, channels_last (vs default layout)", dt, lt),
            (f"{name}: {points} evaluations ({eval_n} images)", pe, ce)]


def bench_baseline_layout(steps: int, batch: int, repeats: int
                          ) -> list[tuple[str, float, float]]:
    """A repair baseline (:func:`mcutils.repair.fine_tune`) in the default layout against
    the machine's training plan (``channels_last`` on this CPU), on the same batches."""
    from mcutils.repair import fine_tune

    ds = _data(1, 28, 2500)
    torch.manual_seed(0)
    net = build_model("small_cnn")

    def run(cl: bool) -> None:
        fine_tune(net, TensorLoader(ds, batch, shuffle=True, seed=0), steps=steps, lr=0.01,
                  channels_last=cl)

    default, planned = _best_alternating(lambda: run(False), lambda: run(True), repeats)
    return [(f"small_cnn: fine-tune {steps} steps (batch {batch}), channels_last", default,
             planned)]


def bench_batchnorm(bn_images: int, eval_n: int, points: int, repeats: int
                    ) -> list[tuple[str, float, float]]:
    bona = TensorLoader(_data(3, 32, bn_images), 64)
    ev = TensorLoader(_data(3, 32, eval_n, seed=1), 128)
    torch.manual_seed(0)
    a = build_model("preresnet20", in_channels=3, input_size=32).eval()
    b = build_model("preresnet20", in_channels=3, input_size=32).eval()
    line = curves.linear_path(a, b)
    mid = line.model_at(0.5, bona)
    rows = []
    one_pass, recompute = _best_alternating(lambda: evaluate(mid, bona),
                                            lambda: curves.recompute_bn(mid, bona), repeats)
    rows.append((f"preresnet20: BN recompute vs one pass ({bn_images} images)", one_pass,
                 recompute))
    plain, with_bn = _best_alternating(
        lambda: [evaluate(mid, ev) for _ in range(points)],
        lambda: curves.evaluate_curve(line, points, ev, bn_loader=bona), repeats)
    rows.append((f"preresnet20: {points} evaluations ({eval_n} images), BN at each t", plain,
                 with_bn))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes (a check that it runs)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (best of at least three)")
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    rows = bench_training_and_eval("small_cnn", 1, 28, 10 if q else 200, 64, 500 if q else 2000,
                                   3 if q else 11, args.repeats)
    rows += bench_training_and_eval("vgg16", 3, 32, 3 if q else 8, 32, 64 if q else 256,
                                    3 if q else 5, args.repeats)
    rows += bench_baseline_layout(20 if q else 150, 64, args.repeats)
    rows += bench_batchnorm(128 if q else 500, 128 if q else 500, 3 if q else 5, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{load:.1f}; best of {args.repeats} alternating runs after a warm-up")
    print(f"{'task':66s} {'plain s':>8s} {'other s':>8s} {'ratio':>6s}")
    for task, plain, other in rows:
        print(f"{task:66s} {plain:8.3f} {other:8.3f} {other / plain:6.2f}")


if __name__ == "__main__":
    main()
