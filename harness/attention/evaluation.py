"""Judging an attention map by the errors it finds: pure functions on masks and tables.

The paper (AbdomenAtlas-8K, Table 1) reports per-organ sensitivity and precision "at the volume
(group of voxels) level"; its code holds no such evaluation, so this definition is the harness's:

- the disagreement of (case, organ) is pseudo label XOR ground truth (false positives and false
  negatives together); the *error* an annotator would revise is the disagreement farther than the
  organ's surface tolerance (`tolerance_mm`, the profile's NSD tolerance) from the ground truth's
  boundary, the surface between its voxels and the others: a false-positive voxel whose centre is
  more than the tolerance from every ground-truth voxel's cube, a false-negative one more than the
  tolerance from every cube outside the ground truth (the centre of a voxel next to the surface is
  half a voxel from it). A boundary shell within the tolerance is not an error. `tolerance_mm = 0` keeps the whole
  disagreement (the earlier definition, for comparison);
- error components and attention components are 26-connected; error components smaller than
  `min_error_voxels` are ignored (boundary noise: almost every organ has dozens of one-voxel
  error specks); the error components kept are the *significant errors*;
- volume level, as the paper's Table 1 counts a CT volume: the organ of a case *has an error* when
  it has a significant error component, is *flagged* when its attention map is not empty, and the
  error is *detected* when the attention map touches a significant error component. Per organ over
  cases: sensitivity = detected / cases with an error; precision = flagged cases with an error /
  flagged cases;
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

from harness.metrics.overlap import nonzero_box

MIN_ERROR_VOXELS = 100
FIGURES = ("sensitivity", "precision", "voxel_sensitivity", "voxel_precision", "voxel_dice")
ALL_ORGANS = "all"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _cube_distance(mask: NDArray[np.bool_], sampling: tuple[float, ...]) -> NDArray[np.float64]:
    """Distance (mm) from each voxel's centre to the nearest point of `mask`'s voxels, each a
    closed cube (0 inside). Exact: the nearest point of a cube has, along each axis, the centre's
    own coordinate or a face's, so it lies on the grid of half the spacing that holds centres
    (odd indices) and faces (even ones), where the cubes are the mask dilated by one fine voxel."""
    fine = np.zeros(tuple(2 * n + 1 for n in mask.shape), np.uint8)
    centres = tuple(slice(1, None, 2) for _ in mask.shape)
    fine[centres] = mask
    fine = ndimage.maximum_filter(fine, size=3, mode="constant", cval=0)
    return ndimage.distance_transform_edt(fine == 0, sampling=[s / 2 for s in sampling])[centres]


def _cube_offsets(sampling: tuple[float, ...], tolerance_mm: float) -> list[tuple[int, ...]]:
    """The voxel offsets d whose cube lies within `tolerance_mm` of a centre: along each axis the
    gap to the cube's face is (2 |d| - 1) half-spacings (none for d = 0), as `_cube_distance`
    measures it on the half-spacing grid."""
    reach = [int(math.floor(tolerance_mm / s + 0.5)) + 1 for s in sampling]
    steps = [np.arange(-r, r + 1) for r in reach]
    grids = np.meshgrid(*steps, indexing="ij")
    squared = sum((np.maximum(0, 2 * np.abs(g) - 1) * (s / 2)) ** 2 for g, s in zip(grids, sampling, strict=True))
    inside = np.sqrt(squared) <= tolerance_mm
    return [tuple(int(v) for v in row) for row in np.stack([g[inside] for g in grids], axis=1)]


def _near_cubes(mask: NDArray[np.bool_], targets: NDArray[np.bool_], sampling: tuple[float, ...],
                tolerance_mm: float, *, method: str | None = None) -> NDArray[np.bool_]:
    """The voxels of `targets` whose centre lies within `tolerance_mm` of a cube of `mask`.

    Looked up offset by offset at the targets alone when that is the smaller work (a thin shell,
    a tolerance of a few voxels), else from the distance map of the whole box; both exact and
    equal ("gather" or "distance" force one)."""
    if not mask.any():
        return np.zeros_like(targets)
    offsets = _cube_offsets(sampling, tolerance_mm)
    count = int(np.count_nonzero(targets))
    if method is None:
        method = "gather" if len(offsets) * count <= 16 * mask.size else "distance"
    if method == "distance":
        return targets & (_cube_distance(mask, sampling) <= tolerance_mm)
    reach = [max(abs(o[axis]) for o in offsets) for axis in range(mask.ndim)]
    padded = np.pad(np.ascontiguousarray(mask), [(r, r) for r in reach])
    where = np.nonzero(targets)
    flat = np.ravel_multi_index(tuple(i + r for i, r in zip(where, reach, strict=True)), padded.shape)
    strides = np.array(padded.strides) // padded.itemsize
    values = padded.ravel()
    near = np.zeros(count, bool)
    for offset in offsets:
        near |= values[flat + int(np.dot(offset, strides))]
    out = np.zeros_like(targets)
    out[where] = near
    return out


def beyond_tolerance(ground_truth: NDArray[Any], pseudo: NDArray[Any], *, spacing: tuple[float, ...] | None = None,
                     tolerance_mm: float = 0.0, method: str | None = None) -> NDArray[np.bool_]:
    """The disagreement farther than `tolerance_mm` from the ground truth's boundary (module
    docstring); the whole disagreement when the tolerance is 0. `method` forces how the distance
    is looked up (`_near_cubes`), for the tests."""
    gt, ps = np.asarray(ground_truth, dtype=bool), np.asarray(pseudo, dtype=bool)
    error = gt ^ ps
    if tolerance_mm <= 0 or not error.any():
        return error
    sampling = tuple(float(s) for s in (spacing or (1.0,) * gt.ndim))
    box = nonzero_box(error)
    assert box is not None
    pad = [int(math.ceil(tolerance_mm / s)) + 1 for s in sampling]  # what lies farther cannot be within it
    wide = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, gt.shape, strict=True))
    g, e = gt[wide], error[wide]
    far = np.zeros_like(e)
    false_positive, false_negative = e & ~g, e & g
    if false_positive.any():  # each voxel outside against the ground truth's cubes
        far |= false_positive & ~_near_cubes(g, false_positive, sampling, tolerance_mm, method=method)
    if false_negative.any():  # each voxel inside against the cubes outside it
        far |= false_negative & ~_near_cubes(~g, false_negative, sampling, tolerance_mm, method=method)
    out = np.zeros_like(error)
    out[wide] = far
    return out


def detect_errors(ground_truth: NDArray[Any], pseudo: NDArray[Any], attention: NDArray[Any], *,
                  min_error_voxels: int = MIN_ERROR_VOXELS, spacing: tuple[float, ...] | None = None,
                  tolerance_mm: float = 0.0, components: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Error-detection figures of one (case, organ): three boolean masks on the same grid.

    Returns counts (error_voxels: the whole disagreement; significant_error_voxels (in kept
    components of the error beyond the tolerance), error_components (kept),
    ignored_error_components, detected_error_components, attention_voxels,
    attention_components, attention_components_on_error), the volume-level flags has_error,
    flagged and detected (0/1), significant_error_ml, and FIGURES. `components`, when given,
    receives one row per significant error component: voxels, ml, detected.
    """
    gt, ps, att = (np.asarray(m, dtype=bool) for m in (ground_truth, pseudo, attention))
    if not gt.shape == ps.shape == att.shape:
        raise ValueError(f"shapes differ: ground truth {gt.shape}, pseudo label {ps.shape}, attention {att.shape}")
    if isinstance(min_error_voxels, bool) or not isinstance(min_error_voxels, int | np.integer) or min_error_voxels < 1:
        raise ValueError(f"min_error_voxels = {min_error_voxels!r}; use an integer >= 1")
    voxel_ml = float(np.prod(spacing)) / 1000.0 if spacing else 0.001
    disagreement = gt ^ ps
    error = beyond_tolerance(gt, ps, spacing=spacing, tolerance_mm=tolerance_mm)
    structure = np.ones((3,) * gt.ndim, bool)
    out: dict[str, float] = dict.fromkeys(
        ("error_voxels", "significant_error_voxels", "error_components", "ignored_error_components", "detected_error_components",
         "attention_voxels", "attention_components", "attention_components_on_error"), 0)
    box = nonzero_box(disagreement | att)
    if box is not None:
        disagreement, error, att = disagreement[box], error[box], att[box]
        error_labels, n_error = ndimage.label(error, structure=structure)
        sizes = np.bincount(error_labels.ravel(), minlength=n_error + 1)
        kept = sizes >= min_error_voxels
        kept[0] = False
        significant = kept[error_labels]
        attention_labels, n_attention = ndimage.label(att, structure=structure)
        detected = np.unique(error_labels[att & significant])
        on_error = np.unique(attention_labels[att & significant])
        inter = int(np.count_nonzero(att & disagreement))
        if components is not None:
            hit = set(detected.tolist())
            for index in np.flatnonzero(kept):
                components.append({"voxels": int(sizes[index]), "ml": float(sizes[index]) * voxel_ml,
                                   "detected": int(index in hit)})
        out.update(
            error_voxels=int(np.count_nonzero(disagreement)),
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
    out["significant_error_ml"] = float(out["significant_error_voxels"]) * voxel_ml
    out["has_error"] = int(out["error_components"] > 0)
    out["flagged"] = int(out["attention_voxels"] > 0)
    out["detected"] = int(out["detected_error_components"] > 0)
    e, a = int(out["error_voxels"]), int(out["attention_voxels"])
    out["sensitivity"] = _ratio(int(out["detected_error_components"]), int(out["error_components"]))
    out["precision"] = _ratio(int(out["attention_components_on_error"]), int(out["attention_components"]))
    out["voxel_sensitivity"] = _ratio(inter, e)
    out["voxel_precision"] = _ratio(inter, a)
    out["voxel_dice"] = _ratio(2 * inter, a + e)
    return out


def evaluate_case(ground_truth: NDArray[np.integer], pseudo_label: NDArray[np.integer], attention: Mapping[str, NDArray[Any]], *,
                  labels: Mapping[str, int], case: str = "", min_error_voxels: int = MIN_ERROR_VOXELS,
                  spacing: tuple[float, ...] | None = None, tolerances: Mapping[str, float] | float = 0.0,
                  components: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`detect_errors` for each organ of `attention` (organ -> binary map) in one case.

    `ground_truth` and `pseudo_label` are label maps; `labels` maps organ names to their values;
    `tolerances` the surface tolerance in mm per organ (or one for all; 0: the whole
    disagreement). One record per organ: case, organ, tolerance_mm, then `detect_errors`'s keys;
    `components` receives the significant error components with case and organ.
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
        tolerance = float(tolerances.get(organ, 0.0) if isinstance(tolerances, Mapping) else tolerances)
        found: list[dict[str, Any]] = []
        records.append({"case": case, "organ": organ, "tolerance_mm": tolerance,
                        **detect_errors(gt == value, ps == value, att, min_error_voxels=min_error_voxels, spacing=spacing,
                                        tolerance_mm=tolerance, components=found)})
        if components is not None:
            components += [{"case": case, "organ": organ, **row} for row in found]
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


def _volume_level(group: pd.DataFrame) -> dict[str, Any]:
    has_error = group["has_error"].astype(bool) if "has_error" in group else pd.Series(False, index=group.index)
    flagged = group["flagged"].astype(bool) if "flagged" in group else pd.Series(False, index=group.index)
    detected = group["detected"].astype(bool) if "detected" in group else pd.Series(False, index=group.index)
    n_error, n_flagged = int(has_error.sum()), int(flagged.sum())
    n_detected, n_flagged_error = int((detected & has_error).sum()), int((flagged & has_error).sum())
    return {"error_cases": n_error, "detected_cases": n_detected, "flagged_cases": n_flagged,
            "flagged_error_cases": n_flagged_error, "volume_sensitivity": _ratio(n_detected, n_error),
            "volume_precision": _ratio(n_flagged_error, n_flagged)}


def table1(detections: pd.DataFrame) -> pd.DataFrame:
    """Per-organ figures laid out like the paper's Table 1, volume level first.

    One row per organ (in order of first appearance) and a last row `all`. Volume level: per organ
    the counts (error_cases, detected_cases, flagged_cases, flagged_error_cases) and the
    proportions volume_sensitivity and volume_precision; in `all`, the counts summed and the mean
    and sd over organs of the per-organ proportions (as the paper's "0.93 +- 0.17 over 8 organs").
    Component and voxel level: per figure <figure>_n (cases where it is defined), <figure>_mean and
    <figure>_sd (sample sd, ddof 1; NaN with fewer than two defined values) over cases, `all`
    pooling every (case, organ).
    """
    rows = []
    groups = [(str(organ), group) for organ, group in detections.groupby("organ", sort=False)]
    per_organ = [_volume_level(group) for _, group in groups]
    for (organ, group), volume in zip([*groups, (ALL_ORGANS, detections)], [*per_organ, None], strict=True):
        row: dict[str, Any] = {"organ": organ, "cases": int(group["case"].nunique()) if "case" in group else len(group)}
        if volume is None:  # all organs: counts summed, proportions averaged over organs
            volume = _volume_level(group)
            for figure in ("volume_sensitivity", "volume_precision"):
                n, mean, sd = _mean_sd(pd.Series([v[figure] for v in per_organ], dtype=float))
                volume[figure] = mean
                row.update({f"{figure}_organs": n, f"{figure}_sd": sd})
        else:
            row.update({"volume_sensitivity_organs": 1, "volume_sensitivity_sd": math.nan,
                        "volume_precision_organs": 1, "volume_precision_sd": math.nan})
        row.update(volume)
        for figure in FIGURES:
            n, mean, sd = _mean_sd(group[figure]) if figure in group else (0, math.nan, math.nan)
            row.update({f"{figure}_n": n, f"{figure}_mean": mean, f"{figure}_sd": sd})
        rows.append(row)
    return pd.DataFrame(rows)


PAPER_TABLE1 = {  # AbdomenAtlas-8K Table 1 (1,000 JHH volumes): (sensitivity, precision); "all": mean over 8 organs
    "spleen": (0.91, 0.68), "liver": (0.74, 0.88), "pancreas": (0.90, 0.91), ALL_ORGANS: (0.93, 0.81),
}


def format_table1(summary: pd.DataFrame, *, decimals: int = 2) -> pd.DataFrame:
    """`table1` as text, like the paper: volume-level sensitivity and precision first ('k/n' cases
    per organ; 'mean ± sd' over organs in `all`), the paper's figures beside where it gives them,
    then 'mean ± sd' of each component- and voxel-level figure ('-' where undefined)."""

    def cell(mean: float, sd: float) -> str:
        if math.isnan(mean):
            return "-"
        return f"{mean:.{decimals}f}" if math.isnan(sd) else f"{mean:.{decimals}f} ± {sd:.{decimals}f}"

    def volume(row: pd.Series, figure: str, numerator: str, denominator: str) -> str:
        value = float(row[figure])
        if row["organ"] == ALL_ORGANS:
            return cell(value, float(row[f"{figure}_sd"]))
        shown = "-" if math.isnan(value) else f"{value:.{decimals}f}"
        return f"{shown} ({int(row[numerator])}/{int(row[denominator])})"

    out = pd.DataFrame({"organ": summary["organ"], "cases": summary["cases"]})
    out["volume_sensitivity"] = [volume(r, "volume_sensitivity", "detected_cases", "error_cases")
                                 for _, r in summary.iterrows()]
    out["volume_precision"] = [volume(r, "volume_precision", "flagged_error_cases", "flagged_cases")
                               for _, r in summary.iterrows()]
    paper = [PAPER_TABLE1.get(str(o)) for o in summary["organ"]]
    out["paper_sensitivity"] = [f"{p[0]:.2f}" if p else "" for p in paper]
    out["paper_precision"] = [f"{p[1]:.2f}" if p else "" for p in paper]
    for figure in FIGURES:
        shown = f"component_{figure}" if figure in ("sensitivity", "precision") else figure
        out[shown] = [cell(m, s) for m, s in zip(summary[f"{figure}_mean"], summary[f"{figure}_sd"], strict=True)]
    return out


SIZE_BINS_ML = (0.0, 1.0, 5.0, 20.0, 100.0, math.inf)


def sensitivity_by_size(components: Iterable[Mapping[str, Any]], *, bins_ml: tuple[float, ...] = SIZE_BINS_ML) -> pd.DataFrame:
    """Component-level sensitivity by the error component's volume: one row per bin [lo, hi) ml
    with the components in it, those the attention map touched, and their share (NaN if none)."""
    frame = pd.DataFrame(list(components), columns=["ml", "detected"])
    rows = []
    for lo, hi in zip(bins_ml[:-1], bins_ml[1:], strict=True):
        inside = frame[(frame["ml"] >= lo) & (frame["ml"] < hi)]
        n, hit = len(inside), int(inside["detected"].sum())
        label = f"{lo:g}-{hi:g} ml" if math.isfinite(hi) else f">= {lo:g} ml"
        rows.append({"error_size": label, "components": n, "detected": hit, "sensitivity": _ratio(hit, n)})
    return pd.DataFrame(rows)


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
    with the most error: what a perfect list would reach), random_share (what a random order
    holds on average: queue_cases / cases), and, where the records have `has_error`, the same
    for the erroneous (case, organ) pairs: error_pairs, pairs_in_queue, best_pairs_share.
    """
    errors = detections.groupby("case")[error_column].sum()
    errors.index = errors.index.astype(str)
    joined = priority.assign(case=priority["case"].astype(str)).set_index("case").join(errors.rename("error"), how="inner")
    total = float(joined["error"].sum())
    queued = joined[joined["in_queue"].astype(bool)]
    best = float(joined["error"].sort_values(ascending=False).iloc[: len(queued)].sum()) if len(queued) else 0.0
    pairs: dict[str, Any] = {}
    if "has_error" in detections:
        per_case = detections.groupby("case")["has_error"].sum()
        per_case.index = per_case.index.astype(str)
        counted = joined.join(per_case.rename("pairs"), how="left").fillna({"pairs": 0})
        n_pairs = float(counted["pairs"].sum())
        best_pairs = float(counted["pairs"].sort_values(ascending=False).iloc[: len(queued)].sum()) if len(queued) else 0.0
        pairs = {"error_pairs": int(n_pairs),
                 "pairs_in_queue": float(counted[counted["in_queue"].astype(bool)]["pairs"].sum()) / n_pairs
                 if n_pairs > 0 else math.nan,
                 "best_pairs_share": best_pairs / n_pairs if n_pairs > 0 else math.nan}
    return {
        "cases": int(len(joined)),
        "queue_cases": int(len(queued)),
        "error_column": error_column,
        "error_voxels": total,
        "spearman": spearman(joined["attention_voxels"], joined["error"]),
        "share_in_queue": float(queued["error"].sum()) / total if total > 0 else math.nan,
        "best_share": best / total if total > 0 else math.nan,
        "random_share": len(queued) / len(joined) if len(joined) else math.nan,
        **pairs,
    }
