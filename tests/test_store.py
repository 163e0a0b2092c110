"""The results store: atomic per-case records, provenance keys, schema and lock checks, and the
tidy table it gives the ranking."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from harness.cli import main
from harness.models import OrganScore
from harness.ranking.io import load_scores
from harness.store import SCHEMA_VERSION, Provenance, RunRecord, Store, StoreError


def _record(store: Store, algorithm: str, case: str, status: str, dsc: float, elapsed: float = 10.0) -> None:
    prov = Provenance(image_digest=f"sha256:{algorithm}", manifest_sha256="m", case_sha256=case, profile="flare22", runner="docker")
    run = RunRecord(algorithm, case, "segmenter", status, 0 if status == "ok" else 1, "", elapsed, elapsed + 1, 0.0, 1.0, "log",
                    prov)
    scores = [] if status != "ok" else [
        OrganScore(case, organ, label, dsc, dsc, 1.0) for label, organ in ((1, "liver"), (2, "right_kidney"))
    ]
    store.record(run, scores, {"auc_cpu_pct_s": 5.0 * elapsed, "peak_rss_mb": 100.0})


def _fill(folder: Path) -> None:
    with Store.open(folder) as store:
        for i, case in enumerate(["c1", "c2", "c3", "c4"]):
            _record(store, "good", case, "ok", 0.9 + 0.01 * i, elapsed=5.0)
            _record(store, "fair", case, "ok", 0.8 + 0.01 * i, elapsed=20.0)
            _record(store, "flaky", case, "ok" if i else "timeout", 0.95, elapsed=8.0)


def test_record_replaces_the_whole_case_atomically(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        _record(store, "good", "c1", "crashed", math.nan)  # the re-run failed: its old scores go too
        runs, scores = store.runs(), store.scores()
        assert store.integrity_ok()
    assert len(runs) == 12 and not runs.duplicated(["algorithm", "case_id"]).any()
    assert runs.set_index(["algorithm", "case_id"]).loc[("good", "c1")].status == "crashed"
    assert scores[(scores.algorithm == "good") & (scores.case_id == "c1")].empty
    assert len(scores) == 2 * (12 - 2)


def test_valid_keys_carry_provenance(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        keys = store.valid_keys()
    assert keys[("good", "c2")] == ("sha256:good", "m", "c2", "flare22", "docker")


def test_store_feeds_the_ranking_with_failures_as_statuses(tmp_path: Path, capsys) -> None:
    _fill(tmp_path)
    tidy = load_scores(tmp_path)
    assert set(tidy.metric) == {"dsc", "nsd", "time_s", "auc_cpu_pct_s", "peak_rss_mb"}
    good_c3 = tidy[(tidy.algorithm == "good") & (tidy.case == "c3")].set_index("metric").value
    assert good_c3["dsc"] == pytest.approx(0.92) and good_c3["time_s"] == 5.0
    assert set(tidy[(tidy.algorithm == "flaky") & (tidy.case == "c1")].status) == {"timeout"}
    with pytest.raises(SystemExit) as code:
        main(["rank", "--results", str(tmp_path), "--draws", "50"])
    out = capsys.readouterr().out
    assert code.value.code == 0
    lines = [line for line in out.splitlines() if line.strip().startswith(("1", "2", "3"))]
    assert lines and "good" in lines[0]  # the fast, accurate one wins; the timeout costs flaky
    assert (tmp_path / "ranking" / "leaderboard.csv").is_file()


def test_second_process_on_the_same_results_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "results"):
        with pytest.raises(StoreError, match=r"results: in use by another harness process \(pid \d+\); wait for it"):
            Store.open(tmp_path / "results")
    Store.open(tmp_path / "results").close()  # free again once the first one is closed


def test_schema_version_mismatch_says_what_to_do(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=r"store\.sqlite: schema version 2 is newer than this harness \(1\); upgrade harness"):
        Store.open(tmp_path)
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"schema version 0 is older than this harness \(1\); rerun into a new --results"):
        Store.open(tmp_path)


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match=r"store\.sqlite: not a results store .*choose another --results"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match=r"no results store \(store\.sqlite\); run `harness run`"):
        Store.open(tmp_path / "empty", create=False)
