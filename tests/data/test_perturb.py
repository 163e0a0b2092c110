"""Simulated predictions: determinism, grid, realistic DSC, errors and the `data perturb` CLI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.data.perturb import case_rng, perturb_labels, write_predictions
from harness.data.synth import generate_case, save_nifti_gz, write_dataset
from harness.errors import DataError


def _dice(gt: np.ndarray, pred: np.ndarray) -> float:
    total = gt.sum() + pred.sum()
    return float(2 * (gt & pred).sum() / total) if total else 1.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    write_dataset(out, cases=2, seed=2)
    return out


@pytest.fixture(scope="module")
def written(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The predictions of seed 9 for `dataset` (read only: a test that changes one copies it)."""
    return write_predictions(dataset, tmp_path_factory.mktemp("pred") / "pred", seed=9)


def test_same_rng_same_prediction_other_rng_other_prediction() -> None:
    case = generate_case(seed=1, index=0)
    a = perturb_labels(case.label, rng=np.random.default_rng(5), spacing_mm=case.spacing_mm)
    b = perturb_labels(case.label, rng=np.random.default_rng(5), spacing_mm=case.spacing_mm)
    c = perturb_labels(case.label, rng=np.random.default_rng(6), spacing_mm=case.spacing_mm)
    assert a.dtype == np.uint8 and a.shape == case.label.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(np.unique(a)) <= set(np.unique(case.label))


def test_case_rng_depends_on_seed_and_case_id_only() -> None:
    assert case_rng(1, "a").integers(1 << 30) == case_rng(1, "a").integers(1 << 30)
    assert case_rng(1, "a").integers(1 << 30) != case_rng(1, "b").integers(1 << 30)
    assert case_rng(1, "a").integers(1 << 30) != case_rng(2, "a").integers(1 << 30)


def test_dsc_is_realistic() -> None:
    scores = []
    for index in range(5):
        case = generate_case(seed=4, index=index)
        pred = perturb_labels(case.label, rng=case_rng(0, case.case_id), spacing_mm=case.spacing_mm)
        scores += [_dice(case.label == k, pred == k) for k in range(1, 14)]
    dsc = np.array(scores)
    assert not np.all(dsc == 1.0)
    assert np.mean((dsc > 0.6) & (dsc < 0.99)) >= 0.8
    assert 0.8 <= np.median(dsc) <= 0.97


def test_works_on_any_label_map() -> None:
    label = np.zeros((30, 30, 12), np.uint8)
    label[3:15, 4:20, 2:10] = 3
    label[18:26, 5:25, 1:11] = 7
    pred = perturb_labels(label, rng=np.random.default_rng(0), spacing_mm=(1.5, 1.5, 3.0))
    assert set(np.unique(pred)) <= {0, 3, 7}
    assert _dice(label == 3, pred == 3) > 0.5


def test_written_predictions_keep_the_label_grid_and_bytes_repeat(dataset: Path, written: list[Path], tmp_path: Path) -> None:
    assert sorted(p.name for p in written) == ["phantom_0000.nii.gz", "phantom_0001.nii.gz"]
    for path in written:
        label = nib.load(dataset / "labelsTr" / path.name)
        pred = nib.load(path)
        assert pred.shape == label.shape and np.array_equal(pred.affine, label.affine)
        assert pred.header.get_zooms() == label.header.get_zooms()
        assert pred.get_data_dtype() == np.uint8
        data = np.asarray(pred.dataobj)
        assert not np.array_equal(data, np.asarray(label.dataobj))
    again = write_predictions(dataset, tmp_path / "again", seed=9)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]
    other = write_predictions(dataset, tmp_path / "other", seed=10)
    assert other[0].read_bytes() != written[0].read_bytes()


def test_prediction_depends_on_case_id_not_on_other_cases(dataset: Path, written: list[Path], tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    (alone / "labelsTr").mkdir(parents=True)
    src = dataset / "labelsTr" / "phantom_0001.nii.gz"
    save_nifti_gz(nib.load(src), alone / "labelsTr" / src.name)
    [one] = write_predictions(alone, tmp_path / "p1", seed=9)
    assert one.read_bytes() == written[1].read_bytes()  # seed 9 on both cases


def test_errors_name_the_folder(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(DataError, match=r"--data .*: no such folder"):
        write_predictions(tmp_path / "missing", tmp_path / "out", seed=0)
    with pytest.raises(DataError, match=r"no labels\*/<case>\.nii\.gz files"):
        write_predictions(tmp_path, tmp_path / "out", seed=0)
    with pytest.raises(DataError, match=r"--out .*: is a label folder of --data"):
        write_predictions(dataset, dataset / "labelsTr", seed=0)


def test_cli_perturb(dataset: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "perturb", "--data", str(dataset), "--out", str(tmp_path), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 predictions" in result.output
    assert (tmp_path / "phantom_0000.nii.gz").is_file()
