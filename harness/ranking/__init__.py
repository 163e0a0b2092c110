"""Ranking and its statistics: pure functions over a tidy scores table (challengeR semantics).

- Per-case ranks, rank-then-aggregate, aggregate-then-rank, test-then-rank (challengeR 1.0.5).
- FLARE's score: every (case, metric) rank pooled with weights, then ranked (`flare_score`).
- Vectorised bootstrap of cases (textbook, or challengeR's pooled duplicates), Kendall's tau-b,
  rank intervals; vectorised one-sided Wilcoxon signed-rank tests with Holm's adjustment.
- `rank_challenge(table, config, organ_table=...)`: all of it for `harness rank` and the report,
  each organ ranked as a task (its consensus and stability) included.

The names below are the public API; the report imports nothing else from the ranking.

Only `harness.ranking.io` touches the disk.
"""

from harness.ranking.bootstrap import (
    BootstrapResult,
    TauSummary,
    bootstrap_ranking,
    draw_cases,
    draw_counts,
    pooled_rank_terms,
)
from harness.ranking.challenge import ChallengeRanking, rank_challenge
from harness.ranking.combine import compared_label, describe_method
from harness.ranking.config import (
    BOOTSTRAP_VARIANTS,
    EXTRA_METRIC_RULES,
    FLARE22_RANKING,
    RANKING_METHODS,
    MetricRule,
    RankingConfig,
    RankingMethod,
    load_ranking_config,
    ranking_config_from_dict,
)
from harness.ranking.ranks import (
    RankMatrix,
    aggregate_then_rank,
    flare_score,
    per_case_ranks,
    rank_matrices,
    rank_matrix,
    rank_min,
    rank_rows_min,
    rank_then_aggregate,
)
from harness.ranking.stats import (
    decision_matrix,
    holm_adjust,
    kendall_tau_b,
    pairwise_pvalue_matrix,
    pairwise_pvalues,
    signed_rank_pvalues,
    significance_matrix,
    test_then_rank,
)
from harness.ranking.table import apply_failure_values, check_metrics, failure_values, succeeded, to_tidy
from harness.ranking.tasks import OrganTasks, TaskRanking

__all__ = [
    "BOOTSTRAP_VARIANTS",
    "EXTRA_METRIC_RULES",
    "FLARE22_RANKING",
    "RANKING_METHODS",
    "BootstrapResult",
    "ChallengeRanking",
    "MetricRule",
    "OrganTasks",
    "RankMatrix",
    "RankingConfig",
    "RankingMethod",
    "TaskRanking",
    "TauSummary",
    "aggregate_then_rank",
    "apply_failure_values",
    "bootstrap_ranking",
    "check_metrics",
    "compared_label",
    "decision_matrix",
    "describe_method",
    "draw_cases",
    "draw_counts",
    "failure_values",
    "flare_score",
    "holm_adjust",
    "kendall_tau_b",
    "load_ranking_config",
    "pairwise_pvalue_matrix",
    "pairwise_pvalues",
    "per_case_ranks",
    "pooled_rank_terms",
    "rank_challenge",
    "rank_matrices",
    "rank_matrix",
    "rank_min",
    "rank_rows_min",
    "rank_then_aggregate",
    "ranking_config_from_dict",
    "signed_rank_pvalues",
    "significance_matrix",
    "succeeded",
    "test_then_rank",
    "to_tidy",
]
