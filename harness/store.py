"""The results store: one SQLite file (WAL), the single source of truth of a results folder.

One row per (algorithm, case) run with its status, timings and provenance, its per-organ scores
(and the profile's extra metrics per organ, in `extra_scores`) and its named measurements, all
written in one transaction when the case finishes: an interrupted run loses at most the case in
flight, never leaves half a case, and resumes where it stopped.

Provenance has two keys. The *run key* (image digest, manifest, input data, runner) says whether
the run itself is still valid: when it changes, the case runs again. The *score key* (ground-truth
label, profile content, scoring-code version) says whether its scores are: when only it changes,
the kept outputs are scored again without running anything.

A results folder belongs to one data set and one challenge configuration (`FolderIdentity`, in
the `meta` table): writing another into it is refused. Its file layout is `harness.layout`'s.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.errors import ExitStatus, HarnessError
from harness.layout import STORE_FILE, ResultsLayout
from harness.models import CaseStatus, Kind, OrganScore, RunStatus
from harness.safetext import safe_block, safe_text

__all__ = ["SCHEMA_VERSION", "STORE_FILE", "FolderIdentity", "Provenance", "RunRecord", "Store", "StoreError", "StoredRun",
           "read_store_organ_scores", "read_store_scores", "tidy_organ_scores", "tidy_scores"]

SCHEMA_VERSION = 3  # 3: extra_scores (a profile's extra metrics per organ); a version-2 store is migrated


class StoreError(HarnessError):
    """The results folder cannot be used (locked, newer/older schema, not a store)."""

    exit_status = ExitStatus.DATA_ERROR


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: `run_key()` decides whether the run is still valid, `score_key()`
    whether its scores are; the rest describes where it ran."""

    image_digest: str
    manifest_sha256: str
    input_sha256: str  # the case's image (and an annotator's staged segmenter outputs)
    runner: str
    label_sha256: str = ""  # the ground truth it was scored against ("" = none)
    profile: str = ""  # the scoring profile's name
    profile_sha256: str = ""  # its content (`Profile.content_sha256`)
    scoring_version: str = ""  # `harness.scoring.SCORING_VERSION` when it was scored
    harness_version: str = __version__
    host: str = ""
    cpu: str = ""
    gpu: str = ""
    driver: str = ""
    worker: str = ""  # the Dask worker that ran it ("local" in this process)

    def run_key(self) -> tuple[str, str, str, str]:
        return (self.image_digest, self.manifest_sha256, self.input_sha256, self.runner)

    def score_key(self) -> tuple[str, str, str]:
        return (self.label_sha256, self.profile_sha256, self.scoring_version)


_RUN_KEY = ("image_digest", "manifest_sha256", "input_sha256", "runner")
_SCORE_KEY = ("label_sha256", "profile_sha256", "scoring_version")


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
    score_status: str = ""  # a CaseStatus once scored ("" = not scored: failed run, or no ground truth)
    score_message: str = ""


@dataclass(frozen=True)
class StoredRun:
    """What planning needs of a stored row."""

    algorithm: str
    case_id: str
    kind: str
    status: str
    score_status: str
    run_key: tuple[str, ...]
    score_key: tuple[str, ...]


@dataclass(frozen=True)
class FolderIdentity:
    """The data set and challenge configuration a results folder belongs to.

    `dataset_id` hashes the case ids and their *images*: a fixed ground-truth label is the same
    data set (its rows are rescored), another image set is not. The profile *sources* name the
    configuration; a change of their content makes scores stale (rescored), not the folder foreign."""

    dataset_id: str
    dataset_root: str
    dataset_cases: int
    challenge: str
    profile: str  # the segmenters' scoring profile: built-in name or absolute path
    annotation_profile: str
    challenge_source: str = "built-in"  # the challenge file (its limits are read from it again), or built-in

    def describe_data(self) -> str:
        return f"{self.dataset_root} ({self.dataset_cases} cases, id {self.dataset_id[:12]})"

    def describe_config(self) -> str:
        return f"challenge {self.challenge} (profile {self.profile}, annotation profile {self.annotation_profile})"


_EXTRA_SCORES = """CREATE TABLE IF NOT EXISTS extra_scores (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, organ TEXT NOT NULL, name TEXT NOT NULL, value REAL,
    PRIMARY KEY (algorithm, case_id, organ, name))"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    exit_code INTEGER, message TEXT NOT NULL, elapsed_s REAL, wall_s REAL, started_at REAL, ended_at REAL,
    log_tail TEXT NOT NULL, details TEXT NOT NULL, score_status TEXT NOT NULL, score_message TEXT NOT NULL,
    {", ".join(f"{f.name} TEXT NOT NULL" for f in fields(Provenance))},
    PRIMARY KEY (algorithm, case_id));
CREATE TABLE IF NOT EXISTS scores (
    algorithm TEXT NOT NULL, case_id TEXT NOT NULL, organ TEXT NOT NULL, label INTEGER NOT NULL,
    dsc REAL, nsd REAL, hd95_mm REAL, status TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (algorithm, case_id, organ));
{_EXTRA_SCORES};
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
        self.layout = ResultsLayout(folder)
        self.conn = conn
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, folder: Path, *, lock: bool = True, create: bool = True) -> Store:
        folder = ResultsLayout.of(folder).root
        path = ResultsLayout(folder).store_file
        if not create and not path.is_file():
            raise StoreError(f"{folder}: no results store ({STORE_FILE}); run `harness run` with --results {folder} first")
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"{folder}: is a file, not a results folder; pass a folder with --results")
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
            for table in ("runs", "scores", "extra_scores", "measurements"):
                db.execute(f"DELETE FROM {table} WHERE algorithm = ? AND case_id = ?", (run.algorithm, run.case_id))
            columns = ["algorithm", "case_id", "kind", "status", "exit_code", "message", "elapsed_s", "wall_s", "started_at",
                       "ended_at", "log_tail", "details", "score_status", "score_message", *prov]
            # Whatever an algorithm wrote (messages, logs, names in details) is made safe text first.
            values = [run.algorithm, run.case_id, str(run.kind), str(run.status), run.exit_code, safe_text(run.message),
                      _real(run.elapsed_s), _real(run.wall_s), run.started_at, run.ended_at, safe_block(run.log_tail),
                      safe_block(json.dumps(run.details, sort_keys=True, default=str)), str(run.score_status),
                      safe_text(run.score_message), *prov.values()]
            db.execute(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
            _insert_scores(db, run.algorithm, run.case_id, scores)
            db.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?)",
                [(run.algorithm, run.case_id, name, _real(value)) for name, value in (measurements or {}).items()],
            )

    def rescore(self, algorithm: str, case_id: str, provenance: Provenance, scores: Iterable[OrganScore], *,
                score_status: str, score_message: str = "", status: str | None = None, message: str | None = None) -> None:
        """Replace the scores and the scoring provenance of a stored run (its measurements, timings and
        run provenance stay), atomically; `status`/`message` change the run's status too (a kept
        output that a new profile rejects becomes invalid_output)."""
        sets = {name: getattr(provenance, name) for name in ("label_sha256", "profile", "profile_sha256", "scoring_version",
                                                              "harness_version")}
        sets.update(score_status=str(score_status), score_message=safe_text(score_message))
        if status is not None:
            sets["status"] = str(status)
        if message is not None:
            sets["message"] = safe_text(message)
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in sets)} WHERE algorithm = ? AND case_id = ?",
                                (*sets.values(), algorithm, case_id))
            if cursor.rowcount != 1:
                raise StoreError(f"{self.folder}: no stored run of {algorithm} on {case_id} to rescore")
            for table in ("scores", "extra_scores"):
                db.execute(f"DELETE FROM {table} WHERE algorithm = ? AND case_id = ?", (algorithm, case_id))
            _insert_scores(db, algorithm, case_id, scores)

    def stored(self) -> dict[tuple[str, str], StoredRun]:
        """(algorithm, case) -> what planning needs of its stored row."""
        columns = ["algorithm", "case_id", "kind", "status", "score_status", *_RUN_KEY, *_SCORE_KEY]
        rows = self.conn.execute(f"SELECT {', '.join(columns)} FROM runs")
        return {(r[0], r[1]): StoredRun(r[0], r[1], r[2], r[3], r[4], tuple(r[5:9]), tuple(r[9:12])) for r in rows}

    def algorithms(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT algorithm FROM runs ORDER BY algorithm")]

    def forget(self, algorithm: str, case_id: str | None = None) -> int:
        """Remove every row of `algorithm` (of its run on `case_id` only, when given) and the kept
        files; returns how many runs were removed."""
        where, args = ("algorithm = ?", (algorithm,)) if case_id is None else ("algorithm = ? AND case_id = ?",
                                                                              (algorithm, case_id))
        with self._transaction() as db:
            count = int(db.execute(f"SELECT count(*) FROM runs WHERE {where}", args).fetchone()[0])
            for table in ("runs", "scores", "extra_scores", "measurements"):
                db.execute(f"DELETE FROM {table} WHERE {where}", args)
        if case_id is None:
            self.layout.remove_algorithm(algorithm)
        else:
            self.layout.remove_run(algorithm, case_id)
        return count

    def identity(self) -> FolderIdentity | None:
        """The data set and configuration this folder belongs to (None while it holds nothing)."""
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if "dataset_id" not in meta:
            return None
        return FolderIdentity(meta["dataset_id"], meta["dataset_root"], int(meta["dataset_cases"]), meta["challenge"],
                              meta["profile"], meta["annotation_profile"], meta.get("challenge_source", "built-in"))

    def set_identity(self, identity: FolderIdentity) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in asdict(identity).items()])

    def bind(self, identity: FolderIdentity, *, data_option: str = "--data") -> None:
        """Claim an empty folder for `identity`, or check that it already belongs to it.

        Raises StoreError naming both data sets (or both configurations) and the fix."""
        held = self.identity()
        if held is None:
            if self.conn.execute("SELECT count(*) FROM runs").fetchone()[0]:
                raise StoreError(f"{self.folder}: holds runs of an unknown data set; use a new --results folder")
            self.set_identity(identity)
            return
        if held.dataset_id != identity.dataset_id:
            raise StoreError(
                f"{self.folder}: holds results of data set {held.describe_data()}, not of {data_option} "
                f"{identity.describe_data()}; use a new --results folder (a results folder belongs to one data set)")
        if (held.challenge, held.profile, held.annotation_profile) != (
                identity.challenge, identity.profile, identity.annotation_profile):
            raise StoreError(
                f"{self.folder}: was evaluated under {held.describe_config()}, not {identity.describe_config()}; "
                f"use a new --results folder, or `harness rescore --results {self.folder} --profile {identity.profile}` "
                "to rescore it under the new profile first")
        if held != identity:  # the same data moved, or the caps' file: remember it as it is now
            self.set_identity(identity)

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY algorithm, case_id", self.conn)

    def scores(self) -> pd.DataFrame:
        """One row per (algorithm, case, organ): DSC, NSD, HD95, the organ's and the run's status, then
        one column per extra metric stored (a profile's lesion-wise, false-volume or panoptic metrics,
        in the order first stored; NaN where a row has none)."""
        frame = pd.read_sql_query(
            "SELECT s.algorithm, s.case_id, s.organ, s.label, s.dsc, s.nsd, s.hd95_mm, s.status AS organ_status, "
            "s.message AS organ_message, r.status FROM scores s JOIN runs r USING (algorithm, case_id) "
            "ORDER BY algorithm, case_id, label",
            self.conn,
        )
        extra = pd.read_sql_query("SELECT algorithm, case_id, organ, name, value FROM extra_scores ORDER BY rowid",
                                  self.conn)
        if extra.empty:
            return frame
        names = list(dict.fromkeys(extra["name"]))
        wide = extra.pivot(index=["algorithm", "case_id", "organ"], columns="name", values="value")[names]
        wide.columns.name = None
        return frame.merge(wide.astype(float).reset_index(), on=["algorithm", "case_id", "organ"], how="left")

    def measurements(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM measurements ORDER BY algorithm, case_id, name", self.conn)

    def case_means(self, measurements: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """What `tidy_scores` needs, aggregated here: (every run's row without its log, details and
        host; per (algorithm, case) the mean DSC and NSD over organs, as `tidy_scores` would take
        them; the named measurements). A leaderboard redrawn on every submission reads these
        instead of every organ's row."""
        runs = pd.read_sql_query(
            "SELECT algorithm, case_id, kind, status, score_status, score_message, elapsed_s, ended_at, label_sha256, "
            "profile_sha256, scoring_version, image_digest, manifest_sha256 FROM runs ORDER BY algorithm, case_id",
            self.conn)
        means = pd.read_sql_query("SELECT algorithm, case_id, AVG(dsc) AS dsc, AVG(nsd) AS nsd FROM scores "
                                  "GROUP BY algorithm, case_id ORDER BY algorithm, case_id", self.conn)
        marks = ", ".join("?" for _ in measurements) or "NULL"
        extra = pd.read_sql_query(f"SELECT * FROM measurements WHERE name IN ({marks}) ORDER BY algorithm, case_id, name",
                                  self.conn, params=list(measurements))
        return runs, means, extra

    def rows_of(self, algorithms: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(runs, scores) of `algorithms` only, as `runs()` and `scores()` give them."""
        marks = ", ".join("?" for _ in algorithms) or "NULL"
        runs = pd.read_sql_query(f"SELECT * FROM runs WHERE algorithm IN ({marks}) ORDER BY algorithm, case_id", self.conn,
                                 params=list(algorithms))
        scores = pd.read_sql_query(
            "SELECT s.algorithm, s.case_id, s.organ, s.label, s.dsc, s.nsd, s.hd95_mm, s.status AS organ_status, "
            "s.message AS organ_message, r.status FROM scores s JOIN runs r USING (algorithm, case_id) "
            f"WHERE s.algorithm IN ({marks}) ORDER BY algorithm, case_id, label", self.conn, params=list(algorithms))
        return runs, scores

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _insert_scores(db: sqlite3.Connection, algorithm: str, case_id: str, scores: Iterable[OrganScore]) -> None:
    scores = list(scores)
    db.executemany(
        "INSERT INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(algorithm, case_id, s.organ, s.label, _real(s.dsc), _real(s.nsd), _real(s.hd95_mm), str(s.status),
          safe_text(s.message)) for s in scores],
    )
    db.executemany("INSERT INTO extra_scores VALUES (?, ?, ?, ?, ?)",
                   [(algorithm, case_id, s.organ, name, _real(value)) for s in scores for name, value in s.extra])


def _acquire_lock(folder: Path) -> int:
    fd = os.open(ResultsLayout(folder).lock_file, os.O_RDWR | os.O_CREAT, 0o644)
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
    if version == 2:  # 2 -> 3 adds the extra_scores table; its stored scores stay (rescored when their key is stale)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_EXTRA_SCORES)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return
    if version < SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is older than this harness ({SCHEMA_VERSION}); "
                         "rerun into a new --results folder (or `harness run --rerun`) to rebuild it")


_SCORE_COLUMNS = ("algorithm", "case_id", "organ", "label", "dsc", "nsd", "hd95_mm", "organ_status", "organ_message",
                  "status")  # `Store.scores()` columns; any other is an extra metric


def read_store_scores(folder: Path) -> pd.DataFrame:
    """Tidy per-(algorithm, case, metric) table for ranking: case DSC/NSD = mean over organs,
    time_s = the run's elapsed time, every stored extra metric of the profile (lesion-wise,
    false-volume, panoptic: mean over organs or regions, as DSC, and each organ's or region's own as
    `<metric>@<organ>`, e.g. `lesion_dice@enhancing_tumor`), plus every stored measurement; `status`
    from the run.

    A case whose ground truth could not be scored (a stored `score_status` other than ok on a run
    that was ok: unreadable or invalid label, grid mismatch, no label) is left out for every
    algorithm: it says nothing about them."""
    with Store.open(folder, lock=False, create=False) as store:
        runs = store.runs()
        scores = store.scores()
        extra = store.measurements()
    return tidy_scores(folder, runs, scores, extra)


def read_store_organ_scores(folder: Path) -> pd.DataFrame:
    """`tidy_organ_scores` of the store of `folder`."""
    with Store.open(folder, lock=False, create=False) as store:
        return tidy_organ_scores(store.runs(), store.scores())


def tidy_scores(folder: Path, runs: pd.DataFrame, scores: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """`read_store_scores` of tables already read from the store of `folder` (named in errors)."""
    runs = runs[runs["kind"] == Kind.SEGMENTER]
    if runs.empty:
        raise StoreError(f"{folder}: the store holds no segmenter runs; run `harness run` first")
    runs = runs[~runs["case_id"].isin(set(unscorable_cases(runs)))]
    if runs.empty:
        raise StoreError(f"{folder}: no case could be scored (see each run's score_status); fix the ground truth and "
                         f"`harness rescore --results {folder}`")
    extra_metrics = [c for c in scores.columns if c not in _SCORE_COLUMNS]
    per_case = scores.groupby(["algorithm", "case_id"])[["dsc", "nsd", *extra_metrics]].mean()
    frames = []
    base = runs.set_index(["algorithm", "case_id"])[["status", "elapsed_s"]]
    joined = base.join(per_case, how="left")
    if extra_metrics:  # each organ's or region's own value too, as `<metric>@<organ>` (BraTS ranks each region's)
        per_organ = scores.set_index(["algorithm", "case_id", "organ"])[extra_metrics].unstack("organ")
        per_organ.columns = [f"{metric}@{organ}" for metric, organ in per_organ.columns]
        joined = joined.join(per_organ, how="left")
        extra_metrics += list(per_organ.columns)
    for metric, column in (("dsc", "dsc"), ("nsd", "nsd"), ("time_s", "elapsed_s"), *((m, m) for m in extra_metrics)):
        part = joined[["status", column]].rename(columns={column: "value"}).reset_index()
        part["metric"] = metric
        frames.append(part)
    if not extra.empty:
        extra = extra.merge(runs[["algorithm", "case_id", "status"]], on=["algorithm", "case_id"], how="inner")
        frames.append(extra.rename(columns={"name": "metric"}))
    tidy = pd.concat(frames, ignore_index=True).rename(columns={"case_id": "case"})
    return tidy[["algorithm", "case", "metric", "value", "status"]]


ORGAN_METRICS = ("dsc", "nsd")  # the per-organ scores a ranking may rank organ by organ (tasks)


def tidy_organ_scores(runs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Tidy per-(algorithm, case, organ, metric) table of the organ scores (DSC, NSD, then the
    profile's extra metrics stored per organ or region, for the report's per-organ tables) for ranking
    each organ as a task: every segmenter run has a row per scored organ (NaN where the run left
    none, e.g. a failed run; the ranking gives failures their value), `status` from the run. The
    cases `tidy_scores` leaves out are left out here too. Rows in organ order (label, then name),
    so `pd.unique(table["organ"])` is the organs' order. Columns algorithm, case, organ, metric,
    value, status; no rows when nothing was scored."""
    columns = ["algorithm", "case", "organ", "metric", "value", "status"]
    runs = runs[runs["kind"] == Kind.SEGMENTER]
    runs = runs[~runs["case_id"].isin(set(unscorable_cases(runs)))]
    if runs.empty or scores.empty:
        return pd.DataFrame(columns=columns)
    pairs = scores[["label", "organ"]].drop_duplicates().sort_values(["label", "organ"], kind="stable")
    organs = list(dict.fromkeys(str(o) for o in pairs["organ"]))
    grid = runs[["algorithm", "case_id", "status"]].merge(pd.DataFrame({"organ": organs}), how="cross")
    extra = [str(c) for c in scores.columns if c not in _SCORE_COLUMNS]  # the profile's extra metrics, per organ
    got = scores[["algorithm", "case_id", "organ", *ORGAN_METRICS, *extra]].astype({"organ": str})
    grid = grid.merge(got, on=["algorithm", "case_id", "organ"], how="left")
    tidy = grid.melt(id_vars=["algorithm", "case_id", "organ", "status"], value_vars=[*ORGAN_METRICS, *extra],
                     var_name="metric", value_name="value").rename(columns={"case_id": "case"})
    tidy["value"] = tidy["value"].astype(float)
    tidy["_order"] = tidy["organ"].map({o: k for k, o in enumerate(organs)})
    tidy = tidy.sort_values(["_order", "metric", "algorithm", "case"], kind="stable")
    return tidy[columns].reset_index(drop=True)


def unscorable_cases(runs: pd.DataFrame) -> dict[str, str]:
    """case -> the reason its ground truth could not be scored, from a `Store.runs()` table."""
    bad = runs[(runs["kind"] == Kind.SEGMENTER) & (runs["status"] == RunStatus.OK) & (runs["score_status"] != CaseStatus.OK)]
    return {str(r.case_id): f"{r.score_status}: {r.score_message}" for r in bad.drop_duplicates("case_id").itertuples()}
