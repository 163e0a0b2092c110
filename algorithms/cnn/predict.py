"""The cnn segmenter's entry point: `predict.py INPUT_DIR OUTPUT_DIR [--device auto|cpu|cuda]`.

Reads the single `<case>_0000.nii.gz` (CT in HU) in INPUT_DIR and writes, on the input's grid and
with its header, `OUTPUT_DIR/<case>.nii.gz` (uint8 FLARE22 labels) and
`OUTPUT_DIR/probabilities/<organ>.nii.gz` (uint8 = round(255 * p)) for the 13 organs.

Method: the image is reoriented to RAS+, resampled to the ~3 x 3 x 6 mm working grid (grid.py),
windowed into two channels, and run through a small 3D U-Net (model.onnx, made by train.py) with
ONNX Runtime in overlapping windows of at most 160 x 160 x 56 voxels blended with Gaussian weights; the 14 softmax
probabilities are interpolated (trilinear) back onto the input grid. The label map is the argmax
of those 14 probabilities (ties to the lower label). As they sum to 1, an organ with p > 0.5 is
always the argmax, so the label map equals "the organ of highest p where that p >= 0.5, else
background" except where no class reaches 0.5 but an organ still beats background (three-way
boundaries: well under 1 % of voxels, logged as `threshold agreement`).

Device: `auto` uses ONNX Runtime's CUDA execution provider when it is installed (the
onnxruntime-gpu wheel in place of onnxruntime) and a GPU answers, else the CPU; `cuda` insists on
it and fails with exit status 2 otherwise. The pre- and post-processing run on the CPU either way.
Imports only numpy, scipy, nibabel and onnxruntime. Logs to stderr. Exit status 0 on success, 2
with a one-line message on bad input or an unavailable device.
"""

from __future__ import annotations

import os

# NumPy/SciPy stay single-threaded (the sandbox caps processes + threads); ONNX Runtime gets the cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import grid  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

VERSION = "0.1.0"
MODEL = Path(__file__).resolve().parent / "model.onnx"
IMAGE_SUFFIX = "_0000.nii.gz"
PROBABILITY_DIR = "probabilities"
ORGANS = ("liver", "right_kidney", "spleen", "pancreas", "aorta", "inferior_vena_cava", "right_adrenal_gland",
          "left_adrenal_gland", "gallbladder", "esophagus", "stomach", "duodenum", "left_kidney")  # labels 1..13
MIN_SHAPE = 4  # voxels along each axis
MAX_THREADS = 8  # ONNX Runtime intra-op threads; the sandbox caps processes + threads


class InputError(Exception):
    """Bad input, output folder or device: reported as one line, exit status 2."""


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
    if not re.fullmatch(r"[A-Za-z0-9._-]+", case):
        raise InputError(f"{images[0]}: case id {case!r} is empty or has characters other than letters, digits, '.', '_', '-'")
    return case, images[0]


def load_ras(path: Path) -> tuple[nib.Nifti1Image, NDArray[np.float32], tuple[float, float, float], NDArray[np.float64]]:
    """The image, its voxels in RAS+ order (float32 HU), their spacing in mm along R, A, S and the
    orientation transform that takes a RAS+ array back to the input's voxel order."""
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input
        raise InputError(f"{path}: unreadable as NIfTI ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path}: not a NIfTI-1/2 image ({type(img).__name__})")
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3 or min(img.shape) < MIN_SHAPE:
        raise InputError(f"{path}: image shape {img.shape}; expected a 3D CT volume with >= {MIN_SHAPE} voxels along each axis")
    affine = np.asarray(img.affine, np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{path}: affine is singular or not finite; fix the image header")
    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: voxel data unreadable ({type(exc).__name__}: {exc})") from None
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: image holds NaN or infinite values; expected CT in HU")
    data = np.ascontiguousarray(nib.orientations.apply_orientation(data, nib.orientations.ornt_transform(ornt, ras)))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    spacing = [0.0, 0.0, 0.0]
    for axis in range(3):  # input axis `axis` becomes RAS axis ornt[axis, 0]
        spacing[int(ornt[axis, 0])] = float(zooms[axis])
    return img, data, (spacing[0], spacing[1], spacing[2]), nib.orientations.ornt_transform(ras, ornt)


def open_session(device: str) -> tuple[ort.InferenceSession, str]:
    """An ONNX Runtime session on the requested device and the device actually used ("cuda" or "cpu")."""
    if not MODEL.is_file():
        raise InputError(f"{MODEL}: model file missing; run train.py (see README.md)")
    options = ort.SessionOptions()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    options.intra_op_num_threads = max(1, min(cpus, MAX_THREADS))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    available = ort.get_available_providers()
    if device in ("auto", "cuda"):
        if "CUDAExecutionProvider" in available:
            try:
                session = ort.InferenceSession(str(MODEL), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
                if session.get_providers()[0] == "CUDAExecutionProvider":
                    return session, "cuda"
                reason = "the CUDA execution provider did not start (no GPU visible?)"
            except Exception as exc:  # noqa: BLE001 - a missing driver or GPU surfaces as any error
                reason = f"the CUDA execution provider failed ({type(exc).__name__}: {str(exc)[:200]})"
        else:
            reason = f"this onnxruntime has no CUDA execution provider (providers: {', '.join(available)}; install onnxruntime-gpu)"
        if device == "cuda":
            raise InputError(f"--device cuda: {reason}")
        log(f"note: using the CPU: {reason}")
    session = ort.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    return session, "cpu"


def run_network(session: ort.InferenceSession, x: NDArray[np.float32],
                patch: tuple[int, int, int]) -> tuple[NDArray[np.float32], int]:
    """Working-grid probabilities (14, X, Y, Z) of the input channels x, and the number of windows."""
    count = 0

    def predict_window(window: NDArray[np.float32]) -> NDArray[np.float32]:
        nonlocal count
        count += 1
        return np.asarray(session.run(None, {"image": window})[0], np.float32)

    return grid.sliding_window(x, predict_window, patch=patch), count


def write_outputs(probs: NDArray[np.float32], shape: tuple[int, int, int], back: NDArray[np.float64],
                  reference: nib.Nifti1Image, case: str, output_dir: Path) -> dict[str, float]:
    """Interpolate the working-grid probabilities (14, x, y, z) onto the input grid one class at a
    time, write each organ's uint8 file and the argmax label map. Returns the share of voxels where
    the label map equals thresholding the written files ("organ of highest p if >= 0.5")."""
    prob_dir = output_dir / PROBABILITY_DIR
    prob_dir.mkdir(parents=True, exist_ok=True)
    work_shape = probs.shape[1:]
    best = grid.resample(probs[0], shape, antialias=False)  # background's p everywhere
    label = np.zeros(shape, np.uint8)
    best_q = np.zeros(shape, np.uint8)  # highest written organ value, for the agreement check
    threshold_label = np.zeros(shape, np.uint8)
    for value, organ in enumerate(ORGANS, start=1):
        p = probs[value]
        q = np.zeros(shape, np.uint8)
        hot = p >= 0.5 / 255  # anything below rounds to 0 in the file and cannot be an argmax
        if hot.any():
            lo, hi = [], []
            for axis in range(3):
                idx = np.flatnonzero(hot.any(axis=tuple(a for a in range(3) if a != axis)))
                lo.append(max(int(idx[0]) - 1, 0))
                hi.append(min(int(idx[-1]) + 2, work_shape[axis]))
            block = p[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            region, up = grid.interpolate_block(block, tuple(lo), work_shape, shape)
            wins = up > best[region]  # strict: ties go to the lower label, as argmax does
            best[region][wins] = up[wins]
            label[region][wins] = value
            q[region] = np.rint(np.clip(up, 0.0, 1.0) * 255).astype(np.uint8)
            above = q[region] > best_q[region]
            best_q[region][above] = q[region][above]
            threshold_label[region][above] = value
        save_like(nib.orientations.apply_orientation(q, back), reference, prob_dir / f"{organ}.nii.gz")
    threshold_label[best_q < 128] = 0
    save_like(nib.orientations.apply_orientation(label, back), reference, output_dir / f"{case}.nii.gz")
    counts = np.bincount(label.ravel(), minlength=len(ORGANS) + 1)
    voxel_cm3 = abs(float(np.linalg.det(reference.affine[:3, :3]))) / 1000
    return {"agreement": float((label == threshold_label).mean()),
            **{organ: float(counts[v]) * voxel_cm3 for v, organ in enumerate(ORGANS, start=1)}}


def save_like(data: NDArray[np.uint8], reference: nib.Nifti1Image, path: Path) -> None:
    """Write `data` (input voxel order) as uint8 with the reference's header and affine."""
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    out = type(reference)(np.ascontiguousarray(data, np.uint8), reference.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    nib.save(out, path)


def run(input_dir: Path, output_dir: Path, device: str) -> None:
    t0 = time.perf_counter()
    log(f"cnn {VERSION}: 3D U-Net (ONNX Runtime {ort.__version__}) on a {'x'.join(f'{s:g}' for s in grid.WORK_SPACING_MM)} mm "
        f"working grid, sliding windows of at most {'x'.join(map(str, grid.WINDOW_MAX))} voxels")
    case, image_path = find_image(input_dir)
    env_case = os.environ.get("HARNESS_CASE")
    if env_case and env_case != case:
        log(f"warning: HARNESS_CASE={env_case!r} differs from the input file's case id {case!r}; using {case!r}")
    if not output_dir.is_dir() or not os.access(output_dir, os.W_OK):
        raise InputError(f"output folder {output_dir} does not exist or is not a writable folder")
    session, used = open_session(device)
    log(f"device: {used} (providers: {', '.join(session.get_providers())}; "
        f"threads: {session.get_session_options().intra_op_num_threads})")
    t_session = time.perf_counter() - t0

    t1 = time.perf_counter()
    img, data, spacing, back = load_ras(image_path)
    shape = (data.shape[0], data.shape[1], data.shape[2])
    work_shape = grid.working_shape(shape, spacing)
    x = grid.channels(grid.resample(data, work_shape))
    del data
    t_load = time.perf_counter() - t1
    patch = grid.window_shape(work_shape)
    log(f"case {case}: {'x'.join(map(str, img.shape))} voxels @ {'x'.join(f'{s:.3g}' for s in spacing)} mm (RAS), "
        f"working grid {'x'.join(map(str, work_shape))}, window {'x'.join(map(str, patch))}")

    t2 = time.perf_counter()
    probs, count = run_network(session, x, patch)
    t_net = time.perf_counter() - t2
    del x, session  # ONNX Runtime's memory arena goes before the full-size arrays come

    t3 = time.perf_counter()
    stats = write_outputs(probs, shape, back, img, case, output_dir)
    t_write = time.perf_counter() - t3
    log(f"threshold agreement: {100 * stats.pop('agreement'):.3f} % of voxels (argmax label = organ with p >= 0.5)")
    log("volumes (cm3): " + ", ".join(f"{organ} {v:.0f}" for organ, v in stats.items()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"timings (s): session {t_session:.2f}, load+resample {t_load:.2f}, network {t_net:.2f} ({count} windows), "
        f"upsample+write {t_write:.2f}, total {time.perf_counter() - t0:.2f}; peak RSS {peak_mb:.0f} MB")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="predict.py", description="cnn segmenter: one case from INPUT_DIR to OUTPUT_DIR")
    ap.add_argument("input_dir", type=Path)
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA when onnxruntime-gpu and a GPU are there, else CPU (default)")
    args = ap.parse_args(argv[1:])
    try:
        run(args.input_dir, args.output_dir, args.device)
    except InputError as exc:
        log(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
