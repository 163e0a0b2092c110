"""HD95 and NSD when many surfels lie beyond the grid search: the scoring path resolves them only as
far as the percentile needs (bounded KD-tree searches), and must still give the full distances'
values to the last bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

import harness.metrics.surface as surface_module
from harness.metrics.surface import (
    embedding_margin,
    robust_hausdorff,
    surface_dice,
    surface_dice_and_hausdorff,
    surface_distances,
)
from tests.metrics.conftest import random_blob

F32 = np.float32
SPACINGS = [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (F32(0.7421875), F32(0.7421875), F32(5.0)), (1.5, 0.7, 3.0)]


def _organ(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[8:48, 8:48, 3:15] = random_blob(rng, (40, 40, 12), fill=0.6) | True
    return mask


def _leak(mask: np.ndarray, rng: np.random.Generator, x0: int, size: int) -> np.ndarray:
    """`mask` plus a random blob starting at row `x0`: a leak far from the organ, with a surface
    large enough (a few % and more of the organ's) to put the 95th percentile among its surfels."""
    leaked = mask.copy()
    z0 = int(rng.integers(2, 6))
    leaked[x0:x0 + size, 10:10 + size, z0:z0 + 8] |= random_blob(rng, (size, size, 8), fill=0.5)
    return leaked


def _assert_full_values(gt: np.ndarray, pred: np.ndarray, spacing: tuple, percents=(95.0,), more_tolerances=()) -> None:
    margin = embedding_margin(spacing)
    embedded = [np.pad(m, [(k, k) for k in margin]) for m in (gt, pred)]
    s = [float(x) for x in spacing]
    # FLARE's tolerances, and ones on grid distances (ties at the tolerance) beyond the search's reach.
    for tol in (2.0, 5.0, 7.0, 2 * s[0], 3 * s[-1], math.sqrt((4 * s[0]) ** 2 + (3 * s[1]) ** 2), *more_tolerances):
        full = surface_distances(gt, pred, spacing, tolerances_mm=(tol,))
        for percent in percents:
            nsd, hd = surface_dice_and_hausdorff(*embedded, spacing, tolerance_mm=tol, percent=percent)
            assert nsd == surface_dice(full, tol)
            assert hd == robust_hausdorff(full, percent)
            nsd, hd = surface_dice_and_hausdorff(*embedded, spacing, tolerance_mm=tol, nsd=False, percent=percent)
            assert math.isnan(nsd) and hd == robust_hausdorff(full, percent)


def _prediction_to_truth(gt: np.ndarray, pred: np.ndarray, spacing: tuple):  # type: ignore[no-untyped-def]
    """The prediction's surfels (source), the ground truth's (target), the spacing as an array and a
    KD-tree of the target, as `surface_dice_and_hausdorff` builds them."""
    margin = tuple(m - 1 for m in embedding_margin(spacing))
    key = tuple(float(s) for s in spacing)
    source, target = (surface_module._surface_of_embedded(np.pad(m, [(k + 1, k + 1) for k in margin]), margin, key)
                      for m in (pred, gt))
    spacing_mm = np.asarray(key)
    return source, target, spacing_mm, surface_module._tree(target.coords * spacing_mm)


@pytest.fixture
def bounded_searches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, float]]:
    """(surfels asked, surfels left, bound) of each bounded search of the far surfels."""
    calls: list[tuple[int, int, float]] = []
    below = surface_module._tree_distances_below

    def spy(*args, bound_mm: float):  # type: ignore[no-untyped-def]
        left = below(*args, bound_mm=bound_mm)
        calls.append((args[9].size, left.size, bound_mm))
        return left

    monkeypatch.setattr(surface_module, "_tree_distances_below", spy)
    return calls


@pytest.mark.parametrize("seed", range(4))  # each spacing once
def test_far_leak_gives_the_full_distances_values(seed: int, bounded_searches: list) -> None:
    rng = np.random.default_rng(4000 + seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    gt = _organ(rng, (140, 60, 18))
    pred = np.roll(gt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2)))
    pred = _leak(pred, rng, int(rng.integers(60, 110)), int(rng.integers(14, 26)))
    _assert_full_values(gt, pred, spacing, percents=(95.0, 90.0, 50.0, 100.0))
    # The percentile lay among the leak's surfels, and some of them were never resolved.
    assert any(left > 0 for _, left, _ in bounded_searches)


@pytest.mark.parametrize("seed", range(4))  # each spacing once
def test_both_directions_far(seed: int, bounded_searches: list) -> None:
    # A leak in the prediction and a missed part of the organ: HD decided by either direction.
    rng = np.random.default_rng(5000 + seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    organ = _organ(rng, (140, 60, 18))
    gt = _leak(organ, rng, int(rng.integers(60, 80)), int(rng.integers(12, 24)))
    pred = _leak(organ, rng, int(rng.integers(95, 115)), int(rng.integers(12, 24)))
    _assert_full_values(gt, pred, spacing)
    assert len(bounded_searches) >= 2


@pytest.mark.parametrize("bounds", [[3.0, 4.0, math.inf], [6.0, math.inf], [math.inf], [2.0, 1e9, math.inf]])
def test_bad_guesses_of_the_percentile(bounds: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample's guess may fall short (another bounded search, then an unbounded one) or be
    # useless (below the reach): the values must not depend on it.
    monkeypatch.setattr(surface_module, "_far_bounds", lambda *args: [*bounds])
    rng = np.random.default_rng(6000)
    for spacing in SPACINGS[:2]:
        gt = _organ(rng, (140, 60, 18))
        pred = _leak(gt, rng, 90, 20)
        _assert_full_values(gt, pred, spacing, percents=(95.0, 50.0))


@pytest.mark.parametrize("seed", range(4))
def test_guesses_just_short_of_the_percentile(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Searches bounded a little below each direction's percentile leave surfels just beyond the
    # bound unresolved: the percentile computed without them lies beyond the bound and must not be
    # taken for the HD.
    rng = np.random.default_rng(6100 + seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    organ = _organ(rng, (140, 60, 18))
    gt = _leak(organ, rng, 70, 16)
    pred = _leak(organ, rng, 100, 24)
    full = surface_distances(gt, pred, spacing)
    per_direction = [robust_hausdorff(surface_module.SurfaceDistances(d, d, a, a), 95.0)
                     for d, a in ((full.gt_to_pred_mm, full.gt_areas_mm2), (full.pred_to_gt_mm, full.pred_areas_mm2))]
    bounds = sorted(h * f for h in per_direction for f in (0.8, 0.97, 1.0))
    monkeypatch.setattr(surface_module, "_far_bounds", lambda *args: [*bounds, math.inf])
    _assert_full_values(gt, pred, spacing)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (F32(0.7421875), F32(0.7421875), F32(5.0))])
def test_bounded_search_gives_the_unbounded_values_at_ties(spacing: tuple) -> None:
    # A blob between two mirror images of an organ: its surfels on the mirror plane have two nearest
    # surfels at the same distance; whichever the bounded search finds, the value is the unbounded one's.
    rng = np.random.default_rng(7000)
    half = _organ(rng, (70, 60, 18))[8:48]
    gt = np.zeros((140, 60, 18), dtype=bool)
    gt[:40], gt[100:] = half, half[::-1]  # mirrored about the cells between voxels 69 and 70
    pred = np.zeros_like(gt)
    pred[60:80, 10:50, 4:14] = random_blob(rng, (20, 40, 10), fill=0.6)
    pred[60:80] |= pred[60:80][::-1]
    _assert_full_values(gt, pred, spacing, percents=(95.0, 50.0))
    source, target, spacing_mm, tree = _prediction_to_truth(gt, pred, spacing)
    far = np.flatnonzero(~target.border[source.flat])
    full = np.full(source.flat.size, np.inf)
    surface_module._tree_distances(source, target, lambda: tree, spacing_mm, (), 1, full, far)
    tree_mm, _ = tree.query(source.coords_of(source.flat[far]) * spacing_mm, k=2)
    assert np.any(tree_mm[:, 1] == tree_mm[:, 0])  # ties were there to resolve
    for bound in np.quantile(full[far], [0.3, 0.5, 0.8]) + 0.01:
        dist = np.full(source.flat.size, np.inf)
        left = surface_module._tree_distances_below(source, target, lambda: tree, target, tree, spacing_mm, (), 1,
                                                    dist, far, bound_mm=float(bound))
        found = np.setdiff1d(far, left)
        assert found.size and left.size
        np.testing.assert_array_equal(dist[found], full[found])
        assert np.all(full[left] >= bound * (1 - 1e-9)) and np.all(full[found] < bound * (1 + 1e-9))


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 2.0), (0.8, 0.8, 2.5)])
def test_equidistant_surfels_whose_float_distances_differ(spacing: tuple) -> None:
    # A voxel's corner cell 15 cells from one target surfel and (9, 12) cells from another: equally
    # far, but the scipy formula's float64 distances differ in the last bit under these spacings.
    # The bounded search must give the value the unbounded one gives, whichever it meets first.
    shape = (80, 80, 5)
    pred = np.zeros(shape, dtype=bool)
    pred[40, 40, 2] = True
    gt = np.zeros(shape, dtype=bool)
    gt[56, 40, 2] = gt[50, 53, 2] = True
    source, target, spacing_mm, tree = _prediction_to_truth(gt, pred, spacing)
    todo = np.arange(source.flat.size)
    full = np.full(todo.size, np.inf)
    surface_module._tree_distances(source, target, lambda: tree, spacing_mm, (), 1, full, todo)
    asked: list[bool] = []

    def full_tree():  # type: ignore[no-untyped-def]
        asked.append(True)
        return tree

    for bound in (full.max() * 1.01, 1e6):
        dist = np.full(todo.size, np.inf)
        asked.clear()
        left = surface_module._tree_distances_below(source, target, full_tree, target, tree, spacing_mm, (), 1,
                                                    dist, todo, bound_mm=bound)
        assert left.size == 0 and asked  # equidistant surfels whose distances differ: the full search was asked
        np.testing.assert_array_equal(dist, full)
    _assert_full_values(gt, pred, spacing, percents=(95.0, 50.0))


@pytest.mark.parametrize("seed", range(4))
def test_nsd_search_on_the_surfels_near_the_far_ones(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # HD95 decided by the near surfels, a few small islands beyond the grid search (some within the
    # tolerance, on grid distances too): the tree for NSD holds only the target surfels near the
    # islands, and NSD must still be the full distances' to the last bit.
    rng = np.random.default_rng(8000 + seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    gt = _organ(rng, (140, 60, 18))
    pred = np.roll(gt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2)))
    for _ in range(3):  # 8 to 30 mm beyond the organ
        x = 48 + math.ceil(float(rng.uniform(8.0, 30.0)) / spacing[0])
        y, z = int(rng.integers(10, 45)), int(rng.integers(3, 14))
        pred[x, y:y + 2, z:z + 1] = True
    sizes: list[int] = []
    tree = surface_module._tree

    def spy(points: np.ndarray):  # type: ignore[no-untyped-def]
        sizes.append(points.shape[0])
        return tree(points)

    monkeypatch.setattr(surface_module, "_tree", spy)
    s = [float(x) for x in spacing]
    _assert_full_values(gt, pred, spacing, more_tolerances=(10.0, 20.0, 6 * s[0], math.sqrt((12 * s[0]) ** 2 + (9 * s[1]) ** 2)))
    surface_of = surface_module.surface
    assert sizes and min(sizes) < surface_of(gt, tuple(float(s) for s in spacing)).flat.size
