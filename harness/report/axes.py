"""What both figure back-ends (matplotlib's `figures.py`, the direct SVG of `svgplot.py`) share:
the box statistics with their one whisker rule, and the rank ticks.

Whiskers follow Tukey's rule at 1.5 IQR, matplotlib's default (`cbook.boxplot_stats`,
`whis=1.5`): each whisker ends at the furthest value within 1.5 IQR of its quartile, never
inside the box; the values beyond are outliers. Quartiles are linear interpolation (numpy's and
pandas' default, R's type 7).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

WHISKER_IQR = 1.5
WHISKER_RULE = "1.5 IQR (Tukey)"  # how the figures' captions name the rule


class BoxStats(NamedTuple):
    """A box plot's five numbers: whisker ends `lo`, `hi`, quartiles `q1`, `q3`, median `med`."""

    lo: float
    q1: float
    med: float
    q3: float
    hi: float


def box_stats(values: np.ndarray) -> BoxStats:
    """The box of `values` (finite, at least one) by the module's whisker rule."""
    x = np.asarray(values, dtype=float)
    q1, med, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    reach = WHISKER_IQR * (q3 - q1)
    inside = x[(x >= q1 - reach) & (x <= q3 + reach)]
    lo = min(float(inside.min()), q1) if inside.size else q1
    hi = max(float(inside.max()), q3) if inside.size else q3
    return BoxStats(lo, q1, med, q3, hi)


RANK_STEPS = (1, 2, 5)  # then 10, 20, 50, 100, ...


def rank_ticks(n: int, *, min_step: float = 1.0) -> list[int]:
    """The ranks 1..n to label on an axis: 1 and every step-th, the step the smallest of 1, 2, 5,
    10, 20, 50, ... that is at least `min_step` (how many ranks one label needs)."""
    step, k = 1, 0
    while step < min_step:
        k += 1
        step = RANK_STEPS[k % 3] * 10 ** (k // 3)
    return [1, *range(step, n + 1, step)] if step > 1 else list(range(1, n + 1))


def labels_fit(n: int, fits: int) -> float:
    """The `min_step` that leaves at most about `fits` labels for n ranks."""
    return max(1.0, math.ceil(n / fits))


__all__ = ["RANK_STEPS", "WHISKER_IQR", "WHISKER_RULE", "BoxStats", "box_stats", "labels_fit", "rank_ticks"]
