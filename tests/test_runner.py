"""The runner's execution on a CPU: single-thread kernels whatever the number of workers,
chapter 00 first, then the longest chapters first."""

from __future__ import annotations

import json
import os

import pytest
from _tinyrepo import tiny_repo

from mcutils.tooling import executor, runner

REPORT = ("import os, json, pathlib, torch\n"
          "pathlib.Path(folder, me + '.json').write_text(json.dumps(\n"
          "    {'threads': torch.get_num_threads(), 'omp': os.environ.get('OMP_NUM_THREADS')}))\n")


def _repo(tmp_path, folder):
    params = "me = ''\nfolder = ''"
    return tiny_repo(tmp_path, {
        "00": [(params, ["parameters"]), (REPORT, [])],
        "01": [(params, ["parameters"]), (REPORT, [])],
        "02": [(params, ["parameters"]), (REPORT, [])],
    }, profiles={"tiny": {"defaults": {"folder": str(folder)}, "chapters": {
        "00": {"me": "c00"}, "01": {"me": "c01"}, "02": {"me": "c02"}}}})


@pytest.mark.parametrize("jobs", [1, 2])
def test_cpu_chapters_run_single_threaded_with_any_number_of_workers(tmp_path, jobs):
    folder = tmp_path / "marks"
    folder.mkdir()
    root = _repo(tmp_path / "repo", folder)
    before = os.environ.get("OMP_NUM_THREADS")
    res = runner.execute("tiny", None, output=tmp_path / "out", root=root, jobs=jobs)
    assert not res["errors"], res["errors"]
    for c in ("c00", "c01", "c02"):
        seen = json.loads((folder / f"{c}.json").read_text())
        assert seen == {"threads": 1, "omp": "1"}, (c, seen)
    assert os.environ.get("OMP_NUM_THREADS") == before  # the caller's environment is back


def test_order_is_chapter_00_then_longest_first(tmp_path):
    plan = {c: {} for c in ("00", "01", "02", "03", "04")}
    f = tmp_path / "timings.json"
    assert list(runner._ordered(plan, f)) == ["00", "01", "02", "03", "04"]
    f.write_text(json.dumps({"00": 70, "01": 60, "02": 90, "04": 500}))
    # 03 has no recorded time: it goes first among the rest, as if the longest
    assert list(runner._ordered(plan, f)) == ["00", "03", "04", "02", "01"]
    assert list(runner._ordered({"02": {}, "01": {}}, f)) == ["02", "01"]


def test_timings_are_merged_not_replaced(tmp_path):
    f = tmp_path / "t.json"
    runner._save_timings(f, {"01": 5.0, "02": 7.0})
    runner._save_timings(f, {"02": 9.0})
    assert json.loads(f.read_text()) == {"01": 5.0, "02": 9.0}


def test_plan_command_lists_and_forgets_the_stored_plans(capsys):
    import torch

    from mcutils.core import runtime
    from mcutils.models import build_model

    net = build_model("small_cnn", width=4, hidden=8)
    runtime.prepare(net, torch.rand(4, 1, 28, 28), calibrate=True, purpose="train")
    assert len(runtime.stored_plans()) == 1
    assert runner.main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "threads=" in out and "1 stored plan(s)" in out
    assert runner.main(["plan", "--recalibrate"]) == 0
    assert runtime.stored_plans() == {}
    assert runtime.forget_plans() == 0


def test_set_and_restore_environ(monkeypatch):
    from mcutils.tooling.notebooks import restore_environ, set_environ

    monkeypatch.setenv("MCUTILS_TEST_A", "old")
    monkeypatch.delenv("MCUTILS_TEST_B", raising=False)
    saved = set_environ({"MCUTILS_TEST_A": "new", "MCUTILS_TEST_B": "1"})
    assert os.environ["MCUTILS_TEST_A"] == "new" and os.environ["MCUTILS_TEST_B"] == "1"
    restore_environ(saved)
    assert os.environ["MCUTILS_TEST_A"] == "old" and "MCUTILS_TEST_B" not in os.environ


def test_status_line_names_each_running_chapter_its_time_and_cell(tmp_path):
    log = tmp_path / "05.log"
    log.write_text("Executing Cell 3---\nsome output\nExecuting Cell 12---\n")
    line = executor.status_line({"05": (100.0, log), "03": (150.0, tmp_path / "none.log")},
                              now=162.0)
    assert line == "03 12 s, 05 62 s (cell 12)"
    assert executor.status_line({}) == ""


def test_a_call_task_runs_its_function_in_a_worker_and_reports_errors(tmp_path):
    made = tmp_path / "made" / "deep"
    ok = executor.Task(chapter="05:a", notebook=tmp_path / "05_x.ipynb", params={},
                       log=tmp_path / "a.log", result=tmp_path / "a.json", cwd=tmp_path,
                       engine="call", call="os:makedirs", kwargs={"name": str(made)}, label="05:a")
    bad = executor.Task(chapter="05:b", notebook=tmp_path / "05_x.ipynb", params={},
                        log=tmp_path / "b.log", result=tmp_path / "b.json", cwd=tmp_path,
                        engine="call", call="os:rmdir", kwargs={"path": str(tmp_path / "no")})
    res = executor.execute_tasks([ok, bad], jobs=2)
    assert made.is_dir() and res["05:a"]["error"] is None
    assert "FileNotFoundError" in res["05:b"]["error"]
    assert "FileNotFoundError" in (tmp_path / "b.log").read_text()  # the traceback is logged
    assert ok.name == "05:a" and bad.name == "05_x.ipynb"


@pytest.mark.parametrize("fields", [{"engine": "call"}, {"engine": "call", "call": "os.makedirs"},
                                    {"engine": "headless", "call": "os:makedirs"}])
def test_a_call_task_needs_a_module_function_and_the_call_engine(tmp_path, fields):
    with pytest.raises(executor.ParameterError):
        executor.Task(chapter="05:a", notebook=tmp_path / "x.ipynb", params={},
                      log=tmp_path / "a.log", result=tmp_path / "a.json", cwd=tmp_path, **fields)


def test_pool_parts_come_from_the_chapter_module_with_its_validated_parameters(monkeypatch):
    import sys
    import types

    from mcutils import chapters
    from mcutils.params import Param, ParameterSchema

    fake = types.ModuleType("mcutils.chapters.ch98_fake")
    fake.PARAMETERS = ParameterSchema("98", {"seeds": Param([0], "seeds")})
    fake.train = lambda seed: seed
    fake.pool_parts = lambda p: [(f"seed{s}", "train", {"seed": s}) for s in p["seeds"]]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(chapters.MODULES, "98", "ch98_fake")
    assert chapters.pool_parts("98", {}) == [("98:seed0", "mcutils.chapters.ch98_fake:train",
                                              {"seed": 0})]
    assert [p[0] for p in chapters.pool_parts("98", {"seeds": [3, 4]})] == ["98:seed3", "98:seed4"]
    fake.pool_parts = lambda p: [("x", "missing", {})]
    with pytest.raises(AttributeError, match="missing"):
        chapters.pool_parts("98", {})
    with pytest.raises(KeyError):
        chapters.pool_parts("97", {})
    del fake.pool_parts
    assert chapters.pool_parts("98", {}) == []


def test_part_log_names_have_no_spaces_and_stay_unique():
    taken: set[str] = set()
    a = runner._part_stem("07_learned_curves", "ch07 robust model 1", taken)
    assert a == "07_learned_curves.part-ch07-robust-model-1"
    b = runner._part_stem("07_learned_curves", "ch07 robust/model 1", taken)
    assert b == "07_learned_curves.part-ch07-robust-model-1-2" and " " not in b
    assert runner._part_stem("05_x", "clean-0", taken) == "05_x.part-clean-0"


def test_cpu_workers_get_one_thread_unless_a_benchmark_asks(monkeypatch):
    monkeypatch.delenv(runner.THREADS_ENV, raising=False)
    assert runner.cpu_thread_env() == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    monkeypatch.setenv(runner.THREADS_ENV, "2")
    assert set(runner.cpu_thread_env().values()) == {"2"}
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(runner.THREADS_ENV, bad)
        with pytest.raises(runner.ParameterError, match=runner.THREADS_ENV):
            runner.cpu_thread_env()
