"""Judging an attention map by the errors it finds: pure functions on masks and tables.

The paper (AbdomenAtlas-8K, Table 1) reports per-organ sensitivity and precision "at the volume
(group of voxels) level"; its code holds no such evaluation, so this definition is the harness's:

- the error region of (case, organ) is pseudo label XOR ground truth (false positives and false
  negatives together);
- error components and attention components are 26-connected; error components smaller than
  `min_error_voxels` are ignored (boundary noise: almost every organ has dozens of one-voxel
  error specks);
- an error component is *detected*, and an attention component is *on an error*, when they share
  at least one voxel;
- sensitivity = detected error components / error components; precision = attention components
  on an error component / attention components. A zero denominator gives NaN ("undefined"),
  never 0 or 1, and NaN is left out of means;
- voxel-level figures beside, on the whole error region (no size filter): voxel sensitivity
  |A & E| / |E|, voxel precision |A & E| / |A|, voxel Dice 2 |A & E| / (|A| + |E|), NaN where the
  denominator is 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

MIN_ERROR_VOXELS = 100
FIGURES = ("sensitivity", "precision", "voxel_sensitivity", "voxel_precision", "voxel_dice")
ALL_ORGANS = "all"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _box(mask: NDArray[np.bool_]) -> tuple[slice, ...] | None:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def detect_errors(ground_truth: NDArray[Any], pseudo: NDArray[Any], attention: NDArray[Any], *,
                  min_error_voxels: int = MIN_ERROR_VOXELS) -> dict[str, float]:
    """Error-detection figures of one (case, organ): three boolean masks on the same grid.

    Returns counts (error_voxels, significant_error_voxels (in kept components),
    error_components (kept), ignored_error_components, detected_error_components,
    attention_voxels, attention_components, attention_components_on_error) and FIGURES.
    """
    gt, ps, att = (np.asarray(m, dtype=bool) for m in (ground_truth, pseudo, attention))
    if not gt.shape == ps.shape == att.shape:
        raise ValueError(f"shapes differ: ground truth {gt.shape}, pseudo label {ps.shape}, attention {att.shape}")
    if isinstance(min_error_voxels, bool) or not isinstance(min_error_voxels, int | np.integer) or min_error_voxels < 1:
        raise ValueError(f"min_error_voxels = {min_error_voxels!r}; use an integer >= 1")
    error = gt ^ ps
    structure = np.ones((3,) * gt.ndim, bool)
    out: dict[str, float] = dict.fromkeys(
        ("error_voxels", "significant_error_voxels", "error_components", "ignored_error_components", "detected_error_components",
         "attention_voxels", "attention_components", "attention_components_on_error"), 0)
    box = _box(error | att)
    if box is not None:
        error, att = error[box], att[box]
        error_labels, n_error = ndimage.label(error, structure=structure)
        sizes = np.bincount(error_labels.ravel(), minlength=n_error + 1)
        kept = sizes >= min_error_voxels
        kept[0] = False
        significant = kept[error_labels]
        attention_labels, n_attention = ndimage.label(att, structure=structure)
        detected = np.unique(error_labels[att & significant])
        on_error = np.unique(attention_labels[att & significant])
        inter = int(np.count_nonzero(att & error))
        out.update(
            error_voxels=int(np.count_nonzero(error)),
            significant_error_voxels=int(np.count_nonzero(significant)),
            error_components=int(kept.sum()),
            ignored_error_components=int(n_error - kept.sum()),
            detected_error_components=int(detected.size),
            attention_voxels=int(np.count_nonzero(att)),
            attention_components=int(n_attention),
            attention_components_on_error=int(on_error.size),
        )
    else:
        inter = 0
    e, a = int(out["error_voxels"]), int(out["attention_voxels"])
    out["sensitivity"] = _ratio(int(out["detected_error_components"]), int(out["error_components"]))
    out["precision"] = _ratio(int(out["attention_components_on_error"]), int(out["attention_components"]))
    out["voxel_sensitivity"] = _ratio(inter, e)
    out["voxel_precision"] = _ratio(inter, a)
    out["voxel_dice"] = _ratio(2 * inter, a + e)
    return out


def evaluate_case(ground_truth: NDArray[np.integer], pseudo_label: NDArray[np.integer], attention: Mapping[str, NDArray[Any]], *,
                  labels: Mapping[str, int], case: str = "", min_error_voxels: int = MIN_ERROR_VOXELS) -> list[dict[str, Any]]:
    """`detect_errors` for each organ of `attention` (organ -> binary map) in one case.

    `ground_truth` and `pseudo_label` are label maps; `labels` maps organ names to their values.
    One record per organ: case, organ, then `detect_errors`'s keys.
    """
    gt = np.asarray(ground_truth)
    ps = np.asarray(pseudo_label)
    if gt.shape != ps.shape:
        raise ValueError(f"{case or 'case'}: ground truth shape {gt.shape} differs from the pseudo label's {ps.shape}")
    records = []
    for organ, att in attention.items():
        if organ not in labels:
            raise ValueError(f"{case or 'case'}: organ {organ!r} has no label value; known: {', '.join(labels)}")
        value = labels[organ]
        records.append({"case": case, "organ": organ,
                        **detect_errors(gt == value, ps == value, att, min_error_voxels=min_error_voxels)})
    return records


def detection_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The per (case, organ) records as a table (NaN kept for undefined figures)."""
    return pd.DataFrame(list(records))


def _mean_sd(values: pd.Series) -> tuple[int, float, float]:
    defined = values.dropna().astype(float)
    n = int(defined.size)
    mean = float(defined.mean()) if n else math.nan
    sd = float(defined.std(ddof=1)) if n > 1 else math.nan
    return n, mean, sd


def table1(detections: pd.DataFrame) -> pd.DataFrame:
    """Per-organ mean and sd over cases of each of FIGURES, laid out like the paper's Table 1.

    One row per organ (in order of first appearance) and a last row `all` pooling every
    (case, organ). Columns per figure: <figure>_n (cases where it is defined), <figure>_mean and
    <figure>_sd (sample sd, ddof 1; NaN with fewer than two defined values).
    """
    rows = []
    groups = [(str(organ), group) for organ, group in detections.groupby("organ", sort=False)]
    for organ, group in [*groups, (ALL_ORGANS, detections)]:
        row: dict[str, Any] = {"organ": organ, "cases": int(group["case"].nunique()) if "case" in group else len(group)}
        for figure in FIGURES:
            n, mean, sd = _mean_sd(group[figure]) if figure in group else (0, math.nan, math.nan)
            row.update({f"{figure}_n": n, f"{figure}_mean": mean, f"{figure}_sd": sd})
        rows.append(row)
    return pd.DataFrame(rows)


def format_table1(summary: pd.DataFrame, *, decimals: int = 2) -> pd.DataFrame:
    """`table1` as text, 'mean ± sd' per figure ('-' where undefined), like the paper."""

    def cell(mean: float, sd: float) -> str:
        if math.isnan(mean):
            return "-"
        return f"{mean:.{decimals}f}" if math.isnan(sd) else f"{mean:.{decimals}f} ± {sd:.{decimals}f}"

    out = pd.DataFrame({"organ": summary["organ"], "cases": summary["cases"]})
    for figure in FIGURES:
        out[figure] = [cell(m, s) for m, s in zip(summary[f"{figure}_mean"], summary[f"{figure}_sd"], strict=True)]
    return out


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN with < 2 pairs or a constant side."""
    a, b = np.asarray(list(x), float), np.asarray(list(y), float)
    if a.shape != b.shape:
        raise ValueError(f"spearman: {a.size} values against {b.size}; pass pairs")
    if a.size < 2:
        return math.nan
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum()) / denominator if denominator > 0 else math.nan


def priority_check(priority: pd.DataFrame, detections: pd.DataFrame, *, error_column: str = "error_voxels") -> dict[str, Any]:
    """Does the priority list put the worst cases first?

    `priority` is `priority_list`'s table, `detections` the per (case, organ) records (only cases
    with ground truth). Per case, the error volume is `error_column` summed over organs. Returns
    cases (with ground truth and a priority), queue_cases (of them in the queue), spearman
    (attention size against error volume), share_in_queue (error voxels of queued cases / all
    error voxels; NaN where there is no error) and best_share (the same for the queue_cases cases
    with the most error: what a perfect list would reach).
    """
    errors = detections.groupby("case")[error_column].sum()
    errors.index = errors.index.astype(str)
    joined = priority.assign(case=priority["case"].astype(str)).set_index("case").join(errors.rename("error"), how="inner")
    total = float(joined["error"].sum())
    queued = joined[joined["in_queue"].astype(bool)]
    best = float(joined["error"].sort_values(ascending=False).iloc[: len(queued)].sum()) if len(queued) else 0.0
    return {
        "cases": int(len(joined)),
        "queue_cases": int(len(queued)),
        "error_column": error_column,
        "error_voxels": total,
        "spearman": spearman(joined["attention_voxels"], joined["error"]),
        "share_in_queue": float(queued["error"].sum()) / total if total > 0 else math.nan,
        "best_share": best / total if total > 0 else math.nan,
    }
