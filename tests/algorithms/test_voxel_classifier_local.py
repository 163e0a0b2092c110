"""The voxel-classifier segmenter run as the local runner runs it: predict.py in its own process.

It needs the scikit-learn version its model was trained with (pinned in its requirements.txt);
without it the tests are skipped, saying which version to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.data.synth import organ_labels, write_dataset

ALGORITHM = Path(__file__).resolve().parents[2] / "algorithms" / "voxel-classifier"
ORGANS = list(organ_labels())  # in label order: ORGANS[i] has label i + 1
CASE = "phantom_0000"


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image), path
    return img


def _array(path: Path) -> np.ndarray:
    return np.asarray(_load(path).dataobj)


def _pinned_sklearn() -> str:
    text = (ALGORITHM / "requirements.txt").read_text(encoding="utf-8")
    pin = re.search(r"^scikit-learn==(\S+)", text, re.MULTILINE)
    assert pin is not None, "algorithms/voxel-classifier/requirements.txt pins no scikit-learn"
    return pin.group(1)


def _installed_sklearn() -> str | None:
    try:
        return metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None


pytestmark = pytest.mark.skipif(
    _installed_sklearn() != _pinned_sklearn(),
    reason=f"needs scikit-learn=={_pinned_sklearn()} (algorithms/voxel-classifier/requirements.txt), "
    f"found {_installed_sklearn()}; pip install scikit-learn=={_pinned_sklearn()}",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    """(image, label, output folder, finished process) for case 0 of the default evaluation set (seed 0)."""
    root = tmp_path_factory.mktemp("voxel_classifier")
    write_dataset(root / "data", cases=1, seed=0, size="small")
    image = root / "data" / "imagesTr" / f"{CASE}_0000.nii.gz"
    (root / "input").mkdir()
    shutil.copy(image, root / "input" / image.name)
    (root / "output").mkdir()
    proc = subprocess.run(
        [sys.executable, "predict.py", str(root / "input"), str(root / "output")],
        cwd=ALGORITHM, capture_output=True, text=True, timeout=300, check=False,
    )
    return image, root / "data" / "labelsTr" / f"{CASE}.nii.gz", root / "output", proc


def test_exits_zero_and_logs_device_and_timings(run) -> None:
    *_, proc = run
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu" in proc.stderr
    assert re.search(r"done: [\d.]+ s, peak memory \d+ MB", proc.stderr), proc.stderr


def test_label_map_is_uint8_on_the_input_grid(run) -> None:
    image, _, out, _ = run
    img, pred = _load(image), _load(out / f"{CASE}.nii.gz")
    data = np.asarray(pred.dataobj)
    assert data.dtype == np.uint8
    assert data.shape == img.shape
    np.testing.assert_allclose(pred.affine, img.affine)
    np.testing.assert_allclose(pred.header.get_zooms(), img.header.get_zooms())
    assert set(np.unique(data).tolist()) <= set(range(len(ORGANS) + 1))


def test_writes_thirteen_uint8_probability_maps(run) -> None:
    image, _, out, _ = run
    files = sorted(p.name for p in (out / "probabilities").iterdir())
    assert files == sorted(f"{organ}.nii.gz" for organ in ORGANS)
    shape = _load(image).shape
    for organ in ORGANS:
        prob = _load(out / "probabilities" / f"{organ}.nii.gz")
        assert np.asarray(prob.dataobj).dtype == np.uint8, organ
        assert prob.shape == shape, organ


def test_thresholded_probabilities_give_back_the_label_map(run) -> None:
    _, _, out, _ = run
    label = _array(out / f"{CASE}.nii.gz")
    probs = np.stack([_array(out / "probabilities" / f"{o}.nii.gz") for o in ORGANS])
    best = probs.argmax(axis=0)
    thresholded = np.where(probs.max(axis=0) / 255 >= 0.5, best + 1, 0)
    assert (thresholded == label).mean() >= 0.99


def test_liver_dice_above_0_8(run) -> None:
    _, truth_path, out, _ = run
    truth = _array(truth_path) == 1
    pred = _array(out / f"{CASE}.nii.gz") == 1
    dice = 2 * (truth & pred).sum() / (truth.sum() + pred.sum())
    assert dice > 0.8, dice
