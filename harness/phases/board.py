"""A phase's leaderboard under its policy: pure functions over the store's tidy scores table.

1. Every submission of the phase is ranked together (the phase's ranking configuration, scored as
   `rank_challenge` scores it, without its bootstrap and tests, which a leaderboard does not show):
   that ranking's own score says which of a team's submissions is its best.
2. The policy picks the entries: `best` (the team's submission ranked first, the earlier one on a
   tie), `latest` (the last to arrive, whatever its result) or `all` (each submission).
3. The entries alone are ranked again: that is the leaderboard.

The history (each team's best over time) uses the first metric of the ranking configuration,
averaged over cases with failed runs at its worst value: a figure that does not move when another
team submits, as a platform's "best score" does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.phases.arrivals import Submission
from harness.phases.config import Policy
from harness.ranking import RankingConfig, RankingMethod, flare_score, rank_matrices
from harness.ranking.bootstrap import whole
from harness.ranking.challenge import unmeasured_metrics
from harness.ranking.combine import rank_values
from harness.ranking.table import apply_failure_values, check_metrics, succeeded, to_tidy


@dataclass(frozen=True)
class Entry:
    rank: int
    team: str
    submission: str
    number: int
    arrival: str
    score: float  # the ranking's score of the entry among the entries
    headline: float  # mean of the first metric (failed cases at its worst value)
    n_failed: int


@dataclass(frozen=True, eq=False)
class Board:
    policy: Policy
    metric: str  # the headline metric
    entries: tuple[Entry, ...]
    all_ranking: pd.DataFrame | None  # every submission ranked together: score, rank, n_failed by submission id
    headline: dict[str, float]  # submission id -> its headline value

    def by_team(self) -> dict[str, Entry]:
        return {e.team: e for e in self.entries}


def rank_scores(table: pd.DataFrame, config: RankingConfig, *, source: str = "the phase's store"
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(score, rank and n_failed by algorithm; the table as ranked, failed values replaced): the
    scores and ranks `rank_challenge` gives, computed by the same functions."""
    tidy = to_tidy(table, config, source=source)
    check_metrics(tidy, config, source=source)
    tidy = tidy[~tidy["metric"].isin(unmeasured_metrics(tidy, config))]
    ranked = apply_failure_values(tidy, config)
    matrices = rank_matrices(ranked, config)
    if not matrices:  # no metric has a value (every ground truth unscorable): nothing to rank
        return pd.DataFrame({"score": [], "rank": [], "n_failed": []}, index=pd.Index([], name="algorithm")), ranked
    if config.method is RankingMethod.FLARE:
        score = flare_score(matrices, {m.name: m.weight for m in config.metrics})[["score", "rank"]].copy()
    else:
        algorithms = next(iter(matrices.values())).algorithms
        values, ranks = rank_values({name: rm.values for name, rm in matrices.items()}, config)
        score = pd.DataFrame({"score": values, "rank": whole(ranks)}, index=pd.Index(algorithms, name="algorithm"))
    failed = ranked[~succeeded(ranked["status"], config)].groupby("algorithm")["case"].nunique()
    score["n_failed"] = failed.reindex(score.index).fillna(0).astype(int)
    return score, ranked


def headline_values(ranked: pd.DataFrame, config: RankingConfig) -> tuple[str, dict[str, float]]:
    """(first metric, submission id -> its mean over cases, failed runs at the metric's worst value),
    from a table as ranked (`rank_scores`)."""
    metric = config.metric_names[0]
    values = ranked[ranked["metric"] == metric].groupby("algorithm")["value"].mean()
    return metric, {str(k): float(v) for k, v in values.items()}


def pick(items: Sequence[Submission], policy: Policy, ranking: pd.DataFrame | None) -> list[Submission]:
    """The submissions the policy puts on the leaderboard (one per team, or all)."""
    if policy is Policy.ALL:
        return list(items)
    chosen = []
    for team in sorted({s.team for s in items}):
        own = [s for s in items if s.team == team]
        if policy is Policy.LATEST:
            chosen.append(max(own, key=lambda s: (s.arrival, s.number)))
            continue
        assert ranking is not None
        ranks = ranking["rank"]
        chosen.append(min(own, key=lambda s: (float(ranks.get(s.id, np.inf)), s.arrival, s.number)))
    return chosen


def build_board(table: pd.DataFrame, items: Sequence[Submission], config: RankingConfig, policy: Policy) -> Board:
    """The leaderboard of the submissions `items` whose rows `table` holds (tidy: algorithm, case,
    metric, value, status; only the configuration's metrics)."""
    present = set(table["algorithm"].unique())
    scored = [s for s in items if s.id in present]
    if not scored:
        return Board(policy, config.metric_names[0], (), None, {})
    table = table[table["algorithm"].isin({s.id for s in scored})]
    everyone, ranked = rank_scores(table, config)
    metric, headline = headline_values(ranked, config)
    if everyone.empty:
        return Board(policy, metric, (), everyone, headline)
    chosen = pick(scored, policy, everyone)
    ids = {s.id for s in chosen}
    board = everyone if ids == {s.id for s in scored} else rank_scores(table[table["algorithm"].isin(ids)], config)[0]
    by_id = {s.id: s for s in chosen}
    entries = sorted((Entry(rank=int(board.loc[i, "rank"]), team=s.team, submission=i, number=s.number,
                            arrival=s.arrival, score=float(board.loc[i, "score"]), headline=headline[i],
                            n_failed=int(board.loc[i, "n_failed"])) for i, s in by_id.items()),
                     key=lambda e: (e.rank, e.arrival, e.submission))
    return Board(policy, metric, tuple(entries), everyone, headline)


def history(items: Sequence[Submission], headline: dict[str, float], *, larger_is_better: bool
            ) -> dict[str, list[tuple[str, float]]]:
    """team -> [(arrival, best headline value so far)], one point per scored submission, by arrival."""
    best: dict[str, list[tuple[str, float]]] = {}
    for item in sorted(items, key=lambda s: (s.arrival, s.number)):
        if item.id not in headline:
            continue
        points = best.setdefault(item.team, [])
        value = headline[item.id]
        if points:
            value = max(value, points[-1][1]) if larger_is_better else min(value, points[-1][1])
        points.append((item.arrival, value))
    return best
