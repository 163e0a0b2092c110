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
    # The mask's bounding box from its projections on each axis (cheaper than np.nonzero).
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis))) for axis in range(mask.ndim)]
    if spans[0].size == 0:
        return out
    margin = int(np.ceil(4 * sigma)) + max(abs(s) for s in shift) + 2
    box = tuple(slice(max(int(i[0]) - margin, 0), min(int(i[-1]) + margin + 1, n)) for i, n in zip(spans, mask.shape, strict=True))
    sub = np.roll(mask[box].astype(np.float32), shift, axis=(0, 1, 2))
    p = ndimage.gaussian_filter(sub, sigma)
    q = np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)
    # Dilation by the full 3x3x3 cube: a separable maximum filter ('reflect' at the box's edge only
    # repeats voxels inside the window, so it equals binary_dilation with a zero border).
    q[ndimage.maximum_filter((q >= 128).view(np.uint8), size=3) == 0] = 0
    out[box] = q
    return out


def segmenters_from_label(label: NDArray[np.integer], organs: Mapping[str, int] = ATLAS8, *,
                          models: tuple[str, ...] = tuple(MODELS)) -> dict[str, dict[str, NDArray[np.uint8]]]:
    """model -> organ -> uint8 probabilities, from a ground-truth label map (for `models`, by
    default all of MODELS)."""
    masks = {organ: label == value for organ, value in organs.items()}
    return {model: {organ: soft_prediction(mask, sigma=MODELS[model][0], shift=MODELS[model][1]) for organ, mask in masks.items()}
            for model in models}


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


def start_annotator(input_dir: Path, output_dir: Path, *options: str) -> subprocess.Popen[str]:
    """annotate.py started in its own process, as the local runner starts it; `finish_annotator`
    waits for it. Several may run at once (each case in its own folders)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no __pycache__ in the algorithm's folder
    return subprocess.Popen([sys.executable, "annotate.py", str(input_dir), str(output_dir), *options], cwd=ALGORITHM,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish_annotator(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    """Wait for a started annotator (killed after 300 s) and return its exit status and output."""
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_annotator(input_dir: Path, output_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """annotate.py in its own process, as the local runner starts it."""
    return finish_annotator(start_annotator(input_dir, output_dir, *options))
