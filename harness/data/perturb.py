"""Simulated predictions: a ground-truth label map with the kinds of errors real models make.

Per organ: the boundary moves in and out by a smooth random offset (about one voxel, in mm so it
looks alike at any spacing), sometimes the whole organ is shifted by a voxel, its top or bottom
slice is lost, a bite is missed, a false-positive island appears nearby, a strip next to a
neighbour takes the neighbour's label, and rarely a small organ (adrenal gland) is missed entirely.
Typical DSC is 0.75-0.97 per organ, lower for small ones, so demo scores are neither perfect nor
silly. Only `write_predictions` touches the disk.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from harness.data.synth import save_nifti_gz
from harness.errors import DataError, SpecError

SMALL_ORGAN_MM3 = 10_000.0  # below this an organ may be missed entirely (the adrenal glands)

# Probabilities per organ and case.
P_MISS_SMALL = 0.05
P_SHIFT = 0.25
P_DROP_END_SLICE = 0.15
P_MISSED_PART = 0.15
P_FALSE_POSITIVE = 0.2
P_SWAP = 0.1


def _smooth_field(shape: tuple[int, ...], spacing_mm: Sequence[float] | NDArray[np.float64],
                  rng: np.random.Generator,
                  *, correlation_mm: float) -> NDArray[np.float32]:
    """Unit-variance random field that varies over `correlation_mm`.

    Linear interpolation of a coarse grid of normal values, one axis at a time (separable: cheap).
    """
    coarse_shape = [max(2, math.ceil(n * s / correlation_mm) + 1) for n, s in zip(shape, spacing_mm, strict=True)]
    field = rng.standard_normal(coarse_shape)
    for axis, (n, c) in enumerate(zip(shape, coarse_shape, strict=True)):
        pos = np.linspace(0, c - 1, n)
        lo = np.minimum(np.floor(pos).astype(int), c - 2)
        frac = pos - lo
        weights = np.zeros((n, c))
        weights[np.arange(n), lo] = 1 - frac
        weights[np.arange(n), lo + 1] = frac
        field = np.moveaxis(np.tensordot(weights, field, axes=([1], [axis])), 0, axis)
    # Interpolating between independent values lowers the variance; put it back to 1.
    return (field / max(float(field.std()), 1e-6)).astype(np.float32)


def _box(mask: NDArray[np.bool_], pad: Sequence[int]) -> tuple[slice, ...]:
    """Bounding box of `mask`, padded and clipped to the array."""
    box = []
    for axis, p in enumerate(pad):
        any_other = mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis))
        idx = np.nonzero(any_other)[0]
        box.append(slice(max(0, idx[0] - p), min(mask.shape[axis], idx[-1] + p + 1)))
    return tuple(box)


def _shift(mask: NDArray[np.bool_], offset: Sequence[int]) -> NDArray[np.bool_]:
    """`mask` moved by whole voxels; what moves out is lost, what moves in is empty."""
    out = np.zeros_like(mask)
    src, dst = [], []
    for n, o in zip(mask.shape, offset, strict=True):
        src.append(slice(max(0, -o), n - max(0, o)))
        dst.append(slice(max(0, o), n - max(0, -o)))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def _perturb_organ(
    gt: NDArray[np.bool_], spacing: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.bool_]:
    """One organ's simulated prediction inside its (padded) box."""
    h = float(spacing[:2].min())
    inside = ndimage.distance_transform_edt(gt, sampling=spacing)
    outside = ndimage.distance_transform_edt(~gt, sampling=spacing)
    # Signed distance to the boundary, 0 half-way between an inside and an outside voxel.
    signed = np.where(gt, -(inside - h / 2), outside - h / 2).astype(np.float32)

    # Errors of about a voxel, smaller on organs only a few voxels thick (a one-voxel error there
    # would halve them, which good models do not do).
    thickness_mm = 2 * float(inside.max())
    thin = min(1.0, thickness_mm / (5 * h))
    sigma_mm = (0.7 + 0.35 * h) * thin
    offset = _smooth_field(gt.shape, spacing, rng, correlation_mm=float(rng.uniform(15, 30)))
    offset = offset * np.float32(sigma_mm) + np.float32(rng.normal(0, 0.4 * sigma_mm))
    # Never erode an organ away altogether: keep at least its core.
    np.maximum(offset, np.float32(-0.25 * thickness_mm), out=offset)
    pred = signed < offset

    if thin == 1.0 and rng.random() < P_SHIFT:
        step = [0, 0, 0]
        step[int(rng.integers(2))] = int(rng.choice((-1, 1)))
        pred = _shift(pred, step)
    z_slices = np.nonzero(pred.any(axis=(0, 1)))[0]
    if len(z_slices) >= 4 and rng.random() < P_DROP_END_SLICE:
        pred[:, :, z_slices[-1] if rng.random() < 0.5 else z_slices[0]] = False
    volume = int(pred.sum())
    if volume > 50 and rng.random() < P_MISSED_PART:
        # A bite centred on a boundary voxel: about 5-20 % of the organ is missed.
        edge = np.argwhere(pred & (signed > -h))
        if len(edge):
            center = edge[int(rng.integers(len(edge)))]
            voxel_mm3 = float(np.prod(spacing))
            radius_mm = (2 * rng.uniform(0.05, 0.2) * volume * voxel_mm3 * 3 / (4 * np.pi)) ** (1 / 3)
            grids = np.ogrid[tuple(slice(0, n) for n in pred.shape)]
            dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, spacing, strict=True))
            pred &= dist2 > radius_mm**2
    return pred


def _island(
    label_shape: tuple[int, ...], organ: NDArray[np.bool_], spacing: NDArray[np.float64],
    rng: np.random.Generator,
) -> tuple[tuple[slice, ...], NDArray[np.bool_]] | None:
    """A false-positive blob of 1-5 % of the organ's volume, a little outside it."""
    coords = np.argwhere(organ)
    if len(coords) < 20:
        return None
    center_mm = coords.mean(axis=0) * spacing
    extent_mm = float(np.sqrt((((coords * spacing) - center_mm) ** 2).sum(axis=1).max()))
    direction = rng.normal(size=3)
    direction[2] *= 0.3  # mostly in-plane, where the neighbours are
    direction /= np.linalg.norm(direction)
    where_mm = center_mm + direction * (extent_mm + rng.uniform(5, 25))
    volume_mm3 = max(len(coords) * rng.uniform(0.01, 0.05), 8) * float(np.prod(spacing))
    radius_mm = (volume_mm3 * 3 / (4 * np.pi)) ** (1 / 3) * rng.uniform(0.8, 1.25, 3)
    lo = np.floor((where_mm - radius_mm) / spacing).astype(int)
    hi = np.ceil((where_mm + radius_mm) / spacing).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, label_shape)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    blob = sum(((g * s - c) / r) ** 2 for g, s, c, r in zip(grids, spacing, where_mm, radius_mm, strict=True)) <= 1
    return box, np.asarray(blob, bool)


def perturb_labels(
    label: NDArray[np.integer], *, rng: np.random.Generator,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
) -> NDArray[np.uint8]:
    """A plausible prediction of `label` (3D, values 0..255) with random, realistic errors (pure).

    `spacing_mm` sets the size of the errors in mm (boundary offsets of about one voxel, islands
    and bites scaled to each organ). Organs that end up overlapping keep the first one written,
    in a random order. Same `rng` state, same result.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise DataError(f"label map has {label.ndim} dimensions {label.shape}; expected 3")
    spacing = np.asarray(spacing_mm, float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise SpecError(f"spacing_mm {tuple(spacing_mm)}: expected three positive numbers")
    values = [int(v) for v in np.unique(label) if v != 0]
    pred = np.zeros(label.shape, np.uint8)
    voxel_mm3 = float(np.prod(spacing))
    pad = [int(math.ceil(12 / s)) + 2 for s in spacing]

    masks: dict[int, tuple[tuple[slice, ...], NDArray[np.bool_]]] = {}
    for value in values:
        organ = label == value
        box = _box(organ, pad)
        gt = organ[box]
        if gt.sum() * voxel_mm3 < SMALL_ORGAN_MM3 and rng.random() < P_MISS_SMALL:
            continue  # missed altogether
        masks[value] = (box, _perturb_organ(gt, spacing, rng))
    for value in rng.permutation(list(masks)):
        box, mask = masks[int(value)]
        region = pred[box]
        region[mask & (region == 0)] = value

    # Errors between structures: a strip next to a neighbour takes its label; stray islands.
    for value in values:
        if rng.random() >= P_SWAP:
            continue
        box = _box(label == value, pad)
        if (label[box] == value).sum() * voxel_mm3 < SMALL_ORGAN_MM3:
            continue  # a strip of several mm would be most of a small organ
        near = ndimage.binary_dilation(label[box] == value, iterations=2)
        neighbours = [int(v) for v in np.unique(label[box][near]) if v not in (0, value)]
        if not neighbours:
            continue
        other = neighbours[int(rng.integers(len(neighbours)))]
        dist = ndimage.distance_transform_edt(label[box] != other, sampling=spacing)
        strip = (pred[box] == value) & (dist < rng.uniform(3, 8))
        pred[box][strip] = other
    for value in values:
        if rng.random() >= P_FALSE_POSITIVE:
            continue
        blob = _island(label.shape, label == value, spacing, rng)
        if blob is not None:
            box, mask = blob
            region = pred[box]
            region[mask & (region == 0)] = value
    return pred


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """The generator of one case: depends on (seed, case id) only, not on the order of cases."""
    key = int.from_bytes(hashlib.sha256(case_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, key])


def _read_label(path: Path) -> tuple[nib.Nifti1Image, NDArray[np.uint8]]:
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is one too
            raise TypeError(f"a {type(img).__name__}, not NIfTI")
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many kinds for a broken file
        raise DataError(f"{path}: cannot be read as NIfTI ({exc}); re-export the label") from None
    if data.ndim != 3:
        raise DataError(f"{path}: shape {data.shape} is not 3D; labels must be 3D volumes")
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise DataError(f"{path}: holds non-integer values; labels must be integers 0..255")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataError(f"{path}: values {data.min()}..{data.max()} outside 0..255; use uint8 labels")
    return img, data.astype(np.uint8)


def write_predictions(
    data_dir: Path, out_dir: Path, *, seed: int,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Path]:
    """For each `labels*/<case>.nii.gz` under `data_dir`, write `out_dir/<case>.nii.gz`.

    The prediction keeps the label's grid, affine and header, as uint8; it depends only on
    (seed, case id). `progress(done, total, case_id)` is called after each case.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"--seed {seed!r}: must be an integer >= 0; e.g. --seed 0")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data {data_dir}: no such folder; give a data set with labelsTr/ or labelsTs/")
    label_dirs = sorted(p for p in data_dir.glob("labels*") if p.is_dir())
    paths = sorted(p for d in label_dirs for p in d.glob("*.nii.gz"))
    if not paths:
        raise DataError(
            f"--data {data_dir}: no labels*/<case>.nii.gz files; "
            "make a data set first with `harness data synth --out DIR`"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir}: is a file, not a folder; choose a folder path")
    if out_dir.exists() and any(out_dir.resolve() == d.resolve() for d in label_dirs):
        raise DataError(f"--out {out_dir}: is a label folder of --data; choose another folder")
    ids: dict[str, Path] = {}
    for path in paths:
        cid = path.name[: -len(".nii.gz")]
        if cid in ids:
            raise DataError(f"{path}: case id '{cid}' also in {ids[cid]}; keep one of them")
        ids[cid] = path
    out_dir.mkdir(parents=True, exist_ok=True)

    written = []
    for done, (cid, path) in enumerate(ids.items(), start=1):
        img, label = _read_label(path)
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
        pred = perturb_labels(label, rng=case_rng(seed, cid), spacing_mm=spacing)
        header = img.header.copy()
        header.set_data_dtype(np.uint8)
        out = type(img)(pred, img.affine, header=header)
        out.header.set_slope_inter(1.0, 0.0)
        written.append(save_nifti_gz(out, out_dir / f"{cid}.nii.gz"))
        if progress is not None:
            progress(done, len(ids), cid)
    return written
