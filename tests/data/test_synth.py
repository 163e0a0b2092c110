"""The synthetic CT phantom: determinism, layout, anatomy, volumes, HU and the `data synth` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli, main
from harness.data.synth import TARGET_VOLUME_CM3, PhantomCase, generate_case, organ_labels, write_dataset
from harness.errors import DataError, SpecError
from harness.profiles import load_profile

SEED = 11
N_CASES = 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    write_dataset(out, cases=N_CASES, seed=SEED)
    return out


@pytest.fixture(scope="module")
def cases() -> list[PhantomCase]:
    return [generate_case(seed=SEED, index=i) for i in range(N_CASES)]


@pytest.fixture(scope="module")
def full_case() -> PhantomCase:
    return generate_case(seed=SEED, index=0, size="full")


def _volumes_cm3(case: PhantomCase) -> dict[str, float]:
    counts = np.bincount(case.label.ravel(), minlength=14)
    voxel_cm3 = float(np.prod(case.spacing_mm)) / 1000
    return {name: counts[label] * voxel_cm3 for name, label in organ_labels().items()}


def _centroid_mm(case: PhantomCase, label: int) -> np.ndarray:
    ijk = np.argwhere(case.label == label).mean(axis=0)
    return (case.affine @ np.append(ijk, 1.0))[:3]


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    a, b = generate_case(seed=3, index=1), generate_case(seed=3, index=1)
    assert np.array_equal(a.image_hu, b.image_hu) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.affine, b.affine) and a.phase == b.phase
    c = generate_case(seed=4, index=1)
    assert c.label.shape != a.label.shape or not np.array_equal(c.label, a.label)
    d = generate_case(seed=3, index=2)
    assert d.label.shape != a.label.shape or not np.array_equal(d.label, a.label)


def test_files_are_byte_identical_and_independent_of_case_count(dataset: Path, tmp_path: Path) -> None:
    write_dataset(tmp_path, cases=2, seed=SEED)
    for name in ("imagesTr/phantom_0000_0000.nii.gz", "labelsTr/phantom_0001.nii.gz"):
        assert (tmp_path / name).read_bytes() == (dataset / name).read_bytes()
    other = tmp_path / "other"
    write_dataset(other, cases=1, seed=SEED + 1)
    assert (other / "labelsTr/phantom_0000.nii.gz").read_bytes() != (
        dataset / "labelsTr/phantom_0000.nii.gz"
    ).read_bytes()


def test_layout_and_dataset_json(dataset: Path) -> None:
    ids = [f"phantom_{i:04d}" for i in range(N_CASES)]
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in ids]
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in ids]
    meta = json.loads((dataset / "dataset.json").read_text())
    profile = load_profile("flare22")
    assert meta["labels"] == {"background": 0, **{o.name: o.label for o in profile.organs}}
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["numTraining"] == N_CASES and meta["file_ending"] == ".nii.gz"
    assert meta["phantom"]["seed"] == SEED and meta["phantom"]["size"] == "small"
    assert sorted(meta["phantom"]["cases"]) == ids
    for cid, info in meta["phantom"]["cases"].items():
        img = nib.load(dataset / "labelsTr" / f"{cid}.nii.gz")
        assert tuple(float(z) for z in img.header.get_zooms()) == tuple(info["spacing_mm"])
        assert list(img.shape) == info["shape"]


def test_test_split_layout(tmp_path: Path) -> None:
    write_dataset(tmp_path, cases=1, seed=0, split="Ts")
    assert (tmp_path / "imagesTs/phantom_0000_0000.nii.gz").is_file()
    assert (tmp_path / "labelsTs/phantom_0000.nii.gz").is_file()
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["numTest"] == 1 and meta["phantom"]["split"] == "Ts"


def test_files_dtypes_grid_and_ras_orientation(dataset: Path, cases: list[PhantomCase]) -> None:
    for case in cases:
        image = nib.load(dataset / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        label = nib.load(dataset / "labelsTr" / f"{case.case_id}.nii.gz")
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
        assert image.shape == label.shape == case.label.shape
        assert np.array_equal(image.affine, case.affine) and np.array_equal(label.affine, case.affine)
        assert nib.aff2axcodes(label.affine) == ("R", "A", "S")
        assert np.array_equal(np.asarray(label.dataobj), case.label)
        assert np.array_equal(np.asarray(image.dataobj), case.image_hu)
        sx, sy, sz = case.spacing_mm
        assert sx == sy and 2.3 <= sx <= 2.7 and sz in (5.0, 6.0)


def test_small_case_file_size(dataset: Path) -> None:
    for i in range(N_CASES):
        size = (dataset / f"imagesTr/phantom_{i:04d}_0000.nii.gz").stat().st_size
        size += (dataset / f"labelsTr/phantom_{i:04d}.nii.gz").stat().st_size
        assert 1.0e6 <= size <= 3.0e6


def test_every_organ_present_on_two_slices(cases: list[PhantomCase], full_case: PhantomCase) -> None:
    for case in [*cases, full_case]:
        # present[z, v]: label value v occurs on slice z (one histogram per slice, not a pass per organ)
        present = np.stack([np.bincount(case.label[:, :, z].ravel(), minlength=256) for z in range(case.label.shape[2])]) > 0
        for name, label in organ_labels().items():
            assert present[:, label].sum() >= 2, (case.case_id, name)
        assert set(np.flatnonzero(present.any(axis=0)).tolist()) == {0, *organ_labels().values()}
    adrenal_voxels = [int((c.label == organ_labels()["right_adrenal_gland"]).sum()) for c in cases]
    assert min(adrenal_voxels) >= 30


@pytest.mark.parametrize("which", ["small", "full"])
def test_organ_volumes_near_flare22_medians(which: str, cases: list[PhantomCase], full_case: PhantomCase) -> None:
    chosen = cases if which == "small" else [full_case]
    for case in chosen:
        volumes = _volumes_cm3(case)
        for name, target in TARGET_VOLUME_CM3.items():
            assert 0.65 * target <= volumes[name] <= 1.4 * target, (case.case_id, name, volumes[name])
        for name in ("aorta", "inferior_vena_cava"):
            assert 50 <= volumes[name] <= 160, (name, volumes[name])
        assert 6 <= volumes["esophagus"] <= 30


def test_same_patient_at_both_sizes(cases: list[PhantomCase], full_case: PhantomCase) -> None:
    small, full = _volumes_cm3(cases[0]), _volumes_cm3(full_case)
    assert full_case.label.shape[:2] == (512, 512) and full_case.phase == cases[0].phase
    assert 0.7 <= full_case.spacing_mm[0] <= 0.9 and full_case.spacing_mm[2] in (2.5, 3.0)
    for name in ("liver", "spleen", "stomach", "left_kidney", "right_kidney"):
        assert full[name] == pytest.approx(small[name], rel=0.1), name


def test_phases_vary_across_cases(dataset: Path) -> None:
    meta = json.loads((dataset / "dataset.json").read_text())
    phases = {info["phase"] for info in meta["phantom"]["cases"].values()}
    assert len(phases) >= 2 and phases <= {"plain", "arterial", "portal", "delay"}


def test_anatomical_positions_in_ras(cases: list[PhantomCase]) -> None:
    lab = organ_labels()
    for case in cases:
        c = {name: _centroid_mm(case, label) for name, label in lab.items()}
        # RAS+: the patient's right is +x, i.e. the HIGH x index with this positive-diagonal affine.
        assert c["liver"][0] > 30 and c["spleen"][0] < -50
        ijk_liver = np.argwhere(case.label == lab["liver"]).mean(axis=0)
        assert ijk_liver[0] > case.label.shape[0] / 2
        assert c["right_kidney"][0] > 0 > c["left_kidney"][0]
        assert c["right_adrenal_gland"][0] > 0 > c["left_adrenal_gland"][0]
        assert c["inferior_vena_cava"][0] > c["aorta"][0]
        assert c["gallbladder"][1] > c["aorta"][1]  # anterior
        assert c["right_kidney"][2] < c["left_kidney"][2] < c["spleen"][2]  # superior = +z
        assert c["esophagus"][2] > c["pancreas"][2] > c["duodenum"][2]
        assert c["gallbladder"][2] < c["liver"][2]


def test_hu_values_follow_tissue_and_phase(cases: list[PhantomCase]) -> None:
    lab = organ_labels()
    aorta_hu = {"plain": (20, 80), "arterial": (220, 380), "portal": (110, 220), "delay": (80, 160)}
    for case in cases:
        hu = case.image_hu
        assert hu.dtype == np.int16
        assert np.median(hu[:3, :3, :]) < -900  # air in the corners
        for edge in (hu[0], hu[-1], hu[:, 0], hu[:, -1]):  # the body fits the field of view
            assert edge.max() < -800
        liver = hu[case.label == lab["liver"]].astype(float)
        assert 30 < np.median(liver) < 140
        lo, hi = aorta_hu[case.phase]
        assert lo < np.median(hu[case.label == lab["aorta"]]) < hi, case.phase
        assert hu.max() > 400  # bone


def test_rerun_replaces_phantom_files_only(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    keep = tmp_path / "imagesTr" / "mine_0000.nii.gz"
    keep.write_bytes(b"not ours")
    write_dataset(tmp_path, cases=3, seed=1)
    write_dataset(tmp_path, cases=2, seed=1)
    assert keep.read_bytes() == b"not ours"
    assert not (tmp_path / "labelsTr/phantom_0002.nii.gz").exists()
    assert json.loads((tmp_path / "dataset.json").read_text())["numTraining"] == 2


def test_refuses_a_foreign_dataset_json(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0}}')
    with pytest.raises(DataError, match=r"dataset\.json: exists and is not a phantom"):
        write_dataset(tmp_path, cases=1, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cases": 0}, r"--cases 0: must be an integer >= 1"),
        ({"seed": -1}, r"--seed -1: must be an integer >= 0"),
        ({"size": "huge"}, r"--size 'huge': unknown size; use one of small, full"),
        ({"split": "Va"}, r"--split 'Va': unknown split"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"cases": 1, "seed": 0, **kwargs}
    with pytest.raises(SpecError, match=match):
        write_dataset(tmp_path, **args)


def test_cli_synth_writes_the_data_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(tmp_path), "--cases", "2", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 phantom cases" in result.output
    assert (tmp_path / "labelsTr/phantom_0001.nii.gz").is_file()
    assert json.loads((tmp_path / "dataset.json").read_text())["phantom"]["seed"] == 5


def test_cli_bad_argument_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path), "--cases", "0"])
    assert exc.value.code == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cases 0" in err and "--cases 5" in err
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", "--out", str(tmp_path / "x"), "--size", "huge"])
    assert exc.value.code == 2
