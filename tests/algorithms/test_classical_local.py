"""The classical segmenter run as the local runner would: its own process, on a phantom case."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.data.synth import organ_labels, write_dataset

ALGORITHM = Path(__file__).resolve().parents[2] / "algorithms" / "classical"
ORGANS = list(organ_labels())  # name -> label, in label order


def _predict(input_dir: Path, output_dir: Path) -> subprocess.CompletedProcess[str]:
    output_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "predict.py", str(input_dir), str(output_dir)], cwd=ALGORITHM,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    """(image, label, output folder, finished process) for phantom case 0 of seed 99."""
    root = tmp_path_factory.mktemp("classical")
    write_dataset(root / "data", cases=1, seed=99, size="small")
    image = root / "data" / "imagesTr" / "phantom_0000_0000.nii.gz"
    label = root / "data" / "labelsTr" / "phantom_0000.nii.gz"
    (root / "input").mkdir()
    shutil.copy(image, root / "input" / image.name)
    proc = _predict(root / "input", root / "output")
    return image, label, root / "output", proc


def test_exits_zero_and_logs_the_device(phantom_run) -> None:
    _, _, _, proc = phantom_run
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in proc.stderr
    assert "timings (s):" in proc.stderr


def test_label_map_is_on_the_input_grid(phantom_run) -> None:
    image, _, out, _ = phantom_run
    img, pred = nib.load(image), nib.load(out / "phantom_0000.nii.gz")
    data = np.asarray(pred.dataobj)
    assert data.dtype == np.uint8
    assert data.shape == img.shape
    np.testing.assert_allclose(pred.affine, img.affine)
    assert set(np.unique(data)) <= set(range(14))


def test_probabilities_threshold_back_to_the_label_map(phantom_run) -> None:
    image, _, out, _ = phantom_run
    shape = nib.load(image).shape
    label = np.asarray(nib.load(out / "phantom_0000.nii.gz").dataobj)
    rebuilt = np.zeros(shape, np.uint8)
    for value, organ in enumerate(ORGANS, start=1):
        p = np.asarray(nib.load(out / "probabilities" / f"{organ}.nii.gz").dataobj)
        assert p.dtype == np.uint8, organ
        assert p.shape == shape, organ
        rebuilt[p >= 128] = value  # p >= 0.5
    assert (rebuilt == label).mean() >= 0.99


def test_liver_overlaps_the_ground_truth(phantom_run) -> None:
    _, label_path, out, _ = phantom_run
    truth = np.asarray(nib.load(label_path).dataobj) == 1
    pred = np.asarray(nib.load(out / "phantom_0000.nii.gz").dataobj) == 1
    dsc = 2 * np.logical_and(truth, pred).sum() / (truth.sum() + pred.sum())
    assert dsc > 0.85


@pytest.mark.parametrize("images", [0, 2])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, images: int) -> None:
    (tmp_path / "input").mkdir()
    for i in range(images):
        (tmp_path / "input" / f"case_{i}_0000.nii.gz").write_bytes(b"")
    proc = _predict(tmp_path / "input", tmp_path / "output")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "expected exactly one <case>_0000.nii.gz" in errors[0]


def test_unreadable_image_is_reported(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "case_0000.nii.gz").write_bytes(b"not a nifti")
    proc = _predict(tmp_path / "input", tmp_path / "output")
    assert proc.returncode == 2
    assert "unreadable as NIfTI" in proc.stderr.splitlines()[-1]
