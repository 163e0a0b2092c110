"""The tidy scores table every ranking function reads, and its checks (no I/O here).

Tidy form: one row per (algorithm, case, metric) with columns `algorithm`, `case`, `metric`,
`value` and `status` ("ok", "timeout", "crashed", "oom", "invalid_output", ...). `to_tidy` also
accepts the wide form (`algorithm`, `case`, one column per metric, optional `status`) and the
per-organ table of `harness score --algorithm` (`algorithm`, `case`, `organ`, `dsc`, `nsd`, ...,
`status`), which it reduces as `harness run`'s store is: case DSC and NSD = mean over organs.
A missing value (NaN) and a pair (algorithm, case) with no row are both *missing*.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.ranking.config import EXTRA_METRIC_RULES, RankingConfig

ID_COLUMNS = ("algorithm", "case")
TIDY_COLUMNS = ("algorithm", "case", "metric", "value", "status")


NOT_METRICS = ("algorithm", "case", "organ", "label", "dsc", "nsd", "hd95_mm", "status", "message")  # harness score's
ORGAN_OK = ("ok", "not_scorable")  # row statuses of a scored case (an organ the rules cannot score is left out)


def per_case(organs: pd.DataFrame, config: RankingConfig, *, source: str = "<table>") -> pd.DataFrame:
    """A per-(case, organ) table (`harness score`) as the wide per-case table the ranking reads:
    DSC and NSD = mean over the organs scored, and so each other column named in the config's
    metrics (a profile's extra metrics: lesion_dice, fp_volume_ml, pq, ...; DSC and NSD are then kept
    only if named too); each `<metric>@<organ>` named is that organ's or region's own value; status =
    the case's (its first row status that is not ok; the config's `ok_status` when every row is).
    Needs an `algorithm` column (`harness score --algorithm NAME`)."""
    ok_status, metrics = config.ok_status, config.metric_names
    if "algorithm" not in organs.columns:
        raise DataError(f"{source}: a per-organ scores table without an 'algorithm' column; write it with "
                        "`harness score --algorithm NAME` (or --pred-root for several), or add the column")
    frame = organs.copy()
    frame["status"] = frame["status"].astype(str) if "status" in frame.columns else ok_status
    bad = frame[~frame["status"].isin(ORGAN_OK)]
    status = bad.groupby(["algorithm", "case"], sort=False)["status"].first()
    named = {m.partition("@")[0] for m in metrics}
    extra = [c for c in frame.columns if c in set(metrics) and c not in NOT_METRICS]
    # DSC and NSD always, unless the ranking names others and not them (a ranking of the volumes alone)
    columns = [c for c in ("dsc", "nsd") if not metrics or c in set(metrics) or not named - {"dsc", "nsd"}] + extra
    for column in frame.columns:
        if column in named and column not in NOT_METRICS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    means = frame[frame["status"].isin(ORGAN_OK)].groupby(["algorithm", "case"], sort=True)[columns].mean()
    wide = frame[["algorithm", "case"]].drop_duplicates().set_index(["algorithm", "case"]).join(means)
    for name in metrics:  # one organ's or region's own value: `<metric>@<organ>` (lesion_dice@enhancing_tumor)
        metric, _, organ = name.partition("@")
        if organ and metric in frame.columns and metric not in NOT_METRICS:
            rows = frame[(frame["organ"].astype(str) == organ) & frame["status"].isin(ORGAN_OK)]
            wide[name] = pd.to_numeric(rows.set_index(["algorithm", "case"])[metric], errors="coerce").reindex(wide.index)
    wide["status"] = status.reindex(wide.index).fillna(ok_status)
    return wide.reset_index()


def to_tidy(raw: pd.DataFrame, config: RankingConfig | None = None, *, source: str = "<table>") -> pd.DataFrame:
    """Check a scores table in tidy or wide form and return it tidy (a new frame), read under
    `config` (default: a configuration with no metrics, `ok_status` "ok"): a row without a status
    gets its `ok_status`, and of a per-organ table's extra columns, those it names as metrics are
    kept as case means.

    Wide form is recognised by the absence of a `metric` and a `value` column; its status (if
    any) applies to every metric of the row. Raises `DataError` naming `source`, the column and
    the bad value.
    """
    config = config or RankingConfig()
    ok_status = config.ok_status
    if len(raw.columns) == 0 or len(raw) == 0:
        raise DataError(f"{source}: the scores table has no rows; score some cases first")
    if {"organ", "dsc", "nsd"} <= {str(c) for c in raw.columns}:
        raw = per_case(raw, config, source=source)
    columns = [str(c) for c in raw.columns]
    frame = raw.copy()
    frame.columns = columns
    for col in ID_COLUMNS:
        if col not in columns:
            raise DataError(
                f"{source}: column {col!r} is missing (columns: {', '.join(columns)}); "
                f"add it or rename the matching column to {col!r}"
            )
    if "metric" in columns or "value" in columns:
        for col in ("metric", "value"):
            if col not in columns:
                raise DataError(
                    f"{source}: column {col!r} is missing from a tidy table (columns: "
                    f"{', '.join(columns)}); give both 'metric' and 'value', or use the wide form"
                )
        tidy = frame[[c for c in TIDY_COLUMNS if c in columns]].copy()
    else:
        metric_cols = [c for c in columns if c not in (*ID_COLUMNS, "status")]
        if not metric_cols:
            raise DataError(
                f"{source}: no metric columns besides {', '.join(columns)}; add one column per "
                "metric (wide form) or 'metric' and 'value' columns (tidy form)"
            )
        id_vars = [c for c in (*ID_COLUMNS, "status") if c in columns]
        _check_numeric(frame, metric_cols, source)
        tidy = frame.melt(id_vars=id_vars, value_vars=metric_cols, var_name="metric",
                          value_name="value")

    for col in (*ID_COLUMNS, "metric"):
        blank = tidy[col].isna()
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
            raise DataError(f"{source}: column {col!r} is empty in data row {row}; fill it in")
        tidy[col] = tidy[col].astype(str)
    _check_numeric(tidy, ["value"], source)
    tidy["value"] = pd.to_numeric(tidy["value"], errors="coerce").astype(float)
    if "status" in tidy.columns:
        tidy["status"] = tidy["status"].where(tidy["status"].notna(), ok_status).astype(str)
        tidy.loc[tidy["status"].str.strip() == "", "status"] = ok_status
    else:
        tidy["status"] = ok_status

    dup = tidy.duplicated(subset=["algorithm", "case", "metric"])
    if dup.any():
        first = tidy[dup].iloc[0]
        raise DataError(
            f"{source}: more than one row for algorithm {first['algorithm']!r}, case "
            f"{first['case']!r}, metric {first['metric']!r}; keep one row per triple"
        )
    return tidy[list(TIDY_COLUMNS)].reset_index(drop=True)


def _check_numeric(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    for col in columns:
        raw = frame[col]
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna().to_numpy() & numeric.isna().to_numpy()
        if raw.dtype == bool:
            bad = np.ones(len(raw), dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: column {col!r} has non-numeric value {raw.iloc[i]!r} in data row "
                f"{i + 1}; write a number, or leave it empty for a missing value"
            )
        values = numeric.to_numpy(dtype=float)
        inf = np.isinf(values)
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise DataError(
                f"{source}: column {col!r} has non-finite value {raw.iloc[i]!r} in data row "
                f"{i + 1}; record a failed run with its status, or leave the value empty"
            )


def check_metrics(table: pd.DataFrame, config: RankingConfig, *, source: str = "<table>") -> None:
    """Every metric of the table must be in the config (a typo would be silently unranked)."""
    known = set(config.metric_names)
    unknown = sorted(set(table["metric"]) - known)
    if unknown:
        raise DataError(
            f"{source}: metric {unknown[0]!r} is not in ranking config {config.name!r} "
            f"(known: {', '.join(config.metric_names)}); add [metrics.{unknown[0]}] to a "
            "config given with --config, or drop it from the table"
        )


def succeeded(status: pd.Series, config: RankingConfig) -> np.ndarray:
    """The one rule of success, read by the ranking, the leaderboards and the report alike: a run
    (or a row of a tidy table) succeeded when its status is the config's `ok_status`; any other
    status is a failure (timeout, crashed, oom, invalid_output, ...)."""
    return status.astype(str).to_numpy() == config.ok_status


def failure_values(config: RankingConfig) -> dict[str, float]:
    """The one rule for failed runs: per metric, the value a failed run enters every ranking with
    (the metric's `worst_value`; FLARE22: DSC 0, NSD 0, 3600 s, ...) when `config.failed_as_worst`;
    a metric without one, or every metric when failures are not counted as worst, keeps what the
    run recorded (usually nothing: missing, the worst rank of its case). A profile's extra metric
    (lesion-wise, false volumes, panoptic) that the config does not rank keeps its own rule
    (`EXTRA_METRIC_RULES`), so its per-organ table counts failures as a ranking of it would."""
    if not config.failed_as_worst:
        return {}
    values = {rule.name: float(rule.worst_value) for rule in EXTRA_METRIC_RULES.values() if rule.worst_value is not None}
    values.update({m.name: float(m.worst_value) for m in config.metrics if m.worst_value is not None})
    return values


def apply_failure_values(table: pd.DataFrame, config: RankingConfig) -> pd.DataFrame:
    """A copy of a tidy table (columns metric, value, status; any others kept) where failed runs
    carry `failure_values(config)`: the case table the challenge is ranked on and the organ table
    its organs are ranked on (and the report shows) alike.

    A row fails when it has not `succeeded`. The input table is not modified.
    """
    out = table.copy()
    worst = failure_values(config)
    if not worst or out.empty:
        return out
    failed = ~succeeded(out["status"], config)
    if not failed.any():
        return out
    replacement = out["metric"].map(worst)
    use = failed & replacement.notna().to_numpy()
    out["value"] = out["value"].astype(float)
    out.loc[use, "value"] = replacement[use].astype(float)
    return out


def table_axes(table: pd.DataFrame) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Sorted algorithms and cases of a tidy table (the order of every matrix built from it)."""
    algorithms = tuple(sorted(pd.unique(table["algorithm"].astype(str))))
    cases = tuple(sorted(pd.unique(table["case"].astype(str))))
    return algorithms, cases


def value_matrix(
    table: pd.DataFrame,
    *,
    algorithms: Sequence[str],
    cases: Sequence[str],
    metric: str | None = None,
) -> np.ndarray:
    """Values as a (cases x algorithms) float array; NaN where missing or where no row exists."""
    rows = table if metric is None else table[table["metric"] == metric]
    out = np.full((len(cases), len(algorithms)), np.nan)
    if len(rows) == 0:
        return out
    a_index = pd.Index(list(algorithms))
    c_index = pd.Index(list(cases))
    ai = a_index.get_indexer(rows["algorithm"].astype(str))
    ci = c_index.get_indexer(rows["case"].astype(str))
    keep = (ai >= 0) & (ci >= 0)
    out[ci[keep], ai[keep]] = rows["value"].to_numpy(dtype=float)[keep]
    return out


def single_metric(
    scores: pd.DataFrame, *, metric: str | None = None, source: str = "<table>"
) -> pd.DataFrame:
    """Rows of one metric from a table with columns algorithm, case, value[, metric].

    Without `metric`, a `metric` column must hold a single name (or be absent).
    """
    for col in ("algorithm", "case", "value"):
        if col not in scores.columns:
            raise DataError(f"{source}: column {col!r} is missing; add it")
    if metric is not None:
        if "metric" not in scores.columns:
            raise DataError(f"{source}: column 'metric' is missing; add it or omit metric=")
        rows = scores[scores["metric"] == metric]
        if len(rows) == 0:
            raise DataError(f"{source}: no rows for metric {metric!r}; check the metric name")
        return rows
    if "metric" in scores.columns:
        names = pd.unique(scores["metric"])
        if len(names) > 1:
            raise DataError(
                f"{source}: the table holds metrics {', '.join(map(str, names))}; "
                "pass metric= to choose one"
            )
    if len(scores) == 0:
        raise DataError(f"{source}: the scores table has no rows; score some cases first")
    return scores


__all__ = [
    "ID_COLUMNS",
    "TIDY_COLUMNS",
    "apply_failure_values",
    "check_metrics",
    "failure_values",
    "single_metric",
    "table_axes",
    "to_tidy",
    "value_matrix",
]
