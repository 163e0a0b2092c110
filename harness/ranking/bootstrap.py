"""Bootstrap of cases for the ranking's stability: rank distributions, intervals, Kendall's tau.

Vectorised: a draw is a row of counts (how often each case was drawn), and every draw's pooled
rank sums are one matrix product, counts (draws x cases) @ weighted per-case ranks (cases x
algorithms). Per-case ranks never change under resampling (ranks are within a case), so no draw
is re-ranked case by case.

Two variants:
- "textbook" (default): each drawn case is its own case; a case drawn k times weighs k.
- "challengeR": challengeR 1.0.5 merges the drawn case ids back into the data and ranks per case
  id, so a case drawn k times is ranked as one pooled group of k x n_algorithms values (ties min,
  missing = highest rank present + 1). An algorithm ranked r there gets (r - 1) k + 1 on each of
  its k rows, a missing value (r - 2) k + 2 (a fully missing case: 1), so the case weighs about
  k^2. This is linear in k, hence counts^2 @ slope + counts @ intercept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.ranking.config import BOOTSTRAP_VARIANTS
from harness.ranking.ranks import RankMatrix, rank_min, rank_rows_min
from harness.ranking.stats import kendall_tau_b


def draw_cases(n_cases: int, n_draws: int, *, seed: int | None = 0) -> np.ndarray:
    """(n_draws x n_cases) case indices drawn with replacement by `numpy.random.default_rng`."""
    if n_cases < 1:
        raise DataError("no cases to bootstrap; the scores table has no cases")
    if n_draws < 1:
        raise ValueError(f"n_draws must be positive, got {n_draws}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_cases, size=(n_draws, n_cases))


def draw_counts(draws: np.ndarray | Sequence[Sequence[int]], n_cases: int) -> np.ndarray:
    """How often each case occurs in each draw: (n_draws x n_cases) integer counts.

    `draws` holds case indices (0-based); its rows may differ in length when given as lists.
    """
    if isinstance(draws, np.ndarray) and draws.ndim == 2:
        idx = draws.astype(np.int64, copy=False)
        _check_indices(idx, n_cases)
        n_draws = idx.shape[0]
        flat = (idx + np.arange(n_draws)[:, None] * n_cases).ravel()
        return np.bincount(flat, minlength=n_draws * n_cases).reshape(n_draws, n_cases)
    rows = [np.asarray(d, dtype=np.int64).ravel() for d in draws]
    counts = np.zeros((len(rows), n_cases), dtype=np.int64)
    for k, row in enumerate(rows):
        _check_indices(row, n_cases)
        counts[k] = np.bincount(row, minlength=n_cases)
    return counts


def _check_indices(idx: np.ndarray, n_cases: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n_cases):
        bad = idx[(idx < 0) | (idx >= n_cases)][0]
        raise ValueError(f"draw holds case index {bad}; valid indices are 0..{n_cases - 1}")


def pooled_rank_terms(rm: RankMatrix) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept): challengeR's rank of an entry whose case was drawn k times is
    slope * k + intercept (see the module docstring)."""
    r = rm.ranks
    slope = np.where(rm.missing, r - 2.0, r - 1.0)
    intercept = np.where(rm.missing, 2.0, 1.0)
    all_missing = rm.missing.all(axis=1)
    slope[all_missing] = 0.0
    intercept[all_missing] = 1.0
    return slope, intercept


@dataclass(frozen=True)
class TauSummary:
    """Kendall's tau-b of the draws against the full ranking; undefined draws left out."""

    n_draws: int
    n_valid: int
    n_dropped: int
    mean: float
    median: float
    q25: float
    q75: float
    min: float
    max: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Per-draw scores (weighted mean ranks), ranks (ties min) and tau against the full ranking.

    `scores` and `ranks` are (draws x algorithms) in the order of `algorithms`; `tau` is NaN
    for a draw where every algorithm ties (tau undefined), which the tau summary drops and
    counts. Rank distributions and intervals use every draw.
    """

    algorithms: tuple[str, ...]
    variant: str
    seed: int | None  # None when the draws were given explicitly
    full_scores: np.ndarray
    full_ranks: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    tau: np.ndarray

    @property
    def n_draws(self) -> int:
        return int(self.ranks.shape[0])

    @property
    def n_undefined(self) -> int:
        return int(np.isnan(self.tau).sum())

    def tau_summary(self) -> TauSummary:
        valid = self.tau[~np.isnan(self.tau)]
        if valid.size == 0:
            nan = float("nan")
            return TauSummary(self.n_draws, 0, self.n_draws, nan, nan, nan, nan, nan, nan)
        q25, median, q75 = np.percentile(valid, [25, 50, 75])
        return TauSummary(
            n_draws=self.n_draws,
            n_valid=int(valid.size),
            n_dropped=self.n_draws - int(valid.size),
            mean=float(valid.mean()),
            median=float(median),
            q25=float(q25),
            q75=float(q75),
            min=float(valid.min()),
            max=float(valid.max()),
        )

    def rank_intervals(self, *, level: float = 0.95) -> pd.DataFrame:
        """Per algorithm: full-data rank, median bootstrap rank and the central `level` interval
        of the bootstrap ranks (the 2.5% and 97.5% quantiles for 0.95), each an inverse-CDF
        quantile (`observed_quantiles`), so a rank that some draw gave; the mean rank as it is."""
        tail = (1.0 - level) / 2.0
        lo, med, hi = observed_quantiles(self.ranks, [tail, 0.5, 1.0 - tail])
        return pd.DataFrame(
            {
                "rank": whole(self.full_ranks),
                "rank_median": whole(med),
                "rank_lo": whole(lo),
                "rank_hi": whole(hi),
                "rank_mean": self.ranks.mean(axis=0),
            },
            index=pd.Index(self.algorithms, name="algorithm"),
        )

    def rank_frequencies(self) -> pd.DataFrame:
        """How many draws gave each algorithm each rank (algorithms x ranks 1..n)."""
        n_alg = len(self.algorithms)
        # ties "average" give halves (counted at the rank below), an unranked value counts last
        ranks = np.clip(np.floor(np.nan_to_num(self.ranks, nan=float(n_alg))), 1, n_alg).astype(np.int64) - 1
        flat = (ranks + np.arange(n_alg)[None, :] * n_alg).ravel()
        counts = np.bincount(flat, minlength=n_alg * n_alg).reshape(n_alg, n_alg)
        return pd.DataFrame(counts, index=pd.Index(self.algorithms, name="algorithm"),
                            columns=pd.Index(range(1, n_alg + 1), name="rank"))

    def to_frame(self) -> pd.DataFrame:
        """Long form, one row per draw and algorithm: draw (1-based), algorithm, rank, score,
        tau (empty where undefined)."""
        n_draws, n_alg = self.ranks.shape
        return pd.DataFrame(
            {
                "draw": np.repeat(np.arange(1, n_draws + 1), n_alg),
                "algorithm": np.tile(np.asarray(self.algorithms, dtype=object), n_draws),
                "rank": whole(self.ranks.ravel()),
                "score": self.scores.ravel(),
                "tau": np.repeat(self.tau, n_alg),
            }
        )


# n x p within this of a whole number counts as that number: 1 - 0.95 is 0.05000000000000004, and
# 1000 draws x its half must give the 25th smallest rank, not the 26th.
_WHOLE_TOLERANCE = 1e-9


def observed_quantiles(values: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """Inverse-CDF quantiles along axis 0 (Hyndman and Fan's type 1: R's `quantile(type = 1)`,
    NumPy's "inverted_cdf"): for each p in `probs`, the smallest value whose empirical CDF
    reaches p, i.e. the ceil(n p)-th smallest of n (the smallest at p = 0). Every quantile is a
    value that occurs, so quantiles of ranks are ranks; the interval between the 2.5% and 97.5%
    quantiles holds at least 95% of the values. NaN sorts last (an unranked value counts
    worst). Returns len(probs) x the remaining axes."""
    v = np.sort(np.asarray(values, dtype=float), axis=0)
    n = v.shape[0]
    if n < 1:
        raise ValueError("no values to take quantiles of")
    picks = []
    for p in probs:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a quantile's probability lies in [0, 1], got {p}")
        k = int(np.ceil(n * p - _WHOLE_TOLERANCE))
        picks.append(min(max(k, 1), n) - 1)
    return v[picks]


def whole(ranks: np.ndarray) -> np.ndarray:
    """Ranks as integers when they are (ties "min", "max", "first"), else as they are ("average"
    gives halves; a value left unranked is NaN)."""
    r = np.asarray(ranks, dtype=float)
    if np.isfinite(r).all() and (r == np.round(r)).all():
        return r.astype(np.int64)
    return r


def bootstrap_ranking(
    matrices: Mapping[str, RankMatrix] | RankMatrix,
    *,
    weights: Mapping[str, float] | None = None,
    n_draws: int = 1000,
    seed: int | None = 0,
    case_draws: np.ndarray | Sequence[Sequence[int]] | None = None,
    variant: str = "textbook",
) -> BootstrapResult:
    """Bootstrap the pooled rank-then-aggregate ranking (FLARE's score; one metric: challengeR's
    rank-then-aggregate).

    Each draw resamples the cases with replacement (`n_draws` draws from `seed`, or the explicit
    `case_draws`: rows of 0-based indices into the matrices' `cases`), pools every (case, metric)
    rank with `weights` (default 1), ranks the weighted means (ties min) and compares that
    ranking with the full-data one by Kendall's tau-b.
    """
    if variant not in BOOTSTRAP_VARIANTS:
        raise ValueError(f"variant must be one of {BOOTSTRAP_VARIANTS}, got {variant!r}")
    if isinstance(matrices, RankMatrix):
        matrices = {matrices.metric or "metric": matrices}
    if not matrices:
        raise DataError("no metric to bootstrap; the table holds none of the config's metrics")
    weights = {} if weights is None else weights
    first = next(iter(matrices.values()))
    n_cases = len(first.cases)
    for rm in matrices.values():
        if rm.algorithms != first.algorithms or rm.cases != first.cases:
            raise ValueError("rank matrices must share algorithms and cases (rank_matrices())")
    if n_cases < 1:
        raise DataError("no cases to bootstrap; the scores table has no cases")

    total_weight = 0.0
    pooled = np.zeros_like(first.ranks)
    slope = np.zeros_like(first.ranks)
    intercept = np.zeros_like(first.ranks)
    for name, rm in matrices.items():
        w = float(weights.get(name, 1.0))
        total_weight += w
        pooled += w * rm.ranks
        if variant == "challengeR":
            a, b = pooled_rank_terms(rm)
            slope += w * a
            intercept += w * b
    if total_weight <= 0:
        raise DataError("the metrics being ranked all have weight 0; give one a positive weight")

    full_sums = pooled.sum(axis=0)
    full_ranks = rank_min(full_sums)
    full_scores = full_sums / (total_weight * n_cases)

    explicit = case_draws is not None
    draws = draw_cases(n_cases, n_draws, seed=seed) if case_draws is None else case_draws
    counts = draw_counts(draws, n_cases).astype(float)
    if variant == "textbook":
        sums = counts @ pooled
    else:
        sums = (counts * counts) @ slope + counts @ intercept
    sizes = counts.sum(axis=1)
    # Rank the sums, not the means: equal sums stay exactly tied.
    ranks = rank_rows_min(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = sums / (total_weight * sizes)[:, None]
    tau = kendall_tau_b(ranks, full_ranks)
    return BootstrapResult(
        algorithms=first.algorithms,
        variant=variant,
        seed=None if explicit else seed,
        full_scores=full_scores,
        full_ranks=full_ranks,
        scores=scores,
        ranks=ranks,
        tau=tau,
    )


__all__ = [
    "BootstrapResult",
    "TauSummary",
    "bootstrap_ranking",
    "draw_cases",
    "draw_counts",
    "observed_quantiles",
    "pooled_rank_terms",
]
