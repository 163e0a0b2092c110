"""Per-case ranks and the rank-based ranking methods (challengeR 1.0.5 semantics).

Ties take the best rank ("min": 1, 2, 2, 4). Within a case every missing or failed value shares
the worst rank, the highest rank present + 1 (challengeR's `rankNA2`); a pair (algorithm, case)
without a row counts as missing. A case where every value is missing ranks everyone 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.ranking.config import RankingConfig
from harness.ranking.table import single_metric, table_axes, value_matrix


def rank_rows_min(values: np.ndarray) -> np.ndarray:
    """Rank each row of a 2-D array, smaller first, ties "min"; NaN gets the row's worst rank.

    NaN entries share (highest rank present in the row) + 1; a row of NaN ranks all 1.
    Returns float ranks of the same shape. Vectorised: one argsort for the whole array.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"rank_rows_min expects a 2-D array, got shape {x.shape}")
    n_cols = x.shape[1]
    if n_cols == 0:
        return np.empty_like(x)
    order = np.argsort(x, axis=1)  # NaN sorts last; the order within ties is irrelevant
    s = np.take_along_axis(x, order, axis=1)
    new_run = np.ones_like(s, dtype=bool)
    new_run[:, 1:] = s[:, 1:] != s[:, :-1]
    pos = np.broadcast_to(np.arange(n_cols), s.shape)
    first_of_run = np.maximum.accumulate(np.where(new_run, pos, 0), axis=1)
    ranks = np.empty_like(x)
    np.put_along_axis(ranks, order, first_of_run + 1.0, axis=1)
    missing = np.isnan(x)
    if missing.any():
        worst_present = np.where(missing, 0.0, ranks).max(axis=1)
        ranks = np.where(missing, worst_present[:, None] + 1.0, ranks)
    return ranks


def rank_min(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """`rank_rows_min` of one vector."""
    return rank_rows_min(np.asarray(values, dtype=float)[None, :])[0]


@dataclass(frozen=True, eq=False)
class RankMatrix:
    """Per-case ranks of one metric: `ranks[c, a]` for case `cases[c]`, algorithm `algorithms[a]`.

    `values` keeps the ranked values (NaN = missing) and `missing` marks the entries that took
    the worst rank because their value was missing.
    """

    metric: str
    algorithms: tuple[str, ...]
    cases: tuple[str, ...]
    values: np.ndarray
    ranks: np.ndarray
    missing: np.ndarray
    larger_is_better: bool

    @classmethod
    def from_values(
        cls,
        values: np.ndarray,
        *,
        algorithms: Sequence[str],
        cases: Sequence[str],
        larger_is_better: bool,
        metric: str = "",
    ) -> RankMatrix:
        v = np.asarray(values, dtype=float)
        if v.shape != (len(cases), len(algorithms)):
            raise ValueError(f"values shape {v.shape} != (cases, algorithms) "
                             f"({len(cases)}, {len(algorithms)})")
        oriented = -v if larger_is_better else v
        return cls(
            metric=metric,
            algorithms=tuple(algorithms),
            cases=tuple(cases),
            values=v,
            ranks=rank_rows_min(oriented),
            missing=np.isnan(v),
            larger_is_better=larger_is_better,
        )

    def to_frame(self) -> pd.DataFrame:
        """Long form: algorithm, case, value, rank (ordered by case, then algorithm)."""
        n_c, n_a = self.ranks.shape
        return pd.DataFrame(
            {
                "algorithm": np.tile(np.asarray(self.algorithms, dtype=object), n_c),
                "case": np.repeat(np.asarray(self.cases, dtype=object), n_a),
                "value": self.values.ravel(),
                "rank": self.ranks.ravel().astype(np.int64),  # "min" ranks are whole
            }
        )


def rank_matrix(
    scores: pd.DataFrame,
    *,
    larger_is_better: bool,
    metric: str | None = None,
    algorithms: Sequence[str] | None = None,
    cases: Sequence[str] | None = None,
) -> RankMatrix:
    """Per-case ranks of one metric of a table (columns algorithm, case, value[, metric]).

    Algorithms and cases default to the sorted ones of the table; pairs without a row are
    missing.
    """
    rows = single_metric(scores, metric=metric)
    if algorithms is None or cases is None:
        all_algs, all_cases = table_axes(rows)
        algorithms = all_algs if algorithms is None else algorithms
        cases = all_cases if cases is None else cases
    _check_unique(rows)
    values = value_matrix(rows, algorithms=algorithms, cases=cases)
    name = metric if metric is not None else _metric_name(rows)
    return RankMatrix.from_values(
        values, algorithms=algorithms, cases=cases, larger_is_better=larger_is_better, metric=name
    )


def per_case_ranks(
    scores: pd.DataFrame, *, larger_is_better: bool, metric: str | None = None
) -> pd.DataFrame:
    """Per-case ranks in long form: algorithm, case, value, rank (challengeR `rank(...)$data`)."""
    return rank_matrix(scores, larger_is_better=larger_is_better, metric=metric).to_frame()


def rank_then_aggregate(
    scores: pd.DataFrame, *, larger_is_better: bool, metric: str | None = None
) -> pd.DataFrame:
    """Mean per-case rank per algorithm (`rank_mean`), then its rank (ties min).

    Indexed by algorithm, columns rank_mean and rank.
    """
    rm = rank_matrix(scores, larger_is_better=larger_is_better, metric=metric)
    rank_sum = rm.ranks.sum(axis=0)
    return pd.DataFrame(
        {"rank_mean": rm.ranks.mean(axis=0), "rank": rank_min(rank_sum).astype(int)},
        index=pd.Index(rm.algorithms, name="algorithm"),
    )


def aggregate_then_rank(
    scores: pd.DataFrame,
    *,
    larger_is_better: bool,
    na_treat: float | None = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """Mean value per algorithm, then its rank (ties min); columns value_mean and rank.

    `na_treat` replaces missing values (and pairs without a row) before the mean, as
    challengeR's `na.treat`; None averages the values present (an algorithm with none is
    missing and ranks last).
    """
    rm = rank_matrix(scores, larger_is_better=larger_is_better, metric=metric)
    values = rm.values if na_treat is None else np.where(rm.missing, float(na_treat), rm.values)
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    sums = np.where(present, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    oriented = -means if larger_is_better else means
    return pd.DataFrame(
        {"value_mean": means, "rank": rank_min(oriented).astype(int)},
        index=pd.Index(rm.algorithms, name="algorithm"),
    )


def weighted_rank_sums(
    matrices: Mapping[str, RankMatrix], weights: Mapping[str, float]
) -> tuple[np.ndarray, float]:
    """Pooled (cases x algorithms) matrix sum_m w_m * ranks_m, and the total weight sum_m w_m."""
    first = _common_axes(matrices)
    combined = np.zeros((len(first.cases), len(first.algorithms)))
    total = 0.0
    for name, rm in matrices.items():
        w = float(weights.get(name, 1.0))
        combined += w * rm.ranks
        total += w
    return combined, total


def flare_score(
    matrices: Mapping[str, RankMatrix], weights: Mapping[str, float]
) -> pd.DataFrame:
    """FLARE's score: weighted mean of every (case, metric) rank per algorithm, then its rank.

    Indexed by algorithm, columns score (the weighted mean rank, lower is better) and rank
    (ties min). Not challengeR's `consensus`, which averages each metric's final ranks.
    """
    combined, total = weighted_rank_sums(matrices, weights)
    if total <= 0:
        raise DataError("the metrics being ranked all have weight 0; give one a positive weight")
    sums = combined.sum(axis=0)
    n_cases = combined.shape[0]
    first = next(iter(matrices.values()))
    return pd.DataFrame(
        {"score": sums / (total * n_cases), "rank": rank_min(sums).astype(int)},
        index=pd.Index(first.algorithms, name="algorithm"),
    )


def rank_matrices(
    table: pd.DataFrame, config: RankingConfig
) -> dict[str, RankMatrix]:
    """Per-case rank matrices of every config metric present in a tidy table, on shared axes.

    Every algorithm and case of the whole table is on every matrix, so an algorithm without any
    row of a metric is missing (worst rank) on each case of it.
    """
    algorithms, cases = table_axes(table)
    present = set(table["metric"])
    out: dict[str, RankMatrix] = {}
    for rule in config.metrics:
        if rule.name not in present:
            continue
        values = value_matrix(table, metric=rule.name, algorithms=algorithms, cases=cases)
        out[rule.name] = RankMatrix.from_values(
            values, algorithms=algorithms, cases=cases,
            larger_is_better=rule.larger_is_better, metric=rule.name,
        )
    return out


def _common_axes(matrices: Mapping[str, RankMatrix]) -> RankMatrix:
    if not matrices:
        raise DataError("no metric to rank; the table holds none of the config's metrics")
    items = list(matrices.values())
    first = items[0]
    for rm in items[1:]:
        if rm.algorithms != first.algorithms or rm.cases != first.cases:
            raise ValueError(f"rank matrices {first.metric!r} and {rm.metric!r} do not share "
                             "algorithms and cases; build them with rank_matrices()")
    return first


def _check_unique(rows: pd.DataFrame) -> None:
    dup = rows.duplicated(subset=["algorithm", "case"])
    if dup.any():
        first = rows[dup].iloc[0]
        raise DataError(
            f"more than one value for algorithm {first['algorithm']!r}, case {first['case']!r}; "
            "keep one row per pair"
        )


def _metric_name(rows: pd.DataFrame) -> str:
    if "metric" in rows.columns and len(rows):
        return str(rows["metric"].iloc[0])
    return ""


__all__ = [
    "RankMatrix",
    "aggregate_then_rank",
    "flare_score",
    "per_case_ranks",
    "rank_matrices",
    "rank_matrix",
    "rank_min",
    "rank_rows_min",
    "rank_then_aggregate",
    "weighted_rank_sums",
]
