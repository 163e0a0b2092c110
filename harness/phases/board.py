"""A phase's leaderboard under its policy: pure functions over the store's tidy scores table.

1. Every submission of the phase is ranked together (`rank_challenge`, the phase's ranking
   configuration): that ranking's own score says which of a team's submissions is its best.
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
from harness.ranking import ChallengeRanking, RankingConfig, rank_challenge
from harness.ranking.table import apply_failure_values, to_tidy


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
    all_ranking: ChallengeRanking | None  # every submission ranked together
    headline: dict[str, float]  # submission id -> its headline value

    def by_team(self) -> dict[str, Entry]:
        return {e.team: e for e in self.entries}


def headline_values(table: pd.DataFrame, config: RankingConfig) -> tuple[str, dict[str, float]]:
    """(first metric, submission id -> its mean over cases, failed runs at the metric's worst value)."""
    metric = config.metric_names[0]
    tidy = apply_failure_values(to_tidy(table, ok_status=config.ok_status), config)
    values = tidy[tidy["metric"] == metric].groupby("algorithm")["value"].mean()
    return metric, {str(k): float(v) for k, v in values.items()}


def pick(items: Sequence[Submission], policy: Policy, ranking: ChallengeRanking | None) -> list[Submission]:
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
        ranks = ranking.score["rank"]
        chosen.append(min(own, key=lambda s: (float(ranks.get(s.id, np.inf)), s.arrival, s.number)))
    return chosen


def build_board(table: pd.DataFrame, items: Sequence[Submission], config: RankingConfig, policy: Policy) -> Board:
    """The leaderboard of the submissions `items` whose rows `table` holds (tidy: algorithm, case,
    metric, value, status; only the configuration's metrics)."""
    scored = [s for s in items if s.id in set(table["algorithm"])]
    if not scored:
        return Board(policy, config.metric_names[0], (), None, {})
    table = table[table["algorithm"].isin({s.id for s in scored})]
    metric, headline = headline_values(table, config)
    everyone = _rank(table, config)
    chosen = pick(scored, policy, everyone)
    ids = {s.id for s in chosen}
    final = everyone if ids == {s.id for s in scored} else _rank(table[table["algorithm"].isin(ids)], config)
    board = final.leaderboard.set_index("algorithm")
    by_id = {s.id: s for s in chosen}
    entries = sorted((Entry(rank=int(board.loc[i, "rank"]), team=s.team, submission=i, number=s.number,
                            arrival=s.arrival, score=float(board.loc[i, "score"]), headline=headline[i],
                            n_failed=int(board.loc[i, "n_failed"])) for i, s in by_id.items()),
                     key=lambda e: (e.rank, e.arrival, e.submission))
    return Board(policy, metric, tuple(entries), everyone, headline)


def _rank(table: pd.DataFrame, config: RankingConfig) -> ChallengeRanking:
    return rank_challenge(table, config, source="the phase's store")


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
