"""Ranking settings as data: metric directions, weights, worst values, tests and bootstrap.

FLARE22's published scheme is the default (`FLARE22_RANKING`); `load_ranking_config` reads the same
settings from a TOML file (see `flare22_ranking.toml` beside this module for the format).
"""

from __future__ import annotations

import enum
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import SpecError

BOOTSTRAP_VARIANTS = ("textbook", "challengeR")
P_ADJUST_METHODS = ("holm", "none")


class RankingMethod(enum.StrEnum):
    """How a challenge is ranked. FLARE: every (case, metric) rank pooled (FLARE22's score); the
    others rank each metric, then the weighted mean of the metric ranks (one metric: that metric's
    ranking): challengeR's three (`methods.py`) and grand-challenge's leaderboards (`GC_*`). A
    StrEnum: a config's or the command line's string is checked once, here, and compares equal."""

    FLARE = "flare"
    AGGREGATE_THEN_RANK = "aggregate_then_rank"
    RANK_THEN_AGGREGATE = "rank_then_aggregate"
    TEST_THEN_RANK = "test_then_rank"
    GC_ABSOLUTE = "gc_absolute"
    GC_MEAN_POSITION = "gc_mean_position"
    GC_MEDIAN_POSITION = "gc_median_position"

    @property
    def grand_challenge(self) -> bool:
        """One of grand-challenge's leaderboards (ranks each metric's mean)."""
        return self in (RankingMethod.GC_ABSOLUTE, RankingMethod.GC_MEAN_POSITION, RankingMethod.GC_MEDIAN_POSITION)

    @property
    def challenger(self) -> bool:
        """One of challengeR's per-metric methods (`methods.Method`)."""
        return self in (RankingMethod.AGGREGATE_THEN_RANK, RankingMethod.RANK_THEN_AGGREGATE,
                        RankingMethod.TEST_THEN_RANK)


RANKING_METHODS = tuple(m.value for m in RankingMethod)
TIES_METHODS = ("min", "max", "average", "first", "last")


@dataclass(frozen=True)
class MetricRule:
    """How one metric enters the ranking.

    - `larger_is_better`: direction (DSC, NSD: True; time, memory areas: False).
    - `weight`: weight of each of its per-case ranks in the pooled score (FLARE: AUCs 0.5).
    - `worst_value`: the value a failed run (status not ok) enters the score with, FLARE22's
      published rule for a stuck container; None leaves such a value missing (worst rank).
    """

    name: str
    larger_is_better: bool
    weight: float = 1.0
    worst_value: float | None = None


@dataclass(frozen=True)
class RankingConfig:
    """Everything `rank_challenge` needs besides the table.

    - `metrics`: the metrics, in display order; a table metric not listed here is an error.
    - `ok_status`: the status of a run that produced a valid value; any other status is a failure.
    - `failed_as_worst`: replace a failed run's value by its metric's `worst_value`.
    - `alpha`, `p_adjust`: one-sided Wilcoxon tests per metric ("holm" over all ordered pairs).
    - `n_draws`, `seed`, `bootstrap`: bootstrap of cases ("textbook" or challengeR's pooled
      duplicates, "challengeR").
    - `method` (one of `RANKING_METHODS`), with `aggregate` ("mean", "median", "q25", ...),
      `na_treat` ("worst": the metric's worst_value, else left out; "na.rm"; or a number), `ties`
      (base R's ties.method) and `test_p_adjust` (test-then-rank; challengeR's default "none").
    """

    name: str = "flare22"
    metrics: tuple[MetricRule, ...] = ()
    ok_status: str = "ok"
    failed_as_worst: bool = True
    alpha: float = 0.05
    p_adjust: str = "holm"
    n_draws: int = 1000
    seed: int = 0
    bootstrap: str = "textbook"
    description: str = ""
    method: RankingMethod = RankingMethod.FLARE
    aggregate: str = "mean"
    na_treat: str | float = "worst"
    ties: str = "min"
    test_p_adjust: str = "none"

    def __post_init__(self) -> None:  # a string (a test's, `dataclasses.replace`'s) becomes the enum once
        object.__setattr__(self, "method", RankingMethod(self.method))

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metric(self, name: str) -> MetricRule:
        for rule in self.metrics:
            if rule.name == name:
                return rule
        raise KeyError(name)


FLARE22_RANKING = RankingConfig(
    name="flare22",
    metrics=(
        MetricRule("dsc", larger_is_better=True, weight=1.0, worst_value=0.0),
        MetricRule("nsd", larger_is_better=True, weight=1.0, worst_value=0.0),
        MetricRule("time_s", larger_is_better=False, weight=1.0, worst_value=3600.0),
        # 3600 s x (10240 MB - 2048 MB): the published worst value for a stuck container.
        MetricRule("auc_gpu_mb_s", larger_is_better=False, weight=0.5, worst_value=29491200.0),
        MetricRule("auc_cpu_pct_s", larger_is_better=False, weight=0.5, worst_value=360000.0),
    ),
    description="FLARE22: per-case ranks of 5 metrics pooled, AUCs weighted 0.5 (challengeR).",
)

# The extra metrics a profile may store (harness.models: LesionWise, FALSE_VOLUME_METRICS, Panoptic),
# with their direction and the value a failed run (status not ok) enters with when a ranking
# config names them without one. Lesion-wise Dice 0 and HD95 374 mm are BraTS 2023's own values for a
# missed lesion; PQ, SQ, RQ and their DSC forms 0, the worst they can be. A volume has no worst:
# 1,000,000 ml (a cubic metre, more than any body) is harness's choice, so that a failed run ranks
# below every real prediction of its case (a lone huge value: prefer rank-based methods, or the median,
# to a mean). Lesion counts (lesion_tp/fn/fp) are descriptive and have none.
EXTRA_METRIC_RULES: dict[str, MetricRule] = {rule.name: rule for rule in (
    MetricRule("lesion_dice", larger_is_better=True, worst_value=0.0),
    MetricRule("lesion_hd95_mm", larger_is_better=False, worst_value=374.0),
    MetricRule("fp_volume_ml", larger_is_better=False, worst_value=1_000_000.0),
    MetricRule("fn_volume_ml", larger_is_better=False, worst_value=1_000_000.0),
    *(MetricRule(name, larger_is_better=True, worst_value=0.0) for name in ("pq", "sq", "rq", "sq_dsc", "pq_dsc")),
)}


def _known(metric: str) -> MetricRule | None:
    """An extra metric's own rule, of the case mean (`lesion_dice`) or of one organ (`lesion_dice@enhancing_tumor`)."""
    return EXTRA_METRIC_RULES.get(metric.partition("@")[0])


_TOP_KEYS = {
    "name", "description", "ok_status", "failed_as_worst", "alpha", "p_adjust", "draws", "seed",
    "bootstrap", "metrics", "method", "aggregate", "na_treat", "ties", "test_p_adjust",
}
_METRIC_KEYS = {"larger_is_better", "weight", "worst_value"}


def load_ranking_config(path: str | Path) -> RankingConfig:
    """Read a `RankingConfig` from TOML; every problem is a one-line `SpecError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: ranking config not found; check the --config path") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    return ranking_config_from_dict(raw, source=str(path))


def ranking_config_from_dict(raw: dict[str, Any], *, source: str = "<config>") -> RankingConfig:
    """Validate a parsed TOML document (the layout of `flare22_ranking.toml`)."""
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpecError(
            f"{source}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(_TOP_KEYS))}"
        )
    metrics_raw = raw.get("metrics")
    if not isinstance(metrics_raw, dict) or not metrics_raw:
        raise SpecError(
            f"{source}: no [metrics.<name>] tables; add one per metric, e.g. "
            "[metrics.dsc] larger_is_better = true"
        )
    metrics = tuple(_metric_rule(name, spec, source) for name, spec in metrics_raw.items())
    if not any(m.weight > 0 for m in metrics):
        raise SpecError(f"{source}: every metric weight is 0; give at least one a positive weight")

    bootstrap = _typed(raw, "bootstrap", str, "textbook", source)
    if bootstrap not in BOOTSTRAP_VARIANTS:
        raise SpecError(
            f"{source}: bootstrap = {bootstrap!r}; use one of {', '.join(BOOTSTRAP_VARIANTS)}"
        )
    p_adjust = _typed(raw, "p_adjust", str, "holm", source)
    if p_adjust not in P_ADJUST_METHODS:
        raise SpecError(
            f"{source}: p_adjust = {p_adjust!r}; use one of {', '.join(P_ADJUST_METHODS)}"
        )
    alpha = float(_typed(raw, "alpha", (int, float), 0.05, source))
    if not 0.0 < alpha < 1.0:
        raise SpecError(f"{source}: alpha = {alpha}; use a level between 0 and 1, e.g. 0.05")
    draws = _typed(raw, "draws", int, 1000, source)
    if draws < 1:
        raise SpecError(f"{source}: draws = {draws}; use a positive number of draws, e.g. 1000")
    seed = _typed(raw, "seed", int, 0, source)
    if seed < 0:
        raise SpecError(f"{source}: seed = {seed}; use a non-negative integer")
    method = _typed(raw, "method", str, "flare", source)
    if method not in RANKING_METHODS:
        raise SpecError(f"{source}: method = {method!r}; use one of {', '.join(RANKING_METHODS)}")
    ties = _typed(raw, "ties", str, "min", source)
    if ties not in TIES_METHODS:
        raise SpecError(f"{source}: ties = {ties!r}; use one of {', '.join(TIES_METHODS)}")
    aggregate = _typed(raw, "aggregate", str, "mean", source)
    try:
        parse_aggregate(aggregate)
    except ValueError as exc:
        raise SpecError(f"{source}: {exc}") from None
    na_treat = _typed(raw, "na_treat", (str, int, float), "worst", source)
    if isinstance(na_treat, str) and na_treat not in ("worst", "na.rm"):
        raise SpecError(f"{source}: na_treat = {na_treat!r}; use \"worst\", \"na.rm\" or a number")
    test_p_adjust = _typed(raw, "test_p_adjust", str, "none", source)
    if test_p_adjust not in P_ADJUST_METHODS:
        raise SpecError(f"{source}: test_p_adjust = {test_p_adjust!r}; use one of {', '.join(P_ADJUST_METHODS)}")
    return RankingConfig(
        method=RankingMethod(method),
        ties=ties,
        aggregate=aggregate,
        na_treat=na_treat if isinstance(na_treat, str) else float(na_treat),
        test_p_adjust=test_p_adjust,
        name=_typed(raw, "name", str, "custom", source),
        metrics=metrics,
        ok_status=_typed(raw, "ok_status", str, "ok", source),
        failed_as_worst=_typed(raw, "failed_as_worst", bool, True, source),
        alpha=alpha,
        p_adjust=p_adjust,
        n_draws=draws,
        seed=seed,
        bootstrap=bootstrap,
        description=_typed(raw, "description", str, "", source),
    )


def parse_aggregate(name: str) -> str | float:
    """An aggregate's name: "mean", "median", or a quantile "q25" / "q0.25" as its probability."""
    if name in ("mean", "median"):
        return name
    if name.startswith("q"):
        text = name[1:]
        try:
            prob = float(text) if "." in text else float(text) / 100.0
        except ValueError:
            prob = math.nan
        if 0.0 <= prob <= 1.0:
            return prob
    raise ValueError(f"aggregate must be mean, median or a quantile such as q25 or q0.25, got {name!r}")


def _metric_rule(name: str, spec: Any, source: str) -> MetricRule:
    where = f"{source}: [metrics.{name}]"
    if not isinstance(spec, dict):
        raise SpecError(f"{where} is not a table; write [metrics.{name}] with larger_is_better")
    unknown = sorted(set(spec) - _METRIC_KEYS)
    if unknown:
        raise SpecError(
            f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(sorted(_METRIC_KEYS))}"
        )
    known = _known(name)
    if "larger_is_better" not in spec and known is None:
        raise SpecError(f"{where}: larger_is_better is missing; add larger_is_better = true/false")
    larger = _typed(spec, "larger_is_better", bool, known.larger_is_better if known else True, where)
    if known is not None and larger != known.larger_is_better:
        raise SpecError(f"{where}: larger_is_better = {str(larger).lower()}, but {name} is "
                        f"{'larger' if known.larger_is_better else 'lower'}-is-better; write "
                        f"larger_is_better = {str(known.larger_is_better).lower()} or leave it out")
    weight = float(_typed(spec, "weight", (int, float), 1.0, where))
    if not math.isfinite(weight) or weight < 0:
        raise SpecError(f"{where}: weight = {weight}; use a finite weight >= 0")
    worst = spec.get("worst_value", known.worst_value if known is not None else None)
    if worst is not None:
        worst = float(_typed(spec, "worst_value", (int, float), worst, where))
        if not math.isfinite(worst):
            raise SpecError(f"{where}: worst_value = {worst}; use a finite number")
    return MetricRule(name=name, larger_is_better=larger, weight=weight, worst_value=worst)


def _typed(raw: dict[str, Any], key: str, kind: Any, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a number key given `true` is still a mistake.
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise SpecError(f"{where}: {key} = {value!r} is not a {names}; fix its type")
    return value


__all__ = [
    "BOOTSTRAP_VARIANTS",
    "EXTRA_METRIC_RULES",
    "FLARE22_RANKING",
    "P_ADJUST_METHODS",
    "RANKING_METHODS",
    "TIES_METHODS",
    "MetricRule",
    "RankingMethod",
    "RankingConfig",
    "load_ranking_config",
    "parse_aggregate",
    "ranking_config_from_dict",
]
