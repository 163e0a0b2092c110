"""Reading the annotator's output folders and reviewers' revisions; writing final label maps.

The only module of `harness.attention` that touches the disk. An annotator output folder holds
(see "Annotator contract" in algorithms/README.md) `<case>.nii.gz` (the pseudo label),
`attention/<organ>.nii.gz`, `heatmap/<organ>.nii.gz` and `attention.json`. A folder of revised
masks holds `<case>/<organ>.nii.gz` (nonzero = organ) for the organs a reviewer revised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from harness.errors import DataError

SUMMARY_FILE = "attention.json"
ATTENTION_DIR = "attention"
NIFTI_SUFFIX = ".nii.gz"


def _summary_path(path: Path) -> Path:
    return path / SUMMARY_FILE if path.is_dir() else path


def read_summary(path: str | Path) -> dict[str, Any]:
    """The `attention.json` of an annotator output folder (or the file itself), checked."""
    file = _summary_path(Path(path))
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{file}: no such file; run the annotator on this case first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: not readable as JSON ({exc}); rerun the annotator on this case") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected a JSON object with keys case, models, organs; rerun the annotator")
    for key, kind in (("case", str), ("organs", dict), ("models", list)):
        if not isinstance(raw.get(key), kind):
            raise DataError(f"{file}: key '{key}' = {raw.get(key)!r}; expected a {kind.__name__} (annotator contract)")
    return raw


def _open(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; rerun the annotator (or write the mask)") from None
    except Exception as exc:  # nibabel raises many types for a file that is not NIfTI
        raise DataError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc}); re-export it as .nii.gz") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(f"{path}: {type(img).__name__} is not NIfTI; re-export it as .nii.gz")
    return img


def _read_array(path: Path) -> NDArray[Any]:
    img = _open(path)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip stream, short file
        raise DataError(f"{path}: voxel data cannot be read ({type(exc).__name__}: {exc}); re-export it") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: shape {data.shape}; expected a 3D volume")
    return data


def _organs(folder: Path, organs: Iterable[str] | None) -> list[str]:
    if organs is not None:
        return list(organs)
    return list(read_summary(folder)["organs"])


def read_attention(folder: str | Path, organs: Iterable[str] | None = None) -> dict[str, NDArray[np.bool_]]:
    """Organ -> binary attention map (bool) of an annotator output folder (default: its organs)."""
    folder = Path(folder)
    return {o: _read_array(folder / ATTENTION_DIR / f"{o}{NIFTI_SUFFIX}") != 0 for o in _organs(folder, organs)}


def read_pseudo_label(folder: str | Path) -> NDArray[np.uint8]:
    """The averaged pseudo label map (`<case>.nii.gz`, the case from attention.json)."""
    folder = Path(folder)
    data = _read_array(folder / f"{read_summary(folder)['case']}{NIFTI_SUFFIX}")
    if data.dtype != np.uint8:
        raise DataError(f"{folder}: pseudo label has dtype {data.dtype}; expected uint8 (annotator contract)")
    return data


def read_revised(folder: str | Path, case: str, organs: Iterable[str]) -> dict[str, NDArray[np.bool_] | None]:
    """Organ -> reviewer's mask (`folder/<case>/<organ>.nii.gz`, nonzero = organ), None where absent."""
    base = Path(folder) / case
    out: dict[str, NDArray[np.bool_] | None] = {}
    for organ in organs:
        path = base / f"{organ}{NIFTI_SUFFIX}"
        out[organ] = _read_array(path) != 0 if path.is_file() else None
    return out


def write_label(label_map: NDArray[np.integer], reference: str | Path, path: str | Path) -> Path:
    """Write `label_map` as uint8 NIfTI with the header and affine of the `reference` file."""
    reference, path = Path(reference), Path(path)
    ref = _open(reference)
    if tuple(ref.shape[:3]) != tuple(label_map.shape):
        raise DataError(f"{path}: label map shape {label_map.shape} differs from {reference}'s {tuple(ref.shape)}")
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    img = nib.Nifti1Image(np.asarray(label_map, np.uint8), ref.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path
