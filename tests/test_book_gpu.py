"""Profile inheritance, the gpu-smoke profile, the checks before any kernel, and --jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tinyrepo import tiny_repo

from mcutils.core import profiles
from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.data import DatasetNotFoundError
from mcutils.tooling import executor, notebooks, preflight, runner

ROOT = repo_root()
SRC = str(Path(runner.__file__).resolve().parents[2])


# ---------------------------------------------------------------- inheritance


def test_extends_merges_key_by_key_and_catches_cycles(tmp_path):
    root = tiny_repo(tmp_path, {}, profiles={
        "base": {"description": "b", "download": ["mnist"], "defaults": {"a": 1, "b": 2},
                 "chapters": {"01": {"x": 1, "y": [1, 2]}, "02": {"z": 0}}},
        "child": {"extends": "base", "defaults": {"b": 3},
                  "chapters": {"01": {"y": [5]}, "03": {"w": 1}}},
        "grandchild": {"extends": "child", "description": "g", "defaults": {"a": 0}},
        "loop1": {"extends": "loop2"}, "loop2": {"extends": "loop1"},
        "orphan": {"extends": "nope"},
    })
    child = profiles.load_profile("child", root)
    assert child["defaults"] == {"a": 1, "b": 3}
    assert child["chapters"] == {"01": {"x": 1, "y": [5]}, "02": {"z": 0}, "03": {"w": 1}}
    assert child["description"] == "b" and child["download"] == ["mnist"]
    assert child["extends"] == ["base"]
    g = profiles.load_profile("grandchild", root)
    assert g["defaults"] == {"a": 0, "b": 3} and g["description"] == "g"
    assert g["extends"] == ["child", "base"] and g["chapters"]["01"]["x"] == 1
    assert profiles.load_profile("base", root)["extends"] == []
    with pytest.raises(ParameterError, match="cycle"):
        profiles.load_profile("loop1", root)
    with pytest.raises(ParameterError, match="nope"):
        profiles.load_profile("orphan", root)


def test_gpu_smoke_is_smoke_on_cuda_with_local_data():
    """gpu-smoke follows smoke: same parameters except the device and the 32x32 models, sets
    only declared parameters, covers every chapter, and needs no download."""
    from mcutils import data

    smoke = profiles.load_profile("smoke")
    gs = profiles.load_profile("gpu-smoke")
    assert gs["extends"] == ["smoke"] and not gs.get("download")
    # the learning rates follow the model: chapter 05's SGD-trained ends (end_lr) as well,
    # and chapters 06-07's regular end is trained as the gpu profile trains it (SGD)
    changed = {"device", "dataset", "model", "lr", "end_lr", "regular_optimizer",
               "regular_weight_decay", "regular_augment"}
    for chapter, nb in notebooks.chapters().items():
        declared = notebooks.notebook_defaults(nb)
        p_smoke = notebooks.chapter_parameters(smoke, chapter, nb, "smoke", declared)
        p_gpu = notebooks.chapter_parameters(gs, chapter, nb, "gpu-smoke", declared)
        assert p_gpu.pop("profile", "gpu-smoke") == "gpu-smoke"
        p_smoke.pop("profile", None)
        assert set(p_smoke) <= set(p_gpu) and set(p_gpu) - set(p_smoke) <= changed, chapter
        assert {k for k in p_gpu if p_gpu[k] != p_smoke.get(k)} <= changed, chapter
        if "device" in declared:
            assert p_gpu["device"] == "cuda", chapter
        ds = p_gpu.get("dataset", "fashion-mnist")
        assert ds in ("fashion-mnist", "synthetic-cifar10", "digits"), chapter
        assert data.DATASETS[ds].name == ds
    shaped = [c for c, s in gs["chapters"].items() if s.get("dataset") == "synthetic-cifar10"]
    assert shaped, "some chapter must run the 3x32x32 path"


def _cli(module, args, env_extra=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=SRC, CUDA_VISIBLE_DEVICES="")  # no GPU, even on a GPU host
    env.update(env_extra or {})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), timeout=timeout, check=False)
    return proc, time.perf_counter() - start


@pytest.mark.parametrize("module", ["mcutils.book", "mcutils.gpucheck"])
def test_gpu_smoke_without_cuda_stops_within_seconds(module, tmp_path):
    args = ["--profile", "gpu-smoke", "--output", str(tmp_path / "out")]
    proc, seconds = _cli(module, ["execute", *args] if module == "mcutils.book" else args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "CUDA is not available" in proc.stderr and "--device cpu" in proc.stderr
    assert seconds < 20
    assert not (tmp_path / "out").exists()  # no kernel started, nothing written


# ---------------------------------------------------------------- checks before any kernel


def test_missing_data_and_folders_fail_before_any_kernel(tmp_path, monkeypatch):
    root = tiny_repo(tmp_path, {
        "01": [("dataset = 'cifar10'\nimage_folder = None", ["parameters"]), ("1", [])],
    }, profiles={"p": {"defaults": {}, "chapters": {"01": {}}}})
    monkeypatch.setenv("MCUTILS_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError) as exc:
        runner.execute("p", None, output=tmp_path / "out", root=root)
    assert "cifar-10-python.tar.gz" in str(exc.value) and str(tmp_path / "empty") in str(exc.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetNotFoundError, match="image_folder"):
        runner.execute("p", None, output=tmp_path / "out", root=root,
                      overrides={"dataset": "digits", "image_folder": str(tmp_path / "no")})
    monkeypatch.setenv("MCUTILS_ROOT", str(root))
    assert runner.main(["execute", "--profile", "p", "--output", str(tmp_path / "o")]) == 2


def test_cuda_check_names_chapters_and_passes_on_cpu(monkeypatch):
    import torch

    plan = {"01": {"device": "cuda"}, "02": {"device": "cpu"}, "03": {"device": "cuda:1"}}
    assert preflight.cuda_chapters(plan) == ["01", "03"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="01, 03 on device 'cuda'"):
        preflight.check_cuda(plan, "x")
    preflight.check_cuda({"02": {"device": "cpu"}}, "x")  # nothing asks for CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    preflight.check_cuda(plan, "x")


# ---------------------------------------------------------------- --jobs N

# each chapter waits for the other to start: run one after the other, both would time out
BARRIER = (
    "import os, pathlib, time\n"
    "d = pathlib.Path(folder)\n"
    "(d / f'{me}.started').write_text(os.environ.get('CUDA_VISIBLE_DEVICES', '-'))\n"
    "t0 = time.time()\n"
    "while not (d / f'{other}.started').exists():\n"
    "    assert time.time() - t0 < 90, 'the other chapter never started alongside'\n"
    "    time.sleep(0.2)\n"
    "print('chapter', me, 'pid', os.getpid())\n"
)


def _jobs_repo(tmp_path, folder):
    params = "me = ''\nother = ''\nfolder = ''\nx = 1"
    return tiny_repo(tmp_path, {
        "01": [(params, ["parameters"]), (BARRIER, [])],
        "02": [(params, ["parameters"]), (BARRIER, []), ("raise ValueError('boom 02')", [])],
    }, profiles={"tiny": {"defaults": {"folder": str(folder)}, "chapters": {
        "01": {"me": "a", "other": "b"}, "02": {"me": "b", "other": "a"}}}})


def test_jobs_2_runs_chapters_at_once_with_own_logs_and_times(tmp_path, monkeypatch):
    folder = tmp_path / "marks"
    folder.mkdir()
    root = _jobs_repo(tmp_path / "repo", folder)
    out = tmp_path / "out"
    res = runner.execute("tiny", None, output=out, root=root, jobs=2)
    assert set(res["timings"]) == {"01", "02"}
    assert "01" not in res["errors"] and "boom 02" in res["errors"]["02"]
    logs = {c: (out / "logs" / f"{c}_tiny.log").read_text() for c in ("01", "02")}
    assert "chapter a pid" in logs["01"] and "chapter b pid" not in logs["01"]
    assert "chapter b pid" in logs["02"] and "boom 02" in logs["02"]
    pids = {logs[c].split(" pid ")[1].split()[0] for c in logs}
    assert len(pids) == 2  # two kernels
    for c in ("01", "02"):
        t = json.loads((out / "logs" / f"{c}_tiny.json").read_text())
        assert t["chapter"] == c and t["seconds"] == res["timings"][c] and t["gpu"] is None
    assert json.loads((out / "timings-tiny.json").read_text()) == res["timings"]
    assert (out / "01_tiny.ipynb").exists()
    # on the CPU the workers' environment is left alone
    assert {(folder / f"{m}.started").read_text() for m in "ab"} == \
        {os.environ.get("CUDA_VISIBLE_DEVICES", "-")}


def test_jobs_gives_each_worker_its_own_gpu(tmp_path, monkeypatch):
    """With two GPU slots, each chapter sees exactly one device through CUDA_VISIBLE_DEVICES."""
    folder = tmp_path / "marks"
    folder.mkdir()
    root = _jobs_repo(tmp_path / "repo", folder)
    monkeypatch.setattr(runner, "gpu_slots", lambda cuda, jobs: ["3", "5"])
    monkeypatch.setenv("MCUTILS_ROOT", str(root))
    assert runner.main(["execute", "--profile", "tiny", "--output", str(tmp_path / "out"),
                      "--jobs", "2", "--chapters", "01", "02"]) == 1  # chapter 02 raises
    assert sorted((folder / f"{m}.started").read_text() for m in "ab") == ["3", "5"]


def test_gpu_slots(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert executor.gpu_slots(True, 2) == ["3", "5"]
    assert executor.gpu_slots(True, 8) == ["3", "5"]  # one chapter per visible GPU
    assert executor.gpu_slots(True, 1) == ["3"]
    assert executor.gpu_slots(False, 2) == [None, None]
    with pytest.raises(ParameterError, match="jobs"):
        executor.gpu_slots(True, 0)
    with pytest.raises(ParameterError, match="jobs"):
        runner.execute("smoke", ["00"], output="/tmp/never", jobs=0)
