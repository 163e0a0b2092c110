"""Per-label bounding boxes (the scoring path's one pass over a label map) against scipy's
`ndimage.find_objects` as the oracle: every memory order, dtype and label count, empty maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from harness.metrics.overlap import label_boxes, nonzero_box


def _oracle(label_map: np.ndarray, n_labels: int) -> list:
    found = list(ndimage.find_objects(np.ascontiguousarray(label_map), max_label=n_labels - 1))
    return [None, *found, *[None] * (n_labels - 1 - len(found))]


@pytest.mark.parametrize("seed", range(60))
def test_boxes_match_find_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ndim = 1 + seed % 3
    shape = tuple(int(n) for n in rng.integers(1, 14, size=ndim))
    n_labels = int(rng.choice([2, 5, 14, 17, 33, 64, 65, 120]))  # bit words of 16, 32, 64; beyond: scipy's
    dtype = [np.uint8, np.uint16, np.int16, np.int32][seed % 4]
    label_map = np.where(rng.random(shape) < rng.uniform(0.02, 0.6), rng.integers(0, n_labels, size=shape), 0)
    label_map = label_map.astype(dtype)
    if seed % 2:
        label_map = np.asfortranarray(label_map)  # NIfTI volumes come Fortran-ordered
    if seed % 5 == 0 and ndim > 1:
        label_map = label_map[..., ::2]  # a strided view
    assert label_boxes(label_map, n_labels) == _oracle(label_map, n_labels)


def test_empty_map_has_no_boxes() -> None:
    assert label_boxes(np.zeros((4, 5, 6), np.uint8), 14) == [None] * 14


def test_one_voxel_labels_in_the_corners() -> None:
    label_map = np.zeros((7, 8, 9), np.uint8, order="F")
    label_map[0, 0, 0], label_map[6, 7, 8], label_map[3, 0, 8] = 1, 13, 7
    boxes = label_boxes(label_map, 14)
    assert boxes[1] == (slice(0, 1), slice(0, 1), slice(0, 1))
    assert boxes[13] == (slice(6, 7), slice(7, 8), slice(8, 9))
    assert boxes[7] == (slice(3, 4), slice(0, 1), slice(8, 9))
    assert boxes == _oracle(label_map, 14)


@pytest.mark.parametrize("seed", range(24))
def test_nonzero_box_matches_the_nonzero_voxels(seed: int) -> None:
    """Unsigned and bool maps take `max`, the others `any`: the same box either way, negatives included."""
    rng = np.random.default_rng(seed)
    ndim = 1 + seed % 3
    shape = tuple(int(n) for n in rng.integers(1, 12, size=ndim))
    dtype = [np.uint8, np.uint16, np.uint64, np.bool_, np.int16, np.float32][seed % 6]
    values = np.where(rng.random(shape) < rng.uniform(0.0, 0.3), rng.integers(-3, 250, size=shape), 0).astype(dtype)
    if seed % 2:
        values = np.asfortranarray(values)
    if seed % 4 == 0 and ndim > 1:
        values = values[..., ::2]
    where = np.nonzero(values)
    expected = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where) if where[0].size else None
    assert nonzero_box(values) == expected
