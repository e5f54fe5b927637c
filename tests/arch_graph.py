"""A static picture of gptoss_cli's imports and sizes, read with ``ast`` (nothing is imported).

Every ``import`` statement of every ``.py`` file under ``gptoss_cli/`` becomes an :class:`Import`: who imports what,
at which line, and *when* it runs:

- ``"module"``: at import time (module body, class bodies, ``try``/``if`` at module level);
- ``"function"``: inside a ``def``/``lambda`` (runs when called: the accepted way to break a cycle or defer a heavy
  dependency);
- ``"typing"``: under ``if TYPE_CHECKING:`` (never runs).

Targets are resolved to the module that actually runs: relative imports against the importer's package, and
``from pkg import name`` to ``pkg.name`` when that is a submodule of the package, else to ``pkg`` itself. Importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but those are never edges here: a package is already in
``sys.modules`` while its own ``__init__`` imports its submodules, so such edges only draw cycles that cannot bite.
"""

from __future__ import annotations

import ast
import statistics
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gptoss_cli"
PKG_DIR = ROOT / PACKAGE
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the file holding the statement
    target: str  # resolved dotted name (internal module, or the external name as written)
    line: int
    when: str  # "module" | "function" | "typing"

    @property
    def internal(self) -> bool:
        return self.target == PACKAGE or self.target.startswith(PACKAGE + ".")

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def where(self) -> str:
        return f"{rel_path(self.importer)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__.py``)."""
    return {module_name(p): p for p in sorted(PKG_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


def rel_path(module: str) -> str:
    return modules()[module].relative_to(ROOT).as_posix()


def _is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def _base(importer: str, level: int) -> str:
    parts = importer.split(".") if _is_package(importer) else importer.split(".")[:-1]
    if level > 1:
        parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(importer: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        base = ".".join(p for p in (_base(importer, node.level), node.module) if p)
    known = modules()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in known else base


def _walk(importer: str, node: ast.AST, when: str) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            for target in _resolve(importer, child):
                yield Import(importer, target, child.lineno, when)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(importer, child, "typing" if when == "typing" else "function")
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(importer, ast.Module(body=[stmt], type_ignores=[]), "typing")
            for stmt in child.orelse:
                yield from _walk(importer, ast.Module(body=[stmt], type_ignores=[]), when)
        else:
            yield from _walk(importer, child, when)


@lru_cache(maxsize=None)
def tree(module: str) -> ast.Module:
    path = modules()[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@lru_cache(maxsize=None)
def imports() -> tuple[Import, ...]:
    return tuple(imp for name in modules() for imp in _walk(name, tree(name), "module"))


def graph(when: Iterable[str] = ("module",), within: Optional[str] = None) -> dict[str, set[str]]:
    """Internal import edges of the given kinds; ``within`` keeps only modules under that dotted prefix."""
    kinds = set(when)

    def keep(name: str) -> bool:
        return within is None or name == within or name.startswith(within + ".")

    out: dict[str, set[str]] = {m: set() for m in modules() if keep(m)}
    for imp in imports():
        if imp.internal and imp.when in kinds and keep(imp.importer) and keep(imp.target) and imp.target in out:
            out[imp.importer].add(imp.target)
    return out


def _sccs(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1 or node in edges[node]:
                    found.append(sorted(comp))
    return found


def _shortest_cycle(start: str, comp: set[str], edges: dict[str, set[str]]) -> list[str]:
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(edges[node] & comp):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parents:
                    parents[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"{start} is in a cycle but none was found")  # pragma: no cover


def cycles(edges: dict[str, set[str]]) -> list[str]:
    """One shortest cycle per strongly connected component, as ``a -> b -> a`` (sorted, stable)."""
    return sorted(" -> ".join(_shortest_cycle(comp[0], set(comp), edges)) for comp in _sccs(edges))


def closure(start: str, edges: dict[str, set[str]]) -> dict[str, list[str]]:
    """Every module reachable from ``start``, each with one import chain leading to it."""
    chains = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if child not in chains:
                    chains[child] = [*chains[node], child]
                    nxt.append(child)
        frontier = nxt
    return chains


@dataclass(frozen=True)
class Function:
    module: str
    qualname: str
    line: int
    lines: int

    def __str__(self) -> str:
        return f"{rel_path(self.module)}:{self.line} {self.qualname} ({self.lines} lines)"


def functions(module: str) -> list[Function]:
    """Every function and method (nested ones too), its length from ``def`` to its last line."""
    out: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append(Function(module, name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree(module), "")
    return out


def line_count(module: str) -> int:
    return len(modules()[module].read_text(encoding="utf-8").splitlines())


def under(prefix: str) -> list[str]:
    return sorted(m for m in modules() if m == prefix or m.startswith(prefix + "."))


def median_lines(names: Iterable[str]) -> float:
    return statistics.median(line_count(m) for m in names)
