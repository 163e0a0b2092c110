"""Per-voxel features of the voxel-classifier, shared by train.py and predict.py (numpy + scipy only).

The image is first brought to RAS+ axis order (`to_ras`) and block-averaged to a working grid of
about `WORK_SPACING_MM` (`block_factors`, `downsample`): a 512x512 CT and a 176x144 one then give
features of the same physical meaning, and a full-size case costs about as much as a small one.
Features (`FEATURE_NAMES`) are intensities at several Gaussian scales (sigmas in mm), a gradient
magnitude, a local standard deviation, air and bone fractions, and the position of the voxel in the
body: normalised to the body's bounding box, in mm from its centre, and in mm from its outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

WORK_SPACING_MM = (2.5, 2.5, 5.0)
BODY_HU = -400.0  # above: tissue; the body is what is above it, holes filled slice by slice
SOFT_WINDOW_HU = (-150.0, 350.0)  # gas and bone would dominate the smoothed soft-tissue features

_VOLUME_FEATURES = (
    "hu", "soft_g2", "soft_g4", "soft_g8", "soft_g16", "hu_g3", "soft_grad2_per_mm", "soft_std4",
    "air_frac8", "bone_frac12", "depth_mm",
)
_POSITION_FEATURES = ("x_norm", "y_norm", "z_norm", "x_mm", "y_mm", "z_from_top_mm")
FEATURE_NAMES = _VOLUME_FEATURES + _POSITION_FEATURES


def block_factors(spacing_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Integer block size per axis that brings `spacing_mm` nearest to WORK_SPACING_MM (>= 1)."""
    fx, fy, fz = (max(1, round(w / s)) for w, s in zip(WORK_SPACING_MM, spacing_mm, strict=True))
    return fx, fy, fz


def downsample(image: NDArray[np.floating], factors: tuple[int, int, int]) -> NDArray[np.float32]:
    """Block mean by `factors`; the last partial block of each axis is padded by edge replication."""
    if factors == (1, 1, 1):
        return np.asarray(image, np.float32)
    pad = [(0, (-n) % f) for n, f in zip(image.shape, factors, strict=True)]
    padded = np.pad(np.asarray(image, np.float32), pad, mode="edge")
    (nx, ny, nz), (fx, fy, fz) = padded.shape, factors
    return padded.reshape(nx // fx, fx, ny // fy, fy, nz // fz, fz).mean(axis=(1, 3, 5), dtype=np.float32)


_Weights = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32]]


def upsample_weights(n_out: int, n_work: int, factor: int) -> _Weights:
    """Linear interpolation from block centres: output index j reads (1-w)*a[i0] + w*a[i1]."""
    u = np.clip((np.arange(n_out) - (factor - 1) / 2) / factor, 0, n_work - 1)
    i0 = np.floor(u).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_work - 1)
    return i0, i1, (u - i0).astype(np.float32)


def _lerp(a: NDArray[np.float32], axis: int, weights: _Weights) -> NDArray[np.float32]:
    i0, i1, w = weights
    shape = [1] * a.ndim
    shape[axis] = len(w)
    w = w.reshape(shape)
    lo = np.take(a, i0, axis=axis)
    lo *= 1 - w
    lo += np.take(a, i1, axis=axis) * w
    return lo


def upsample_slab(
    work: NDArray[np.float32], out_shape: tuple[int, int, int], factors: tuple[int, int, int], z0: int, z1: int,
) -> NDArray[np.float32]:
    """Output slices z0:z1 of the linear upsampling of `work` (..., wx, wy, wz) to `out_shape`."""
    ax = work.ndim - 3
    wz = upsample_weights(out_shape[2], work.shape[-1], factors[2])
    needed = np.unique(np.concatenate([wz[0][z0:z1], wz[1][z0:z1]]))
    sub = np.take(work, needed, axis=ax + 2)
    remap = np.searchsorted(needed, np.arange(needed.max() + 1))
    a = _lerp(sub, ax + 2, (remap[wz[0][z0:z1]], remap[wz[1][z0:z1]], wz[2][z0:z1]))
    if factors[0] > 1 or a.shape[ax] != out_shape[0]:
        a = _lerp(a, ax, upsample_weights(out_shape[0], work.shape[ax], factors[0]))
    if factors[1] > 1 or a.shape[ax + 1] != out_shape[1]:
        a = _lerp(a, ax + 1, upsample_weights(out_shape[1], work.shape[ax + 1], factors[1]))
    return a


def body_mask(image_hu: NDArray[np.float32], spacing_mm: tuple[float, float, float]) -> NDArray[np.bool_]:
    """The patient: tissue above BODY_HU, holes (lungs, gas) filled per slice, largest 3D component."""
    smooth = ndimage.gaussian_filter(image_hu, [2.0 / s for s in spacing_mm], mode="nearest", truncate=3.0)
    mask = smooth > BODY_HU
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    mask = ndimage.binary_fill_holes(mask, structure=in_plane)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == int(sizes.argmax())
    return mask


def _bbox(mask: NDArray[np.bool_]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Inclusive (lo, hi) index of `mask` per axis; the whole axis where `mask` is empty."""
    out = []
    for a, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))
        out.append((int(hit[0]), int(hit[-1])) if len(hit) else (0, n - 1))
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class CaseFeatures:
    """Feature volumes of one case on its working grid, and what the position features need."""

    volumes: NDArray[np.float32]  # (len(_VOLUME_FEATURES), nx, ny, nz)
    body: NDArray[np.bool_]
    spacing_mm: tuple[float, float, float]
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # inclusive (lo, hi) per axis

    def matrix(self, index: tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]) -> NDArray[np.float32]:
        """(n, len(FEATURE_NAMES)) features of the voxels at `index` (as np.nonzero gives)."""
        ix, iy, iz = index
        out = np.empty((len(ix), len(FEATURE_NAMES)), np.float32)
        out[:, : len(_VOLUME_FEATURES)] = self.volumes[:, ix, iy, iz].T
        col = len(_VOLUME_FEATURES)
        for a, i in enumerate((ix, iy, iz)):
            lo, hi = self.bbox[a]
            out[:, col + a] = (i - lo) / max(hi - lo, 1)
        for a, i in enumerate((ix, iy)):
            lo, hi = self.bbox[a]
            out[:, col + 3 + a] = (i - (lo + hi) / 2) * self.spacing_mm[a]
        out[:, col + 5] = (self.body.shape[2] - 1 - iz) * self.spacing_mm[2]
        return out


def case_features(work_hu: NDArray[np.float32], spacing_mm: tuple[float, float, float]) -> CaseFeatures:
    """Feature volumes of a RAS+ image already on its working grid (`spacing_mm` its spacing)."""

    def sig(mm: float) -> list[float]:
        return [mm / s for s in spacing_mm]

    def gauss(a: NDArray[np.float32], mm: float) -> NDArray[np.float32]:
        return ndimage.gaussian_filter(a, sig(mm), mode="nearest", truncate=3.0)

    hu = np.clip(work_hu, -1024, 1500).astype(np.float32)
    soft = np.clip(hu, *SOFT_WINDOW_HU)
    body = body_mask(hu, spacing_mm)
    vols: dict[str, NDArray[np.float32]] = {"hu": hu}
    for mm in (2, 4, 8, 16):
        vols[f"soft_g{mm}"] = gauss(soft, mm)
    vols["hu_g3"] = gauss(hu, 3)
    grad2 = np.zeros_like(soft)
    for axis in range(3):
        order = [0, 0, 0]
        order[axis] = 1
        d = ndimage.gaussian_filter(soft, sig(2), order=order, mode="nearest", truncate=3.0)
        grad2 += (d / np.float32(spacing_mm[axis])) ** 2
    vols["soft_grad2_per_mm"] = np.sqrt(grad2)
    del grad2
    mean4 = vols["soft_g4"]
    vols["soft_std4"] = np.sqrt(np.maximum(gauss(soft * soft, 4) - mean4 * mean4, 0))
    vols["air_frac8"] = gauss((hu < BODY_HU).astype(np.float32), 8)
    vols["bone_frac12"] = gauss((hu > 180).astype(np.float32), 12)
    vols["depth_mm"] = ndimage.distance_transform_edt(body, sampling=spacing_mm).astype(np.float32)
    volumes = np.stack([vols[name] for name in _VOLUME_FEATURES])
    return CaseFeatures(volumes, body, spacing_mm, _bbox(body))
