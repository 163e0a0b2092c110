"""Label systems are data: each profile's id table against the table it records as its source, and
a model numbered in one system scored on data numbered in another through --label-map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.errors import ExitStatus, SpecError
from harness.profiles import BUILTIN_PROFILES, load_profile
from harness.profiles.mapping import LabelMap, parse_label_map
from tests.conftest import toy_labels, write_nifti

TABLES = Path(__file__).resolve().parent / "fixtures" / "label_systems"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@pytest.mark.parametrize("name", sorted(p.stem for p in TABLES.glob("*.json")))
def test_each_profiles_ids_are_its_source_table(name: str) -> None:
    recorded = json.loads((TABLES / f"{name}.json").read_text())
    table = {value: _norm(label) for label, value in recorded["labels"].items() if value != 0}
    profile = load_profile(name)
    assert {o.label: _norm(o.source_name or o.name) for o in profile.organs} == table
    assert profile.label_source  # where the table comes from is recorded in the profile itself


def test_every_label_system_profile_has_a_recorded_table() -> None:
    systems = {n for n in BUILTIN_PROFILES if n not in ("strict", "atlas8")}  # rules / subsets of flare22's system
    assert systems == {p.stem for p in TABLES.glob("*.json")}


def test_a_map_by_organ_name_reports_what_only_one_side_has() -> None:
    amos_to_flare = parse_label_map("amos22:flare22")
    lut = amos_to_flare.table()
    assert (lut[1], lut[6], lut[8], lut[9], lut[14], lut[15]) == (3, 1, 5, 6, 0, 0)
    assert amos_to_flare.only_source == ("bladder", "prostate_uterus") and amos_to_flare.only_target == ()
    word_to_flare = LabelMap(load_profile("word"), load_profile("flare22"))
    assert set(word_to_flare.only_target) == {"right_adrenal_gland", "left_adrenal_gland", "inferior_vena_cava", "aorta"}
    assert "adrenal_glands" in word_to_flare.only_source  # one WORD label for both glands: not guessed
    scored = word_to_flare.scored_profile()
    assert "aorta" not in {o.name for o in scored.organs} and 5 in scored.valid_labels
    with pytest.raises(SpecError, match="write it as FROM:TO"):
        parse_label_map("amos22")


AMOS = {"liver": 6, "right_kidney": 2, "spleen": 1, "aorta": 8}
FLARE = {"liver": 1, "right_kidney": 2, "spleen": 3, "aorta": 5}


def test_an_amos_numbered_model_on_flare_data_scores_as_its_masks_renumbered_by_hand(toy_dataset, tmp_path: Path,
                                                                                    capsys) -> None:
    root, _ = toy_dataset
    amos, by_hand = tmp_path / "amos", tmp_path / "by_hand"
    for i in range(5):
        guess = np.roll(toy_labels(i), 1, axis=i % 3)
        renumbered = np.zeros_like(guess)
        in_amos = np.zeros_like(guess)
        for organ, value in FLARE.items():
            in_amos[guess == value] = AMOS[organ]
            renumbered[guess == value] = value
        in_amos[0:2, 0:2, 0:2] = 14  # a bladder: AMOS has it, FLARE does not
        write_nifti(amos / f"case_{i:02d}.nii.gz", in_amos)
        write_nifti(by_hand / f"case_{i:02d}.nii.gz", renumbered)
    with pytest.raises(SystemExit) as mapped:
        main(["score", "--pred", str(amos), "--labels", str(root), "--label-map", "amos22:flare22",
              "--out", str(tmp_path / "mapped.csv")])
    err = capsys.readouterr().err
    assert mapped.value.code == ExitStatus.OK, err
    assert "only in amos22 (predictions ignored): bladder, prostate_uterus" in err
    with pytest.raises(SystemExit) as plain:
        main(["score", "--pred", str(by_hand), "--labels", str(root), "--out", str(tmp_path / "hand.csv")])
    assert plain.value.code == ExitStatus.OK
    got, want = pd.read_csv(tmp_path / "mapped.csv"), pd.read_csv(tmp_path / "hand.csv")
    pd.testing.assert_frame_equal(got, want)
    # Without the map, the same AMOS-numbered files are judged in FLARE's system: label 14 is not FLARE's.
    # flare22 counts it as background (as FLARE's script) and says so; strict refuses it.
    capsys.readouterr()
    with pytest.raises(SystemExit) as unmapped:
        main(["score", "--pred", str(amos), "--labels", str(root), "--out", str(tmp_path / "raw.csv")])
    assert unmapped.value.code == ExitStatus.OK
    assert "case_00.nii.gz: label values 14 are not in profile flare22; counted as background" in capsys.readouterr().err
    assert not pd.read_csv(tmp_path / "raw.csv").equals(want)  # read in the wrong numbering
    with pytest.raises(SystemExit) as refused:
        main(["score", "--pred", str(amos), "--labels", str(root), "--profile", "strict", "--out", str(tmp_path / "s.csv")])
    assert refused.value.code == ExitStatus.DATA_ERROR  # nothing scored


@pytest.mark.parametrize("name", sorted(p.stem for p in TABLES.glob("*.json")))
def test_a_profiles_source_names_are_spelled_as_its_source(name: str) -> None:
    """`source_name` records the source's own spelling (WORD's `Head_of_femur_L`), not a normalised one."""
    recorded = {value: label for label, value in json.loads((TABLES / f"{name}.json").read_text())["labels"].items()}
    named = {o.label: o.source_name for o in load_profile(name).organs if o.source_name}
    assert named == {label: recorded[label] for label in named}
