"""Brute-force oracles for the BraTS 2023 lesion-wise metrics and autoPET's false volumes.

Neither official script is a package on the index: BraTS 2023's is `metrics.py` of the BraTS 2023
metrics repository (`get_LesionWiseScores`, `get_LesionWiseResults`), autoPET's is `val_script.py`
of the autoPET challenge repository. These functions follow those scripts step by step, written
independently: the same packages (cc3d for components, scipy's dilation, DeepMind's surface
distance for HD95, pandas for the table), the same full-volume loops, on arrays instead of NIfTI
files (so `gt`/`pred` are float64 as `get_fdata()` returns them, and the spacing is the header's).

Two deliberate departures, neither of which changes a value: HD95 uses `surface-distance` 0.1 from
the index (BraTS bundles an older copy of the same DeepMind code; its `compute_surface_distances`
and `compute_robust_hausdorff` compute the same thing, but 0.1 wants boolean masks, so the 0/1
masks are cast), pandas' removed `DataFrame.append` (only used for a CSV that the script does
not write) is left out, and the table's `replace(np.inf, 374)` is applied to its number columns
(pandas 3 refuses it on the column of arrays, which holds no inf).
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pandas as pd
import scipy.ndimage

REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


def _tissue(mat: np.ndarray, region: str) -> np.ndarray:
    # get_TissueWiseSeg: np.place(..., not in region, 0); np.place(..., > 0, 1)
    out = np.array(mat, dtype=np.float64)
    np.place(out, ~np.isin(out, REGIONS[region]), 0)
    np.place(out, out > 0, 1)
    return out


def _dice(im1: np.ndarray, im2: np.ndarray) -> float:
    im1 = np.asarray(im1).astype(bool)
    im2 = np.asarray(im2).astype(bool)
    intersection = np.logical_and(im1, im2)
    return 2.0 * (intersection.sum()) / (im1.sum() + im2.sum())


def _combined_by_dilation(gt_dilated_cc: np.ndarray, gt_cc: np.ndarray) -> np.ndarray:
    combined = np.zeros_like(gt_dilated_cc)
    for comp in range(1, int(np.max(gt_dilated_cc)) + 1):
        tmp = np.zeros_like(gt_dilated_cc)
        tmp[gt_dilated_cc == comp] = 1
        tmp = gt_cc * tmp
        np.place(tmp, tmp > 0, comp)
        combined += tmp
    return combined


def brats_lesion_scores(
    pred_mat: np.ndarray, gt_mat: np.ndarray, spacing: tuple[float, float, float], region: str, dil_factor: int,
    sd: ModuleType,
):
    """get_LesionWiseScores on arrays: (tp, fn, fp, gt_tp, metric_pairs)."""
    import cc3d

    sx, sy, sz = spacing
    pred_mat, gt_mat = _tissue(pred_mat, region), _tissue(gt_mat, region)
    struct = scipy.ndimage.generate_binary_structure(3, 2)
    gt_mat_cc = cc3d.connected_components(gt_mat, connectivity=26)
    pred_mat_cc = cc3d.connected_components(pred_mat, connectivity=26)
    gt_mat_dilation = scipy.ndimage.binary_dilation(gt_mat, structure=struct, iterations=dil_factor)
    gt_mat_dilation_cc = cc3d.connected_components(gt_mat_dilation, connectivity=26)
    gt_label_cc = _combined_by_dilation(gt_mat_dilation_cc, gt_mat_cc)
    pred_label_cc = pred_mat_cc

    gt_tp, tp, fn, metric_pairs = [], [], [], []
    for gtcomp in range(1, int(np.max(gt_label_cc)) + 1):
        gt_tmp = np.zeros_like(gt_label_cc)
        gt_tmp[gt_label_cc == gtcomp] = 1
        gt_tmp_dilation = scipy.ndimage.binary_dilation(gt_tmp, structure=struct, iterations=dil_factor)
        gt_vol = np.sum(gt_tmp) * sx * sy * sz
        pred_tmp = np.copy(pred_label_cc)
        pred_tmp = pred_tmp * gt_tmp_dilation
        intersecting_cc = np.unique(pred_tmp)
        intersecting_cc = intersecting_cc[intersecting_cc != 0]
        tp.extend(intersecting_cc)
        pred_tmp = np.copy(pred_label_cc)
        pred_tmp[np.isin(pred_tmp, intersecting_cc, invert=True)] = 0
        pred_tmp[np.isin(pred_tmp, intersecting_cc)] = 1
        dice_score = _dice(pred_tmp, gt_tmp)
        distances = sd.compute_surface_distances(gt_tmp.astype(bool), pred_tmp.astype(bool), (sx, sy, sz))
        hd = sd.compute_robust_hausdorff(distances, 95)
        metric_pairs.append((intersecting_cc, gtcomp, gt_vol, dice_score, hd))
        (gt_tp if len(intersecting_cc) > 0 else fn).append(gtcomp)
    fp = np.unique(pred_label_cc[np.isin(pred_label_cc, [*tp, 0], invert=True)])
    return tp, fn, fp, gt_tp, metric_pairs


def brats_lesion_results(
    pred_mat: np.ndarray, gt_mat: np.ndarray, spacing: tuple[float, float, float], region: str, *,
    dilation_factor: int, lesion_volume_thresh: float, sd: ModuleType,
) -> dict[str, float]:
    """The per-region part of get_LesionWiseResults: Num_TP/FP/FN and the lesion-wise scores."""
    tp, fn, fp, gt_tp, metric_pairs = brats_lesion_scores(pred_mat, gt_mat, spacing, region, dilation_factor, sd)
    metric_df = pd.DataFrame(
        metric_pairs, columns=["predicted_lesion_numbers", "gt_lesion_numbers", "gt_lesion_vol", "dice_lesionwise",
                               "hd95_lesionwise"],
    ).sort_values(by=["gt_lesion_numbers"], ascending=True).reset_index(drop=True)
    metric_df["_len"] = metric_df["predicted_lesion_numbers"].map(len)
    fn_sub = metric_df[(metric_df["_len"] == 0) & (metric_df["gt_lesion_vol"] <= lesion_volume_thresh)].shape[0]
    gt_tp_sub = metric_df[(metric_df["_len"] != 0) & (metric_df["gt_lesion_vol"] <= lesion_volume_thresh)].shape[0]
    for column in ("gt_lesion_vol", "dice_lesionwise", "hd95_lesionwise"):  # metric_df.replace(np.inf, 374)
        metric_df[column] = metric_df[column].replace(np.inf, 374)
    metric_df_thresh = metric_df[metric_df["gt_lesion_vol"] > lesion_volume_thresh]
    try:
        lesion_wise_dice = np.sum(metric_df_thresh["dice_lesionwise"]) / (len(metric_df_thresh) + len(fp))
    except ZeroDivisionError:
        lesion_wise_dice = np.nan
    try:
        lesion_wise_hd95 = (np.sum(metric_df_thresh["hd95_lesionwise"]) + len(fp) * 374) / (len(metric_df_thresh) + len(fp))
    except ZeroDivisionError:
        lesion_wise_hd95 = np.nan
    if math.isnan(lesion_wise_dice):
        lesion_wise_dice = 1
    if math.isnan(lesion_wise_hd95):
        lesion_wise_hd95 = 0
    return {
        "Num_TP": len(gt_tp) - gt_tp_sub,
        "Num_FP": len(fp),
        "Num_FN": len(fn) - fn_sub,
        "LesionWise_Score_Dice": float(lesion_wise_dice),
        "LesionWise_Score_HD95": float(lesion_wise_hd95),
    }


def autopet_false_volumes(gt_array: np.ndarray, pred_array: np.ndarray, voxel_vol: np.float32) -> tuple[float, float]:
    """val_script.py's false_pos_pix / false_neg_pix times the voxel volume: (fp ml, fn ml)."""
    import cc3d

    def untouched(source: np.ndarray, other: np.ndarray) -> int:
        conn_comp = cc3d.connected_components(source, connectivity=18)
        total = 0
        for idx in range(1, conn_comp.max() + 1):
            comp_mask = np.isin(conn_comp, idx)
            if (comp_mask * other).sum() == 0:
                total = total + comp_mask.sum()
        return total

    return untouched(pred_array, gt_array) * voxel_vol, untouched(gt_array, pred_array) * voxel_vol


def autopet_voxel_vol(pixdim: tuple[float, float, float]) -> np.float32:
    """nii2numpy: pixdim[1]*pixdim[2]*pixdim[3]/1000 on the header's float32 pixdim."""
    header_pixdim = np.array([1.0, *pixdim, 0, 0, 0, 0], dtype=np.float32)
    return header_pixdim[1] * header_pixdim[2] * header_pixdim[3] / 1000
