"""Find the cases of a data set in the FLARE / nnU-Net layout, and of a folder of predictions.

Layout: `imagesTr|imagesTs/<case>_0000.nii.gz` and `labelsTr|labelsTs/<case>.nii.gz`, with an
optional nnU-Net `dataset.json` naming the labels. A flat folder of `<case>.nii.gz` files (a
folder of predictions, or of labels alone) is accepted too. Every file may also be `.nii`,
`.mha`, `.mhd` or `.nrrd` (`harness.data.nifti.SUFFIXES`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.data.nifti import suffix_of
from harness.errors import DataError
from harness.models import Case, Dataset

NIFTI_SUFFIX = ".nii.gz"
IMAGE_CHANNEL = "_0000"
SPLITS = ("Tr", "Ts")
LAYOUT_NNUNET = "nnU-Net v2 / FLARE (dataset.json)"
LAYOUT_FLARE = "FLARE (imagesTr/labelsTr)"
LAYOUT_MSD = "MSD / nnU-Net v1 (dataset.json lists the files)"
LAYOUT_FLAT = "a flat folder of <case> files"
LAYOUT_MASKS = "AbdomenAtlas (<case>/ct, <case>/segmentations/<organ>)"
LAYOUT_TOTALSEG = "TotalSegmentator (<case>/ct, <case>/segmentations/<class>, meta.csv)"
# A case id becomes a file name and a container path: no separators, no shell metacharacters.
CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: no trailing newline


@dataclass(frozen=True)
class Problem:
    """A file that could not become part of the data set, with the one-line reason and fix."""

    path: Path
    message: str


def case_id_of(path: Path, *, image: bool = False) -> str | None:
    """The case id in a file name, or None if the name is not `<case>[_0000]<format ending>`."""
    suffix = suffix_of(path)
    if suffix is None:
        return None
    stem = path.name[: -len(suffix)]
    if image:
        if not stem.endswith(IMAGE_CHANNEL):
            return None
        stem = stem[: -len(IMAGE_CHANNEL)]
    return stem


def _scan(folder: Path, *, image: bool, problems: list[Problem]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or suffix_of(path) is None:
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
        if case_id in found:
            problems.append(Problem(path, f"{path}: a second file for case {case_id} (beside {found[case_id].name}); "
                                          "keep one"))
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
    from harness.data.masks import discover_mask_cases

    masked = discover_mask_cases(root)
    if masked:  # AbdomenAtlas / TotalSegmentator: <case>/ct.nii.gz and <case>/segmentations/<organ>.nii.gz
        mask_layout = LAYOUT_TOTALSEG if (root / "meta.csv").is_file() else LAYOUT_MASKS
        found: list[Case] = []
        for case_id, image, folder in masked:
            if not CASE_ID.fullmatch(case_id):
                problems.append(Problem(folder, f"{folder}: case id {case_id!r} has characters other than letters, "
                                                "digits, '.', '_' and '-'; rename the folder"))
                continue
            found.append(Case(case_id=case_id, image=image, label=folder))
        return Dataset(root=root, cases=tuple(found), label_names={}, layout=mask_layout), problems
    listed = _msd_lists(root, problems)
    if listed is not None:  # MSD / nnU-Net v1: dataset.json lists the files
        images, labels = listed
        ids = sorted(set(images) | set(labels))
        if not ids:
            raise DataError(f"{root}: layout MSD / nnU-Net v1 (dataset.json 'training'/'test'), but no listed file exists")
        cases = tuple(Case(case_id=i, image=images.get(i), label=labels.get(i)) for i in ids)
        return Dataset(root=root, cases=cases, label_names=read_label_names(root), layout=LAYOUT_MSD), problems
    images = {}
    labels = {}
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
    return Dataset(root=root, cases=cases, label_names=read_label_names(root),
                   layout=LAYOUT_NNUNET if (root / "dataset.json").is_file() else LAYOUT_FLARE if layout else LAYOUT_FLAT), \
        problems


def _msd_lists(root: Path, problems: list[Problem]) -> tuple[dict[str, Path], dict[str, Path]] | None:
    """The images and labels an MSD / nnU-Net v1 `dataset.json` lists ('training': [{"image",
    "label"}], 'test': [paths]); None when the data set is not of that layout."""
    path = root / "dataset.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # read_label_names reports a broken dataset.json
    training = raw.get("training") if isinstance(raw, dict) else None
    if not isinstance(training, list) or not all(isinstance(t, dict) for t in training):
        return None
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}

    def add(rel: object, into: dict[str, Path], what: str) -> None:
        if not isinstance(rel, str):
            problems.append(Problem(path, f"{path}: a {what} entry {rel!r} is not a path; fix dataset.json"))
            return
        file = (root / rel).resolve()
        if not file.is_relative_to(root.resolve()):
            problems.append(Problem(path, f"{path}: {rel} leaves the data set folder; list files inside it"))
            return
        suffix = suffix_of(file)
        if not file.is_file() and what.endswith("image") and suffix is not None:
            # nnU-Net v1 lists "imagesTr/<case>.nii.gz" for the files <case>_0000.nii.gz (one per channel)
            channel = file.with_name(file.name[: -len(suffix)] + IMAGE_CHANNEL + suffix)
            if channel.is_file():
                into[file.name[: -len(suffix)]] = channel
                return
        if not file.is_file():
            problems.append(Problem(file, f"{file}: listed in dataset.json as a {what} but missing; add it or fix the list"))
            return
        case_id = case_id_of(file)
        if case_id is None or not CASE_ID.fullmatch(case_id):
            problems.append(Problem(file, f"{file}: not a <case>{NIFTI_SUFFIX} name harness can use; rename it"))
            return
        into[case_id] = file

    for entry in training:
        add(entry.get("image"), images, "training image")
        if "label" in entry:
            add(entry.get("label"), labels, "training label")
    for rel in raw.get("test", []) if isinstance(raw.get("test", []), list) else []:
        add(rel if isinstance(rel, str) else rel.get("image") if isinstance(rel, dict) else rel, images, "test image")
    return images, labels


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
    """sha256 of a file's bytes, or of a folder's files (names and bytes, sorted: a mask folder);
    "" for no file."""
    if path is None:
        return ""
    hasher = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            hasher.update(file.name.encode() + b"\0")
        with file.open("rb") as stream:
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
