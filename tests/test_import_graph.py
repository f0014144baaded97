"""No circle of imports between lingoforge modules, and no function-local import that climbs from a lower module
to a higher one through a circle.

The graph is read with the standard library's ``ast`` from every module under core/: imports at module level and
inside functions alike (a function-local import is still a dependency, it only runs later), relative imports
resolved against the importing module's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
PACKAGE = "lingoforge"


def module_name(path: Path, root: Path = CORE, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports_of(path: Path, modules: set[str], root: Path = CORE, package: str = PACKAGE) -> set[str]:
    """The lingoforge modules ``path`` imports, anywhere in the file. ``from . import x`` counts as importing the
    module ``x`` when ``x`` is one, else the package; ``from .a import b`` as importing ``a`` (or ``a.b`` when that
    is a module)."""
    name = module_name(path, root, package)
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()

    def add(target: str) -> None:
        # importing a.b.c runs a/__init__ and a/b/__init__ too, but those are not the edges we judge; the module
        # itself is, falling back to the closest enclosing module that exists
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and (node.module == package or node.module.startswith(package + ".")):
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                add(sub if sub in modules else target)
    return found


def import_graph(root: Path = CORE, package: str = PACKAGE) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root, package) for f in files}
    return {module_name(f, root, package): imports_of(f, modules, root, package) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, as the modules along it with the first repeated at the end; ``None`` when none.

    A package's ``__init__`` importing its own submodules is not counted: ``import pkg.sub`` runs ``pkg`` first,
    which is the ordinary shape of a package, and an edge from a submodule to its package (``from . import x``)
    resolves to the sibling module ``x`` above."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in colour:
                continue
            if colour[nxt] == grey:
                return [*stack[stack.index(nxt):], nxt]
            if colour[nxt] == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def test_core_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "lingoforge.plugins" in graph  # the walk saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between lingoforge modules: " + " -> ".join(cycle or [])


# The lower modules the issue named import nothing above them, not even inside a function.
@pytest.mark.parametrize(("module", "higher"), [
    ("lingoforge.data.io", "lingoforge.yaml_task"),
    ("lingoforge.plugins", "lingoforge.export.modelfile"),
    ("lingoforge.train", "lingoforge.export.modelfile"),
    ("lingoforge.yaml_task", "lingoforge.plugins"),
    ("lingoforge.sft_trainer", "lingoforge.trainer"),
    ("lingoforge.task", "lingoforge.yaml_task"),
])
def test_lower_module_does_not_import_higher(module, higher):
    assert higher not in import_graph()[module]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_a_cycle_through_a_function_local_relative_import_is_found_and_named(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "sub/__init__.py": "",
        "b.py": "def thing():\n    from .sub.c import other\n    return other\n",
        "sub/c.py": "def other():\n    from .. import a\n    return a\n",
        "d.py": "import lingoforge.a\n",
    })
    graph = import_graph(root)
    assert graph["lingoforge.b"] == {"lingoforge.sub.c"} and graph["lingoforge.sub.c"] == {"lingoforge.a"}
    assert graph["lingoforge.d"] == {"lingoforge.a"}
    assert find_cycle(graph) == ["lingoforge.a", "lingoforge.b", "lingoforge.sub.c", "lingoforge.a"]


def test_a_graph_without_a_circle_passes(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "from .a import x\n",
        "a.py": "import json\nfrom .b import y\nx = y\n",
        "b.py": "y = 1\n",
    })
    graph = import_graph(root)
    assert graph["lingoforge.a"] == {"lingoforge.b"} and find_cycle(graph) is None
