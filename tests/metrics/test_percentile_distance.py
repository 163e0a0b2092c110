"""HD's percentile in one direction (`_percentile_distance`) against the straightforward sort it
replaces, compared exactly (`==`): the cumulative area is a float sum whose value depends on the
order of the additions, so the surfels up to the percentile must be added in the same order."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.metrics.surface import _area_ranks, _percentile_distance, surfel_area_table

PERCENTS = (0.0, 50.0, 95.0, 100.0)


def reference(dist_mm: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """The implementation before the int64 keys: surfels sorted by (distance, area) with an index
    sort, areas summed in that order, the first index whose fraction reaches the percentile."""
    if dist_mm.size == 0:
        return math.inf
    values, inverse = np.unique(areas, return_inverse=True)
    ranks = inverse.reshape(-1)
    zero = dist_mm == 0
    rest = np.flatnonzero(~zero)
    order = rest[np.lexsort((ranks[rest], dist_mm[rest]))]
    zero_areas = np.repeat(values, np.bincount(ranks[zero], minlength=values.size))
    cumulative = np.cumsum(np.concatenate((zero_areas, areas[order]))) / areas.sum()
    idx = min(int(np.searchsorted(cumulative, percent / 100.0)), dist_mm.size - 1)
    n_zero = dist_mm.size - rest.size
    return 0.0 if idx < n_zero else float(dist_mm[order[idx - n_zero]])


def assert_same(dist_mm: np.ndarray, areas: np.ndarray, percent: float) -> None:
    expected = reference(dist_mm, areas, percent)
    values, rank = np.unique(areas, return_inverse=True)
    assert _percentile_distance(dist_mm, areas, percent) == expected
    assert _percentile_distance(dist_mm, areas, percent, rank.astype(np.uint8), values) == expected


def grid_distances(spacing: tuple[float, ...], reach: int = 3) -> np.ndarray:
    """The distances of the grid offsets, as the grid search computes them: few, many tied."""
    offsets = np.array(list(itertools.product(range(reach + 1), repeat=len(spacing))), dtype=np.float64)
    return np.unique(np.sqrt(((offsets * np.asarray(spacing)) ** 2).sum(axis=1)))


@pytest.mark.parametrize("seed", range(20))
def test_random_surfels_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spacing = ((0.8, 0.8, 2.5), (0.7421875, 0.7421875, 5.0), (1.0, 1.0, 1.0), (1.5, 0.7, 3.0))[seed % 4]
    values, rank = _area_ranks(spacing)
    table = surfel_area_table(spacing)
    n = int(rng.integers(1, 3000))
    codes = rng.integers(1, table.size - 1, n)
    areas = table[codes]
    # Mostly zeros and grid distances, some arbitrary (the KD-tree's), now and then inf (unresolved).
    kind = rng.choice(4, n, p=(0.5, 0.35, 0.13, 0.02))
    dist = np.where(kind == 0, 0.0, rng.choice(grid_distances(spacing), n))
    dist = np.where(kind == 2, rng.uniform(5.0, 60.0, n), dist)
    dist = np.where(kind == 3, np.inf, dist)
    for percent in (*PERCENTS, float(rng.uniform(0.0, 100.0))):
        expected = reference(dist, areas, percent)
        assert _percentile_distance(dist, areas, percent, rank[codes], values) == expected
        assert _percentile_distance(dist, areas, percent) == expected


@pytest.mark.parametrize("seed", range(20))
def test_percentile_exactly_at_a_tie_boundary(seed: int) -> None:
    """Integer areas sum exactly, so the percent can be the fraction reached at the end of a group
    of equal distances or between its areas; the neighbouring floats too."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 200))
    dist = rng.choice(np.array([0.0, 1.0, 1.5, 2.0, 3.25]), n)
    areas = rng.choice(np.array([1.0, 2.0, 3.0, 4.0]), n)
    order = np.lexsort((areas, dist))
    cumulative = np.cumsum(areas[order])
    for k in rng.choice(n, min(n, 8), replace=False):
        percent = 100.0 * float(cumulative[k]) / float(cumulative[-1])
        for p in (percent, np.nextafter(percent, 0.0), np.nextafter(percent, 200.0)):
            assert_same(dist, areas, float(min(p, 100.0)))


def test_tie_boundary_picks_the_group_the_reference_picks() -> None:
    # 10 surfels at 1 mm and 10 at 2 mm, equal areas: 50 % is reached exactly at the last 1 mm one.
    dist = np.repeat([2.0, 1.0], 10)
    areas = np.ones(20)
    assert _percentile_distance(dist, areas, 50.0) == 1.0
    assert _percentile_distance(dist, areas, np.nextafter(50.0, 100.0)) == 2.0
    # Equal distances, different areas: the smaller area comes first.
    dist = np.array([3.0, 3.0, 0.0, 5.0])
    areas = np.array([3.0, 1.0, 2.0, 2.0])
    for percent in (0.0, 25.0, 37.5, 50.0, 75.0, 87.5, 100.0):
        assert_same(dist, areas, percent)


@pytest.mark.parametrize("percent", PERCENTS)
def test_edge_inputs(percent: float) -> None:
    assert _percentile_distance(np.zeros(0), np.zeros(0), percent) == math.inf
    assert_same(np.zeros(7), np.full(7, 0.5), percent)  # every distance zero
    assert_same(np.array([0.0]), np.array([0.25]), percent)  # one surfel
    assert_same(np.array([2.5]), np.array([0.25]), percent)
    assert_same(np.array([np.inf]), np.array([0.25]), percent)
    assert_same(np.array([-0.0, 1.0, 0.0, 2.0]), np.array([1.0, 1.0, 2.0, 1.0]), percent)  # -0.0 is zero
    assert_same(np.array([4.0, 1.0, 0.0, 3.0]), np.full(4, 0.3), percent)  # one distinct area


@pytest.mark.parametrize("seed", range(10))
def test_distances_beyond_the_keys_range(seed: int) -> None:
    """Distances far more than 64 binades apart, huge ones and inf share the top key: where the
    percentile lies among them the order comes from the reference's sort."""
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(1, 400))
    dist = rng.choice(np.array([0.0, 1e-30, 3e-30, 1.0, 2.0, 1e30, 2e30, 1e300, np.inf]), n)
    areas = rng.choice(np.array([0.1, 0.3, 0.7, 1.1, 1.3]), n)
    for percent in (*PERCENTS, 5.0, 30.0, 70.0, 99.0):
        assert_same(dist, areas, percent)


def test_float_sum_order_decides() -> None:
    """Areas whose float sum depends on the order: adding the small area first or last moves the
    cumulative fraction across the percentile, so a wrong order gives a different distance."""
    dist = np.array([1.0] * 3 + [2.0])
    areas = np.array([0.1, 0.2, 0.7, 1e-17])
    total = areas.sum()
    for percent in (100.0 * (0.1 + 0.2) / total, 100.0 * ((0.1 + 0.2) + 0.7) / total, 100.0):
        assert_same(dist, areas, percent)


def test_fraction_divided_as_the_reference_divides() -> None:
    """The reference compares cumulative / total with the percentile; comparing cumulative with
    percentile * total rounds differently here (the 70 % point would move one surfel down)."""
    areas = np.array([0.3, 0.2, 0.2, 0.7, 0.7, 0.3, 0.3, 0.3])
    dist = np.arange(1.0, areas.size + 1.0)
    assert reference(dist, areas, 70.0) == 6.0
    assert_same(dist, areas, 70.0)


def test_top_keys_in_distance_order() -> None:
    """With two distinct areas (one rank bit) the keys span 1024 binades: 1e300 and 2e300 lie
    farther above 1e-300 and share the top key, where the smaller area would come first; the
    reference adds 1e300's area first and stops there at 80 %."""
    dist = np.array([0.0, 1e-300, 2e300, 1e300])
    areas = np.array([3.0, 1.0, 1.0, 3.0])
    assert reference(dist, areas, 80.0) == 1e300
    assert_same(dist, areas, 80.0)
