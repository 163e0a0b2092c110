"""The grid search of the surface metrics (near offsets, then wider ones, before the KD-tree) against
brute force: every surfel it finds has exactly the smallest float64 distance over all pairs of
surfels, and every surfel it leaves is at least its reach away."""

from __future__ import annotations

import numpy as np
import pytest

import harness.metrics.surface as surface_module
from tests.metrics.conftest import random_blob

SPACINGS_3D = [(1.0, 1.0, 1.0), (0.765625, 0.765625, 2.5), (float(np.float32(0.8)), float(np.float32(0.8)), 2.5),
               (1.5, 0.7, 3.0)]
SPACINGS_2D = [(1.0, 1.0), (0.8, 2.5), (2.0, 0.5)]


def _brute_distances(source: surface_module.Surface, target: surface_module.Surface,
                     spacing: tuple[float, ...]) -> np.ndarray:
    """Each source surfel's smallest distance to any target surfel, in scipy's float64 order."""
    best = np.full(source.flat.size, np.inf)
    for chunk in np.array_split(np.arange(source.flat.size), max(1, source.flat.size // 256)):
        offsets = target.coords[None, :, :] - source.coords[chunk, None, :]
        total = np.zeros(offsets.shape[:2])
        for axis, s in enumerate(spacing):
            total = total + (offsets[..., axis] * s) ** 2
        best[chunk] = np.sqrt(total).min(axis=1)
    return best


def _check_both_directions(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...]) -> list[int]:
    """Asserts the grid search's distances and far surfels in both directions, as the full
    distances ask for them; returns, per direction, how many surfels the wider offsets found
    (-1 where they were not tried)."""
    searches = []
    grid_distances = surface_module._grid_distances

    def spy(source, target, spacing_mm):  # type: ignore[no-untyped-def]
        result = grid_distances(source, target, spacing_mm)
        searches.append((source, target, [a.copy() if isinstance(a, np.ndarray) else a for a in result]))
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(surface_module, "_grid_distances", spy)
        surface_module.surface_distances(gt, pred, spacing)
    assert len(searches) == 2
    margin = searches[0][0].margin
    near_reach = surface_module._reach_mm(spacing, margin)
    wider_reach = surface_module._reach_mm(spacing, surface_module._wider_radii(margin))
    wider = []
    for source, target, (dist, far, reach) in searches:
        brute = _brute_distances(source, target, spacing)
        found = np.setdiff1d(np.arange(source.flat.size), far)
        assert dist[found].tobytes() == brute[found].tobytes()
        assert np.all(brute[found] < reach)
        assert np.all(brute[far] >= reach) and np.all(np.isinf(dist[far]))
        assert np.all(np.diff(far) > 0)
        assert reach in (near_reach, wider_reach, np.inf)  # inf: every surfel at distance 0
        wider.append(int(np.sum(dist[found] >= near_reach)) if reach == wider_reach else -1)
    return wider


# One gather for all the surfels' offsets from the start, never, or where few are left (the default).
AT_ONCE = [1 << 40, 0, surface_module._GATHER_AT_ONCE]


@pytest.mark.parametrize("at_once", AT_ONCE)
@pytest.mark.parametrize("seed", range(8))
def test_grid_search_equals_brute_force_on_random_masks(seed: int, at_once: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(surface_module, "_GATHER_AT_ONCE", at_once)
    rng = np.random.default_rng(5000 + seed)
    ndim = 3 if seed % 4 else 2
    spacings = SPACINGS_3D if ndim == 3 else SPACINGS_2D
    spacing = spacings[(seed // 2) % len(spacings)]
    shape = tuple(int(n) for n in rng.integers(10, 22 if ndim == 3 else 60, size=ndim))
    gt = random_blob(rng, shape, fill=rng.uniform(0.05, 0.3))
    if seed % 2:  # a shifted copy: most surfels a cell or two away, a few much farther
        pred = np.roll(gt, int(rng.integers(1, 4)), axis=int(rng.integers(0, ndim)))
    else:  # an independent blob: many surfels beyond the near offsets
        pred = random_blob(rng, shape, fill=rng.uniform(0.02, 0.2))
    _check_both_directions(gt, pred, spacing)


@pytest.mark.parametrize("spacing", SPACINGS_3D + SPACINGS_2D)
def test_single_voxels_just_inside_and_outside_the_reach_of_a_box(spacing: tuple[float, ...]) -> None:
    # A box and single voxels at every gap from 1 cell to beyond the wider reach, along each axis and
    # diagonally: their surfels lie on both sides of the near offsets' box and reach.
    ndim = len(spacing)
    far = max(2 * r + 3 for r in surface_module.near_radii(spacing))
    shape = tuple(6 + 2 * far + 1 for _ in range(ndim))
    gt = np.zeros(shape, dtype=bool)
    gt[tuple(slice(far, far + 6) for _ in range(ndim))] = True
    pred = gt.copy()
    for axis in range(ndim):
        for gap in range(1, far + 1):
            at = [far + 2] * ndim
            at[axis] = far + 5 + gap
            pred[tuple(at)] = True
            at[axis] = far - gap
            if gap % 2:
                at[(axis + 1) % ndim] = far - gap // 2  # off the axis: a diagonal offset
            pred[tuple(at)] = True
    _check_both_directions(gt, pred, spacing)


@pytest.mark.parametrize("spacing", SPACINGS_3D[1:3] + SPACINGS_2D[1:])
def test_wider_offsets_reach_past_the_grid(spacing: tuple[float, ...]) -> None:
    # A large box and one voxel in the array's corner, beyond the near offsets' box: its few surfels
    # are looked up at the wider offsets, on a copy of the grid padded where they run past it. Its
    # last surfel cell lies exactly as many cells before the box's first, along the axis that sets
    # the wider offsets' reach, as they reach on that axis.
    ndim = len(spacing)
    radii = surface_module._wider_radii(surface_module.near_radii(spacing))
    axis = int(np.argmin([(r + 1) * s for r, s in zip(radii, spacing, strict=True)]))
    side = 28 if ndim == 3 else 60
    gt = np.zeros(tuple(radii[axis] + 1 + side if a == axis else side for a in range(ndim)), dtype=bool)
    gt[tuple(slice(radii[axis] + 1, None) if a == axis else slice(None) for a in range(ndim))] = True
    pred = gt.copy()
    pred[(0,) * ndim] = True
    found_wider = _check_both_directions(gt, pred, spacing)[1]
    assert found_wider > 0


@pytest.mark.parametrize("spacing", [(0.765625, 0.765625, 2.5), (0.8, 2.5)])
def test_far_blobs_in_the_corners_go_to_the_tree(spacing: tuple[float, ...]) -> None:
    # Small blobs far from the other surface, in the array's corners, beside surfels found at every
    # near offset: the grid search leaves exactly those beyond its reach.
    rng = np.random.default_rng(7)
    ndim = len(spacing)
    shape = (60, 50, 20)[:ndim]
    gt = np.zeros(shape, dtype=bool)
    inner = tuple(slice(n // 4, 3 * n // 4) for n in shape)
    gt[inner] = random_blob(rng, tuple(s.stop - s.start for s in inner), fill=0.6)
    pred = np.roll(gt, 1, axis=0)
    for corner in range(2 ** ndim):
        at = tuple(slice(0, 2) if corner >> axis & 1 else slice(n - 2, n) for axis, n in enumerate(shape))
        pred[at] = True
    _check_both_directions(gt, pred, spacing)


def _first_hits_by_brute_force(base: np.ndarray, border: np.ndarray, steps: np.ndarray,
                               offset_mm: np.ndarray) -> np.ndarray:
    """Each cell's distance to its first offset that hits, inf where none does."""
    first = np.full(base.size, np.inf)
    for position, cell in enumerate(base.tolist()):
        hits = np.flatnonzero(border[cell + steps])
        if hits.size:
            first[position] = offset_mm[hits[0]]
    return first


@pytest.mark.parametrize("at_once", AT_ONCE)
@pytest.mark.parametrize("n_steps", [1, 7, 8, 9, 63, 64, 65, 300])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.6])
def test_first_hits_equals_brute_force(n_steps: int, density: float, at_once: int,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Random grids and offsets, with ties among the offsets' distances: each surfel gets the distance
    # of its first hit; the ones without are returned in order. Sparse grids make the stepwise search
    # try up to 64 offsets at a time.
    monkeypatch.setattr(surface_module, "_GATHER_AT_ONCE", at_once)
    rng = np.random.default_rng(n_steps * 1000 + int(density * 1000))
    reach = 400
    border = rng.random(3000) < density
    steps = rng.choice(np.r_[-reach:0, 1:reach + 1], size=n_steps, replace=False)
    if n_steps == 9:
        steps = np.abs(steps)  # all ahead of the surfel
    offset_mm = np.sort(rng.integers(1, 40, size=n_steps) * 0.25)  # ties
    candidates = np.flatnonzero(~border[reach:-reach]) + reach
    for size in (0, 1, 7, 8, 9, min(1000, candidates.size)):
        base = np.sort(rng.choice(candidates, size=size, replace=False))
        todo = np.sort(rng.choice(3 * size, size=size, replace=False))  # surfels' indices: any, ascending
        dist = np.full(3 * size, -1.0)
        left = surface_module._first_hits(todo, base, border, steps, offset_mm, dist)
        expected = _first_hits_by_brute_force(base, border, steps, offset_mm)
        assert left.tolist() == todo[np.isinf(expected)].tolist()
        untouched = np.setdiff1d(np.arange(3 * size), todo[~np.isinf(expected)])
        assert dist[todo[~np.isinf(expected)]].tobytes() == expected[~np.isinf(expected)].tobytes()
        assert np.all(dist[untouched] == -1.0)


def test_an_offset_leaving_the_grid_is_refused_not_clipped() -> None:
    """The gathers clip their indices: without the margin check, a surfel at the grid's end would
    read the last cell for every offset past it and get a distance it does not have."""
    border = np.zeros(10, dtype=bool)
    border[9] = True
    dist = np.zeros(1)
    with pytest.raises(ValueError, match="margin"):
        surface_module._first_hits(np.array([0]), np.array([8]), border, np.array([1, 2]), np.array([1.0, 2.0]), dist)
    left = surface_module._first_hits(np.array([0]), np.array([7]), border, np.array([1, 2]), np.array([1.0, 2.0]),
                                      dist)
    assert left.size == 0 and dist[0] == 2.0
