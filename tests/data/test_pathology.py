"""Phantoms with a finding the example segmenters never saw: each kind does what it says, the rest
of the patient stays as it was, and the data set records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.data.synth import PATHOLOGIES, PhantomCase, draw_pathology, generate_case, organ_labels, write_dataset
from harness.errors import SpecError

SEED = 0
# (seed 0) the first case index of each kind when every case has a finding
INDEX = {"atrophic_kidney": 0, "splenomegaly": 1, "liver_lesion": 2, "displaced_kidney": 6, "renal_cyst": 8}
LABELS = organ_labels()


def _pair(kind: str) -> tuple[PhantomCase, PhantomCase]:
    index = INDEX[kind]
    return generate_case(seed=SEED, index=index), generate_case(seed=SEED, index=index, pathology=1.0)


def _voxels(case: PhantomCase, organ: str) -> int:
    return int(np.count_nonzero(case.label == LABELS[organ]))


def _centre_z_mm(case: PhantomCase, organ: str) -> float:
    return float(np.argwhere(case.label == LABELS[organ])[:, 2].mean() * case.spacing_mm[2])


def test_each_kind_is_drawn_and_the_draw_is_reproducible() -> None:
    kinds = {kind: draw_pathology(seed=SEED, index=i, share=1.0) for kind, i in INDEX.items()}
    assert sorted(kinds) == sorted(PATHOLOGIES)
    assert all(f is not None and f.kind == kind for kind, f in kinds.items())
    assert draw_pathology(seed=SEED, index=8, share=1.0) == draw_pathology(seed=SEED, index=8, share=1.0)
    assert draw_pathology(seed=SEED, index=8, share=0.0) is None
    shares = [draw_pathology(seed=3, index=i, share=0.5) is not None for i in range(200)]
    assert 80 <= sum(shares) <= 120


def test_a_case_without_a_finding_is_the_healthy_case_unchanged() -> None:
    index = next(i for i in range(20) if draw_pathology(seed=SEED, index=i, share=0.5) is None)
    healthy, same = generate_case(seed=SEED, index=index), generate_case(seed=SEED, index=index, pathology=0.5)
    assert same.pathology is None
    assert np.array_equal(healthy.label, same.label) and np.array_equal(healthy.image_hu, same.image_hu)


def test_atrophic_kidney_is_smaller_by_its_volume_factor() -> None:
    healthy, sick = _pair("atrophic_kidney")
    assert sick.pathology is not None
    organ = f"{sick.pathology['side']}_kidney"
    ratio = _voxels(sick, organ) / _voxels(healthy, organ)
    assert ratio == pytest.approx(sick.pathology["volume_factor"], abs=0.08)
    assert healthy.phase == sick.phase and healthy.spacing_mm == sick.spacing_mm


def test_displaced_kidney_lies_lower_by_its_shift() -> None:
    healthy, sick = _pair("displaced_kidney")
    assert sick.pathology is not None
    organ = f"{sick.pathology['side']}_kidney"
    drop = _centre_z_mm(healthy, organ) - _centre_z_mm(sick, organ)
    assert drop == pytest.approx(sick.pathology["shift_mm"], abs=8)  # the patient's z scale is 0.95-1.05
    assert _voxels(sick, organ) == pytest.approx(_voxels(healthy, organ), rel=0.15)


def test_enlarged_spleen() -> None:
    healthy, sick = _pair("splenomegaly")
    assert sick.pathology is not None
    assert _voxels(sick, "spleen") / _voxels(healthy, "spleen") > 0.6 * sick.pathology["volume_factor"]


def test_liver_lesions_are_dark_and_labelled_liver() -> None:
    healthy, sick = _pair("liver_lesion")
    assert sick.pathology is not None
    darker = (healthy.image_hu.astype(int) - sick.image_hu) > 40
    assert darker.sum() > 100  # at 2.6 x 2.6 x 6 mm, a 14 mm lesion is about 200 voxels
    assert np.all(sick.label[darker] == LABELS["liver"])
    assert np.array_equal(healthy.label, sick.label)


def test_renal_cyst_is_water_and_part_of_its_kidney() -> None:
    healthy, sick = _pair("renal_cyst")
    assert sick.pathology is not None
    organ = f"{sick.pathology['side']}_kidney"
    assert _voxels(sick, organ) > _voxels(healthy, organ)  # it bulges out of the kidney
    grown = (sick.label == LABELS[organ]) & (healthy.label != LABELS[organ])
    assert abs(float(np.median(sick.image_hu[grown]))) < 40  # water, blurred with its surroundings


def test_dataset_json_and_cli_record_the_findings(tmp_path: Path) -> None:
    write_dataset(tmp_path / "api", cases=3, seed=SEED, pathology=1.0)
    meta = json.loads((tmp_path / "api" / "dataset.json").read_text())["phantom"]
    assert meta["pathology"] == 1.0
    assert [c["pathology"]["kind"] for c in meta["cases"].values()] == ["atrophic_kidney", "splenomegaly", "liver_lesion"]
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "cli"), "--cases", "3", "--pathology", "1"])
    assert result.exit_code == 0, result.output
    cli_meta = json.loads((tmp_path / "cli" / "dataset.json").read_text())["phantom"]
    assert cli_meta["cases"] == meta["cases"]
    bad = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path / "bad"), "--pathology", "1.5"])
    assert bad.exit_code != 0 and "--pathology" in bad.output
    with pytest.raises(SpecError, match="--pathology"):
        generate_case(seed=SEED, index=0, pathology=-0.1)


def test_the_default_data_gives_half_its_cases_a_finding(tmp_path: Path) -> None:
    from harness.pipeline import DEFAULT_PATHOLOGY, ensure_default_data

    messages: list[str] = []
    folder = ensure_default_data(tmp_path, cases=3, say=messages.append)
    assert DEFAULT_PATHOLOGY == 0.5 and folder.name.endswith("-pathology0.5")
    meta = json.loads((folder / "dataset.json").read_text())["phantom"]
    expected = [draw_pathology(seed=0, index=i, share=0.5) for i in range(3)]
    assert [c["pathology"] for c in meta["cases"].values()] == [f.record() if f else None for f in expected]
    assert "a finding in 50% of them" in messages[0]
    assert ensure_default_data(tmp_path, cases=3, say=messages.append) == folder and len(messages) == 1  # cached
