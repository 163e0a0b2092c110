"""Lesion-wise metrics: BraTS 2023's lesion-wise Dice and HD95, autoPET's false-positive and
false-negative volumes.

BraTS 2023 (the official `metrics.py` of the BraTS 2023 metrics repository): the ground-truth
region is dilated `dilation_iterations` times with the 18-neighbourhood; ground-truth voxels in one
component (26-connected) of that dilation form one lesion. A predicted component (26-connected)
matches every lesion whose dilation it touches. Per lesion: Dice and HD95 between the lesion and
the union of its matched components (HD95 of an unmatched lesion: the 374 mm penalty). Lesions
of volume <= `small_lesion_max_mm3` are left out; every unmatched predicted component is a false
positive that counts Dice 0 and HD95 374. No lesion and no false positive: Dice 1, HD95 0.

autoPET (`val_script.py` of the autoPET challenge): the volume of the predicted components
(18-connected) that touch no ground-truth voxel, and of the ground-truth components that touch no
predicted voxel, in ml.

All work is done inside bounding boxes: one dilation and one labelling of the ground truth, one
labelling of the prediction, then per-lesion counts from `bincount` and HD95 on each lesion's box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from harness.metrics.components import Connectivity, grow_box, label_components, relative_box, union_box
from harness.metrics.overlap import nonzero_box
from harness.metrics.surface import robust_hausdorff, surface_distances

BRATS_HD95_PENALTY_MM = 374.0


@dataclass(frozen=True)
class LesionMatching:
    """BraTS 2023 lesion matching: GT dilation (iterations of the 18-neighbourhood) and the largest
    lesion volume left out of the scores (mm^3, `<=`)."""

    dilation_iterations: int
    small_lesion_max_mm3: float


# From the official get_LesionWiseResults (BraTS 2023): per challenge, dilation and volume threshold.
BRATS_2023_MATCHING: dict[str, LesionMatching] = {
    "BraTS-GLI": LesionMatching(dilation_iterations=3, small_lesion_max_mm3=50.0),
    "BraTS-SSA": LesionMatching(dilation_iterations=3, small_lesion_max_mm3=50.0),
    "BraTS-MEN": LesionMatching(dilation_iterations=1, small_lesion_max_mm3=50.0),
    "BraTS-PED": LesionMatching(dilation_iterations=3, small_lesion_max_mm3=50.0),
    "BraTS-MET": LesionMatching(dilation_iterations=1, small_lesion_max_mm3=2.0),
}


@dataclass(frozen=True)
class Lesion:
    """One ground-truth lesion: volume (mm^3), Dice and HD95 (mm, penalty applied) against its
    matched predicted components, how many it matched, and whether it is scored (above the size)."""

    volume_mm3: float
    dice: float
    hd95_mm: float
    n_matched: int
    scored: bool


@dataclass(frozen=True)
class LesionWiseScores:
    """BraTS lesion-wise Dice and HD95 (mm) of one region, and the lesion counts (scored lesions)."""

    dice: float
    hd95_mm: float
    n_tp: int
    n_fn: int
    n_fp: int
    lesions: tuple[Lesion, ...]


def _check_pair(mask_gt: NDArray[np.bool_], mask_pred: NDArray[np.bool_], spacing_mm: tuple[float, ...]) -> None:
    if mask_gt.shape != mask_pred.shape:
        raise ValueError(f"mask shapes differ: {mask_gt.shape} vs {mask_pred.shape}")
    if mask_gt.dtype != np.bool_ or mask_pred.dtype != np.bool_:
        raise ValueError(f"masks must be boolean, got {mask_gt.dtype} and {mask_pred.dtype}")
    if len(spacing_mm) != mask_gt.ndim:
        raise ValueError(f"spacing_mm {spacing_mm!r} does not match a {mask_gt.ndim}D mask")


def brats_lesion_wise(
    mask_gt: NDArray[np.bool_],
    mask_pred: NDArray[np.bool_],
    spacing_mm: tuple[float, ...],
    *,
    matching: LesionMatching,
    hd95_penalty_mm: float = BRATS_HD95_PENALTY_MM,
) -> LesionWiseScores:
    """Lesion-wise Dice and HD95 of one region (3D boolean masks) as BraTS 2023 computes them.

    Lesions are ordered (and summed) as the official script numbers them: by first voxel, in C
    order, of their dilated component.
    """
    _check_pair(mask_gt, mask_pred, spacing_mm)
    if mask_gt.ndim != 3:
        raise ValueError(f"BraTS lesion matching needs 3D masks, got {mask_gt.ndim}D")
    gt_box = nonzero_box(mask_gt)
    pred = label_components(mask_pred, connectivity=Connectivity.FULL)
    if gt_box is None:
        return _aggregate([], n_fp=pred.count, penalty=hd95_penalty_mm)

    # One dilation of the whole ground truth: a lesion's own dilation is its dilated component.
    dil_box = grow_box(gt_box, matching.dilation_iterations, mask_gt.shape)
    gt_crop = mask_gt[dil_box]
    dilated = ndimage.binary_dilation(gt_crop, structure=Connectivity.EDGE.structure(3),
                                      iterations=matching.dilation_iterations)
    # The official script labels the dilation, a new C-ordered array: C-order numbering.
    dil_labels, n_lesions = ndimage.label(dilated, structure=Connectivity.FULL.structure(3))
    lesion_labels = np.where(gt_crop, dil_labels, 0)

    box = union_box(dil_box, pred.box)
    assert box is not None
    shape = tuple(s.stop - s.start for s in box)
    dil_u = np.zeros(shape, dtype=np.int32)
    dil_u[relative_box(dil_box, box)] = dil_labels
    les_u = np.zeros(shape, dtype=np.int32)
    les_u[relative_box(dil_box, box)] = lesion_labels
    pred_u = pred.full_box_labels(box)

    size_gt = np.bincount(lesion_labels.reshape(-1), minlength=n_lesions + 1)
    both = (dil_u > 0) & (pred_u > 0)
    stride = pred.count + 1
    pairs = np.unique(dil_u[both].astype(np.int64) * stride + pred_u[both])
    pair_lesion, pair_pred = pairs // stride, pairs % stride
    intersection = np.bincount(les_u[(les_u > 0) & (pred_u > 0)], minlength=n_lesions + 1)
    n_fp = pred.count - np.unique(pair_pred).size

    lesion_boxes = ndimage.find_objects(les_u)
    pred_boxes = ndimage.find_objects(pred_u)
    starts = np.searchsorted(pair_lesion, np.arange(1, n_lesions + 2))
    lesions: list[Lesion] = []
    for k in range(1, n_lesions + 1):
        matched = pair_pred[starts[k - 1]:starts[k]]
        size_pred = int(pred.sizes_voxels[matched].sum())
        n_gt = int(size_gt[k])
        dice = 2.0 * int(intersection[k]) / (n_gt + size_pred)
        if matched.size == 0:
            hd95 = hd95_penalty_mm
        else:
            lesion_box = union_box(lesion_boxes[k - 1], *(pred_boxes[p - 1] for p in matched))
            assert lesion_box is not None
            gt_k = les_u[lesion_box] == k
            pred_k = np.isin(pred_u[lesion_box], matched)
            hd95 = robust_hausdorff(surface_distances(gt_k, pred_k, spacing_mm), 95.0)
            if math.isinf(hd95):
                hd95 = hd95_penalty_mm
        volume = n_gt * spacing_mm[0] * spacing_mm[1] * spacing_mm[2]
        lesions.append(Lesion(volume_mm3=volume, dice=dice, hd95_mm=hd95, n_matched=int(matched.size),
                              scored=volume > matching.small_lesion_max_mm3))
    return _aggregate(lesions, n_fp=n_fp, penalty=hd95_penalty_mm)


def _aggregate(lesions: list[Lesion], *, n_fp: int, penalty: float) -> LesionWiseScores:
    scored = [lesion for lesion in lesions if lesion.scored]
    denominator = len(scored) + n_fp
    if denominator == 0:
        dice, hd95 = 1.0, 0.0
    else:
        # np.sum in lesion order, as the official script sums its table's column.
        dice = float(np.sum(np.array([s.dice for s in scored], dtype=np.float64))) / denominator
        hd95 = (float(np.sum(np.array([s.hd95_mm for s in scored], dtype=np.float64))) + n_fp * penalty) / denominator
    return LesionWiseScores(
        dice=dice, hd95_mm=hd95,
        n_tp=sum(1 for s in scored if s.n_matched > 0), n_fn=sum(1 for s in scored if s.n_matched == 0), n_fp=n_fp,
        lesions=tuple(lesions),
    )


@dataclass(frozen=True)
class FalseVolumes:
    """autoPET's false-positive and false-negative volumes (ml) and their voxel counts."""

    false_positive_ml: float
    false_negative_ml: float
    false_positive_voxels: int
    false_negative_voxels: int


def autopet_voxel_volume_ml(spacing_mm: tuple[float, float, float]) -> float:
    """A voxel's volume in ml as autoPET computes it: the product of the header's float32 spacings,
    divided by 1000, in float32."""
    s0, s1, s2 = (np.float32(s) for s in spacing_mm)
    return float(np.float32(np.float32(s0 * s1) * s2) / np.float32(1000))


def _untouched_voxels(source: NDArray[np.bool_], other: NDArray[np.bool_]) -> int:
    """Voxels of the 18-connected components of `source` that share no voxel with `other`."""
    components = label_components(source, connectivity=Connectivity.EDGE)
    if components.box is None:
        return 0
    touched = np.unique(components.labels[other[components.box]])
    touched = touched[touched > 0]
    return int(components.sizes_voxels[1:].sum() - components.sizes_voxels[touched].sum())


def autopet_false_volumes(
    mask_gt: NDArray[np.bool_], mask_pred: NDArray[np.bool_], *, voxel_volume_ml: float
) -> FalseVolumes:
    """False-positive volume (predicted components touching no lesion) and false-negative volume
    (lesions touching no prediction), in ml, as autoPET's official script. Empty masks give 0."""
    _check_pair(mask_gt, mask_pred, (1.0,) * mask_gt.ndim)
    fp = _untouched_voxels(mask_pred, mask_gt)
    fn = _untouched_voxels(mask_gt, mask_pred)
    return FalseVolumes(false_positive_ml=fp * voxel_volume_ml, false_negative_ml=fn * voxel_volume_ml,
                        false_positive_voxels=fp, false_negative_voxels=fn)
