"""`harness data check` and `harness score --profile brats2023` on a small synthetic BraTS-like set:
region rows equal the oracle on the union masks built by hand."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ExitStatus
from harness.metrics.case import score_case
from harness.profiles import load_profile
from tests.cli.test_score import run
from tests.conftest import write_nifti

SPACING = (1.0, 1.0, 1.0)


def glioma(seed: int, shape=(26, 24, 20)) -> np.ndarray:
    """Edema (2) around a tumour core: necrosis (1) inside an enhancing rim (3); two lesions."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    for cx, cy, cz in ((8, 8, 9), (18, 16, 11)):
        cx, cy, cz = cx + int(rng.integers(-1, 2)), cy + int(rng.integers(-1, 2)), cz + int(rng.integers(-1, 2))
        x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        size = rng.uniform(0.8, 1.2)
        lab[(r <= 5.5 * size) & (lab == 0)] = 2
        lab[r <= 3.5 * size] = 3
        lab[r <= 2.0 * size] = 1
    return lab


@pytest.fixture
def brats_set(tmp_path: Path) -> tuple[Path, Path]:
    root, pred = tmp_path / "brats", tmp_path / "pred"
    for i in range(3):
        lab = glioma(i)
        write_nifti(root / "labelsTr" / f"BraTS-GLI-{i:05d}-000.nii.gz", lab, SPACING)
        write_nifti(root / "imagesTr" / f"BraTS-GLI-{i:05d}-000_0000.nii.gz", (lab * 100).astype(np.int16), SPACING)
        guess = np.roll(lab, 1, axis=i % 3)
        if i == 1:
            guess[guess == 3] = 1  # no enhancing tumour predicted: ET empty in the prediction only
        write_nifti(pred / f"BraTS-GLI-{i:05d}-000.nii.gz", guess, SPACING)
    return root, pred


def test_data_check_accepts_a_brats_set(brats_set, tmp_path: Path, capsys) -> None:
    root, _ = brats_set
    code, out, err = run(["data", "check", str(root), "--profile", "brats2023", "--csv", str(tmp_path / "inv.csv")],
                         capsys)
    assert code == ExitStatus.OK, out + err
    assert "profile brats2023" in out and "the set can be evaluated" in out
    inventory = pd.read_csv(tmp_path / "inv.csv")
    assert list(inventory["organs"]) == ["netc snfh et"] * 3  # the label system's names, per case


def test_data_check_warns_of_a_value_brats_counts_as_background(brats_set, capsys) -> None:
    root, _ = brats_set
    label = root / "labelsTr" / "BraTS-GLI-00000-000.nii.gz"
    lab = glioma(0)
    lab[0:2, 0:2, 0:2] = 4  # BraTS 2021's enhancing-tumour value
    write_nifti(label, lab, SPACING)
    code, out, _ = run(["data", "check", str(root), "--profile", "brats2023"], capsys)
    assert code == ExitStatus.OK
    assert "warning:" in out and "4" in out and "background" in out


def test_score_brats2023_writes_region_rows_equal_to_the_oracle(brats_set, tmp_path: Path, capsys) -> None:
    for alias, value in (("Inf", np.inf), ("NaN", np.nan)):  # the oracle predates NumPy 2
        if not hasattr(np, alias):
            setattr(np, alias, value)
    sd = importlib.import_module("surface_distance")
    root, pred = brats_set
    out_csv = tmp_path / "scores.csv"
    code, out, err = run(["score", "--pred", str(pred), "--labels", str(root), "--profile", "brats2023",
                          "--out", str(out_csv), "--jobs", "1"], capsys)
    assert code == ExitStatus.OK, err
    table = pd.read_csv(out_csv)
    assert len(table) == 3 * 3 and set(table.status) == {"ok"}
    assert list(table.organ[:3]) == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    assert list(table.label[:3]) == [0, 0, 3]  # 0: a union of several labels
    regions = {"whole_tumor": (1, 2, 3), "tumor_core": (1, 3), "enhancing_tumor": (3,)}
    for i in range(3):
        case = f"BraTS-GLI-{i:05d}-000"
        gt = glioma(i)
        guess = np.roll(gt, 1, axis=i % 3)
        if i == 1:
            guess[guess == 3] = 1
        rows = table[table.case == case].set_index("organ")
        for name, labels in regions.items():
            g = np.zeros(gt.shape, bool)
            p = np.zeros(gt.shape, bool)
            for value in labels:
                g |= gt == value
                p |= guess == value
            row = rows.loc[name]
            if not p.any():
                assert (row.dsc, row.nsd) == (0.0, 0.0) and math.isinf(row.hd95_mm)
                continue
            dists = sd.compute_surface_distances(g, p, SPACING)
            assert row.dsc == pytest.approx(sd.compute_dice_coefficient(g, p), abs=1e-12)
            assert row.nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(dists, 1.0), abs=1e-12)
            assert row.hd95_mm == pytest.approx(sd.compute_robust_hausdorff(dists, 95), abs=1e-12)
    assert "whole_tumor" in out and "3 of 3 cases scored, 0 failed" in out
    # brats2023's lesion-wise metrics: extra columns, the values of score_case (oracle-tested there)
    assert list(table.columns)[-5:] == ["lesion_dice", "lesion_hd95_mm", "lesion_tp", "lesion_fn", "lesion_fp"]
    direct = score_case(glioma(2), np.roll(glioma(2), 1, axis=2), SPACING, load_profile("brats2023"))
    rows = table[table.case == "BraTS-GLI-00002-000"].set_index("organ")
    for region in direct:
        for name, value in region.extra:
            assert rows.loc[region.organ, name] == value
    # the two tumours, 2 voxels apart, are one lesion after BraTS' 3-voxel dilation; found in every region
    assert (rows["lesion_tp"] == 1).all() and (rows["lesion_fp"] == 0).all() and (rows["lesion_dice"] < 1).all()


def test_a_failed_case_keeps_nan_lesion_columns(brats_set, tmp_path: Path, capsys) -> None:
    root, pred = brats_set
    (pred / "BraTS-GLI-00001-000.nii.gz").unlink()
    out_csv = tmp_path / "scores.csv"
    code, _, _ = run(["score", "--pred", str(pred), "--labels", str(root), "--profile", "brats2023",
                      "--out", str(out_csv), "--jobs", "1"], capsys)
    assert code == ExitStatus.PARTIAL
    table = pd.read_csv(out_csv)
    missing = table[table.case == "BraTS-GLI-00001-000"]
    assert set(missing.status) == {"missing_prediction"} and missing["lesion_dice"].isna().all()
    assert table[table.case != "BraTS-GLI-00001-000"]["lesion_dice"].notna().all()


def test_data_check_warns_of_a_region_on_one_slice_under_a_z_range_cut(tmp_path: Path, capsys) -> None:
    profile = tmp_path / "cut.toml"
    profile.write_text('name = "cut"\norgans = [{ label = 1, name = "a" }, { label = 2, name = "b" }]\n'
                       'regions = [{ name = "ab", labels = [1, 2], tolerance_mm = 2, zrange_only = true },\n'
                       '           { name = "b", labels = [2], tolerance_mm = 2 }]\n')
    lab = np.zeros((8, 8, 6), np.uint8)
    lab[1:3, 1:3, 2] = 1
    lab[4:6, 1:3, 2] = 2  # the union of a and b lies on one slice
    write_nifti(tmp_path / "set" / "labelsTr" / "c0.nii.gz", lab, SPACING)
    write_nifti(tmp_path / "set" / "imagesTr" / "c0_0000.nii.gz", lab.astype(np.int16), SPACING)
    code, out, _ = run(["data", "check", str(tmp_path / "set"), "--profile", str(profile)], capsys)
    assert code == ExitStatus.OK
    assert "c0.nii.gz: ab is labelled on one slice only" in out
    assert "b is labelled" not in out.replace("ab is labelled", "")  # "b" has no z-range cut
