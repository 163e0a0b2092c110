"""Connected components of a mask, numbered as the challenges' reference code numbers them.

The official BraTS 2023, autoPET and panoptica code label with `cc3d.connected_components`, which
numbers components by their first voxel in the array's memory order (C order, or Fortran order for
a Fortran-ordered array). Which component gets which number decides the order in which per-lesion
values are summed, and so the last bit of an average: we number the same way, with
`scipy.ndimage.label` inside the mask's bounding box only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from harness.metrics.overlap import nonzero_box

Box = tuple[slice, ...]


class Connectivity(enum.Enum):
    """Neighbourhood of a voxel: FACE (6 in 3D, 4 in 2D), EDGE (18 in 3D), FULL (26 in 3D, 8 in 2D)."""

    FACE = 1
    EDGE = 2
    FULL = 3

    def structure(self, ndim: int) -> NDArray[np.bool_]:
        rank = min(self.value, ndim)
        return ndimage.generate_binary_structure(ndim, rank)


@dataclass(frozen=True)
class Components:
    """Components of a mask inside its bounding box: `labels[box]` of the full volume (0 outside
    any component), `count` components numbered 1..count, `sizes_voxels[i]` voxels of component i
    (`sizes_voxels[0]` is 0)."""

    box: Box | None
    labels: NDArray[np.int32]
    count: int
    sizes_voxels: NDArray[np.int64]

    def full_box_labels(self, box: Box) -> NDArray[np.int32]:
        """The labels over `box` (which holds `self.box`), zero elsewhere."""
        out = np.zeros(tuple(s.stop - s.start for s in box), dtype=np.int32)
        if self.box is not None:
            out[relative_box(self.box, box)] = self.labels
        return out


def fortran_ordered(array: NDArray[Any]) -> bool:
    return bool(array.flags.f_contiguous and not array.flags.c_contiguous)


def label_components(mask: NDArray[np.bool_], *, connectivity: Connectivity, memory_order: bool = True) -> Components:
    """Label the components of `mask` (2D or 3D) inside its bounding box.

    With `memory_order`, numbering follows the first voxel of each component in the mask's memory
    order (as cc3d does); without, C order (as `scipy.ndimage.label` on any array). Lesions are
    sparse: the box is cut into blocks, and only the clusters of occupied blocks are labelled.
    """
    transposed = memory_order and fortran_ordered(mask)
    walk = mask.T if transposed else mask  # numbered in walk's C order
    box = nonzero_box(walk)
    if box is None:
        return Components(box=None, labels=np.zeros((0,) * mask.ndim, dtype=np.int32), count=0,
                          sizes_voxels=np.zeros(1, dtype=np.int64))
    labels, count, sizes = _label_sparse(walk[box], connectivity.structure(mask.ndim))
    if transposed:
        return Components(box=tuple(reversed(box)), labels=labels.T, count=count, sizes_voxels=sizes)
    return Components(box=box, labels=labels, count=count, sizes_voxels=sizes)


_BLOCK = 16


def _label_sparse(crop: NDArray[np.bool_], structure: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int, NDArray[np.int64]]:
    """`ndimage.label(crop)` (C-order numbering), computed per cluster of occupied blocks: a
    component lies in one cluster, as its voxels' blocks are neighbours."""
    occupied = crop
    for axis in range(crop.ndim):
        occupied = np.logical_or.reduceat(occupied, np.arange(0, crop.shape[axis], _BLOCK), axis=axis)
    clusters, n_clusters = ndimage.label(occupied, structure=np.ones((3,) * crop.ndim, dtype=bool))
    if n_clusters <= 1:
        labels, count = ndimage.label(crop, structure=structure)
        sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
        sizes[0] = 0
        return labels.astype(np.int32, copy=False), int(count), sizes
    labels = np.zeros(crop.shape, dtype=np.int32)
    parts = []
    first_voxels = []
    block_sizes = [np.zeros(1, dtype=np.int64)]
    for index, block_box in enumerate(ndimage.find_objects(clusters), start=1):
        assert block_box is not None
        box = tuple(slice(b.start * _BLOCK, min(b.stop * _BLOCK, n)) for b, n in zip(block_box, crop.shape, strict=True))
        sub = crop[box]
        own = clusters[block_box] == index
        for axis in range(crop.ndim):
            own = np.repeat(own, _BLOCK, axis=axis)
        sub = sub & own[tuple(slice(0, n) for n in sub.shape)]
        local, n_local = ndimage.label(sub, structure=structure)
        flat = np.flatnonzero(local)
        ids = local.reshape(-1)[flat]
        _, first = np.unique(ids, return_index=True)  # flat is ascending: first voxel of each label
        coords = np.unravel_index(flat[first], sub.shape)
        first_voxels.append(np.ravel_multi_index(tuple(c + b.start for c, b in zip(coords, box, strict=True)), crop.shape))
        block_sizes.append(np.bincount(ids, minlength=n_local + 1)[1:].astype(np.int64))
        parts.append((box, local, ids))
    # Renumber all components by their first voxel in the crop's C order, as one labelling would.
    rank = np.empty(sum(f.size for f in first_voxels), dtype=np.int32)
    rank[np.argsort(np.concatenate(first_voxels), kind="stable")] = np.arange(1, rank.size + 1, dtype=np.int32)
    offset = 0
    for box, local, ids in parts:
        labels[box][local > 0] = rank[offset + ids - 1]  # a view: writes into `labels`
        offset += int(ids.max(initial=0))
    all_sizes = np.zeros(rank.size + 1, dtype=np.int64)
    all_sizes[rank] = np.concatenate(block_sizes[1:])
    return labels, int(rank.size), all_sizes


def union_box(*boxes: Box | None) -> Box | None:
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(slice(min(b[a].start for b in present), max(b[a].stop for b in present)) for a in range(len(present[0])))


def grow_box(box: Box, margin: int, shape: tuple[int, ...]) -> Box:
    """`box` widened by `margin` voxels on every side, clipped to the volume."""
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape, strict=True))


def relative_box(inner: Box, outer: Box) -> Box:
    """`inner` in the coordinates of `outer` (which holds it)."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))
