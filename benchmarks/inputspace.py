"""Benchmarks of mcutils.inputspace, each comparison measured side by side in one run.

Usage::

    python benchmarks/inputspace.py [--pairs 32] [--points 250] [--repeats 3]
                                    [--threads 1,2] [--resnet-width 64] [--skip-resnet]

1. ``loss_profiles`` (under the machine's speed plan, :func:`mcutils.core.runtime.prepare`:
   its batch size and memory format) versus a per-pair loop in the style of the paper's
   public code (build each path in Python, evaluate it in batches of 64, default memory
   format) and versus the forward-pass floor (the same number of inputs, pre-built,
   through the model at the best of several batch sizes in either memory format), at
   each thread count of ``--threads`` (``torch.set_num_threads``). Small CNN on
   1x28x28 and ResNet-18 (CIFAR) on 3x32x32.
2. ``find_barrier`` versus a 1,000-point grid on correctly classified same-class
   Fashion-MNIST test pairs of the cached default model (agreement within ``tol`` and
   forward passes relative to a 250-point grid).
3. ``bypass_barrier`` on all pairs at once versus one pair at a time (same steps).
4. ``synthetic_pairs`` (the paper's feature visualisation, all inputs in one batch, each
   leaving the batch once it reaches the stopping loss) versus one input at a time in the
   style of the paper's code (``torch.optim.Adam`` with weight decay on the normalised
   input, a second forward pass after every step to track the best input), on the cached
   default model; also the largest difference of the reached losses.

Each timing is the minimum over ``--repeats`` interleaved repetitions, so that load
from other processes affects all contenders alike; the printed ratios are the result.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mcutils import data, inputspace, training, zoo
from mcutils.core import runtime
from mcutils.models import build_model


def per_pair_loop(model: torch.nn.Module, a: torch.Tensor, c: torch.Tensor, targets: torch.Tensor,
                  num_points: int, batch_size: int = 64) -> torch.Tensor:
    """The baseline: one pair at a time, its path built point by point in Python."""
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(len(a)):
            path = torch.stack([(1 - t) * a[i] + t * c[i]
                                for t in torch.linspace(0, 1, num_points).tolist()])
            losses = []
            for lo in range(0, num_points, batch_size):
                xb = path[lo:lo + batch_size]
                yb = targets[i].repeat(len(xb))
                losses.append(F.cross_entropy(model(xb), yb, reduction="none"))
            out.append(torch.cat(losses))
    return torch.stack(out)


def forward_floor(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Only the forward passes over pre-built inputs."""
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            model(x[lo:lo + batch_size])


def interleaved(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each function over interleaved repetitions."""
    best = {k: float("inf") for k in funcs}
    for _ in range(repeats):
        for name, fn in funcs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_profiles(name: str, model: torch.nn.Module, shape: tuple[int, int, int], pairs: int,
                   points: int, repeats: int, batch_sizes: tuple[int, ...]) -> dict[str, float]:
    """Section 1 for one model, at the current thread count."""
    torch.manual_seed(0)
    model.eval()
    a, c = torch.rand(pairs, *shape), torch.rand(pairs, *shape)
    y = torch.randint(0, 10, (pairs,))
    plan = runtime.prepare(model, a[:2])  # calibrated once per machine and thread count
    x = inputspace.linear_path(a, c, points).reshape(-1, *shape)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    forward_floor(model, x[:64], 64)  # warm-up
    forward_floor(cl_model, x_cl[:64], 64)
    funcs: dict[str, Callable[[], object]] = {}
    for bs in batch_sizes:
        funcs[f"floor@{bs}"] = lambda bs=bs: forward_floor(model, x, bs)
        funcs[f"floor_cl@{bs}"] = lambda bs=bs: forward_floor(cl_model, x_cl, bs)
    funcs["loss_profiles"] = lambda: inputspace.loss_profiles(model, a, c, y, num_points=points)
    funcs["per_pair_loop"] = lambda: per_pair_loop(model, a, c, y, points)
    # the library's path before the speed plan: batch 256, default memory format
    funcs["before_plan"] = lambda: inputspace.loss_profiles(model, a, c, y, num_points=points,
                                                            batch_size=256, channels_last=False)
    t = interleaved(funcs, repeats)
    floors = {k: v for k, v in t.items() if k.startswith("floor")}
    floor_key = min(floors, key=floors.get)
    floor = floors[floor_key]
    ours = inputspace.loss_profiles(model, a, c, y, num_points=points)
    ref = per_pair_loop(model, a, c, y, points)
    diff = (ours - ref).abs().max().item()
    res = dict(floor=floor, floor_key=floor_key, ours=t["loss_profiles"], loop=t["per_pair_loop"],
               over_floor=t["loss_profiles"] / floor, speedup=t["per_pair_loop"] / t["loss_profiles"],
               max_abs_diff=diff, threads=torch.get_num_threads(),
               over_before=t["before_plan"] / t["loss_profiles"],
               plan=f"batch {plan.batch_size}, {'channels_last' if plan.channels_last else 'default'}"
                    f" ({plan.source})")
    print(f"[profiles] {name}, {res['threads']} thread(s): {pairs} pairs x {points} points = "
          f"{pairs * points} inputs")
    for bs in batch_sizes:
        print(f"  forward floor, batch {bs:5d}: default {t[f'floor@{bs}']:.3f} s, channels_last "
              f"{t[f'floor_cl@{bs}']:.3f} s")
    print(f"  loss_profiles (plan: {res['plan']}): {res['ours']:.3f} s  "
          f"-> {res['over_floor']:.3f}x the best floor ({floor_key}) (target <= 1.10)")
    print(f"  per-pair loop (batch 64):  {res['loop']:.3f} s  -> loss_profiles is "
          f"{res['speedup']:.2f}x faster (target >= 1.3)")
    print(f"  loss_profiles before the plan (batch 256, default layout): {t['before_plan']:.3f} s "
          f"-> the plan is {res['over_before']:.2f}x faster")
    print(f"  max |difference| of the values: {diff:.2e} (target < 1e-5)")
    return res


def chapter_pairs(pairs_per_class: int, num_test: int) -> tuple:
    """Correctly classified same-class test pairs for the cached default model."""
    net = zoo.trained_model(dataset="fashion-mnist", model="small_cnn", epochs=2, lr=1e-3,
                                 batch_size=128, seed=0, progress=False)
    test = data.load_dataset("fashion-mnist", "test")
    x, y = test.x[:num_test], test.y[:num_test]
    ok = (training.predict(net, x).argmax(1) == y).nonzero().flatten()
    i, j = data.class_pairs(y[ok], pairs_per_class, seed=0)
    return net, x[ok][i], x[ok][j], y[ok][i]


def bench_find_barrier(net, a, c, y, tol: float) -> dict[str, float]:
    """Section 2."""
    fine = inputspace.barrier(inputspace.loss_profiles(net, a, c, y, num_points=1000))
    start = time.perf_counter()
    vals, _, passes = inputspace.find_barrier(net, a, c, y, tol=tol)
    seconds = time.perf_counter() - start
    agree = ((vals - fine).abs() <= tol).float().mean().item()
    ratio = 250 * len(a) / passes
    print(f"[find_barrier] {len(a)} same-class pairs, tol={tol}: agrees with the 1,000-point grid "
          f"on {agree:.1%} of pairs (target >= 99%); max |diff| "
          f"{(vals - fine).abs().max().item():.4f}; {passes / len(a):.1f} forward passes per "
          f"pair = {ratio:.2f}x fewer than a 250-point grid (target >= 4); {seconds:.2f} s")
    return dict(agree=agree, passes_per_pair=passes / len(a), fewer=ratio)


def bench_bypass(net, a, c, y, steps: int, repeats: int) -> dict[str, float]:
    """Section 3."""
    b = inputspace.interpolate(a, c, 0.5)

    def one_by_one() -> None:
        for i in range(len(a)):
            inputspace.bypass_barrier(net, a[i:i + 1], c[i:i + 1], b[i:i + 1], y[i:i + 1],
                                      steps=steps)

    t = interleaved({"batched": lambda: inputspace.bypass_barrier(net, a, c, b, y, steps=steps),
                     "one_by_one": one_by_one}, repeats)
    ratio = t["one_by_one"] / t["batched"]
    print(f"[bypass] {len(a)} pairs x {steps} steps: batched {t['batched']:.3f} s, one pair at a "
          f"time {t['one_by_one']:.3f} s -> {ratio:.1f}x the throughput (target >= 4)")
    return dict(batched=t["batched"], one_by_one=t["one_by_one"], speedup=ratio)


def one_input_at_a_time(model: torch.nn.Module, targets: torch.Tensor, shape: tuple[int, ...],
                        steps: int, lr: float, stop: float, wd: float, tv: list[float],
                        noise: torch.Tensor) -> torch.Tensor:
    """The baseline of section 4: the paper's loop, one input at a time (normalised units)."""
    mean, std = inputspace.input_normalization(model)
    out = []
    for i in range(len(targets)):
        z = noise[i:i + 1].clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr, weight_decay=wd)
        y = targets[i:i + 1]
        best = float("inf")
        for _ in range(steps):
            opt.zero_grad()
            ce = F.cross_entropy(model(mean + std * z), y)
            loss = ce + tv[i] * inputspace.total_variation(z, "sum").sum() if tv[i] else ce
            loss.backward()
            opt.step()
            with torch.no_grad():
                post = F.cross_entropy(model(mean + std * z), y).item()
            best = min(best, post)
            if post < stop:
                break
        out.append(best)
    return torch.tensor(out)


def bench_synthesis(net, classes: int, repeats: int) -> dict[str, float]:
    """Section 4."""
    targets = torch.arange(classes)
    kw = dict(inputspace.FVO_PAPER)
    shape = (1, 28, 28)
    noise = kw["init_std"] * torch.randn(2 * classes, *shape,
                                         generator=torch.Generator().manual_seed(0))
    tv = [kw["tv_weight"]] * classes + [0.0] * classes
    for p in net.parameters():
        p.requires_grad_(False)

    def batched() -> object:
        return inputspace.synthetic_pairs(net, targets, shape,
                                          generator=torch.Generator().manual_seed(0), **kw)

    def loop() -> object:
        return one_input_at_a_time(net, targets.repeat(2), shape, kw["steps"], kw["lr"],
                                   kw["stop_loss"], kw["weight_decay"], tv, noise)

    t = interleaved({"batched": batched, "loop": loop}, repeats)
    sp = batched()
    ref = loop()
    ours = torch.cat([sp.loss_a, sp.loss_c])
    ratio = t["loop"] / t["batched"]
    print(f"[synthesis] {2 * classes} inputs, paper settings (stop at {kw['stop_loss']}): batched "
          f"{t['batched']:.3f} s, one at a time {t['loop']:.3f} s -> {ratio:.1f}x; all reached the "
          f"stop: ours {bool((ours < kw['stop_loss']).all())}, loop "
          f"{bool((ref < kw['stop_loss']).all())}; steps used max {int(torch.cat([sp.steps_a, sp.steps_c]).max())}")
    return dict(batched=t["batched"], loop=t["loop"], speedup=ratio)


def main(argv: list[str] | None = None) -> dict:
    """Run all sections and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--points", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated thread counts for the profile comparison")
    parser.add_argument("--resnet-width", type=int, default=64,
                        help="base width of resnet18_cifar (64 = the standard ResNet-18)")
    parser.add_argument("--resnet-pairs", type=int, default=None,
                        help="pairs for the ResNet (default: --pairs)")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--skip-cnn", action="store_true", help="skip the small-CNN profiles")
    parser.add_argument("--skip-find", action="store_true", help="skip the find_barrier section")
    parser.add_argument("--only-profiles", action="store_true",
                        help="run section 1 only (no trained model needed)")
    parser.add_argument("--pairs-per-class", type=int, default=25)
    parser.add_argument("--tol", type=float, default=0.01)
    parser.add_argument("--bypass-steps", type=int, default=20)
    parser.add_argument("--synth-classes", type=int, default=10)
    parser.add_argument("--skip-synthesis", action="store_true")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    out: dict = {}
    batch_sizes = (64, 128, 256, 512)
    threads_before = torch.get_num_threads()
    profile_rows = []
    for threads in [int(v) for v in args.threads.split(",") if v]:
        torch.set_num_threads(threads)
        if not args.skip_cnn:
            cnn = build_model("small_cnn", num_classes=10, in_channels=1, input_size=28)
            out[f"small_cnn/{threads}"] = bench_profiles(
                "small_cnn 1x28x28", cnn, (1, 28, 28), args.pairs, args.points, args.repeats,
                batch_sizes)
            profile_rows.append(f"small_cnn/{threads}")
        if not args.skip_resnet:
            res = build_model("resnet18_cifar", num_classes=10, in_channels=3, input_size=32,
                              width=args.resnet_width)
            out[f"resnet18_cifar/{threads}"] = bench_profiles(
                f"resnet18_cifar (width {args.resnet_width}) 3x32x32", res, (3, 32, 32),
                args.resnet_pairs or args.pairs, args.points, max(1, args.repeats - 1),
                (64, 256, 512))
            profile_rows.append(f"resnet18_cifar/{threads}")
    torch.set_num_threads(threads_before)
    if args.only_profiles:
        args.skip_find = args.skip_synthesis = True
    else:
        net, a, c, y = chapter_pairs(args.pairs_per_class, 3000)
    if not args.skip_find:
        out["find_barrier"] = bench_find_barrier(net, a, c, y, args.tol)
    if not args.only_profiles:
        out["bypass"] = bench_bypass(net, a[:args.pairs], c[:args.pairs], y[:args.pairs],
                                     args.bypass_steps, args.repeats)
    if not args.skip_synthesis:
        out["synthesis"] = bench_synthesis(net, args.synth_classes, args.repeats)
        net.requires_grad_(True)
    print("\nsummary")
    print("| comparison | ratio | target |")
    print("|---|---|---|")
    for key in profile_rows:
        r = out[key]
        name = f"{key.split('/')[0]}, {r['threads']} thread(s)"
        print(f"| loss_profiles / best forward floor, {name} | {r['over_floor']:.3f} | <= 1.10 |")
        print(f"| per-pair loop / loss_profiles, {name} | {r['speedup']:.2f} | >= 1.3 |")
        print(f"| loss_profiles before the plan (batch 256) / with it, {name} | "
              f"{r['over_before']:.2f} | > 1 |")
        print(f"| max abs difference, {name} | {r['max_abs_diff']:.1e} | < 1e-5 |")
    if "find_barrier" in out:
        fb = out["find_barrier"]
        print(f"| find_barrier agreement with 1,000-point grid | {fb['agree']:.3f} | >= 0.99 |")
        print(f"| 250-point grid / find_barrier forward passes | {fb['fewer']:.2f} | >= 4 |")
    if "bypass" in out:
        print(f"| bypass throughput, batched / one at a time | {out['bypass']['speedup']:.1f} "
              "| >= 4 |")
    if "synthesis" in out:
        print(f"| synthetic_pairs, one at a time (paper style) / batched | "
              f"{out['synthesis']['speedup']:.1f} | >= 2 |")
    return out


if __name__ == "__main__":
    main()
