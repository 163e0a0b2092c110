"""Errors of known size and place, classified at the volume, component and voxel level.

One organ, a 20 x 20 x 20 box of ground truth on a 1 mm grid with a 2 mm surface tolerance; each
case plants one kind of pseudo-label error: a missed lobe, a leak into the neighbour, a false
island, and a one-voxel boundary shift (within the tolerance: not an error an annotator would
revise, though its shells are large components of disagreement).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.attention import detect_errors, table1
from harness.attention.evaluation import beyond_tolerance, evaluate_case, format_table1, sensitivity_by_size

SHAPE = (40, 40, 40)
TOLERANCE = 2.0
GT = np.zeros(SHAPE, bool)
GT[10:30, 10:30, 10:30] = True


def _mask(*boxes: tuple[slice, ...]) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    for b in boxes:
        m[b] = True
    return m


MISSED_LOBE = np.s_[10:18, 10:30, 10:30]  # 8 x 20 x 20 = 3200 voxels of ground truth missed
LEAK = np.s_[30:36, 12:28, 12:28]  # 6 voxels deep past the surface: 4 of them beyond 2 mm
ISLAND = np.s_[2:8, 2:8, 32:38]  # 216 voxels far from the organ


def _planted() -> dict[str, np.ndarray]:
    missed = GT.copy()
    missed[MISSED_LOBE] = False
    leak = GT | _mask(LEAK)
    island = GT | _mask(ISLAND)
    shifted = np.roll(GT, 1, axis=0)  # the whole surface one voxel off along x
    return {"missed_lobe": missed, "leak": leak, "island": island, "shift": shifted}


def test_the_error_beyond_tolerance_is_what_an_annotator_would_revise() -> None:
    pseudo = _planted()
    missed = beyond_tolerance(GT, pseudo["missed_lobe"], tolerance_mm=TOLERANCE)
    # A missed voxel counts when it is more than 2 mm from the nearest voxel outside the truth:
    # the lobe's outer 2 voxels (towards the organ's faces) are within the tolerance.
    expected = np.zeros(SHAPE, bool)
    expected[12:18, 12:28, 12:28] = True
    assert np.array_equal(missed, expected)
    leak = beyond_tolerance(GT, pseudo["leak"], tolerance_mm=TOLERANCE)
    assert np.array_equal(leak, _mask(np.s_[32:36, 12:28, 12:28]))  # 3, 4, 5, 6 mm from the surface
    assert np.array_equal(beyond_tolerance(GT, pseudo["island"], tolerance_mm=TOLERANCE), _mask(ISLAND))
    assert not beyond_tolerance(GT, pseudo["shift"], tolerance_mm=TOLERANCE).any()
    # tolerance 0 keeps the whole disagreement (the earlier definition)
    assert np.array_equal(beyond_tolerance(GT, pseudo["shift"], tolerance_mm=0.0), GT ^ pseudo["shift"])


def test_anisotropic_spacing_measures_the_tolerance_in_mm() -> None:
    leak = GT | _mask(LEAK)
    # 0.5 mm along x: the 6-voxel leak is 3 mm deep, only its last two voxels (2.5, 3 mm) lie beyond 2 mm
    far = beyond_tolerance(GT, leak, spacing=(0.5, 1.0, 1.0), tolerance_mm=TOLERANCE)
    assert np.array_equal(far, _mask(np.s_[34:36, 12:28, 12:28]))


@pytest.mark.parametrize(("kind", "attention_box", "expected"), [
    # kind, attention map, (has_error, flagged, detected, components, detected components)
    ("missed_lobe", np.s_[13:16, 15:20, 15:20], (1, 1, 1, 1, 1)),
    ("missed_lobe", np.s_[30:34, 2:6, 2:6], (1, 1, 0, 1, 0)),
    ("leak", np.s_[33:35, 14:20, 14:20], (1, 1, 1, 1, 1)),
    ("island", np.s_[4:6, 4:6, 34:36], (1, 1, 1, 1, 1)),
    ("island", None, (1, 0, 0, 1, 0)),
    ("shift", np.s_[9:12, 10:30, 10:30], (0, 1, 0, 0, 0)),  # attention on the shell: flagged, no error
])
def test_each_planted_error_at_the_volume_and_component_level(kind: str, attention_box, expected) -> None:
    pseudo = _planted()[kind]
    attention = _mask(attention_box) if attention_box is not None else np.zeros(SHAPE, bool)
    got = detect_errors(GT, pseudo, attention, min_error_voxels=100, tolerance_mm=TOLERANCE)
    assert (got["has_error"], got["flagged"], got["detected"], got["error_components"],
            got["detected_error_components"]) == expected
    # voxel level: always on the whole disagreement, whatever the tolerance
    disagreement = GT ^ pseudo
    inter = int(np.count_nonzero(attention & disagreement))
    assert got["error_voxels"] == int(disagreement.sum())
    assert got["voxel_sensitivity"] == inter / int(disagreement.sum())
    assert (math.isnan(got["voxel_precision"]) if not attention.any()
            else got["voxel_precision"] == inter / int(attention.sum()))


def test_the_shift_was_an_error_under_the_earlier_definition() -> None:
    shell = np.zeros(SHAPE, bool)
    shell[9:11, 10:30, 10:30] = True
    old = detect_errors(GT, _planted()["shift"], shell, min_error_voxels=100, tolerance_mm=0.0)
    new = detect_errors(GT, _planted()["shift"], shell, min_error_voxels=100, tolerance_mm=TOLERANCE)
    assert (old["has_error"], old["error_components"]) == (1, 2)  # two 400-voxel shells
    assert (new["has_error"], new["error_components"]) == (0, 0)


def test_volume_level_table_and_sizes_over_cases() -> None:
    pseudo = _planted()
    cases = {  # case: (pseudo label, attention box)
        "c1": (pseudo["missed_lobe"], np.s_[13:16, 15:20, 15:20]),  # error, detected
        "c2": (pseudo["leak"], np.s_[33:35, 14:20, 14:20]),  # error, detected
        "c3": (pseudo["island"], np.s_[30:34, 2:6, 2:6]),  # error, flagged elsewhere: missed
        "c4": (pseudo["shift"], np.s_[9:12, 10:30, 10:30]),  # no error, flagged: a false alarm
        "c5": (GT.copy(), None),  # perfect, not flagged
    }
    records, components = [], []
    for case, (ps, box) in cases.items():
        attention = {"liver": _mask(box) if box is not None else np.zeros(SHAPE, bool)}
        records += evaluate_case(GT.astype(np.uint8), ps.astype(np.uint8), attention, labels={"liver": 1}, case=case,
                                 tolerances={"liver": TOLERANCE}, spacing=(1.0, 1.0, 1.0), components=components)
    summary = table1(pd.DataFrame(records)).set_index("organ")
    liver = summary.loc["liver"]
    assert (liver["error_cases"], liver["detected_cases"], liver["flagged_cases"], liver["flagged_error_cases"]) == (3, 2, 4, 3)
    assert liver["volume_sensitivity"] == 2 / 3 and liver["volume_precision"] == 3 / 4
    text = format_table1(table1(pd.DataFrame(records))).set_index("organ")
    assert text.loc["liver", "volume_sensitivity"] == "0.67 (2/3)"
    assert text.loc["liver", "volume_precision"] == "0.75 (3/4)"
    assert text.loc["liver", "paper_sensitivity"] == "0.74" and text.loc["all", "paper_precision"] == "0.81"
    # one component per erroneous case: the lobe 6 x 16 x 16 = 1536 voxels (1.536 ml), the leak
    # 4 x 16 x 16 = 1024 (1.024 ml), the island 216 (0.216 ml)
    assert sorted((c["case"], c["voxels"], c["detected"]) for c in components) == [
        ("c1", 1536, 1), ("c2", 1024, 1), ("c3", 216, 0)]
    sizes = sensitivity_by_size(components).set_index("error_size")
    assert sizes.loc["0-1 ml", "components"] == 1 and sizes.loc["0-1 ml", "sensitivity"] == 0.0
    assert sizes.loc["1-5 ml", "components"] == 2 and sizes.loc["1-5 ml", "sensitivity"] == 1.0
    assert math.isnan(sizes.loc[">= 100 ml", "sensitivity"])


def _oracle_beyond(gt: np.ndarray, pseudo: np.ndarray, spacing: tuple[float, ...], tolerance: float) -> np.ndarray:
    """Brute force: a disagreement voxel's centre against every cube of the other side."""
    s = np.asarray(spacing)
    out = np.zeros(gt.shape, bool)
    for voxel in np.argwhere(gt ^ pseudo):
        other = np.argwhere(~gt if gt[tuple(voxel)] else gt)
        gap = np.maximum(0.0, np.abs(other - voxel) * s - s / 2)  # per axis, to the cube's faces
        out[tuple(voxel)] = np.sqrt((gap ** 2).sum(axis=1)).min() > tolerance
    return out


def test_distance_is_measured_to_the_surface_between_voxels() -> None:
    # A small CT's voxels (2.5 x 2.5 x 5.5 mm) against a 2 mm tolerance: a one-voxel shell in plane
    # has its centres 1.25 mm from the surface (within), a one-slice shell 2.75 mm (beyond).
    gt = np.zeros((12, 12, 8), bool)
    gt[3:9, 3:9, 2:6] = True
    spacing = (2.5, 2.5, 5.5)
    in_plane = gt.copy()
    in_plane[9, 3:9, 2:6] = True
    assert not beyond_tolerance(gt, in_plane, spacing=spacing, tolerance_mm=2.0).any()
    one_slice = gt.copy()
    one_slice[3:9, 3:9, 6] = True
    assert np.array_equal(beyond_tolerance(gt, one_slice, spacing=spacing, tolerance_mm=2.0), one_slice ^ gt)
    two_deep = gt.copy()
    two_deep[9:11, 3:9, 2:6] = True  # the outer layer's centres are 3.75 mm out
    expected = np.zeros_like(gt)
    expected[10, 3:9, 2:6] = True
    assert np.array_equal(beyond_tolerance(gt, two_deep, spacing=spacing, tolerance_mm=2.0), expected)


@pytest.mark.parametrize("method", [None, "gather", "distance"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beyond_tolerance_equals_brute_force_on_random_shapes(seed: int, method: str | None) -> None:
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    gt = ndimage.binary_opening(rng.random((14, 13, 9)) < 0.55, iterations=1)
    pseudo = gt ^ (rng.random(gt.shape) < 0.12)
    spacing = (float(rng.uniform(0.6, 2.6)), float(rng.uniform(0.6, 2.6)), float(rng.uniform(1.0, 5.5)))
    for tolerance in (1.0, 2.0, 3.7):
        assert np.array_equal(beyond_tolerance(gt, pseudo, spacing=spacing, tolerance_mm=tolerance, method=method),
                              _oracle_beyond(gt, pseudo, spacing, tolerance)), (spacing, tolerance)


@pytest.mark.parametrize("method", ["gather", "distance"])
def test_an_error_with_no_ground_truth_near_is_all_beyond(method: str) -> None:
    gt = np.zeros((10, 10, 6), bool)
    pseudo = gt.copy()
    pseudo[2:5, 2:5, 1:4] = True  # a false-positive island in an empty ground truth
    assert np.array_equal(beyond_tolerance(gt, pseudo, spacing=(1.0, 1.0, 2.0), tolerance_mm=3.0, method=method), pseudo)
    # missed whole, the same blob is within 3 mm of its own surface everywhere: no error beyond it
    assert not beyond_tolerance(pseudo, gt, spacing=(1.0, 1.0, 2.0), tolerance_mm=3.0, method=method).any()
    assert np.array_equal(beyond_tolerance(pseudo, gt, spacing=(1.0, 1.0, 2.0), tolerance_mm=1.0, method=method),
                          _oracle_beyond(pseudo, gt, (1.0, 1.0, 2.0), 1.0))
