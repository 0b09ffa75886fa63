"""Chapter 03's budget curve: one synthesis run per budget against one shared run, side by side.

Usage::

    python benchmarks/budget_curve.py [--budgets 128 512 2048] [--pairs 20] [--repeats 2]
                                      [--threads 1]

The untrained small CNN of chapter 03 (seed 0, Fashion-MNIST shape) and the paper's
synthesis settings (lr 0.05, stopping loss 0.0005, normalised units), with ``--pairs``
same-class pairs (``2 x pairs`` inputs in one batch). *separate*: :func:`synthetic_pairs`
once per budget, as chapter 03's parts did before; *shared*: one
:func:`synthetic_pairs_at` run to the largest budget, as they do now. The cpu profile's
budgets are 512, 2,048 and 8,192 steps (the same ratios as the default, 4x larger), so the
printed ratio is the expected saving on the synthesis; the bypass of each budget is not
shared. Best wall time over ``--repeats`` interleaved repetitions; also printed: whether
every budget's pairs are identical.
"""

from __future__ import annotations

import argparse
import os

import torch

from mcutils.chapters.ch03_study import build_untrained
from mcutils.inputspace import synthetic_pairs, synthetic_pairs_at

from speed import interleaved  # noqa: E402  (benchmarks/ is the script's folder)

FIELDS = ("a", "c", "targets", "loss_a", "loss_c", "steps_a", "steps_c")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load: {os.getloadavg()}, torch {torch.__version__}, {args.threads} thread(s)")
    net = build_untrained("small_cnn", "fashion-mnist", 0)
    targets = torch.arange(args.pairs) % 10
    kw = dict(lr=0.05, stop_loss=5e-4, init_std=0.01, weight_decay=1e-7, tv_weight=2.5e-7,
              space="normalized", box=None)

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    def separate() -> dict:
        return {k: synthetic_pairs(net, targets, (1, 28, 28), steps=k, generator=gen(), **kw)
                for k in args.budgets}

    def shared() -> dict:
        return synthetic_pairs_at(net, targets, (1, 28, 28), args.budgets, generator=gen(),
                                  **kw)

    t = interleaved({"separate": separate, "shared": shared}, args.repeats)
    a, b = separate(), shared()
    same = all(torch.equal(getattr(a[k], f), getattr(b[k], f)) for k in a for f in FIELDS)
    print(f"budgets {args.budgets}, {2 * args.pairs} inputs: separate {t['separate']:.1f} s, "
          f"shared {t['shared']:.1f} s, ratio {t['separate'] / t['shared']:.2f}x "
          f"(steps ratio {sum(args.budgets) / max(args.budgets):.2f}x); "
          f"identical pairs at every budget: {same}")


if __name__ == "__main__":
    main()
