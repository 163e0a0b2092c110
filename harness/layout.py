"""The layout of a results folder, spelled out here and nowhere else.

    store.sqlite              the results store (runs, scores, measurements, meta)
    .lock                     held by the one harness process using the folder
    runs/<alg>/<case>/        a run's kept outputs (label map, probabilities/, an annotator's maps),
                              log.txt and monitor.parquet (t_s, gpu_mb, cpu_cores, cpu_pct, rss_mb)
    annotation/               the annotator's tables (priority.csv, review_queue.csv, ...)
    report.html               the leaderboard
    ranking/                  `harness rank`'s tables (leaderboard.csv, bootstrap_ranks.csv, ...)
    .work/                    scratch space of runs in flight (removed as each run ends)

Every module that reads or writes a results folder asks a `ResultsLayout` for the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STORE_FILE = "store.sqlite"
LOCK_FILE = ".lock"
RUNS_DIR = "runs"
ANNOTATION_DIR = "annotation"
RANKING_DIR = "ranking"  # `harness rank`'s tables
REPORT_FILE = "report.html"
WORK_DIR = ".work"
LOG_FILE = "log.txt"
MONITOR_FILE = "monitor.parquet"
PROBABILITY_DIR = "probabilities"  # as in the container contract's /output/probabilities/
ANNOTATION_TABLES = ("priority", "review_queue", "error_detection", "error_detection_cases", "priority_check",
                     "error_by_size")


def default_cache_dir() -> Path:
    """The harness's cache (phantoms, wheels, fetched tools): $HARNESS_CACHE or ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))


@dataclass(frozen=True)
class ResultsLayout:
    """Paths of one results folder (nothing is created by asking)."""

    root: Path

    @classmethod
    def of(cls, path: Path | str) -> ResultsLayout:
        """The layout of a results folder, given the folder or its store file."""
        folder = Path(path)
        if folder.name == STORE_FILE and folder.is_file():
            folder = folder.parent
        return cls(folder)

    @property
    def owner_label(self) -> str:
        """What the containers of runs into this folder are labelled with (`harness.results`): a
        process holding the folder's lock removes the ones left by a process that died."""
        import hashlib

        return hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:24]

    @property
    def store_file(self) -> Path:
        return self.root / STORE_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_DIR

    def algorithm_dir(self, algorithm: str) -> Path:
        return self.runs_dir / algorithm

    def run_dir(self, algorithm: str, case_id: str) -> Path:
        return self.runs_dir / algorithm / case_id

    def label_map(self, algorithm: str, case_id: str) -> Path:
        """The kept label map of a run (`<case>.nii.gz`, as the algorithm wrote it)."""
        return self.run_dir(algorithm, case_id) / f"{case_id}.nii.gz"

    def probabilities_dir(self, algorithm: str, case_id: str) -> Path:
        return self.run_dir(algorithm, case_id) / PROBABILITY_DIR

    def log_file(self, algorithm: str, case_id: str) -> Path:
        return self.run_dir(algorithm, case_id) / LOG_FILE

    def monitor_file(self, algorithm: str, case_id: str) -> Path:
        return self.run_dir(algorithm, case_id) / MONITOR_FILE

    @property
    def annotation_dir(self) -> Path:
        return self.root / ANNOTATION_DIR

    def annotation_table(self, name: str) -> Path:
        if name not in ANNOTATION_TABLES:
            raise KeyError(name)
        return self.annotation_dir / f"{name}.csv"

    @property
    def ranking_dir(self) -> Path:
        return self.root / RANKING_DIR

    @property
    def report_file(self) -> Path:
        return self.root / REPORT_FILE

    @property
    def work_dir(self) -> Path:
        return self.root / WORK_DIR

    def replace_run_files(self, algorithm: str, case_id: str, files: dict[str, bytes]) -> Path:
        """Make `runs/<alg>/<case>/` hold exactly `files` (relative path -> content); returns it."""
        folder = self.run_dir(algorithm, case_id)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for rel, content in files.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return folder

    def remove_run(self, algorithm: str, case_id: str) -> None:
        shutil.rmtree(self.run_dir(algorithm, case_id), ignore_errors=True)

    def remove_algorithm(self, algorithm: str) -> None:
        """Delete every kept file of `algorithm`."""
        shutil.rmtree(self.algorithm_dir(algorithm), ignore_errors=True)

    @contextmanager
    def replacing_annotation(self) -> Iterator[Path]:
        """Write the annotation tables into a fresh folder; only when the block succeeds does it
        replace `annotation/` (the previous tables, or none, are left on failure, never a mix)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{ANNOTATION_DIR}-new-", dir=self.root))
        try:
            yield fresh
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        old = self.root / f".{ANNOTATION_DIR}-old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        if self.annotation_dir.exists():
            os.rename(self.annotation_dir, old)
        os.rename(fresh, self.annotation_dir)
        shutil.rmtree(old, ignore_errors=True)

    def remove_annotation(self) -> None:
        shutil.rmtree(self.annotation_dir, ignore_errors=True)
