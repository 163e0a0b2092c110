"""The figures' one box-statistics rule and one rank-tick rule (harness/report/axes.py), used by
both back-ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import cbook

from harness.report import figures
from harness.report.axes import box_stats, rank_ticks


@pytest.mark.parametrize("seed", range(20))
def test_box_stats_equal_matplotlibs_boxplot_stats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0.8, 0.05, rng.integers(1, 40)), rng.uniform(0, 1, rng.integers(0, 4))])
    got = box_stats(values)
    (oracle,) = cbook.boxplot_stats(values, whis=1.5)
    assert got == pytest.approx((oracle["whislo"], oracle["q1"], oracle["med"], oracle["q3"], oracle["whishi"]))


def test_a_whisker_never_ends_inside_the_box() -> None:
    # every value below q1 is an outlier: matplotlib ends the low whisker at q1, not at a value above it
    values = np.array([0.0, 10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6])
    (oracle,) = cbook.boxplot_stats(values, whis=1.5)
    got = box_stats(values)
    assert got.lo == pytest.approx(oracle["whislo"]) and got.lo <= got.q1


def test_the_matplotlib_back_end_uses_the_same_box_per_group() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"organ": np.repeat(["liver", "spleen"], 30), "algorithm": np.tile(np.repeat(["a", "b"], 15), 2),
                          "value": rng.uniform(0, 1, 60)})
    stats = figures._box_stats(frame)
    for (organ, algorithm), group in frame.groupby(["organ", "algorithm"]):
        got = box_stats(group["value"].to_numpy())
        assert stats.loc[(organ, algorithm), ["lo", "q1", "med", "q3", "hi"]].tolist() == pytest.approx(list(got))


def test_rank_ticks() -> None:
    assert rank_ticks(5) == [1, 2, 3, 4, 5]
    assert rank_ticks(12, min_step=1.5) == [1, 2, 4, 6, 8, 10, 12]
    assert rank_ticks(50, min_step=3) == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert rank_ticks(500, min_step=30) == [1, 50, *range(100, 501, 50)]
    assert figures._rank_ticks(10) == list(range(1, 11)) and figures._rank_ticks(60) == [1, 5, *range(10, 61, 5)]
