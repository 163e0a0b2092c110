"""The results store: one SQLite file (WAL), the single source of truth of a results folder.

One row per (algorithm, case) run with its status, timings and provenance, its per-organ scores
and its named measurements, all written in one transaction when the case finishes: an interrupted
run loses at most the case in flight, never leaves half a case, and resumes where it stopped. A row
whose provenance (image digest, manifest, case data, profile, runner) no longer matches is stale:
it is run again and replaced, never mixed with fresh rows.

Layout of a results folder:
    store.sqlite          runs, scores, measurements, meta (schema version)
    runs/<alg>/<case>/    the accepted outputs of each run, its log (log.txt) and its resource
                          time series (monitor.parquet: t_s, gpu_mb, cpu_cores, cpu_pct, rss_mb)
    .lock                 held by the one harness process using the folder
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.errors import HarnessError
from harness.models import OrganScore

SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"
LOCK_FILE = ".lock"


class StoreError(HarnessError):
    """The results folder cannot be used (locked, newer/older schema, not a store)."""

    from harness.errors import ExitStatus as _ES

    exit_status = _ES.DATA_ERROR


@dataclass(frozen=True)
class Provenance:
    """Where a result came from; the first five fields decide whether a stored row is still valid."""

    image_digest: str
    manifest_sha256: str
    case_sha256: str
    profile: str
    runner: str
    harness_version: str = __version__
    host: str = ""
    cpu: str = ""
    gpu: str = ""
    driver: str = ""
    worker: str = ""  # the Dask worker that ran it ("local" in this process)

    def key(self) -> tuple[str, str, str, str, str]:
        return (self.image_digest, self.manifest_sha256, self.case_sha256, self.profile, self.runner)


@dataclass(frozen=True)
class RunRecord:
    algorithm: str
    case_id: str
    kind: str
    status: str
    exit_code: int | None
    message: str
    elapsed_s: float | None
    wall_s: float | None
    started_at: float | None
    ended_at: float | None
    log_tail: str
    provenance: Provenance
    details: dict[str, object] = field(default_factory=dict)  # JSON: notes such as the GPU memory source


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    exit_code INTEGER, message TEXT NOT NULL, elapsed_s REAL, wall_s REAL, started_at REAL, ended_at REAL,
    log_tail TEXT NOT NULL, details TEXT NOT NULL, {", ".join(f"{f.name} TEXT NOT NULL" for f in fields(Provenance))},
    PRIMARY KEY (algorithm, case_id));
CREATE TABLE IF NOT EXISTS scores (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, organ TEXT NOT NULL, label INTEGER NOT NULL,
    dsc REAL, nsd REAL, hd95_mm REAL, PRIMARY KEY (algorithm, case_id, organ));
CREATE TABLE IF NOT EXISTS measurements (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (algorithm, case_id, name));
"""


def _real(value: float | None) -> float | None:
    """SQLite has no NaN (it stores NULL); infinities are kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


class Store:
    """An open results store. Use `Store.open(folder, lock=True)` as a context manager."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.folder = folder
        self.conn = conn
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, folder: Path, *, lock: bool = True, create: bool = True) -> Store:
        folder = Path(folder)
        path = folder / STORE_FILE
        if not create and not path.is_file():
            raise StoreError(f"{folder}: no results store ({STORE_FILE}); run `harness run` with --results {folder} first")
        folder.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(folder) if lock else None
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            _check_schema(conn, path, create=create)
        except BaseException as exc:
            conn.close()
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{path}: not a results store ({exc}); move it away or choose another --results") from None
            raise
        return cls(folder, conn, lock_fd)

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_dir(self, algorithm: str, case_id: str) -> Path:
        return self.folder / "runs" / algorithm / case_id

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def record(self, run: RunRecord, scores: Iterable[OrganScore] = (), measurements: dict[str, float] | None = None) -> None:
        """Replace the (algorithm, case) row, its scores and measurements, atomically."""
        prov = asdict(run.provenance)
        with self._transaction() as db:
            for table in ("runs", "scores", "measurements"):
                db.execute(f"DELETE FROM {table} WHERE algorithm = ? AND case_id = ?", (run.algorithm, run.case_id))
            columns = ["algorithm", "case_id", "kind", "status", "exit_code", "message", "elapsed_s", "wall_s", "started_at",
                       "ended_at", "log_tail", "details", *prov]
            values = [run.algorithm, run.case_id, run.kind, run.status, run.exit_code, run.message, _real(run.elapsed_s),
                      _real(run.wall_s), run.started_at, run.ended_at, run.log_tail, json.dumps(run.details, sort_keys=True),
                      *prov.values()]
            db.execute(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
            db.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run.algorithm, run.case_id, s.organ, s.label, _real(s.dsc), _real(s.nsd), _real(s.hd95_mm)) for s in scores],
            )
            db.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?)",
                [(run.algorithm, run.case_id, name, _real(value)) for name, value in (measurements or {}).items()],
            )

    def valid_keys(self) -> dict[tuple[str, str], tuple[str, str, str, str, str]]:
        """(algorithm, case) -> provenance key of every stored run (runner errors excluded: retried)."""
        rows = self.conn.execute(
            "SELECT algorithm, case_id, image_digest, manifest_sha256, case_sha256, profile, runner FROM runs "
            "WHERE status NOT IN ('runner_error', 'lost')"
        )
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}  # type: ignore[misc]

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY algorithm, case_id", self.conn)

    def scores(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT s.*, r.status FROM scores s JOIN runs r USING (algorithm, case_id) ORDER BY algorithm, case_id, label",
            self.conn,
        )

    def measurements(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM measurements ORDER BY algorithm, case_id, name", self.conn)

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _acquire_lock(folder: Path) -> int:
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise StoreError(
            f"{folder}: in use by another harness process (pid {holder}); wait for it to finish or pass another --results"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _check_schema(conn: sqlite3.Connection, path: Path, *, create: bool) -> None:
    has_meta = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise sqlite3.DatabaseError("tables without harness metadata")
        if not create:
            raise sqlite3.DatabaseError("empty database")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_by', ?)", (str(SCHEMA_VERSION), __version__))
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this harness ({SCHEMA_VERSION}); "
                         "upgrade harness (pip install -U harness) to read it")
    if version < SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is older than this harness ({SCHEMA_VERSION}); "
                         "rerun into a new --results folder (or `harness run --rerun`) to rebuild it")


def read_store_scores(folder: Path) -> pd.DataFrame:
    """Tidy per-(algorithm, case, metric) table for ranking: case DSC/NSD = mean over organs,
    time_s = the run's elapsed time, plus every stored measurement; `status` from the run."""
    with Store.open(folder, lock=False, create=False) as store:
        runs = store.runs()
        scores = store.scores()
        extra = store.measurements()
    runs = runs[runs["kind"] == "segmenter"]
    if runs.empty:
        raise StoreError(f"{folder}: the store holds no segmenter runs; run `harness run` first")
    per_case = scores.groupby(["algorithm", "case_id"])[["dsc", "nsd"]].mean()
    frames = []
    base = runs.set_index(["algorithm", "case_id"])[["status", "elapsed_s"]]
    joined = base.join(per_case, how="left")
    for metric, column in (("dsc", "dsc"), ("nsd", "nsd"), ("time_s", "elapsed_s")):
        part = joined[["status", column]].rename(columns={column: "value"}).reset_index()
        part["metric"] = metric
        frames.append(part)
    if not extra.empty:
        extra = extra.merge(runs[["algorithm", "case_id", "status"]], on=["algorithm", "case_id"], how="inner")
        frames.append(extra.rename(columns={"name": "metric"}))
    tidy = pd.concat(frames, ignore_index=True).rename(columns={"case_id": "case"})
    return tidy[["algorithm", "case", "metric", "value", "status"]]
