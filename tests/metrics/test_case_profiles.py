"""Per-case scoring under each profile against the official FLARE22 script's logic, run with the
oracle package: every empty-mask combination, the z-range cut with and without its off-by-one,
the DSC < 0.2 cut-off and the rounding."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from harness.metrics.case import score_case
from harness.models import Profile
from harness.profiles import load_profile
from tests.metrics.conftest import oracle_distances, random_blob

SCENARIOS = ("both", "both_empty", "gt_only", "pred_only", "far", "one_slice", "two_slices")


def flare_script_reference(sd: ModuleType, gt, seg, spacing, profile: Profile):
    """The official FLARE22 evaluation loop, with `profile`'s switches, scored by the oracle."""
    rows = {}
    for organ in profile.organs:
        i = organ.label
        n_gt, n_seg = np.sum(gt == i), np.sum(seg == i)
        hd = None
        if n_gt == 0 and n_seg == 0:
            dsc = nsd = profile.both_empty
        elif n_gt == 0 or n_seg == 0:  # exactly one empty, decided on the whole volume
            dsc = nsd = 0.0
            hd = math.inf
        else:
            if organ.zrange_only:
                z = np.where(gt == i)[2]
                upper = z.max() if profile.zrange_drop_last_slice else z.max() + 1
                gt_i, seg_i = gt[:, :, z.min():upper] == i, seg[:, :, z.min():upper] == i
            else:
                gt_i, seg_i = gt == i, seg == i
            if gt_i.size == 0:  # one-slice organ cut to nothing: the script crashes here
                rows[organ.name] = (math.nan, math.nan, None)
                continue
            dsc = sd.compute_dice_coefficient(gt_i, seg_i)
            dists = oracle_distances(sd, gt_i, seg_i, spacing)
            if profile.nsd_min_dsc is not None and dsc < profile.nsd_min_dsc:
                nsd = 0.0
            else:
                with np.errstate(invalid="ignore"):
                    nsd = sd.compute_surface_dice_at_tolerance(dists, organ.tolerance_mm)
            if gt_i.any() or seg_i.any():
                hd = sd.compute_robust_hausdorff(dists, 95)
        if profile.round_decimals is not None:
            dsc, nsd = round(dsc, profile.round_decimals), round(nsd, profile.round_decimals)
        rows[organ.name] = (float(dsc), float(nsd), hd)
    return rows


def make_case(seed: int, profile: Profile):
    rng = np.random.default_rng(seed)
    shape = (28, 26, 18)
    gt = np.zeros(shape, np.uint8)
    seg = np.zeros(shape, np.uint8)
    for k, organ in enumerate(profile.organs):
        scenario = SCENARIOS[(seed + k) % len(SCENARIOS)]
        blob = random_blob(rng, shape, fill=0.03) & (gt == 0)
        if scenario in ("one_slice", "two_slices"):
            z = int(rng.integers(2, shape[2] - 3))
            keep = np.zeros(shape, bool)
            keep[:, :, z : z + (1 if scenario == "one_slice" else 2)] = True
            blob &= keep
            if not blob.any():
                blob[3 + k, 3, z] = True
        if scenario in ("both", "gt_only", "one_slice", "two_slices", "far"):
            gt[blob] = organ.label
        if scenario in ("both", "one_slice", "two_slices"):
            moved = ndimage.binary_dilation(blob) if rng.random() < 0.5 else ndimage.binary_erosion(blob)
            seg[moved & (seg == 0)] = organ.label
        elif scenario in ("pred_only", "far"):  # "far": a disjoint prediction, DSC ~ 0 < 0.2
            other = random_blob(rng, shape, fill=0.02) & (gt == 0) & (seg == 0) & ~blob
            seg[other] = organ.label
    return gt, seg


SPACINGS = [(np.float32(0.8), np.float32(0.8), np.float32(2.5)), (1.0, 1.0, 1.0), (0.7, 1.1, 3.0)]


@pytest.mark.parametrize("profile_name", ["flare22", "strict", "atlas8"])
@pytest.mark.parametrize("seed", range(7))
def test_profile_rules_match_the_official_script_logic(sd: ModuleType, profile_name: str, seed: int) -> None:
    profile = load_profile(profile_name)
    gt, seg = make_case(seed, profile)
    spacing = SPACINGS[seed % len(SPACINGS)]
    ref = flare_script_reference(sd, gt, seg, spacing, profile)
    ours = {s.organ: s for s in score_case(gt, seg, spacing, profile, case_id="c", threads=1 + seed % 2)}
    assert list(ours) == [o.name for o in profile.organs]
    for name, (dsc, nsd, hd) in ref.items():
        got = ours[name]
        for label, a, b in (("dsc", got.dsc, dsc), ("nsd", got.nsd, nsd)):
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, f"{name} {label}: {a} != {b}"
        if hd is not None:
            assert got.hd95_mm == pytest.approx(hd, abs=1e-12) or (math.isinf(hd) and math.isinf(got.hd95_mm))


def test_empty_mask_conventions_per_profile() -> None:
    gt = np.zeros((8, 8, 8), np.uint8)
    seg = np.zeros_like(gt)
    seg[2:4, 2:4, 2:4] = 2  # right kidney predicted, absent in ground truth
    flare = {s.organ: s for s in score_case(gt, seg, (1, 1, 1), load_profile("flare22"))}
    strict = {s.organ: s for s in score_case(gt, seg, (1, 1, 1), load_profile("strict"))}
    # Both empty: 1 under flare22, NaN (not applicable) under strict.
    assert (flare["liver"].dsc, flare["liver"].nsd, flare["liver"].hd95_mm) == (1.0, 1.0, 0.0)
    assert all(math.isnan(v) for v in (strict["liver"].dsc, strict["liver"].nsd, strict["liver"].hd95_mm))
    # Only the prediction: 0 under both, HD95 infinite.
    for table in (flare, strict):
        k = table["right_kidney"]
        assert (k.dsc, k.nsd) == (0.0, 0.0) and math.isinf(k.hd95_mm)


def test_zrange_off_by_one_on_a_one_slice_aorta() -> None:
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[3:6, 3:6, 4] = 5  # aorta on a single slice
    seg = gt.copy()
    flare = {s.organ: s for s in score_case(gt, seg, (1, 1, 1), load_profile("flare22"))}
    strict = {s.organ: s for s in score_case(gt, seg, (1, 1, 1), load_profile("strict"))}
    assert math.isnan(flare["aorta"].dsc) and math.isnan(flare["aorta"].nsd)  # the script's quirk
    assert (strict["aorta"].dsc, strict["aorta"].nsd) == (1.0, 1.0)


def test_dsc_cutoff_forces_nsd_zero_only_under_flare22() -> None:
    gt = np.zeros((12, 12, 12), np.uint8)
    seg = np.zeros_like(gt)
    gt[2:6, 2:6, 2:6] = 1
    seg[5:9, 5:9, 5:9] = 1  # DSC = 2/128 < 0.2, surfaces within 5 mm
    flare = score_case(gt, seg, (1, 1, 1), load_profile("flare22"))[0]
    strict = score_case(gt, seg, (1, 1, 1), load_profile("strict"))[0]
    assert flare.dsc == round(2 * 1 / 128, 4) and flare.nsd == 0.0
    assert strict.nsd > 0.5


def test_a_fortran_ordered_pair_scores_exactly_as_its_c_ordered_copy() -> None:
    """NIfTI volumes load Fortran-ordered; the counts and boxes walk them in their own order."""
    from harness.data.perturb import perturb_labels
    from tests.conftest import toy_labels

    gt = toy_labels(3)
    pred = perturb_labels(gt, rng=np.random.default_rng(2), spacing_mm=(0.8, 0.9, 2.5))  # realistic errors
    profile = load_profile("flare22")
    c_order = score_case(np.ascontiguousarray(gt), np.ascontiguousarray(pred), (0.8, 0.9, 2.5), profile)
    f_order = score_case(np.asfortranarray(gt), np.asfortranarray(pred), (0.8, 0.9, 2.5), profile)
    assert np.asfortranarray(gt).flags.f_contiguous and not np.asfortranarray(gt).flags.c_contiguous
    assert [(s.dsc, s.nsd, s.hd95_mm) for s in f_order] == [(s.dsc, s.nsd, s.hd95_mm) for s in c_order]
    assert any(s.dsc < 1 for s in c_order if not math.isnan(s.dsc))  # real errors, not a trivial pair


@pytest.mark.parametrize("order", ["C", "F"])
def test_dsc_counts_only_the_labelled_region_yet_equal_whole_volume_counts(order: str) -> None:
    """Confusion counts are taken in the union of the labels' boxes, (0, 0) gets the rest: the DSC
    equals a whole-volume count, with organs near the volume's corners and one label only predicted."""
    rng = np.random.default_rng(5)
    gt = np.zeros((40, 36, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[2:12, 3:15, 1:6] = 1  # liver near one corner
    pred[3:12, 3:14, 1:7] = 1
    gt[30:38, 25:34, 12:19] = 3  # spleen near the opposite one
    pred[31:39, 25:33, 12:18] = 3
    pred[20:24, 1:4, 9:11] = 4  # a pancreas the ground truth lacks
    noise = rng.random(gt.shape) < 0.02
    pred[noise & (gt == 1)] = 0
    gt, pred = (np.asarray(a, order=order) for a in (gt, pred))
    scores = {s.organ: s.dsc for s in score_case(gt, pred, (1.0, 1.0, 2.0), load_profile("strict"))}
    for organ, label in (("liver", 1), ("spleen", 3), ("pancreas", 4)):
        g, p = gt == label, pred == label
        assert scores[organ] == 2 * np.count_nonzero(g & p) / (np.count_nonzero(g) + np.count_nonzero(p))
    assert math.isnan(scores["aorta"])  # both empty: not applicable under strict
    empty = score_case(np.zeros_like(gt), np.zeros_like(pred), (1.0, 1.0, 2.0), load_profile("strict"))
    assert all(math.isnan(s.dsc) for s in empty)
