"""Reading annotator output folders and revisions; writing CSV and label maps."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.attention.io import read_attention, read_pseudo_label, read_revised, read_summary, write_label
from harness.errors import DataError
from tests.attention.helpers import write_nifti

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
SHAPE = (5, 4, 3)


def fake_output(folder: Path, case: str, organs: tuple[str, ...] = ("liver", "spleen")) -> Path:
    """An annotator output folder written by hand (the contract's layout)."""
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 1
    write_nifti(folder / f"{case}.nii.gz", label, AFFINE)
    for i, organ in enumerate(organs):
        att = np.zeros(SHAPE, np.uint8)
        att[i, 0, 0] = 1
        write_nifti(folder / "attention" / f"{organ}.nii.gz", att, AFFINE)
        write_nifti(folder / "heatmap" / f"{organ}.nii.gz", att * 255, AFFINE)
    summary = {"case": case, "models": ["a", "b"], "attention_voxels": len(organs),
               "organs": {o: {"attention_voxels": 1, "heat_sum": 1.0, "inconsistency_voxels": 1, "uncertainty_voxels": 0,
                              "overlap_voxels": 0} for o in organs}, "settings": {}}
    (folder / "attention.json").write_text(json.dumps(summary))
    return folder


def test_reads_an_output_folder(tmp_path: Path) -> None:
    folder = fake_output(tmp_path / "c1", "c1")
    assert read_summary(folder)["case"] == "c1"
    assert read_summary(folder / "attention.json")["models"] == ["a", "b"]
    attention = read_attention(folder)
    assert list(attention) == ["liver", "spleen"] and attention["spleen"][1, 0, 0] and attention["spleen"].sum() == 1
    assert attention["liver"].dtype == bool
    assert read_pseudo_label(folder)[0, 0, 0] == 1


def test_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "attention.json").write_text("{not json")
    with pytest.raises(DataError, match="attention.json: not readable as JSON"):
        read_summary(tmp_path)
    (tmp_path / "attention.json").write_text(json.dumps({"case": "x", "organs": {}}))
    with pytest.raises(DataError, match="key 'models' = None"):
        read_summary(tmp_path)
    folder = fake_output(tmp_path / "c1", "c1")
    (folder / "attention" / "liver.nii.gz").unlink()
    with pytest.raises(DataError, match="attention/liver.nii.gz: no such file"):
        read_attention(folder)
    (folder / "attention" / "spleen.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="spleen.nii.gz: not a readable NIfTI file"):
        read_attention(folder, ["spleen"])
    write_nifti(folder / "c1.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
    with pytest.raises(DataError, match="pseudo label has dtype float32"):
        read_pseudo_label(folder)


def test_reads_revised_masks(tmp_path: Path) -> None:
    mask = np.zeros(SHAPE, np.uint8)
    mask[2, 2, 2] = 7
    write_nifti(tmp_path / "revised" / "c1" / "spleen.nii.gz", mask, AFFINE)
    revised = read_revised(tmp_path / "revised", "c1", ["liver", "spleen"])
    assert revised["liver"] is None
    assert revised["spleen"] is not None and revised["spleen"].dtype == bool and revised["spleen"].sum() == 1
    assert read_revised(tmp_path / "revised", "c9", ["spleen"]) == {"spleen": None}


def test_write_label_copies_the_reference_grid(tmp_path: Path) -> None:
    reference = write_nifti(tmp_path / "ct.nii.gz", np.zeros(SHAPE, np.int16), AFFINE)
    label = np.zeros(SHAPE, np.int64)
    label[1, 1, 1] = 13
    path = write_label(label, reference, tmp_path / "out" / "c1.nii.gz")
    img = nib.load(path)
    assert img.get_data_dtype() == np.uint8 and np.asarray(img.dataobj)[1, 1, 1] == 13
    np.testing.assert_allclose(img.affine, AFFINE)
    with pytest.raises(DataError, match=r"label map shape \(2, 2, 2\) differs"):
        write_label(np.zeros((2, 2, 2), np.uint8), reference, tmp_path / "x.nii.gz")
