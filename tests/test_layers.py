"""The package's layers: every import (module or function level) runs downward or within
its layer, and no module takes part in an import cycle. The layers, bottom to top:

core < data, models < training < science < chapters < tooling < commands
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mcutils"
COMMANDS = {"mcutils.book", "mcutils.gpucheck"}  # ``python -m`` entry points, nothing else
LAYERS = ["core", "registries", "training", "science", "chapters", "tooling", "commands"]


def layer(module: str) -> str:
    parts = module.split(".")
    if module in COMMANDS:
        return "commands"
    if len(parts) > 1 and parts[1] in ("core", "chapters", "tooling"):
        return parts[1]
    if len(parts) > 1 and parts[1] in ("data", "models"):
        return "registries"
    if len(parts) > 1 and parts[1] == "training":
        return "training"
    return "science"


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path, known: set[str]) -> set[str]:
    """mcutils modules imported anywhere in the file (``from mcutils import x`` counts as
    importing the module ``mcutils.x`` when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mcutils")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mcutils"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != "mcutils"}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_import_runs_downward_or_within_its_layer():
    bad = [f"{a} ({layer(a)}) imports {b} ({layer(b)})"
           for a, deps in graph().items() for b in deps
           if LAYERS.index(layer(b)) > LAYERS.index(layer(a))
           and not b.startswith(a + ".")]  # a package may import its own submodules
    assert not bad, "\n".join(sorted(bad))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def _without_package_inits(g):
    # a package's __init__ re-exports its submodules, which import the package's
    # siblings by their full names: not a cycle between concepts
    return {a: {b for b in deps if not (a.startswith(b + ".") and Path(modules()[b]).name
                                        == "__init__.py")} for a, deps in g.items()}


def test_no_import_cycle():
    found = cycles(_without_package_inits(graph()))
    assert not found, found


def test_the_checks_can_fail():
    """Negative controls: an upward import and a cycle are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert LAYERS.index(layer("mcutils.tooling.runner")) > LAYERS.index(layer("mcutils.core.report"))
    assert layer("mcutils.data.formats") == "registries" and layer("mcutils.book") == "commands"


@pytest.mark.parametrize("name", ["core", "chapters", "tooling"])
def test_layer_folders_exist(name):
    assert (SRC / name / "__init__.py").is_file()
