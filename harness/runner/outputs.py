"""Check what an algorithm wrote to `/output` before anything reads it as a result.

A run's outputs are accepted only if: `<case>.nii.gz` exists as a regular file (symbolic links
anywhere in `/output` are rejected and never followed), is a readable 3D integer label map on the
input image's grid with the profile's labels only, and, when the manifest declares probabilities,
`probabilities/<organ>.nii.gz` exists for every organ of the profile on the same grid, as uint8
(p * 255) or float16/float32 in [0, 1] with no NaN.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from harness.data.nifti import Grid, check_labels, check_same_grid, check_untrusted_header, read_grid, read_label, stream_length
from harness.errors import CaseError
from harness.fstree import walk_entries
from harness.layout import PROBABILITY_DIR  # the kept layout mirrors /output
from harness.models import Profile
from harness.safetext import safe_text


@dataclass(frozen=True)
class AcceptedOutput:
    label: Path
    probabilities: dict[str, Path]  # organ name -> file; empty when not declared


class InvalidOutput(Exception):
    """The output breaks the contract; the message is one line naming the file and the problem."""


def _symlinks(root: Path) -> list[Path]:
    """Symbolic links anywhere under `root` (iteratively: any depth, any name)."""
    return [root / os.fsdecode(rel) for rel, info in walk_entries(root) if stat.S_ISLNK(info.st_mode)][:1]


def validate_outputs(output_dir: Path, *, case_id: str, image: Path, profile: Profile,
                     probabilities: bool) -> AcceptedOutput:
    """The accepted output files, or InvalidOutput with the reason."""
    links = _symlinks(output_dir)
    if links:
        raise InvalidOutput(f"{safe_text(str(links[0].relative_to(output_dir)), limit=200)}: symbolic link in /output "
                            "(never followed); write regular files")
    label = output_dir / f"{case_id}.nii.gz"
    if not label.is_file():
        present = sorted(safe_text(p.name, limit=80) for p in output_dir.iterdir())[:5]
        raise InvalidOutput(f"no label map /output/{case_id}.nii.gz (found: {', '.join(present) or 'nothing'}); write it")
    image_grid = read_grid(image)
    try:
        check_untrusted_header(label, image_grid.shape)  # before nibabel parses it, before any voxel
        data, grid = read_label(label)
        check_same_grid(label, grid, image, image_grid, what="input image")
        check_labels(label, data, profile)
    except CaseError as exc:
        raise InvalidOutput(_relative(str(exc), output_dir)) from None
    probs: dict[str, Path] = {}
    if probabilities:
        for organ in profile.organs:
            path = output_dir / PROBABILITY_DIR / f"{organ.name}.nii.gz"
            if not path.is_file():
                raise InvalidOutput(f"missing /output/{PROBABILITY_DIR}/{organ.name}.nii.gz (the manifest declares probabilities)")
            _check_probability(path, image, image_grid, output_dir)
            probs[organ.name] = path
    return AcceptedOutput(label=label, probabilities=probs)


def _check_probability(path: Path, image: Path, image_grid: Grid, output_dir: Path) -> None:
    rel = path.relative_to(output_dir)
    try:
        facts = check_untrusted_header(path, image_grid.shape)
        grid = read_grid(path)
        check_same_grid(path, grid, image, image_grid, what="input image")
        complete = True
        if facts.plain_uint8:  # every value is a valid p * 255: only check that the voxels are all there
            needed = facts.vox_offset + facts.voxels
            complete = stream_length(path, cap=needed) >= needed
        else:
            data = np.asanyarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
    except CaseError as exc:
        raise InvalidOutput(_relative(str(exc), output_dir)) from None
    except Exception as exc:  # noqa: BLE001 - any read failure is the algorithm's
        raise InvalidOutput(f"{rel}: unreadable ({type(exc).__name__}); write a NIfTI file") from None
    if not complete:
        raise InvalidOutput(f"{rel}: truncated (fewer voxels than its header says); write the whole file")
    if facts.plain_uint8:
        return
    if data.dtype == np.uint8:
        return
    if data.dtype not in (np.float16, np.float32, np.float64):
        raise InvalidOutput(f"{rel}: dtype {data.dtype}; write uint8 (p * 255) or float16/float32 in [0, 1]")
    if np.isnan(data).any():
        raise InvalidOutput(f"{rel}: probabilities contain NaN; write values in [0, 1]")
    low, high = float(data.min(initial=0)), float(data.max(initial=0))
    if low < 0 or high > 1:
        raise InvalidOutput(f"{rel}: probabilities span [{low:.3g}, {high:.3g}], outside [0, 1]; write values in [0, 1]")


def _relative(message: str, output_dir: Path) -> str:
    return message.replace(str(output_dir) + os.sep, "/output/")
