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
from harness.store import SCHEMA_VERSION, FolderIdentity, Provenance, RunRecord, Store, StoreError


def _prov(algorithm: str, case: str, **changes: str) -> Provenance:
    fields = dict(image_digest=f"sha256:{algorithm}", manifest_sha256="m", input_sha256=case, runner="docker",
                  label_sha256=f"label-{case}", profile="flare22", profile_sha256="p", scoring_version="2")
    return Provenance(**{**fields, **changes})


def _record(store: Store, algorithm: str, case: str, status: str, dsc: float, elapsed: float = 10.0,
            score_status: str | None = None) -> None:
    run = RunRecord(algorithm, case, "segmenter", status, 0 if status == "ok" else 1, "", elapsed, elapsed + 1, 0.0, 1.0, "log",
                    _prov(algorithm, case), score_status=score_status if score_status is not None else
                    ("ok" if status == "ok" else ""))
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


def test_stored_rows_carry_their_run_and_score_keys(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        row = store.stored()[("good", "c2")]
    assert row.run_key == ("sha256:good", "m", "c2", "docker") == _prov("good", "c2").run_key()
    assert row.score_key == ("label-c2", "p", "2") == _prov("good", "c2").score_key()
    assert row.status == "ok" and row.score_status == "ok"


def test_rescore_replaces_scores_and_score_provenance_only(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        before = store.runs().set_index(["algorithm", "case_id"]).loc[("good", "c1")]
        new = _prov("good", "c1", profile_sha256="q", scoring_version="3", image_digest="ignored")
        store.rescore("good", "c1", new, [OrganScore("c1", "liver", 1, 0.5, 0.25, 2.0)], score_status="ok")
        after = store.runs().set_index(["algorithm", "case_id"]).loc[("good", "c1")]
        scores = store.scores()
        row = store.stored()[("good", "c1")]
    assert row.score_key == ("label-c1", "q", "3") and row.run_key == _prov("good", "c1").run_key()  # the run is untouched
    assert after.elapsed_s == before.elapsed_s and after.status == "ok"
    mine = scores[(scores.algorithm == "good") & (scores.case_id == "c1")]
    assert mine[["organ", "dsc", "nsd"]].values.tolist() == [["liver", 0.5, 0.25]]


def test_a_case_whose_ground_truth_failed_is_left_out_for_everyone(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        for algorithm in ("good", "fair"):
            _record(store, algorithm, "c2", "ok", math.nan, score_status="invalid_labels")
    tidy = load_scores(tmp_path)
    assert set(tidy.case) == {"c1", "c3", "c4"}  # flaky's c2 went too: the case says nothing about anyone


def _identity(dataset_id: str = "d1", root: str = "/data/a", profile: str = "flare22") -> FolderIdentity:
    return FolderIdentity(dataset_id=dataset_id, dataset_root=root, dataset_cases=4, challenge="flare22", profile=profile,
                          annotation_profile="atlas8")


def test_a_results_folder_belongs_to_one_data_set_and_one_profile(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.bind(_identity())
        store.bind(_identity(root="/data/moved"))  # the same images elsewhere: fine, remembered
        assert store.identity() == _identity(root="/data/moved")
        with pytest.raises(StoreError, match=r"holds results of data set /data/moved \(4 cases, id d1\), not of --data "
                                             r"/data/b .*use a new --results folder"):
            store.bind(_identity(dataset_id="d2", root="/data/b"))
        with pytest.raises(StoreError, match=r"profile flare22.* not challenge flare22 \(profile mine.toml.*harness rescore"):
            store.bind(_identity(profile="mine.toml"))
    _fill(tmp_path / "legacy")  # rows but no identity: of unknown data
    with Store.open(tmp_path / "legacy") as store, pytest.raises(StoreError, match="holds runs of an unknown data set"):
        store.bind(_identity())


def test_forget_removes_rows_and_kept_files(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(tmp_path) as store:
        store.layout.replace_run_files("flaky", "c1", {"log.txt": b"x"})
        assert store.forget("flaky") == 4
        assert store.algorithms() == ["fair", "good"]
        assert not store.layout.algorithm_dir("flaky").exists()
        assert store.scores().algorithm.nunique() == 2


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
    with pytest.raises(StoreError, match=rf"store\.sqlite: schema version {SCHEMA_VERSION + 1} is newer than this harness "
                                         rf"\({SCHEMA_VERSION}\); upgrade harness"):
        Store.open(tmp_path)
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=rf"schema version 0 is older than this harness \({SCHEMA_VERSION}\); rerun into a new"):
        Store.open(tmp_path)


def _lesion_scores(case: str, dice: float) -> list[OrganScore]:
    return [OrganScore(case, "whole_tumor", 0, 0.8, 0.7, 3.0, extra=(("lesion_dice", dice), ("lesion_hd95_mm", 12.5))),
            OrganScore(case, "enhancing_tumor", 3, 0.6, 0.5, 4.0, extra=(("lesion_dice", math.nan), ("lesion_hd95_mm", 374.0)))]


def test_extra_metrics_are_stored_per_organ_and_read_back_as_columns(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        run = RunRecord("seg", "c1", "segmenter", "ok", 0, "", 1.0, 1.0, 0.0, 1.0, "", _prov("seg", "c1"), score_status="ok")
        store.record(run, _lesion_scores("c1", 0.25))
        store.record(RunRecord("seg", "c2", "segmenter", "crashed", 1, "", 1.0, 1.0, 0.0, 1.0, "", _prov("seg", "c2")))
        scores = store.scores()
        assert list(scores.columns[-2:]) == ["lesion_dice", "lesion_hd95_mm"]
        assert scores.set_index("organ")[["lesion_dice", "lesion_hd95_mm"]].fillna(-1).to_dict("index") == {
            "whole_tumor": {"lesion_dice": 0.25, "lesion_hd95_mm": 12.5},
            "enhancing_tumor": {"lesion_dice": -1.0, "lesion_hd95_mm": 374.0}}  # NaN stored as NULL, read as NaN
        store.rescore("seg", "c1", _prov("seg", "c1"), _lesion_scores("c1", 0.5)[:1], score_status="ok")
        assert store.scores()[["organ", "lesion_dice"]].values.tolist() == [["whole_tumor", 0.5]]
        assert store.conn.execute("SELECT count(*) FROM extra_scores").fetchone()[0] == 2  # the old rows went
    tidy = load_scores(tmp_path).set_index(["case", "metric"])
    assert tidy.loc[("c1", "lesion_dice"), "value"] == 0.5 and tidy.loc[("c1", "lesion_hd95_mm"), "value"] == 12.5
    assert math.isnan(tidy.loc[("c2", "lesion_dice"), "value"]) and tidy.loc[("c2", "lesion_dice"), "status"] == "crashed"
    with Store.open(tmp_path) as store:
        store.forget("seg")
        assert store.conn.execute("SELECT count(*) FROM extra_scores").fetchone()[0] == 0


def test_a_version_2_store_is_migrated_keeping_its_runs_and_scores(tmp_path: Path) -> None:
    _fill(tmp_path)
    with sqlite3.connect(tmp_path / "store.sqlite") as db:  # as harness wrote it before schema 3
        db.execute("DROP TABLE extra_scores")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Store.open(tmp_path, lock=False, create=False) as store:
        assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        assert len(store.runs()) == 12 and len(store.scores()) == 2 * 11
        assert list(store.scores().columns)[-1] == "status"  # no extra metric stored yet
        store.record(RunRecord("new", "c1", "segmenter", "ok", 0, "", 1.0, 1.0, 0.0, 1.0, "", _prov("new", "c1"),
                               score_status="ok"), _lesion_scores("c1", 0.75))
        assert store.scores().set_index(["algorithm", "organ"]).loc[("new", "whole_tumor"), "lesion_dice"] == 0.75
    assert SCHEMA_VERSION == 3


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match=r"store\.sqlite: not a results store .*choose another --results"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match=r"no results store \(store\.sqlite\); run `harness run`"):
        Store.open(tmp_path / "empty", create=False)
