"""The package's shape, checked from its source: no import cycle among harness's modules, and one
owner of the results folder's layout (harness.layout)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, name: str, modules: dict[str, Path]) -> set[str]:
    """harness modules imported when `name` is imported (statements at module level, outside
    `if TYPE_CHECKING:`; an import inside a function runs later and is not an import-time edge)."""
    found: set[str] = set()
    package = name if modules[name].name == "__init__.py" else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("harness"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                if not base.startswith("harness"):
                    continue
                submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
                found.update(submodules)
                if len(submodules) < len(node.names):  # names defined in `base` itself
                    found.add(base)

    visit(tree.body)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _top_level_imports(ast.parse(path.read_text()), name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := walk(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_harness_modules() -> None:
    graph = import_graph()
    assert "harness.pipeline" in graph and "harness.executor" in graph["harness.pipeline"]  # the walk sees edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# The parts of a results folder; only harness/layout.py may spell them in code. File names are
# caught anywhere; the folder names (also words such as a SQL table's) only as path parts: an
# operand of `/`, or the start of a relative path.
RESULTS_FILES = re.compile(r"^(store\.sqlite|report\.html|log\.txt|monitor\.parquet|\.lock|"
                           r"(priority|review_queue|error_detection|error_detection_cases|priority_check)\.csv)$")
RESULTS_DIRS = re.compile(r"^(runs|annotation|ranking|\.work)(/.*)?$")


def _code_strings(tree: ast.Module) -> list[tuple[int, str, bool]]:
    """(line, text, is a path part) of the code's string constants, docstrings left out (they
    describe the layout, which is fine)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    path_parts = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                  for side in (node.left, node.right)}
    return [(node.lineno, node.value, id(node) in path_parts or "/" in node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def _spelled(tree: ast.Module) -> list[tuple[int, str]]:
    return [(line, text) for line, text, part in _code_strings(tree)
            if RESULTS_FILES.match(text) or (part and RESULTS_DIRS.match(text))]


def test_only_the_layout_module_spells_results_paths() -> None:
    offenders = []
    for name, path in _modules().items():
        if name == "harness.layout":
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}" for line, text in _spelled(ast.parse(path.read_text()))]
    assert not offenders, "results paths spelled outside harness/layout.py:\n" + "\n".join(offenders)


def test_the_layout_check_would_catch_a_spelled_path() -> None:
    tree = ast.parse('p = folder / "runs" / algorithm\nx = "monitor.parquet"\ny = "annotation/priority.csv"\n'
                     '"""a docstring: runs/"""\nq = "SELECT * FROM runs"\ncolumn = frame["runs"]\n')
    assert [text for _, text in sorted(_spelled(tree))] == ["runs", "monitor.parquet", "annotation/priority.csv"]
