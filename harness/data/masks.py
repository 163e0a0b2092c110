"""Ground truth kept as one binary mask per organ (AbdomenAtlas, TotalSegmentator), assembled into a
label map in memory under the profile the evaluation uses.

    BDMAP_00000001/ct.nii.gz                 AbdomenAtlas: <case>/ct.nii.gz and
    BDMAP_00000001/segmentations/liver.nii.gz    <case>/segmentations/<organ>.nii.gz
    s0001/ct.nii.gz, s0001/segmentations/...     TotalSegmentator (meta.csv beside, ';'-separated)

A mask's file name is matched to the profile's organs through one vocabulary: the profile's own
names and source names, and the names these data sets use (`MASK_NAMES`). Organs of the profile
with no mask in a case are not annotated there: they are not scored (never taken as empty). Masks
of organs the profile does not have are ignored. Where masks overlap, the organ of lower label
value keeps the voxel; the overlap is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from harness.data.nifti import SUFFIXES, Grid, read_volume, suffix_of
from harness.errors import CaseError
from harness.models import CaseStatus, Profile

MASK_FOLDER = "segmentations"
IMAGE_STEM = "ct"

# Mask names of AbdomenAtlas (1.0/1.1) and TotalSegmentator (v1/v2) -> the shared organ names.
MASK_NAMES = {
    "gall_bladder": "gallbladder",
    "kidney_left": "left_kidney",
    "kidney_right": "right_kidney",
    "postcava": "inferior_vena_cava",
    "adrenal_gland_left": "left_adrenal_gland",
    "adrenal_gland_right": "right_adrenal_gland",
    "urinary_bladder": "bladder",
    "small_bowel": "intestine",
    "portal_vein_and_splenic_vein": "portal_splenic_vein",
    "femur_left": "left_femur_head",
    "femur_right": "right_femur_head",
}


def norm_name(name: str) -> str:
    """An organ name as the shared vocabulary spells it: lower case, words joined by '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def is_mask_folder(path: Path | None) -> bool:
    return path is not None and path.is_dir() and path.name == MASK_FOLDER


def mask_files(folder: Path) -> dict[str, Path]:
    """Shared organ name -> its mask file in a `segmentations/` folder."""
    found = {}
    for path in sorted(folder.iterdir()):
        suffix = suffix_of(path)
        if suffix is None or not path.is_file():
            continue
        stem = norm_name(path.name[: -len(suffix)])
        found[MASK_NAMES.get(stem, stem)] = path
    return found


@dataclass(frozen=True)
class Assembled:
    label_map: NDArray[np.uint8]
    grid: Grid
    annotated: tuple[str, ...]  # the profile's organs with a mask in this case
    ignored: tuple[str, ...]  # masks of organs the profile does not have
    overlap_voxels: int


def assemble(folder: Path, profile: Profile) -> Assembled:
    """The case's label map under `profile` from its mask folder; raises CaseError for a mask that
    cannot be read or is not on the others' grid."""
    masks = mask_files(folder)
    by_name = {}
    for organ in profile.organs:
        for name in (organ.name, norm_name(organ.source_name) if organ.source_name else ""):
            if name in masks:
                by_name[organ.name] = (organ.label, masks[name])
                break
    ignored = tuple(sorted(set(masks) - {norm_name(o.name) for o in profile.organs}
                           - {norm_name(o.source_name) for o in profile.organs if o.source_name}))
    if not by_name:
        raise CaseError(f"{folder}: no mask of an organ of profile {profile.name} (found: "
                        f"{', '.join(sorted(masks)) or 'none'}); choose the profile of this data set",
                        status=CaseStatus.MISSING_LABEL)
    label_map: NDArray[np.uint8] | None = None
    grid: Grid | None = None
    overlap = 0
    for value, path in sorted(by_name.values(), key=lambda item: -item[0]):  # lower values drawn last: they win
        data, mask_grid = read_volume(path)
        if label_map is None:
            label_map, grid = np.zeros(data.shape, np.uint8), mask_grid
        elif data.shape != label_map.shape:
            raise CaseError(f"{path}: shape {data.shape} differs from the case's other masks {label_map.shape}; "
                            "re-export the masks on one grid", status=CaseStatus.GRID_MISMATCH)
        mask = np.asarray(data) != 0
        overlap += int(np.count_nonzero(mask & (label_map != 0)))
        label_map[mask] = value
    assert label_map is not None and grid is not None
    return Assembled(label_map, grid, tuple(sorted(by_name)), ignored, overlap)


def annotated_profile(profile: Profile, annotated: tuple[str, ...]) -> Profile:
    """`profile` scoring only the organs annotated in a case (and the regions made of them); the others
    stay valid, unscored."""
    return profile.scoring_only(annotated)


def discover_mask_cases(root: Path) -> list[tuple[str, Path | None, Path]]:
    """(case id, image, mask folder) of every `<case>/segmentations/` under `root`."""
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / MASK_FOLDER).is_dir()):
        image = next((folder / f"{IMAGE_STEM}{s}" for s in SUFFIXES if (folder / f"{IMAGE_STEM}{s}").is_file()), None)
        cases.append((folder.name, image, folder / MASK_FOLDER))
    return cases
