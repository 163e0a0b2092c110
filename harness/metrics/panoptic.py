"""Panoptic (instance-wise) quality of a binary mask pair, as panoptica computes it for semantic
input with its connected-components instances and its naive threshold matching.

Instances are the connected components (3D: 26-connected, cc3d's default; 2D: 4-connected,
scipy's), numbered in C order: panoptica hands cc3d a C-ordered copy whatever the input's order.
Every overlapping (reference, prediction) pair gets a matching score (IoU by default); pairs are
taken greedily by decreasing score (ties: by prediction, then reference number) and matched
one-to-one when the score is >= the threshold. Then, with TP matched pairs:

- RQ = TP / (TP + FP/2 + FN/2) (0 when TP = 0, NaN when there is no instance at all);
- SQ = mean IoU of the matched pairs, SQ-DSC = their mean Dice, in reference order (0 when
  TP = 0, NaN when there is no instance at all);
- PQ = SQ * RQ, PQ-DSC = SQ-DSC * RQ.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from harness.metrics.components import Connectivity, label_components, union_box


class MatchingMetric(enum.Enum):
    IOU = "iou"
    DSC = "dsc"


@dataclass(frozen=True)
class PanopticScores:
    """Instance counts, recognition / segmentation / panoptic quality, and the matched pairs'
    Dice and IoU in reference-instance order."""

    n_ref_instances: int
    n_pred_instances: int
    tp: int
    fp: int
    fn: int
    rq: float
    sq: float
    pq: float
    sq_dsc: float
    pq_dsc: float
    instance_dsc: tuple[float, ...]
    instance_iou: tuple[float, ...]


def panoptic_quality(
    mask_gt: NDArray[np.bool_],
    mask_pred: NDArray[np.bool_],
    *,
    matching_metric: MatchingMetric = MatchingMetric.IOU,
    matching_threshold: float = 0.5,
) -> PanopticScores:
    """RQ, SQ, PQ and instance-wise DSC of two boolean masks (2D or 3D); see the module docstring."""
    if mask_gt.shape != mask_pred.shape:
        raise ValueError(f"mask shapes differ: {mask_gt.shape} vs {mask_pred.shape}")
    if mask_gt.dtype != np.bool_ or mask_pred.dtype != np.bool_:
        raise ValueError(f"masks must be boolean, got {mask_gt.dtype} and {mask_pred.dtype}")
    if mask_gt.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got {mask_gt.ndim}D")
    # panoptica: cc3d (26-connected) in 3D, scipy's default (4-connected) in 2D, both on C-ordered arrays
    connectivity = Connectivity.FULL if mask_gt.ndim == 3 else Connectivity.FACE
    ref = label_components(mask_gt, connectivity=connectivity, memory_order=False)
    pred = label_components(mask_pred, connectivity=connectivity, memory_order=False)
    n_ref, n_pred = ref.count, pred.count

    matched_ref: list[int] = []
    dsc: list[float] = []
    iou: list[float] = []
    if n_ref and n_pred:
        box = union_box(ref.box, pred.box)
        assert box is not None
        ref_u, pred_u = ref.full_box_labels(box), pred.full_box_labels(box)
        both = (ref_u > 0) & (pred_u > 0)
        stride = n_ref + 1
        # Pairs in panoptica's order: by the code pred * stride + ref.
        codes, counts = np.unique(pred_u[both].astype(np.int64) * stride + ref_u[both], return_counts=True)
        pair_ref, pair_pred = codes % stride, codes // stride
        inter = counts.astype(np.float64)
        area_ref = ref.sizes_voxels[pair_ref].astype(np.float64)
        area_pred = pred.sizes_voxels[pair_pred].astype(np.float64)
        if matching_metric is MatchingMetric.IOU:
            scores = inter / (area_ref + area_pred - inter)
        else:
            scores = 2.0 * inter / (area_ref + area_pred)
        order = np.argsort(-scores, kind="stable")
        ref_taken = np.zeros(n_ref + 1, dtype=bool)
        pred_taken = np.zeros(n_pred + 1, dtype=bool)
        pair_of_ref = np.full(n_ref + 1, -1, dtype=np.int64)
        for i in order:
            if scores[i] < matching_threshold:
                break  # sorted: no later pair reaches the threshold
            r, p = pair_ref[i], pair_pred[i]
            if ref_taken[r] or pred_taken[p]:
                continue
            ref_taken[r] = pred_taken[p] = True
            pair_of_ref[r] = i
        for r in np.flatnonzero(ref_taken):
            i = pair_of_ref[r]
            n_inter, n_ref_vox, n_pred_vox = int(counts[i]), int(ref.sizes_voxels[r]), int(pred.sizes_voxels[pair_pred[i]])
            matched_ref.append(int(r))
            dsc.append(2 * n_inter / (n_ref_vox + n_pred_vox))
            iou.append(n_inter / (n_ref_vox + n_pred_vox - n_inter))

    tp = len(matched_ref)
    fp, fn = n_pred - tp, n_ref - tp
    if tp == 0:
        rq = 0.0 if n_pred + n_ref > 0 else float("nan")
        sq = sq_dsc = 0.0 if n_pred + n_ref > 0 else float("nan")
    else:
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = float(np.mean(np.array(iou, dtype=np.float64)))
        sq_dsc = float(np.mean(np.array(dsc, dtype=np.float64)))
    return PanopticScores(
        n_ref_instances=n_ref, n_pred_instances=n_pred, tp=tp, fp=fp, fn=fn,
        rq=rq, sq=sq, pq=sq * rq, sq_dsc=sq_dsc, pq_dsc=sq_dsc * rq,
        instance_dsc=tuple(dsc), instance_iou=tuple(iou),
    )
