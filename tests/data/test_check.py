"""`harness data check`: inventory and problems of a data set, before an evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.data.synth import write_dataset
from harness.errors import ExitStatus
from tests.conftest import toy_labels, write_nifti


def run(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code), capsys.readouterr().out


def test_a_good_set_can_be_evaluated(tmp_path: Path, capsys) -> None:
    write_dataset(tmp_path / "data", cases=2, seed=8, size="small")
    code, out = run(["data", "check", str(tmp_path / "data"), "--csv", str(tmp_path / "inventory.csv")], capsys)
    assert code == ExitStatus.OK, out
    assert "layout nnU-Net v2 / FLARE (dataset.json), 2 cases, profile flare22" in out
    assert "0 error(s), 0 warning(s): the set can be evaluated" in out
    inventory = pd.read_csv(tmp_path / "inventory.csv", keep_default_na=False)
    assert list(inventory.case) == ["phantom_0000", "phantom_0001"]
    assert inventory.organs[0].split()[:2] == ["liver", "right_kidney"]


def _broken(root: Path) -> Path:
    for i in range(5):
        write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", toy_labels(i))
        write_nifti(root / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (toy_labels(i) * 40).astype(np.int16))
    bad = toy_labels(1)
    bad[0, 0, 0] = 14
    write_nifti(root / "labelsTr" / "case_01.nii.gz", bad)  # a value outside flare22
    write_nifti(root / "imagesTr" / "case_02_0000.nii.gz", np.zeros((24, 22, 13), np.int16))  # another shape
    flat = toy_labels(3)
    flat[flat == 5] = 0
    flat[13:17, 12:16, 4] = 5  # the aorta on one slice
    write_nifti(root / "labelsTr" / "case_03.nii.gz", flat)
    write_nifti(root / "imagesTr" / "case_04_0000.nii.gz", (toy_labels(4) * 40).astype(np.int16), spacing_mm=(0.81, 0.8, 2.5))
    write_nifti(root / "imagesTr" / "case_05_0000.nii.gz", (toy_labels(5) * 40).astype(np.int16))  # no label
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "right_kidney": 2}}))
    return root


def test_a_broken_set_lists_every_problem_and_exits_4(tmp_path: Path, capsys) -> None:
    root = _broken(tmp_path / "data")
    code, out = run(["data", "check", str(root), "--csv", str(tmp_path / "inv.csv")], capsys)
    assert code == ExitStatus.DATA_ERROR
    assert "label 1 = 'spleen', but profile flare22 has 1 = 'liver'" in out
    assert "warning: " + str(root / "labelsTr" / "case_01.nii.gz") + ": label values 14 are not in profile flare22; " \
        "counted as background" in out  # flare22's rule, as its official script
    assert "case_02.nii.gz: shape (24, 22, 12) differs from its image case_02_0000.nii.gz (24, 22, 13)" in out
    assert "warning: " in out and "case_03.nii.gz: aorta is labelled on one slice only" in out
    assert "case_04.nii.gz" in out and "a header difference: predictions on either grid are accepted" in out
    assert "case_05: an image without a label; it cannot be scored" in out
    assert "the set cannot be evaluated as it is" in out
    problems = pd.read_csv(tmp_path / "inv-problems.csv", keep_default_na=False)
    assert sorted(problems.severity.value_counts().items()) == [("error", 2), ("warning", 4)]
    inventory = pd.read_csv(tmp_path / "inv.csv", keep_default_na=False).set_index("case")
    assert inventory.loc["case_03", "one_slice_organs"] == "aorta" and inventory.loc["case_05", "label"] == ""


def test_labels_outside_a_refusing_profile_are_an_error(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    for i in range(2):
        write_nifti(root / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (toy_labels(i) * 40).astype(np.int16))
        lab = toy_labels(i)
        lab[0, 0, 0] = 14 if i else 0
        write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", lab)
    code, out = run(["data", "check", str(root), "--profile", "strict"], capsys)
    assert code == ExitStatus.DATA_ERROR
    assert "error: " + str(root / "labelsTr" / "case_01.nii.gz") + ": label values 14 are not in profile strict" in out
    code, out = run(["data", "check", str(root)], capsys)  # flare22: background, with a warning
    assert code == ExitStatus.OK and "0 error(s), 1 warning(s)" in out
