"""Everything the report reads from a results folder: the store, monitor series, annotator tables.

The report's only disk access besides writing the HTML file. It reads the results store (runs,
scores, measurements and the tidy table `harness rank` ranks), the resource time series
`runs/<alg>/<case>/monitor.parquet` on demand, and the annotator's tables (`annotation/*.csv`:
error detection, by error size, the priority check, the review queue) when one wrote them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from harness.errors import DataError
from harness.layout import MONITOR_FILE, ResultsLayout
from harness.ranking import RankingConfig, succeeded
from harness.store import FolderIdentity, Store, tidy_organ_scores, tidy_scores

MONITOR_COLUMNS = ("t_s", "gpu_mb", "cpu_cores", "cpu_pct", "rss_mb")
REPORTED_ANNOTATION_TABLES = ("error_detection", "error_by_size", "priority_check", "review_queue")


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """The contents of a results folder, as the report needs them.

    - `runs`, `scores`, `measurements`: the store's tables (`Store.runs()` etc.).
    - `table`: the tidy (algorithm, case, metric, value, status) table of `read_store_scores`.
    - `monitor_paths`: (algorithm, case) -> its monitor.parquet, for the runs that have one.
    - `annotation`: name -> table, for each annotator table present.
    - `identity`: the data set and challenge the folder belongs to (None for an old store).
    - `organ_table`: the tidy per-organ table (`tidy_organ_scores`) the ranking ranks organs on.

    Once judged (`judged`), `runs` has a boolean column `ok`: whether the run succeeded under the
    ranking's one rule (`harness.ranking.succeeded`), read once for the whole report.
    """

    folder: Path
    runs: pd.DataFrame
    scores: pd.DataFrame
    measurements: pd.DataFrame
    table: pd.DataFrame
    monitor_paths: dict[tuple[str, str], Path] = field(default_factory=dict)
    annotation: dict[str, pd.DataFrame] = field(default_factory=dict)
    identity: FolderIdentity | None = None
    organ_table: pd.DataFrame | None = None


def load_report_inputs(results_dir: Path) -> ReportInputs:
    """Read the results folder `results_dir` (raises `StoreError` when it holds no store)."""
    layout = ResultsLayout.of(results_dir)
    folder = layout.root
    with Store.open(folder, lock=False, create=False) as store:
        runs = store.runs()
        scores = store.scores()
        measurements = store.measurements()
        identity = store.identity()
    table = tidy_scores(folder, runs, scores, measurements)
    monitors = {}
    present = {}  # algorithm -> its run folders that hold a monitor series (one listing per algorithm)
    for algorithm, case_id in zip(runs["algorithm"].astype(str).tolist(), runs["case_id"].astype(str).tolist(), strict=True):
        if algorithm not in present:
            present[algorithm] = _monitored(layout, algorithm)
        if case_id in present[algorithm]:
            monitors[(algorithm, case_id)] = layout.monitor_file(algorithm, case_id)
    annotation = {}
    for name in REPORTED_ANNOTATION_TABLES:
        path = layout.annotation_table(name)
        if path.is_file():
            annotation[name] = read_annotation_table(path)
    return ReportInputs(folder=folder, runs=runs, scores=scores, measurements=measurements, table=table,
                        monitor_paths=monitors, annotation=annotation, identity=identity,
                        organ_table=tidy_organ_scores(runs, scores))


def judged(inputs: ReportInputs, config: RankingConfig) -> ReportInputs:
    """`inputs` with each run's success under `config` (`ok`, the ranking's rule `succeeded`) a
    boolean column of `runs`, computed once for every table and figure of a report."""
    runs = inputs.runs.assign(ok=succeeded(inputs.runs["status"], config))
    return replace(inputs, runs=runs)


def _monitored(layout: ResultsLayout, algorithm: str) -> set[str]:
    """The cases of `algorithm` whose run folder holds a monitor series."""
    folder = str(layout.algorithm_dir(algorithm))
    try:
        with os.scandir(folder) as entries:
            cases = [e.name for e in entries if e.is_dir()]
    except OSError:
        return set()
    return {c for c in cases if os.path.isfile(os.path.join(folder, c, MONITOR_FILE))}


def read_monitor(path: Path) -> pd.DataFrame:
    """One run's resource series (t_s and whichever of gpu_mb, cpu_cores, cpu_pct, rss_mb it has),
    sorted by time. Raises `DataError` naming the file when it cannot be read."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read the monitor series ({first}); rerun the case") from None
    if "t_s" not in frame.columns:
        raise DataError(f"{path}: no t_s column (columns: {', '.join(map(str, frame.columns))}); rerun the case")
    keep = [c for c in MONITOR_COLUMNS if c in frame.columns]
    return frame[keep].astype(float).sort_values("t_s", kind="stable").reset_index(drop=True)


def read_annotation_table(path: Path) -> pd.DataFrame:
    """An annotator's CSV as text columns (shown as written); raises `DataError` when unreadable."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read the annotator table ({first}); rerun the annotator") from None


__all__ = ["MONITOR_COLUMNS", "REPORTED_ANNOTATION_TABLES", "ReportInputs", "judged", "load_report_inputs",
           "read_annotation_table", "read_monitor"]
