"""Subprocess worker of tests/test_layouts.py (run as a script, not collected).

For each model configuration given as JSON on the command line, at one and at two
threads: the gradients (eval mode) in the default layout (the reference), the same
step in ``channels_last`` where the training plan allows it (else it checks that the plan
refuses it), three SGD steps under the training plan, and an evaluation pass in both
layouts. Prints one JSON line per configuration and thread count, flushed, so that a
crash names the configuration it happened in.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import layout_hazards, prepare, prepared
from mcutils.models import build_model


def _grads(model, x, y, channels_last):
    # in eval mode: BatchNorm's batch statistics over 8 images amplify float rounding
    # (a nearly constant channel) into gradient differences of up to 1e-2 between any two
    # summation orders, float64 included, which would hide a real layout error
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x.contiguous(memory_format=fmt)), y).backward()
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.to(memory_format=torch.contiguous_format).train()
    return out


def probe(cfg: dict, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(cfg["name"], num_classes=10, in_channels=cfg["in_channels"],
                        input_size=cfg["size"], **cfg.get("kwargs", {}))
    model.train()
    x = torch.rand(8, cfg["in_channels"], cfg["size"], cfg["size"])
    y = torch.arange(8) % 10
    ref = _grads(model, x, y, False)
    row = {"cfg": cfg, "threads": threads, "hazards": layout_hazards(model)}
    try:
        prepare(model, x, purpose="train", channels_last=True, calibrate=False)
        row["cl_refused"] = False
    except ParameterError:
        row["cl_refused"] = True
    if not row["cl_refused"]:
        cl = _grads(model, x, y, True)
        # relative to the whole gradient: a tiny gradient of one BatchNorm shift would
        # make a per-tensor ratio meaningless
        diff = torch.cat([(cl[n] - ref[n]).flatten() for n in ref])
        row["grad_rel_diff"] = (diff.norm() / torch.cat([g.flatten() for g in ref.values()])
                                .norm()).item()
    plan = prepare(model, x, purpose="train", calibrate=False)
    row["train_plan_channels_last"] = plan.channels_last
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with prepared(model, plan):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(plan.input(x)), y)
            loss.backward()
            opt.step()
    row["train_loss_finite"] = bool(torch.isfinite(loss))
    model.eval()
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.contiguous(
            memory_format=torch.channels_last))
    row["eval_rel_diff"] = ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
    return row


if __name__ == "__main__":
    for cfg in json.loads(sys.argv[1]):
        for threads in (1, 2):
            print("RUNNING", json.dumps({"cfg": cfg, "threads": threads}), flush=True)
            print("RESULT", json.dumps(probe(cfg, threads)), flush=True)
