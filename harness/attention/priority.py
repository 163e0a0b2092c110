"""The priority list and the review queue, from the annotator's per-case summaries (pure).

A case's attention size is its flagged voxels summed over organs. Cases are sorted by it,
descending (ties: case id, ascending); the first `queue_size(n)` go to a human reviewer (the
paper's budget: 400 of 8,448 volumes, about 5 %), each with its organs in order of their heat-map
sum, descending (ties: the organ listed first in the summary).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness.errors import DataError

QUEUE_FRACTION = 0.05
ORGAN_COLUMNS = ("attention_voxels", "heat_sum", "inconsistency_voxels", "uncertainty_voxels", "overlap_voxels")
ORGAN_SEPARATOR = ";"


def attention_table(summaries: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (case, organ) from annotator summaries (the `attention.json` objects).

    Columns: case, organ, organ_order (the organ's position in its summary), then
    ORGAN_COLUMNS. A case that appears twice is an error.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for summary in summaries:
        case = summary.get("case")
        organs = summary.get("organs")
        if not isinstance(case, str) or not case:
            raise DataError(f"attention summary: key 'case' = {case!r}; expected the case id (annotator output attention.json)")
        if not isinstance(organs, Mapping):
            raise DataError(f"attention summary of {case}: key 'organs' = {organs!r}; expected an object organ -> figures")
        if case in seen:
            raise DataError(f"attention summary of {case}: the case appears twice; pass each case's annotation once")
        seen.add(case)
        for order, (organ, figures) in enumerate(organs.items()):
            row: dict[str, Any] = {"case": case, "organ": organ, "organ_order": order}
            for column in ORGAN_COLUMNS:
                value = figures.get(column) if isinstance(figures, Mapping) else None
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                    raise DataError(f"attention summary of {case}: organs.{organ}.{column} = {value!r}; expected a number >= 0")
                row[column] = value
            rows.append(row)
    columns = ["case", "organ", "organ_order", *ORGAN_COLUMNS]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"attention_voxels": "int64", "inconsistency_voxels": "int64", "uncertainty_voxels": "int64",
                         "overlap_voxels": "int64", "heat_sum": "float64", "organ_order": "int64"})


def queue_size(cases: int, *, fraction: float = QUEUE_FRACTION) -> int:
    """How many of `cases` go to review: ceil(fraction * cases), at least one (none of none)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction = {fraction!r}; use 0 < fraction <= 1 (0.05 is the top 5 %)")
    if cases <= 0:
        return 0
    # The tolerance keeps 0.05 * 100 at 5, not 6 through rounding of the product.
    return max(1, math.ceil(fraction * cases - 1e-9))


def _organs_by_heat(group: pd.DataFrame) -> list[str]:
    ordered = group.sort_values(["heat_sum", "organ_order"], ascending=[False, True], kind="mergesort")
    return [str(o) for o in ordered["organ"]]


def priority_list(table: pd.DataFrame, *, fraction: float = QUEUE_FRACTION) -> pd.DataFrame:
    """One row per case, most attention first.

    Columns: rank (1 = review first), case, attention_voxels, heat_sum (both summed over
    organs), in_queue (the first `queue_size` cases), organs (all of the case's organs by heat
    sum, descending, joined with ';').
    """
    columns = ["rank", "case", "attention_voxels", "heat_sum", "in_queue", "organs"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    per_case = table.groupby("case", sort=False).agg(attention_voxels=("attention_voxels", "sum"), heat_sum=("heat_sum", "sum"))
    organs = {str(case): ORGAN_SEPARATOR.join(_organs_by_heat(group)) for case, group in table.groupby("case", sort=False)}
    out = per_case.reset_index()
    out["case"] = out["case"].astype(str)
    out = out.sort_values(["attention_voxels", "case"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    out["in_queue"] = out["rank"] <= queue_size(len(out), fraction=fraction)
    out["organs"] = out["case"].map(organs)
    return out[columns]


def review_queue(table: pd.DataFrame, priority: pd.DataFrame) -> pd.DataFrame:
    """What the reviewer gets: one row per (queued case, organ), cases by rank, organs by heat sum.

    Columns: rank, case, organ_rank (1 = look first), organ, heat_sum, attention_voxels,
    inconsistency_voxels, uncertainty_voxels, overlap_voxels.
    """
    columns = ["rank", "case", "organ_rank", "organ", *ORGAN_COLUMNS[1:2], "attention_voxels", *ORGAN_COLUMNS[2:]]
    rows: list[dict[str, Any]] = []
    queued = priority[priority["in_queue"]]
    by_case = {str(case): group for case, group in table.groupby("case", sort=False)}
    for rank, case in zip(queued["rank"], queued["case"], strict=True):
        group = by_case[str(case)].set_index("organ")
        for organ_rank, organ in enumerate(_organs_by_heat(by_case[str(case)]), start=1):
            figures = group.loc[organ]
            rows.append({"rank": int(rank), "case": str(case), "organ_rank": organ_rank, "organ": organ,
                         **{column: figures[column] for column in ORGAN_COLUMNS}})
    return pd.DataFrame(rows, columns=columns)
