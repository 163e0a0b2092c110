"""voxel-classifier: a gradient-boosted per-voxel classifier of the 13 FLARE22 organs (CPU only).

Usage: predict.py INPUT_DIR OUTPUT_DIR  (the segmenter contract of algorithms/README.md)

Reads the one `<case>_0000.nii.gz` of INPUT_DIR (CT in HU), brings it to RAS+ order and to a working
grid of about 2.5 x 2.5 x 5 mm (block means), and computes the per-voxel features of features.py.
Inside the body, slab by slab, a small organ-vs-background gate model skips the plainly background
voxels and the main HistGradientBoostingClassifier of model.joblib gives the 14 class probabilities
of the rest; stray islands of compact organs are dropped (SINGLE_PIECE). The probabilities are
interpolated linearly back to the input grid; the label map is their argmax (background included),
so an organ is the label wherever its probability is above 0.5, and wherever it is the label its
probability is above 0.5 unless no class reaches 0.5 there. Writes `<case>.nii.gz` (uint8) and
`probabilities/<organ>.nii.gz` (uint8 = round(255 * p)) on the input's grid and header. Logs the
device (cpu), timings and peak memory to stderr.

The model was trained on phantoms of another seed than the evaluation set's; see train.py and
README.md for the exact command. It needs the scikit-learn version it was trained with (pinned in
requirements.txt); this file imports no harness code.
"""

from __future__ import annotations

import os

# Before numpy and scikit-learn start their thread pools: the sandbox's pids limit counts threads,
# and a container sees every core of the host.
_THREADS = str(max(1, min(4, len(os.sched_getaffinity(0)))))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning idle threads only slow a shared CPU down

import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import features  # noqa: E402
import joblib  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from nibabel import orientations  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from scipy import ndimage  # noqa: E402

ORGANS = (
    "liver", "right_kidney", "spleen", "pancreas", "aorta", "inferior_vena_cava", "right_adrenal_gland",
    "left_adrenal_gland", "gallbladder", "esophagus", "stomach", "duodenum", "left_kidney",
)  # FLARE22 labels 1..13
# Compact organs that are one piece: stray islands of them are dropped (largest 26-connected
# component kept). Thin tubes (vessels, oesophagus, duodenum) and the pancreas are left as predicted.
SINGLE_PIECE = ("liver", "right_kidney", "spleen", "gallbladder", "stomach", "left_kidney")
MODEL_PATH = Path(__file__).resolve().parent / "model.joblib"
PREDICT_CHUNK_VOXELS = 300_000  # working-grid voxels per predict_proba call (~ 40 MB of features)
UPSAMPLE_CHUNK_VALUES = 24_000_000  # float32 class probabilities per output slab (~ 100 MB)

_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[voxel-classifier {time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


class InputError(Exception):
    """The input folder or image breaks the contract."""


def find_image(input_dir: Path) -> tuple[str, Path]:
    found = sorted(input_dir.glob("*_0000.nii.gz"))
    if len(found) != 1:
        names = sorted(p.name for p in input_dir.iterdir()) if input_dir.is_dir() else []
        raise InputError(f"{input_dir}: expected exactly one <case>_0000.nii.gz, found {names}")
    return found[0].name[: -len("_0000.nii.gz")], found[0]


def load_model() -> dict:
    model = joblib.load(MODEL_PATH)
    if model["sklearn_version"] != sklearn.__version__:
        raise InputError(
            f"{MODEL_PATH.name}: trained with scikit-learn {model['sklearn_version']}, this is {sklearn.__version__}; "
            "install the version pinned in requirements.txt or retrain with train.py"
        )
    if tuple(model["feature_names"]) != features.FEATURE_NAMES:
        raise InputError(f"{MODEL_PATH.name}: features {model['feature_names']} differ from features.py's; retrain with train.py")
    return model


def predict_work_grid(model: dict, feats: features.CaseFeatures) -> tuple[NDArray[np.float32], int]:
    """(14, nx, ny, nz) class probabilities on the working grid, and how many voxels the main model saw.

    Background outside the body and where the gate's organ probability is below its threshold."""
    clf, gate, threshold = model["classifier"], model["gate"], model["gate_threshold"]
    body = feats.body
    probs = np.zeros((len(ORGANS) + 1, *body.shape), np.float32)
    probs[0] = 1.0
    columns = np.asarray(clf.classes_, np.intp)
    per_slice = max(1, int(body[:, :, 0].size))
    step = max(1, PREDICT_CHUNK_VOXELS // per_slice)
    seen = 0
    for z0 in range(0, body.shape[2], step):
        ix, iy, iz = np.nonzero(body[:, :, z0 : z0 + step])
        if len(ix) == 0:
            continue
        iz = iz + z0
        x = feats.matrix((ix, iy, iz))
        keep = gate.predict_proba(x)[:, 1] >= threshold
        ix, iy, iz, x = ix[keep], iy[keep], iz[keep], x[keep]
        seen += len(ix)
        if len(ix) == 0:
            continue
        p = clf.predict_proba(x).astype(np.float32)
        probs[0, ix, iy, iz] = 0.0
        probs[columns[:, None], ix[None, :], iy[None, :], iz[None, :]] = p.T
    return probs, seen


def keep_largest_pieces(probs: NDArray[np.float32]) -> int:
    """Drop all but the largest piece of each SINGLE_PIECE organ's argmax region, in place.

    In a dropped island the organ's probability becomes 0 and the other classes are rescaled to sum
    to 1, so the label map (argmax) and the probability maps stay consistent. Returns the voxels
    changed."""
    labels = probs.argmax(axis=0)
    changed = 0
    for organ in SINGLE_PIECE:
        c = ORGANS.index(organ) + 1
        pieces, n = ndimage.label(labels == c, structure=np.ones((3, 3, 3), bool))
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        stray = (pieces > 0) & (pieces != int(sizes.argmax()))
        others = probs[:, stray]
        others[c] = 0.0
        others[0] += others.sum(axis=0) < 1e-6  # nothing else left: background
        probs[:, stray] = others / others.sum(axis=0)
        changed += int(stray.sum())
    return changed


def to_input_grid(
    probs_work: NDArray[np.float32], shape: tuple[int, int, int], factors: tuple[int, int, int],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Label map (argmax) and uint8 organ probabilities on the full RAS grid, slab by slab."""
    labels = np.empty(shape, np.uint8)
    probs_u8 = np.empty((len(ORGANS), *shape), np.uint8)
    step = max(1, UPSAMPLE_CHUNK_VALUES // (probs_work.shape[0] * shape[0] * shape[1]))
    for z0 in range(0, shape[2], step):
        z1 = min(shape[2], z0 + step)
        p = features.upsample_slab(probs_work, shape, factors, z0, z1)
        labels[:, :, z0:z1] = p.argmax(axis=0)
        organ = p[1:]
        organ *= 255
        np.rint(organ, out=organ)
        np.clip(organ, 0, 255, out=organ)
        probs_u8[:, :, :, z0:z1] = organ
    return labels, probs_u8


def save_like(data: NDArray[np.uint8], img: nib.Nifti1Image, path: Path) -> None:
    """Save uint8 `data` on the grid and header of `img` (no intensity scaling)."""
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    out = nib.Nifti1Image(data, img.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    out.set_sform(img.get_sform(), code=int(img.header["sform_code"]))
    out.set_qform(img.get_qform(), code=int(img.header["qform_code"]))
    nib.save(out, path)


def run(input_dir: Path, output_dir: Path) -> None:
    log(f"device: cpu ({os.environ['OMP_NUM_THREADS']} threads; scikit-learn {sklearn.__version__})")
    case, image_path = find_image(input_dir)
    model = load_model()
    try:
        img = nib.load(image_path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input
        raise InputError(f"{image_path}: unreadable as NIfTI ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is one too
        raise InputError(f"{image_path.name}: not a NIfTI image ({type(img).__name__})")
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise InputError(f"{image_path.name}: shape {img.shape} is not a 3D image")
    try:
        image = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{image_path}: voxel data unreadable ({type(exc).__name__}: {exc})") from None
    native = orientations.io_orientation(img.affine)
    ras = orientations.axcodes2ornt("RAS")
    image_ras = orientations.apply_orientation(image, orientations.ornt_transform(native, ras))
    del image
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    axis_of = [int(a) for a in native[:, 0]]  # RAS axis of each input axis
    spacing = (zooms[axis_of.index(0)], zooms[axis_of.index(1)], zooms[axis_of.index(2)])
    factors = features.block_factors(spacing)
    work = features.downsample(image_ras, factors)
    shape_ras = (int(image_ras.shape[0]), int(image_ras.shape[1]), int(image_ras.shape[2]))
    del image_ras
    work_spacing = (spacing[0] * factors[0], spacing[1] * factors[1], spacing[2] * factors[2])
    log(f"case {case}: shape {img.shape}, spacing {tuple(round(s, 3) for s in spacing)} mm, "
        f"working grid {work.shape} ({factors} blocks)")

    t = time.perf_counter()
    feats = features.case_features(work, work_spacing)
    del work
    log(f"features: {len(features.FEATURE_NAMES)} per voxel, {int(feats.body.sum())} body voxels, {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    probs_work, seen = predict_work_grid(model, feats)
    del feats
    changed = keep_largest_pieces(probs_work)
    log(f"classifier: {seen} voxels past the gate, {time.perf_counter() - t:.1f} s; {changed} voxels of stray islands dropped")
    t = time.perf_counter()
    labels, probs_u8 = to_input_grid(probs_work, shape_ras, factors)
    del probs_work
    back = orientations.ornt_transform(ras, native)
    labels = orientations.apply_orientation(labels, back)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_like(np.ascontiguousarray(labels, np.uint8), img, output_dir / f"{case}.nii.gz")
    (output_dir / "probabilities").mkdir(exist_ok=True)
    for i, organ in enumerate(ORGANS):
        data = orientations.apply_orientation(probs_u8[i], back)
        save_like(np.ascontiguousarray(data, np.uint8), img, output_dir / "probabilities" / f"{organ}.nii.gz")
    log(f"outputs: {time.perf_counter() - t:.1f} s; labels present {np.unique(labels).tolist()}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"done: {time.perf_counter() - _START:.1f} s, peak memory {peak_mb:.0f} MB")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: predict.py INPUT_DIR OUTPUT_DIR", file=sys.stderr)
        return 2
    try:
        run(Path(argv[0]), Path(argv[1]))
    except InputError as exc:
        log(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
