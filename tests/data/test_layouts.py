"""Layouts found by themselves and named: FLARE / nnU-Net v2, MSD / nnU-Net v1 (dataset.json lists
the files), a flat folder; the same voxels score the same in each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.data.dataset import LAYOUT_FLARE, LAYOUT_MSD, discover
from harness.errors import ExitStatus
from tests.conftest import toy_labels, write_nifti


def _flare(root: Path) -> Path:
    for i in range(3):
        write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", toy_labels(i))
        write_nifti(root / "imagesTr" / f"case_{i:02d}_0000.nii.gz", (toy_labels(i) * 40).astype(np.int16))
    return root


def _msd(root: Path, *, v1_names: bool) -> Path:
    """MSD: images without a channel suffix, listed in dataset.json; nnU-Net v1: listed without it,
    stored with it."""
    training = []
    for i in range(3):
        write_nifti(root / "labelsTr" / f"case_{i:02d}.nii.gz", toy_labels(i))
        stored = f"case_{i:02d}_0000.nii.gz" if v1_names else f"case_{i:02d}.nii.gz"
        write_nifti(root / "imagesTr" / stored, (toy_labels(i) * 40).astype(np.int16))
        training.append({"image": f"./imagesTr/case_{i:02d}.nii.gz", "label": f"./labelsTr/case_{i:02d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "right_kidney"},
                                                   "training": training, "test": []}))
    return root


@pytest.mark.parametrize("layout", ["msd", "nnunet-v1"])
def test_msd_and_nnunet_v1_sets_are_found_and_named(tmp_path: Path, layout: str) -> None:
    dataset, problems = discover(_msd(tmp_path / "data", v1_names=layout == "nnunet-v1"))
    assert dataset.layout == LAYOUT_MSD and not problems
    assert [(c.case_id, c.image is not None, c.label is not None) for c in dataset.cases] == [
        (f"case_{i:02d}", True, True) for i in range(3)]


def test_a_listed_file_that_is_missing_is_named(tmp_path: Path) -> None:
    root = _msd(tmp_path / "data", v1_names=False)
    (root / "labelsTr" / "case_01.nii.gz").unlink()
    dataset, problems = discover(root)
    assert any("case_01.nii.gz: listed in dataset.json as a training label but missing" in p.message for p in problems)
    assert dataset.case("case_01").label is None


def test_the_same_voxels_score_the_same_in_every_layout(tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred"
    for i in range(3):
        write_nifti(pred / f"case_{i:02d}.nii.gz", np.roll(toy_labels(i), 1, axis=i % 3))
    roots = {"flare": _flare(tmp_path / "flare"), "msd": _msd(tmp_path / "msd", v1_names=False),
             "v1": _msd(tmp_path / "v1", v1_names=True)}
    flat = tmp_path / "flat"
    for i in range(3):
        write_nifti(flat / f"case_{i:02d}.nii.gz", toy_labels(i))
    roots["flat"] = flat
    tables = {}
    for name, root in roots.items():
        with pytest.raises(SystemExit) as code:
            main(["score", "--pred", str(pred), "--labels", str(root), "--out", str(tmp_path / f"{name}.csv")])
        assert code.value.code == ExitStatus.OK, capsys.readouterr().err
        tables[name] = pd.read_csv(tmp_path / f"{name}.csv")
    for name in ("msd", "v1", "flat"):
        pd.testing.assert_frame_equal(tables["flare"], tables[name])
    assert discover(roots["flare"])[0].layout == LAYOUT_FLARE
