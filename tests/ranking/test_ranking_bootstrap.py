"""The vectorised bootstrap against a loop that re-ranks every draw from the raw values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.ranking import (
    RankMatrix,
    bootstrap_ranking,
    draw_cases,
    draw_counts,
    rank_min,
)
from harness.ranking.bootstrap import observed_quantiles


def _inverse_cdf(values: np.ndarray, p: float) -> float:
    """The definition, by brute force over exact fractions: the smallest observed value v with
    #(values <= v) >= p n (p given in thousandths so that 0.025 is exact)."""
    from fractions import Fraction

    share = Fraction(p).limit_denominator(1000)
    return min(float(v) for v in values if Fraction(int((values <= v).sum()), len(values)) >= share)


def _rank_na2(x: np.ndarray, larger_is_better: bool) -> np.ndarray:
    """challengeR's rankNA2, written out: ties min, NaN = highest rank present + 1."""
    oriented = -x if larger_is_better else x
    r = np.full(x.shape, np.nan)
    present = ~np.isnan(x)
    r[present] = stats.rankdata(oriented[present], method="min")
    r[~present] = (r[present].max() if present.any() else 0) + 1
    return r


def _loop_bootstrap(values: dict[str, np.ndarray], larger: dict[str, bool],
                    weights: dict[str, float], draws: np.ndarray, pooled: bool) -> np.ndarray:
    """Per draw: rebuild the sample, re-rank it case by case (or case id by case id when
    pooled), average with weights. Returns (draws x algorithms) mean ranks."""
    n_alg = next(iter(values.values())).shape[1]
    out = np.zeros((len(draws), n_alg))
    for k, draw in enumerate(draws):
        total = np.zeros(n_alg)
        for name, v in values.items():
            if pooled:
                for case in np.unique(draw):
                    times = int((draw == case).sum())
                    group = np.tile(v[case], times)
                    ranks = _rank_na2(group, larger[name]).reshape(times, n_alg)
                    total += weights[name] * ranks.sum(axis=0)
            else:
                for case in draw:
                    total += weights[name] * _rank_na2(v[case], larger[name])
        out[k] = total / (sum(weights.values()) * len(draw))
    return out


def _random_values(rng, n_cases, n_alg, *, missing=0.1):
    v = rng.integers(0, 5, size=(n_cases, n_alg)) / 4.0  # many ties
    v[rng.random(v.shape) < missing] = np.nan
    v[0] = np.nan  # a case where everything is missing
    return v


@pytest.mark.parametrize("variant", ["textbook", "challengeR"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_loop_of_rerankings(variant, seed):
    rng = np.random.default_rng(seed)
    n_cases, n_alg = 9, 5
    algs = [f"a{i}" for i in range(n_alg)]
    cases = [f"c{i}" for i in range(n_cases)]
    spec = {"dsc": (True, 1.0), "time_s": (False, 1.0), "auc_gpu_mb_s": (False, 0.5)}
    values = {m: _random_values(rng, n_cases, n_alg) for m in spec}
    matrices = {
        m: RankMatrix.from_values(values[m], algorithms=algs, cases=cases,
                                  larger_is_better=spec[m][0], metric=m)
        for m in spec
    }
    weights = {m: w for m, (_, w) in spec.items()}
    draws = draw_cases(n_cases, 40, seed=seed)
    result = bootstrap_ranking(matrices, weights=weights, case_draws=draws, variant=variant)
    expected = _loop_bootstrap(values, {m: s[0] for m, s in spec.items()}, weights, draws,
                               pooled=variant == "challengeR")
    np.testing.assert_allclose(result.scores, expected, rtol=0, atol=1e-12)
    expected_ranks = np.array([stats.rankdata(row.round(12), method="min") for row in expected])
    np.testing.assert_array_equal(result.ranks, expected_ranks)
    for k in range(len(draws)):
        tau = stats.kendalltau(result.ranks[k], result.full_ranks).statistic
        if np.isnan(tau):
            assert np.isnan(result.tau[k])
        else:
            assert result.tau[k] == pytest.approx(tau, abs=1e-12)


def test_seeded_draws_are_reproducible_and_use_default_rng():
    a = draw_cases(10, 5, seed=42)
    np.testing.assert_array_equal(a, np.random.default_rng(42).integers(0, 10, size=(5, 10)))
    np.testing.assert_array_equal(a, draw_cases(10, 5, seed=42))
    assert not np.array_equal(a, draw_cases(10, 5, seed=43))


def test_draw_counts_ragged_and_matrix_agree():
    draws = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_array_equal(draw_counts(draws, 3), [[2, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(draw_counts([[0, 0, 2], [1, 2]], 3), [[2, 0, 1], [0, 1, 1]])
    with pytest.raises(ValueError, match="case index 3"):
        draw_counts([[0, 3]], 3)


def test_rank_intervals_and_frequencies():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 4)) + np.array([0.0, 0.5, 1.0, 3.0])
    rm = RankMatrix.from_values(values, algorithms=["w", "x", "y", "z"],
                                cases=[f"c{i}" for i in range(30)], larger_is_better=True)
    result = bootstrap_ranking(rm, n_draws=500, seed=1)
    intervals = result.rank_intervals()
    assert intervals.loc["z", "rank"] == 1
    assert intervals.loc["z", "rank_hi"] == 1.0  # best by far in every draw
    for k, algorithm in enumerate(result.algorithms):
        column = result.ranks[:, k]
        assert intervals.loc[algorithm, "rank_lo"] == _inverse_cdf(column, 0.025)
        assert intervals.loc[algorithm, "rank_median"] == _inverse_cdf(column, 0.5)
        assert intervals.loc[algorithm, "rank_hi"] == _inverse_cdf(column, 0.975)
    assert intervals[["rank_lo", "rank_median", "rank_hi"]].dtypes.eq(np.int64).all()
    freq = result.rank_frequencies()
    assert (freq.sum(axis=1) == 500).all()
    assert freq.loc["z", 1] == 500
    summary = result.tau_summary()
    assert summary.n_draws == 500 and summary.n_dropped == result.n_undefined == 0
    assert summary.q25 <= summary.median <= summary.q75 <= 1.0
    frame = result.to_frame()
    assert list(frame.columns) == ["draw", "algorithm", "rank", "score", "tau"]
    assert len(frame) == 2000


def test_all_tied_tau_undefined_counted_not_crashing():
    rm = RankMatrix.from_values(np.full((6, 3), 0.5), algorithms=["a", "b", "c"],
                                cases=list("uvwxyz"), larger_is_better=True)
    for variant in ("textbook", "challengeR"):
        result = bootstrap_ranking(rm, n_draws=50, seed=0, variant=variant)
        assert result.n_undefined == 50
        summary = result.tau_summary()
        assert summary.n_valid == 0 and summary.n_dropped == 50 and np.isnan(summary.mean)
        assert (result.ranks == 1).all()
        assert result.rank_intervals()["rank_hi"].eq(1).all()


def test_single_algorithm_tau_undefined():
    rm = RankMatrix.from_values(np.arange(5.0)[:, None], algorithms=["only"],
                                cases=list("abcde"), larger_is_better=True)
    result = bootstrap_ranking(rm, n_draws=10)
    assert result.n_undefined == 10 and (result.ranks == 1).all()


def test_bad_variant():
    rm = RankMatrix.from_values(np.ones((2, 2)), algorithms=["a", "b"], cases=["x", "y"],
                                larger_is_better=True)
    with pytest.raises(ValueError, match="variant"):
        bootstrap_ranking(rm, variant="pooled")


def test_full_ranking_matches_rank_min_of_means():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(20, 6))
    rm = RankMatrix.from_values(v, algorithms=list("abcdef"), cases=[str(i) for i in range(20)],
                                larger_is_better=False)
    result = bootstrap_ranking(rm, n_draws=3)
    np.testing.assert_array_equal(result.full_ranks, rank_min(rm.ranks.mean(axis=0)))
    frame = pd.DataFrame(result.ranks)
    assert frame.apply(lambda row: sorted(row)[0] == 1, axis=1).all()


@pytest.mark.parametrize("n", [1, 2, 39, 40, 41, 199, 200, 1000, 1001])
def test_observed_quantiles_match_the_inverse_cdf_definition(n: int):
    rng = np.random.default_rng(n)
    values = rng.integers(1, 9, size=(n, 3)).astype(float)
    probs = [0.0, 0.025, 0.25, 0.5, 0.975, 1.0]
    got = observed_quantiles(values, probs)
    assert got.shape == (len(probs), 3)
    for j, p in enumerate(probs):
        for k in range(3):
            expected = values[:, k].min() if p == 0 else _inverse_cdf(values[:, k], p)
            assert got[j, k] == expected, (n, p, k)
    # NumPy's "inverted_cdf" agrees wherever n p is not a whole number (where float rounding of
    # n p could tip NumPy to the next value; 1 - 0.95 is 0.05000000000000004)
    for p in (0.3, 0.61, 0.77):
        np.testing.assert_array_equal(observed_quantiles(values, [p])[0],
                                      np.quantile(values, p, axis=0, method="inverted_cdf"))


def test_observed_quantiles_at_a_whole_n_p_take_that_value_not_the_next():
    ranks = np.array([14.0] * 25 + [15.0] * 975)  # 1000 draws: exactly 2.5% at 14
    lo, hi = observed_quantiles(ranks, [(1 - 0.95) / 2, 1 - (1 - 0.95) / 2])
    assert (lo, hi) == (14.0, 15.0)
    assert np.percentile(ranks, 2.5) == pytest.approx(14.975)  # what linear interpolation made of it
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        observed_quantiles(ranks, [1.5])
