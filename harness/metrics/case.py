"""Score one case: every scored structure of a profile (its organs, or its regions: unions of
labels, overlapping as BraTS' and KiTS' do), with the profile's rules applied. Pure: arrays in,
records out. An organ is scored as the region of its one label: one path for both.

The rules (all data in the profile, see harness/profiles/*.toml), in the order the official
FLARE22 script applies them:
1. Emptiness is decided on the whole volume, before any cut. Both empty: DSC = NSD = `both_empty`
   (1 under flare22, NaN = not applicable under strict); HD95 = 0 (NaN under strict). Exactly one
   empty: DSC = NSD = 0, HD95 = inf (a one-slice organ with an empty prediction included).
2. Organs marked `zrange_only` are cut to the ground truth's z-range, `[z_lower:z_upper]` under
   flare22 (drops the top labelled slice; a one-slice organ that is also predicted leaves an empty
   region, on which the official script crashes: harness records DSC = NSD = HD95 = NaN) or
   `[z_lower:z_upper + 1]` under strict. DSC uses the cut.
3. DSC < `nsd_min_dsc` forces NSD = 0 (flare22: 0.2).
4. DSC and NSD are rounded to `round_decimals` (flare22: 4) as the official script does: `round` of
   a `numpy.float64`, i.e. numpy's rounding (scale, round half to even, unscale), which differs
   from Python's correctly rounded `round(float)` at decimal ties (0.70625 -> 0.7062, not 0.7063).
An organ the rules leave nothing to score (a one-slice aorta under the flare22 cut) is NaN with the
status `not_scorable` and the reason.
HD95 is harness's own addition (DeepMind's robust Hausdorff at 95 %, see harness.metrics.surface),
never rounded.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from harness.metrics.overlap import dice_from_counts, label_boxes
from harness.metrics.surface import embedding_margin, surface_dice_and_hausdorff
from harness.models import OrganScore, OrganStatus, Profile, Region

Box = tuple[slice, ...]


def score_case(
    label_gt: NDArray[np.integer],
    label_pred: NDArray[np.integer],
    spacing_mm: Sequence[float],
    profile: Profile,
    *,
    case_id: str = "",
    threads: int = 1,
) -> list[OrganScore]:
    """DSC, NSD and HD95 of every scored structure of `profile` (`Profile.scored`: its regions, or
    its organs), in the profile's order (argument order: ground truth, prediction).

    Both label maps must be integer arrays of the same shape holding only the profile's valid
    labels (the data checks guarantee it). `threads` share each organ's nearest-surfel search
    (the bulk of the work; it runs without the GIL).
    """
    if label_gt.shape != label_pred.shape:
        raise ValueError(f"label shapes differ: {label_gt.shape} vs {label_pred.shape}")
    spacing = tuple(float(s) for s in spacing_mm)
    n_labels = max(profile.valid_labels) + 1
    # The bounding box of every label in each map, from one bit-OR pass over the labelled voxels;
    # each structure's counts and surfaces are then taken on the union of its boxes, which holds
    # every voxel of it in either map.
    boxes_gt = label_boxes(label_gt, n_labels)
    boxes_pred = label_boxes(label_pred, n_labels)

    def one(region: Region) -> OrganScore:
        box_gt = _union_of([boxes_gt[lab] for lab in region.labels])  # regions may overlap: each has its own
        dsc, nsd, hd95 = _region_scores(
            label_gt,
            label_pred,
            region,
            profile,
            spacing,
            box_gt=box_gt,
            box_pred=_union_of([boxes_pred[lab] for lab in region.labels]),
            workers=threads,
        )
        if profile.round_decimals is not None:
            dsc, nsd = _round(dsc, profile.round_decimals), _round(nsd, profile.round_decimals)
        extra = _extras(label_gt, label_pred, region, profile, spacing) if profile.extra_metrics else ()
        if math.isnan(dsc) and region.zrange_only and box_gt is not None:  # the z-range cut left nothing
            return OrganScore(case_id=case_id, organ=region.name, label=region.label, dsc=dsc, nsd=nsd, hd95_mm=hd95,
                              status=OrganStatus.NOT_SCORABLE,
                              message=f"{region.name} is labelled on one slice only and predicted; {profile.name}'s "
                                      "z-range cut leaves nothing to score (the official script fails here)",
                              extra=extra)
        return OrganScore(case_id=case_id, organ=region.name, label=region.label, dsc=dsc, nsd=nsd, hd95_mm=hd95,
                          extra=extra)

    return [one(region) for region in profile.scored]


def _extras(label_gt: NDArray[np.integer], label_pred: NDArray[np.integer], region: Region, profile: Profile,
            spacing_mm: tuple[float, ...]) -> tuple[tuple[str, float], ...]:
    """The profile's extra metrics of one region (`Profile.extra_metrics`, in that order), on the
    whole volume (a lesion's dilation may reach beyond the labelled box): BraTS 2023's lesion-wise
    Dice, HD95 (mm) and lesion counts; autoPET's false-positive and false-negative volumes (ml);
    panoptica's PQ, SQ, RQ, SQ-DSC and PQ-DSC."""
    # imported here: scipy.ndimage is 0.4 s of start-up that organ-only profiles need not pay
    from harness.metrics.lesion import LesionMatching, autopet_false_volumes, autopet_voxel_volume_ml, brats_lesion_wise
    from harness.metrics.panoptic import MatchingMetric, panoptic_quality

    mask_gt, mask_pred = _c_mask(label_gt, region.labels), _c_mask(label_pred, region.labels)
    values: list[float] = []
    if profile.lesion_wise is not None:
        lw = profile.lesion_wise
        lesions = brats_lesion_wise(mask_gt, mask_pred, spacing_mm,
                                    matching=LesionMatching(lw.dilation_iterations, lw.small_lesion_max_mm3),
                                    hd95_penalty_mm=lw.hd95_penalty_mm)
        values += [lesions.dice, lesions.hd95_mm, float(lesions.n_tp), float(lesions.n_fn), float(lesions.n_fp)]
    if profile.false_volumes:
        volumes = autopet_false_volumes(mask_gt, mask_pred, voxel_volume_ml=autopet_voxel_volume_ml(
            (spacing_mm[0], spacing_mm[1], spacing_mm[2])))
        values += [volumes.false_positive_ml, volumes.false_negative_ml]
    if profile.panoptic is not None:
        pq = panoptic_quality(mask_gt, mask_pred, matching_metric=MatchingMetric(profile.panoptic.matching_metric),
                              matching_threshold=profile.panoptic.matching_threshold)
        values += [pq.pq, pq.sq, pq.rq, pq.sq_dsc, pq.pq_dsc]
    return tuple(zip(profile.extra_metrics, values, strict=True))


def _union_of(boxes: list[Box | None]) -> Box | None:
    found = [box for box in boxes if box is not None]
    return functools.reduce(_union, found) if found else None


def _round(value: float, decimals: int) -> float:
    """numpy's rounding of a float64, as FLARE22's script gets by calling `round` on numpy values."""
    return value if math.isnan(value) or math.isinf(value) else float(np.round(np.float64(value), decimals))


def _region_scores(
    label_gt: NDArray[np.integer],
    label_pred: NDArray[np.integer],
    region: Region,
    profile: Profile,
    spacing_mm: tuple[float, ...],
    *,
    box_gt: Box | None,
    box_pred: Box | None,
    workers: int = 1,
) -> tuple[float, float, float]:
    if box_gt is None and box_pred is None:
        both = profile.both_empty
        return both, both, (math.nan if math.isnan(both) else 0.0)
    if box_gt is None or box_pred is None:  # before the z-range cut, as the official script decides it
        return 0.0, 0.0, math.inf
    box = _union(box_gt, box_pred)
    if region.zrange_only:
        axis = profile.zrange_axis
        z_lower, z_upper = box_gt[axis].start, box_gt[axis].stop - 1
        stop = z_upper if profile.zrange_drop_last_slice else z_upper + 1
        box = tuple(
            slice(s.start, s.stop) if a != axis else slice(max(s.start, z_lower), min(s.stop, stop))
            for a, s in enumerate(box)
        )
        if box[axis].stop <= box[axis].start:  # the off-by-one leaves nothing of a 1-slice organ
            return math.nan, math.nan, math.nan
    margin = embedding_margin(spacing_mm)
    voxels_gt = _embedded_mask(label_gt, box, region.labels, margin)
    voxels_pred = _embedded_mask(label_pred, box, region.labels, margin)
    # The box holds every voxel of the structure in both maps (before a z-range cut: those of the cut).
    n_gt, n_pred = int(np.count_nonzero(voxels_gt)), int(np.count_nonzero(voxels_pred))
    dsc = dice_from_counts(int(np.count_nonzero(voxels_gt & voxels_pred)), n_gt, n_pred)
    forced = profile.nsd_min_dsc is not None and dsc < profile.nsd_min_dsc  # NSD = 0 below it
    nsd, hd95 = surface_dice_and_hausdorff(voxels_gt, voxels_pred, spacing_mm, tolerance_mm=region.tolerance_mm,
                                           nsd=not forced, percent=95.0, workers=workers)
    return dsc, (0.0 if forced else nsd), hd95


def _embedded_mask(label_map: NDArray[np.integer], box: Box, labels: tuple[int, ...],
                   margin: tuple[int, ...]) -> NDArray[np.bool_]:
    """The voxels of `box` holding any of `labels`, as a C-ordered mask inside `margin` zeros on each
    side. NIfTI volumes come Fortran-ordered, and the surface code indexes cells by C-order flat
    indices: a Fortran mask would be copied by every later step."""
    region = label_map[box]
    fortran = abs(region.strides[0]) < abs(region.strides[-1])
    walk = region.T if fortran else region  # the volume's own memory order: compared at full speed
    hits = walk == labels[0] if len(labels) == 1 else np.isin(walk, labels)
    if fortran and hits.ndim == 3 and hits.size >= _BIT_TURN_MIN_VOXELS:
        return _turned_by_bits(hits, margin)
    shape = tuple(s.stop - s.start + 2 * m for s, m in zip(box, margin, strict=True))
    voxels = np.zeros(shape, dtype=bool)
    # Compared in the volume's own memory order, then copied across (np.equal writing into the
    # other order directly is 3x slower).
    voxels[tuple(slice(m, -m) for m in margin)] = hits.T if fortran else hits
    return voxels


# A box this large (a liver's: millions of voxels) is turned through bits: a byte-wise transposing
# copy of a box larger than the cache waits on memory for most voxels (a liver's box: 35 % less).
_BIT_TURN_MIN_VOXELS = 1 << 20


def _turned_by_bits(hits: NDArray[np.bool_], margin: tuple[int, ...]) -> NDArray[np.bool_]:
    """`hits.T` of a C-ordered 3D mask, as a C-ordered mask inside `margin` zeros on each side:
    packed 8 voxels to a byte along hits' last axis, turned in blocks of 8x8 bits (a uint64 word,
    its rows and columns swapped by three mask-and-shift steps), unpacked along the result's last
    axis. Two transposing copies of 1/8 of the bytes instead of one of every voxel."""
    n_last, rows, n_first = hits.shape  # the result's last, middle and first axes
    packed = np.packbits(hits, axis=-1, bitorder="little")  # bit c of byte k: first-axis index 8k + c
    groups = -(-(n_last + 2 * margin[-1]) // 8)  # bytes of a row of the result's last axis, margins included
    planes = np.zeros((groups * 8, rows, packed.shape[-1]), dtype=np.uint8)
    planes[margin[-1]:margin[-1] + n_last] = packed
    # Word (g, row, k), byte r, bit c: voxel (last 8g + r, first 8k + c); turned: byte c, bit r.
    words = np.ascontiguousarray(planes.reshape(groups, 8, rows, packed.shape[-1]).transpose(0, 2, 3, 1))
    turned = _transpose_8x8(words.view("<u8")[..., 0]).astype("<u8", copy=False)
    by_first = turned[..., None].view(np.uint8).transpose(2, 3, 1, 0).reshape(-1, rows, groups)[:n_first]
    out = np.zeros((n_first + 2 * margin[0], rows + 2 * margin[1], groups), dtype=np.uint8)
    out[margin[0]:margin[0] + n_first, margin[1]:margin[1] + rows] = by_first
    return np.unpackbits(out, axis=-1, count=n_last + 2 * margin[-1], bitorder="little").view(np.bool_)


_SWAPS_8X8 = tuple((np.uint64(shift), np.uint64(mask)) for shift, mask in
                   ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0)))


def _transpose_8x8(words: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Each word's 8x8 bits (bit 8r + c: row r, column c) transposed, in place (Hacker's Delight
    7-3: swap the off-diagonal 1x1, then 2x2, then 4x4 blocks)."""
    for shift, mask in _SWAPS_8X8:
        swap = words >> shift
        swap ^= words
        swap &= mask
        words ^= swap
        swap <<= shift
        words ^= swap
    return words


def _c_mask(box: NDArray[np.integer], labels: tuple[int, ...]) -> NDArray[np.bool_]:
    """The voxels of `box` holding any of `labels`, as a C-ordered mask."""
    if len(labels) == 1:
        return np.ascontiguousarray(box == labels[0])
    return np.ascontiguousarray(np.isin(box, labels))


def _union(a: Box, b: Box) -> Box:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
