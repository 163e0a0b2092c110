"""The segmenter contract's checks, shared by the example algorithms' local-runner tests: run
predict.py in its own process on a phantom case, then check its label map and probabilities."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.data.synth import generate_case, organ_labels, save_nifti_gz

ALGORITHMS = Path(__file__).resolve().parents[2] / "algorithms"
ORGANS = list(organ_labels())  # in label order: ORGANS[i] has label i + 1
CASE = "phantom_0000"

Run = tuple[Path, Path, Path, "subprocess.CompletedProcess[str]"]


def load(path: Path) -> nib.Nifti1Image:
    img = nib.load(path)
    assert isinstance(img, nib.Nifti1Image), path
    return img


def array(path: Path) -> np.ndarray:
    return np.asarray(load(path).dataobj)


def run_predict(algorithm: str, input_dir: Path, output_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python predict.py INPUT OUTPUT [args]` in the algorithm's folder, as the local runner starts it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "predict.py", str(input_dir), str(output_dir), *args], cwd=ALGORITHMS / algorithm,
                          capture_output=True, text=True, timeout=300, check=False)


def phantom_run(factory: pytest.TempPathFactory, algorithm: str, *, seed: int, args: tuple[str, ...] = (),
                in_plane_step: int = 1) -> Run:
    """(image, label, output folder, finished process) for phantom case 0 of `seed` (small size).

    `in_plane_step` > 1 keeps every n-th voxel along x and y, image and label alike, with the affine
    scaled to match: a coarser CT of the same patient (n times the in-plane spacing), whose run costs
    about 1/n^2 as much."""
    root = factory.mktemp(algorithm)
    case = generate_case(seed=seed, index=0, size="small")
    if in_plane_step > 1:
        n = in_plane_step
        affine = case.affine.copy()
        affine[0, 0] *= n
        affine[1, 1] *= n
        sx, sy, sz = case.spacing_mm
        case = replace(case, image_hu=case.image_hu[::n, ::n].copy(), label=case.label[::n, ::n].copy(),
                       spacing_mm=(sx * n, sy * n, sz), affine=affine)
    image_nii, label_nii = case.nifti_images()
    (root / "input").mkdir()
    image = save_nifti_gz(image_nii, root / "input" / f"{CASE}_0000.nii.gz")
    label = save_nifti_gz(label_nii, root / f"{CASE}.nii.gz")
    proc = run_predict(algorithm, root / "input", root / "output", *args)
    return image, label, root / "output", proc


def check_label_map(image: Path, out: Path) -> None:
    """uint8, on the input's grid (shape, affine, zooms), holding FLARE22 labels only."""
    img, pred = load(image), load(out / f"{CASE}.nii.gz")
    data = np.asarray(pred.dataobj)
    assert data.dtype == np.uint8
    assert data.shape == img.shape
    np.testing.assert_allclose(pred.affine, img.affine)
    np.testing.assert_allclose(pred.header.get_zooms(), img.header.get_zooms())
    assert set(np.unique(data).tolist()) <= set(range(len(ORGANS) + 1))


def check_probabilities(image: Path, out: Path) -> None:
    """13 uint8 maps on the input's grid; the organ of highest p where that p >= 0.5 (else
    background) gives back the label map on at least 99 % of voxels."""
    img = load(image)
    assert sorted(p.name for p in (out / "probabilities").iterdir()) == sorted(f"{o}.nii.gz" for o in ORGANS)
    maps = []
    for organ in ORGANS:
        prob = load(out / "probabilities" / f"{organ}.nii.gz")
        p = np.asarray(prob.dataobj)
        assert p.dtype == np.uint8, organ
        assert p.shape == img.shape, organ
        np.testing.assert_allclose(prob.affine, img.affine)
        maps.append(p)
    probs = np.stack(maps)
    rebuilt = np.where(probs.max(axis=0) >= 128, probs.argmax(axis=0) + 1, 0)
    assert (rebuilt == array(out / f"{CASE}.nii.gz")).mean() >= 0.99


def liver_dsc(label: Path, out: Path) -> float:
    truth = array(label) == 1
    pred = array(out / f"{CASE}.nii.gz") == 1
    return float(2 * (truth & pred).sum() / (truth.sum() + pred.sum()))
