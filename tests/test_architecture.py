"""The package's shape, checked from its source: no import cycle among harness's modules, no import
(inside functions too) that crosses a layer upward, the report reading only the ranking's public
results, and one owner of the results folder's layout (harness.layout)."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return dict(_module_paths())


@functools.cache
def _module_paths() -> tuple[tuple[str, Path], ...]:
    return tuple((_module_name(p), p) for p in sorted(PACKAGE.rglob("*.py")))


@functools.cache
def _parsed(path: Path) -> ast.Module:
    """A harness module's syntax tree, parsed once for all the checks here (none changes a tree)."""
    return ast.parse(path.read_text())


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
    return {name: _top_level_imports(_parsed(path), name, modules) for name, path in modules.items()}


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
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}" for line, text in _spelled(_parsed(path))]
    assert not offenders, "results paths spelled outside harness/layout.py:\n" + "\n".join(offenders)


def test_the_layout_check_would_catch_a_spelled_path() -> None:
    tree = ast.parse('p = folder / "runs" / algorithm\nx = "monitor.parquet"\ny = "annotation/priority.csv"\n'
                     '"""a docstring: runs/"""\nq = "SELECT * FROM runs"\ncolumn = frame["runs"]\n')
    assert [text for _, text in sorted(_spelled(tree))] == ["runs", "monitor.parquet", "annotation/priority.csv"]


# --- one door in (harness.intake), one door out (harness.acceptance) ----------------------------------

# Modules that handle what a submission sends or what a run wrote. They may not parse a file format
# themselves (no import of a parser, at any level) nor read a file, except where the file is the
# organiser's or the harness's own; each such place is named here with the reason.
DOOR_FACING = ("harness.spec", "harness.build", "harness.casework", "harness.check", "harness.annotate",
               "harness.pipeline", "harness.executor", "harness.contracts", "harness.runner")
PARSERS = {"yaml", "tarfile", "zipfile", "tomllib", "SimpleITK", "pickle", "nibabel"}
READS = {"read_bytes", "read_text", "open", "load", "loads", "safe_load", "ZipFile", "read_label", "read_volume",
         "read_grid", "check_untrusted_header", "copyfile", "copy", "copy2", "copytree", "copyfileobj", "ReadImage",
         "ReadImageInformation", "fdopen", "read_array", "frombuffer"}
ALLOWED = {
    ("harness.casework", "stage"): "copies and converts the organiser's case image into the run's input folder",
    ("harness.contracts.grand_challenge", "stage_input"): "converts the organiser's staged image to .mha",
    ("harness.contracts.grand_challenge", "collect"): "the organiser's image grid; writes the converted label map",
    ("harness.contracts.nnunet", "collect"): "the organiser's image grid; writes the per-organ maps",
    ("harness.build", "_wheelhouse"): "copies the wheels pip downloaded into the harness's cache",
    ("harness.build", "organiser_pip_config"): "copies the organiser's own pip.conf for pip",
    ("harness.build", "build_algorithm"): "copies from descriptors intake opened and checked; writes the context",
    ("harness.build", "_load"): "`docker load` of the copy intake wrote (`normalised_archive`)",
    ("harness.annotate", "assemble_all"): "opens the store; reads kept outputs (accepted when their run ended)",
    ("harness.annotate", "write_tables"): "reads kept outputs (accepted when their run ended) and the ground truth",
    ("harness.annotate", "_inputs_digest"): "hashes kept outputs (accepted when their run ended)",
    ("harness.annotate", "check_revised"): "the organiser's revised masks",
    ("harness.check", "_read_back"): "opens the results store",
    ("harness.pipeline", "evaluate"): "opens the results store",
    ("harness.pipeline", "rescore_all"): "opens the results store",
    ("harness.pipeline", "forget"): "opens the results store",
    ("harness.pipeline", "execute"): "reads a kept label map (accepted when its run ended) to rescore it",
}
_WRITE_MODES = {"w", "wb", "a", "ab", "x", "xb", "w+b"}


def _door_facing() -> dict[str, Path]:
    return {name: path for name, path in _modules().items()
            if any(name == m or name.startswith(m + ".") for m in DOOR_FACING)}


def _reads_and_parsers(tree: ast.Module) -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) for every parser import and every read call, at any depth."""
    owner: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                owner.setdefault(id(sub), node.name)
    found = []
    for node in ast.walk(tree):
        where = owner.get(id(node), "<module>")
        if isinstance(node, ast.Import):
            found += [(node.lineno, where, f"import {a.name}") for a in node.names if a.name.split(".")[0] in PARSERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PARSERS:
            found.append((node.lineno, where, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name not in READS:
                continue
            mode = next((a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)), None)
            if name == "open" and mode in _WRITE_MODES:
                continue
            found.append((node.lineno, where, f"{name}()"))
    return found


def test_only_intake_and_acceptance_read_what_a_submission_sends_or_a_run_writes() -> None:
    """In the modules around the doors, no parser is imported (imports inside functions included)
    and no file is read, but in the places named in ALLOWED, which read the organiser's files, the
    store, or what intake and acceptance already checked."""
    offenders, used = [], set()
    for name, path in _door_facing().items():
        for line, where, what in _reads_and_parsers(_parsed(path)):
            if (name, where) in ALLOWED and not what.startswith(("import", "from")) or (
                    (name, where) in ALLOWED and what == "import nibabel"):
                used.add((name, where))
                continue
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what} in {where}")
    assert not offenders, "reads outside harness.intake / harness.acceptance:\n" + "\n".join(offenders)
    assert used == set(ALLOWED), f"allowances no longer needed: {sorted(set(ALLOWED) - used)}"


def test_the_door_check_would_catch_a_read_and_a_parser_inside_a_function() -> None:
    tree = ast.parse("def collect(p):\n    import yaml\n    return yaml.safe_load(p.read_text())\n"
                     "def keep(p):\n    p.open('wb').write(b'')\n")
    assert [what for _, _, what in _reads_and_parsers(tree)] == ["import yaml", "safe_load()", "read_text()"]


def test_intake_and_acceptance_are_the_modules_that_parse() -> None:
    """The doors themselves hold the parsers they need (our bounded readers)."""
    intake = {what for _, _, what in _reads_and_parsers(_parsed(PACKAGE / "intake.py"))}
    acceptance = {what for _, _, what in _reads_and_parsers(_parsed(PACKAGE / "acceptance.py"))}
    assert {"import yaml", "import tomllib", "fdopen()"} <= intake
    assert {"ZipFile()", "frombuffer()", "ReadImageInformation()"} <= acceptance


def test_contracts_come_from_the_registry() -> None:
    """No module outside harness/contracts/ tells contracts apart by their options' type or their
    name; each contract module defines one Contract class, and each is registered."""
    import importlib

    from harness.contracts import CONTRACTS
    from harness.contracts.base import Contract

    option_types = {"GrandChallengeOptions", "MLCubeOptions", "NnUNetOptions"}
    names = set(CONTRACTS) - {"harness"}
    door_facing = _door_facing()
    offenders = []
    for name, path in _modules().items():
        if name.startswith("harness.contracts"):
            continue
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                if any(isinstance(n, ast.Name) and n.id in option_types for n in ast.walk(node)):
                    offenders.append(f"{name}:{node.lineno}: isinstance on a contract's options")
            if name in door_facing and isinstance(node, ast.Compare) and any(  # ("grand-challenge" is
                    isinstance(n, ast.Constant) and n.value in names for n in ast.walk(node)):  # a ranking method too)
                offenders.append(f"{name}:{node.lineno}: compares with a contract's name")
    assert not offenders, "\n".join(offenders)
    for path in sorted((PACKAGE / "contracts").glob("*.py")):
        if path.stem in ("__init__", "base"):
            continue
        module = importlib.import_module(f"harness.contracts.{path.stem}")
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Contract)
                   and c is not Contract and c.__module__ == module.__name__]
        assert len(classes) == 1, f"{path.name}: one Contract class per module"
        assert type(CONTRACTS[classes[0].name]) is classes[0], f"{path.name}: {classes[0].name} is not registered"


# --- layers: data flows one way (STYLE.md), no import crosses a layer upward ------------------------

# Lowest first. A module may import its own layer and the layers below, never one above; imports
# inside functions and under TYPE_CHECKING count too. The stages of STYLE.md's flow (spec -> build ->
# runner -> predictions -> metrics -> store -> ranking -> report), with the shared values at the
# bottom, the orchestration that drives the stages above the store, and the command line on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("harness", "harness.errors", "harness.models", "harness.layout", "harness.safetext", "harness.fstree"),
    ("harness.profiles",),  # a challenge's rules as data
    ("harness.data",),  # the data loaders
    ("harness.intake", "harness.acceptance", "harness.contracts", "harness.spec"),  # the doors and the manifest
    ("harness.engine", "harness.baseimage", "harness.build"),
    ("harness.monitor", "harness.runner"),
    ("harness.metrics", "harness.scoring", "harness.attention"),
    ("harness.host", "harness.casework", "harness.executor"),  # one case: stage, run, check, keep, score
    ("harness.store",),
    ("harness.challenge", "harness.pipeline", "harness.annotate", "harness.check"),  # orchestration
    ("harness.ranking",),
    ("harness.report",),
    ("harness.phases",),  # a challenge over weeks: teams, submissions and policies on top of the batch
    ("harness.cli", "harness.__main__"),
)
# The report reads the store and the ranking (and the profiles it names), never a runner.
REPORT_MAY_IMPORT = ("harness", "harness.errors", "harness.models", "harness.layout", "harness.safetext",
                     "harness.profiles", "harness.store", "harness.ranking", "harness.report")


def _stage_of(module: str) -> str:
    """The entry of LAYERS that holds `module` (itself or its package)."""
    known = {s for layer in LAYERS for s in layer}
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in known:
            return ".".join(parts[:k])
    raise KeyError(module)


def _layer(module: str) -> int:
    stage = _stage_of(module)
    return next(i for i, layer in enumerate(LAYERS) if stage in layer)


def all_imports(tree: ast.Module, name: str, is_package: bool) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, imported harness module, names) of every import in the module at any depth: inside
    functions, classes, `if TYPE_CHECKING:` and `try:` alike."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] == "harness"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "harness":
                found.append((node.lineno, base, tuple(a.name for a in node.names)))
    return found


def upward_imports(modules: dict[str, Path], *, root: Path = PACKAGE.parent) -> list[str]:
    offenders = []
    for name, path in modules.items():
        for line, target, _ in all_imports(_parsed(path), name, path.name == "__init__.py"):
            if _layer(target) > _layer(name):
                offenders.append(f"{path.relative_to(root)}:{line}: {name} (layer {_layer(name)}) imports "
                                 f"{target} (layer {_layer(target)})")
    return offenders


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for name in _modules():
        try:
            _stage_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_import_crosses_a_layer_upward_not_even_inside_a_function() -> None:
    offenders = upward_imports(_modules())
    assert not offenders, "imports that cross a layer upward:\n" + "\n".join(offenders)


def test_the_layer_check_would_catch_an_upward_import_inside_a_function(tmp_path: Path) -> None:
    store = tmp_path / "harness" / "store.py"
    store.parent.mkdir()
    store.write_text("from harness.errors import HarnessError\n\ndef later():\n"
                     "    from harness.report.builder import build_report\n    return build_report\n")
    found = all_imports(ast.parse(store.read_text()), "harness.store", False)
    assert [(line, target) for line, target, _ in found] == [(1, "harness.errors"), (4, "harness.report.builder")]
    assert upward_imports({"harness.store": store}, root=tmp_path) == [
        "harness/store.py:4: harness.store (layer 8) imports harness.report.builder (layer 11)"]


def test_the_report_imports_the_store_and_the_rankings_public_results_only() -> None:
    """The report reads no runner, and from the ranking only the names `harness.ranking` exports
    (its results and their descriptions): never a ranking module's internals."""
    import harness.ranking

    public = set(harness.ranking.__all__)
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("harness.report"):
            continue
        for line, target, names in all_imports(_parsed(path), name, path.name == "__init__.py"):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if _stage_of(target) not in REPORT_MAY_IMPORT:
                offenders.append(f"{where}: imports {target}")
            elif _stage_of(target) == "harness.ranking" and (target != "harness.ranking" or not set(names) <= public):
                offenders.append(f"{where}: imports {target} ({', '.join(names)}), not harness.ranking's public API")
    assert not offenders, "\n".join(offenders)
