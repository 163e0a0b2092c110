"""Regions: scored structures as unions of labels (BraTS' WT/TC/ET, KiTS' kidney_and_mass/mass/tumor),
checked against the oracle package (`surface-distance`) on union masks built here by hand, voxel
label by voxel label, on random cases and on a phantom whose Dice is known in closed form."""

from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from harness.metrics.case import score_case
from harness.models import Profile, Region
from harness.profiles import load_profile, profile_from_dict
from tests.metrics.conftest import oracle_distances, random_blob


def union_by_hand(label_map: np.ndarray, labels: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(label_map.shape, bool)
    for value in labels:
        mask |= label_map == value
    return mask


def region_reference(sd: ModuleType, gt: np.ndarray, seg: np.ndarray, spacing, profile: Profile):
    """Each region scored by the oracle on its union masks, with the profile's rules (the KiTS23 /
    BraTS 2023 scripts' empty-mask conventions; FLARE's z-range cut of the union, cut-off, rounding)."""
    rows = {}
    for region in profile.scored:
        g, s = union_by_hand(gt, region.labels), union_by_hand(seg, region.labels)
        hd = None
        if not g.any() and not s.any():
            dsc = nsd = profile.both_empty
            hd = math.nan if math.isnan(profile.both_empty) else 0.0
        elif not g.any() or not s.any():
            dsc, nsd, hd = 0.0, 0.0, math.inf
        else:
            if region.zrange_only:
                z = np.where(g)[2]
                upper = z.max() if profile.zrange_drop_last_slice else z.max() + 1
                g, s = g[:, :, z.min():upper], s[:, :, z.min():upper]
                if g.size == 0:
                    rows[region.name] = (math.nan, math.nan, math.nan)
                    continue
            dsc = sd.compute_dice_coefficient(g, s)
            dists = oracle_distances(sd, g, s, spacing)
            if profile.nsd_min_dsc is not None and dsc < profile.nsd_min_dsc:
                nsd = 0.0
            else:
                with np.errstate(invalid="ignore"):
                    nsd = sd.compute_surface_dice_at_tolerance(dists, region.tolerance_mm)
            hd = sd.compute_robust_hausdorff(dists, 95)
        if profile.round_decimals is not None:
            dsc, nsd = round(dsc, profile.round_decimals), round(nsd, profile.round_decimals)
        rows[region.name] = (float(dsc), float(nsd), float(hd))
    return rows


def tumour_case(seed: int, shape=(30, 28, 20)) -> tuple[np.ndarray, np.ndarray]:
    """A nested tumour (edema 2 around a core of 1 and 3, BraTS-like, or kidney 1 holding tumour 2 and
    cyst 3, KiTS-like: the same values) and a prediction that moves each part; some labels absent."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(2):
        out = np.zeros(shape, np.uint8)
        outer = random_blob(rng, shape, fill=0.12)
        out[outer] = 2 if seed % 2 else 1
        inner = outer & ndimage.binary_erosion(outer, iterations=2) & random_blob(rng, shape, fill=0.4)
        out[inner] = 1 if seed % 2 else 2
        spot = inner & random_blob(rng, shape, fill=0.3)
        out[spot] = 3
        maps.append(out)
    gt, seg = maps
    absent = seed % 5  # every emptiness: a label missing in the ground truth, the prediction, or both
    if absent == 1:
        gt[gt == 3] = 0
    elif absent == 2:
        seg[seg == 3] = 0
    elif absent == 3:
        gt[gt == 3] = 0
        seg[seg == 3] = 0
        seg[seg == 1] = 0
    return gt, seg


def assert_matches(ours, ref) -> None:
    got = {s.organ: s for s in ours}
    assert list(got) == list(ref)
    for name, (dsc, nsd, hd) in ref.items():
        row = got[name]
        for what, a, b in (("dsc", row.dsc, dsc), ("nsd", row.nsd, nsd), ("hd95", row.hd95_mm, hd)):
            assert (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= 1e-12, f"{name} {what}: {a} != {b}"


FLARE_RULED = {  # a user's region profile under FLARE22's rules: z-range cut of a union, cut-off, rounding
    "name": "ruled", "both_empty": 1.0, "nsd_min_dsc": 0.2, "round_decimals": 4, "zrange_drop_last_slice": True,
    "organs": [{"label": 1, "name": "a"}, {"label": 2, "name": "b"}, {"label": 3, "name": "c"}],
    "regions": [{"name": "abc", "labels": [3, 1, 2], "tolerance_mm": 2, "zrange_only": True},
                {"name": "ac", "labels": [1, 3], "tolerance_mm": 1.5},
                {"name": "c", "labels": [3], "tolerance_mm": 0.5, "zrange_only": True}],
}
SPACINGS = [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (np.float32(0.7), np.float32(1.1), np.float32(3.0))]


@pytest.mark.parametrize("profile_name", ["brats2023", "kits23", "ruled"])
@pytest.mark.parametrize("seed", range(10))
def test_region_scores_equal_the_oracle_on_union_masks(sd: ModuleType, profile_name: str, seed: int) -> None:
    profile = profile_from_dict(FLARE_RULED) if profile_name == "ruled" else load_profile(profile_name)
    gt, seg = tumour_case(seed)
    spacing = SPACINGS[seed % len(SPACINGS)]
    ref = region_reference(sd, gt, seg, spacing, profile)
    order = "F" if seed % 2 else "C"  # NIfTI volumes load Fortran-ordered
    ours = score_case(np.asarray(gt, order=order), np.asarray(seg, order=order), spacing, profile,
                      threads=1 + seed % 2)
    assert_matches(ours, ref)
    assert any(0 < s.dsc < 1 for s in ours)  # real errors, not a trivial pair


def test_brats_phantom_scores_in_closed_form_and_as_the_oracle(sd: ModuleType) -> None:
    """A cube of edema (2) holding a core (1) with an enhancing rim (3); the prediction is the same
    tumour moved one voxel along x: the whole tumour's Dice is 2 * 9 * 10 * 10 / 2000 = 0.9."""
    gt = np.zeros((24, 24, 24), np.uint8)
    gt[5:15, 5:15, 5:15] = 2  # whole tumour: 1000 voxels
    gt[7:13, 7:13, 7:13] = 3  # tumour core: 216 voxels
    gt[8:12, 8:12, 8:12] = 1  # necrosis inside the enhancing rim
    seg = np.roll(gt, 1, axis=0)
    profile = load_profile("brats2023")
    scores = {s.organ: s for s in score_case(gt, seg, (1.0, 1.0, 1.0), profile)}
    assert [s.name for s in profile.scored] == ["whole_tumor", "tumor_core", "enhancing_tumor"]
    assert scores["whole_tumor"].dsc == 2 * 900 / 2000
    assert scores["tumor_core"].dsc == 2 * 180 / 432  # 6 x 6 x 6, moved by one: 5 x 6 x 6 overlap
    et_gt = (gt == 3).sum()
    assert scores["enhancing_tumor"].dsc == 2 * np.count_nonzero((gt == 3) & (seg == 3)) / (2 * et_gt)
    assert (scores["whole_tumor"].label, scores["tumor_core"].label, scores["enhancing_tumor"].label) == (0, 0, 3)
    assert_matches(scores.values(), region_reference(sd, gt, seg, (1.0, 1.0, 1.0), profile))
    # every surface moved by 1 mm, within brats2023's 1 mm tolerance
    assert (scores["whole_tumor"].nsd, scores["whole_tumor"].hd95_mm) == (1.0, 1.0)


def test_an_organ_is_the_region_of_its_one_label() -> None:
    """flare22 with its organs written as one-label regions scores exactly as flare22."""
    from harness.data.perturb import perturb_labels
    from tests.conftest import toy_labels

    flare = load_profile("flare22")
    as_regions = dataclasses.replace(flare, regions=tuple(Region.of(o) for o in flare.organs))
    gt = toy_labels(2)
    pred = perturb_labels(gt, rng=np.random.default_rng(4), spacing_mm=(0.8, 0.9, 2.5))
    organs = score_case(gt, pred, (0.8, 0.9, 2.5), flare)
    regions = score_case(gt, pred, (0.8, 0.9, 2.5), as_regions)
    assert organs == regions
    assert any(0 < s.dsc < 1 for s in organs)
    assert as_regions.content_sha256 != flare.content_sha256  # regions are a scoring rule: part of the hash


def test_profiles_without_regions_keep_their_hashes() -> None:
    """Stored scores of every earlier profile stay fresh: the hash of a profile without regions is
    computed exactly as before regions existed (these values were taken before the change)."""
    assert load_profile("flare22").content_sha256.startswith("97eaa6f48fcd")


def test_a_union_on_one_slice_is_not_scorable_under_the_flare_cut() -> None:
    """The z-range cut of a region is that of its union: labels 1 and 3 on one slice, predicted,
    leave nothing under FLARE22's off-by-one; the region "c" alone is cut likewise."""
    profile = profile_from_dict(FLARE_RULED)
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[2:5, 2:5, 4] = 1
    gt[5:7, 2:5, 4] = 3
    gt[2:7, 5:8, 3:6] = 2  # b spans three slices, so the union "abc" does too
    scores = {s.organ: s for s in score_case(gt, gt.copy(), (1, 1, 1), profile)}
    assert scores["abc"].status == "ok" and scores["abc"].dsc == 1.0
    assert scores["c"].status == "not_scorable" and math.isnan(scores["c"].dsc)
    assert scores["ac"].status == "ok" and scores["ac"].dsc == 1.0  # "ac" is not cut to the z-range
