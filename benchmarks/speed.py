"""The machine's speed plan against the library's previous default path, side by side.

Usage::

    python benchmarks/speed.py [--repeats 3] [--threads 1 2] [--models small_cnn preresnet20 vgg16]

For each model (small sizes), thread count and contender, the best wall time over
``--repeats`` interleaved repetitions (every contender runs once per repetition, in
alternating order, so load from other processes affects all alike). Printed:

1. inference images/s of the previous default path (contiguous weights and inputs, the
   library's old default batch of 256) and of the plan that
   :func:`mcutils.core.runtime.prepare` calibrates for this machine, and their ratio;
2. inference images/s for batch sizes 32-512 in both memory formats;
3. SGD training steps/s at batch 64 and 128 in both memory formats, and their ratio.

Read the ratios, not the absolute numbers: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mcutils.core import runtime
from mcutils.models import build_model

OLD_DEFAULT_BATCH = 256
SHAPES = {"small_cnn": (1, 28, 28), "mlp": (1, 28, 28), "preresnet20": (3, 32, 32),
          "vgg16": (3, 32, 32), "resnet18_cifar": (3, 32, 32)}


def interleaved(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each function over repetitions in alternating order."""
    best = {k: float("inf") for k in funcs}
    names = list(funcs)
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            funcs[k]()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def inference(model: torch.nn.Module, x: torch.Tensor, batch: int) -> Callable[[], None]:
    """One pass over ``x`` in chunks of ``batch`` (``x`` already in its memory format)."""
    def run() -> None:
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                model(x[i:i + batch])
    return run


def training_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   steps: int = 5) -> Callable[[], None]:
    """``steps`` SGD steps on one batch."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()

    def run() -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return run


def layouts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Copies of ``model`` in contiguous and channels_last layout."""
    plain = copy.deepcopy(model).eval()
    cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    return plain, cl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "preresnet20", "vgg16"])
    parser.add_argument("--images", type=int, default=2048)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}, torch {torch.__version__}")
    for name in args.models:
        shape = SHAPES[name]
        torch.manual_seed(0)
        model = build_model(name, in_channels=shape[0]).eval()
        n = args.images if name in ("small_cnn", "mlp") else args.images // 4
        x = torch.rand(n, *shape)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        plain, cl = layouts(model)
        for threads in args.threads:
            torch.set_num_threads(threads)
            plan = runtime.prepare(model, x[:2], calibrate=True)
            fast_model, fast_x = (cl, x_cl) if plan.channels_last else (plain, x)
            t = interleaved({
                "default": inference(plain, x, OLD_DEFAULT_BATCH),
                "prepared": inference(fast_model, fast_x, plan.batch_size),
            }, args.repeats)
            print(f"\n{name}, {threads} thread(s): plan = channels_last {plan.channels_last}, "
                  f"batch {plan.batch_size} ({plan.source})")
            print(f"  inference img/s: default {n / t['default']:.0f}, prepared "
                  f"{n / t['prepared']:.0f}, ratio {t['default'] / t['prepared']:.2f}x")
            sweep = {}
            for bs in (32, 64, 128, 256, 512):
                sweep[f"contiguous {bs}"] = inference(plain, x, bs)
                sweep[f"channels_last {bs}"] = inference(cl, x_cl, bs)
            t = interleaved(sweep, args.repeats)
            print("  batch sweep img/s: " + ", ".join(f"{k} {n / v:.0f}" for k, v in t.items()))
            for bs in (64, 128):
                xb, yb = x[:bs], torch.randint(0, 10, (bs,))
                a, b = layouts(model)
                t = interleaved({"contiguous": training_steps(a, xb, yb),
                                 "channels_last": training_steps(
                                     b, xb.contiguous(memory_format=torch.channels_last), yb)},
                                args.repeats)
                print(f"  training batch {bs}: steps/s contiguous {5 / t['contiguous']:.1f}, "
                      f"channels_last {5 / t['channels_last']:.1f}, ratio "
                      f"{t['contiguous'] / t['channels_last']:.2f}x")


if __name__ == "__main__":
    main()
