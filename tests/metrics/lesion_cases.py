"""Lesion phantoms for the lesion-wise and instance-wise metrics (tests and benchmarks/bench_lesion_metrics.py).

`tumour_phantom` paints BraTS-like tumours (label 2 oedema around label 1 necrosis and a label 3
enhancing rim), small satellite lesions and a few two-part lesions; `perturbed_prediction` makes
a plausible prediction from it: shifted and eroded or dilated lesions, one lesion missed, false
positive blobs, a lesion split in two.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


def _ellipsoid(
    shape: tuple[int, ...], centre: NDArray[np.float64], radii: NDArray[np.float64]
) -> tuple[tuple[slice, ...], NDArray[np.float64]]:
    """The ellipsoid's box and, over it, the squared normalised radius (<= 1 inside)."""
    lo = np.maximum(np.floor(centre - radii).astype(int), 0)
    hi = np.minimum(np.ceil(centre + radii).astype(int) + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    return box, np.asarray(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)))


def tumour_phantom(rng: np.random.Generator, shape: tuple[int, int, int], *, n_lesions: int) -> NDArray[np.uint8]:
    """A label map (0 background, 1 necrosis, 2 oedema, 3 enhancing) with `n_lesions` lesions of
    varied size (satellites of a few voxels to tumours of ~10^4 voxels), some touching each other."""
    labels = np.zeros(shape, dtype=np.uint8)
    scale = min(shape) / 100.0
    for i in range(n_lesions):
        radius = rng.uniform(1.0, 3.0) if i % 3 == 2 else rng.uniform(4.0, 14.0) * max(scale, 0.3)
        radii = radius * rng.uniform(0.7, 1.3, size=3)
        centre = rng.uniform(radii + 1, np.array(shape) - radii - 2)
        box, r2 = _ellipsoid(shape, centre, radii)
        region = labels[box]
        region[(r2 <= 1.0) & (region == 0)] = 2
        region[r2 <= 0.36] = 3
        region[r2 <= 0.12] = 1
    return labels


def perturbed_prediction(rng: np.random.Generator, labels: NDArray[np.uint8], *, n_false_positives: int = 3) -> NDArray[np.uint8]:
    """A prediction from `labels`: the whole map shifted by up to a voxel per axis, one label's boundary moved
    by a voxel, one lesion dropped, one cut in two, and `n_false_positives` blobs added."""
    pred = np.roll(labels, tuple(int(x) for x in rng.integers(-1, 2, size=3)), axis=(0, 1, 2))
    component, n = ndimage.label(pred > 0, structure=np.ones((3, 3, 3)))
    if n >= 2:
        pred[component == int(rng.integers(1, n + 1))] = 0  # a missed lesion
        sizes = np.bincount(component.reshape(-1))
        sizes[0] = 0
        big = int(np.argmax(sizes))
        zs = np.flatnonzero((component == big).any(axis=(0, 1)))
        if zs.size > 4:
            cut = int(zs[zs.size // 2])
            pred[:, :, cut: cut + 2][component[:, :, cut: cut + 2] == big] = 0  # split in two
    grow = rng.integers(0, 3)
    if grow == 1:
        pred[(pred == 0) & ndimage.binary_dilation(pred == 2)] = 2
    elif grow == 2:
        pred[(pred == 3) & ~ndimage.binary_erosion(pred == 3)] = 1
    for _ in range(n_false_positives):
        radii = rng.uniform(1.0, 5.0, size=3)
        centre = rng.uniform(radii + 1, np.array(labels.shape) - radii - 2)
        box, r2 = _ellipsoid(labels.shape, centre, radii)
        pred[box][r2 <= 1.0] = int(rng.integers(1, 4))
    return pred


def random_lesion_masks(rng: np.random.Generator, shape: tuple[int, ...], *, fill: float) -> NDArray[np.bool_]:
    """Many small random components: thresholded low-pass noise."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(0.7, 1.6))
    return noise > np.quantile(noise, 1.0 - fill)
