"""A submission's build inputs, checked as untrusted before anything reads or builds them.

A submitter owns only its code: the algorithm folder, its `requirements.txt` and its Dockerfile.
Before a build, and before any of their content is hashed, copied or handed to pip or the daemon:

- the build context is the algorithm folder's *regular files* only; a symbolic link (which would
  bake a file from elsewhere, e.g. the ground truth, into the image), a device, a FIFO or a socket
  is refused, naming the path and never quoting any content;
- `requirements.txt` holds package requirements only (name, extras, version specifiers, markers,
  `--hash` options): pip options, URLs, paths and includes are refused;
- the Dockerfile builds from the harness's base (`FROM ${BASE}` or a stage of its own) and fetches
  nothing: `ADD` of a URL or a git repository, and `COPY --from` an outside image, are refused.

Every problem is a `SubmissionError` (a `SpecError`): one line naming the file, the line or key at
fault and the fix; the build of that algorithm fails and the others go on.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SpecError

IGNORED_DIRS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = (".pyc",)


class SubmissionError(SpecError):
    """A submission's build input breaks the challenge's rules."""


@dataclass(frozen=True)
class ContextFile:
    relative: str  # POSIX path inside the algorithm folder
    path: Path
    size: int


def context_files(folder: Path, *, max_files: int = 10_000, max_bytes: int = 4 * 1024**3) -> list[ContextFile]:
    """The regular files of an algorithm folder, walked without following any link; raises
    SubmissionError for a link, a special file, or a folder beyond the bounds."""
    root = Path(folder)
    info = os.lstat(root)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SubmissionError(f"{root}: the algorithm folder must be a real folder, not a link; copy it in place")
    found: list[ContextFile] = []
    total = 0
    for current, dirs, files in os.walk(root, followlinks=False):
        here = Path(current)
        keep = []
        for name in sorted(dirs):
            entry = here / name
            if stat.S_ISLNK(os.lstat(entry).st_mode):
                raise SubmissionError(f"{_shown(entry)}: a symbolic link in the build context; replace it by the files "
                                      "themselves (links could bring in files from outside the algorithm folder)")
            if name not in IGNORED_DIRS:
                keep.append(name)
        dirs[:] = keep
        for name in sorted(files):
            entry = here / name
            mode = os.lstat(entry).st_mode
            if stat.S_ISLNK(mode):
                raise SubmissionError(f"{_shown(entry)}: a symbolic link in the build context; replace it by the file "
                                      "itself (links could bring in files from outside the algorithm folder)")
            if not stat.S_ISREG(mode):
                raise SubmissionError(f"{_shown(entry)}: not a regular file (a device, FIFO or socket); remove it from "
                                      "the algorithm folder")
            if name.endswith(IGNORED_SUFFIXES):
                continue
            size = os.lstat(entry).st_size
            total += size
            found.append(ContextFile(entry.relative_to(root).as_posix(), entry, size))
            if len(found) > max_files or total > max_bytes:
                raise SubmissionError(f"{root}: more than {max_files} files or {max_bytes} bytes in the algorithm folder; "
                                      "ship large models as one file, or raise the challenge's build limits")
    return sorted(found, key=lambda f: f.relative)


def _shown(path: Path) -> str:
    """A path as it is safe to print: control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(path).encode("utf-8", "surrogateescape")
                   .decode("utf-8", "backslashreplace"))


# PEP 508, the parts a requirements line may use here: no URL (`name @ url`), no path.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_EXTRAS = rf"(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
_VERSION = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_SPEC = rf"(?:\(?\s*{_VERSION}(?:\s*,\s*{_VERSION})*\s*\)?)?"
_MARKER_VARS = ("python_version|python_full_version|os_name|sys_platform|platform_release|platform_system|"
                "platform_version|platform_machine|platform_python_implementation|implementation_name|"
                "implementation_version|extra")
_MARKER_TOKEN = rf"""(?:and|or|not\s+in|not|in|\(|\)|===|==|!=|<=|>=|~=|<|>|'[^'\\]*'|"[^"\\]*"|{_MARKER_VARS})"""
_MARKER = rf"(?:\s*;(?:\s*{_MARKER_TOKEN})+)?"
_HASH = r"(?:\s+--hash[=\s]sha(?:256|384|512):[0-9a-f]+)*"
REQUIREMENT = re.compile(rf"{_NAME}\s*{_EXTRAS}\s*{_SPEC}{_MARKER}\s*{_HASH}")


def check_requirements(path: Path) -> list[str]:
    """The requirement lines of a requirements file, each checked; raises SubmissionError naming the
    line number (never its content: the file might not be what it claims)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read it ({exc.strerror}); check the file") from None
    if len(raw) > 1024**2:
        raise SubmissionError(f"{path}: larger than 1 MiB; a requirements file lists packages, one per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not UTF-8 text; write one package requirement per line") from None
    lines = []
    for number, line in enumerate(text.replace("\\\n", " ").splitlines(), start=1):
        body = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not body:
            continue
        if body.startswith("-"):
            raise SubmissionError(f"{path}: line {number}: a pip option; only package requirements (name, extras, "
                                  "version specifiers, --hash) are allowed: the challenge sets pip's index and options")
        if len(body) > 2000 or not REQUIREMENT.fullmatch(body):
            raise SubmissionError(f"{path}: line {number}: not a package requirement (URLs, paths and includes are "
                                  "refused); write it as name[extras]==version")
        lines.append(body)
    return lines


_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s*(.*)$", re.DOTALL)
_BASE_REFS = {"${BASE}", "$BASE"}
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)", re.IGNORECASE)


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        match = _INSTRUCTION.match(" ".join(pending))
        pending = []
        if match:
            out.append((start, match.group(1).upper(), match.group(2).strip()))
    return out


def check_dockerfile(path: Path) -> None:
    """Refuse a Dockerfile that builds from anything but the harness's base or fetches anything."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read it ({exc.strerror}); check the path") from None
    if len(raw) > 256 * 1024:
        raise SubmissionError(f"{path}: larger than 256 KiB; is it a Dockerfile?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not UTF-8 text; is it a Dockerfile?") from None
    stages: set[str] = set()
    saw_from = False
    for number, instruction, args in _instructions(text):
        words = args.split()
        if instruction == "FROM":
            saw_from = True
            options = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            if options or not rest or (rest[0] not in _BASE_REFS and rest[0].lower() not in stages):
                raise SubmissionError(f"{path}: line {number}: FROM must be the harness's base image: `ARG BASE` then "
                                      "`FROM ${BASE}` (or a stage built from it); the challenge supplies the base")
            if len(rest) >= 3 and rest[1].upper() == "AS":
                stages.add(rest[2].lower())
        elif instruction == "ADD":
            sources = [w for w in words if not w.startswith("--")][:-1]
            if any(_URL.match(s.strip("\"'[],")) for s in sources) or any(w.startswith("--checksum") for w in words):
                raise SubmissionError(f"{path}: line {number}: ADD of a URL; builds have no network: put the file in "
                                      "the algorithm folder and COPY it")
        elif instruction == "COPY":
            for word in words:
                if word.startswith("--from="):
                    source = word.split("=", 1)[1].lower()
                    if source not in stages:
                        raise SubmissionError(f"{path}: line {number}: COPY --from an image that is not a stage of this "
                                              "Dockerfile; builds use the harness's base only")
        elif instruction == "ONBUILD":
            raise SubmissionError(f"{path}: line {number}: ONBUILD is not allowed; write the steps out")
    if not saw_from:
        raise SubmissionError(f"{path}: no FROM line; start with `ARG BASE` and `FROM ${{BASE}}`")
