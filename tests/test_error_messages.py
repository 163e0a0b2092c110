"""Errors are rendered once: no module rewrites a message's text with `str.replace`.

A message names its file as the module that raises it is told to (`CaseError.about`, `SpecError.about`,
`harness.acceptance.OutputNames`, `CaseJob.shown`); rewriting the text later (a host path into
`/output/...`, "(found: nothing)" into a list) drifts as soon as the wording changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from harness.acceptance import OutputNames
from harness.errors import CaseError

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
MESSAGE_NAMES = {"message", "msg", "exc", "error", "err"}

# (file, function): why its `.replace` on an exception's text is not a rewrite of a harness message.
ALLOWED = {
    ("data/nifti.py", "_reason"): "a library's exception text (SimpleITK names the file by its whole path)",
}


def _is_message(node: ast.AST, caught: set[str]) -> bool:
    """An error's text: `message`, `x.message`, or anything built from `str(exc)` (exc caught, or so named)."""
    if isinstance(node, ast.Name) and node.id in MESSAGE_NAMES:
        return True
    if isinstance(node, ast.Attribute) and node.attr == "message":
        return True
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "str" and len(n.args) == 1
               and isinstance(n.args[0], ast.Name) and n.args[0].id in caught | MESSAGE_NAMES
               for n in ast.walk(node))


def message_rewrites(source: str) -> list[tuple[int, str]]:
    """(line, enclosing function) of each `.replace(...)` called on an error message's text."""
    tree = ast.parse(source)
    caught = {h.name for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.name}
    owner: dict[int, str] = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                owner.setdefault(id(node), function.name)  # outer first: a nested helper keeps its outer name
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace":
            target = node.func.value
            while (isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute)
                   and target.func.attr == "replace"):
                target = target.func.value  # message.replace(a, b).replace(c, d)
            if _is_message(target, caught):
                found.add((node.lineno, owner.get(id(node), "<module>")))
    return sorted(found)


def test_the_check_finds_a_rewrite_as_casework_once_made_it() -> None:
    planted = '''
def as_the_container_saw(task, exc, aliases, output_path):
    message = str(exc)
    for native, alias in aliases.items():
        message = message.replace(native, alias)
    return message.replace("/output/", f"{output_path}/").replace("/output ", f"{output_path} ")

def score(result, path):
    try:
        check(path)
    except ValueError as problem:
        raise Refused(str(problem).replace(str(path), "/output/x.nii.gz")) from None
    return result.message.replace(str(path), "/output/x.nii.gz")

def label(organ):
    return organ.replace("_", " ")  # display text, not a message
'''
    assert message_rewrites(planted) == [(5, "as_the_container_saw"), (6, "as_the_container_saw"),
                                         (12, "score"), (13, "score")]


def test_no_module_rewrites_an_error_message() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, function in message_rewrites(path.read_text(encoding="utf-8")):
            if (rel, function) not in ALLOWED:
                offenders.append(f"harness/{rel}:{line} in {function}()")
    assert not offenders, ("an error message rewritten with str.replace; give the raising code the name to show "
                           "(CaseError.about, OutputNames, CaseJob.shown) instead:\n" + "\n".join(offenders))


def test_a_refusal_names_the_file_as_the_container_wrote_it(tmp_path: Path) -> None:
    checked = tmp_path / "collected" / "c1.nii.gz"
    exc = CaseError.of(checked, "label values 9 are not in profile flare22; map them", status="invalid_labels")
    assert str(exc) == f"{checked}: label values 9 are not in profile flare22; map them"
    names = OutputNames(root="/workspace/outputs")
    assert str(names.refusal(exc, tmp_path / "collected")) == \
        "/workspace/outputs/c1.nii.gz: label values 9 are not in profile flare22; map them"
    converted = OutputNames(aliases={"/output/c1.nii.gz": "/output/images/seg/x.mha"})
    assert str(converted.refusal(exc, tmp_path / "collected")) == \
        "/output/images/seg/x.mha: label values 9 are not in profile flare22; map them"
    assert str(names.refusal(exc, tmp_path / "elsewhere")) == str(exc)  # not an output: as it is
    assert OutputNames(written=("a.txt", "b")).found([]) == "a.txt, b"
    assert OutputNames(written=("a.txt",)).found(["c1.nii"]) == "c1.nii"
    assert OutputNames().found([]) == "nothing"
