"""challengeR's ranking methods for one metric, with R's own arithmetic, and grand-challenge's.

A ranking method turns a (cases x algorithms) value matrix (NaN = missing or no row) into one
aggregate and one rank per algorithm. Every choice is challengeR's (1.0.5), so that its goldens
are reproduced to the last bit:

- `aggregate_then_rank`: `na_treat` first (a number replaces each missing value; "na.rm" drops
  them), then the aggregate per algorithm: R's `mean` (a long-double sum, divided, plus a
  long-double correction pass: mathematically equal means tie, whatever the order of the cases),
  R's `median` (the mean of the two middle values, by the same `mean`) or R's `quantile(type = 7)`;
  then `rank_na2` of the aggregates.
- `rank_then_aggregate`: per-case `rank_na2`, the mean rank per algorithm (R's `mean`, missing
  ranks left out), then `rank_na2` of the means, smaller first.
- `test_then_rank`: one-sided paired Wilcoxon signed-rank tests (normal approximation with
  continuity correction, as `wilcox.test(exact = FALSE)`), significant when the (adjusted)
  p <= alpha; the share of significant wins, ranked larger first.
- `rank_na2` is challengeR's: base R `rank` with `ties`, and a missing value ranked after the
  worst present one (ties "min": the worst rank + 1; "average": the worst rank + the mean of
  1..k for k missing); for other `ties` a missing value stays unranked (NaN), as in challengeR.

grand-challenge's leaderboards (`gc_*`): `gc_absolute` ranks by the mean of one metric (its
"absolute" scoring); with several metrics, `gc_mean_position` and `gc_median_position` rank each
metric's mean and then rank the mean (or median) of an algorithm's positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.ranking.config import RankingMethod, parse_aggregate
from harness.ranking.ranks import rank_rows_min
from harness.ranking.stats import holm_adjust, pairwise_pvalue_matrix, significant

TIES = ("min", "max", "average", "first", "last")
METHODS = tuple(m for m in RankingMethod if m.challenger)


def r_mean(values: np.ndarray) -> float:
    """R's `mean` of a double vector: a sequential long-double sum divided by n, then the mean
    of the residuals (also in long double) added; rounded to double once at the end."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n == 0:
        return math.nan
    wide = x.astype(np.longdouble)
    s = np.cumsum(wide)[-1] / np.longdouble(n)  # cumsum: strictly left to right, as R's loop
    if np.isfinite(s):
        s = s + np.cumsum(wide - s)[-1] / np.longdouble(n)
    return float(s)


def r_median(values: np.ndarray) -> float:
    """R's `median`: the middle value, or R's `mean` of the two middle values."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return math.nan
    half = (n + 1) // 2
    if n % 2 == 1:
        return float(x[half - 1])
    return r_mean(x[half - 1:half + 1])


def r_quantile(values: np.ndarray, prob: float) -> float:
    """R's `quantile(x, prob, type = 7)`: (1 - h) x[lo] + h x[hi] in double, as R computes it."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return math.nan
    index = 1.0 + max(n - 1, 0) * prob
    lo, hi = math.floor(index), math.ceil(index)
    q = float(x[lo - 1])
    h = index - lo
    if index > lo and x[hi - 1] != q:
        q = (1.0 - h) * q + h * float(x[hi - 1])
    return q


def r_rank(values: np.ndarray, ties: str = "min") -> np.ndarray:
    """Base R's `rank(x, ties.method = ties, na.last = "keep")`: smaller first, NaN stays NaN."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    x = np.asarray(values, dtype=np.float64)
    ranks = np.full(x.shape, np.nan)
    present = np.flatnonzero(~np.isnan(x))
    order = present[np.argsort(x[present], kind="stable")]  # stable: "first" keeps input order
    sorted_values = x[order]
    position = 0
    while position < order.size:
        end = position
        while end + 1 < order.size and sorted_values[end + 1] == sorted_values[position]:
            end += 1
        group = order[position:end + 1]
        first, last = position + 1.0, end + 1.0
        if ties == "min":
            ranks[group] = first
        elif ties == "max":
            ranks[group] = last
        elif ties == "average":
            ranks[group] = (first + last) / 2.0
        elif ties == "first":
            ranks[group] = np.arange(first, last + 1.0)
        else:  # "last": reverse input order within the tie
            ranks[group] = np.arange(last, first - 1.0, -1.0)
        position = end + 1
    return ranks


def rank_na2(values: np.ndarray, *, ties: str = "min", larger_is_better: bool = False) -> np.ndarray:
    """challengeR's `rankNA2`: `r_rank` of the (oriented) values; missing values after the worst."""
    x = np.asarray(values, dtype=np.float64)
    ranks = r_rank(-x if larger_is_better else x, ties)
    missing = np.isnan(x)
    if missing.any():
        worst = 0.0 if missing.all() else float(np.nanmax(ranks))
        if ties == "min":
            ranks[missing] = worst + 1.0
        elif ties == "average":
            ranks[missing] = worst + r_mean(np.arange(1.0, missing.sum() + 1.0))
    return ranks


@dataclass(frozen=True)
class Method:
    """One ranking method and its settings (challengeR's argument names in brackets).

    - `kind`: one of `METHODS`.
    - `aggregate`: "mean", "median" or a quantile "q25" / "q0.25" (`FUN`); aggregate-then-rank.
    - `na_treat`: a number that replaces missing values, or "na.rm" (`na.treat`).
    - `ties`: base R's `ties.method`.
    - `alpha`, `p_adjust`: test-then-rank ("none" or "holm").
    """

    kind: RankingMethod = RankingMethod.AGGREGATE_THEN_RANK
    aggregate: str = "mean"
    na_treat: float | str = "na.rm"
    ties: str = "min"
    alpha: float = 0.05
    p_adjust: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in METHODS:
            raise ValueError(f"ranking method must be one of {', '.join(METHODS)}, got {self.kind!r}")
        object.__setattr__(self, "kind", RankingMethod(self.kind))
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {', '.join(TIES)}, got {self.ties!r}")
        if isinstance(self.na_treat, str) and self.na_treat != "na.rm":
            raise ValueError(f"na_treat must be a number or 'na.rm', got {self.na_treat!r}")
        aggregate_function(self.aggregate)  # raises for an unknown aggregate
        if self.p_adjust not in ("none", "holm"):
            raise ValueError(f"p_adjust must be 'none' or 'holm', got {self.p_adjust!r}")

    @property
    def label(self) -> str:
        """A short name for tables and the line plot, e.g. `aggregate-then-rank (median)`."""
        if self.kind is RankingMethod.AGGREGATE_THEN_RANK:
            return f"aggregate-then-rank ({self.aggregate})"
        if self.kind is RankingMethod.RANK_THEN_AGGREGATE:
            return "rank-then-aggregate (mean)"
        return f"test-then-rank (alpha {self.alpha:g}{', Holm' if self.p_adjust == 'holm' else ''})"


def aggregate_function(name: str):  # type: ignore[no-untyped-def]
    """The aggregate named `name` (`config.parse_aggregate`) as a function of a 1-D array (no NaN)."""
    parsed = parse_aggregate(name)
    if parsed == "mean":
        return r_mean
    if parsed == "median":
        return r_median
    prob = float(parsed)
    return lambda x: r_quantile(x, prob)


def treated(values: np.ndarray, na_treat: float | str) -> np.ndarray:
    """challengeR's `na.treat`: a number replaces each missing value; "na.rm" keeps them missing."""
    x = np.asarray(values, dtype=np.float64)
    if isinstance(na_treat, str):  # "na.rm": missing values are left out of each aggregate
        return x
    return np.where(np.isnan(x), float(na_treat), x)


def _per_algorithm(values: np.ndarray, function) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.empty(values.shape[1])
    for a in range(values.shape[1]):
        column = values[:, a]
        present = column[~np.isnan(column)]
        out[a] = function(present) if present.size else math.nan
    return out


def rank_by(values: np.ndarray, method: Method, *, larger_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """(aggregate, rank) per algorithm of a (cases x algorithms) matrix, NaN = missing.

    The aggregate is the mean/median/quantile value, the mean rank, or the share of significant
    wins, by `method.kind`."""
    x = np.asarray(values, dtype=np.float64)
    if method.kind is RankingMethod.RANK_THEN_AGGREGATE:
        per_case = per_case_ranks(x, ties=method.ties, larger_is_better=larger_is_better)
        means = _per_algorithm(per_case, r_mean)
        return means, rank_na2(means, ties=method.ties, larger_is_better=False)
    # Under "na.rm" challengeR removes the missing rows before anything else (`Aggregate`,
    # `decision.challenge`): an algorithm without any value is gone, neither ranked nor counted.
    kept = np.flatnonzero(~dropped_by_na_rm(x, method))
    aggregate = np.full(x.shape[1], math.nan)
    rank = np.full(x.shape[1], math.nan)
    if method.kind is RankingMethod.AGGREGATE_THEN_RANK:
        aggregate[kept] = _per_algorithm(treated(x[:, kept], method.na_treat), aggregate_function(method.aggregate))
        rank[kept] = rank_na2(aggregate[kept], ties=method.ties, larger_is_better=larger_is_better)
        return aggregate, rank
    wins = significant_wins(treated(x[:, kept], method.na_treat), larger_is_better=larger_is_better,
                            alpha=method.alpha, p_adjust=method.p_adjust)
    n = kept.size
    aggregate[kept] = wins / (n - 1) if n > 1 else np.full(n, math.nan)
    rank[kept] = rank_na2(aggregate[kept], ties=method.ties, larger_is_better=True)
    return aggregate, rank


def dropped_by_na_rm(values: np.ndarray, method: Method) -> np.ndarray:
    """Per algorithm, whether `method` leaves it out: under `na_treat = "na.rm"`, aggregate-then-rank
    and test-then-rank drop every missing value, so an algorithm without any value is left out (its
    aggregate and rank NaN), not ranked last; wins are shared among, and Holm adjusts over, the others."""
    x = np.asarray(values, dtype=np.float64)
    if method.kind is RankingMethod.RANK_THEN_AGGREGATE or not isinstance(method.na_treat, str) or x.shape[0] == 0:
        return np.zeros(x.shape[1], bool)
    return np.asarray(np.isnan(x).all(axis=0), dtype=bool)


def per_case_ranks(values: np.ndarray, *, ties: str = "min", larger_is_better: bool) -> np.ndarray:
    """challengeR's `rank()` of a challenge: `rank_na2` within each case (row); ties "min" is
    `ranks.rank_rows_min`, the same ranks in one vectorised pass."""
    x = np.asarray(values, dtype=np.float64)
    if ties == "min":
        return rank_rows_min(-x if larger_is_better else x)
    return np.vstack([rank_na2(row, ties=ties, larger_is_better=larger_is_better) for row in x]) if len(x) else x


def significant_wins(values: np.ndarray, *, larger_is_better: bool, alpha: float, p_adjust: str) -> np.ndarray:
    """Per algorithm, how many others it beats with (adjusted) p <= alpha; each pair is tested on
    the cases both have (after `na_treat`, so on all cases when missing values were replaced)."""
    p = pairwise_pvalue_matrix(values, larger_is_better=larger_is_better)
    if p_adjust == "holm":
        p = holm_adjust(p)
    return significant(p, alpha).sum(axis=1).astype(np.float64)


GC_METHODS = tuple(m for m in RankingMethod if m.grand_challenge)


def grand_challenge_rank(aggregates: np.ndarray, *, larger_is_better: list[bool],
                         scoring: RankingMethod | str) -> tuple[np.ndarray, np.ndarray]:
    """grand-challenge's leaderboard: `aggregates` is (metrics x algorithms), each metric's mean.

    `gc_absolute` ranks by the first metric's value; `gc_mean_position` / `gc_median_position`
    rank each metric (ties min, a missing value last), then rank the mean (median) position,
    smaller first. Returns (score, rank) per algorithm."""
    a = np.atleast_2d(np.asarray(aggregates, dtype=np.float64))
    if scoring not in GC_METHODS:
        raise ValueError(f"grand-challenge scoring must be one of {', '.join(GC_METHODS)}, got {scoring!r}")
    scoring = RankingMethod(scoring)
    kept = np.flatnonzero(~off_the_leaderboard(a, scoring=scoring))
    score = np.full(a.shape[1], math.nan)
    rank = np.full(a.shape[1], math.nan)
    if scoring is RankingMethod.GC_ABSOLUTE:
        score[kept] = a[0, kept]
        rank[kept] = rank_na2(score[kept], ties="min", larger_is_better=larger_is_better[0])
        return score, rank
    positions = np.vstack([rank_na2(row[kept], ties="min", larger_is_better=better)
                           for row, better in zip(a, larger_is_better, strict=True)])
    combine = r_mean if scoring is RankingMethod.GC_MEAN_POSITION else r_median
    score[kept] = [combine(positions[:, k]) for k in range(kept.size)]
    rank[kept] = rank_na2(score[kept], ties="min", larger_is_better=False)
    return score, rank


def off_the_leaderboard(aggregates: np.ndarray, *, scoring: RankingMethod | str) -> np.ndarray:
    """Per algorithm, whether grand-challenge leaves it off the leaderboard: a result without one
    of the metrics it ranks on (the first under `gc_absolute`, every one under the position scores)
    is filtered out before any rank (`_filter_valid_results` in grand-challenge's `rank_results`)."""
    a = np.atleast_2d(np.asarray(aggregates, dtype=np.float64))
    return np.asarray(np.isnan(a[:1] if RankingMethod(scoring) is RankingMethod.GC_ABSOLUTE else a).any(axis=0), dtype=bool)


__all__ = [
    "GC_METHODS",
    "METHODS",
    "Method",
    "TIES",
    "aggregate_function",
    "dropped_by_na_rm",
    "grand_challenge_rank",
    "off_the_leaderboard",
    "per_case_ranks",
    "r_mean",
    "r_median",
    "r_quantile",
    "r_rank",
    "rank_by",
    "rank_na2",
    "significant_wins",
    "treated",
]
