"""Volume overlap: the confusion counts of all labels in one pass, and Dice from them."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def pair_codes(label_gt: NDArray[np.integer], label_pred: NDArray[np.integer], *, n_labels: int) -> NDArray[np.unsignedinteger]:
    """The combined index `g * n_labels + p` of every voxel, in the smallest unsigned dtype."""
    if label_gt.shape != label_pred.shape:
        raise ValueError(f"label shapes differ: {label_gt.shape} vs {label_pred.shape}")
    dtype = np.uint8 if n_labels * n_labels <= 256 else np.uint16 if n_labels * n_labels <= 65536 else np.uint32
    combined = label_gt.astype(dtype, copy=True)
    np.multiply(combined, n_labels, out=combined, casting="unsafe")
    np.add(combined, label_pred, out=combined, casting="unsafe")
    return combined  # type: ignore[return-value]


def confusion_from_codes(codes: NDArray[np.unsignedinteger], *, n_labels: int) -> NDArray[np.int64]:
    """C[g, p] from pair codes (any memory order, a box of a volume too). Most voxels are (0, 0):
    they are only counted, and `np.bincount`, which widens its input to 8 bytes, sees the others
    alone, in chunks that stay in cache."""
    labelled = codes[codes != 0]  # 1D, in the array's own memory order
    counts = np.zeros(n_labels * n_labels, dtype=np.int64)
    chunk = 1 << 20
    for start in range(0, labelled.size, chunk):
        counts += np.bincount(labelled[start : start + chunk], minlength=n_labels * n_labels)
    counts[0] += codes.size - labelled.size
    return counts.reshape(n_labels, n_labels)


def confusion_counts(label_gt: NDArray[np.integer], label_pred: NDArray[np.integer], *, n_labels: int) -> NDArray[np.int64]:
    """Voxel counts C[g, p] of ground-truth label g predicted as p, for labels 0..n_labels-1.

    One `np.bincount` over the combined index `g * n_labels + p`. Values outside
    0..n_labels-1 must have been rejected before (see harness.data checks).
    """
    return confusion_from_codes(pair_codes(label_gt, label_pred, n_labels=n_labels), n_labels=n_labels)


def dice_from_counts(intersection: int, size_gt: int, size_pred: int) -> float:
    """2|G and P| / (|G| + |P|); NaN when both are empty (the caller's profile decides)."""
    total = size_gt + size_pred
    if total == 0:
        return float("nan")
    return 2.0 * intersection / total


def dice_all_labels(
    label_gt: NDArray[np.integer], label_pred: NDArray[np.integer], labels: tuple[int, ...]
) -> dict[int, float]:
    """DSC of every label in `labels` from one confusion-count pass (NaN where both are empty)."""
    n_labels = int(max(labels, default=0)) + 1
    n_labels = max(n_labels, int(label_gt.max(initial=0)) + 1, int(label_pred.max(initial=0)) + 1)
    counts = confusion_counts(label_gt, label_pred, n_labels=n_labels)
    size_gt = counts.sum(axis=1)
    size_pred = counts.sum(axis=0)
    return {
        label: dice_from_counts(int(counts[label, label]), int(size_gt[label]), int(size_pred[label]))
        for label in labels
    }


def nonzero_box(array: NDArray[Any]) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel (None: there is none), walking the array in its
    own memory order: `any` over each plane of the slowest axis, then over that slab."""
    transposed = array.flags.f_contiguous and not array.flags.c_contiguous
    walk = array.T if transposed else array  # C-ordered when the volume is either C or F ordered
    planes = np.flatnonzero(walk.reshape(walk.shape[0], -1).any(axis=1))
    if planes.size == 0:
        return None
    box = [slice(int(planes[0]), int(planes[-1]) + 1)]
    slab: NDArray[np.bool_] = np.asarray(walk[box[0]].any(axis=0))
    for axis in range(slab.ndim):
        hits = np.flatnonzero(slab.any(axis=tuple(a for a in range(slab.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(reversed(box)) if transposed else tuple(box)
