"""The vectorised tests and tau against SciPy, the oracle, on random inputs with ties and zeros."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from harness.ranking import (
    decision_matrix,
    holm_adjust,
    kendall_tau_b,
    pairwise_pvalue_matrix,
    signed_rank_pvalues,
)


def scipy_p(x: np.ndarray, y: np.ndarray, alternative: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = stats.wilcoxon(x, y, zero_method="wilcox", correction=True, method="approx",
                           alternative=alternative).pvalue
    return 1.0 if np.isnan(p) else float(p)


def _random_pairs(rng: np.random.Generator, rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Values on a coarse grid: many tied |differences| and many zero differences.
    x = rng.integers(0, 6, size=(rows, n)) / 4.0
    y = rng.integers(0, 6, size=(rows, n)) / 4.0
    return x, y


@pytest.mark.parametrize("n", [1, 2, 5, 12, 30, 200])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_signed_rank_equals_scipy_with_ties_and_zeros(n, alternative):
    rng = np.random.default_rng(n)
    x, y = _random_pairs(rng, 60, n)
    ours = signed_rank_pvalues(x - y, alternative=alternative)
    expected = np.array([scipy_p(x[k], y[k], alternative) for k in range(x.shape[0])])
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_signed_rank_equals_scipy_continuous(alternative):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(100, 25))
    y = rng.normal(0.3, 1, size=(100, 25)).round(1)
    ours = signed_rank_pvalues(x - y, alternative=alternative)
    expected = [scipy_p(x[k], y[k], alternative) for k in range(100)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 40),
               elements=st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0])),
    st.sampled_from(["greater", "less"]),
)
def test_signed_rank_equals_scipy_property(d, alternative):
    ours = signed_rank_pvalues(d[None, :], alternative=alternative)[0]
    assert abs(ours - scipy_p(d, np.zeros_like(d), alternative)) <= 1e-12


def test_signed_rank_all_zero_is_one():
    assert signed_rank_pvalues(np.zeros((2, 5))).tolist() == [1.0, 1.0]
    assert signed_rank_pvalues(np.full((1, 3), np.nan), alternative="less").tolist() == [1.0]


def test_signed_rank_drops_nan_like_complete_cases():
    rng = np.random.default_rng(3)
    d = rng.normal(size=20).round(1)
    with_nan = d.copy()
    with_nan[[2, 9]] = np.nan
    kept = np.delete(d, [2, 9])
    assert signed_rank_pvalues(with_nan[None])[0] == pytest.approx(
        scipy_p(kept, np.zeros_like(kept), "greater"), abs=1e-12)


def test_signed_rank_shape_and_bad_alternative():
    assert signed_rank_pvalues(np.ones((3, 4, 6))).shape == (3, 4)
    with pytest.raises(ValueError, match="alternative"):
        signed_rank_pvalues(np.ones(3), alternative="two-sided")


@pytest.mark.parametrize("larger_is_better", [True, False])
@pytest.mark.parametrize("na_treat", [None, 0.0])
def test_pairwise_matrix_equals_scipy_calls(larger_is_better, na_treat):
    rng = np.random.default_rng(11)
    values = (rng.integers(0, 8, size=(15, 5)) / 8.0)
    values[3, 1] = np.nan
    p = pairwise_pvalue_matrix(values, larger_is_better=larger_is_better, na_treat=na_treat)
    alternative = "greater" if larger_is_better else "less"
    for i, j in itertools.permutations(range(5), 2):
        x, y = values[:, i], values[:, j]
        if na_treat is None:
            keep = ~(np.isnan(x) | np.isnan(y))
            x, y = x[keep], y[keep]
        else:
            x, y = np.nan_to_num(x, nan=na_treat), np.nan_to_num(y, nan=na_treat)
        assert p[i, j] == pytest.approx(scipy_p(x, y, alternative), abs=1e-12)
    assert np.isnan(np.diag(p)).all()


def _holm_reference(p: list[float]) -> list[float]:
    """R's p.adjust(method = "holm") written out."""
    m = len(p)
    order = sorted(range(m), key=lambda k: p[k])
    adjusted = [0.0] * m
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, (m - rank) * p[k])
        adjusted[k] = min(1.0, running)
    return adjusted


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.001, 0.004, 0.01, 0.02, 0.2, 0.5, 1.0]) | st.floats(0, 1),
                min_size=1, max_size=30))
def test_holm_matches_reference(p):
    np.testing.assert_allclose(holm_adjust(np.array(p)), _holm_reference(p), rtol=0, atol=1e-15)


def test_holm_counts_all_zero_pairs_in_m():
    """An all-zero pair has p = 1 but still counts in Holm's m."""
    values = np.array([[1.0, 1.0, 0.0]] * 12) + np.linspace(0, 0.1, 12)[:, None] * [0, 0, 1]
    values[:, 0] += np.arange(12) * 0.01  # algorithm 0 clearly above 2
    values[:, 1] = values[:, 0]  # 0 and 1 identical: every difference zero
    raw = pairwise_pvalue_matrix(values, larger_is_better=True)
    assert raw[0, 1] == 1.0 and raw[1, 0] == 1.0
    off = ~np.eye(3, dtype=bool)
    expected = np.array(_holm_reference(list(raw[off])))
    np.testing.assert_allclose(holm_adjust(raw)[off], expected, atol=1e-15)
    assert decision_matrix(values, larger_is_better=True).shape == (3, 3)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 9).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, (4, n), elements=st.integers(1, 4).map(float)),
            hnp.arrays(np.float64, n, elements=st.integers(1, 4).map(float)),
        )
    )
)
def test_kendall_tau_b_equals_scipy(pair):
    rankings, reference = pair
    ours = kendall_tau_b(rankings, reference)
    for k in range(rankings.shape[0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = stats.kendalltau(rankings[k], reference).statistic
        if np.isnan(expected):
            assert np.isnan(ours[k])
        else:
            assert abs(ours[k] - expected) <= 1e-12


def test_kendall_tau_b_undefined_when_all_tied():
    assert np.isnan(kendall_tau_b(np.ones((3, 4)), [1, 2, 3, 4])).all()
    assert np.isnan(kendall_tau_b(np.array([[1, 2, 3.0]]), [1, 1, 1])).all()
    assert np.isnan(kendall_tau_b(np.array([[1.0]]), [1.0])).all()


def test_kendall_tau_b_large_chunked():
    rng = np.random.default_rng(5)
    x = rng.integers(1, 30, size=(3000, 40)).astype(float)
    y = rng.permutation(40).astype(float)
    ours = kendall_tau_b(x, y)
    for k in (0, 1234, 2999):
        assert ours[k] == pytest.approx(stats.kendalltau(x[k], y).statistic, abs=1e-12)


def test_significant_at_p_equal_to_alpha_as_challenger_decides():
    from harness.ranking.stats import significant

    p = np.array([[np.nan, 0.05, 0.0500000001], [0.049, np.nan, 1.0]])
    assert significant(p, 0.05).tolist() == [[0, 1, 0], [1, 0, 0]]
