"""Every challengeR ranking method against challengeR's own outputs.

The goldens in tests/fixtures/challenger-golden/methods/ were made by running challengeR's R code
(R 4.2.2, x86_64) through `make_goldens.R` in that folder; regenerate them only with challengeR
itself (see the README there), never with this implementation. Aggregates are compared exactly
(the CSVs hold each double's shortest round-trip form), ranks exactly.
"""

from __future__ import annotations

import csv
import platform
from pathlib import Path

import numpy as np
import pytest

from harness.ranking.methods import Method, per_case_ranks, r_mean, rank_by

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "challenger-golden" / "methods"


def _read(name: str) -> list[dict[str, str]]:
    with (GOLDEN / name).open(newline="") as stream:
        return list(csv.DictReader(stream))


def _matrix(name: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(cases x algorithms) values, NaN for NA and for an absent row (as.challenge inserts NA)."""
    rows = _read(name)
    algorithms = sorted({r["alg"] for r in rows})
    cases = sorted({r["case"] for r in rows})
    values = np.full((len(cases), len(algorithms)), np.nan)
    for r in rows:
        if r["value"] not in ("NA", ""):
            values[cases.index(r["case"]), algorithms.index(r["alg"])] = float(r["value"])
    return values, algorithms, cases


def _golden(name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = _read(name)
    aggregate = next(k for k in rows[0] if k not in ("alg", "rank"))
    return ([r["alg"] for r in rows], np.array([float(r[aggregate]) for r in rows]),
            np.array([float(r["rank"]) for r in rows]))


CASES = [
    # (golden, input, method, larger_is_better)
    ("mean_tie_aggregateThenRank_mean.csv", "mean_tie_input.csv", Method("aggregate_then_rank", "mean"), True),
    ("median_tie_aggregateThenRank_median_narm.csv", "median_tie_input.csv",
     Method("aggregate_then_rank", "median", na_treat="na.rm"), True),
    ("median_tie_aggregateThenRank_median_na0.csv", "median_tie_input.csv",
     Method("aggregate_then_rank", "median", na_treat=0.0), True),
    ("ties_aggregateThenRank_mean_na0.csv", "ties_input.csv", Method("aggregate_then_rank", "mean", na_treat=0.0), True),
    ("ties_aggregateThenRank_mean_narm.csv", "ties_input.csv", Method("aggregate_then_rank", "mean"), True),
    ("ties_aggregateThenRank_median_na0.csv", "ties_input.csv", Method("aggregate_then_rank", "median", na_treat=0.0),
     True),
    ("ties_aggregateThenRank_q25_na0.csv", "ties_input.csv", Method("aggregate_then_rank", "q25", na_treat=0.0), True),
    ("ties_aggregateThenRank_mean_na0_max.csv", "ties_input.csv",
     Method("aggregate_then_rank", "mean", na_treat=0.0, ties="max"), True),
    ("ties_rankThenAggregate_mean.csv", "ties_input.csv", Method("rank_then_aggregate"), True),
    ("ties_rankThenAggregate_mean_average.csv", "ties_input.csv", Method("rank_then_aggregate", ties="average"), True),
    ("ties_testThenRank_na0.csv", "ties_input.csv", Method("test_then_rank", na_treat=0.0), True),
    ("ties_smallBetter_aggregateThenRank_mean_na0.csv", "ties_input.csv",
     Method("aggregate_then_rank", "mean", na_treat=0.0), False),
    ("ties_smallBetter_rankThenAggregate_mean.csv", "ties_input.csv", Method("rank_then_aggregate"), False),
]

needs_x87 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                               reason="the goldens' means come from R's 80-bit long double (x86_64); "
                                      f"this machine is {platform.machine()}")


@needs_x87
@pytest.mark.parametrize(("golden", "source", "method", "larger"), CASES, ids=[c[0].removesuffix(".csv") for c in CASES])
def test_method_reproduces_challenger(golden: str, source: str, method: Method, larger: bool) -> None:
    values, algorithms, _ = _matrix(source)
    names, aggregates, ranks = _golden(golden)
    assert names == algorithms
    ours_aggregate, ours_rank = rank_by(values, method, larger_is_better=larger)
    assert ours_aggregate.tolist() == aggregates.tolist()  # exact, to the last bit
    assert ours_rank.tolist() == ranks.tolist()


def test_mean_tie_is_a_tie_and_the_naive_mean_is_not() -> None:
    _, aggregates, ranks = _golden("mean_tie_aggregateThenRank_mean.csv")
    assert ranks.tolist() == [1.0, 1.0, 3.0]
    assert (0.1 + 0.2 + 0.3) / 3 != (0.3 + 0.2 + 0.1) / 3  # why R's mean is needed
    assert r_mean(np.array([0.1, 0.2, 0.3])) == r_mean(np.array([0.3, 0.2, 0.1])) == aggregates[0]


def test_per_case_ranks_reproduce_challenger_with_na_after_the_worst_present() -> None:
    values, algorithms, cases = _matrix("ties_input.csv")
    ranks = per_case_ranks(values, larger_is_better=True)
    golden = _read("ties_percase_rank.csv")
    assert len(golden) == len(algorithms) * len(cases)
    for row in golden:
        assert ranks[cases.index(row["case"]), algorithms.index(row["alg"])] == float(row["rank"]), row


@needs_x87
def test_a_thousand_permuted_pairs_tie_as_in_r() -> None:
    rows = _read("mean_ties_1000_full53_input.csv")
    by_pair: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by_pair.setdefault((r["pair"], r["alg"]), []).append(float(r["value"]))
    naive_split = 0
    for golden in _read("mean_ties_1000_full53_means.csv"):
        pair = golden["pair"]
        a, b = by_pair[(pair, f"P{pair}a")], by_pair[(pair, f"P{pair}b")]
        ours_a, ours_b = r_mean(np.array(a)), r_mean(np.array(b))
        assert (ours_a, ours_b) == (float(golden["mean_a"]), float(golden["mean_b"])), pair
        assert (ours_a == ours_b) == (golden["equal"] == "TRUE")
        naive_split += sum(a) / 5 != sum(b) / 5
    assert naive_split > 100  # the data do tell a naive mean from R's (291 pairs when made)


@needs_x87
@pytest.mark.parametrize(("golden", "kind", "aggregate", "na_treat"), [
    ("ties_aggregateThenRank_median_na0.csv", "aggregate_then_rank", "median", 0.0),
    ("ties_aggregateThenRank_mean_narm.csv", "aggregate_then_rank", "mean", "na.rm"),
    ("ties_rankThenAggregate_mean.csv", "rank_then_aggregate", "mean", "na.rm"),
    ("ties_testThenRank_na0.csv", "test_then_rank", "mean", 0.0),
])
def test_the_config_names_the_method_and_rank_challenge_follows_it(golden: str, kind: str, aggregate: str,
                                                                   na_treat: float | str) -> None:
    import pandas as pd

    from harness.ranking import MetricRule, RankingConfig, rank_challenge

    rows = [r for r in _read("ties_input.csv")]
    table = pd.DataFrame({"algorithm": [r["alg"] for r in rows], "case": [r["case"] for r in rows], "metric": "value",
                          "value": [float("nan") if r["value"] == "NA" else float(r["value"]) for r in rows]})
    config = RankingConfig(name="ties", metrics=(MetricRule("value", larger_is_better=True),), method=kind,
                           aggregate=aggregate, na_treat=na_treat, n_draws=30)
    result = rank_challenge(table, config)
    names, aggregates, ranks = _golden(golden)
    score = result.score.reindex(names)
    assert score["score"].tolist() == aggregates.tolist()
    assert score["rank"].tolist() == ranks.tolist()
    assert result.leaderboard.set_index("algorithm").loc[names, "rank"].tolist() == ranks.tolist()
    assert result.bootstrap.ranks.shape == (30, 5) and np.isfinite(result.bootstrap.ranks).all()
    assert result.method_ranks is not None and list(result.method_ranks.index) == names


def test_grand_challenge_scorings_by_hand() -> None:
    from harness.ranking.methods import grand_challenge_rank

    # 3 algorithms, 2 metrics (DSC larger better, time smaller better); each metric's mean:
    means = np.array([[0.90, 0.80, 0.85],    # DSC positions: 1, 3, 2
                      [30.0, 10.0, 20.0]])   # time positions: 3, 1, 2
    score, rank = grand_challenge_rank(means, larger_is_better=[True, False], scoring="gc_mean_position")
    assert score.tolist() == [2.0, 2.0, 2.0] and rank.tolist() == [1.0, 1.0, 1.0]
    score, rank = grand_challenge_rank(means, larger_is_better=[True, False], scoring="gc_absolute")
    assert score.tolist() == [0.90, 0.80, 0.85] and rank.tolist() == [1.0, 3.0, 2.0]
    three = np.vstack([means, [[0.5, 0.7, 0.6]]])  # a third metric, larger better: positions 3, 1, 2
    score, rank = grand_challenge_rank(three, larger_is_better=[True, False, True], scoring="gc_median_position")
    assert score.tolist() == [3.0, 1.0, 2.0] and rank.tolist() == [3.0, 1.0, 2.0]
    missing = np.array([[0.9, np.nan, 0.8]])  # a missing mean: off the leaderboard (grand-challenge filters it out)
    assert np.isnan(grand_challenge_rank(missing, larger_is_better=[True], scoring="gc_absolute")[1]).tolist() == \
        [False, True, False]
    assert grand_challenge_rank(missing, larger_is_better=[True], scoring="gc_absolute")[1][[0, 2]].tolist() == [1.0, 2.0]
