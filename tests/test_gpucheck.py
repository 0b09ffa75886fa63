"""The driver that runs chapters without papermill or Jupyter."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _tinyrepo import tiny_repo

from mcutils.core.checks import ParameterError
from mcutils.tooling import gpucheck, notebooks

SRC = str(Path(gpucheck.__file__).resolve().parents[2])

PARAMS = "x = 1  # a number\nlabel = 'a'\nout = ''"
BODY = (
    "import pathlib\n"
    "import matplotlib.pyplot as plt\n"
    "from IPython.display import HTML\n"
    "from mcutils.core import report\n"
    "pathlib.Path(out).write_text(f'{x} {label}')\n"
    "plt.plot([0, 1], [x, x])\n"
    "display(HTML('<b>shown</b>'))\n"
    "print('printed by', label)\n"
    "ch = report.ChapterReport('{c}', params=dict(x=x), expected=['big'], check=True)\n"
    "ch.claim('big', 'x >= 2', '', dict(estimate=x, ci=[x, x], n=1), 2, '>=')\n"
    "ch.finish()\n"
)


def _repo(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    chapters = {
        "01": [(PARAMS, ["parameters"]), (BODY.replace("{c}", "01"), []),
               ("ch.provenance_view()", ["hide-input"])],
        "02": [(PARAMS, ["parameters"]), ("y = 1", []), ("raise KeyError('boom')", []),
               ("pathlib.Path(out).write_text('after the error')", [])],
        "03": [(PARAMS, ["parameters"]), (BODY.replace("{c}", "03"), [])],
    }
    profiles = {"tiny": {"defaults": {"label": "b"}, "chapters": {
        "01": {"x": 3, "out": str(marks / "01")}, "02": {"out": str(marks / "02")},
        "03": {"x": 1, "out": str(marks / "03")}}}}
    return tiny_repo(tmp_path / "repo", chapters, profiles), marks


def test_parameters_read_without_papermill_match_papermill():
    """The driver reads a notebook's parameters with notebooks.notebook_defaults (no papermill);
    they are the ones papermill sees."""
    import papermill as pm

    for chapter, nb in notebooks.chapters().items():
        ours = notebooks.notebook_defaults(nb)
        theirs = pm.inspect_notebook(str(nb))
        assert list(ours) == list(theirs), chapter
        for name, info in theirs.items():
            assert ours[name] == ast.literal_eval(info["default"]), (chapter, name)


def test_run_injects_parameters_and_reports_each_chapter(tmp_path):
    root, marks = _repo(tmp_path)
    out = tmp_path / "out"
    res = gpucheck.run("tiny", None, output=out, root=root)
    ch = res["chapters"]
    # the profile's values replace the parameters cell's, as papermill's injection does
    assert (marks / "01").read_text() == "3 b" and (marks / "03").read_text() == "1 b"
    assert ch["01"]["status"] == "ok" and ch["01"]["cells"] == 3
    assert ch["02"]["status"] == "FAILED" and ch["02"]["error"].startswith("cell 2: KeyError")
    assert not (marks / "02").exists()  # nothing runs after the failing cell
    assert ch["03"]["status"] == "claims not reproduced"
    assert "ch03_big" in ch["03"]["failed_claims"][0]
    log = (out / "logs" / "01.log").read_text()
    assert "printed by b" in log and "shown" in log
    assert "KeyError" in (out / "logs" / "02.log").read_text()  # the traceback is logged
    saved = json.loads((out / "gpucheck-tiny.json").read_text())
    assert saved["chapters"]["02"]["status"] == "FAILED" and saved["machine"]["torch"]
    table = gpucheck.format_table(res)
    assert all(line.split()[0] in ("chapter", "01", "02", "03", "total")
               for line in table.splitlines())


def test_main_exit_codes_and_overrides(tmp_path, monkeypatch, capsys):
    root, marks = _repo(tmp_path)
    monkeypatch.setenv("MCUTILS_ROOT", str(root))
    out = str(tmp_path / "out")
    assert gpucheck.main(["--profile", "tiny", "--chapters", "01", "--output", out]) == 0
    assert gpucheck.main(["--profile", "tiny", "--chapters", "03", "--output", out]) == 1
    assert "ch03_big" in capsys.readouterr().err
    assert gpucheck.main(["--profile", "tiny", "--chapters", "03", "-p", "x", "5",
                          "--output", out]) == 0
    assert (marks / "03").read_text() == "5 b"
    assert gpucheck.main(["--profile", "tiny", "-p", "nope", "1", "--output", out]) == 2
    assert gpucheck.main(["--profile", "tiny", "--device", "cpu", "--output", out]) == 2
    assert "device" in capsys.readouterr().err  # no tiny chapter declares a device


def test_runs_without_papermill_jupyter_or_ipython(tmp_path):
    """On a GPU machine with only PyTorch, the driver still runs (IPython's display is
    stood in for). The modules are blocked by a sitecustomize, so in the driver and in
    the worker processes that run the chapters alike."""
    root, marks = _repo(tmp_path)
    blocked = ("papermill", "nbformat", "nbclient", "jupyter_client", "jupyter_core",
               "IPython", "ipykernel", "myst_nb", "matplotlib_inline")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n")
    code = ("import sys\n"
            "from mcutils.tooling.gpucheck import main\n"
            "rc = main(sys.argv[1:])\n"
            f"assert not any(sys.modules.get(m) for m in {blocked!r})\n"
            "sys.exit(rc)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), SRC]), MCUTILS_ROOT=str(root))
    proc = subprocess.run([sys.executable, "-c", code, "--profile", "tiny", "--chapters", "01",
                           "--output", str(tmp_path / "out")], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (tmp_path / "out" / "logs" / "01.log").read_text()
    assert "shown" in log  # the chapter's display() went through the stand-in
    assert (marks / "01").read_text() == "3 b"


def test_magics_are_skipped_and_missing_parameters_cell_is_an_error(tmp_path):
    root = tiny_repo(tmp_path / "r", {
        "01": [("x = 1", ["parameters"]), ("%matplotlib inline\ny = x + 1", [])],
        "02": [("x = 1", [])],
    })
    res = gpucheck.run_chapter(root / "notebooks" / "01_tiny.ipynb", {"x": 2}, cwd=root)
    assert res["error"] is None and res["magics"] == 1
    with pytest.raises(ParameterError, match="parameters"):
        gpucheck.run_chapter(root / "notebooks" / "02_tiny.ipynb", {}, cwd=root)


def test_real_chapter_runs_under_the_smoke_profile_on_cpu(tmp_path):
    """Chapter 00 through the driver: the book's own code, the smoke profile, the CPU."""
    res = gpucheck.run("smoke", ["00"], device="cpu", output=tmp_path / "out")
    r = res["chapters"]["00"]
    assert r["error"] is None, (tmp_path / "out" / "logs" / "00.log").read_text()[-3000:]
    claims = json.loads((tmp_path / "out" / "claims-smoke" / "ch00.json").read_text())
    assert claims["provenance"]["device"] == "cpu" and claims["provenance"]["profile"] == "smoke"
    assert claims["claims"]  # the chapter's claims were computed
