"""The norm-bounded attacks under the speed plan against the standard layout, side by side.

Usage::

    python benchmarks/attacks.py [--repeats 3] [--threads 1] [--images 500]

PGD-10 (L-inf), FGSM and 20 Carlini-Wagner steps on the small CNN (chapters 04, 06, 07
attack it), each run as :mod:`mcutils.attacks` runs it now (the weights in the memory
format of :func:`mcutils.core.runtime.prepare`'s plan: ``channels_last`` for conv nets
on this machine) and as it ran before (the standard layout, ``channels_last=False``);
then the paper's optimisation attack (48 steps) in chunks of the plan's inference batch,
its default, against all samples in one batch. Best wall time over ``--repeats``
interleaved repetitions (every contender once per repetition, in alternating order, so
load from other processes affects both alike); printed: images/s of each and their
ratio, and the share of pixels whose adversarial value differs by more than 1e-4 between
the two (rounding only).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch

from mcutils import attacks
from mcutils.models import build_model

from speed import interleaved  # noqa: E402  (benchmarks/ is the script's folder)


def contenders(run: Callable[..., torch.Tensor]) -> dict[str, Callable[[], torch.Tensor]]:
    """The same attack under the plan and in the standard layout."""
    return {"planned": run, "standard": lambda: run(channels_last=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()}, torch {torch.__version__}")
    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    n = args.images
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    suites = {
        "PGD-10": contenders(lambda **k: attacks.pgd(
            model, x, y, eps=0.1, steps=10, generator=torch.Generator().manual_seed(0), **k)),
        "FGSM": contenders(lambda **k: attacks.fgsm(model, x, y, eps=0.1, **k)),
        "CW-20": contenders(lambda **k: attacks.cw_l2(model, x, y, steps=20, lr=0.05, **k)),
        # "planned": chunks of the plan's batch; "standard": all samples at once
        "paper's attack (48 steps)": {
            "planned": lambda: attacks.optimization_attack(model, x, y, steps=48),
            "standard": lambda: attacks.optimization_attack(model, x, y, steps=48,
                                                            batch_size=n)},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, funcs in suites.items():
            t = interleaved(funcs, args.repeats)
            differ = ((funcs["planned"]() - funcs["standard"]()).abs() > 1e-4).float().mean()
            print(f"{name}, {threads} thread(s): img/s planned {n / t['planned']:.0f}, "
                  f"standard {n / t['standard']:.0f}, ratio {t['standard'] / t['planned']:.2f}x; "
                  f"pixels differing > 1e-4: {float(differ):.2%}")


if __name__ == "__main__":
    main()
