"""The whole ranking of a challenge from one tidy table: FLARE score, bootstrap, tests, leaderboard.

`rank_challenge(table, config)` is pure: the table in, a `ChallengeRanking` out. Failed runs
(status not ok) enter with their metric's worst value; missing values and absent rows take the
worst rank of their case; the significance tests replace missing values by the worst value too
(challengeR's `na.treat`), or, for a metric without one, test each pair on the cases both have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.ranking.bootstrap import BootstrapResult, bootstrap_ranking, whole
from harness.ranking.combine import bootstrap_values, compare_methods, left_out
from harness.ranking.config import FLARE22_RANKING, RankingConfig, RankingMethod
from harness.ranking.ranks import RankMatrix, flare_score, rank_matrices
from harness.ranking.stats import decision_matrix
from harness.ranking.table import apply_failure_values, check_metrics, succeeded, to_tidy
from harness.ranking.tasks import OrganTasks, rank_organ_tasks


@dataclass(frozen=True, eq=False)
class ChallengeRanking:
    """Everything `harness rank` prints and writes.

    - `table`: the tidy table as ranked (failed values replaced; the input is untouched).
    - `metrics`: ranked metrics (config order); `skipped_metrics`: config metrics absent from
      the table, left out of the score.
    - `score`: per algorithm, the FLARE score (weighted mean rank) and its rank.
    - `significance`: per metric, the 0/1 matrix "row significantly better than column".
    - `leaderboard`: one row per algorithm, best first.
    """

    config: RankingConfig
    table: pd.DataFrame
    metrics: tuple[str, ...]
    skipped_metrics: tuple[str, ...]
    matrices: Mapping[str, RankMatrix]
    score: pd.DataFrame
    bootstrap: BootstrapResult
    significance: Mapping[str, pd.DataFrame]
    leaderboard: pd.DataFrame
    method_ranks: pd.DataFrame | None = None  # algorithm x ranking method (combine.COMPARED)
    unmeasured_metrics: tuple[str, ...] = ()  # no ok run has a value (e.g. AUC_GPU without NVML): left out
    left_out: tuple[str, ...] = ()  # one line per algorithm the method leaves out of the ranking (who, why)
    organ_table: pd.DataFrame | None = None  # tidy per-organ values as ranked (failure values applied)
    tasks: OrganTasks | None = None  # each organ ranked as a task, the consensus and its stability

    def per_case_ranks(self) -> pd.DataFrame:
        """Long form: algorithm, case, metric, value (as ranked), status, rank, missing."""
        status = self.table.set_index(["algorithm", "case", "metric"])["status"]
        frames = []
        for name, rm in self.matrices.items():
            frame = rm.to_frame()
            frame.insert(2, "metric", name)
            frame["missing"] = rm.missing.ravel()
            keys = pd.MultiIndex.from_arrays([frame["algorithm"], frame["case"], frame["metric"]])
            frame.insert(4, "status", status.reindex(keys).fillna("no_row").to_numpy())
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


def rank_challenge(
    table: pd.DataFrame,
    config: RankingConfig = FLARE22_RANKING,
    *,
    case_draws: np.ndarray | Sequence[Sequence[int]] | None = None,
    organ_table: pd.DataFrame | None = None,
    source: str = "<table>",
) -> ChallengeRanking:
    """Rank a challenge: FLARE score, bootstrap (tau, rank intervals), per-metric tests, and,
    given `organ_table` (tidy per organ: algorithm, case, organ, metric, value, status; the
    store's `tidy_organ_scores`), each organ ranked as a task with its stability.

    `table` is tidy or wide (see `to_tidy`). The bootstrap's draws, seed and variant are the
    config's (the command line overrides them with `dataclasses.replace`); `case_draws`, a
    (draws x cases) matrix of case indices, replaces the seeded draws. `source` names the table
    in error messages.
    """
    tidy = to_tidy(table, config, source=source)
    check_metrics(tidy, config, source=source)
    unmeasured = unmeasured_metrics(tidy, config)
    tidy = tidy[~tidy["metric"].isin(unmeasured)]
    ranked = apply_failure_values(tidy, config)
    matrices = rank_matrices(ranked, config)
    metrics = tuple(matrices)
    skipped = tuple(m for m in config.metric_names if m not in matrices and m not in unmeasured)
    weights = {m.name: m.weight for m in config.metrics}
    flare = flare_score(matrices, weights)
    values = {name: rm.values for name, rm in matrices.items()}
    algorithms = next(iter(matrices.values())).algorithms
    if config.method is RankingMethod.FLARE:
        score = flare
        boot = bootstrap_ranking(matrices, weights=weights, n_draws=config.n_draws, seed=config.seed, case_draws=case_draws,
                                 variant=config.bootstrap)
    else:
        boot = bootstrap_values(values, config, algorithms=algorithms, n_draws=config.n_draws, seed=config.seed,
                                case_draws=case_draws)
        score = pd.DataFrame({"score": boot.full_scores, "rank": whole(boot.full_ranks)},
                             index=pd.Index(algorithms, name="algorithm"))
    method_ranks = compare_methods(values, config, flare["rank"].to_numpy(), algorithms)
    significance = {}
    for name, rm in matrices.items():
        rule = config.metric(name)
        dec = decision_matrix(rm.values, larger_is_better=rule.larger_is_better,
                              alpha=config.alpha, p_adjust=config.p_adjust,
                              na_treat=rule.worst_value)
        significance[name] = pd.DataFrame(dec, index=pd.Index(rm.algorithms, name="algorithm"),
                                          columns=list(rm.algorithms))
    board = _leaderboard(ranked, config, matrices, score, boot)
    organs = tasks = None
    if organ_table is not None:
        organs = apply_failure_values(organ_table, config)
        tasks = rank_organ_tasks(organs, algorithms=[str(a) for a in board["algorithm"]], config=config,
                                 n_draws=boot.n_draws, seed=boot.seed if boot.seed is not None else config.seed)
    return ChallengeRanking(
        config=config,
        table=ranked,
        metrics=metrics,
        skipped_metrics=skipped,
        matrices=matrices,
        score=score,
        bootstrap=boot,
        significance=significance,
        leaderboard=board,
        method_ranks=method_ranks,
        unmeasured_metrics=unmeasured,
        left_out=left_out(values, config, algorithms),
        organ_table=organs,
        tasks=tasks,
    )


def unmeasured_metrics(tidy: pd.DataFrame, config: RankingConfig) -> tuple[str, ...]:
    """Metrics that runs scored ok have no value of at all (AUC_GPU on a host without NVML): left
    out of the ranking, since the failure value would rank every failed run before them."""
    ok = tidy[succeeded(tidy["status"], config)]
    measured = ok.groupby("metric")["value"].apply(lambda v: bool(v.notna().any()))
    return tuple(m for m in config.metric_names if m in measured.index and not measured[m])


def _leaderboard(
    ranked: pd.DataFrame,
    config: RankingConfig,
    matrices: Mapping[str, RankMatrix],
    score: pd.DataFrame,
    boot: BootstrapResult,
) -> pd.DataFrame:
    intervals = boot.rank_intervals()
    board = pd.DataFrame(
        {
            "rank": score["rank"],
            "score": score["score"],
            "rank_lo": intervals["rank_lo"],
            "rank_hi": intervals["rank_hi"],
            "rank_median": intervals["rank_median"],
        }
    )
    for name, rm in matrices.items():
        present = ~rm.missing
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(present, rm.values, 0.0).sum(axis=0) / present.sum(axis=0)
        board[f"mean_{name}"] = np.where(present.any(axis=0), means, np.nan)
    failed = ranked[~succeeded(ranked["status"], config)]
    n_failed = failed.groupby("algorithm")["case"].nunique()
    board["n_failed"] = n_failed.reindex(board.index).fillna(0).astype(int)
    board["n_missing"] = sum(rm.missing.sum(axis=0) for rm in matrices.values())
    board = board.reset_index().sort_values(["rank", "algorithm"], kind="stable")
    first = ["rank", "algorithm"]
    return board[first + [c for c in board.columns if c not in first]].reset_index(drop=True)


__all__ = ["ChallengeRanking", "rank_challenge"]
