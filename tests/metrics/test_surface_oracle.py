"""NSD, HD95 and DSC against DeepMind's surface-distance package (the independent oracle)."""

from __future__ import annotations

import functools
import math
from types import ModuleType

import numpy as np
import pytest

from harness.metrics.overlap import dice_all_labels
from harness.metrics.surface import (
    embedding_margin,
    neighbour_codes,
    robust_hausdorff,
    surface_dice,
    surface_dice_and_hausdorff,
    surface_distances,
    surfel_area_table,
)
from tests.metrics.conftest import random_blob

F32 = np.float32
# Anisotropic spacings, including float32 header values (what nibabel's get_zooms() returns).
SPACINGS_3D = [
    (1.0, 1.0, 1.0),
    (0.8, 0.8, 2.5),
    (F32(0.7421875), F32(0.7421875), F32(5.0)),
    (F32(0.8), F32(0.8), F32(2.5)),
    (F32(0.6835938), F32(0.6835938), F32(3.0)),
    (1.5, 0.7, 3.0),
]
SPACINGS_2D = [(1.0, 1.0), (0.8, 2.5), (F32(0.7), F32(1.3)), (2.0, 0.5)]


def _tolerances(spacing: tuple[float, ...]) -> list[float]:
    """FLARE's tolerances plus ones that land exactly on grid distances."""
    s = [float(x) for x in spacing]
    on_grid = [s[0], 2 * s[0], s[-1], 2 * s[-1], math.sqrt(s[0] ** 2 + s[1] ** 2)]
    if len(s) == 3:
        on_grid.append(math.sqrt((2 * s[0]) ** 2 + s[2] ** 2))
    return [2.0, 3.0, 5.0, 7.0, *on_grid]


def _case(seed: int, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(12, 30 if ndim == 3 else 70, size=ndim))
    gt = random_blob(rng, shape, fill=rng.uniform(0.05, 0.4))
    kind = seed % 4
    if kind == 0:  # an independent blob: little overlap, large distances
        pred = random_blob(rng, shape, fill=rng.uniform(0.05, 0.4))
    else:  # a perturbed copy: the realistic case, many distances near the tolerances
        from scipy import ndimage

        pred = gt.copy()
        if kind == 1:
            pred = ndimage.binary_dilation(pred)
        elif kind == 2:
            pred = ndimage.binary_erosion(pred)
        flip = random_blob(rng, shape, fill=0.05)
        pred = pred ^ (flip & ndimage.binary_dilation(gt ^ ndimage.binary_erosion(gt)))
    return gt, pred


def _oracle(sd: ModuleType, gt: np.ndarray, pred: np.ndarray, spacing, tols):
    dists = sd.compute_surface_distances(gt, pred, spacing)
    nsd = [sd.compute_surface_dice_at_tolerance(dists, t) for t in tols]
    return nsd, sd.compute_robust_hausdorff(dists, 95)


@pytest.mark.parametrize("seed", range(80))
def test_nsd_and_hd95_match_oracle_3d(sd: ModuleType, seed: int) -> None:
    gt, pred = _case(seed, 3)
    spacing = SPACINGS_3D[seed % len(SPACINGS_3D)]
    tols = _tolerances(spacing)
    ref_nsd, ref_hd = _oracle(sd, gt, pred, spacing, tols)
    ours = surface_distances(gt, pred, tuple(float(s) for s in spacing), tolerances_mm=tuple(tols))
    for tol, ref in zip(tols, ref_nsd, strict=True):
        assert abs(surface_dice(ours, tol) - ref) <= 1e-12, f"tolerance {tol}"
    assert robust_hausdorff(ours, 95.0) == pytest.approx(ref_hd, abs=1e-12)


@pytest.mark.parametrize("seed", range(30))
def test_nsd_and_hd95_match_oracle_2d(sd: ModuleType, seed: int) -> None:
    gt, pred = _case(1000 + seed, 2)
    # The package does its 2D length table in the spacing's own dtype (float32 arithmetic for a
    # float32 header); harness works in float64, so the oracle gets the same values as float64.
    spacing = tuple(float(s) for s in SPACINGS_2D[seed % len(SPACINGS_2D)])
    tols = _tolerances(spacing)
    ref_nsd, ref_hd = _oracle(sd, gt, pred, spacing, tols)
    ours = surface_distances(gt, pred, spacing, tolerances_mm=tuple(tols))
    for tol, ref in zip(tols, ref_nsd, strict=True):
        assert abs(surface_dice(ours, tol) - ref) <= 1e-12, f"tolerance {tol}"
    assert robust_hausdorff(ours, 95.0) == pytest.approx(ref_hd, abs=1e-12)


@pytest.mark.parametrize("spacing", SPACINGS_3D[:4])
def test_area_table_matches_oracle_for_every_code(sd: ModuleType, spacing) -> None:
    ours = surfel_area_table(tuple(float(s) for s in spacing))
    ref = sd.lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(ours, ref, rtol=1e-15, atol=0)


def test_every_neighbour_code_occurs_and_matches_a_single_cell(sd: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each of the 256 2x2x2 configurations on its own: our surfels and areas equal the oracle's.
    spacing = (0.8, 0.9, 2.5)
    # The oracle builds its area table (a pure function of the spacing) in every call: here once.
    table = sd.lookup_tables.create_table_neighbour_code_to_surface_area
    monkeypatch.setattr(sd.lookup_tables, "create_table_neighbour_code_to_surface_area", functools.cache(table))
    for code in range(1, 255):
        cell = np.array([(code >> (7 - i)) & 1 for i in range(8)], dtype=bool).reshape(2, 2, 2)
        mask = np.pad(cell, 2)
        ref = sd.compute_surface_distances(mask, mask, spacing)
        ours = surface_distances(mask, mask, spacing)
        assert ours.gt_areas_mm2.sum() == pytest.approx(ref["surfel_areas_gt"].sum(), rel=1e-14)
        codes = neighbour_codes(cell)
        assert codes[1, 1, 1] == code


def test_dsc_all_labels_matches_oracle(sd: ModuleType) -> None:
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 6, size=(20, 21, 22)).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, 6, size=gt.shape), gt).astype(np.uint8)
    pred[pred == 5] = 0  # label 5 predicted nowhere
    gt[gt == 4] = 0
    pred[pred == 4] = 0  # label 4 empty in both: NaN, as the oracle
    ours = dice_all_labels(gt, pred, (1, 2, 3, 4, 5))
    for label in (1, 2, 3, 5):
        assert ours[label] == pytest.approx(sd.compute_dice_coefficient(gt == label, pred == label), abs=1e-15)
    assert math.isnan(ours[4]) and math.isnan(sd.compute_dice_coefficient(gt == 4, pred == 4))


@pytest.mark.parametrize("moved", [(5, 6), (5, 5), (21, 6)])
def test_equidistant_surfels_at_the_tolerance_resolve_like_the_reference(
    sd: ModuleType, moved: tuple[int, int]
) -> None:
    # With 0.8 mm pixels a gt surfel is 12 mm from two pred surfels: offsets (15, 0) -> 12.0 and
    # (9, 12) -> 12.000000000000002 in float64. The reference counts it within 12 mm; a KD-tree
    # alone may report the other neighbour, so this case fails unless ties are re-checked.
    spacing, tol = (0.8, 0.8, 5.0), 12.0
    gt = np.zeros((40, 40, 3), dtype=bool)
    pred = np.zeros_like(gt)
    gt[5, 5, 1] = True
    gt[moved[0] - 16 if moved[0] > 20 else 5, moved[1], 1] = True
    pred[21, 5, 1] = pred[15, 18, 1] = True
    ref = sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(gt, pred, spacing), tol)
    ours = surface_dice(surface_distances(gt, pred, spacing, tolerances_mm=(tol,)), tol)
    assert ours == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_scores_without_far_distances_equal_the_full_distances(seed: int) -> None:
    # The scoring path skips the KD-tree where NSD and HD95 do not need the surfels beyond the grid
    # search; its values must be those of the full distances, to the last bit, at tolerances below
    # and beyond the search's reach, and at other percentiles.
    gt, pred = _case(2000 + seed, 3)
    spacing = tuple(float(s) for s in SPACINGS_3D[seed % len(SPACINGS_3D)])
    margin = embedding_margin(spacing)
    embedded = [np.pad(m, [(k, k) for k in margin]) for m in (gt, pred)]
    for tol in _tolerances(spacing):
        full = surface_distances(gt, pred, spacing, tolerances_mm=(tol,))
        for percent in (95.0, 50.0, 100.0):
            nsd, hd = surface_dice_and_hausdorff(*embedded, spacing, tolerance_mm=tol, percent=percent)
            assert nsd == surface_dice(full, tol) or (math.isnan(nsd) and math.isnan(surface_dice(full, tol)))
            assert hd == robust_hausdorff(full, percent)


@pytest.mark.parametrize("seed", range(12))
def test_nsd_with_a_bounded_tree_search_equals_the_oracle(sd: ModuleType, seed: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A good prediction plus small islands (a few % of its surface) beyond the grid search's reach,
    # some within the tolerance, some beyond it: HD95 is decided by the near surfels, so the tree
    # looks only as far as the tolerance. NSD and HD95 must still equal the oracle's and the full
    # distances' to the last bit.
    import harness.metrics.surface as surface_module

    rng = np.random.default_rng(3000 + seed)
    spacing = tuple(float(s) for s in SPACINGS_3D[seed % len(SPACINGS_3D)])
    shape = (100, 60, 24)
    gt = np.zeros(shape, dtype=bool)
    gt[10:40, 10:40, 4:16] = random_blob(rng, (30, 30, 12), fill=0.7) | True
    pred = np.roll(gt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 2)))  # in-plane: within reach
    for _ in range(3):  # islands 5 to 40 mm away in-plane
        gap_mm = float(rng.uniform(5.0, 40.0))
        x = 40 + int(math.ceil(gap_mm / spacing[0]))
        y, z = int(rng.integers(10, 38)), int(rng.integers(4, 15))
        pred[min(x, 98), y:y + 2, z:z + 1] = True
    bounds: list[float] = []
    tree_distances = surface_module._tree_distances

    def spy(*args, upper_bound_mm: float = math.inf):  # type: ignore[no-untyped-def]
        bounds.append(upper_bound_mm)
        tree_distances(*args, upper_bound_mm=upper_bound_mm)

    monkeypatch.setattr(surface_module, "_tree_distances", spy)
    margin = embedding_margin(spacing)
    embedded = [np.pad(m, [(k, k) for k in margin]) for m in (gt, pred)]
    reference = sd.compute_surface_distances(gt, pred, spacing)
    for tol in (10.0, 14.0, 20.0, 30.0):
        full = surface_distances(gt, pred, spacing, tolerances_mm=(tol,))
        nsd, hd = surface_dice_and_hausdorff(*embedded, spacing, tolerance_mm=tol, percent=95.0)
        assert nsd == surface_dice(full, tol)
        assert hd == robust_hausdorff(full, 95.0)
        assert nsd == pytest.approx(sd.compute_surface_dice_at_tolerance(reference, tol), abs=1e-12)
        assert hd == sd.compute_robust_hausdorff(reference, 95)
    assert any(math.isfinite(b) for b in bounds)  # the bounded search was taken
