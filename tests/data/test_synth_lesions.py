"""`harness data synth --profile`: phantoms labelled in another label system, with lesion labels where
the profile has a `lesion` organ (flare23: 14, autopet: 1), for the lesion-wise metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from harness.cli import main
from harness.data.synth import draw_pathology, generate_case, organ_labels, write_dataset
from harness.errors import SpecError
from harness.profiles import load_profile


def test_lesions_get_the_profiles_lesion_label_and_the_rest_its_organs() -> None:
    for index in range(3):
        f23 = generate_case(seed=7, index=index, pathology=1.0, profile="flare23")
        pet = generate_case(seed=7, index=index, pathology=1.0, profile="autopet")
        assert f23.pathology is not None and f23.pathology["kind"] == "liver_lesion"  # every finding a lesion
        assert f23.pathology == pet.pathology
        np.testing.assert_array_equal(f23.label == 14, pet.label == 1)  # the same lesions in both systems
        assert set(np.unique(pet.label)) == {0, 1} and set(np.unique(f23.label)) == set(range(15))
        assert np.array_equal(f23.image_hu, pet.image_hu)  # the same patient, only the labels differ
        lesions = f23.label == 14
        healthy = generate_case(seed=7, index=index)  # the same patient without its finding, FLARE22's labels
        assert (healthy.label[lesions] == 1).all()  # every lesion voxel was liver
        np.testing.assert_array_equal(f23.label[~lesions], healthy.label[~lesions])  # the rest as FLARE22 labels it
        assert ndimage.label(lesions, structure=np.ones((3, 3, 3)))[1] >= 1 and lesions.sum() > 50
    assert organ_labels("autopet") == {"lesion": 1}
    assert organ_labels("flare23") == {**organ_labels("flare22"), "lesion": 14}


def test_without_a_lesion_label_and_by_default_nothing_changes() -> None:
    a = generate_case(seed=7, index=2, pathology=1.0)
    b = generate_case(seed=7, index=2, pathology=1.0, profile="flare22")
    assert np.array_equal(a.label, b.label) and a.pathology == b.pathology
    assert draw_pathology(seed=7, index=2, share=1.0) == draw_pathology(seed=7, index=2, share=1.0,
                                                                         kinds=("liver_lesion", "renal_cyst",
                                                                                "atrophic_kidney", "displaced_kidney",
                                                                                "splenomegaly"))
    amos = generate_case(seed=7, index=2, profile="amos22")  # another system by organ name, no lesion label
    assert amos.pathology is None and np.array_equal(amos.label == 6, a.label == 1)  # AMOS's liver is 6


def test_the_data_set_of_a_lesion_profile_checks_and_names_its_labels(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pet"
    with pytest.raises(SystemExit) as done:
        main(["data", "synth", "--out", str(out), "--cases", "2", "--seed", "1", "--pathology", "1",
              "--profile", "autopet"])
    assert done.value.code in (0, None)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lesion": 1} and meta["phantom"]["profile"] == "autopet"
    with pytest.raises(SystemExit) as done:
        main(["data", "check", str(out), "--profile", "autopet"])
    assert done.value.code in (0, None), capsys.readouterr().out
    with pytest.raises(SpecError, match=r"--profile 'brats2023': no organ of the phantoms .* and no 'lesion' organ; "
                                        r"use flare22, flare23, autopet"):
        write_dataset(tmp_path / "brain", cases=1, seed=0, profile="brats2023")
    assert load_profile("brats2023").extra_metrics  # BraTS has lesion metrics, but no abdominal phantom for them
