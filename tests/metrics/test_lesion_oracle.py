"""BraTS 2023 lesion-wise Dice/HD95 and autoPET false volumes against their official scripts,
re-run step by step (tests/metrics/lesion_oracles.py: neither script is a package on the index),
on random cases and on tumour phantoms with a dozen lesions. Equality is exact: both sides sum the
same float64 values in the same order."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from harness.metrics.lesion import (
    BRATS_2023_MATCHING,
    LesionMatching,
    autopet_false_volumes,
    autopet_voxel_volume_ml,
    brats_lesion_wise,
)
from tests.metrics import lesion_oracles as oracle
from tests.metrics.lesion_cases import perturbed_prediction, random_lesion_masks, tumour_phantom

F32 = np.float32
SPACINGS = [(1.0, 1.0, 1.0), (float(F32(0.9375)), float(F32(0.9375)), float(F32(1.5))), (0.8, 1.2, 2.0)]


def _ours(gt: np.ndarray, pred: np.ndarray, spacing, region: str, matching: LesionMatching):
    labels = oracle.REGIONS[region]
    return brats_lesion_wise(np.isin(gt, labels), np.isin(pred, labels), spacing, matching=matching)


def _assert_brats_equal(gt, pred, spacing, region, challenge, sd):
    matching = BRATS_2023_MATCHING[challenge]
    ours = _ours(gt, pred, spacing, region, matching)
    ref = oracle.brats_lesion_results(
        pred.astype(np.float64), gt.astype(np.float64), spacing, region,
        dilation_factor=matching.dilation_iterations, lesion_volume_thresh=matching.small_lesion_max_mm3, sd=sd)
    assert (ours.n_tp, ours.n_fp, ours.n_fn) == (ref["Num_TP"], ref["Num_FP"], ref["Num_FN"])
    assert ours.dice == ref["LesionWise_Score_Dice"]
    assert ours.hd95_mm == ref["LesionWise_Score_HD95"]
    return ours


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("region", ["WT", "TC", "ET"])
def test_brats_phantoms_with_a_dozen_lesions(seed: int, region: str, sd: ModuleType) -> None:
    rng = np.random.default_rng([35, seed])
    gt = tumour_phantom(rng, (72, 80, 56), n_lesions=12)
    pred = perturbed_prediction(rng, gt)
    challenge = ["BraTS-GLI", "BraTS-MET", "BraTS-MEN", "BraTS-PED"][seed]
    ours = _assert_brats_equal(gt, pred, SPACINGS[seed % len(SPACINGS)], region, challenge, sd)
    if region == "WT":  # the phantom really exercises matching: hits and false positives
        assert ours.n_tp >= 3 and ours.n_fp >= 1


@pytest.mark.parametrize("seed", range(12))
def test_brats_random_cases(seed: int, sd: ModuleType) -> None:
    rng = np.random.default_rng([36, seed])
    shape = tuple(int(n) for n in rng.integers(10, 28, size=3))
    gt = random_lesion_masks(rng, shape, fill=rng.uniform(0.02, 0.2)).astype(np.uint8) * 3
    pred = random_lesion_masks(rng, shape, fill=rng.uniform(0.02, 0.2)).astype(np.uint8) * 3
    if seed % 2:
        pred = np.where(rng.random(shape) < 0.8, gt, pred)  # mostly right, so lesions match
    challenge = list(BRATS_2023_MATCHING)[seed % 5]
    _assert_brats_equal(gt, pred, SPACINGS[seed % len(SPACINGS)], "ET", challenge, sd)


def test_brats_lesions_at_the_volume_border_and_fortran_order(sd: ModuleType) -> None:
    """Dilation clipped at the edges, and arrays in NIfTI's (Fortran) memory order."""
    rng = np.random.default_rng(7)
    gt = np.asfortranarray(tumour_phantom(rng, (40, 44, 36), n_lesions=10))
    gt[0:3, 5:12, 0:4] = 3
    gt[-2:, -6:, -3:] = 3
    pred = np.asfortranarray(perturbed_prediction(rng, gt))
    pred[0:2, 20:25, -2:] = 3
    _assert_brats_equal(gt, pred, (1.0, 1.0, 1.0), "TC", "BraTS-MET", sd)


@pytest.mark.parametrize(
    ("gt_fill", "pred_fill", "dice", "hd95"),
    [(False, False, 1.0, 0.0), (True, False, 0.0, 374.0), (False, True, 0.0, 374.0)],
)
def test_brats_empty_cases(gt_fill: bool, pred_fill: bool, dice: float, hd95: float, sd: ModuleType) -> None:
    gt = np.zeros((20, 20, 20), dtype=np.uint8)
    pred = np.zeros_like(gt)
    if gt_fill:
        gt[5:12, 5:12, 5:12] = 3  # 343 voxels: scored
    if pred_fill:
        pred[2:4, 2:4, 2:4] = 3
        pred[14:16, 14:16, 14:16] = 3
    ours = _assert_brats_equal(gt, pred, (1.0, 1.0, 1.0), "ET", "BraTS-GLI", sd)
    assert (ours.dice, ours.hd95_mm) == (dice, hd95)


def test_brats_small_lesions_are_left_out_but_false_positives_count(sd: ModuleType) -> None:
    gt = np.zeros((30, 30, 30), dtype=np.uint8)
    gt[2:5, 2:5, 2:5] = 3  # 27 mm^3 <= 50: not scored even though missed
    gt[10:20, 10:20, 10:20] = 3
    pred = np.zeros_like(gt)
    pred[10:20, 10:20, 11:21] = 3
    pred[26:28, 26:28, 26:28] = 3  # 8 voxels, far from every lesion: a false positive anyway
    ours = _assert_brats_equal(gt, pred, (1.0, 1.0, 1.0), "ET", "BraTS-GLI", sd)
    assert (ours.n_tp, ours.n_fn, ours.n_fp) == (1, 0, 1)
    assert [lesion.scored for lesion in ours.lesions] == [False, True]
    assert ours.dice == pytest.approx(0.9 / 2)


def test_brats_rejects_non_boolean_masks() -> None:
    with pytest.raises(ValueError, match="boolean"):
        brats_lesion_wise(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), bool), (1.0, 1.0, 1.0),
                          matching=BRATS_2023_MATCHING["BraTS-GLI"])


PIXDIMS = [(2.0364201, 2.0364201, 3.0), (4.0728402, 4.0728402, 3.0), (1.0, 1.0, 1.0), (0.97, 0.97, 2.5)]


def _assert_autopet_equal(gt: np.ndarray, pred: np.ndarray, pixdim) -> None:
    voxel = oracle.autopet_voxel_vol(pixdim)
    assert autopet_voxel_volume_ml(pixdim) == float(voxel)
    ours = autopet_false_volumes(gt > 0, pred > 0, voxel_volume_ml=autopet_voxel_volume_ml(pixdim))
    fp_ml, fn_ml = oracle.autopet_false_volumes(gt.astype(np.float64), pred.astype(np.float64), voxel)
    assert ours.false_positive_ml == float(fp_ml)
    assert ours.false_negative_ml == float(fn_ml)


@pytest.mark.parametrize("seed", range(4))
def test_autopet_phantoms(seed: int) -> None:
    rng = np.random.default_rng([37, seed])
    gt = tumour_phantom(rng, (64, 72, 60), n_lesions=12) > 0
    pred = perturbed_prediction(rng, gt.astype(np.uint8), n_false_positives=4) > 0
    _assert_autopet_equal(gt, pred, PIXDIMS[seed])
    ours = autopet_false_volumes(gt, pred, voxel_volume_ml=1.0)
    assert ours.false_positive_voxels > 0 and ours.false_negative_voxels > 0


@pytest.mark.parametrize("seed", range(12))
def test_autopet_random_cases(seed: int) -> None:
    rng = np.random.default_rng([38, seed])
    shape = tuple(int(n) for n in rng.integers(8, 30, size=3))
    gt = random_lesion_masks(rng, shape, fill=rng.uniform(0.01, 0.3))
    pred = random_lesion_masks(rng, shape, fill=rng.uniform(0.01, 0.3))
    if seed % 3 == 0:
        pred = np.asfortranarray(pred)
    _assert_autopet_equal(gt, pred, PIXDIMS[seed % len(PIXDIMS)])


def test_autopet_connectivity_is_18() -> None:
    """A predicted voxel sharing only a corner with one that overlaps the lesion is its own,
    untouched component (18-connectivity): a false positive. Sharing an edge, it is not."""
    gt = np.zeros((6, 6, 6), dtype=bool)
    gt[1, 1, 1] = True
    corner = gt.copy()
    corner[2, 2, 2] = True
    edge = gt.copy()
    edge[2, 2, 1] = True
    assert autopet_false_volumes(gt, corner, voxel_volume_ml=1.0).false_positive_voxels == 1
    assert autopet_false_volumes(gt, edge, voxel_volume_ml=1.0).false_positive_voxels == 0
    for pred in (corner, edge):
        _assert_autopet_equal(gt, pred, PIXDIMS[3])


def test_autopet_empty_masks() -> None:
    empty = np.zeros((5, 5, 5), dtype=bool)
    full = empty.copy()
    full[1:3, 1:3, 1:3] = True
    assert autopet_false_volumes(empty, empty, voxel_volume_ml=0.5).false_positive_ml == 0.0
    scores = autopet_false_volumes(full, empty, voxel_volume_ml=0.5)
    assert (scores.false_positive_ml, scores.false_negative_ml) == (0.0, 4.0)
    _assert_autopet_equal(full, empty, PIXDIMS[0])
    _assert_autopet_equal(empty, full, PIXDIMS[1])
