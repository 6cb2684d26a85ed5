"""The import rule: ``app`` never imports the training stack; ``worker`` modules form no cycle.

Checked by reading the source with :mod:`ast`, so nothing is imported while checking and an
import inside a function (a lazy import) counts like any other. We chose this over
``import-linter``: its graph builder (grimp) does see function-level imports, but it would be a
new dependency with its own contract file for two rules that take fifty lines here, and a test
can say exactly which line breaks a rule and print a cycle as a readable path.

Rules:

* no module under ``app/`` imports ``worker``, ``torch``, ``transformers``, ``peft``,
  ``sklearn`` (scikit-learn) or ``accelerate``, not even inside a function or under
  ``TYPE_CHECKING`` (the API process must stay light and must not need the worker's code);
* the modules under ``worker/`` form no import cycle: an edge ``a -> b`` for every
  ``import b`` / ``from b import x`` in ``a`` (relative imports resolved; ``from pkg import
  name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``), lazy imports
  included. ``TYPE_CHECKING`` imports count too: they are cycles for mypy and readers alike.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_FORBIDDEN = frozenset({"worker", "torch", "transformers", "peft", "sklearn", "accelerate"})


@dataclass(frozen=True)
class Import:
    """One imported module, as a dotted name, and where the import statement is."""

    target: str
    #: the importing file, relative to the checked root
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Every module of ``package`` (a directory under ``root``) by dotted name."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> Iterator[Import]:
    """Every module ``path`` imports, at any depth of the file (functions, ``if`` blocks)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, rel, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield Import(submodule if submodule in known else base, rel, node.lineno)


def forbidden_app_imports(root: Path = ROOT) -> list[str]:
    modules = package_modules("app", root)
    found = []
    for path in modules.values():
        for imp in imports_of(path, set(modules), root):
            if imp.target.split(".")[0] in APP_FORBIDDEN:
                found.append(f"{imp.where()} imports {imp.target}")
    return found


def import_graph(package: str, root: Path = ROOT) -> dict[str, dict[str, Import]]:
    """``graph[a][b]``: the first statement by which module ``a`` imports module ``b``.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` too, but those are not
    counted as edges: a package ``__init__`` that imports nothing cannot close a cycle, and one
    that does has its own edges.
    """
    modules = package_modules(package, root)
    graph: dict[str, dict[str, Import]] = {name: {} for name in modules}
    for name, path in modules.items():
        for imp in imports_of(path, set(modules), root):
            target = imp.target
            while target and target not in modules:  # ``import worker.x.Name``-style leftovers
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].setdefault(target, imp)
    return graph


def package_graph(
    graph: dict[str, dict[str, Import]], depth: int = 2
) -> dict[str, dict[str, Import]]:
    """The module graph folded into packages: ``worker.training.loop`` counts as
    ``worker.training``; a module directly under the root (``worker.runner``) is its own."""

    def fold(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    folded: dict[str, dict[str, Import]] = {fold(name): {} for name in graph}
    for name, targets in graph.items():
        for target, imp in targets.items():
            if fold(target) != fold(name):
                folded[fold(name)].setdefault(fold(target), imp)
    return folded


def find_cycle(graph: dict[str, dict[str, Import]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
            elif colour[child] == GREY:
                path = [n for n, _ in stack]
                return [*path[path.index(child) :], child]
            elif colour[child] == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph[child]))))
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, Import]], what: str = "modules") -> str:
    steps = [f"  {a} -> {b}  ({graph[a][b].where()})" for a, b in itertools.pairwise(cycle)]
    return f"import cycle between worker {what}:\n" + "\n".join(steps)


def test_app_imports_no_worker_and_no_training_stack() -> None:
    found = forbidden_app_imports()
    assert not found, "app must not import the worker or the training stack:\n" + "\n".join(found)


def test_worker_modules_form_no_import_cycle() -> None:
    graph = import_graph("worker")
    assert len(graph) > 50, sorted(graph)  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph)


def test_worker_packages_form_no_import_cycle() -> None:
    """Layers, not a web: core <- features <- training <- strategies; serving reads artifacts."""
    packages = package_graph(import_graph("worker"))
    assert {"worker.core", "worker.training", "worker.strategies"} <= set(packages)
    cycle = find_cycle(packages)
    assert cycle is None, describe(cycle, packages, "packages")


# --- the checks can fail -------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_lazy_relative_import_cycle_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/sub/__init__.py": "",
            "pkg/b.py": "from .sub.c import thing\n",
            "pkg/sub/c.py": "def f():\n    from ..a import x\n    return x\n",
            "pkg/d.py": "import pkg.b\n",
        },
    )
    graph = import_graph("pkg", tmp_path)
    assert graph["pkg.a"].keys() == {"pkg.b"}  # ``from pkg import b``: b is a module
    assert graph["pkg.sub.c"].keys() == {"pkg.a"}  # relative, inside a function
    assert graph["pkg.d"].keys() == {"pkg.b"}
    cycle = find_cycle(graph)
    assert cycle == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]
    message = describe(cycle, graph)
    assert "pkg.sub.c -> pkg.a  (" in message and "c.py:2)" in message


def test_a_cycle_between_packages_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low/__init__.py": "",
            "pkg/low/a.py": "from pkg.high.b import y\n",
            "pkg/high/__init__.py": "",
            "pkg/high/b.py": "y = 1\n",
            "pkg/high/c.py": "from pkg.low import a\n",
        },
    )
    modules = import_graph("pkg", tmp_path)
    assert find_cycle(modules) is None  # no module cycle ...
    packages = package_graph(modules)
    assert find_cycle(packages) == ["pkg.high", "pkg.low", "pkg.high"]  # ... but a package one


def test_an_acyclic_graph_passes(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import x\n",
            "pkg/a.py": "from pkg import b\nx = b.y\n",
            "pkg/b.py": "import os\ny = 1\n",
        },
    )
    assert find_cycle(import_graph("pkg", tmp_path)) is None


def test_a_lazy_heavy_import_in_app_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/ok.py": "import json\nfrom app import other\n",
            "app/other.py": "def f():\n    import torch.nn\n",
            "app/third.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from worker.training import loop\n",
            "app/fourth.py": "def g():\n    from sklearn.linear_model import LogisticRegression\n",
        },
    )
    found = forbidden_app_imports(tmp_path)
    assert found == [
        "app/fourth.py:2 imports sklearn.linear_model",
        "app/other.py:2 imports torch.nn",
        "app/third.py:3 imports worker.training",
    ]
