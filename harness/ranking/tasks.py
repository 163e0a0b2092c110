"""Multi-task ranking: each organ (or any other split of the values) ranked as a task of its own,
and the consensus over the tasks, as challengeR does for a multi-task challenge.

Each task is ranked by the challenge's method on that task's per-case values (FLARE's pooled score
is a rank-then-aggregate, so a FLARE challenge ranks each task rank-then-aggregate; a
grand-challenge position score, which needs several metrics, becomes aggregate-then-rank by the
configured aggregate). The consensus is each algorithm's mean rank over the tasks (challengeR's
`consensus(method = "euclidean")` reports these mean ranks), ranked with ties sharing the best
rank; a task with no value for an algorithm leaves that algorithm out of its mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.ranking.bootstrap import draw_cases, draw_counts
from harness.ranking.combine import method_for
from harness.ranking.config import RankingConfig, RankingMethod
from harness.ranking.methods import Method, per_case_ranks, rank_by, rank_na2, treated
from harness.ranking.ranks import rank_rows_min
from harness.ranking.stats import kendall_tau_b


@dataclass(frozen=True)
class TaskRanking:
    """`ranks`: algorithms x tasks; `consensus`: per algorithm its mean rank over the tasks and the
    rank of that mean; `method`: how each task was ranked."""

    method: Method
    ranks: pd.DataFrame
    consensus: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """One row per algorithm (consensus order): its rank in each task, the mean and its rank."""
        frame = self.ranks.copy()
        frame["mean_rank"] = self.consensus["mean_rank"]
        frame["consensus_rank"] = self.consensus["rank"]
        return frame.loc[self.consensus.index].reset_index()


def task_method(config: RankingConfig, metric: str) -> Method:
    """The method that ranks one task of `metric`'s values under `config`."""
    kind = config.method
    if kind is RankingMethod.FLARE:
        kind = RankingMethod.RANK_THEN_AGGREGATE
    elif kind.grand_challenge:
        kind = RankingMethod.AGGREGATE_THEN_RANK
    return method_for(config, metric, kind=kind)


def rank_tasks(values: Mapping[str, np.ndarray], *, algorithms: Sequence[str], config: RankingConfig,
               metric: str) -> TaskRanking:
    """Rank each task (`values`: task -> cases x algorithms, NaN = missing) by `task_method` and
    combine the tasks' ranks into the consensus."""
    method = task_method(config, metric)
    better = config.metric(metric).larger_is_better
    columns = {}
    for task, matrix in values.items():
        _, rank = rank_by(np.asarray(matrix, dtype=float), method, larger_is_better=better)
        columns[task] = rank
    index = pd.Index(list(algorithms), name="algorithm")
    ranks = pd.DataFrame(columns, index=index)
    mean = ranks.mean(axis=1, skipna=True).to_numpy(dtype=float)
    consensus = pd.DataFrame({"mean_rank": mean, "rank": rank_na2(mean, ties="min", larger_is_better=False)},
                             index=index)
    consensus = consensus.sort_values(["rank", "mean_rank"], kind="stable")
    return TaskRanking(method=method, ranks=ranks, consensus=consensus)


def task_stability(values: Mapping[str, np.ndarray], ranking: TaskRanking, *, larger_is_better: bool,
                   n_draws: int = 1000, seed: int | None = 0) -> dict[str, np.ndarray] | None:
    """challengeR's stability across tasks: per task, Kendall's tau-b between the task's ranking
    on each bootstrap draw of its cases and its full ranking (NaN where undefined). Vectorised over
    the draws for the methods whose aggregate is a sum (rank-then-aggregate; aggregate-then-rank
    by the mean), whose draws rank the sums so that equal sums stay tied; None for the others (a
    median or a test on every draw of every task is too slow for a report)."""
    method = ranking.method
    linear = method.kind is RankingMethod.RANK_THEN_AGGREGATE or (
        method.kind is RankingMethod.AGGREGATE_THEN_RANK and method.aggregate == "mean")
    if not linear or method.ties != "min":
        return None
    out = {}
    for task, matrix in values.items():
        x = np.asarray(matrix, dtype=float)
        if x.shape[0] < 1:
            continue
        if method.kind is RankingMethod.RANK_THEN_AGGREGATE:
            terms = per_case_ranks(x, ties="min", larger_is_better=larger_is_better)
            orient = 1.0  # a smaller mean rank is better
        else:
            terms = treated(x, method.na_treat)
            orient = -1.0 if larger_is_better else 1.0
        present = ~np.isnan(terms)
        counts = draw_counts(draw_cases(x.shape[0], n_draws, seed=seed), x.shape[0]).astype(float)
        sums = counts @ np.where(present, terms, 0.0)
        sizes = counts @ present.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            aggregate = np.where(sizes > 0, sums / sizes, np.nan) if not present.all() else sums
        ranks = rank_rows_min(orient * aggregate)
        full = ranking.ranks[task].to_numpy(dtype=float)
        out[task] = kendall_tau_b(ranks, np.nan_to_num(full, nan=float(len(full) + 1)))
    return out


def task_tree(ranks: pd.DataFrame) -> tuple[list[str], list[tuple[list[float], list[float]]]]:
    """challengeR's dendrogram of the tasks: complete-linkage clustering of the tasks (columns of
    `ranks`) by the Euclidean distance between their rank vectors (a missing rank counts last).
    Returns the tasks in leaf order and the links in scipy's coordinates (leaf k at x = 10k + 5,
    height = the distance at which the link joins); no links for fewer than three tasks."""
    tasks = [str(t) for t in ranks.columns]
    if len(tasks) < 3:
        return tasks, []
    from scipy.cluster.hierarchy import dendrogram, linkage

    points = np.nan_to_num(ranks.T.to_numpy(dtype=float), nan=float(len(ranks)))
    tree = dendrogram(linkage(points, method="complete", metric="euclidean"), no_plot=True, labels=tasks)
    links = [([float(v) for v in xs], [float(v) for v in ys]) for xs, ys in zip(tree["icoord"], tree["dcoord"], strict=True)]
    return [str(t) for t in tree["ivl"]], links


def organ_tasks(table: pd.DataFrame, *, algorithms: Sequence[str], metric: str) -> dict[str, np.ndarray]:
    """Per organ (in the order of first appearance), the cases x algorithms matrix of `metric` in a
    tidy organ table (columns algorithm, case, organ, metric, value; one row per algorithm, case,
    organ and metric; NaN = missing)."""
    rows = table[table["metric"] == metric]
    groups = dict(list(rows.groupby(rows["organ"].astype(str), sort=False)))
    out = {}
    for organ in pd.unique(rows["organ"].astype(str)):
        wide = groups[organ].pivot(index="case", columns="algorithm", values="value")
        out[str(organ)] = wide.reindex(columns=list(algorithms)).to_numpy(dtype=float)
    return out


@dataclass(frozen=True, eq=False)
class OrganTasks:
    """Each organ ranked as a task of its own on `metric`, as `rank_challenge` returns it.

    - `values`: organ -> (cases x algorithms) values as ranked (failed runs at their failure value).
    - `ranking`: the ranks per organ and the consensus (`TaskRanking`).
    - `leaves`, `links`: the organs clustered by how alike they rank (`task_tree`).
    - `stability`: organ -> Kendall's tau-b per bootstrap draw (`task_stability`; None where the
      method is not vectorised), over `n_draws` draws seeded by `seed`.
    """

    metric: str
    values: Mapping[str, np.ndarray]
    ranking: TaskRanking
    leaves: list[str]
    links: list[tuple[list[float], list[float]]]
    stability: Mapping[str, np.ndarray] | None
    n_draws: int
    seed: int

    def stability_frame(self) -> pd.DataFrame:
        """Long form of the stability: task, draw (1-based), tau (NaN: undefined)."""
        frames = [pd.DataFrame({"task": task, "draw": np.arange(1, len(tau) + 1), "tau": tau})
                  for task, tau in (self.stability or {}).items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task", "draw", "tau"])

    def stability_summary(self) -> pd.DataFrame:
        """Per task: draws, valid draws, mean, median and quartiles of tau (NaN when none is valid)."""
        rows = []
        for task, tau in (self.stability or {}).items():
            valid = np.asarray(tau, dtype=float)
            valid = valid[np.isfinite(valid)]
            q25, med, q75 = np.percentile(valid, [25, 50, 75]) if valid.size else (np.nan,) * 3
            rows.append({"task": task, "n_draws": len(tau), "n_valid": int(valid.size),
                         "mean": float(valid.mean()) if valid.size else np.nan, "median": med, "q25": q25, "q75": q75})
        return pd.DataFrame(rows, columns=["task", "n_draws", "n_valid", "mean", "median", "q25", "q75"])


def task_metric(table: pd.DataFrame, config: RankingConfig) -> str | None:
    """The metric the organs are ranked on as tasks: DSC when the config ranks it and the table has
    it, else the first of the config's metrics the table has; None when it has none."""
    present = set(table["metric"].astype(str)) if len(table) else set()
    ranked = [m for m in config.metric_names if m in present]
    return "dsc" if "dsc" in ranked else (ranked[0] if ranked else None)


def rank_organ_tasks(table: pd.DataFrame, *, algorithms: Sequence[str], config: RankingConfig, n_draws: int,
                     seed: int) -> OrganTasks | None:
    """Each organ of a tidy organ table (failure values already applied) ranked as a task on
    `task_metric`, the consensus, the organs' tree and the stability per organ; None for fewer
    than two organs (one task is the whole ranking)."""
    metric = task_metric(table, config)
    if metric is None:
        return None
    values = organ_tasks(table, algorithms=algorithms, metric=metric)
    if len(values) < 2:
        return None
    ranking = rank_tasks(values, algorithms=algorithms, config=config, metric=metric)
    leaves, links = task_tree(ranking.ranks)
    stability = task_stability(values, ranking, larger_is_better=config.metric(metric).larger_is_better,
                               n_draws=n_draws, seed=seed)
    return OrganTasks(metric=metric, values=values, ranking=ranking, leaves=leaves, links=links, stability=stability,
                      n_draws=n_draws, seed=seed)


__all__ = ["OrganTasks", "TaskRanking", "organ_tasks", "rank_organ_tasks", "rank_tasks", "task_method", "task_metric",
           "task_stability", "task_tree"]
