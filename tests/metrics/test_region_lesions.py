"""A profile's lesion-wise metrics (brats2023: BraTS 2023's lesion-wise Dice and HD95 per region) as
extra values of each region's row, equal to the step-by-step oracle of the official script."""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import numpy as np
import pytest

from harness.metrics.case import score_case
from harness.models import LesionWise
from harness.profiles import load_profile
from tests.metrics import lesion_oracles as oracle
from tests.metrics.lesion_cases import perturbed_prediction, tumour_phantom

OFFICIAL = {"whole_tumor": "WT", "tumor_core": "TC", "enhancing_tumor": "ET"}


@pytest.mark.parametrize("seed", range(3))
def test_brats2023_rows_carry_the_official_lesion_wise_scores(sd: ModuleType, seed: int) -> None:
    rng = np.random.default_rng([351, seed])
    gt = tumour_phantom(rng, (60, 64, 48), n_lesions=8)
    pred = perturbed_prediction(rng, gt)
    spacing = [(1.0, 1.0, 1.0), (0.9375, 0.9375, 1.5), (0.8, 1.2, 2.0)][seed]
    profile = load_profile("brats2023")
    assert profile.lesion_wise == LesionWise(dilation_iterations=3, small_lesion_max_mm3=50.0, hd95_penalty_mm=374.0)
    rows = score_case(np.asfortranarray(gt), np.asfortranarray(pred), spacing, profile)
    for row in rows:
        extra = dict(row.extra)
        assert tuple(extra) == LesionWise.METRICS
        ref = oracle.brats_lesion_results(pred.astype(np.float64), gt.astype(np.float64), spacing,
                                          OFFICIAL[row.organ], dilation_factor=3, lesion_volume_thresh=50, sd=sd)
        assert extra["lesion_dice"] == ref["LesionWise_Score_Dice"]
        assert extra["lesion_hd95_mm"] == ref["LesionWise_Score_HD95"]
        assert (extra["lesion_tp"], extra["lesion_fn"], extra["lesion_fp"]) == (ref["Num_TP"], ref["Num_FN"],
                                                                                 ref["Num_FP"])
    whole = dict(rows[0].extra)
    assert whole["lesion_tp"] >= 2 and whole["lesion_fp"] >= 1  # matching and false positives really exercised


def test_empty_regions_and_profiles_without_lesion_metrics() -> None:
    gt = np.zeros((20, 20, 20), np.uint8)
    gt[2:9, 2:9, 2:9] = 2  # edema only (343 voxels): no tumour core, no enhancing tumour
    profile = load_profile("brats2023")
    same = {r.organ: dict(r.extra) for r in score_case(gt, gt.copy(), (1.0, 1.0, 1.0), profile)}
    assert (same["whole_tumor"]["lesion_dice"], same["whole_tumor"]["lesion_hd95_mm"]) == (1.0, 0.0)
    # no lesion and no false one: Dice 1, HD95 0, as the official script's NaN fallback
    assert (same["enhancing_tumor"]["lesion_dice"], same["enhancing_tumor"]["lesion_hd95_mm"]) == (1.0, 0.0)
    pred = gt.copy()
    pred[16:18, 16:18, 16:18] = 3  # a false enhancing lesion, beyond the edema's 3-voxel dilation
    rows = {r.organ: dict(r.extra) for r in score_case(gt, pred, (1.0, 1.0, 1.0), profile)}
    # one lesion found exactly, one false: (1 + 0) / 2 and (0 + 374) / 2
    assert (rows["whole_tumor"]["lesion_dice"], rows["whole_tumor"]["lesion_hd95_mm"]) == (0.5, 187.0)
    assert (rows["enhancing_tumor"]["lesion_dice"], rows["enhancing_tumor"]["lesion_hd95_mm"]) == (0.0, 374.0)
    assert (rows["tumor_core"]["lesion_tp"], rows["tumor_core"]["lesion_fp"]) == (0.0, 1.0)
    kits = score_case(gt, pred, (1.0, 1.0, 1.0), load_profile("kits23"))
    assert all(r.extra == () for r in kits) and load_profile("kits23").extra_metrics == ()
    bare = dataclasses.replace(load_profile("brats2023"), lesion_wise=None)
    assert bare.content_sha256 != load_profile("brats2023").content_sha256  # a scoring rule: part of the hash
    assert not math.isnan(score_case(gt, pred, (1.0, 1.0, 1.0), bare)[0].dsc)
