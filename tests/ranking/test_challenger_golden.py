"""Every file of challengeR 1.0.5's golden outputs, reproduced exactly.

Data: 6 algorithms x 12 cases, DSC (larger is better), NA for (A3, c05), no row for (A6, c11).
Findings:
- aggregate-then-rank used na_treat = 0: A3's mean is 9.30 / 12 and A6's 10.13 / 12 (the absent
  row is completed as NA, then set to 0).
- The tests also ran on NA -> 0 (all 12 cases): dropping incomplete pairs, or exact p-values,
  would make A6 significantly better than A4 (p 0.0029 / 0.0488), which decision_none_DSC.csv
  does not have (normal approximation on NA -> 0: p = 0.0512).
- challengeR's bootstrap merges the drawn case ids into the data and ranks per case id: a case
  drawn k times is one pooled group of 6k values (ties min, NA = highest rank present + 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.ranking import (
    aggregate_then_rank,
    bootstrap_ranking,
    per_case_ranks,
    rank_matrix,
    rank_then_aggregate,
    significance_matrix,
    test_then_rank,
)


def _by_alg(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"alg": "algorithm"}).set_index("algorithm")


def test_per_case_ranks(golden_dir, golden_dsc):
    gold = pd.read_csv(golden_dir / "percase_rank_DSC.csv")
    ours = per_case_ranks(golden_dsc, larger_is_better=True)
    assert list(ours["algorithm"]) == list(gold["alg"])
    assert list(ours["case"]) == list(gold["case"])
    np.testing.assert_array_equal(ours["rank"].to_numpy(), gold["rank"].to_numpy())
    np.testing.assert_array_equal(ours["value"].to_numpy(), gold["value"].to_numpy())


def test_rank_then_aggregate(golden_dir, golden_dsc):
    gold = _by_alg(pd.read_csv(golden_dir / "rankThenAggregate_DSC.csv"))
    ours = rank_then_aggregate(golden_dsc, larger_is_better=True).loc[gold.index]
    np.testing.assert_allclose(ours["rank_mean"], gold["rank_mean"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours["rank"], gold["rank"])


def test_aggregate_then_rank_na_treat_zero(golden_dir, golden_dsc):
    gold = _by_alg(pd.read_csv(golden_dir / "aggregateThenRank_mean_natreat_DSC.csv"))
    ours = aggregate_then_rank(golden_dsc, larger_is_better=True, na_treat=0.0).loc[gold.index]
    np.testing.assert_allclose(ours["value_mean"], gold["value_mean"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours["rank"], gold["rank"])


def test_test_then_rank_none_na_treat_zero(golden_dir, golden_dsc):
    gold = _by_alg(pd.read_csv(golden_dir / "testThenRank_none_natreat_DSC.csv"))
    ours = test_then_rank(golden_dsc, larger_is_better=True, na_treat=0.0).loc[gold.index]
    np.testing.assert_allclose(ours["prop_significance"], gold["prop_significance"], atol=1e-12)
    np.testing.assert_array_equal(ours["rank"], gold["rank"])


@pytest.mark.parametrize("p_adjust", ["holm", "none"])
def test_decision_matrix(golden_dir, golden_dsc, p_adjust):
    gold = _by_alg(pd.read_csv(golden_dir / f"decision_{p_adjust}_DSC.csv"))
    ours = significance_matrix(golden_dsc, larger_is_better=True, p_adjust=p_adjust,
                               na_treat=0.0)
    ours = ours.loc[gold.index, list(gold.columns)]
    np.testing.assert_array_equal(ours.to_numpy(), gold.to_numpy())


def test_decision_needs_na_treat_zero(golden_dsc):
    """Dropping incomplete pairs instead gives a different matrix: the golden one used 0."""
    dropped = significance_matrix(golden_dsc, larger_is_better=True, p_adjust="none")
    assert dropped.loc["A6", "A4"] == 1
    zero = significance_matrix(golden_dsc, larger_is_better=True, p_adjust="none", na_treat=0.0)
    assert zero.loc["A6", "A4"] == 0


@pytest.mark.parametrize("variant", ["challengeR", "textbook"])
def test_bootstrap_replays_golden_draws(golden_dir, golden_dsc, variant):
    indices = pd.read_csv(golden_dir / "boot_indices_DSC.csv")
    gold = pd.read_csv(golden_dir / "bootstrap_ranks_DSC.csv")
    rm = rank_matrix(golden_dsc, larger_is_better=True)
    draws = [
        [rm.cases.index(c) for c in group["case"]]
        for _, group in indices.groupby("boot", sort=True)
    ]
    assert len(draws) == 25 and all(len(d) == 12 for d in draws)

    result = bootstrap_ranking(rm, case_draws=draws, variant=variant)
    ours = result.to_frame()
    gold = gold.sort_values(["boot", "alg"]).reset_index(drop=True)
    assert list(ours["draw"]) == list(gold["boot"])
    assert list(ours["algorithm"]) == list(gold["alg"])
    np.testing.assert_array_equal(ours["rank"], gold[f"rank_{variant}"])
    np.testing.assert_allclose(ours["score"], gold[f"rank_mean_{variant}"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["tau"], gold[f"tau_{variant}"], rtol=0, atol=1e-12)
    assert result.n_undefined == 0
    assert result.seed is None


def test_bootstrap_full_ranking_is_rank_then_aggregate(golden_dir, golden_dsc):
    gold = _by_alg(pd.read_csv(golden_dir / "rankThenAggregate_DSC.csv"))
    result = bootstrap_ranking(rank_matrix(golden_dsc, larger_is_better=True), n_draws=10)
    np.testing.assert_array_equal(result.full_ranks, gold["rank"].to_numpy())
    np.testing.assert_allclose(result.full_scores, gold["rank_mean"], atol=1e-12)


def test_golden_time_metric_smaller_is_better(golden_input):
    """Time (smaller is better) of the same data: direction flips, NA still worst."""
    time = golden_input[golden_input["metric"] == "Time"]
    ranks = per_case_ranks(time, larger_is_better=False).set_index(["algorithm", "case"])
    assert ranks.loc[("A3", "c05"), "rank"] == ranks.xs("c05", level="case")["rank"].max()
    assert ranks.loc[("A5", "c01"), "rank"] == 1  # 7 s, the fastest of c01
