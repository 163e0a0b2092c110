"""Loading and checking label maps: every bad input gives its status and a one-line message."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.data.dataset import discover, read_label_names
from harness.data.nifti import check_labels, check_same_grid, outside_as_background, read_grid, read_label
from harness.errors import CaseError, DataError
from harness.models import OutsideLabels
from harness.profiles import load_profile
from tests.conftest import toy_labels, write_nifti

FLARE = load_profile("flare22")


def test_integer_dtype_is_kept(tmp_path: Path) -> None:
    for dtype in (np.uint8, np.int16, np.uint16):
        data, grid = read_label(write_nifti(tmp_path / f"{np.dtype(dtype).name}.nii.gz", toy_labels(0).astype(dtype)))
        assert data.dtype == dtype
        assert grid.spacing_mm == pytest.approx((0.8, 0.8, 2.5))


def test_whole_number_floats_are_accepted_other_floats_are_not(tmp_path: Path) -> None:
    data, _ = read_label(write_nifti(tmp_path / "f.nii.gz", toy_labels(0).astype(np.float32)))
    assert data.dtype == np.uint8 and np.array_equal(data, toy_labels(0))
    bad = write_nifti(tmp_path / "g.nii.gz", toy_labels(0).astype(np.float32) + 0.5)
    with pytest.raises(CaseError, match=r"g\.nii\.gz: label map holds non-integer values .*write integer labels") as err:
        read_label(bad)
    assert err.value.status == "invalid_labels"


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "c.nii.gz"
    path.write_bytes(b"this is not a nifti file")
    with pytest.raises(CaseError, match=r"c\.nii\.gz: not a readable NIfTI file .*re-export it") as err:
        read_label(path)
    assert err.value.status == "unreadable"


def test_truncated_file(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "t.nii.gz", toy_labels(1))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CaseError, match=r"t\.nii\.gz: .*(corrupt or truncated|not a readable NIfTI)") as err:
        read_label(path)
    assert err.value.status == "unreadable"


def test_truncated_voxel_data_with_intact_header(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "h.nii.gz", toy_labels(1))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: 352 + 100]))  # header + a few voxels
    with pytest.raises(CaseError, match=r"h\.nii\.gz: voxel data cannot be read .*corrupt or truncated, re-export it") as err:
        read_label(path)
    assert "\n" not in str(err.value)


def test_labels_outside_profile(tmp_path: Path) -> None:
    strict = load_profile("strict")  # outside_labels = "refuse"
    lab = toy_labels(2)
    lab[0, 0, 0] = 14
    lab[1, 0, 0] = 200
    with pytest.raises(CaseError, match=r"x\.nii\.gz: label values 14, 200 are not in profile strict .*choose another --profile") as err:
        check_labels(Path("x.nii.gz"), lab, strict)
    assert err.value.status == "invalid_labels"
    assert check_labels(Path("x.nii.gz"), toy_labels(2), strict) == []  # valid labels pass


def test_labels_outside_a_background_profile_are_returned_and_cleared() -> None:
    """flare22 counts values it does not know as background (its official script compares its own labels only)."""
    lab = toy_labels(2)
    lab[0, 0, 0], lab[1, 0, 0] = 14, 200
    extra = check_labels(Path("x.nii.gz"), lab, FLARE)
    assert extra == [14, 200]
    cleared, warning = outside_as_background(Path("x.nii.gz"), lab, extra, FLARE)
    assert cleared.dtype == lab.dtype and cleared[0, 0, 0] == cleared[1, 0, 0] == 0
    assert np.array_equal(cleared[2:], lab[2:]) and lab[0, 0, 0] == 14  # the rest unchanged, the input untouched
    assert warning == "x.nii.gz: label values 14, 200 are not in profile flare22; counted as background " \
                      "(the profile's outside_labels rule)"
    assert outside_as_background(Path("x.nii.gz"), toy_labels(2), [], FLARE)[1] == ""


def test_atlas8_accepts_unscored_flare_labels_but_not_others() -> None:
    atlas = load_profile("atlas8")
    lab = toy_labels(3)
    lab[0, 0, 0] = 7  # right adrenal: a FLARE label that AbdomenAtlas does not score
    check_labels(Path("a.nii.gz"), lab, atlas)
    lab[0, 0, 0] = 14
    with pytest.raises(CaseError, match="not in profile atlas8"):
        check_labels(Path("a.nii.gz"), lab, atlas)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", r"p\.nii\.gz: shape \(24, 22, 11\) differs from the ground truth g\.nii\.gz \(24, 22, 12\); resample"),
        ("spacing", r"p\.nii\.gz: spacing \(0\.8, 0\.8, 3\) mm differs from the ground truth g\.nii\.gz \(0\.8, 0\.8, 2\.5\) mm; copy"),
        ("affine", r"p\.nii\.gz: affine differs from the ground truth g\.nii\.gz by up to 5 .*copy the ground truth's header"),
    ],
)
def test_grid_mismatch(tmp_path: Path, change: str, message: str) -> None:
    lab = toy_labels(4)
    gt = write_nifti(tmp_path / "g.nii.gz", lab)
    if change == "shape":
        pred = write_nifti(tmp_path / "p.nii.gz", lab[:, :, :-1])
    elif change == "spacing":
        pred = write_nifti(tmp_path / "p.nii.gz", lab, (0.8, 0.8, 3.0))
    else:
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        affine[0, 3] = 5.0
        pred = write_nifti(tmp_path / "p.nii.gz", lab, affine=affine)
    with pytest.raises(CaseError, match=message) as err:
        check_same_grid(pred, read_grid(pred), gt, read_grid(gt))
    assert err.value.status == "grid_mismatch"


def test_grid_within_tolerance_passes(tmp_path: Path) -> None:
    lab = toy_labels(4)
    gt = write_nifti(tmp_path / "g.nii.gz", lab)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[0, 3] = 1e-5  # header rounding
    pred = write_nifti(tmp_path / "p.nii.gz", lab, affine=affine)
    check_same_grid(pred, read_grid(pred), gt, read_grid(gt))


def test_discover_flare_layout_and_dataset_json(toy_dataset) -> None:
    root, _ = toy_dataset
    (root / "dataset.json").write_text('{"labels": {"background": 0, "liver": 1, "spleen": 3}}')
    dataset, problems = discover(root)
    assert [c.case_id for c in dataset.cases] == [f"case_{i:02d}" for i in range(5)]
    assert dataset.cases[0].image == root / "imagesTr" / "case_00_0000.nii.gz"
    assert dataset.label_names == {0: "background", 1: "liver", 3: "spleen"}
    assert problems == []


def test_dataset_json_v1_and_broken(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text('{"labels": {"0": "background", "1": "liver"}}')
    assert read_label_names(tmp_path) == {0: "background", 1: "liver"}
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: cannot read the label map .*or remove the file"):
        read_label_names(tmp_path)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such folder; pass the folder"):
        discover(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no cases found; expected imagesTr/<case>_0000\.nii\.gz"):
        discover(tmp_path / "empty")


@pytest.mark.parametrize("bad", ["a;rm -rf x", "$(boom)", "case name", "-leading", "a|b", "a`b"])
def test_case_names_with_shell_metacharacters_are_skipped_with_a_reason(tmp_path: Path, bad: str) -> None:
    write_nifti(tmp_path / "labelsTr" / "good.nii.gz", toy_labels(0))
    write_nifti(tmp_path / "labelsTr" / f"{bad}.nii.gz", toy_labels(0))
    dataset, problems = discover(tmp_path)
    assert [c.case_id for c in dataset.cases] == ["good"]
    assert len(problems) == 1
    assert "has characters other than letters, digits" in problems[0].message and "rename the file" in problems[0].message


def test_image_without_channel_suffix_is_reported(tmp_path: Path) -> None:
    write_nifti(tmp_path / "imagesTr" / "c1.nii.gz", toy_labels(0))
    write_nifti(tmp_path / "labelsTr" / "c1.nii.gz", toy_labels(0))
    _, problems = discover(tmp_path)
    assert problems[0].message.endswith("rename it to <case>_0000.nii.gz")


def test_a_gap_below_the_largest_label_is_still_checked() -> None:
    """The quick path (largest value, every value up to it valid) must not pass a value in a gap of
    the profile's labels: a profile of labels 1, 2 and 5 meets a 3."""
    gapped = replace(FLARE, organs=tuple(o for o in FLARE.organs if o.label in (1, 2, 5)), outside_labels=OutsideLabels.REFUSE)
    assert gapped.valid_labels >= {1, 2, 5} and 3 not in gapped.valid_labels
    lab = np.zeros((4, 4, 4), dtype=np.uint8, order="F")
    lab[0, 0, 0], lab[1, 0, 0] = 5, 2
    check_labels(Path("g.nii.gz"), lab, gapped)
    lab[2, 0, 0] = 3
    with pytest.raises(CaseError, match=r"g\.nii\.gz: label values 3 are not in profile"):
        check_labels(Path("g.nii.gz"), lab, gapped)
    signed = np.zeros((4, 4, 4), dtype=np.int16)
    signed[0, 0, 0] = -1  # a signed map takes the full path too
    with pytest.raises(CaseError, match=r"label values -1 are not in profile strict"):
        check_labels(Path("g.nii.gz"), signed, load_profile("strict"))
    assert check_labels(Path("g.nii.gz"), signed, FLARE) == [-1]
