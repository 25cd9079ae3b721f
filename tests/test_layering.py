"""Layering: read from the source with `ast`, nothing is imported.

- The core (every module of `incident` outside `incident.cli`) imports neither click nor rich,
  anywhere, not even inside a function: the command line is a layer over the library.
- No import cycle among the package's modules at module level (imports inside functions and
  under `if TYPE_CHECKING:` are the ways to break one, so they do not count).
- No module imports a private name (`_x`) from another top-level area of the package: within
  `incident/sample/` the modules share private helpers; `incident.results` may not reach into
  `incident.pipeline`'s.

Each check is a function of a package directory, so that the self-tests below can run it on a
synthetic package that breaks every rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "incident"
CLI_ONLY = ("click", "rich")


@dataclass(frozen=True)
class Import:
    """One `import` statement, or one name of a `from ... import` statement."""

    module: str  # the importing module
    line: int
    source: str  # the statement as written, for messages
    target: str  # the module imported, or imported from (relative imports resolved)
    name: str | None  # for `from target import name`; None for `import target`

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}: {self.source})"


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name; a package's `__init__` is the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    nodes: Iterable[ast.AST], module_level: bool
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements among nodes and under them; at module level, not those inside a
    function (or a lambda) nor in the body of `if TYPE_CHECKING:` (its `else:` does count)."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif module_level and isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse, module_level)
        else:
            yield from _statements(ast.iter_child_nodes(node), module_level)


def imports(name: str, path: Path, module_level: bool) -> list[Import]:
    """The imports of one module, relative ones resolved to absolute module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for statement in _statements(tree.body, module_level):
        source = ast.unparse(statement)
        if isinstance(statement, ast.Import):
            found += [
                Import(name, statement.lineno, source, alias.name, None)
                for alias in statement.names
            ]
            continue
        target = statement.module or ""
        if statement.level:
            base = package.split(".")
            base = base[: len(base) - (statement.level - 1)]
            target = ".".join([*base, target] if target else base)
        found += [
            Import(name, statement.lineno, source, target, alias.name) for alias in statement.names
        ]
    return found


def cli_imports_in_core(package: Path) -> list[str]:
    """Each import of click or rich by a module outside `<package>.cli`, anywhere in it."""
    cli = f"{package.name}.cli"
    return [
        f"{found} imports {found.target.split('.')[0]}"
        for name, path in modules(package).items()
        if name != cli and not name.startswith(f"{cli}.")
        for found in imports(name, path, module_level=False)
        if found.target.split(".")[0] in CLI_ONLY
    ]


def _internal_targets(found: Import, known: dict[str, Path]) -> list[str]:
    """The package's modules an import loads: `from a.b import c` is module a.b.c if there is
    one, else a.b."""
    if found.name is not None and f"{found.target}.{found.name}" in known:
        return [f"{found.target}.{found.name}"]
    return [found.target] if found.target in known else []


def import_cycles(package: Path) -> list[str]:
    """One cycle, as its chain of imports, for each group of modules that import each other
    at module level."""
    known = modules(package)
    graph: dict[str, dict[str, Import]] = {name: {} for name in known}
    for name, path in known.items():
        for found in imports(name, path, module_level=True):
            for target in _internal_targets(found, known):
                graph[name].setdefault(target, found)
    cycles = []
    for group in _strongly_connected(graph):
        start = min(group)
        if len(group) == 1 and start not in graph[start]:
            continue
        chain = _path_back(graph, start, set(group))
        steps = " -> ".join(str(graph[a][b]) for a, b in pairwise(chain))
        cycles.append(f"import cycle: {steps} -> {start}")
    return cycles


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for successor in edges:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    return groups


def _path_back(graph: dict[str, dict[str, Import]], start: str, group: set[str]) -> list[str]:
    """A shortest chain of modules from start back to start, within the group."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [*reversed(chain), start]
                if successor in group and successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"{start} is in a cycle with no way back")  # pragma: no cover


def _area(module: str) -> str:
    """The top-level area of a module: incident.pipeline.load is in incident.pipeline;
    incident.config (a module of the package's top level) is an area of its own."""
    return ".".join(module.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports_across_areas(package: Path) -> list[str]:
    """Each import, anywhere in a module, of a private module or name from another area."""
    root = package.name
    violations = []
    for name, path in modules(package).items():
        for found in imports(name, path, module_level=False):
            if found.target.split(".")[0] != root or _area(found.target) == _area(name):
                continue
            parts = [*found.target.split("."), *([found.name] if found.name else [])]
            private = [part for part in parts if _private(part)]
            if private:
                violations.append(
                    f"{found} imports private {private[0]} from area {_area(found.target)}"
                )
    return violations


def _report(found: list[str]) -> str:
    return "\n".join(found)


def test_the_core_imports_neither_click_nor_rich() -> None:
    found = cli_imports_in_core(PACKAGE)
    assert not found, _report(found)


def test_no_import_cycle_at_module_level() -> None:
    found = import_cycles(PACKAGE)
    assert not found, _report(found)


def test_no_private_name_is_imported_from_another_area() -> None:
    found = private_imports_across_areas(PACKAGE)
    assert not found, _report(found)


def test_the_checks_see_the_package() -> None:
    # A check that reads nothing passes: make sure the walk finds the modules and that the
    # command line's own imports of click are seen.
    known = modules(PACKAGE)
    assert {"incident", "incident.cli", "incident.pipeline.load", "incident.version"} <= set(known)
    assert any(
        found.target.split(".")[0] == "click"
        for name, path in known.items()
        if name.startswith("incident.cli")
        for found in imports(name, path, module_level=False)
    )


# Self-tests: a synthetic package that breaks every rule, and some that must not count.
BAD = {
    "__init__.py": "from incident.version import __version__\n",
    "version.py": "__version__ = '0'\n",
    "cli/__init__.py": "import click\nfrom rich.console import Console\n",
    "cli/app.py": "from incident.pipeline.load import _read\n",
    "outputs.py": "def later() -> None:\n    from rich import print\n",
    "report/html.py": "import click.testing as t\n",
    "pipeline/__init__.py": "",
    "pipeline/load.py": "from incident.pipeline import passes\n\ndef _read() -> None: ...\n",
    "pipeline/passes.py": "from . import load\nfrom .load import _read\n",
    "results/__init__.py": "",
    "results/export.py": (
        "from incident.pipeline.load import _read, __name__ as n\nimport incident.results.read\n"
    ),
    "results/read.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from incident.results.export import n\n"
        "else:\n    from ..pipeline._hidden import x\n"
    ),
    "results/diff.py": (
        "import incident.results.read\n\ndef f() -> None:\n    from incident.results import diff\n"
    ),
    "a.py": "class A:\n    from incident.b import B\n",
    "b.py": "try:\n    import incident.c\nexcept ImportError:\n    pass\n",
    "c.py": "from incident import a\n",
    "selfish.py": "from incident import selfish\n",
    "sample/__init__.py": "",
    "sample/one.py": "from incident.sample.two import _shared\n",
    "sample/two.py": "_shared = 1\n",
}


def bad_package(tmp_path: Path) -> Path:
    package = tmp_path / "incident"
    for relative, text in BAD.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text, encoding="utf-8")
    return package


def test_self_test_a_core_module_importing_click_or_rich_fails(tmp_path: Path) -> None:
    assert cli_imports_in_core(bad_package(tmp_path)) == [
        "incident.outputs (line 2: from rich import print) imports rich",
        "incident.report.html (line 1: import click.testing as t) imports click",
    ]


def test_self_test_an_import_cycle_fails(tmp_path: Path) -> None:
    assert import_cycles(bad_package(tmp_path)) == [
        # A class body runs at import time, and so does a try; `from incident import a`
        # loads module incident.a.
        "import cycle: incident.a (line 2: from incident.b import B)"
        " -> incident.b (line 2: import incident.c)"
        " -> incident.c (line 1: from incident import a) -> incident.a",
        # Relative imports are resolved; passes -> load is its first import of load.
        "import cycle: incident.pipeline.load (line 1: from incident.pipeline import passes)"
        " -> incident.pipeline.passes (line 1: from . import load) -> incident.pipeline.load",
        "import cycle: incident.selfish (line 1: from incident import selfish) -> incident.selfish",
        # Not cycles: results.read -> export only under TYPE_CHECKING, and diff -> diff only
        # inside a function.
    ]


def test_self_test_a_private_import_from_another_area_fails(tmp_path: Path) -> None:
    assert private_imports_across_areas(bad_package(tmp_path)) == [
        "incident.cli.app (line 1: from incident.pipeline.load import _read)"
        " imports private _read from area incident.pipeline",
        "incident.results.export (line 1: from incident.pipeline.load import _read, __name__ as n)"
        " imports private _read from area incident.pipeline",
        "incident.results.read (line 5: from ..pipeline._hidden import x)"
        " imports private _hidden from area incident.pipeline",
        # Allowed: pipeline.passes and sample.one import private names within their own area,
        # and a dunder such as __version__ or __name__ is not private.
    ]


def test_self_test_the_package_with_one_bad_module_fails(tmp_path: Path) -> None:
    # A copy of the real package, with a core module that breaks every rule.
    copy = tmp_path / "incident"
    for path in PACKAGE.rglob("*.py"):
        (copy / path.relative_to(PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(PACKAGE)).write_text(
            path.read_text(encoding="utf-8"), encoding="utf-8"
        )
    (copy / "results" / "leak.py").write_text(
        "import rich.console\n"
        "from incident.pipeline.load import _as_text\n"
        "from incident.summary import Summary\n",
        encoding="utf-8",
    )
    with (copy / "version.py").open("a", encoding="utf-8") as version:
        version.write("from incident.results import leak\n")
    assert cli_imports_in_core(copy) == [
        "incident.results.leak (line 1: import rich.console) imports rich"
    ]
    assert private_imports_across_areas(copy) == [
        "incident.results.leak (line 2: from incident.pipeline.load import _as_text)"
        " imports private _as_text from area incident.pipeline"
    ]
    [cycle] = import_cycles(copy)
    assert cycle.startswith(
        "import cycle: incident.results.leak (line 3: from incident.summary import Summary) -> "
    ), cycle
    assert cycle.endswith(": from incident.results import leak) -> incident.results.leak"), cycle
