"""The oneDNN channels_last bug behind mcutils.core.runtime.layout_hazards, reproduced in
plain PyTorch.

One ``Conv2d`` (no mcutils code) computes its weight gradient in the default layout
and in ``channels_last`` for a grid of in-channels, kernel sizes and strides. Each case
runs in its own subprocess with ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's AVX2 kernels, as on
any AVX2 machine without AVX-512; on such a machine the variable changes nothing), at one
and at two threads, so that a crash is one row of the table and not the end of the run.

Each row prints ``ok`` (the gradients agree to 1e-4 relative), ``WRONG`` (they do not) or
``CRASH rc`` (the process died: heap corruption, bus error). The rule that
:func:`mcutils.core.runtime.layout_hazards` encodes is read from this table: a 1x1 kernel
with a stride above 1 and 2-7 input channels; nothing else fails.

Usage: python benchmarks/layout_crash.py [--quick] [--isa AVX2|native]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys

CASE = r"""
import sys, torch
threads, cin, cout, k, stride, size, batch = map(int, sys.argv[1:8])
torch.set_num_threads(threads)
torch.manual_seed(0)
conv = torch.nn.Conv2d(cin, cout, k, stride=stride, bias=False)
x0 = torch.randn(batch, cin, size, size)
g0 = torch.randn_like(conv(x0))
conv(x0).backward(g0)
ref = conv.weight.grad.clone()
conv.to(memory_format=torch.channels_last)
rel = 0.0
for _ in range(5):  # repeated: the corruption does not show at every call
    conv.zero_grad()
    conv(x0.contiguous(memory_format=torch.channels_last)).backward(g0)
    rel = max(rel, ((conv.weight.grad - ref).abs().max() / ref.abs().max()).item())
print("ok" if rel < 1e-4 else f"WRONG {rel:.2g}")
"""


def run_case(threads: int, cin: int, cout: int, k: int, stride: int, size: int = 8,
             batch: int = 16, isa: str = "AVX2") -> str:
    """``ok``, ``WRONG <relative error>`` or ``CRASH <return code>`` for one case."""
    env = dict(os.environ)
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    p = subprocess.run([sys.executable, "-c", CASE, *map(str, (threads, cin, cout, k, stride,
                                                                size, batch))],
                       capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        return f"CRASH {p.returncode}"
    return p.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few in-channel counts only")
    ap.add_argument("--isa", default="AVX2", help="ONEDNN_MAX_CPU_ISA, or 'native'")
    ap.add_argument("--size", type=int, default=8, help="input height and width")
    args = ap.parse_args()
    cins = (1, 2, 4, 7, 8, 12) if args.quick else (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16)
    print(f"torch {__import__('torch').__version__}, oneDNN ISA {args.isa}; "
          f"1x1 and 3x3 kernels, cout 8, {args.size}x{args.size} inputs, batch 16")
    print(f"{'cin':>4} {'k':>2} {'stride':>6} | {'1 thread':<14} {'2 threads':<14}")
    for cin, k, stride in itertools.product(cins, (1, 3), (1, 2, 3)):
        r1, r2 = (run_case(t, cin, 8, k, stride, args.size, isa=args.isa) for t in (1, 2))
        print(f"{cin:>4} {k:>2} {stride:>6} | {r1:<14} {r2:<14}", flush=True)


if __name__ == "__main__":
    main()
