"""Overhead of curve training and evaluation (mcutils.curves).

Measures, side by side in one run (robust to a loaded machine):

* one epoch of ``train_curve`` (quadratic Bezier, one t per batch, L2 penalty on w(t))
  versus one epoch of plain training of the same architecture on the same batches
  (SGD, momentum 0.9): the overhead ratio (goal: at most 1.5x);
* ``evaluate_curve`` at 21 points versus 21 plain evaluations of a fixed model.

Models: ``small_cnn`` on Fashion-MNIST-sized inputs and ``vgg16`` on 32x32x3 inputs
(random pixels: the cost does not depend on the values). Timings alternate between the
two methods and the median of ``--repeats`` runs is reported.

Usage: python benchmarks/curves.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mcutils import curves
from mcutils.data import ImageDataset, TensorLoader, dataset_info
from mcutils.models import build_model
from mcutils.training import evaluate


def _plain_epoch(model, loader, lr=0.01, weight_decay=5e-4):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, channels: int, size: int, n: int, batch: int, eval_n: int,
          repeats: int) -> list[tuple[str, float, float]]:
    info = dataset_info("cifar10" if channels == 3 else "fashion-mnist")
    g = torch.Generator().manual_seed(0)
    ds = ImageDataset(torch.rand(n, channels, size, size, generator=g),
                      torch.randint(0, 10, (n,), generator=g), info, "train")
    ev = ImageDataset(ds.x[:eval_n], ds.y[:eval_n], info, "test")
    loader = TensorLoader(ds, batch, shuffle=True)
    ev_loader = TensorLoader(ev, 500)
    torch.manual_seed(0)
    a = build_model(name, in_channels=channels, input_size=size)
    b = build_model(name, in_channels=channels, input_size=size)
    plain_t, curve_t, plain_e, curve_e = [], [], [], []
    for _ in range(repeats):
        model = build_model(name, in_channels=channels, input_size=size)
        plain_t.append(_timed(lambda: _plain_epoch(model, loader)))
        cm = curves.CurveModel(a, a, b, "bezier", num_bends=3)
        curve_t.append(_timed(lambda: curves.train_curve(cm, loader, epochs=1, lr=0.01,
                                                         weight_decay=5e-4, progress=False)))
        model.eval()
        plain_e.append(_timed(lambda: [evaluate(model, ev_loader) for _ in range(21)]))
        curve_e.append(_timed(lambda: curves.evaluate_curve(cm, 21, ev_loader)))
    pt, ct = statistics.median(plain_t), statistics.median(curve_t)
    pe, ce = statistics.median(plain_e), statistics.median(curve_e)
    return [(f"{name}: one training epoch ({n} images, batch {batch})", pt, ct),
            (f"{name}: 21 evaluations ({eval_n} images)", pe, ce)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench("small_cnn", 1, 28, 2560, 128, 2000, args.repeats)
    rows += bench("vgg16", 3, 32, 256, 32, 64, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} alternating runs")
    print(f"{'task':58s} {'plain s':>8s} {'curve s':>8s} {'ratio':>6s}")
    for task, plain, curve in rows:
        print(f"{task:58s} {plain:8.2f} {curve:8.2f} {curve / plain:6.2f}")


if __name__ == "__main__":
    main()
