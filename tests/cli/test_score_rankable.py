"""`harness score` as a new user meets it: the ground truth as --pred is refused, a `.nii` where a
`.nii.gz` was expected is named, nothing scored is a data error, an image header that differs from
its label's by rounding fails nothing, and its tables (one algorithm, or a folder of them) rank."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import ExitStatus
from tests.conftest import toy_labels, write_nifti


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code), out, err


@pytest.mark.parametrize("which", ["root", "labels"])
def test_the_ground_truth_as_predictions_is_refused(toy_dataset, tmp_path: Path, capsys, which: str) -> None:
    root, _ = toy_dataset
    pred = root if which == "root" else root / "labelsTr"
    code, _, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.DATA_ERROR
    assert "is the ground truth itself (scoring it against itself gives 1.0 everywhere)" in err


def test_a_nii_prediction_is_read_and_a_near_miss_is_named(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    img = nib.load(pred / "case_02.nii.gz")
    nib.save(img, pred / "case_02.nii")  # uncompressed NIfTI: a supported format
    (pred / "case_02.nii.gz").unlink()
    (pred / "case_03.seg.nrrd").write_bytes(b"NRRD0004")  # 3D Slicer's habit: not <case>.<ending>
    (pred / "case_03.nii.gz").unlink()
    code, _, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.PARTIAL
    table = pd.read_csv(tmp_path / "s.csv")
    assert set(table[table.case == "case_02"].status) == {"ok"}
    assert "case_03.nii.gz: prediction is missing, but case_03.seg.nrrd is there; write it as case_03.nii.gz" in err


def test_nothing_scored_is_a_data_error_not_partial(toy_dataset, tmp_path: Path, capsys) -> None:
    root, _ = toy_dataset
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(["score", "--pred", str(empty), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.DATA_ERROR and "no case could be scored (5 failed" in err


def test_an_image_header_that_differs_by_rounding_fails_no_prediction(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    image = root / "imagesTr" / "case_01_0000.nii.gz"
    write_nifti(image, (toy_labels(1) * 40).astype(np.int16), spacing_mm=(0.81, 0.8, 2.5))  # 0.01 mm off its label
    code, _, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.OK, err
    assert set(pd.read_csv(tmp_path / "s.csv").status) == {"ok"}


def test_one_algorithms_table_and_a_folder_of_them_rank_as_they_are(toy_dataset, tmp_path: Path, capsys) -> None:
    root, pred = toy_dataset
    code, _, err = run(["score", "--pred", str(pred), "--algorithm", "rolled", "--labels", str(root),
                        "--out", str(tmp_path / "one.csv")], capsys)
    assert code == ExitStatus.OK, err
    assert set(pd.read_csv(tmp_path / "one.csv").algorithm) == {"rolled"}
    many = tmp_path / "many"
    shutil.copytree(pred, many / "rolled")
    shutil.copytree(root / "labelsTr", many / "perfect")
    worse = many / "worse"
    worse.mkdir()
    for i in range(5):
        write_nifti(worse / f"case_{i:02d}.nii.gz", np.roll(toy_labels(i), 3, axis=0))
    code, out, err = run(["score", "--pred-root", str(many), "--labels", str(root), "--out", str(tmp_path / "all.csv")],
                         capsys)
    assert code == ExitStatus.OK, err
    table = pd.read_csv(tmp_path / "all.csv")
    assert list(table.columns[:3]) == ["algorithm", "case", "organ"] and set(table.algorithm) == {"rolled", "perfect", "worse"}
    code, out, err = run(["rank", "--results", str(tmp_path / "all.csv"), "--draws", "50", "--out", str(tmp_path / "r")],
                         capsys)
    assert code == ExitStatus.OK, err
    board = pd.read_csv(tmp_path / "r" / "leaderboard.csv")
    assert list(board.algorithm) == ["perfect", "rolled", "worse"]
    # The per-case means the ranking used are the organs' means, as `harness run`'s store gives them.
    rolled = table[(table.algorithm == "rolled") & (table.status == "ok")]
    assert board.set_index("algorithm").loc["rolled", "mean_dsc"] == pytest.approx(
        rolled.groupby("case").dsc.mean().mean())


def test_a_set_numbered_in_another_label_system_is_not_scored_under_this_one(toy_dataset, tmp_path: Path, capsys) -> None:
    import json

    root, pred = toy_dataset
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "right_kidney": 2}}))
    code, _, err = run(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / "s.csv")], capsys)
    assert code == ExitStatus.DATA_ERROR
    assert "dataset.json: label 1 = 'spleen', but profile flare22 has 1 = 'liver'" in err
    assert not (tmp_path / "s.csv").exists()
