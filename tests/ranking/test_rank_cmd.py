"""`harness rank` end to end on small CSV and parquet tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli, main
from harness.errors import DataError, ExitStatus, SpecError
from harness.ranking import load_ranking_config
from harness.ranking.io import load_scores

EXPECTED_FILES = {
    "leaderboard.csv", "bootstrap_ranks.csv", "tau.csv", "tau_summary.csv", "per_case_ranks.csv", "method_ranks.csv",
    "significance_dsc.csv", "significance_nsd.csv", "significance_time_s.csv",
    "significance_auc_gpu_mb_s.csv", "significance_auc_cpu_pct_s.csv",
}


@pytest.fixture()
def scores_csv(tmp_path: Path, make_flare_table) -> Path:
    table = make_flare_table(4, 10, seed=2)
    table.loc[(table["algorithm"] == "alg1") & (table["case"] == "case03"), "status"] = "timeout"
    table = table[~((table["algorithm"] == "alg2") & (table["case"] == "case05"))]
    path = tmp_path / "scores.csv"
    table.to_csv(path, index=False)
    return path


def test_rank_prints_leaderboard_and_writes_tables(tmp_path: Path, scores_csv: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["rank", "--results", str(scores_csv), "--out", str(out), "--seed", "7",
              "--draws", "200"],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    assert result.return_value == ExitStatus.OK
    text = result.output
    assert "Ranking flare22: 4 algorithms x 10 cases" in text
    assert "Bootstrap: textbook, 200 draws, seed 7" in text
    assert "95% rank CI" in text and "Kendall's tau vs the full ranking" in text
    assert "0 of 200 draws dropped" in text

    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns[:5]) == ["rank", "algorithm", "score", "rank_lo", "rank_hi"]
    assert board.set_index("algorithm").loc["alg1", "n_failed"] == 1
    assert board.set_index("algorithm").loc["alg2", "n_missing"] == 5
    for alg in board["algorithm"]:
        assert alg in text
    boot = pd.read_csv(out / "bootstrap_ranks.csv")
    assert len(boot) == 200 * 4 and boot["draw"].max() == 200
    assert len(pd.read_csv(out / "tau.csv")) == 200
    summary = pd.read_csv(out / "tau_summary.csv")
    assert summary.loc[0, "variant"] == "textbook" and summary.loc[0, "seed"] == 7
    sig = pd.read_csv(out / "significance_dsc.csv", index_col=0)
    assert list(sig.index) == list(sig.columns) == ["alg0", "alg1", "alg2", "alg3"]
    per_case = pd.read_csv(out / "per_case_ranks.csv")
    timeout = per_case[(per_case["algorithm"] == "alg1") & (per_case["case"] == "case03")]
    assert set(timeout["status"]) == {"timeout"}
    assert timeout.set_index("metric").loc["time_s", "value"] == 3600.0


def test_rank_folder_default_out_parquet_and_challenger_variant(tmp_path: Path, scores_csv):
    folder = tmp_path / "run"
    folder.mkdir()
    pd.read_csv(scores_csv).to_parquet(folder / "scores.parquet")
    result = CliRunner().invoke(
        cli, ["rank", "--results", str(folder), "--draws", "50", "--bootstrap", "challengeR"],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    assert "Bootstrap: challengeR, 50 draws, seed 0" in result.output
    assert {p.name for p in (folder / "ranking").iterdir()} == EXPECTED_FILES


def test_rank_with_config_file(tmp_path: Path):
    config = tmp_path / "two.toml"
    config.write_text(
        'name = "two"\ndraws = 20\n'
        "[metrics.dsc]\nlarger_is_better = true\n"
        "[metrics.hd95_mm]\nlarger_is_better = false\nweight = 0.5\n"
    )
    tidy = pd.DataFrame(
        [(a, f"c{c}", m, v) for a, base in (("A", 0.9), ("B", 0.8)) for c in range(5)
         for m, v in (("dsc", base - c / 100), ("hd95_mm", 10 * (1 - base)))],
        columns=["algorithm", "case", "metric", "value"],
    )
    path = tmp_path / "tidy.csv"
    tidy.to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["rank", "--results", str(path), "--config", str(config)],
                                standalone_mode=False)
    assert result.exception is None, result.output
    assert "Ranking two: 2 algorithms x 5 cases" in result.output
    assert "dsc x1, hd95_mm x0.5" in result.output
    board = pd.read_csv(tmp_path / "ranking" / "leaderboard.csv")
    assert board["algorithm"].tolist() == ["A", "B"]
    assert load_ranking_config(config).n_draws == 20


def test_unknown_metric_is_one_line_data_error(tmp_path: Path, scores_csv: Path, capsys):
    table = pd.read_csv(scores_csv).rename(columns={"nsd": "nsd_1mm"})
    table.to_csv(scores_csv, index=False)
    result = CliRunner().invoke(cli, ["rank", "--results", str(scores_csv)],
                                standalone_mode=False)
    assert isinstance(result.exception, DataError)
    assert str(result.exception).startswith(f"{scores_csv}: metric 'nsd_1mm' is not in ranking")

    with pytest.raises(SystemExit) as exit_info:
        main(["rank", "--results", str(scores_csv)])
    assert exit_info.value.code == ExitStatus.DATA_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "harness: error:" in err and "metric 'nsd_1mm'" in err and "--config" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("algorithm,case,dsc\nA,c1,0.9\nB,c1,n/a-ish\n",
         "column 'dsc' has non-numeric value 'n/a-ish' in data row 2"),
        ("algorithm,dsc\nA,0.9\n", "column 'case' is missing"),
        ("algorithm,case,metric,value\n", "has no rows"),
    ],
)
def test_bad_input_files(tmp_path: Path, content: str, message: str):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_scores(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_results_and_bad_config(tmp_path: Path, scores_csv: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rank", "--results", str(tmp_path / "empty_dir_does_not_exist")])
    assert exit_info.value.code == ExitStatus.DATA_ERROR
    assert "no such file or folder" in capsys.readouterr().err

    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"no store\.sqlite or scores\.parquet or scores\.csv in this folder"):
        load_scores(tmp_path / "folder")

    bad = tmp_path / "bad.toml"
    bad.write_text("[metrics.dsc]\nweight = 1\n")
    result = CliRunner().invoke(cli, ["rank", "--results", str(scores_csv), "--config", str(bad)],
                                standalone_mode=False)
    assert isinstance(result.exception, SpecError)
    assert "larger_is_better is missing" in str(result.exception)


def test_help_documents_the_files():
    result = CliRunner().invoke(cli, ["rank", "--help"])
    assert result.exit_code == 0
    for name in ("leaderboard.csv", "bootstrap_ranks.csv", "tau.csv", "significance_<metric>.csv",
                 "per_case_ranks.csv", "--bootstrap", "challengeR"):
        assert name in result.output


def test_rank_json_of_a_store_holds_each_organ_ranked_as_a_task_with_its_stability(tmp_path: Path):
    """From a results store, `--json` carries the organs ranked as tasks (FLARE: rank-then-aggregate
    per organ, failed runs at DSC 0), the consensus, and each organ's stability; the CSVs too."""
    import json
    import shutil

    import numpy as np
    from scipy.stats import rankdata

    from harness.store import Store

    folder = tmp_path / "results"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "store", folder)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["rank", "--results", str(folder), "--out", str(out), "--json", "--draws", "30",
                                      "--seed", "4"], standalone_mode=False)
    assert result.exception is None, result.output
    document = json.loads(result.stdout)
    tasks = document["tasks"]
    with Store.open(folder, lock=False, create=False) as store:
        runs, scores = store.runs(), store.scores()
    organs = scores.drop_duplicates("organ").sort_values(["label", "organ"])["organ"].tolist()
    assert tasks["metric"] == "dsc" and tasks["method"] == "rank-then-aggregate (mean)" and tasks["organs"] == organs
    algorithms = sorted(set(runs["algorithm"]))
    cases = sorted(set(runs["case_id"]))
    status = {(r.algorithm, r.case_id): r.status for r in runs.itertuples()}
    stored = {(r.algorithm, r.case_id, r.organ): r.dsc for r in scores.itertuples()}
    rows = {row["algorithm"]: row for row in tasks["ranks"]}
    expected_ranks = {}
    for organ in organs:  # independent reference: scipy's ranks of each case, their mean, ranked
        values = np.array([[stored.get((a, c, organ), np.nan) if status[(a, c)] == "ok" else 0.0 for a in algorithms]
                           for c in cases])
        assert not np.isnan(values).any()
        mean_rank = np.vstack([rankdata(-row, method="min") for row in values]).mean(axis=0)
        expected_ranks[organ] = rankdata(mean_rank, method="min")
        assert [rows[a][organ] for a in algorithms] == expected_ranks[organ].tolist(), organ
    mean = np.mean([expected_ranks[o] for o in organs], axis=0)
    assert [rows[a]["mean_rank"] for a in algorithms] == pytest.approx(mean.tolist())
    assert [rows[a]["consensus_rank"] for a in algorithms] == rankdata(mean, method="min").tolist()
    assert [s["task"] for s in tasks["stability"]] == organs
    assert all(s["n_draws"] == 30 for s in tasks["stability"]) and tasks["stability_draws"] == 30
    stability = pd.read_csv(out / "task_stability.csv")
    assert len(stability) == 30 * len(organs)
    liver = stability[stability["task"] == "liver"]["tau"].dropna()
    assert next(s for s in tasks["stability"] if s["task"] == "liver")["median"] == pytest.approx(liver.median())
    assert {"task_ranks.csv", "task_stability.csv"} <= {p.name for p in out.iterdir()}


def test_rank_json_of_a_scores_file_has_no_tasks(tmp_path: Path, scores_csv: Path):
    import json

    result = CliRunner().invoke(cli, ["rank", "--results", str(scores_csv), "--out", str(tmp_path / "o"), "--json",
                                      "--draws", "20"], standalone_mode=False)
    assert result.exception is None, result.output
    assert json.loads(result.stdout)["tasks"] is None
    assert not (tmp_path / "o" / "task_ranks.csv").exists()
