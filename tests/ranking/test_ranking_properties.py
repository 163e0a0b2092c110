"""Properties of the ranking (hypothesis): algorithm order, dominated entrants, all ties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.ranking import (
    FLARE22_RANKING,
    MetricRule,
    RankingConfig,
    aggregate_then_rank,
    rank_challenge,
    rank_min,
    rank_then_aggregate,
)

CONFIG = RankingConfig(
    name="two",
    metrics=(
        MetricRule("dsc", larger_is_better=True, weight=1.0, worst_value=0.0),
        MetricRule("time_s", larger_is_better=False, weight=0.5, worst_value=3600.0),
    ),
    n_draws=30,
)
GRID = [0.0, 0.25, 0.5, 0.75, 1.0]  # coarse: plenty of ties


@st.composite
def tables(draw, *, complete: bool = False):
    n_alg = draw(st.integers(2, 6))
    n_cases = draw(st.integers(2, 7))
    rows = []
    for a in range(n_alg):
        for c in range(n_cases):
            for metric in ("dsc", "time_s"):
                if not complete and draw(st.integers(0, 9)) == 0:
                    continue  # an absent row
                value = draw(st.sampled_from(GRID))
                if not complete and draw(st.integers(0, 9)) == 0:
                    value = np.nan
                value = value if metric == "dsc" else 10.0 + 100.0 * value
                status = "ok" if complete or draw(st.integers(0, 9)) else "timeout"
                rows.append((f"a{a}", f"c{c}", metric, value, status))
    # Every algorithm and case has at least one row (otherwise it is not in the table at all).
    present = {(alg, case) for alg, case, *_ in rows}
    rows += [(f"a{a}", f"c{c}", "dsc", 0.5, "ok")
             for a in range(n_alg) for c in range(n_cases) if (f"a{a}", f"c{c}") not in present]
    return pd.DataFrame(rows, columns=["algorithm", "case", "metric", "value", "status"])


@settings(max_examples=40, deadline=None)
@given(tables(), st.randoms(use_true_random=False))
def test_invariant_to_algorithm_names_and_row_order(table, rnd):
    names = sorted(table["algorithm"].unique())
    shuffled = names[:]
    rnd.shuffle(shuffled)
    rename = {old: f"x_{new}" for old, new in zip(names, shuffled, strict=True)}
    other = table.assign(algorithm=table["algorithm"].map(rename))
    other = other.sample(frac=1.0, random_state=rnd.randint(0, 2**31 - 1))

    a = rank_challenge(table, replace(CONFIG, seed=3))
    b = rank_challenge(other, replace(CONFIG, seed=3))
    board_a = a.leaderboard.set_index("algorithm")
    board_b = b.leaderboard.set_index("algorithm").rename(
        index={v: k for k, v in rename.items()}).loc[board_a.index]
    pd.testing.assert_frame_equal(board_a, board_b, check_exact=False, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.bootstrap.tau, b.bootstrap.tau)
    for metric in a.significance:
        sig_b = b.significance[metric].rename(
            index={v: k for k, v in rename.items()}, columns={v: k for k, v in rename.items()})
        pd.testing.assert_frame_equal(a.significance[metric],
                                      sig_b.loc[a.significance[metric].index,
                                                a.significance[metric].columns])
    for metric, larger in (("dsc", True), ("time_s", False)):
        rows_a = table[table["metric"] == metric]
        rows_b = other[other["metric"] == metric]
        if rows_a.empty:
            continue
        rta = rank_then_aggregate(rows_a, larger_is_better=larger)
        rtb = rank_then_aggregate(rows_b, larger_is_better=larger).rename(
            index={v: k for k, v in rename.items()}).loc[rta.index]
        pd.testing.assert_frame_equal(rta, rtb, check_exact=False, atol=1e-12)


def _dominated(table: pd.DataFrame) -> pd.DataFrame:
    """A new algorithm worse than every other on every case and metric."""
    rows = []
    lowest = table.groupby(["case", "metric"], sort=False)["value"].min()
    highest = table.groupby(["case", "metric"], sort=False)["value"].max()
    for case in table["case"].unique():
        for metric, larger in (("dsc", True), ("time_s", False)):
            worst = lowest[(case, metric)] - 1.0 if larger else highest[(case, metric)] + 1.0
            rows.append(("zz_dominated", case, metric, worst, "ok"))
    extra = pd.DataFrame(rows, columns=table.columns)
    return pd.concat([table, extra], ignore_index=True)


@settings(max_examples=40, deadline=None)
@given(tables(complete=True))
def test_dominated_algorithm_never_reorders_the_others(table):
    dominated = _dominated(table)
    before = rank_challenge(table, replace(CONFIG, seed=1))
    after = rank_challenge(dominated, replace(CONFIG, seed=1))
    others = list(before.score.index)

    assert after.score.loc["zz_dominated", "rank"] == len(others) + 1
    np.testing.assert_array_equal(rank_min(after.score.loc[others, "score"]),
                                  before.score.loc[others, "rank"])
    # Same seed, same cases: every draw keeps the others' order too.
    cols = [after.bootstrap.algorithms.index(a) for a in others]
    sub = after.bootstrap.ranks[:, cols]
    np.testing.assert_array_equal(
        np.array([rank_min(row) for row in sub]), before.bootstrap.ranks)
    assert (after.bootstrap.ranks[:, -1] == len(others) + 1).all()

    for metric, larger in (("dsc", True), ("time_s", False)):
        for method in (rank_then_aggregate, aggregate_then_rank):
            r0 = method(table[table["metric"] == metric], larger_is_better=larger)
            r1 = method(dominated[dominated["metric"] == metric], larger_is_better=larger)
            np.testing.assert_array_equal(rank_min(r1.loc[others, "rank"]), r0["rank"])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.sampled_from(["textbook", "challengeR"]),
       st.floats(0, 1))
def test_all_tied_gives_undefined_tau_counted_as_dropped(n_alg, n_cases, variant, value):
    rows = [(f"a{a}", f"c{c}", m, value, "ok")
            for a in range(n_alg) for c in range(n_cases) for m in FLARE22_RANKING.metric_names]
    table = pd.DataFrame(rows, columns=["algorithm", "case", "metric", "value", "status"])
    result = rank_challenge(table, replace(FLARE22_RANKING, n_draws=20, bootstrap=variant))
    summary = result.bootstrap.tau_summary()
    assert summary.n_dropped == 20 and summary.n_valid == 0
    assert np.isnan(summary.mean)
    assert (result.leaderboard["rank"] == 1).all()
    for matrix in result.significance.values():
        assert (matrix.to_numpy() == 0).all()
