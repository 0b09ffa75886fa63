"""The runner, the profiles and the packaging files."""

import re
import subprocess
import sys

import pytest
import yaml

from mcutils.core import profiles
from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root
from mcutils.tooling import notebooks, offline, runner

try:
    import tomllib
except ImportError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

ROOT = repo_root()
CHAPTERS = notebooks.chapters()


def test_chapters_found_and_numbered():
    found = notebooks.chapters()
    assert "00" in found and all(re.fullmatch(r"\d\d", k) for k in found)


def test_unknown_profile_lists_valid():
    with pytest.raises(ParameterError) as exc:
        runner.execute("huge", ["00"], output="/tmp/never")
    assert "smoke" in str(exc.value) and "cpu" in str(exc.value)


def test_unknown_chapter_is_error_before_running(tmp_path):
    with pytest.raises(ParameterError, match="99"):
        runner.execute("smoke", ["99"], output=tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_reports_errors(capsys):
    assert runner.main(["execute", "--profile", "nope", "--chapters", "00"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_profile_parameters_of_each_chapter(profile, chapter):
    """What the runner passes: the profile's defaults that the chapter declares, then its
    own section on top, and always the profile's name (provenance reads it)."""
    nb = CHAPTERS[chapter]
    prof = profiles.load_profile(profile)
    declared = notebooks.notebook_defaults(nb)
    params = notebooks.chapter_parameters(prof, chapter, nb, profile)
    assert set(params) <= set(declared)
    assert params["profile"] == profile
    expected = {k: v for k, v in prof["defaults"].items() if k in declared}
    expected.update(prof["chapters"].get(chapter, {}), profile=profile)
    assert params == expected


def test_chapter_parameters_on_a_synthetic_notebook(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell("a = 1\nb = 2\nprofile = 'cpu'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    path = tmp_path / "07_x.ipynb"
    nbformat.write(nb, path)
    prof = {"defaults": {"a": 10, "c": 30}, "chapters": {"07": {"b": 20}}}
    assert notebooks.chapter_parameters(prof, "07", path, "gpu") == {"a": 10, "b": 20,
                                                                "profile": "gpu"}
    assert notebooks.chapter_parameters(prof, "07", path) == {"a": 10, "b": 20}
    assert notebooks.chapter_parameters(prof, "08", path, "gpu") == {"a": 10, "profile": "gpu"}
    nb.cells[0].source = "a = 1"  # a chapter without a profile parameter does not get one
    nbformat.write(nb, path)
    assert notebooks.chapter_parameters(prof, "08", path, "gpu") == {"a": 10}
    with pytest.raises(ParameterError, match="'b'"):
        notebooks.chapter_parameters(prof, "07", path, "gpu")


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_notebook_defaults_equal_cpu_profile(chapter):
    """A notebook run without a profile computes what ``make book`` (cpu profile) shows."""
    nb = CHAPTERS[chapter]
    defaults = notebooks.notebook_defaults(nb)
    cpu = notebooks.chapter_parameters(profiles.load_profile("cpu"), chapter, nb, "cpu")
    differ = {k: (defaults.get(k), v) for k, v in cpu.items() if defaults.get(k) != v}
    assert not differ, (f"{nb.name}: parameter defaults differ from profiles/cpu.yaml "
                        f"(name: (notebook, cpu.yaml)): {differ}")


def test_notebook_defaults_reads_literals_only(tmp_path):
    import json

    def write(src):
        cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": src,
                "outputs": [], "execution_count": None}
        (tmp_path / "n.ipynb").write_text(json.dumps({"cells": [cell]}))
        return tmp_path / "n.ipynb"

    assert notebooks.notebook_defaults(write("a = 1  # one\nb: list = [1, 2]\nc = None\n"
                                        "d = {'x': 0.5}\ne = -2e-3")) == \
        {"a": 1, "b": [1, 2], "c": None, "d": {"x": 0.5}, "e": -2e-3}
    with pytest.raises(ParameterError, match="'f'.*literal"):
        notebooks.notebook_defaults(write("f = 2 * 3"))
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": []}))
    with pytest.raises(ParameterError, match="parameters"):
        notebooks.notebook_defaults(tmp_path / "n.ipynb")


def test_library_imports_without_the_book_extra():
    """papermill, myst-nb, ipykernel (and nbformat, IPython) are the ``book`` extra: the
    library imports without them, and loads them lazily where it needs them."""
    blocked = ["papermill", "myst_nb", "ipykernel", "nbformat", "IPython", "nbclient",
               "jupyter_client", "foolbox"]
    code = (
        "import importlib.abc, sys\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pkgutil, mcutils\n"
        "names = [m.name for m in pkgutil.walk_packages(mcutils.__path__, 'mcutils.')]\n"
        "for name in names:\n"
        "    __import__(name)\n"
        "from mcutils.core import report\n"
        "report.record('ch00_x', 1.23456)\n"
        "print(len(names), sorted(set(BLOCKED) & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.split(" ", 1)
    assert int(count) >= 15 and loaded.strip() == "[]"


def test_profile_typo_is_caught(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    nb = ROOT / "notebooks" / "00_preliminaries.ipynb"
    (tmp_path / "notebooks" / nb.name).write_bytes(nb.read_bytes())
    (tmp_path / "profiles" / "bad.yaml").write_text(yaml.safe_dump(
        {"defaults": {}, "chapters": {"00": {"num_epocs": 3}}}))
    with pytest.raises(ParameterError, match="num_epocs"):
        runner.execute("bad", ["00"], output=tmp_path / "out", root=tmp_path)


def test_notebooks_are_committed_without_outputs():
    import nbformat

    for nb_path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(nb_path, 4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert any("parameters" in t for t in tags), nb_path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, nb_path.name


WALL_CLOCK = re.compile(r"record\([^)\n]*(seconds|wall|elapsed|perf_counter)", re.I)


def test_output_checked_cells_record_no_wall_times():
    """nbval re-runs each chapter from a warm cache, so a wall time in a checked cell differs."""
    import nbformat

    for nb_path in (ROOT / "notebooks").glob("*.ipynb"):
        for i, cell in enumerate(nbformat.read(nb_path, 4).cells):
            if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
                for line in cell.source.splitlines():
                    # ch00 records training time read from the checkpoint, which is stable
                    if WALL_CLOCK.search(line) and "train_seconds" not in line:
                        pytest.fail(f"{nb_path.name} cell {i} records a wall time: {line.strip()}")


def test_wall_time_check_catches_a_timing_record():
    assert WALL_CLOCK.search('chapter.record("ch05_section_seconds", s)')
    assert not WALL_CLOCK.search('chapter.record("ch05_num_ts", num_ts)')


def _requirement_names(reqs):
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in reqs}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = [r for r in pip_section if not r.startswith("-e")]
    assert _requirement_names(reqs) == _requirement_names(env_reqs)


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text()
    for nb in notebooks.chapters().values():
        assert f"book/chapters/{nb.stem}" in toc, nb.name


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_bad_parameter_fails_fast_through_papermill(tmp_path):
    import time

    import papermill as pm

    start = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as exc:
        pm.execute_notebook(str(ROOT / "notebooks" / "00_preliminaries.ipynb"),
                            str(tmp_path / "out.ipynb"), parameters={"dataset": "nope"},
                            progress_bar=False, kernel_name="python3", cwd=str(ROOT))
    assert "dataset='nope'" in str(exc.value) and "fashion-mnist" in str(exc.value)
    assert time.perf_counter() - start < 60


def _tiny_repo(tmp_path, cells_by_chapter):
    """A repository layout with tiny chapters: {"01": [(source, tags), ...]}."""
    import nbformat

    (tmp_path / "profiles").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(
        {"defaults": {"x": 1}, "chapters": {c: {} for c in cells_by_chapter}}))
    for chapter, cells in cells_by_chapter.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        for src, tags in cells:
            cell = nbformat.v4.new_code_cell(src)
            cell.metadata["tags"] = tags
            nb.cells.append(cell)
        nbformat.write(nb, tmp_path / "notebooks" / f"{chapter}_tiny.ipynb")
    return tmp_path


CLAIM_CELL = (
    "from mcutils.core import report\n"
    "ch = report.ChapterReport('{c}', params=dict(x=x), expected=['big'], check=True)\n"
    "ch.claim('big', 'x >= 2', '', dict(estimate=x, ci=[x, x], n=1), 2, '>=')\n"
    "ch.finish()\n"
)


def test_runner_runs_every_chapter_then_reports_failures(tmp_path, capsys):
    """A failed claim and a crashing chapter do not stop the others; the exit code is 1."""
    import nbformat

    root = _tiny_repo(tmp_path, {
        "01": [("x = 1", ["parameters"]), (CLAIM_CELL.format(c="01"), [])],
        "02": [("x = 1", ["parameters"]), ("raise RuntimeError('boom')", [])],
        "03": [("x = 1", ["parameters"]), (CLAIM_CELL.format(c="03"), [])],
    })
    out = tmp_path / "out"
    res = runner.execute("tiny", None, output=out, root=root, overrides={"x": 1})
    assert set(res["timings"]) == {"01", "02", "03"}
    assert "boom" in res["errors"]["02"]
    assert res["failed_claims"]["01"] and res["failed_claims"]["03"]
    # the chapter ran to the end and was saved; papermill's cell is hidden
    nb = nbformat.read(out / "01_tiny.ipynb", 4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-cell" in injected[0].metadata["tags"]
    # an override that makes the claim hold passes
    res = runner.execute("tiny", ["01"], output=out, root=root, overrides={"x": 3})
    assert not res["failed_claims"] and not res["errors"]


def test_cli_override_parsing_and_unknown_override(tmp_path):
    assert profiles.parse_overrides([["sizes", "[50, 100]"], ["n", "null"]], ["{a: 1}"]) == \
        {"sizes": [50, 100], "n": None, "a": 1}
    with pytest.raises(ParameterError, match="mapping"):
        profiles.parse_overrides(None, ["[1, 2]"])
    root = _tiny_repo(tmp_path, {"01": [("x = 1", ["parameters"])]})
    with pytest.raises(ParameterError, match="num_epocs"):
        runner.execute("tiny", ["01"], output=tmp_path / "o", root=root,
                      overrides={"num_epocs": 2})


def test_remote_assets_finds_network_scripts(tmp_path):
    """Negative control for the offline check: remote scripts, style sheets and URLs in
    inline loaders are found; local files, data blocks and plain links are not."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<html><head><script src="_static/mathjax/tex-mml-chtml.js"></script>'
        '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
        '</script><link rel="stylesheet" href="//fonts.example.org/a.css">'
        '<link rel="canonical" href="https://example.org/book/">'
        '<script type="application/vnd.jupyter.widget-state+json">{"u": "https://x.org"}'
        '</script></head><body><a href="https://arxiv.org/abs/2409.05800">paper</a>'
        "<script>var s = document.createElement('script'); s.src = "
        "'https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js';</script>"
        "</body></html>")
    (tmp_path / "sub" / "page.html").write_text('<script src="HTTP://x.org/a.js"></script>')
    hits = offline.remote_assets(tmp_path)
    assert [(h.page, h.tag) for h in hits] == [
        ("index.html", "script"), ("index.html", "link"), ("index.html", "script (inline)"),
        ("sub/page.html", "script")]
    assert "require.min.js" in hits[2].url
    (tmp_path / "index.html").write_text('<script src="_static/x.js"></script>')
    (tmp_path / "sub" / "page.html").write_text("<p>https://example.org</p>")
    assert offline.remote_assets(tmp_path) == []
    assert runner.main(["offline", str(tmp_path)]) == 0
    with pytest.raises(ParameterError, match="no built HTML"):
        offline.remote_assets(tmp_path / "sub" / "nothing")


def test_results_page_pastes_every_chapter():
    """book/results.md pastes each chapter's claims and provenance tables (glued by
    report.ChapterReport.finish) and is in the table of contents right after the intro."""
    text = (ROOT / "book" / "results.md").read_text()
    for chapter, nb in CHAPTERS.items():
        for key in (f"ch{chapter}_claims_table", f"ch{chapter}_provenance_table"):
            assert re.search(rf"```{{glue}} {key}\n:doc: chapters/{nb.name}\n```", text), key
        assert f"<chapters/{nb.stem}>`" in text  # a titled {doc} link to the chapter
    assert "```{include} _generated/results_failures.md" in text  # the headline failures
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    assert toc["parts"][0]["chapters"][0]["file"] == "book/results"


COMMANDS = ("book", "gpucheck")  # ``python -m mcutils.X`` entry points into mcutils.tooling


def _public_modules():
    """Public modules, those of the layer packages (core, tooling) included, as names
    relative to mcutils; the command entry points are documented with their tooling."""
    import pkgutil

    import mcutils

    names = (m.name.removeprefix("mcutils.")
             for m in pkgutil.walk_packages(mcutils.__path__, prefix="mcutils."))
    return sorted(n for n in names
                  if not any(part.startswith("_") for part in n.split("."))
                  and n not in COMMANDS)


def test_api_page_lists_every_module():
    """Every public module of mcutils has an automodule section on the API page."""
    api = (ROOT / "book" / "api.md").read_text()
    modules = _public_modules()
    assert len(modules) >= 19
    def documented(m):
        """Its own section, or (for a submodule) a documented package that re-exports
        every public name of it, so that its members appear on the package's section."""
        if f".. automodule:: mcutils.{m}\n" in api:
            return True
        if "." not in m:
            return False
        import importlib

        parent, mod = (importlib.import_module(f"mcutils.{p}") for p in (m.rsplit(".", 1)[0], m))
        return documented(m.rsplit(".", 1)[0]) and set(getattr(mod, "__all__", ())) <= set(
            getattr(parent, "__all__", ()))

    missing = [m for m in modules if not documented(m)]
    assert not missing, f"book/api.md has no section for {missing}"


@pytest.mark.parametrize("name", _public_modules())
def test_module_docstring_names_its_chapters(name):
    """d2l's link from code to text: each module says which chapters use it."""
    import importlib

    doc = importlib.import_module(f"mcutils.{name}").__doc__ or ""
    assert re.search(r"chapters?\s+\d\d|every chapter|not by the chapters", doc, re.I), \
        f"the docstring of mcutils.{name} does not name the chapters that use it"
