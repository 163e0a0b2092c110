"""AbdomenAtlas and TotalSegmentator layouts: one mask per organ, assembled under the profile; an
organ without a mask is not annotated (never scored as empty); overlaps are reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.data.dataset import LAYOUT_MASKS, LAYOUT_TOTALSEG, discover
from harness.errors import ExitStatus
from tests.conftest import toy_labels, write_nifti

# The toy organs as the two data sets name their mask files.
ATLAS = {1: "liver", 2: "kidney_right", 3: "spleen", 5: "aorta"}
TOTALSEG = {1: "liver", 2: "kidney_right", 3: "spleen", 5: "aorta"}


def _masked(root: Path, names: dict[int, str], *, prefix: str, extra: str) -> Path:
    for i in range(3):
        case = root / f"{prefix}{i:04d}"
        label = toy_labels(i)
        write_nifti(case / "ct.nii.gz", (label * 40).astype(np.int16))
        for value, name in names.items():
            write_nifti(case / "segmentations" / f"{name}.nii.gz", (label == value).astype(np.uint8))
        write_nifti(case / "segmentations" / f"{extra}.nii.gz", np.zeros(label.shape, np.uint8))  # not in flare22
    return root


def _flare(root: Path) -> Path:
    for i in range(3):
        write_nifti(root / "labelsTr" / f"c{i:04d}.nii.gz", toy_labels(i))
    return root


def _score(pred: Path, labels: Path, out: Path, capsys) -> pd.DataFrame:
    with pytest.raises(SystemExit) as code:
        main(["score", "--pred", str(pred), "--labels", str(labels), "--out", str(out)])
    assert code.value.code == ExitStatus.OK, capsys.readouterr().err
    return pd.read_csv(out)


def test_both_layouts_are_found_and_named(tmp_path: Path) -> None:
    atlas = _masked(tmp_path / "atlas", ATLAS, prefix="BDMAP_", extra="celiac_trunk")
    totalseg = _masked(tmp_path / "totalseg", TOTALSEG, prefix="s", extra="urinary_bladder")
    (totalseg / "meta.csv").write_text("image_id;split\ns0000;train\ns0001;train\ns0002;test\n")
    found_atlas, _ = discover(atlas)
    found_total, _ = discover(totalseg)
    assert found_atlas.layout == LAYOUT_MASKS and [c.case_id for c in found_atlas.cases][0] == "BDMAP_0000"
    assert found_total.layout == LAYOUT_TOTALSEG and found_total.cases[0].label.name == "segmentations"


@pytest.mark.parametrize("names, prefix", [(ATLAS, "BDMAP_"), (TOTALSEG, "s")])
def test_masks_score_as_the_label_map_they_come_from_on_the_organs_they_annotate(tmp_path: Path, capsys, names,
                                                                                 prefix: str) -> None:
    masked = _masked(tmp_path / "masked", names, prefix=prefix, extra="colon")
    flare = tmp_path / "flare"
    pred_masked, pred_flare = tmp_path / "pm", tmp_path / "pf"
    for i in range(3):
        guess = np.roll(toy_labels(i), 1, axis=i % 3)
        guess[0:2, 0:2, 0:2] = 4  # pancreas, which these masks do not annotate: not counted against it
        write_nifti(pred_masked / f"{prefix}{i:04d}.nii.gz", guess)
        write_nifti(pred_flare / f"c{i:04d}.nii.gz", guess)
        write_nifti(flare / "labelsTr" / f"c{i:04d}.nii.gz", toy_labels(i))
    from_masks = _score(pred_masked, masked, tmp_path / "m.csv", capsys)
    from_map = _score(pred_flare, flare, tmp_path / "f.csv", capsys)
    assert set(from_masks.organ) == {"liver", "right_kidney", "spleen", "aorta"}  # the annotated organs only
    shared = from_map[from_map.organ.isin(from_masks.organ)].reset_index(drop=True)
    assert np.array_equal(from_masks[["dsc", "nsd"]].to_numpy(), shared[["dsc", "nsd"]].to_numpy(), equal_nan=True)
    assert (from_map.set_index(["case", "organ"]).loc[("c0000", "pancreas"), "dsc"]) == 0.0  # a label map would


def test_data_check_reports_overlaps_unannotated_organs_and_the_layout(tmp_path: Path, capsys) -> None:
    root = _masked(tmp_path / "atlas", ATLAS, prefix="BDMAP_", extra="celiac_trunk")
    liver = (toy_labels(0) == 1).astype(np.uint8)
    liver[(toy_labels(0) == 2)] = 1  # the liver mask also covers the right kidney
    write_nifti(root / "BDMAP_0000" / "segmentations" / "liver.nii.gz", liver)
    with pytest.raises(SystemExit) as code:
        main(["data", "check", str(root)])
    out = capsys.readouterr().out
    assert code.value.code == ExitStatus.OK, out  # warnings only: the set can be evaluated
    assert f"layout {LAYOUT_MASKS}" in out
    overlap = int(np.count_nonzero(toy_labels(0) == 2))
    assert f"masks overlap on {overlap} voxels; the organ of lower label value keeps them" in out
    assert "no mask of pancreas" in out and "not annotated here, so not scored" in out
