"""The classical segmenter's entry point: `predict.py INPUT_DIR OUTPUT_DIR` (one case per run).

Reads the single `<case>_0000.nii.gz` (CT in HU) in INPUT_DIR and writes, on the input's grid and
with its header, `OUTPUT_DIR/<case>.nii.gz` (uint8 FLARE22 labels) and
`OUTPUT_DIR/probabilities/<organ>.nii.gz` (uint8 = round(255 * p)) for the 13 organs. The label
map is exactly "the organ of highest p where that p >= 0.5, else background", computed from the
uint8 values written, so thresholding any probability file at 128 gives back its organ's mask.

No machine learning and no GPU: see segmenter.py for the method. Logs to stderr. Exit status 0 on
success, 2 with a one-line message on bad input.
"""

from __future__ import annotations

import os

# One thread per library: the sandbox caps processes + threads, and nothing here needs BLAS threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from anatomy import ORGANS  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from segmenter import block_factors, block_mean, segment, upsample  # noqa: E402

VERSION = "0.1.0"
IMAGE_SUFFIX = "_0000.nii.gz"
PROBABILITY_DIR = "probabilities"
MIN_SHAPE = 8  # voxels along each axis


class InputError(Exception):
    """Bad input or output folder: reported as one line, exit status 2."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_image(input_dir: Path) -> tuple[str, Path]:
    """The case id and path of the one `<case>_0000.nii.gz` in `input_dir`."""
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    images = sorted(p for p in input_dir.iterdir() if p.name.endswith(IMAGE_SUFFIX) and p.is_file())
    if len(images) != 1:
        found = ", ".join(sorted(p.name for p in input_dir.iterdir())[:5]) or "nothing"
        raise InputError(f"{input_dir}: expected exactly one <case>{IMAGE_SUFFIX}, found {len(images)} (folder holds: {found})")
    case = images[0].name[: -len(IMAGE_SUFFIX)]
    if not case or not re.fullmatch(r"[A-Za-z0-9._-]+", case):
        raise InputError(f"{images[0]}: case id {case!r} is empty or has characters other than letters, digits, '.', '_', '-'")
    return case, images[0]


def load_image(path: Path) -> tuple[nib.Nifti1Image, NDArray[np.float32], tuple[float, float, float], NDArray[np.float64]]:
    """The image, its voxels reoriented to RAS+ (float32 HU), their spacing (mm) and the
    orientation transform that brings RAS+ arrays back onto the input's voxel order."""
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input
        raise InputError(f"{path}: unreadable as NIfTI ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path}: not a NIfTI-1/2 image ({type(img).__name__})")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
        shape = img.shape
    if len(shape) != 3:
        raise InputError(f"{path}: image has shape {shape}; expected a 3D CT volume")
    if min(shape) < MIN_SHAPE:
        raise InputError(f"{path}: image shape {shape} is too small; each axis needs >= {MIN_SHAPE} voxels")
    affine = np.asarray(img.affine, np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{path}: affine is singular or not finite; fix the image header")
    ornt = nib.orientations.io_orientation(affine)
    to_ras = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt(("R", "A", "S")))
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), ornt)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: voxel data unreadable ({type(exc).__name__}: {exc})") from None
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: image holds NaN or infinite values; expected CT in HU")
    data = np.ascontiguousarray(nib.orientations.apply_orientation(data, to_ras), dtype=np.float32)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))  # voxel size along each input axis
    ras_zooms = [0.0, 0.0, 0.0]
    for i in range(3):  # input axis i becomes RAS axis ornt[i, 0]
        ras_zooms[int(ornt[i, 0])] = float(zooms[i])
    spacing = (ras_zooms[0], ras_zooms[1], ras_zooms[2])
    return img, data, spacing, back


def save_like(data: NDArray[np.uint8], reference: nib.Nifti1Image, path: Path) -> None:
    """Write `data` (input voxel order) with the reference's header and affine as uint8."""
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    out = type(reference)(data, reference.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    nib.save(out, path)


def write_outputs(probabilities: dict[str, NDArray[np.float32]], factors: tuple[int, int, int], ras_shape: tuple[int, int, int],
                  back: NDArray[np.float64], reference: nib.Nifti1Image, case: str, output_dir: Path) -> dict[str, float]:
    """Upsample each organ's p, write it as uint8 and build the label map from the written values.

    Returns each organ's labelled volume in cm^3.
    """
    prob_dir = output_dir / PROBABILITY_DIR
    prob_dir.mkdir(parents=True, exist_ok=True)
    best = np.zeros(ras_shape, np.uint8)
    label = np.zeros(ras_shape, np.uint8)
    for value, organ in enumerate(ORGANS, start=1):
        p = probabilities[organ]
        q = np.zeros(ras_shape, np.uint8)
        if (p >= 0.5 / 255).any():
            lo, hi = [], []
            for axis in range(3):
                other = tuple(a for a in range(3) if a != axis)
                idx = np.nonzero((p >= 0.5 / 255).any(axis=other))[0]
                lo.append(max(int(idx[0]) - 1, 0))
                hi.append(min(int(idx[-1]) + 2, p.shape[axis]))
            block = p[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            full = [(a * f, min(b * f, n)) for a, b, f, n in zip(lo, hi, factors, ras_shape, strict=True)]
            sub_shape = (full[0][1] - full[0][0], full[1][1] - full[1][0], full[2][1] - full[2][0])
            up = upsample(block, factors, sub_shape)
            sl = tuple(slice(a, b) for a, b in full)
            q[sl] = np.rint(np.clip(up, 0.0, 1.0) * 255).astype(np.uint8)
        # Ties go to the organ with the lower label, as an argmax would.
        wins = q > best
        best[wins] = q[wins]
        label[wins] = value
        save_like(nib.orientations.apply_orientation(q, back).astype(np.uint8), reference, prob_dir / f"{organ}.nii.gz")
    label[best < 128] = 0
    save_like(nib.orientations.apply_orientation(label, back).astype(np.uint8), reference, output_dir / f"{case}.nii.gz")
    voxel_cm3 = abs(float(np.linalg.det(reference.affine[:3, :3]))) / 1000
    counts = np.bincount(label.ravel(), minlength=len(ORGANS) + 1)
    return {organ: float(counts[v]) * voxel_cm3 for v, organ in enumerate(ORGANS, start=1)}


def run(input_dir: Path, output_dir: Path) -> None:
    t0 = time.perf_counter()
    log(f"classical {VERSION}: intensity windows, anatomical position priors, morphology (no machine learning)")
    log("device: cpu")
    case, image_path = find_image(input_dir)
    env_case = os.environ.get("HARNESS_CASE")
    if env_case and env_case != case:
        log(f"warning: HARNESS_CASE={env_case!r} differs from the input file's case id {case!r}; using {case!r}")
    if not output_dir.is_dir():
        raise InputError(f"output folder {output_dir} does not exist or is not a folder")
    if not os.access(output_dir, os.W_OK):
        raise InputError(f"output folder {output_dir} is not writable")

    img, data, spacing, back = load_image(image_path)
    t_load = time.perf_counter() - t0
    factors = block_factors(spacing)
    work = block_mean(data, factors)
    work_spacing = (spacing[0] * factors[0], spacing[1] * factors[1], spacing[2] * factors[2])
    ras_shape = (data.shape[0], data.shape[1], data.shape[2])
    del data
    log(f"case {case}: {'x'.join(map(str, img.shape))} voxels @ {'x'.join(f'{s:.3g}' for s in spacing)} mm, "
        f"working grid {'x'.join(map(str, work.shape))} @ {'x'.join(f'{s:.3g}' for s in work_spacing)} mm")
    t1 = time.perf_counter()
    result = segment(work, work_spacing)
    t_segment = time.perf_counter() - t1
    del work
    fr, it = result.frame, result.intensities
    log(f"landmarks: spine x={fr.x0_mm:.1f} y={fr.y0_mm:.1f} mm, diaphragm z={fr.z0_mm:.1f} mm, size factor {fr.scale:.3f}")
    for note in fr.notes:
        log(f"note: {note}")
    log(f"contrast phase: {it.phase} (aorta {it.aorta_hu:.0f} HU, excreted contrast {it.excreted_cm3:.1f} cm3), noise {it.noise_hu:.1f} HU")
    t2 = time.perf_counter()
    volumes = write_outputs(result.probabilities, factors, ras_shape, back, img, case, output_dir)
    t_write = time.perf_counter() - t2
    log("volumes (cm3): " + ", ".join(f"{organ} {v:.0f}" for organ, v in volumes.items()))
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings_s.items())
    log(f"timings (s): load {t_load:.2f}, segment {t_segment:.2f} ({stages}), write {t_write:.2f}, "
        f"total {time.perf_counter() - t0:.2f}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        log("usage: predict.py INPUT_DIR OUTPUT_DIR")
        return 2
    try:
        run(Path(argv[1]), Path(argv[2]))
    except InputError as exc:
        log(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
