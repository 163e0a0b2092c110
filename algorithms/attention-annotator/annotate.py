"""The attention-map annotator's entry point: `annotate.py INPUT_DIR OUTPUT_DIR [options]`.

One case per run (see "Annotator contract" in algorithms/README.md). Reads
`INPUT_DIR/<case>_0000.nii.gz` (the CT; only its header, for the grid) and
`INPUT_DIR/segmenters/<algorithm>/probabilities/<organ>.nii.gz` from N >= 2 segmenters
(uint8 = round(255 p), or float16/float32 in [0, 1]), and writes on the CT's grid, with its header:

- `OUTPUT_DIR/<case>.nii.gz`: the averaged pseudo label (uint8, FLARE numbering);
- `OUTPUT_DIR/attention/<organ>.nii.gz`: the binary attention map (uint8 0/1);
- `OUTPUT_DIR/heatmap/<organ>.nii.gz`: the heat map as uint8 round(255 * heat);
- `OUTPUT_DIR/attention.json`: per-organ attention sizes and the settings.

The map's definition is in attention.py. Logs to stderr; exit status 0 on success, 2 with a
one-line message on bad input or options.
"""

from __future__ import annotations

import os

# One thread per library: the sandbox caps processes + threads, and nothing here needs BLAS threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from attention import Settings, annotate  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

VERSION = "0.1.0"
IMAGE_SUFFIX = "_0000.nii.gz"
SEGMENTERS_DIR = "segmenters"
PROBABILITY_DIR = "probabilities"
ATTENTION_DIR = "attention"
HEATMAP_DIR = "heatmap"
SUMMARY_FILE = "attention.json"

# The annotator's profile, atlas8: the AbdomenAtlas-8K organs with their FLARE22 label values.
ORGANS: dict[str, int] = {
    "liver": 1,
    "right_kidney": 2,
    "spleen": 3,
    "pancreas": 4,
    "aorta": 5,
    "inferior_vena_cava": 6,
    "gallbladder": 9,
    "stomach": 11,
    "left_kidney": 13,
}
_NAME = re.compile(r"[A-Za-z0-9._-]+")


class InputError(Exception):
    """Bad input, output folder or option: reported as one line, exit status 2."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def find_case(input_dir: Path) -> tuple[str, Path]:
    """The case id and path of the one `<case>_0000.nii.gz` in `input_dir`."""
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    images = sorted(p for p in input_dir.iterdir() if p.name.endswith(IMAGE_SUFFIX) and p.is_file())
    if len(images) != 1:
        found = ", ".join(sorted(p.name for p in input_dir.iterdir())[:5]) or "nothing"
        raise InputError(f"{input_dir}: expected exactly one <case>{IMAGE_SUFFIX}, found {len(images)} (folder holds: {found})")
    case = images[0].name[: -len(IMAGE_SUFFIX)]
    if not case or not _NAME.fullmatch(case):
        raise InputError(f"{images[0]}: case id {case!r} is empty or has characters other than letters, digits, '.', '_', '-'")
    return case, images[0]


def find_segmenters(input_dir: Path, organs: list[str]) -> dict[str, Path]:
    """Segmenter name -> its probabilities folder; every one must hold every organ."""
    root = input_dir / SEGMENTERS_DIR
    if not root.is_dir():
        raise InputError(f"{root}: no such folder; stage each segmenter's probabilities as "
                         f"{SEGMENTERS_DIR}/<algorithm>/{PROBABILITY_DIR}/<organ>.nii.gz")
    folders = {p.name: p / PROBABILITY_DIR for p in sorted(root.iterdir()) if p.is_dir()}
    if len(folders) < 2:
        raise InputError(f"{root}: {len(folders)} segmenter folder(s) ({', '.join(folders) or 'none'}); the attention map needs N >= 2")
    for name, folder in folders.items():
        missing = [organ for organ in organs if not (folder / f"{organ}.nii.gz").is_file()]
        if missing:
            raise InputError(f"{folder}: missing {', '.join(f'{m}.nii.gz' for m in missing)}; the segmenter {name!r} must write "
                             "probabilities for every organ of the annotator's profile")
    return folders


def read_grid(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is a bad input
        raise InputError(f"{path}: unreadable as NIfTI ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path}: not a NIfTI-1/2 image ({type(img).__name__})")
    if len(img.shape) != 3 and not (len(img.shape) == 4 and img.shape[3] == 1):
        raise InputError(f"{path}: image has shape {img.shape}; expected a 3D volume")
    return img


def read_probability(path: Path, reference: nib.Nifti1Image) -> NDArray[Any]:
    """One probability volume, uint8 or float32 in [0, 1], checked against the CT's grid."""
    img = read_grid(path)
    shape = tuple(reference.shape[:3])
    if tuple(img.shape[:3]) != shape:
        raise InputError(f"{path}: shape {tuple(img.shape)} differs from the image's {shape}; write probabilities on the input's grid")
    if not np.allclose(img.affine, reference.affine, rtol=0, atol=1e-3):
        raise InputError(f"{path}: affine differs from the image's; write probabilities with the input's header")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: voxel data unreadable ({type(exc).__name__}: {exc})") from None
    data = data.reshape(shape)
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind != "f":
        raise InputError(f"{path}: dtype {data.dtype}; use uint8 = round(255 p) or float16/float32 in [0, 1]")
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise InputError(f"{path}: probabilities hold NaN or infinite values")
    low, high = float(data.min()), float(data.max())
    if low < 0 or high > 1:
        raise InputError(f"{path}: probabilities span [{low:.4g}, {high:.4g}]; expected values in [0, 1]")
    return data


def save_like(data: NDArray[np.uint8], reference: nib.Nifti1Image, path: Path) -> None:
    """Write `data` with the reference's header and affine as uint8."""
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    out = type(reference)(data, reference.affine, header=header)
    out.header.set_slope_inter(1.0, 0.0)
    nib.save(out, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="annotate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="input folder (see the annotator contract)")
    parser.add_argument("output", type=Path, help="output folder (writable)")
    parser.add_argument("--std-threshold", type=float, default=defaults.std_threshold,
                        help=f"inconsistency: std over segmenters (ddof 0) kept where > this (default {defaults.std_threshold})")
    parser.add_argument("--entropy-threshold", type=float, default=defaults.entropy_threshold,
                        help=f"uncertainty: mean of -p ln p kept where > this (default {defaults.entropy_threshold})")
    parser.add_argument("--erosions", type=int, default=defaults.erosions,
                        help=f"3x3x3 binary erosions applied to each kept mask (default {defaults.erosions})")
    parser.add_argument("--dilations", type=int, default=defaults.dilations,
                        help=f"3x3x3 binary dilations applied after the erosions (default {defaults.dilations})")
    parser.add_argument("--pseudo-threshold", type=float, default=defaults.pseudo_threshold,
                        help=f"averaged pseudo label: mean probability > this (default {defaults.pseudo_threshold})")
    parser.add_argument("--support-dilations", type=int, default=defaults.support_dilations,
                        help="zero each segmenter's probabilities outside this many 3x3x3 dilations of its own mask "
                             f"p > 0.5, as the authors did; -1 keeps them all (default {defaults.support_dilations})")
    parser.add_argument("--organs", default=",".join(ORGANS),
                        help="comma-separated organs to annotate, e.g. to skip those the source data set already "
                             "annotates (default: the 9 AbdomenAtlas-8K organs)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    log(f"attention-annotator {VERSION}: AbdomenAtlas-8K attention maps (inconsistency, uncertainty, overlap)")
    log("device: cpu")
    try:
        settings = Settings(std_threshold=args.std_threshold, entropy_threshold=args.entropy_threshold, erosions=args.erosions,
                            dilations=args.dilations, pseudo_threshold=args.pseudo_threshold,
                            support_dilations=args.support_dilations)
    except ValueError as exc:
        raise InputError(f"bad option: {exc}") from None
    organs = [o.strip() for o in args.organs.split(",") if o.strip()]
    unknown = [o for o in organs if o not in ORGANS]
    if unknown or not organs or len(set(organs)) != len(organs):
        raise InputError(f"--organs {args.organs!r}: give distinct names among {', '.join(ORGANS)}")
    organs = [o for o in ORGANS if o in organs]  # label order

    input_dir, output_dir = Path(args.input), Path(args.output)
    case, image_path = find_case(input_dir)
    env_case = os.environ.get("HARNESS_CASE")
    if env_case and env_case != case:
        log(f"warning: HARNESS_CASE={env_case!r} differs from the input file's case id {case!r}; using {case!r}")
    if not output_dir.is_dir() or not os.access(output_dir, os.W_OK):
        raise InputError(f"output folder {output_dir} does not exist or is not writable")
    reference = read_grid(image_path)
    shape = tuple(int(n) for n in reference.shape[:3])
    segmenters = find_segmenters(input_dir, organs)
    log(f"case {case}: {'x'.join(map(str, shape))} voxels, {len(segmenters)} segmenters ({', '.join(segmenters)}), {len(organs)} organs")

    def load(organ: str) -> Iterator[NDArray[Any]]:
        for folder in segmenters.values():
            yield read_probability(folder / f"{organ}.nii.gz", reference)

    t1 = time.perf_counter()
    try:
        maps = annotate(load, [(o, ORGANS[o]) for o in organs], shape, settings)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    t_compute = time.perf_counter() - t1

    t2 = time.perf_counter()
    (output_dir / ATTENTION_DIR).mkdir(exist_ok=True)
    (output_dir / HEATMAP_DIR).mkdir(exist_ok=True)
    save_like(maps.pseudo_label, reference, output_dir / f"{case}.nii.gz")
    summary: dict[str, Any] = {"case": case, "models": list(segmenters), "organs": {}, "attention_voxels": 0,
                               "settings": settings.as_dict()}
    for organ in organs:
        organ_maps = maps.organs[organ]
        save_like(organ_maps.full(organ_maps.attention, shape, np.uint8), reference, output_dir / ATTENTION_DIR / f"{organ}.nii.gz")
        save_like(organ_maps.full(organ_maps.heat_uint8, shape), reference, output_dir / HEATMAP_DIR / f"{organ}.nii.gz")
        stats = organ_maps.stats()
        summary["organs"][organ] = stats
        summary["attention_voxels"] += stats["attention_voxels"]
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    t_write = time.perf_counter() - t2

    ranked = sorted(organs, key=lambda o: -summary["organs"][o]["heat_sum"])
    log("attention voxels: " + ", ".join(f"{o} {summary['organs'][o]['attention_voxels']}" for o in ranked)
        + f"; total {summary['attention_voxels']}")
    log(f"timings (s): read + compute {t_compute:.2f}, write {t_write:.2f}, total {time.perf_counter() - t0:.2f}")


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv[1:])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        run(args)
    except InputError as exc:
        log(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
