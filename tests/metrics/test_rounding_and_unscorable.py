"""FLARE22's official script rounds numpy float64 values (numpy's rounding), not Python floats; an
organ its z-range cut leaves nothing of is `not_scorable`, counted apart."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from harness.metrics.case import score_case
from harness.models import OrganStatus
from harness.profiles import BUILTIN_PROFILES, load_profile

ROUNDING_PROFILES = [name for name in BUILTIN_PROFILES if load_profile(name).round_decimals is not None]


def _dsc_tie() -> tuple[np.ndarray, np.ndarray]:
    """Liver masks of 160 voxels each overlapping on 113: DSC = 226 / 320 = 0.70625 exactly."""
    gt = np.zeros((20, 20, 4), np.uint8)
    pred = np.zeros_like(gt)
    gt.reshape(-1)[:160] = 1
    pred.reshape(-1)[47:207] = 1
    return gt, pred


def test_profiles_that_round_are_known() -> None:
    assert ROUNDING_PROFILES == ["flare22", "flare23"]  # every profile that rounds is tested below


@pytest.mark.parametrize("name", ROUNDING_PROFILES)
def test_a_decimal_tie_rounds_as_numpy_rounds_float64(name: str) -> None:
    profile = load_profile(name)
    gt, pred = _dsc_tie()
    liver = next(s for s in score_case(gt, pred, (1.0, 1.0, 1.0), profile) if s.organ == "liver")
    exact = np.float64(2 * 113) / np.float64(320)
    assert exact == 0.70625
    assert liver.dsc == round(exact, profile.round_decimals)  # `round` of a numpy float64, as the script does
    assert liver.dsc == 0.7062 and round(0.70625, 4) == 0.7063  # Python's round of a float would differ


@pytest.mark.parametrize("name", ROUNDING_PROFILES)
def test_every_rounded_value_is_numpys_rounding_of_the_unrounded_one(name: str) -> None:
    profile = load_profile(name)
    unrounded = dataclasses.replace(profile, round_decimals=None)
    rng = np.random.default_rng(4)
    for _ in range(40):
        gt = np.zeros((14, 13, 7), np.uint8)
        pred = np.zeros_like(gt)
        for label in (1, 2, 3):
            lo, size = rng.integers(0, 5, 3), rng.integers(2, 7, 3)
            gt[lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1], lo[2]:lo[2] + size[2]] = label
            shift = rng.integers(-1, 2, 3)
            lo2 = np.clip(lo + shift, 0, None)
            pred[lo2[0]:lo2[0] + size[0], lo2[1]:lo2[1] + size[1], lo2[2]:lo2[2] + size[2]] = label
        spacing = (float(rng.uniform(0.6, 1.2)), float(rng.uniform(0.6, 1.2)), float(rng.uniform(1.0, 3.0)))
        for rounded, raw in zip(score_case(gt, pred, spacing, profile), score_case(gt, pred, spacing, unrounded),
                                strict=True):
            for got, value in ((rounded.dsc, raw.dsc), (rounded.nsd, raw.nsd)):
                assert (math.isnan(got) and math.isnan(value)) or got == round(np.float64(value), profile.round_decimals)


def test_a_one_slice_organ_under_the_zrange_cut_is_not_scorable_with_its_reason() -> None:
    profile = load_profile("flare22")
    gt = np.zeros((10, 10, 6), np.uint8)
    gt[2:6, 2:6, 3] = 5  # the aorta on one slice: the official cut [z_lower:z_upper] leaves nothing
    gt[1:8, 1:8, 1:5][gt[1:8, 1:8, 1:5] == 0] = 1
    scores = {s.organ: s for s in score_case(gt, gt.copy(), (1.0, 1.0, 2.5), profile)}
    aorta = scores["aorta"]
    assert math.isnan(aorta.dsc) and aorta.status == OrganStatus.NOT_SCORABLE
    assert "aorta is labelled on one slice only" in aorta.message
    assert scores["liver"].status == OrganStatus.OK and scores["liver"].dsc == 1.0
    strict = {s.organ: s for s in score_case(gt, gt.copy(), (1.0, 1.0, 2.5), load_profile("strict"))}
    assert strict["aorta"].status == OrganStatus.OK and strict["aorta"].dsc == 1.0  # strict keeps the top slice


@pytest.mark.parametrize("name", ["flare22", "flare23"])
def test_a_one_slice_organ_with_an_empty_prediction_is_zero_as_the_official_script(name: str) -> None:
    """The script decides emptiness on the whole volume before the z-range cut: ground truth present,
    prediction empty is DSC = NSD = 0 there, even for an organ its cut would leave nothing of."""
    profile = load_profile(name)
    gt = np.zeros((10, 10, 6), np.uint8)
    gt[2:6, 2:6, 3] = 5  # the aorta on one slice
    gt[1:8, 1:8, 1:5][gt[1:8, 1:8, 1:5] == 0] = 1
    pred = np.where(gt == 5, 0, gt).astype(np.uint8)  # no aorta anywhere in the prediction
    aorta = next(s for s in score_case(gt, pred, (1.0, 1.0, 2.5), profile) if s.organ == "aorta")
    assert (aorta.dsc, aorta.nsd, aorta.status, aorta.message) == (0.0, 0.0, OrganStatus.OK, "")
    assert math.isinf(aorta.hd95_mm)
