"""Surfel extraction (`_surface_of_embedded`: border cells from packed bits, neighbour codes
gathered at those cells only) against a plain reference: every cell's neighbour code from
`neighbour_codes`, the border where the code is neither 0 nor all corners. Exact equality of
every field, for 2D and 3D masks, margins of 1 to 3, masks filling their box up to the margin,
single voxels, every neighbour code, C and Fortran inputs, grids not a multiple of 8 or 64 cells."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.metrics.surface import (
    Surface,
    _area_ranks,
    _bits_from,
    _surface_of_embedded,
    neighbour_codes,
    surface,
    surfel_area_table,
)
from tests.metrics.conftest import random_blob


def _reference(voxels: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """(flat, areas, border, area_rank) of a mask with at least one zero voxel on every side,
    cells on a grid of the mask's own shape (the last cell on each axis: corners past the end)."""
    inner = voxels[tuple(slice(1, -1) for _ in range(voxels.ndim))]
    codes = np.pad(neighbour_codes(inner), [(0, 1)] * voxels.ndim).reshape(-1)
    border = (codes != 0) & (codes != (1 << (1 << voxels.ndim)) - 1)
    flat = np.flatnonzero(border)
    return flat, surfel_area_table(spacing)[codes[flat]], border, _area_ranks(spacing)[1][codes[flat]]


def _assert_same(found: Surface, voxels: np.ndarray, spacing: tuple[float, ...], margin: tuple[int, ...]) -> None:
    flat, areas, border, rank = _reference(voxels, spacing)
    for name, got, want in (("flat", found.flat, flat), ("areas", found.areas_mm2, areas),
                            ("border", found.border, border), ("area_rank", found.area_rank, rank)):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
    assert found.shape == voxels.shape and found.margin == margin


def _embedded(mask: np.ndarray, margin: int) -> np.ndarray:
    return np.pad(mask.astype(bool), margin + 1)


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ndim = 2 + seed % 2
    shape = tuple(int(n) for n in rng.integers(1, 30 if ndim == 3 else 90, size=ndim))
    if seed % 3 == 0:
        mask = rng.random(shape) < rng.uniform(0.05, 0.95)  # every code, many times
    else:
        mask = random_blob(rng, shape, fill=rng.uniform(0.05, 0.9))
    if seed % 5 == 0:
        mask[...] = True  # the whole box: voxels next to the margin on every side
    margin = seed % 3
    voxels = _embedded(mask, margin)
    if seed % 2:
        voxels = np.asfortranarray(voxels)
    spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=ndim))
    _assert_same(_surface_of_embedded(voxels, (margin,) * ndim, spacing), voxels, spacing, (margin,) * ndim)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1), (1, 7), (5, 1, 3), (2, 3, 62), (4, 4, 4), (1, 1, 60)])
def test_single_voxels_and_empty_masks(shape: tuple[int, ...]) -> None:
    spacing = tuple(1.0 + 0.25 * a for a in range(len(shape)))
    for where in [None, *itertools.product(*[(0, n - 1) for n in shape])]:
        mask = np.zeros(shape, dtype=bool)
        if where is not None:
            mask[where] = True
        voxels = _embedded(mask, 0)
        found = _surface_of_embedded(voxels, (0,) * len(shape), spacing)
        _assert_same(found, voxels, spacing, (0,) * len(shape))
        assert found.flat.size == (0 if where is None else 2 ** len(shape))


@pytest.mark.parametrize("ndim", [2, 3])
def test_every_neighbour_code(ndim: int) -> None:
    """Each code on its own cell, the cells apart, then all of them packed side by side."""
    codes = range(1 << (1 << ndim))
    apart = np.zeros((len(codes) * 3,) + (2,) * (ndim - 1), dtype=bool)
    touching = np.zeros((len(codes) * 2,) + (2,) * (ndim - 1), dtype=bool)
    for code in codes:
        corners = np.array([(code >> (len(codes).bit_length() - 2 - i)) & 1 for i in range(1 << ndim)], dtype=bool)
        apart[3 * code:3 * code + 2] = corners.reshape((2,) * ndim)
        touching[2 * code:2 * code + 2] = corners.reshape((2,) * ndim)
    spacing = (0.8, 1.1, 2.5)[:ndim]
    for mask in (apart, touching):
        voxels = _embedded(mask, 1)
        _assert_same(_surface_of_embedded(voxels, (1,) * ndim, spacing), voxels, spacing, (1,) * ndim)
    # cell i spans voxels i - 1 and i: the cell of code c is 3c + 1 on the first axis, 1 on the others
    assert np.array_equal(neighbour_codes(apart)[(slice(1, None, 3),) + (1,) * (ndim - 1)],
                          np.arange(len(codes), dtype=np.uint8))


def test_public_surface_matches_the_reference() -> None:
    rng = np.random.default_rng(7)
    mask = random_blob(rng, (17, 23, 9), fill=0.3)
    mask[0, :, :] = True  # on the array's own edge: `surface` pads it
    spacing = (1.5, 0.7, 2.0)
    _assert_same(surface(mask, spacing), np.pad(mask, 1), spacing, (0, 0, 0))


@pytest.mark.parametrize("step", [0, 1, 7, 63, 64, 65, 127, 128, 200, 255, 256, 1000])
def test_bits_from_moves_the_stream(step: int) -> None:
    rng = np.random.default_rng(step)
    bits = rng.random(256) < 0.5
    words = np.packbits(bits, bitorder="little").view("<u8")
    moved = np.unpackbits(_bits_from(words, step).view(np.uint8), bitorder="little").astype(bool)
    assert np.array_equal(moved, np.concatenate((bits[step:], np.zeros(min(step, 256), dtype=bool))))
