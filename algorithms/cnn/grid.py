"""The working grid of the cnn segmenter, shared by train.py (host) and predict.py (image).

Only numpy and scipy: predict.py runs in the image, where neither harness nor the training
framework is installed. Arrays are RAS+ voxel order (x, y, z); spacings are millimetres.

The network sees every case on the same coarse grid, about `WORK_SPACING_MM` (3 x 3 x 6 mm):
phantoms and real scans alike are resampled there (anti-aliased linear interpolation), so the
network meets one voxel size whatever the input's and its cost is set by the field of view (about
150 x 150 x 45 voxels for an abdomen), not by the input's matrix. Its softmax probabilities are
interpolated back (trilinear) onto the input's grid, where they still sum to 1, so a smooth organ
boundary is placed to a fraction of a working voxel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

WORK_SPACING_MM = (3.0, 3.0, 6.0)
# Two input channels: a soft-tissue window (organs) and a wide one (air, lung, fat, bone apart).
HU_WINDOWS = ((-200.0, 300.0), (-1000.0, 1000.0))
PAD_HU = -1000.0  # outside the field of view: air
# The network pools by (2, 2, 1), (2, 2, 2), (2, 2, 2): patch sides must be multiples of these.
PATCH_MULTIPLE = (8, 8, 4)
# Largest inference window, in working voxels (480 x 480 x 336 mm): ONNX Runtime needs about 0.4 KB
# per window voxel (~600 MB here), whatever the case's size.
WINDOW_MAX = (160, 160, 56)
WINDOW_OVERLAP = 0.25  # share of a window's side that its neighbour covers too (at least)
N_CLASSES = 14  # background + the 13 FLARE22 organs
CHUNK_VOXELS = 1 << 22  # resampling works through slabs of this many output voxels (16 MB of float32)


def working_shape(shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> tuple[int, int, int]:
    """The working grid covering the same field of view: about WORK_SPACING_MM per voxel."""
    n = [max(1, round(size * s / t)) for size, s, t in zip(shape, spacing_mm, WORK_SPACING_MM, strict=True)]
    return (n[0], n[1], n[2])


def resample_axis(data: NDArray[np.float32], axis: int, size: int, *, antialias: bool = True) -> NDArray[np.float32]:
    """Linear interpolation of `data` to `size` samples along `axis`, field of view kept.

    Voxel centres map as in a cell-centred grid: old index i sits at new position
    (i + 0.5) * size / n - 0.5. Shrinking by a factor f > 1 first smooths with a Gaussian of
    sigma (f - 1) / 2 voxels (the usual anti-aliasing choice); growing does not smooth, so a
    probability map interpolated up stays within its neighbours' range and keeps summing to 1.
    """
    n = data.shape[axis]
    if size == n:
        return data
    factor = n / size
    pos = np.clip((np.arange(size) + 0.5) * factor - 0.5, 0, n - 1)
    sigma = (factor - 1) / 2 if antialias and factor > 1 else 0.0
    return interpolate_axis(data, axis, pos, sigma=sigma)


def interpolate_axis(data: NDArray[np.float32], axis: int, pos: NDArray[np.float64], *, sigma: float = 0.0) -> NDArray[np.float32]:
    """Linear interpolation of `data` along `axis` at positions `pos` (index units, in [0, n - 1]),
    after a Gaussian of `sigma` voxels along that axis when sigma > 0.

    Works through slabs of about CHUNK_VOXELS along another axis (the operation is independent
    across them), so the temporaries stay small on a 512 x 512 x 500 scan: the output is the
    only full-size array allocated.
    """
    n = data.shape[axis]
    out_shape = list(data.shape)
    out_shape[axis] = len(pos)
    out = np.empty(out_shape, np.float32)
    lo = np.minimum(np.floor(pos).astype(np.intp), max(n - 2, 0))
    shape = [1] * data.ndim
    shape[axis] = len(pos)
    w = (pos - lo).astype(np.float32).reshape(shape)
    slab_axis = max((a for a in range(data.ndim) if a != axis), key=lambda a: data.shape[a], default=None)
    if slab_axis is None:
        slab_axis, step = axis, n  # 1D: one piece
    else:
        per_index = max(1, int(np.prod(out_shape)) // out_shape[slab_axis])
        step = max(1, CHUNK_VOXELS // per_index)
    for start in range(0, data.shape[slab_axis] if slab_axis != axis else 1, step):
        index: list[slice] = [slice(None)] * data.ndim
        if slab_axis != axis:
            index[slab_axis] = slice(start, start + step)
        piece = data[tuple(index)]
        if sigma > 0:
            piece = ndimage.gaussian_filter1d(piece, sigma=sigma, axis=axis, mode="nearest", truncate=3.0)
        if n == 1:
            out[tuple(index)] = np.repeat(piece, len(pos), axis=axis)
            continue
        a = np.take(piece, lo, axis=axis).astype(np.float32, copy=False)
        b = np.take(piece, lo + 1, axis=axis).astype(np.float32, copy=False)
        b -= a
        b *= w
        a += b
        out[tuple(index)] = a
    return out


def interpolate_block(block: NDArray[np.float32], start: tuple[int, ...], work_shape: tuple[int, ...],
                      shape: tuple[int, ...]) -> tuple[tuple[slice, ...], NDArray[np.float32]]:
    """Trilinear interpolation onto the input grid (`shape`) of the working-grid block whose first
    voxel is `start`, for the input voxels whose working position lies inside the block.

    Returns (slices of the input grid, values): the same values as interpolating the whole working
    volume, so a block grown by one voxel around an organ's non-negligible p loses nothing.
    """
    out = block
    region = []
    for axis, (s, n_work, n) in enumerate(zip(start, work_shape, shape, strict=True)):
        pos = np.clip((np.arange(n) + 0.5) * (n_work / n) - 0.5, 0, n_work - 1)
        lo, hi = np.searchsorted(pos, s, "left"), np.searchsorted(pos, s + block.shape[axis] - 1, "right")
        region.append(slice(int(lo), int(hi)))
        out = interpolate_axis(out, axis, pos[lo:hi] - s)
    return tuple(region), out


def resample(data: NDArray[np.float32], shape: tuple[int, ...], *, antialias: bool = True) -> NDArray[np.float32]:
    """Separable linear resampling of the last len(shape) axes; shrinking axes go first (less work)."""
    lead = data.ndim - len(shape)
    order = sorted(range(len(shape)), key=lambda a: shape[a] / data.shape[lead + a])
    out = data
    for a in order:
        out = resample_axis(out, lead + a, shape[a], antialias=antialias)
    return np.ascontiguousarray(out, dtype=np.float32)


def channels(hu: NDArray[np.float32]) -> NDArray[np.float32]:
    """The network's input, (2, X, Y, Z) float32 in [-1, 1]: HU clipped to each window and scaled."""
    out = np.empty((len(HU_WINDOWS), *hu.shape), np.float32)
    for c, (lo, hi) in enumerate(HU_WINDOWS):
        np.clip(hu, lo, hi, out=out[c])
        out[c] -= (lo + hi) / 2
        out[c] *= 2 / (hi - lo)
    return out


def window_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The inference window for a working volume of `shape`: the volume itself (rounded up to the
    network's multiples) when it fits in WINDOW_MAX, else WINDOW_MAX along the axes that do not."""
    w = [min(most, -(-n // m) * m) for n, most, m in zip(shape, WINDOW_MAX, PATCH_MULTIPLE, strict=True)]
    return (w[0], w[1], w[2])


def window_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows of `patch` covering `length` (>= patch) with about `overlap` overlap."""
    if length <= patch:
        return [0]
    step = max(1, int(patch * (1 - overlap)))
    count = math.ceil((length - patch) / step) + 1
    return sorted({round(i * (length - patch) / (count - 1)) for i in range(count)})


def gaussian_weight(patch: tuple[int, int, int], *, sigma_fraction: float = 0.125) -> NDArray[np.float32]:
    """Blending weight of a window: a Gaussian centred on the patch (sigma = 1/8 of each side),
    floored at 1e-3 of its peak so that every voxel keeps a positive weight."""
    w = np.ones((1, 1, 1), np.float32)
    for a, p in enumerate(patch):
        x = np.arange(p, dtype=np.float32) - (p - 1) / 2
        g = np.exp(-0.5 * (x / (sigma_fraction * p)) ** 2).astype(np.float32)
        shape = [1, 1, 1]
        shape[a] = p
        w = w * g.reshape(shape)
    w /= w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


def windows(shape: tuple[int, int, int], patch: tuple[int, int, int], overlap: float) -> Iterator[tuple[slice, slice, slice]]:
    """The sliding windows (as slices) over a volume of `shape` (each side >= the patch's)."""
    starts = [window_starts(n, p, overlap) for n, p in zip(shape, patch, strict=True)]
    for i in starts[0]:
        for j in starts[1]:
            for k in starts[2]:
                yield (slice(i, i + patch[0]), slice(j, j + patch[1]), slice(k, k + patch[2]))


def sliding_window(x: NDArray[np.float32], predict_patch: Callable[[NDArray[np.float32]], NDArray[np.float32]], *,
                   patch: tuple[int, int, int], overlap: float = WINDOW_OVERLAP) -> NDArray[np.float32]:
    """Class probabilities (N_CLASSES, X, Y, Z) of the input channels x (C, X, Y, Z).

    `predict_patch` maps a (1, C, *patch) array to (1, N_CLASSES, *patch) softmax probabilities.
    The volume is padded with air up to the patch size (a multiple of the network's pooling), windows
    overlap by `overlap` and are blended with Gaussian weights, so memory is bounded by the
    accumulator (N_CLASSES floats per working voxel) and one patch, whatever the case's size.
    """
    spatial = (x.shape[1], x.shape[2], x.shape[3])
    size = tuple(max(n, p) for n, p in zip(spatial, patch, strict=True))
    padded = x
    if size != spatial:
        pad_value = channels(np.full((1, 1, 1), PAD_HU, np.float32))[:, 0, 0, 0]
        padded = np.empty((x.shape[0], *size), np.float32)
        padded[:] = pad_value[:, None, None, None]
        padded[:, : spatial[0], : spatial[1], : spatial[2]] = x
    weight = gaussian_weight(patch)
    acc = np.zeros((N_CLASSES, *size), np.float32)
    norm = np.zeros(size, np.float32)
    for sl in windows((size[0], size[1], size[2]), patch, overlap):
        probs = predict_patch(np.ascontiguousarray(padded[(slice(None), *sl)])[None])[0]
        acc[(slice(None), *sl)] += probs * weight
        norm[sl] += weight
    acc /= norm
    return acc[:, : spatial[0], : spatial[1], : spatial[2]]
