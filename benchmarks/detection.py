"""Speed of chapter 04's two heavy steps, each against a one-at-a-time reference.

1. Connectivity features (:func:`mcutils.detection.barrier_features`): ``--inputs``
   inputs (default 1,000) against K = 5 references each, 64 points per path, batched
   (all inputs x references x points in flattened batches) versus a loop over inputs
   (:func:`mcutils.detection.barrier_features_loop`, one input's K x 64 points per pass),
   on the untrained ``small_cnn`` (the cost does not depend on the weights). The loop is
   timed on ``--loop-inputs`` inputs and scaled linearly.
2. The paper's attack (:func:`mcutils.attacks.optimization_attack`, 512 steps, stop at
   the loss of a real target image after 32 warm-up steps) on ``--pairs`` sources of the
   paper's paired design (default 70: 7 per class), batched with the finished samples
   leaving the batch, versus the paper's own structure: one image at a time with
   ``torch.optim.Adam`` (timed on ``--loop-pairs`` sources and scaled). It uses the
   book's default trained model (:func:`mcutils.zoo.trained_model`, from the cache
   when chapter 00 has run) because the stopping rule makes the cost depend on it.

Both sides run in one process, alternating; the median of ``--repeats`` runs is reported
with the ratio, and the results are checked to agree.

Usage: python benchmarks/detection.py [--inputs 1000] [--pairs 70] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from mcutils import advbarriers, attacks, data, detection, zoo
from mcutils.models import build_model


def paper_loop(model, sources, targets, stop, steps=512, lr=0.005, mse_weight=0.1,
               hf_weight=1e-8, warmup=32):
    """The paper's create_adversarial structure: one image at a time, torch.optim.Adam on
    the normalised input, break after the update once i > warmup and CE < stop."""
    mean, std = attacks.input_normalization(model)
    out = []
    for k in range(len(sources)):
        carrier = (sources[k:k + 1] - mean) / std
        z = carrier.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for i in range(steps):
            opt.zero_grad()
            ce = F.cross_entropy(model(z * std + mean), targets[k:k + 1])
            d = z - carrier
            loss = ce + mse_weight * d.pow(2).mean() + hf_weight * attacks.high_frequency_penalty(d).sum()
            loss.backward()
            opt.step()
            if i > warmup and ce.item() < float(stop[k]):
                break
        out.append(z.detach() * std + mean)
    return torch.cat(out)


def features(args) -> None:
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


def attack(args) -> None:
    model = zoo.trained_model(progress=False)
    for p in model.parameters():
        p.requires_grad_(False)
    test = data.load_dataset("fashion-mnist", "test")
    per_class = max(1, args.pairs // 10)
    pairs = advbarriers.paper_pairs(test.x, test.y, per_class, seed=0)
    with torch.no_grad():
        stop = F.cross_entropy(model(pairs.a), pairs.cls, reduction="none")
    m = min(args.loop_pairs, len(pairs))
    batched_t, loop_t = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        adv, steps = attacks.optimization_attack(model, pairs.k, pairs.cls, stop_loss=stop,
                                                 return_steps=True)
        batched_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref = paper_loop(model, pairs.k[:m], pairs.cls[:m], stop[:m])
        loop_t.append((time.perf_counter() - t) * len(pairs) / m)
    diff = (adv[:m] - ref).abs()
    assert diff.mean() < 1e-3, f"batched and per-image attacks disagree: {diff.mean():.2e}"
    b, lp = statistics.median(batched_t), statistics.median(loop_t)
    print(f"\npaper's attack: {len(pairs)} sources, 512 steps at most (median "
          f"{float(steps.float().median()):.0f} taken), torch threads={torch.get_num_threads()}")
    print("| method | seconds |")
    print("|---|---|")
    print(f"| batched (optimization_attack) | {b:.2f} |")
    print(f"| one image at a time, torch.optim.Adam (scaled from {m}) | {lp:.2f} |")
    print(f"speed-up batched / loop: {lp / b:.2f}x (mean |difference| {diff.mean():.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--loop-inputs", type=int, default=200)
    ap.add_argument("--refs", type=int, default=5)
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=70)
    ap.add_argument("--loop-pairs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    features(args)
    attack(args)


if __name__ == "__main__":
    main()
