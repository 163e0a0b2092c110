"""The same voxels as .nii.gz, .nii, .mha, .mhd and .nrrd: the same grid, the same scores, and a
prediction in any format is judged on the same terms; `harness run` stages any format as the
contract's .nii.gz."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from harness.cli import main
from harness.data.dataset import discover
from harness.data.nifti import read_grid, read_label
from harness.errors import ExitStatus
from tests.conftest import toy_labels

FORMATS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
AFFINE = np.array([[-0.8, 0.0, 0.0, 12.5], [0.0, -0.8, 0.0, -30.0], [0.0, 0.0, 2.5, 7.0], [0.0, 0.0, 0.0, 1.0]])


def write_as(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """`data` (axes x, y, z) on the grid of a RAS `affine`, in the format of `path`'s ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith((".nii.gz", ".nii")):
        nib.save(nib.Nifti1Image(data, affine), path)
        return path
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lps = np.diag([-1.0, -1.0, 1.0])
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple((lps @ affine[:3, :3] / spacing).ravel().tolist()))
    image.SetOrigin(tuple((lps @ affine[:3, 3]).tolist()))
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reads_as_the_same_grid_and_voxels(tmp_path: Path, suffix: str) -> None:
    labels = toy_labels(2)
    reference = write_as(tmp_path / "ref.nii.gz", labels)
    other = write_as(tmp_path / f"x{suffix}", labels)
    data, grid = read_label(other)
    ref_data, ref_grid = read_label(reference)
    assert np.array_equal(data, ref_data) and grid.shape == ref_grid.shape
    assert np.allclose(grid.spacing_mm, ref_grid.spacing_mm) and np.allclose(grid.affine, ref_grid.affine)
    assert read_grid(other).shape == labels.shape


@pytest.mark.parametrize("label_suffix, pred_suffix", [(".nii.gz", ".mha"), (".nrrd", ".nii.gz"), (".mhd", ".nii"),
                                                       (".nii", ".nrrd")])
def test_scores_are_equal_whatever_the_formats(tmp_path: Path, capsys, label_suffix: str, pred_suffix: str) -> None:
    tables = []
    for name, (lab_ext, pred_ext) in {"reference": (".nii.gz", ".nii.gz"), "mixed": (label_suffix, pred_suffix)}.items():
        root = tmp_path / name
        for i in range(3):
            write_as(root / "data" / "labelsTr" / f"case_{i:02d}{lab_ext}", toy_labels(i))
            write_as(root / "data" / "imagesTr" / f"case_{i:02d}_0000{lab_ext}", (toy_labels(i) * 40).astype(np.int16))
            write_as(root / "pred" / f"case_{i:02d}{pred_ext}", np.roll(toy_labels(i), 1, axis=i % 3))
        with pytest.raises(SystemExit) as code:
            main(["score", "--pred", str(root / "pred"), "--labels", str(root / "data"), "--out", str(root / "s.csv")])
        assert code.value.code == ExitStatus.OK, capsys.readouterr().err
        tables.append(pd.read_csv(root / "s.csv"))
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_a_prediction_in_another_orientation_is_a_grid_mismatch_in_any_format(tmp_path: Path, capsys) -> None:
    write_as(tmp_path / "data" / "labelsTr" / "case_00.nrrd", toy_labels(0))
    flipped = AFFINE.copy()
    flipped[0, 0] = 0.8  # x runs the other way
    write_as(tmp_path / "pred" / "case_00.mha", toy_labels(0), flipped)
    with pytest.raises(SystemExit) as code:
        main(["score", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "data"), "--out", str(tmp_path / "s.csv")])
    assert code.value.code == ExitStatus.DATA_ERROR  # the only case failed
    assert "case_00.mha: affine differs" in capsys.readouterr().err


def test_discovery_takes_any_format_and_refuses_two_files_for_one_case(tmp_path: Path) -> None:
    write_as(tmp_path / "labelsTr" / "a.mha", toy_labels(0))
    write_as(tmp_path / "labelsTr" / "b.nii", toy_labels(1))
    write_as(tmp_path / "labelsTr" / "b.nrrd", toy_labels(1))
    dataset, problems = discover(tmp_path)
    assert [(c.case_id, c.label.name) for c in dataset.cases if c.label] == [("a", "a.mha"), ("b", "b.nii")]
    assert any("b.nrrd: a second file for case b (beside b.nii)" in p.message for p in problems)


def test_a_run_stages_any_format_as_the_contracts_nii_gz(tmp_path: Path) -> None:
    from harness.casework import stage
    from harness.models import Case

    image = write_as(tmp_path / "data" / "imagesTr" / "case_00_0000.mha", (toy_labels(0) * 40).astype(np.int16))
    (tmp_path / "run").mkdir()
    input_dir, _ = stage(Case("case_00", image=image, label=None), (), tmp_path / "run")
    staged = input_dir / "case_00_0000.nii.gz"
    assert [p.name for p in input_dir.iterdir()] == [staged.name]
    img = nib.load(staged)
    assert np.array_equal(np.asarray(img.dataobj), toy_labels(0) * 40) and np.allclose(img.affine, AFFINE)
