"""The challenge's ranking method over all its metrics, its bootstrap, and every method side by side.

`method = "flare"` (the default) is FLARE22's pooled score (`ranks.flare_score`, bootstrapped in
`bootstrap.py` by matrix products). Every other method ranks each metric on its own
(`methods.rank_by`, or grand-challenge's position scoring over the metrics' means) and, with
several metrics, ranks the weighted mean of the metric ranks (ties as configured). Its bootstrap
re-runs that whole ranking on each draw of cases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.ranking.bootstrap import BootstrapResult, draw_cases
from harness.ranking.config import RankingConfig, RankingMethod
from harness.ranking.methods import (
    Method,
    dropped_by_na_rm,
    grand_challenge_rank,
    off_the_leaderboard,
    r_mean,
    rank_by,
    rank_na2,
)
from harness.ranking.stats import kendall_tau_b

Values = Mapping[str, np.ndarray]  # metric -> (cases x algorithms), NaN = missing


def method_for(config: RankingConfig, metric: str, *, kind: RankingMethod | None = None,
               aggregate: str | None = None) -> Method:
    """The challengeR method of `config` (or `kind`/`aggregate`) for one metric: "worst" as
    na_treat is the metric's worst value when it has one, else missing values are left out."""
    rule = config.metric(metric)
    na_treat: float | str = config.na_treat
    if na_treat == "worst":
        na_treat = "na.rm" if rule.worst_value is None else rule.worst_value
    return Method(kind=kind or config.method, aggregate=aggregate or config.aggregate, na_treat=na_treat,
                  ties=config.ties, alpha=config.alpha, p_adjust=config.test_p_adjust)


def rank_values(values: Values, config: RankingConfig, *, method: RankingMethod | None = None,
                aggregate: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(score, rank) per algorithm under `method` (default the config's), not "flare"."""
    kind = RankingMethod(method or config.method)
    metrics = list(values)
    if not metrics:
        raise DataError("no metric to rank; the table holds none of the config's metrics")
    if kind.grand_challenge:
        means = np.vstack([_column_means(values[m]) for m in metrics])
        better = [config.metric(m).larger_is_better for m in metrics]
        return grand_challenge_rank(means, larger_is_better=better, scoring=kind)
    per_metric = [rank_by(values[m], method_for(config, m, kind=kind, aggregate=aggregate),
                          larger_is_better=config.metric(m).larger_is_better) for m in metrics]
    if len(per_metric) == 1:
        return per_metric[0]
    weights = np.array([config.metric(m).weight for m in metrics])
    ranks = np.vstack([rank for _, rank in per_metric])
    with np.errstate(invalid="ignore"):
        score = (weights[:, None] * ranks).sum(axis=0) / weights.sum()
    return score, rank_na2(score, ties=config.ties, larger_is_better=False)


def left_out(values: Values, config: RankingConfig, algorithms: Sequence[str]) -> tuple[str, ...]:
    """One line per algorithm the configured method leaves out of the ranking, naming it and why:
    challengeR's `na.treat = "na.rm"` drops an algorithm without any value of a metric (aggregate-
    and test-then-rank); grand-challenge leaves a result without one of its metrics off the board."""
    kind = config.method
    notes: list[str] = []
    if kind.grand_challenge:
        metrics = list(values)[:1] if kind is RankingMethod.GC_ABSOLUTE else list(values)
        means = np.vstack([_column_means(values[m]) for m in metrics])
        for a in np.flatnonzero(off_the_leaderboard(means, scoring=kind)):
            missing = [m for m, row in zip(metrics, means, strict=True) if np.isnan(row[a])]
            notes.append(f"{algorithms[int(a)]}: no {', '.join(missing)} value; grand-challenge leaves a result without "
                         "one of the leaderboard's metrics off the leaderboard")
    elif kind in (RankingMethod.AGGREGATE_THEN_RANK, RankingMethod.TEST_THEN_RANK):
        for m, matrix in values.items():
            method = method_for(config, m)
            for a in np.flatnonzero(dropped_by_na_rm(matrix, method)):
                notes.append(f"{algorithms[int(a)]}: no {m} value on any case; challengeR's na.treat = \"na.rm\" drops it "
                             f"from the {method.label} ranking of {m} (not ranked last, not counted among the others)")
    return tuple(notes)


def _column_means(matrix: np.ndarray) -> np.ndarray:
    out = np.full(matrix.shape[1], np.nan)
    for a in range(matrix.shape[1]):
        present = matrix[:, a][~np.isnan(matrix[:, a])]
        if present.size:
            out[a] = r_mean(present)
    return out


def bootstrap_values(
    values: Values,
    config: RankingConfig,
    *,
    algorithms: Sequence[str],
    n_draws: int,
    seed: int | None,
    case_draws: np.ndarray | Sequence[Sequence[int]] | None = None,
) -> BootstrapResult:
    """The config's (non-FLARE) ranking re-run on each bootstrap draw of cases (textbook: a case
    drawn k times counts k times); Kendall's tau-b of each draw against the full ranking."""
    n_cases = next(iter(values.values())).shape[0]
    if n_cases < 1:
        raise DataError("no cases to bootstrap; the scores table has no cases")
    full_scores, full_ranks = rank_values(values, config)
    explicit = case_draws is not None
    index = np.asarray(case_draws if case_draws is not None else draw_cases(n_cases, n_draws, seed=seed), dtype=np.intp)
    scores = np.empty((index.shape[0], len(algorithms)))
    ranks = np.empty_like(scores)
    for d, rows in enumerate(index):
        scores[d], ranks[d] = rank_values({m: v[rows] for m, v in values.items()}, config)
    tau = kendall_tau_b(np.nan_to_num(ranks, nan=len(algorithms) + 1.0), np.nan_to_num(full_ranks, nan=len(algorithms) + 1.0))
    return BootstrapResult(algorithms=tuple(algorithms), variant="textbook", seed=None if explicit else seed,
                           full_scores=full_scores, full_ranks=full_ranks, scores=scores, ranks=ranks, tau=tau)


def describe_method(config: RankingConfig) -> str:
    """One line naming the ranking method and its settings, for the terminal and the report."""
    several = "per metric, then the weighted mean of the metric ranks ranked" if len(config.metrics) > 1 else ""
    text = {
        RankingMethod.FLARE: "score = weighted mean of every per-case rank (FLARE22)",
        RankingMethod.AGGREGATE_THEN_RANK: f"aggregate-then-rank by the {config.aggregate} (challengeR; na_treat "
                                           f"{config.na_treat})",
        RankingMethod.RANK_THEN_AGGREGATE: "rank-then-aggregate: mean per-case rank (challengeR)",
        RankingMethod.TEST_THEN_RANK: f"test-then-rank: share of significant one-sided Wilcoxon wins, alpha "
                                      f"{config.alpha:g}, p adjustment {config.test_p_adjust} (challengeR)",
        RankingMethod.GC_ABSOLUTE: "grand-challenge absolute: the first metric's mean",
        RankingMethod.GC_MEAN_POSITION: "grand-challenge: mean of the positions by each metric's mean",
        RankingMethod.GC_MEDIAN_POSITION: "grand-challenge: median of the positions by each metric's mean",
    }[config.method]
    if config.method.challenger and several:
        text += f", {several}"
    return text + ("" if config.ties == "min" else f"; ties {config.ties}")


# The methods the report's line plot compares: (column label, method, aggregate).
COMPARED = (
    ("FLARE score", RankingMethod.FLARE, "mean"),
    ("aggregate-then-rank (mean)", RankingMethod.AGGREGATE_THEN_RANK, "mean"),
    ("aggregate-then-rank (median)", RankingMethod.AGGREGATE_THEN_RANK, "median"),
    ("rank-then-aggregate", RankingMethod.RANK_THEN_AGGREGATE, "mean"),
    ("test-then-rank", RankingMethod.TEST_THEN_RANK, "mean"),
    ("grand-challenge mean position", RankingMethod.GC_MEAN_POSITION, "mean"),
)


def compared_label(config: RankingConfig) -> str:
    """The `COMPARED` column of the config's own method and aggregate ("" when it is not compared)."""
    return next((label for label, kind, aggregate in COMPARED if kind is config.method
                 and (kind is not RankingMethod.AGGREGATE_THEN_RANK or aggregate == config.aggregate)), "")


def compare_methods(values: Values, config: RankingConfig, flare_ranks: np.ndarray,
                    algorithms: Sequence[str]) -> pd.DataFrame:
    """Each algorithm's rank under every method of `COMPARED` (columns), the configured
    settings otherwise; `flare_ranks` is the FLARE score's rank, computed elsewhere."""
    columns = {}
    for label, kind, aggregate in COMPARED:
        columns[label] = flare_ranks if kind is RankingMethod.FLARE else rank_values(values, config, method=kind,
                                                                          aggregate=aggregate)[1]
    return pd.DataFrame(columns, index=pd.Index(list(algorithms), name="algorithm"))


__all__ = ["COMPARED", "bootstrap_values", "compared_label", "compare_methods", "describe_method", "left_out", "method_for", "rank_values"]
