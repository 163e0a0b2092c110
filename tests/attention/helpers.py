"""Shared helpers: the annotator's math module loaded by path, synthetic segmenters, staging."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

ALGORITHM = Path(__file__).resolve().parents[2] / "algorithms" / "attention-annotator"
# atlas8's organs in the FLARE numbering (the annotator's profile).
ATLAS8 = {"liver": 1, "right_kidney": 2, "spleen": 3, "pancreas": 4, "aorta": 5, "inferior_vena_cava": 6,
          "gallbladder": 9, "stomach": 11, "left_kidney": 13}
# Three synthetic segmenters: (blur sigma in voxels, shift in voxels along x, y, z).
MODELS = {"model_a": (0.7, (0, 0, 0)), "model_b": (1.0, (1, 0, 0)), "model_c": (1.3, (0, 1, 0))}


def load_module(name: str) -> ModuleType:
    """A module of the annotator's folder, imported by path (the harness itself never does)."""
    key = f"attention_annotator_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, ALGORITHM / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the algorithm's folder
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    return module


def soft_prediction(mask: NDArray[np.bool_], *, sigma: float, shift: tuple[int, int, int] = (0, 0, 0)) -> NDArray[np.uint8]:
    """uint8 round(255 p) of a blurred, shifted mask, zeroed outside a one-voxel dilation of
    its own hard mask (the AbdomenAtlas-8K models' convention)."""
    out = np.zeros(mask.shape, np.uint8)
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return out
    margin = int(np.ceil(4 * sigma)) + max(abs(s) for s in shift) + 2
    box = tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n)) for i, n in zip(idx, mask.shape, strict=True))
    sub = np.roll(mask[box].astype(np.float32), shift, axis=(0, 1, 2))
    p = ndimage.gaussian_filter(sub, sigma)
    q = np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)
    q[~ndimage.binary_dilation(q >= 128, structure=np.ones((3, 3, 3), bool))] = 0
    out[box] = q
    return out


def segmenters_from_label(label: NDArray[np.integer], organs: Mapping[str, int] = ATLAS8) -> dict[str, dict[str, NDArray[np.uint8]]]:
    """model -> organ -> uint8 probabilities, from a ground-truth label map."""
    return {model: {organ: soft_prediction(label == value, sigma=sigma, shift=shift) for organ, value in organs.items()}
            for model, (sigma, shift) in MODELS.items()}


def read_heatmaps(folder: Path) -> dict[str, NDArray[np.float32]]:
    """Organ -> heat map in [0, 1] of an annotator output folder (`heatmap/<organ>.nii.gz`, stored as
    uint8 round(255 * heat)): the tests' reader (the harness itself reads only sizes and attention)."""
    return {path.name[: -len(".nii.gz")]: np.asarray(nib.load(path).dataobj).astype(np.float32) / np.float32(255)
            for path in sorted((Path(folder) / "heatmap").glob("*.nii.gz"))}


def read_summaries(root: Path) -> list[dict]:
    """The attention.json of every case folder under `root`, by case folder name."""
    import json

    return [json.loads(path.read_text()) for path in sorted(Path(root).glob("*/attention.json"))]


def write_nifti(path: Path, data: NDArray, affine: NDArray[np.float64]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def stage_case(root: Path, case: str, segmenters: Mapping[str, Mapping[str, NDArray]], affine: NDArray[np.float64]) -> Path:
    """The annotator's input folder: the CT (zeros; only its grid is read) and the probabilities."""
    shape = next(iter(next(iter(segmenters.values())).values())).shape
    write_nifti(root / f"{case}_0000.nii.gz", np.zeros(shape, np.int16), affine)
    for model, organs in segmenters.items():
        for organ, data in organs.items():
            write_nifti(root / "segmenters" / model / "probabilities" / f"{organ}.nii.gz", data, affine)
    return root


def run_annotator(input_dir: Path, output_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """annotate.py in its own process, as the local runner starts it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ in the algorithm's folder
    return subprocess.run([sys.executable, "annotate.py", str(input_dir), str(output_dir), *options], cwd=ALGORITHM,
                          capture_output=True, text=True, timeout=300, check=False, env=env)
