"""Every registry model trains and evaluates in both memory layouts at one and two
threads, each run in a subprocess so that a crash is a failed test (issue: oneDNN's
channels_last weight gradient of narrow 1x1 strided convolutions; see
mcutils.core.runtime.layout_hazards and benchmarks/layout_crash.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mcutils.core.checks import ParameterError
from mcutils.core.runtime import layout_hazards, prepare
from mcutils.models import build_model

PROBE = Path(__file__).with_name("layout_probe.py")
# the registry models at the widths the profiles and tests use (Fashion-MNIST's one
# channel at 28 px, CIFAR's three at 32 px)
CONFIGS = [
    {"name": "small_cnn", "in_channels": 1, "size": 28},
    {"name": "small_cnn", "in_channels": 1, "size": 28, "kwargs": {"width": 2}},
    {"name": "small_cnn", "in_channels": 1, "size": 28, "kwargs": {"width": 4}},
    {"name": "mlp", "in_channels": 1, "size": 28},
    {"name": "vgg16", "in_channels": 3, "size": 32},
    {"name": "preresnet20", "in_channels": 1, "size": 28},
    {"name": "preresnet20", "in_channels": 1, "size": 8, "kwargs": {"width": 4}},
    {"name": "resnet18_cifar", "in_channels": 1, "size": 28, "kwargs": {"width": 4}},
    {"name": "resnet18_cifar", "in_channels": 1, "size": 28, "kwargs": {"width": 16}},
    {"name": "resnet18_cifar", "in_channels": 3, "size": 32, "kwargs": {"width": 64}},
]
X86 = platform.machine().lower() in ("x86_64", "amd64")
# oneDNN's AVX2 kernels are where the bug lives: forced here, so that an AVX-512 machine
# runs the same code as an AVX2 one (on an AVX2 machine the variable changes nothing)
ISAS = ["native", "AVX2"] if X86 else ["native"]


def _run(code_or_script: list[str], isa: str, timeout: int = 600):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    return subprocess.run([sys.executable, *code_or_script], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("isa", ISAS)
def test_every_registry_model_trains_in_both_layouts_at_one_and_two_threads(isa):
    p = _run([str(PROBE), json.dumps(CONFIGS)], isa)
    lines = p.stdout.splitlines()
    running = [ln for ln in lines if ln.startswith("RUNNING")]
    assert p.returncode == 0, (f"the probe died (rc {p.returncode}) in "
                               f"{running[-1] if running else 'start-up'}:\n{p.stderr[-2000:]}")
    rows = [json.loads(ln.split(" ", 1)[1]) for ln in lines if ln.startswith("RESULT")]
    assert len(rows) == 2 * len(CONFIGS)
    for row in rows:
        where = f"{row['cfg']} at {row['threads']} thread(s), ISA {isa}"
        assert row["train_loss_finite"], where
        assert row["eval_rel_diff"] < 1e-4, where
        # a model is refused channels_last training exactly when it has a hazard
        assert row["cl_refused"] == bool(row["hazards"]), where
        if row["hazards"]:
            assert not row["train_plan_channels_last"], where
        else:
            assert row["grad_rel_diff"] < 1e-4, where
    hazardous = {json.dumps(r["cfg"]) for r in rows if r["hazards"]}
    # the narrow residual nets are the ones the rule takes out of channels_last
    assert hazardous == {json.dumps(CONFIGS[6]), json.dumps(CONFIGS[7])}


@pytest.mark.skipif(not X86, reason="oneDNN's AVX2 kernels exist on x86 only")
def test_the_rule_is_needed_the_unguarded_layer_fails_under_avx2():
    """Negative control: without the rule, the smallest case (a 1x1 stride-2 conv with 4
    input channels, channels_last, oneDNN AVX2) crashes at one thread and gives a wrong
    weight gradient at two. If this starts passing, the upstream bug is fixed for this
    torch version and layout_hazards can be relaxed."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        from layout_crash import run_case
    finally:
        sys.path.pop(0)
    one, two = run_case(1, 4, 8, 1, 2), run_case(2, 4, 8, 1, 2)
    assert one.startswith(("CRASH", "WRONG")) and two.startswith(("CRASH", "WRONG")), (one, two)
    # the same layer with 8 input channels is computed correctly at both thread counts
    assert run_case(1, 8, 8, 1, 2) == "ok" and run_case(2, 8, 8, 1, 2) == "ok"


def test_layout_hazards_names_exactly_the_narrow_strided_1x1_convolutions():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 1, stride=2),    # one input channel: both layouts are the same bytes
        nn.Conv2d(4, 8, 1, stride=2),    # hazard
        nn.Conv2d(7, 8, 1, stride=(1, 2)),  # hazard
        nn.Conv2d(4, 8, 1, stride=1),    # stride 1: fine
        nn.Conv2d(4, 8, 3, stride=2),    # 3x3: fine
        nn.Conv2d(8, 8, 1, stride=2),    # 8 channels: fine
        nn.Conv2d(8, 8, 1, stride=2, groups=2),  # 4 per group: hazard
    )
    assert layout_hazards(net) == ["1", "2", "6"]
    assert layout_hazards(build_model("small_cnn")) == []
    assert layout_hazards(build_model("resnet18_cifar", width=16)) == []
    assert layout_hazards(build_model("preresnet20", width=4)) != []


def test_training_plan_never_chooses_channels_last_for_a_hazardous_model(monkeypatch):
    net = build_model("preresnet20", in_channels=1, input_size=8, width=4)
    x = torch.rand(4, 1, 8, 8)
    # the fixed choice and a stored (calibrated) choice of channels_last are both overruled
    assert not prepare(net, x, purpose="train", calibrate=False).channels_last
    monkeypatch.setattr("mcutils.core.runtime._calibrate", lambda *a, **k: (True, 4))
    assert not prepare(net, x, purpose="train", calibrate=True).channels_last
    with pytest.raises(ParameterError, match="layout_hazards"):
        prepare(net, x, purpose="train", channels_last=True)
    # inference (forward and input gradients are exact) keeps its choice
    assert prepare(net, x, calibrate=False).channels_last
    # a safe model still trains in channels_last under the fixed plan
    assert prepare(build_model("small_cnn"), torch.rand(4, 1, 28, 28), purpose="train",
                   calibrate=False).channels_last
