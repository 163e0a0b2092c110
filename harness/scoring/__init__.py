"""Score a folder of predictions against a data set's labels: load, check, measure, in parallel.

Each case is scored on its own (in a worker process when `jobs` > 1). A case that cannot be scored
becomes rows with its status and one-line message; the other cases go on.
"""

from __future__ import annotations

import enum
import gc
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.data.dataset import Problem, discover
from harness.data.masks import annotated_profile, assemble, is_mask_folder
from harness.data.nifti import check_labels, check_same_grid, inflate_module, outside_as_background, read_grid, read_label
from harness.errors import CaseError, DataError
from harness.metrics.case import score_case
from harness.metrics.surface import kd_tree_class
from harness.models import CaseStatus, OrganScore, Profile
from harness.profiles.mapping import LabelMap

COLUMNS = ["case", "organ", "label", "dsc", "nsd", "hd95_mm", "status", "message"]

# Bump whenever a change to the metrics, the profiles' loading or these checks may change any
# stored score: every stored score of an older version is then stale and rescored from kept outputs.
# 4: ground truth present and prediction empty is 0 before the z-range cut; outside_labels rule
# 5: a profile's extra metrics (lesion-wise, false volumes, panoptic) are stored with the scores
SCORING_VERSION = "5"  # 3: numpy rounding of float64 (as FLARE22's script); image/label headers not compared


@dataclass(frozen=True)
class CaseJob:
    case_id: str
    label: Path | None
    image: Path | None
    pred: Path  # where the prediction is expected; it may be missing
    shown: str = ""  # the prediction's name in messages (the name the algorithm wrote); "": `pred`


class Side(enum.StrEnum):
    """Whose file made a case unscorable: the ground truth's (the data's fault) or the prediction's."""

    NONE = ""
    LABEL = "label"
    PREDICTION = "prediction"


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    scores: tuple[OrganScore, ...]
    status: str
    message: str = ""
    side: Side = Side.NONE


def failed_rows(case_id: str, profile: Profile, status: str, message: str) -> tuple[OrganScore, ...]:
    """One row per scored organ or region for a case that could not be scored, so no case disappears."""
    return tuple(
        OrganScore(case_id=case_id, organ=r.name, label=r.label, dsc=math.nan, nsd=math.nan,
                   hd95_mm=math.nan, status=status, message=message,
                   extra=tuple((name, math.nan) for name in profile.extra_metrics))
        for r in profile.scored
    )


def score_one(job: CaseJob, profile: Profile, *, threads: int = 1, label_map: LabelMap | None = None) -> CaseResult:
    """Load, check and score one case; never raises for a problem with the case's files.

    The one scoring path of `harness score`, `harness run` and `harness rescore`: the ground truth
    is checked (readable, integer labels of the profile, its image's shape), then the prediction
    (present, readable, on the ground truth's grid or its image's, labels of the profile). A failure is rows with
    its status and `side` naming whose file is at fault. Label values outside the profile are refused, or,
    under a profile whose `outside_labels` is `background`, scored as background: the case is `ok` and its
    `message` is the warning."""
    side = Side.LABEL
    warnings: list[str] = []
    pred_name = job.shown or job.pred
    try:
        if job.label is None:
            raise CaseError(f"{job.case_id}: no ground-truth label; add labelsTr/{job.case_id}.nii.gz",
                            status=CaseStatus.MISSING_LABEL)
        if is_mask_folder(job.label):  # one mask per organ: assembled under the profile; unannotated organs unscored
            assembled = assemble(job.label, profile)
            gt: NDArray[np.integer] = assembled.label_map
            gt_grid = assembled.grid
            profile = annotated_profile(profile, assembled.annotated)
        else:
            gt, gt_grid = read_label(job.label, read_only=True)
        gt, warning = outside_as_background(job.label, gt, check_labels(job.label, gt, profile), profile)
        warnings.append(warning)
        image_grid = read_grid(job.image) if job.image is not None else None
        if image_grid is not None and image_grid.shape != gt_grid.shape:  # a header's rounding is data check's warning
            raise CaseError(f"{job.label}: shape {gt_grid.shape} differs from its image {job.image.name} "  # type: ignore[union-attr]
                            f"{image_grid.shape}; the label belongs to another image", status=CaseStatus.GRID_MISMATCH)
        side = Side.PREDICTION
        if not job.pred.exists():
            raise CaseError.of(job.pred, _missing(job.pred), status=CaseStatus.MISSING_PREDICTION)
        pred_grid = read_grid(job.pred)
        try:
            check_same_grid(job.pred, pred_grid, job.label, gt_grid)
        except CaseError as against_label:
            # On its image's grid is on the case's grid: the algorithm saw only the image, and an image
            # and label whose headers differ by rounding are the data's matter, not the prediction's.
            if image_grid is None or job.image is None:
                raise
            try:
                check_same_grid(job.pred, pred_grid, job.image, image_grid, what="image")
            except CaseError:
                raise against_label from None
        pred, pred_grid = read_label(job.pred, read_only=True)
        if label_map is not None:  # numbered in another label system: checked there, renumbered by organ name
            pred, warning = outside_as_background(pred_name, pred, check_labels(job.pred, pred, label_map.source),
                                                  label_map.source)
            warnings.append(warning)
            pred = label_map.apply(pred)
            profile = label_map.scored_profile()
        pred, warning = outside_as_background(pred_name, pred, check_labels(job.pred, pred, profile), profile)
        warnings.append(warning)
        scores = score_case(gt, pred, gt_grid.spacing_mm, profile, case_id=job.case_id, threads=threads)
        return CaseResult(job.case_id, tuple(scores), CaseStatus.OK, "; ".join(w for w in warnings if w))
    except CaseError as exc:
        message = exc.about(pred_name) if exc.path == job.pred else str(exc)
        return CaseResult(job.case_id, failed_rows(job.case_id, profile, exc.status, message), exc.status, message, side)


def _missing(pred: Path) -> str:
    """Why a prediction is missing (after its name), naming a file of another NIfTI ending that is there instead."""
    stem = pred.name[: -len(".nii.gz")] if pred.name.endswith(".nii.gz") else pred.stem
    near = [p.name for p in sorted(pred.parent.glob(f"{stem}.*")) if p != pred] if pred.parent.is_dir() else []
    if near:
        return (f"prediction is missing, but {', '.join(near[:3])} is there; write it as {pred.name} "
                "(gzip-compressed NIfTI)")
    return "prediction is missing; write it (label map on the case's grid)"


def plan(pred_dir: Path, labels_dir: Path) -> tuple[list[CaseJob], list[Problem]]:
    """Pair every ground-truth case with its prediction (missing ones stay in, to be recorded)."""
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: no such folder; pass the folder of predicted <case>.nii.gz files")
    dataset, problems = discover(labels_dir)
    truth = {Path(labels_dir).resolve(), *(c.label.parent.resolve() for c in dataset.cases if c.label is not None)}
    if Path(pred_dir).resolve() in truth:
        raise DataError(f"{pred_dir}: is the ground truth itself (scoring it against itself gives 1.0 everywhere); "
                        "pass the folder of predictions")
    preds: dict[str, Path] = {}
    pred_problems: list[Problem] = []
    try:
        pred_set, pred_problems = discover(pred_dir)
        preds = {c.case_id: c.label for c in pred_set.cases if c.label is not None}
    except DataError:
        pass  # an empty predictions folder: every case is recorded as missing its prediction
    jobs = []
    for case in dataset.cases:
        if case.label is None:
            continue  # images without labels (a test split): nothing to score against
        expected = preds.get(case.case_id, pred_dir / f"{case.case_id}.nii.gz")
        jobs.append(CaseJob(case.case_id, case.label, case.image, expected))
    if not jobs:
        raise DataError(f"{labels_dir}: no ground-truth labels found; pass the folder with labelsTr/ or labelsTs/")
    known = {j.case_id for j in jobs}
    for case_id, path in preds.items():
        if case_id not in known:
            problems.append(Problem(path, f"{path}: no ground truth for case {case_id}; ignored (check the file name)"))
    return jobs, problems + pred_problems


_HEAP_RESERVE_BYTES = 256 << 20  # more than a full-size case's volumes, masks and surfaces take at once


def keep_freed_memory() -> None:
    """Let glibc's malloc keep the memory a case frees for the next case (no trimming, no mmap of
    large blocks): each volume-sized buffer would otherwise come back as fresh pages that the
    kernel faults in and zeroes again, 10 % of a case's CPU time. The process's memory then stays
    at its peak, as a scoring worker's does anyway. Nothing happens off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl, macOS, Windows)
        return
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 1 << 30)
    # The heap then grows once, by a buffer that numpy marks for transparent huge pages (it does so
    # for any of 4 MB or more) and frees untouched: the volumes later placed there are faulted in
    # 2 MB at a time, not 4 kB (a 10-case run: 6k page faults instead of 45k, peak memory the same).
    # Only address space is reserved; where the kernel has no huge pages, nothing changes.
    try:
        reserve = np.empty(_HEAP_RESERVE_BYTES, dtype=np.uint8)
        del reserve
    except MemoryError:  # strict overcommit: no matter
        pass


def score_many(
    jobs: list[CaseJob],
    profile: Profile,
    *,
    n_jobs: int = 1,
    label_map: LabelMap | None = None,
) -> Iterator[CaseResult]:
    """Score `jobs`, yielding each result as it completes (process pool when `n_jobs` > 1)."""
    cpus = os.cpu_count() or 1
    if n_jobs <= 1 or len(jobs) <= 1:
        keep_freed_memory()
        for job in jobs:
            yield score_one(job, profile, threads=min(4, cpus), label_map=label_map)
        return
    threads = max(1, cpus // n_jobs)
    # The KD-tree's module (0.1 s of CPU), loaded once here rather than in each forked worker that builds a tree;
    # so are the gzip reader's and the worker set-up's (ctypes).
    kd_tree_class()
    inflate_module()
    import ctypes  # noqa: F401
    from concurrent.futures import ProcessPoolExecutor  # here: 10 ms of start-up (multiprocessing, socket) that -j 1 need not pay

    # The forked workers share the parent's pages until one of them writes there, and a full garbage
    # collection writes to every object it visits: frozen, the objects loaded so far are left out of
    # the collections of the workers and of the parent while they run. Whether a worker would run one
    # depends on the allocations before the fork; where it does, this halves the workers' page faults
    # (a 10-case run: 4.5k copies of 4 kB pages instead of 10k, and up to 0.5 s less system time).
    gc.freeze()
    try:
        with ProcessPoolExecutor(max_workers=n_jobs, initializer=keep_freed_memory) as pool:
            futures = [pool.submit(score_one, job, profile, threads=threads, label_map=label_map) for job in jobs]
            for future in futures:
                yield future.result()
    finally:
        gc.unfreeze()


Row = dict[str, Any]


def to_rows(results: list[CaseResult]) -> list[Row]:
    """The tidy per (case, organ) table (`COLUMNS`, then the profile's extra metrics), in case order.
    Plain rows, not a DataFrame: `harness score` does not pay pandas' start-up (0.4 s) to write a CSV."""
    return [
        {"case": s.case_id, "organ": s.organ, "label": s.label, "dsc": s.dsc, "nsd": s.nsd,
         "hd95_mm": s.hd95_mm, "status": str(s.status), "message": s.message, **dict(s.extra)}
        for r in sorted(results, key=lambda r: r.case_id)
        for s in r.scores
    ]


def _present(values: list[float]) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    return array[~np.isnan(array)]


def summary(rows: list[Row]) -> list[Row]:
    """Mean and sd (n - 1) per organ over the cases scored `ok`, NaN ('not applicable') left out,
    the median HD95, the number of cases and the mean of each extra metric of the profile
    (`<metric>_mean`); organs in the order they first appear."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row["status"] == CaseStatus.OK:  # not_scorable organs are counted apart, not averaged
            groups.setdefault(row["organ"], []).append(row)
    table = []
    for organ, members in groups.items():
        out: Row = {"organ": organ}
        for metric in ("dsc", "nsd"):
            values = _present([m[metric] for m in members])
            out[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
            out[f"{metric}_sd"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
        hd95 = _present([m["hd95_mm"] for m in members])
        out["hd95_median_mm"] = float(np.median(hd95)) if hd95.size else math.nan
        out["cases"] = len({m["case"] for m in members})
        for metric in (k for k in members[0] if k not in COLUMNS and k != "algorithm"):  # the profile's extra metrics
            values = _present([m[metric] for m in members])
            out[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
        table.append(out)
    return table


def _cell(value: Any) -> Any:
    """As pandas' `to_csv(na_rep="nan")` writes it: NaN and None as `nan`, floats by repr."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return repr(float(value)) if isinstance(value, float) else value  # float(): numpy 2 reprs np.float64(...)


def write_table(rows: list[Row], columns: list[str], out: Path) -> None:
    """CSV or parquet by the file's suffix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows, columns=columns).to_parquet(out, index=False)
    elif out.suffix == ".csv":
        import csv

        with out.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([_cell(row.get(column)) for column in columns] for row in rows)
    else:
        raise DataError(f"{out}: unknown table format '{out.suffix}'; use a .csv or .parquet file name")
