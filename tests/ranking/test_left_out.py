"""Algorithms without values, as challengeR and grand-challenge treat them: challengeR's
`na.treat = "na.rm"` removes the missing rows first, so an algorithm with no value at all is gone
from aggregate-then-rank and test-then-rank (not ranked last, not in the n - 1 of the shares, not in
Holm's pairs); grand-challenge filters a result without one of the leaderboard's metrics out before
ranking (`_filter_valid_results`)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from harness.ranking.methods import Method, dropped_by_na_rm, grand_challenge_rank, off_the_leaderboard, rank_by

# 3 algorithms on 12 cases (A clearly best, B middle, C worst) and a fourth, D, with no value at all.
A = np.array([0.91, 0.88, 0.93, 0.90, 0.87, 0.92, 0.89, 0.94, 0.90, 0.91, 0.86, 0.93])
B = A - np.array([0.02, 0.01, 0.03, 0.02, -0.01, 0.04, 0.02, 0.03, 0.01, 0.02, 0.00, 0.05])
C = B - np.array([0.05, 0.04, 0.06, 0.03, 0.05, 0.07, 0.04, 0.05, 0.06, 0.04, 0.05, 0.06])
VALUES = np.column_stack([A, B, C, np.full(12, np.nan)])


def _wilcoxon_greater(x: np.ndarray, y: np.ndarray) -> float:
    """R's wilcox.test(x, y, paired = TRUE, exact = FALSE, alternative = "greater"): normal
    approximation with continuity correction, zero differences dropped."""
    return float(stats.wilcoxon(x, y, zero_method="wilcox", correction=True, alternative="greater",
                                method="approx").pvalue)


def _holm(p: list[float]) -> list[float]:
    """R's p.adjust(method = "holm"), written out."""
    m, order = len(p), sorted(range(len(p)), key=lambda k: p[k])
    out, running = [0.0] * m, 0.0
    for step, k in enumerate(order):
        running = max(running, (m - step) * p[k])
        out[k] = min(1.0, running)
    return out


@pytest.mark.parametrize("p_adjust", ["none", "holm"])
def test_test_then_rank_leaves_an_algorithm_without_values_out(p_adjust: str) -> None:
    method = Method(kind="test_then_rank", na_treat="na.rm", p_adjust=p_adjust, alpha=0.05)
    share, rank = rank_by(VALUES, method, larger_is_better=True)
    assert math.isnan(share[3]) and math.isnan(rank[3])  # D: gone, as challengeR drops it
    # The reference: the three algorithms alone, tested pair by pair with scipy, Holm by hand.
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    p = [_wilcoxon_greater(VALUES[:, i], VALUES[:, j]) for i, j in pairs]
    if p_adjust == "holm":
        p = _holm(p)
    wins = [sum(1 for (i, _), q in zip(pairs, p, strict=True) if i == a and q <= 0.05) for a in range(3)]
    assert share[:3].tolist() == [w / 2 for w in wins]  # n - 1 = 2: D not counted
    assert share[:3].tolist() == [1.0, 0.5, 0.0] and rank[:3].tolist() == [1.0, 2.0, 3.0]


def test_holm_adjusts_over_the_pairs_of_the_algorithms_with_values_only() -> None:
    """With D's six p = 1 pairs in, Holm would multiply A-vs-B's p by 12 instead of 6."""
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    raw = [_wilcoxon_greater(VALUES[:, i], VALUES[:, j]) for i, j in pairs]
    held = _holm(raw)[pairs.index((0, 1))]
    with_d = _holm(raw + [1.0] * 6)[pairs.index((0, 1))]
    assert with_d > held  # the old count: a different p, so possibly a different decision
    from harness.ranking.stats import holm_adjust, pairwise_pvalue_matrix

    kept = VALUES[:, ~dropped_by_na_rm(VALUES, Method(kind="test_then_rank", na_treat="na.rm"))]
    assert kept.shape[1] == 3
    ours = holm_adjust(pairwise_pvalue_matrix(kept, larger_is_better=True))
    assert ours[0, 1] == pytest.approx(held, rel=1e-12)


def test_aggregate_then_rank_leaves_it_out_and_a_number_keeps_it() -> None:
    mean, rank = rank_by(VALUES, Method(kind="aggregate_then_rank", na_treat="na.rm"), larger_is_better=True)
    assert math.isnan(mean[3]) and math.isnan(rank[3]) and rank[:3].tolist() == [1.0, 2.0, 3.0]
    mean, rank = rank_by(VALUES, Method(kind="aggregate_then_rank", na_treat=0.0), larger_is_better=True)
    assert mean[3] == 0.0 and rank.tolist() == [1.0, 2.0, 3.0, 4.0]  # na.treat = 0: D is there, with 0
    share, rank = rank_by(VALUES, Method(kind="test_then_rank", na_treat=0.0), larger_is_better=True)
    assert rank[3] == 4.0 and share[0] == 1.0  # 3 wins of n - 1 = 3


def _gc_reference(means: np.ndarray, larger_is_better: list[bool], scoring: str) -> dict[int, int]:
    """grand-challenge's rank_results, re-written: filter the results missing a ranked metric, rank
    each metric (sorted, ties share the first rank), combine the positions, rank the combination."""
    metrics = [0] if scoring == "gc_absolute" else list(range(means.shape[0]))
    valid = [a for a in range(means.shape[1]) if all(not math.isnan(means[m, a]) for m in metrics)]

    def to_ranks(scores: dict[int, float], reverse: bool) -> dict[int, int]:
        out: dict[int, int] = {}
        current = None
        for position, (key, score) in enumerate(sorted(scores.items(), key=lambda t: t[1], reverse=reverse)):
            if score != current:
                current, rank = score, position + 1
            out[key] = rank
        return out

    if scoring == "gc_absolute":
        return to_ranks({a: means[0, a] for a in valid}, reverse=larger_is_better[0])
    per_metric = [to_ranks({a: means[m, a] for a in valid}, reverse=larger_is_better[m]) for m in metrics]
    combine = statistics.mean if scoring == "gc_mean_position" else statistics.median
    return to_ranks({a: combine([r[a] for r in per_metric]) for a in valid}, reverse=False)


@pytest.mark.parametrize("scoring", ["gc_absolute", "gc_mean_position", "gc_median_position"])
def test_grand_challenge_leaves_an_algorithm_without_a_metric_off_the_leaderboard(scoring: str) -> None:
    rng = np.random.default_rng(11)
    left_off = 0
    for _ in range(300):
        n_metrics, n_alg = int(rng.integers(2, 4)), int(rng.integers(3, 7))
        means = np.round(rng.uniform(0, 1, (n_metrics, n_alg)), 1)  # coarse: ties happen
        means[rng.random(means.shape) < 0.12] = np.nan
        better = [bool(b) for b in rng.integers(0, 2, n_metrics)]
        _, rank = grand_challenge_rank(means, larger_is_better=better, scoring=scoring)
        expected = _gc_reference(means, better, scoring)
        assert {a: int(r) for a, r in enumerate(rank) if not math.isnan(r)} == expected
        assert np.isnan(rank).tolist() == off_the_leaderboard(means, scoring=scoring).tolist()
        left_off += bool(np.isnan(rank).any())
    assert left_off > 50  # many tables had an algorithm left off


def test_harness_rank_names_who_was_left_out_and_why(tmp_path, capsys) -> None:
    """The note in the CLI (and its --json), from the ranking: D has no DSC at all under na.rm."""
    import json

    import pandas as pd

    from harness.cli import main

    rows = [{"algorithm": alg, "case": f"c{c:02d}", "metric": "DSC", "value": VALUES[c, k], "status": "ok"}
            for k, alg in enumerate("ABCD") for c in range(12)]
    table = tmp_path / "scores.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    config = tmp_path / "rank.toml"
    config.write_text('name = "t"\nmethod = "test_then_rank"\nna_treat = "na.rm"\ndraws = 20\n'
                      '[metrics.DSC]\nlarger_is_better = true\n')
    with pytest.raises(SystemExit) as done:
        main(["--debug", "rank", "--results", str(table), "--config", str(config), "--out", str(tmp_path / "out"),
              "--json"])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    note = ('D: no DSC value on any case; challengeR\'s na.treat = "na.rm" drops it from the test-then-rank '
            "(alpha 0.05) ranking of DSC (not ranked last, not counted among the others)")
    document = json.loads(out.out)
    assert document["left_out"] == [note]
    assert "Left out of the ranking: " + note in out.err
    board = {row["algorithm"]: row["rank"] for row in document["leaderboard"]}
    assert board["A"] == 1 and board["B"] == 2 and board["C"] == 3 and board["D"] is None
