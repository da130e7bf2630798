"""The shape of the code: no import cycle between the service's units, no import inside a
function (except where the application is assembled), signing/ and storage/ free of Flask.

Read with `ast` from the source files (nothing is imported), so a failure names the file and
line to fix. pretalx: "if you need inline imports here, that points to a design problem".
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "signing", "storage")

#: pairs of units allowed to import each other (none: keep it so)
ENGINE_WORK_PAIRS: set[frozenset[str]] = set()

#: where importing inside a function is the point: the application factory and the CLI
#: (commands load what they need when they run)
FUNCTION_IMPORTS_ALLOWED = {
    ("service/__init__.py", "create_app"),
    ("service/cli.py", None),  # any function of the CLI
}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository
    line: int
    target: str  # dotted module name, resolved
    function: str | None  # the outermost function it sits in, None at module level
    type_only: bool = False  # under `if TYPE_CHECKING:`: annotations only, never run


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _known(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    rel = path.relative_to(ROOT).as_posix()
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inside = function or getattr(child, "name", "<lambda>")
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(rel, child.lineno, alias.name, inside, type_only))
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child, module, is_package)
                for alias in child.names:
                    # `from service import labels` imports the module service.labels
                    sub = f"{base}.{alias.name}"
                    target = sub if _known(sub) else base
                    found.append(Import(rel, child.lineno, target, inside, type_only))
            visit(child, inside, type_only or _is_type_checking(child))

    visit(tree, None, False)
    return found


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _unit(module: str) -> str | None:
    """`service.kits.domain` -> `service.kits`; `service.labels` -> `service.labels`; the
    package `service` itself (the application factory) belongs to no unit."""
    parts = module.split(".")
    if parts[0] != "service" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _unit_graph() -> dict[str, dict[str, list[str]]]:
    """importer unit -> imported unit -> the places (file:line) that make the edge."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in _source_files():
        source = _unit(_module_name(path))
        if source is None:
            continue
        for imp in _imports(path):
            if imp.function is not None or imp.type_only:
                # function-level imports are another test's business; a TYPE_CHECKING import
                # names a class for an annotation (the ORM names it by string) and never runs
                continue
            target = _unit(imp.target)
            if target is None or target == source:
                continue
            graph.setdefault(source, {}).setdefault(target, []).append(f"{imp.path}:{imp.line}")
    return graph


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return components


def test_units_import_without_cycles() -> None:
    graph = _unit_graph()
    edges = {
        source: {t for t in targets if frozenset({source, t}) not in ENGINE_WORK_PAIRS}
        for source, targets in graph.items()
    }
    problems = []
    for component in _cycles(edges):
        lines = [f"cycle between {', '.join(component)}:"]
        for source in component:
            for target in sorted(edges[source] & set(component)):
                lines.append(f"  {source} -> {target} ({', '.join(graph[source][target][:3])})")
        problems.append("\n".join(lines))
    assert not problems, "\n".join(problems)


def test_type_only_imports_name_models_only() -> None:
    # the one way around the graph: a model named by string in a relationship, imported for
    # its annotation only; anything else under TYPE_CHECKING would hide a real dependency
    problems = [
        f"{imp.path}:{imp.line}: {imp.target}"
        for path in _source_files()
        for imp in _imports(path)
        if imp.type_only
        and imp.target.startswith("service.")
        and not imp.target.endswith(".models")
    ]
    assert not problems, "\n".join(problems)


def test_cycle_finder_sees_a_cycle() -> None:
    # the search itself can fail: a -> b -> c -> a is one component, d hangs off it
    found = _cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()})
    assert found == [["a", "b", "c"]]


def test_engine_work_allowlist_names_real_units() -> None:
    for pair in ENGINE_WORK_PAIRS:
        assert len(pair) == 2 and all(_known(unit) for unit in pair), pair


def test_no_imports_inside_functions() -> None:
    problems = []
    for path in _source_files():
        for imp in _imports(path):
            if imp.function is None:
                continue
            if (imp.path, imp.function) in FUNCTION_IMPORTS_ALLOWED:
                continue
            if (imp.path, None) in FUNCTION_IMPORTS_ALLOWED:
                continue
            problems.append(f"{imp.path}:{imp.line} in {imp.function}(): import {imp.target}")
    assert not problems, "imports inside functions:\n" + "\n".join(problems)


def test_signing_and_storage_import_neither_flask_nor_service() -> None:
    problems = []
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(("signing/", "storage/")):
            continue
        for imp in _imports(path):
            top = imp.target.split(".")[0]
            if top in ("flask", "flask_sqlalchemy", "service"):
                problems.append(f"{imp.path}:{imp.line}: import {imp.target}")
    assert not problems, "\n".join(problems)
