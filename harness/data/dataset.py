"""Find the cases of a data set in the FLARE / nnU-Net layout, and of a folder of predictions.

Layout: `imagesTr|imagesTs/<case>_0000.nii.gz` and `labelsTr|labelsTs/<case>.nii.gz`, with an
optional nnU-Net `dataset.json` naming the labels. A flat folder of `<case>.nii.gz` files (a
folder of predictions, or of labels alone) is accepted too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError
from harness.models import Case, Dataset

NIFTI_SUFFIX = ".nii.gz"
IMAGE_CHANNEL = "_0000"
SPLITS = ("Tr", "Ts")
# A case id becomes a file name and a container path: no separators, no shell metacharacters.
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: no trailing newline


@dataclass(frozen=True)
class Problem:
    """A file that could not become part of the data set, with the one-line reason and fix."""

    path: Path
    message: str


def case_id_of(path: Path, *, image: bool = False) -> str | None:
    """The case id in a file name, or None if the name is not `<case>[_0000].nii.gz`."""
    name = path.name
    if not name.endswith(NIFTI_SUFFIX):
        return None
    stem = name[: -len(NIFTI_SUFFIX)]
    if image:
        if not stem.endswith(IMAGE_CHANNEL):
            return None
        stem = stem[: -len(IMAGE_CHANNEL)]
    return stem


def _scan(folder: Path, *, image: bool, problems: list[Problem]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(NIFTI_SUFFIX):
            continue
        case_id = case_id_of(path, image=image)
        if case_id is None:
            problems.append(Problem(path, f"{path}: image name lacks the channel suffix; rename it to <case>{IMAGE_CHANNEL}{NIFTI_SUFFIX}"))
            continue
        if not CASE_ID.fullmatch(case_id):
            problems.append(
                Problem(path, f"{path}: case id {case_id!r} has characters other than letters, digits, '.', '_' and '-'; rename the file")
            )
            continue
        if not path.is_file():
            problems.append(Problem(path, f"{path}: not a regular file; replace it with the NIfTI file itself"))
            continue
        found[case_id] = path
    return found


def discover(root: Path) -> tuple[Dataset, list[Problem]]:
    """The cases under `root`, and the files that were skipped (each with its reason).

    Raises DataError if `root` is missing or holds no case at all.
    """
    if not root.exists():
        raise DataError(f"{root}: no such folder; pass the folder that holds the data set")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass the folder that holds the data set")
    problems: list[Problem] = []
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    layout = False
    for split in SPLITS:
        if (root / f"images{split}").is_dir():
            layout = True
            images.update(_scan(root / f"images{split}", image=True, problems=problems))
        if (root / f"labels{split}").is_dir():
            layout = True
            labels.update(_scan(root / f"labels{split}", image=False, problems=problems))
    if not layout:
        labels = _scan(root, image=False, problems=problems)
    ids = sorted(set(images) | set(labels))
    if not ids:
        raise DataError(
            f"{root}: no cases found; expected imagesTr/<case>_0000.nii.gz and labelsTr/<case>.nii.gz "
            "(or Ts), or a folder of <case>.nii.gz files"
        )
    cases = tuple(Case(case_id=i, image=images.get(i), label=labels.get(i)) for i in ids)
    return Dataset(root=root, cases=cases, label_names=read_label_names(root)), problems


def read_label_names(root: Path) -> dict[int, str]:
    """Label value -> name from an nnU-Net `dataset.json` (v1 or v2 style); {} when absent."""
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        labels = raw["labels"]
        if not isinstance(labels, dict):
            raise TypeError("'labels' is not an object")
        names: dict[int, str] = {}
        for key, value in labels.items():
            if isinstance(value, int) and not isinstance(value, bool):  # v2: {"liver": 1}
                names[value] = str(key)
            elif isinstance(value, list):  # v2 region-based: {"name": [1, 2]} is not a label
                continue
            else:  # v1: {"1": "liver"}
                names[int(key)] = str(value)
        return names
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot read the label map ({exc}); write it as nnU-Net's "
            '{"labels": {"background": 0, "liver": 1, ...}} or remove the file'
        ) from None


def file_sha256(path: Path | None) -> str:
    """sha256 of a file's bytes ("" for no file)."""
    if path is None:
        return ""
    hasher = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


@dataclass(frozen=True)
class CaseDigest:
    """A case's content: the image decides whether its runs are valid, the label whether its scores are."""

    image_sha256: str
    label_sha256: str


def digest_cases(cases: Iterable[Case]) -> dict[str, CaseDigest]:
    """case id -> its image's and label's sha256 (a label that cannot be read hashes as "unreadable")."""
    digests = {}
    for case in cases:
        try:
            label = file_sha256(case.label)
        except OSError:
            label = "unreadable"
        digests[case.case_id] = CaseDigest(file_sha256(case.image), label)
    return digests


def dataset_id(digests: dict[str, CaseDigest]) -> str:
    """The identity of a data set: its case ids and their images (labels may be fixed; it stays)."""
    hasher = hashlib.sha256()
    for case_id in sorted(digests):
        hasher.update(f"{case_id}\0{digests[case_id].image_sha256}\n".encode())
    return hasher.hexdigest()
