"""The scoring path's structure masks (`case._embedded_mask`: compared in the volume's memory
order, then turned to a C-ordered zero-padded mask, a large Fortran box through bits) against the
plain reference `np.pad(np.isin(label_map[box], labels))`: C and Fortran volumes, uint8/int16/int32
maps, 2D and 3D, one voxel, sizes off multiples of 8, boxes on the volume's edges, regions of
several labels; each case both with the size rule and with every Fortran 3D box turned by bits."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import case
from harness.metrics.case import _embedded_mask, _transpose_8x8


def _reference(label_map: np.ndarray, box: tuple[slice, ...], labels: tuple[int, ...],
               margin: tuple[int, ...]) -> np.ndarray:
    return np.pad(np.isin(label_map[box], labels), [(m, m) for m in margin])


@pytest.fixture(params=["by size", "always by bits"])
def bit_rule(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "always by bits":
        monkeypatch.setattr(case, "_BIT_TURN_MIN_VOXELS", 0)
    return str(request.param)


def _check(label_map: np.ndarray, box: tuple[slice, ...], labels: tuple[int, ...], margin: tuple[int, ...]) -> None:
    found = _embedded_mask(label_map, box, labels, margin)
    want = _reference(label_map, box, labels, margin)
    assert found.dtype == np.bool_ and found.flags.c_contiguous and found.shape == want.shape
    assert np.array_equal(found, want)


@pytest.mark.parametrize("seed", range(20))
def test_masks_match_the_reference(seed: int, bit_rule: str) -> None:
    rng = np.random.default_rng(seed)
    ndim = 2 + seed % 2
    high = 130 if seed % 4 == 1 else 30  # larger than the size rule's minimum, in Fortran 3D
    shape = tuple(int(n) for n in rng.integers(1, high, size=ndim))
    label_map = rng.integers(0, 14, size=shape).astype([np.uint8, np.int16, np.int32][seed % 3])
    if seed % 2:
        label_map = np.asfortranarray(label_map)  # NIfTI volumes come Fortran-ordered
    starts = [int(rng.integers(0, n)) for n in shape]
    box = tuple(slice(s, int(rng.integers(s + 1, n + 1))) for s, n in zip(starts, shape, strict=True))
    if seed % 4 == 1:
        box = tuple(slice(0, n) for n in shape)  # the whole volume: on its edges
    labels = (int(rng.integers(1, 14)),) if seed % 5 else (2, 5, 11)
    margin = tuple(int(m) for m in rng.integers(1, 10, size=ndim))
    _check(label_map, box, labels, margin)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (8, 8, 8), (9, 7, 17), (16, 3, 1), (1, 5, 64)])
def test_sizes_around_multiples_of_8(order: str, shape: tuple[int, int, int], bit_rule: str) -> None:
    rng = np.random.default_rng(sum(shape))
    label_map = np.asarray(rng.random(shape) < 0.5, dtype=np.uint8, order=order)
    label_map[0, 0, 0] = label_map[-1, -1, -1] = 1  # corners next to the margin
    for margin in [(1, 1, 1), (3, 2, 7), (8, 1, 8)]:
        _check(label_map, tuple(slice(0, n) for n in shape), (1,), margin)


@pytest.mark.parametrize("order", ["C", "F"])
def test_one_voxel_box(order: str, bit_rule: str) -> None:
    label_map = np.zeros((5, 6, 7), dtype=np.uint8, order=order)
    label_map[4, 0, 6] = 3
    box = (slice(4, 5), slice(0, 1), slice(6, 7))
    _check(label_map, box, (3,), (1, 2, 3))
    assert np.count_nonzero(_embedded_mask(label_map, box, (3,), (1, 2, 3))) == 1


def test_transpose_8x8_swaps_rows_and_columns() -> None:
    words = np.random.default_rng(3).integers(0, 2**63, size=500, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    bits = np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little").reshape(-1, 8, 8)
    want = np.packbits(bits.transpose(0, 2, 1).reshape(-1), bitorder="little").view("<u8")
    assert np.array_equal(_transpose_8x8(words.copy()), want)
