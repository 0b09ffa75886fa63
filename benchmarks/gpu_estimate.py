"""Estimated wall time of each chapter under the gpu profile on one H100 (nothing measured
on a GPU yet).

How the estimate is made, so that it can be checked and replaced by measurements:

1. Forward FLOPs per image of each model are counted with
   ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add).
2. For each chapter the dominant work of the gpu profile is counted from its parameters
   (``profiles/gpu.yaml``) as image passes: a forward pass counts 1, a forward and
   backward pass (training step, attack or input-optimisation step) counts 3, a
   Hessian-vector product counts 5. The items and their formulas are listed below;
   anything not listed (plots, statistics) is assumed small.
3. Large 32x32 networks (VGG-16, ResNet-18) are taken to sustain 15 TFLOP/s: about a
   quarter of an H100's dense FP32+TF32 convolution throughput with deterministic
   cuDNN algorithms and no autocast. Small networks on 28x28 inputs are latency-bound:
   each batch step costs at least 1.5 ms (training or input-optimisation step) or
   0.5 ms (forward batch of up to 1,024 images).
4. Chapter 02 is bound by the host CPU (site percolation in NumPy/SciPy): its time is the
   cpu profile's measured time scaled by the ratio of simulated lattice sites. Chapter 04
   fits detectors and bootstraps AUROCs on the host CPU: an upper bound is its whole
   cpu-profile time scaled by the ratio of inputs.
5. Every chapter adds 30 s for the kernel, CUDA start-up and data loading.

The result is an order of magnitude (within a factor of about three), not a measurement.
Run: ``python benchmarks/gpu_estimate.py``.
"""

from __future__ import annotations

import functools
import math

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from mcutils import models
from mcutils.core import profiles
from mcutils.data import dataset_info
from mcutils.tooling import notebooks

BIG_FLOPS = 15e12  # sustained FLOP/s of large 32x32 networks (assumption, see above)
STEP_S, FWD_S = 1.5e-3, 0.5e-3  # latency floor per step / per forward batch (assumption)
OVERHEAD_S = 30.0
CPU_CH02_S = 50.0  # chapter 02, cpu profile, cold (book/performance.md, loaded machine)
CPU_CH04_S = 91.0  # chapter 04, cpu profile, cold (book/performance.md, loaded machine)
TRAIN_N = {"fashion-mnist": 60000, "mnist": 60000, "cifar10": 50000, "svhn": 73257}


@functools.cache
def fwd_flops(model: str, dataset: str) -> float:
    info = dataset_info(dataset)
    net = models.build_model(model, in_channels=info.in_channels, input_size=info.input_size)
    with FlopCounterMode(display=False) as fc:
        net.eval()(torch.rand(1, *info.shape))
    return float(fc.get_total_flops())


class Chapter:
    """Accumulates image passes and latency-bound steps of one chapter."""

    def __init__(self, p: dict):
        self.p = p
        self.seconds = 0.0
        self.items: list[tuple[str, float]] = []

    def work(self, what: str, model: str, images: float, factor: float, batch: int = 1024,
             dataset: str | None = None) -> None:
        """``images`` image passes of ``factor`` forward-equivalents, in batches."""
        flops = fwd_flops(model, dataset or self.p["dataset"]) * images * factor
        steps = math.ceil(images / batch)
        floor = steps * (STEP_S if factor > 1 else FWD_S)
        s = max(flops / BIG_FLOPS, floor)
        self.seconds += s
        self.items.append((what, s))

    def training(self, what: str, model: str, epochs: float, n: int | None = None,
                 factor: float = 3, dataset: str | None = None) -> None:
        n = n or TRAIN_N[dataset or self.p["dataset"]]
        self.work(what, model, epochs * n, factor, self.p["batch_size"], dataset)


def estimate(chapter: str, p: dict, q: dict) -> Chapter:
    """The estimate for one chapter from its gpu-profile (``p``) and cpu-profile (``q``)
    parameters."""
    c = Chapter(p)
    m, e = p["model"], p["num_epochs"]
    if chapter == "00":
        c.training("train the default model", m, e)
        c.work("test accuracy", m, 10000, 1)
    elif chapter == "01":
        c.training("train", m, e)
        pairs = 10 * (p["num_pairs_per_class"] + 2 * p["num_other_pairs_per_class"])
        c.work("straight-path profiles", m, pairs * p["num_points"], 1)
        c.work("synthetic inputs", m, 10 * p["synth_per_class"] * p["synth_steps"], 3,
               batch=10 * p["synth_per_class"])
        rounds = p.get("max_rounds", 3)
        c.work("bypasses (every pair, every round: an upper bound)", m,
               pairs * p["bypass_steps"] * rounds, 3, batch=pairs)
        c.work("profiles after each round", m, pairs * p["num_points"] * rounds, 1)
    elif chapter == "02":
        def sites(q):
            thr = sum(sum(s ** d for s in sz) * q["threshold_trials"]
                      for d, sz in zip(q["threshold_dims"], q["threshold_sizes"]))
            con = q["connection_sites"] * q["connection_trials"] * len(q["connection_dims"])
            return thr + con + q["lattice_side"] ** 2
        ratio = sites(p) / sites(q)
        c.seconds += CPU_CH02_S * ratio
        c.items.append((f"percolation on the host CPU: cpu-profile time x {ratio:.0f}",
                        CPU_CH02_S * ratio))
        c.work("grids through image pairs", m,
               p["max_cells"] * p["num_pairs"] * len(p["network_dims"]), 1)
    elif chapter == "03":
        for arch in p["untrained_models"]:
            seeds = p.get("model_seeds", {}).get(arch, p["num_seeds"])
            inputs = 2 * 10 * p["pairs_per_class"] * seeds
            c.work(f"{arch}: synthetic inputs", arch, inputs * p["synth_steps"], 3, batch=inputs)
            pairs = 10 * (p["pairs_per_class"] + p["real_pairs_per_class"]) * seeds
            c.work(f"{arch}: bypasses", arch, pairs * p["bypass_steps"] * p.get("max_rounds", 2),
                   3, batch=pairs)
        c.work("tracking during training", m, p["track_runs"] * p["track_batches"]
               * p["track_points"] * 10 * (p["track_real_pairs_per_class"] + 2), 1)
    elif chapter == "04":
        c.training("train the default model", m, e)
        n = p["num_inputs"]
        steps = 2 * p["pgd_steps"] + p["cw_steps"] + p["optim_steps"]
        c.work("attacks", m, n * steps, 3, batch=n)
        c.work("barrier features (6 input kinds)", m, 6 * n * p["num_refs"] * p["num_points"], 1)
        per_step = 1 + p["adaptive_refs"] * p["adaptive_points"]
        c.work("adaptive attack", m, p["adaptive_inputs"] * p["adaptive_steps"] * per_step, 3,
               batch=p["adaptive_inputs"] * per_step)
        for arch in p["sweep_models"]:
            if arch in models.MODELS:
                c.training(f"sweep network {arch}", arch, p["sweep_epochs"])
        ratio = n / q["num_inputs"]
        c.seconds += CPU_CH04_S * ratio
        c.items.append((f"host CPU (upper bound): cpu-profile time x {ratio:.0f}",
                        CPU_CH04_S * ratio))
    elif chapter == "05":
        from mcutils.chapters.ch05_protocol import METHODS, repair_budget

        c.training("train 2 clean + 2 backdoored VGG-16 ends", m, 4 * e)

        def steps(n: int) -> int:
            return repair_budget(n, p["repair_epochs"], p["repair_batch"],
                                 p["repair_max_steps"], p["repair_epoch_size"])[0]

        trained = len([k for k in METHODS if k != "noise"])  # noise needs no training
        seeds, sizes = len(p["seeds"]), p["bonafide_sizes"]
        runs = {"learning-rate grid (seed 0)": trained * len(p["lrs"]) * sum(
                    steps(n) for n in p["tune_sizes"]),
                "main sweep (other seeds)": trained * (seeds - 1) * sum(steps(n) for n in sizes),
                "error injection": len(p["fault_methods"]) * seeds * sum(
                    steps(n) for n in p["fault_sizes"]),
                "path-aware repair": seeds * sum(steps(n) for n in p["adaptive_sizes"]),
                "curve variants": len(p["variants"]) * seeds * steps(p["variant_size"])}
        for what, total_steps in runs.items():
            c.work(what, m, total_steps * p["repair_batch"], 3, batch=p["repair_batch"])
        curves = seeds * (2 * len(sizes) + len(p["fault_sizes"]) + len(p["adaptive_sizes"])
                          + len(p["variants"]))
        c.work("curve points on the validation split", m,
               curves * p["num_ts"] * p["val_size"], 1)
    elif chapter == "06":
        c.training("train the standard end (shared with chapter 05)", m, e)
        c.training("robust end (1-step PGD + gradient penalty)", m, p["adv_epochs"], factor=8)
        c.training("variant end (multi-step PGD)", m, p["adv_epochs"],
                   factor=3 * p["adv_steps"] + 3)
        runs = len(p["seeds"]) + len(p["variant_seeds"]) + len(p["shared_init_seeds"])
        c.work("curve runs (every budget from one run per seed)", m,
               runs * max(p["curve_budgets"]) * p["batch_size"], 3, batch=p["batch_size"])
        c.work("curves trained on the robust loss", m, len(p["robust_path_seeds"])
               * p["robust_path_steps"] * p["batch_size"], 8, batch=p["batch_size"])
        paths = len(p["seeds"]) * len(p["curve_budgets"]) + len(p["variant_seeds"]) * len(
            p["curve_budgets"]) + len(p["robust_path_seeds"])
        c.work("losses and PGD attacks along the curves", m,
               paths * p["num_ts"] * p["path_size"] * (1 + 3 * p["attack_steps"]), 1)
        c.work("top Hessian eigenvalues along the curve (closed form: 10 backward passes)", m,
               len(p["seeds"]) * p["num_ts"] * p["eval_size"] * 10, 3, batch=p["batch_size"])
    c.seconds += OVERHEAD_S
    return c


def main() -> None:
    gpu, cpu = profiles.load_profile("gpu"), profiles.load_profile("cpu")
    total = 0.0
    print("chapter  estimate  dominant items")
    for chapter, nb in sorted(notebooks.chapters().items()):
        own = notebooks.notebook_defaults(nb)  # the notebook's defaults fill what a profile leaves out
        p = {**own, **gpu["defaults"], **gpu["chapters"].get(chapter, {})}
        q = {**own, **cpu["defaults"], **cpu["chapters"].get(chapter, {})}
        try:
            c = estimate(chapter, p, q)
        except KeyError as exc:  # a chapter renamed a parameter: say so rather than guess
            print(f"{chapter}       ?        parameter {exc} not in the gpu profile")
            continue
        total += c.seconds
        top = sorted(c.items, key=lambda kv: -kv[1])[:3]
        items = "; ".join(f"{w} {s / 60:.1f} min" for w, s in top)
        print(f"{chapter}  {c.seconds / 60:7.0f} min  {items}")
    print(f"all chapters one after the other: {total / 3600:.1f} h on one GPU")
    print(yaml.safe_dump({"assumptions": {"big_net_flops_per_s": BIG_FLOPS,
                                          "step_latency_s": STEP_S, "forward_latency_s": FWD_S,
                                          "overhead_per_chapter_s": OVERHEAD_S}}).strip())


if __name__ == "__main__":
    main()
