"""Per-case ranks, the FLARE score with failed runs and absent rows, config and table checks."""

from __future__ import annotations

import importlib.resources
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.errors import DataError, SpecError
from harness.ranking import (
    FLARE22_RANKING,
    MetricRule,
    RankingConfig,
    apply_failure_values,
    flare_score,
    load_ranking_config,
    rank_challenge,
    rank_matrices,
    rank_min,
    rank_rows_min,
    to_tidy,
)


def test_rank_min_ties_and_missing():
    assert rank_min([0.5, 0.2, 0.2, 0.9]).tolist() == [3, 1, 1, 4]
    # Missing shares (highest rank present) + 1, not (number present) + 1.
    assert rank_min([1.0, 1.0, 1.0, np.nan, np.nan]).tolist() == [1, 1, 1, 2, 2]
    assert rank_min([np.nan, np.nan]).tolist() == [1, 1]
    assert rank_min([-np.inf, 3.0, np.inf, np.nan]).tolist() == [1, 2, 3, 4]


def test_rank_rows_min_matches_scipy_rows():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(50, 7)).astype(float)
    expected = np.array([stats.rankdata(row, method="min") for row in x])
    np.testing.assert_array_equal(rank_rows_min(x), expected)


FLARE_COLUMNS = ["dsc", "nsd", "time_s", "auc_gpu_mb_s", "auc_cpu_pct_s"]


def _wide(rows):
    return pd.DataFrame(rows, columns=["algorithm", "case", *FLARE_COLUMNS, "status"])


def test_failed_status_enters_with_worst_values_and_input_is_untouched():
    table = _wide([
        ("good", "c1", 0.80, 0.70, 20.0, 1000.0, 100.0, "ok"),
        ("fail", "c1", 0.99, 0.99, 1.0, 1.0, 1.0, "timeout"),  # raw values would win
        ("good", "c2", 0.80, 0.70, 20.0, 1000.0, 100.0, "ok"),
        ("fail", "c2", 0.99, 0.99, 1.0, 1.0, 1.0, "ok"),
    ])
    before = table.copy()
    tidy = to_tidy(table)
    ranked = apply_failure_values(tidy, FLARE22_RANKING)
    pd.testing.assert_frame_equal(table, before)
    failed = ranked[(ranked["algorithm"] == "fail") & (ranked["case"] == "c1")]
    worst = failed.set_index("metric")["value"].to_dict()
    assert worst == {"dsc": 0.0, "nsd": 0.0, "time_s": 3600.0, "auc_gpu_mb_s": 29491200.0,
                     "auc_cpu_pct_s": 360000.0}
    raw_dsc = (tidy["algorithm"] == "fail") & (tidy["case"] == "c1") & (tidy["metric"] == "dsc")
    assert tidy.loc[raw_dsc, "value"].tolist() == [0.99]

    result = rank_challenge(table)
    per_case = result.per_case_ranks().set_index(["algorithm", "case", "metric"])
    assert (per_case.xs(("fail", "c1"), level=("algorithm", "case"))["rank"] == 2).all()
    assert (per_case.xs(("fail", "c2"), level=("algorithm", "case"))["rank"] == 1).all()
    board = result.leaderboard.set_index("algorithm")
    assert board.loc["fail", "n_failed"] == 1 and board.loc["good", "n_failed"] == 0
    assert board.loc["fail", "mean_time_s"] == pytest.approx((3600.0 + 1.0) / 2)


def test_failed_as_worst_can_be_switched_off():
    config = RankingConfig(name="raw", metrics=FLARE22_RANKING.metrics, failed_as_worst=False)
    tidy = to_tidy(_wide([("a", "c1", 0.9, 0.9, 1.0, 1.0, 1.0, "crashed")]))
    assert apply_failure_values(tidy, config)["value"].tolist() == tidy["value"].tolist()


def test_missing_row_counts_as_missing_worst_rank():
    rows = []
    for case in ("c1", "c2", "c3"):
        for alg, dsc in (("a", 0.9), ("b", 0.8), ("c", 0.7)):
            if (alg, case) != ("a", "c2"):
                rows.append((alg, case, "dsc", dsc))
    table = pd.DataFrame(rows, columns=["algorithm", "case", "metric", "value"])
    result = rank_challenge(table, replace(FLARE22_RANKING, n_draws=20))
    per_case = result.per_case_ranks().set_index(["algorithm", "case"])
    assert per_case.loc[("a", "c2"), "rank"] == 3  # b 1, c 2, absent a: 2 + 1
    assert per_case.loc[("a", "c2"), "status"] == "no_row"
    assert bool(per_case.loc[("a", "c2"), "missing"])
    assert result.leaderboard.set_index("algorithm").loc["a", "n_missing"] == 1
    assert result.skipped_metrics == ("nsd", "time_s", "auc_gpu_mb_s", "auc_cpu_pct_s")


def test_flare_score_pools_case_metric_ranks_with_weights():
    # Two algorithms, one case: "fast" loses DSC and NSD but wins the three resource metrics.
    table = _wide([
        ("accurate", "c1", 0.9, 0.9, 50.0, 9000.0, 900.0, "ok"),
        ("fast", "c1", 0.8, 0.8, 10.0, 1000.0, 100.0, "ok"),
    ])
    ranked = to_tidy(table)
    score = flare_score(rank_matrices(ranked, FLARE22_RANKING),
                        {m.name: m.weight for m in FLARE22_RANKING.metrics})
    # accurate: (1 + 1 + 2 + 0.5*2 + 0.5*2) / 4 = 1.5; fast: (2 + 2 + 1 + 0.5 + 0.5) / 4 = 1.5
    assert score.loc["accurate", "score"] == pytest.approx(1.5)
    assert score.loc["fast", "score"] == pytest.approx(1.5)
    assert score["rank"].tolist() == [1, 1]
    # Time weighted 1 is what breaks the tie: without it, accurate wins.
    no_time = {m.name: (0.0 if m.name == "time_s" else m.weight) for m in FLARE22_RANKING.metrics}
    score = flare_score(rank_matrices(ranked, FLARE22_RANKING), no_time)
    assert score.loc["accurate", "rank"] == 1 and score.loc["fast", "rank"] == 2


def test_rank_challenge_leaderboard_columns(make_flare_table):
    result = rank_challenge(make_flare_table(4, 10, seed=3), replace(FLARE22_RANKING, n_draws=100, seed=5))
    board = result.leaderboard
    assert list(board.columns[:6]) == ["rank", "algorithm", "score", "rank_lo", "rank_hi",
                                       "rank_median"]
    assert [c for c in board.columns if c.startswith("mean_")] == [f"mean_{m}" for m in
                                                                    FLARE_COLUMNS]
    assert board["rank"].is_monotonic_increasing
    assert set(result.significance) == set(FLARE_COLUMNS)
    assert result.bootstrap.n_draws == 100 and result.bootstrap.seed == 5
    again = rank_challenge(make_flare_table(4, 10, seed=3), replace(FLARE22_RANKING, n_draws=100, seed=5))
    pd.testing.assert_frame_equal(board, again.leaderboard)


# ---- config -------------------------------------------------------------------------------


def test_packaged_toml_equals_default():
    toml = importlib.resources.files("harness.ranking") / "flare22_ranking.toml"
    with importlib.resources.as_file(toml) as path:
        assert load_ranking_config(path) == FLARE22_RANKING


def test_config_metric_lookup():
    assert FLARE22_RANKING.metric("auc_gpu_mb_s") == MetricRule(
        "auc_gpu_mb_s", larger_is_better=False, weight=0.5, worst_value=29491200.0)
    assert FLARE22_RANKING.metric_names == tuple(FLARE_COLUMNS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("draws = 10\n", r"no \[metrics.<name>\] tables"),
        ("colour = 1\n[metrics.dsc]\nlarger_is_better = true\n", "unknown key 'colour'"),
        ("[metrics.dsc]\nweight = 1\n", r"\[metrics.dsc\]: larger_is_better is missing"),
        ("[metrics.dsc]\nlarger_is_better = 'yes'\n", "larger_is_better = 'yes' is not a bool"),
        ("[metrics.dsc]\nlarger_is_better = true\nweight = -1\n", "weight = -1.0"),
        ("[metrics.dsc]\nlarger_is_better = true\nweight = 0\n", "every metric weight is 0"),
        ("bootstrap = 'pooled'\n[metrics.dsc]\nlarger_is_better = true\n",
         "bootstrap = 'pooled'; use one of textbook, challengeR"),
        ("alpha = 2\n[metrics.dsc]\nlarger_is_better = true\n", "alpha = 2.0"),
        ("draws = 0\n[metrics.dsc]\nlarger_is_better = true\n", "draws = 0"),
        ("[metrics.dsc\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_spec_error(tmp_path: Path, text, message):
    path = tmp_path / "ranking.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as info:
        load_ranking_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(SpecError, match="not found; check the --config path"):
        load_ranking_config(tmp_path / "nope.toml")


# ---- table checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(columns=["algorithm", "case", "metric", "value"]), "has no rows"),
        (pd.DataFrame({"case": ["c"], "dsc": [1.0]}), "column 'algorithm' is missing"),
        (pd.DataFrame({"algorithm": ["a"], "case": ["c"], "metric": ["dsc"]}),
         "column 'value' is missing from a tidy table"),
        (pd.DataFrame({"algorithm": ["a"], "case": ["c"], "status": ["ok"]}),
         "no metric columns"),
        (pd.DataFrame({"algorithm": ["a", "b"], "case": ["c", "c"], "dsc": [0.5, "high"]}),
         "column 'dsc' has non-numeric value 'high' in data row 2"),
        (pd.DataFrame({"algorithm": ["a"], "case": ["c"], "metric": ["dsc"],
                       "value": [np.inf]}), "non-finite value"),
        (pd.DataFrame({"algorithm": ["a", "a"], "case": ["c", "c"], "metric": ["dsc", "dsc"],
                       "value": [0.1, 0.2]}), "more than one row for algorithm 'a'"),
    ],
)
def test_bad_tables_are_one_line_data_errors(frame, message):
    with pytest.raises(DataError, match=message) as info:
        to_tidy(frame, source="scores.csv")
    assert str(info.value).startswith("scores.csv: ")


def test_unknown_metric_is_named():
    table = pd.DataFrame({"algorithm": ["a"], "case": ["c"], "dcs": [0.5]})
    with pytest.raises(DataError, match=r"metric 'dcs' is not in ranking config 'flare22'"):
        rank_challenge(table, source="scores.csv")


def test_wide_and_tidy_give_the_same_table(make_flare_table):
    wide = make_flare_table(3, 4)
    tidy = to_tidy(wide)
    again = to_tidy(tidy)
    pd.testing.assert_frame_equal(tidy, again)
    assert list(tidy.columns) == ["algorithm", "case", "metric", "value", "status"]
    assert len(tidy) == 3 * 4 * 5


def test_a_metric_no_ok_run_measured_is_left_out_not_ranked_with_failures_first():
    # Without a GPU every successful run has AUC_GPU NaN; a failed run gets the failure value.
    # Ranked as they were, NaN (missing: worst rank) lost to 29,491,200 (the failure value).
    nan = float("nan")
    table = _wide([
        ("good", "c1", 0.90, 0.90, 20.0, nan, 100.0, "ok"),
        ("fine", "c1", 0.80, 0.80, 20.0, nan, 100.0, "ok"),
        ("fail", "c1", nan, nan, nan, nan, nan, "crashed"),
        ("good", "c2", 0.90, 0.90, 20.0, nan, 100.0, "ok"),
        ("fine", "c2", 0.80, 0.80, 20.0, nan, 100.0, "ok"),
        ("fail", "c2", nan, nan, nan, nan, nan, "crashed"),
    ])
    result = rank_challenge(table, replace(FLARE22_RANKING, n_draws=20))
    assert result.unmeasured_metrics == ("auc_gpu_mb_s",)
    assert "auc_gpu_mb_s" not in result.metrics
    assert set(result.per_case_ranks()["metric"]) == {"dsc", "nsd", "time_s", "auc_cpu_pct_s"}
    assert result.leaderboard["algorithm"].tolist() == ["good", "fine", "fail"]
    assert (result.per_case_ranks().query("algorithm == 'fail'")["rank"] == 3).all()


def test_a_metric_without_any_ok_run_stays_ranked():
    nan = float("nan")
    table = _wide([("a", "c1", nan, nan, nan, nan, nan, "crashed"), ("b", "c1", nan, nan, nan, nan, nan, "timeout")])
    result = rank_challenge(table, replace(FLARE22_RANKING, n_draws=5))
    assert result.unmeasured_metrics == ()
    assert result.metrics == FLARE22_RANKING.metric_names
