"""docs/development.md's import-graph table is the code's, and the graph flows one way (no cycles)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "s3seg"
ROW = re.compile(r"^\| (`[^|]+`) \| ([^|]+) \|$")


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules of s3seg imported at module level, those imported only inside functions)."""
    top: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "s3seg":
                names = [child.module.split(".", 1)[1]] if "." in child.module else [a.name for a in child.names]
            elif isinstance(child, ast.Import):
                names = [a.name.split(".", 1)[1] for a in child.names if a.name.startswith("s3seg.")]
            (lazy if in_function else top).update(names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()), False)
    return top, lazy - top


def _code() -> dict[str, tuple[set[str], set[str]]]:
    return {path.stem: _imports(path) for path in sorted(PACKAGE.glob("*.py"))}


def _documented() -> dict[str, tuple[set[str], set[str]]]:
    text = (ROOT / "docs" / "development.md").read_text()
    table = text.split("| module | imports from s3seg |", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in table.splitlines():
        match = ROW.match(line.strip())
        if match is None:
            continue
        modules = [m.strip(" `") for m in match.group(1).split(",")]
        cell = match.group(2).strip()
        top_text, _, lazy_text = cell.partition("(")
        top = {w.strip(" `") for w in top_text.split(",") if w.strip()} - {"nothing"}
        # A parenthesis holds the lazy imports; any words after a comma inside it are a remark, not a module.
        lazy = {w.split()[0].strip(" `") for w in lazy_text.rstrip(")").split(",") if w.strip()}
        lazy = {m for m in lazy if (PACKAGE / f"{m}.py").exists()}
        for module in modules:
            rows[module] = (top, lazy)
    return rows


def test_every_module_is_in_the_table_with_the_imports_it_has() -> None:
    code, documented = _code(), _documented()
    assert sorted(documented) == sorted(code)
    for module, (top, lazy) in code.items():
        assert documented[module] == (top, lazy), module


def test_module_level_imports_have_no_cycles() -> None:
    graph = {module: top for module, (top, _) in _code().items()}
    done: set[str] = set()

    def walk(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for dep in graph.get(module, ()):
            walk(dep, (*path, module))
        done.add(module)

    for module in graph:
        walk(module, ())
